// The dashboard as a person uses it, in Debian's headless Chromium driven by playwright-core:
// sign in (a wrong password first), find the ticket on the board, open its page, approve the
// proposal, watch it ship, sign out. Screenshots of the board and the job page go to SHOTS.
// Usage: node dashboard.cjs BASE USER PASSWORD KEY SHOTS (NODE_PATH must reach playwright-core).
'use strict';
const { chromium } = require('playwright-core');

const [base, user, password, key, shots] = process.argv.slice(2);

function fail(message) {
  console.error(`dashboard: ${message}`);
  process.exit(1);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    // Scripts the page did not ask for would show up here (the CSP forbids inline ones).
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));

    await page.goto(`${base}/`);
    if (!page.url().startsWith(`${base}/login`)) fail(`not sent to sign in: ${page.url()}`);

    await page.fill('input[name=username]', user);
    await page.fill('input[name=password]', 'not the password');
    await page.click('button[type=submit]');
    const problem = await page.textContent('.problem');
    if (!problem || !problem.includes('Wrong user name or password')) fail(`no refusal: ${problem}`);

    await page.fill('input[name=username]', user);
    await page.fill('input[name=password]', password);
    await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
    const who = await page.textContent('.who');
    if (!who.includes(user)) fail(`the board does not say who is signed in: ${who}`);
    const card = page.locator(`[data-column=awaiting_approval] [data-ticket="${key}"]`);
    if ((await card.count()) !== 1) fail(`${key} is not awaiting approval on the board`);
    await page.screenshot({ path: `${shots}/board.png`, fullPage: true });

    await Promise.all([page.waitForURL(`${base}/tickets/${key}`), card.locator('a').click()]);
    const status = await page.getAttribute('[data-status]', 'data-status');
    if (status !== 'awaiting_approval') fail(`the job page says ${status}`);
    const commit = await page.textContent('code.commit');
    const added = await page.locator('.diff .add').allTextContents();
    if (!added.some((l) => l === '+hello')) fail(`the page does not show the patch: ${added}`);
    await page.screenshot({ path: `${shots}/job.png`, fullPage: true });

    await Promise.all([page.waitForURL(`${base}/tickets/${key}`), page.click('button.approve')]);
    // The worker ships it; the page says so once it is done.
    const deadline = Date.now() + 90_000;
    for (;;) {
      const now = await page.getAttribute('[data-status]', 'data-status');
      if (now === 'done') break;
      if (Date.now() > deadline) fail(`${key} did not ship after approval: ${now}`);
      await page.waitForTimeout(500);
      await page.reload();
    }
    if (errors.length) fail(`script errors on the pages: ${errors.join('; ')}`);

    await Promise.all([page.waitForURL(`${base}/login`), page.click('text=Sign out')]);
    await page.goto(`${base}/`);
    if (!page.url().startsWith(`${base}/login`)) fail('still signed in after signing out');
    console.log(JSON.stringify({ approved: commit.trim() }));
  } finally {
    await browser.close();
  }
})().catch((e) => fail(e.stack || String(e)));
