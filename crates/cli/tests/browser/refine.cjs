// A refined idea in the dashboard, in Debian's headless Chromium driven by playwright-core: sign
// in, open the idea's page (its refined spec, awaiting acceptance), accept it with the page's
// button and watch it move on without reloading. Screenshots of the page before and after go
// to SHOTS.
// Usage: node refine.cjs BASE USER PASSWORD KEY SHOTS (NODE_PATH must reach playwright-core).
'use strict';
const { failer, launch, signedIn } = require('./common.cjs');

const [base, user, password, key, shots] = process.argv.slice(2);

const fail = failer('refine');

(async () => {
  const browser = await launch();
  try {
    const errors = [];
    const page = await signedIn(browser, base, user, password, errors);
    const card = page.locator(`[data-column=awaiting_approval] [data-ticket="${key}"]`);
    if ((await card.count()) !== 1) fail(`${key} is not waiting for a decision on the board`);

    await page.goto(`${base}/tickets/${key}`);
    const status = await page.getAttribute('[data-status]', 'data-status');
    if (status !== 'awaiting_acceptance') fail(`the page says ${status}`);
    const spec = await page.textContent('.spec-text');
    if (!spec.includes('- [ ] a 1 GB CSV export starts within 1 s')) fail(`no criteria in the spec: ${spec}`);
    if ((await page.locator('button.approve').count()) !== 0) fail('a spec offers an approval');
    await page.screenshot({ path: `${shots}/refined.png`, fullPage: true });

    await Promise.all([page.waitForURL(`${base}/tickets/${key}`), page.click('button.accept')]);
    await page.waitForSelector('[data-status=done]', { timeout: 60_000 });
    if ((await page.locator('button.accept').count()) !== 0) fail('an accepted spec is offered again');
    await page.screenshot({ path: `${shots}/accepted.png`, fullPage: true });
    if (errors.length) fail(`script errors on the pages: ${errors.join('; ')}`);
    console.log(JSON.stringify({ accepted: key }));
  } finally {
    await browser.close();
  }
})().catch((e) => fail(e.stack || String(e)));
