// The dashboard as a person uses it, in Debian's headless Chromium driven by playwright-core:
// sign in (a wrong password first), find the ticket on the board, open its page, approve the
// proposal and watch it ship; then retry RETRY_KEY (a job that needed attention) and watch its
// agents' activity arrive and the board move, without reloading; merge KEY through the merge
// queue from its page; sign out. Screenshots of the board, the job page, the live job page and
// the merged job page go to SHOTS.
// Usage: node dashboard.cjs BASE USER PASSWORD KEY RETRY_KEY SHOTS (NODE_PATH must reach
// playwright-core).
'use strict';
const { chromium } = require('playwright-core');

const [base, user, password, key, retryKey, shots] = process.argv.slice(2);

// A mark on the window: still there later means the page was never reloaded.
const mark = (page) => page.evaluate(() => { window.codemillStayed = true; });
const stayed = (page) => page.evaluate(() => window.codemillStayed === true);

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
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
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
    // The worker ships it; the page says so by itself once it is done.
    await mark(page);
    await page.waitForSelector('[data-status=done]', { timeout: 90_000 });
    if (!(await stayed(page))) fail('the job page was reloaded to show the push');


    // A second tab watches the board while the retried job runs.
    const board = await context.newPage();
    board.on('pageerror', (e) => errors.push(String(e)));
    await board.goto(`${base}/`);
    if ((await board.locator(`[data-column=attention] [data-ticket="${retryKey}"]`).count()) !== 1) {
      fail(`${retryKey} is not on the board as needing attention`);
    }
    await mark(board);

    await page.goto(`${base}/tickets/${retryKey}`);
    await Promise.all([page.waitForURL(`${base}/tickets/${retryKey}`), page.click('button.retry')]);
    await mark(page);
    const lines = () => page.locator('#activity li').count();
    const before = await lines();
    await page.waitForFunction((n) => document.querySelectorAll('#activity li').length >= n + 3,
      before, { timeout: 60_000 });
    await page.screenshot({ path: `${shots}/live.png`, fullPage: true });
    await page.waitForSelector('[data-status=awaiting_approval]', { timeout: 90_000 });
    const live = (await lines()) - before;
    if (!(await stayed(page))) fail('the job page was reloaded while the job ran');
    await board.waitForSelector(`[data-column=awaiting_approval] [data-ticket="${retryKey}"]`,
      { timeout: 30_000 });
    if (!(await stayed(board))) fail('the board was reloaded');
    await board.close();

    // The shipped ticket's pull request goes through the merge queue from its page; a worker
    // lands it.
    await page.goto(`${base}/tickets/${key}`);
    await page.waitForSelector('button.merge', { timeout: 30_000 });
    await Promise.all([page.waitForURL(`${base}/tickets/${key}`), page.click('button.merge')]);
    let merged = false;
    for (let i = 0; i < 120 && !merged; i++) {
      merged = (await page.locator('p.merged').count()) === 1;
      if (!merged) {
        if ((await page.locator('.merge-queued, button.merge').count()) === 0) {
          fail('the page neither queues nor offers the merge');
        }
        await page.waitForTimeout(500);
        await page.reload();
      }
    }
    if (!merged) fail('the merge did not land');
    if ((await page.locator('button.merge').count()) !== 0) fail('a merged PR is offered again');
    await page.screenshot({ path: `${shots}/merged.png`, fullPage: true });

    if (errors.length) fail(`script errors on the pages: ${errors.join('; ')}`);

    await Promise.all([page.waitForURL(`${base}/login`), page.click('text=Sign out')]);
    await page.goto(`${base}/`);
    if (!page.url().startsWith(`${base}/login`)) fail('still signed in after signing out');
    console.log(JSON.stringify({ approved: commit.trim(), live_activity: live }));
  } finally {
    await browser.close();
  }
})().catch((e) => fail(e.stack || String(e)));
