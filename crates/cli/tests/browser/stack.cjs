// A split ticket in the dashboard, in Debian's headless Chromium driven by playwright-core: sign
// in, open the parent's page (its sub-tasks and their stack), follow a sub-task's link (it says
// whose stack it ships in and offers no approval of its own), approve the stack on the parent's
// page, watch it ship, put it on the merge queue and see it land. Screenshots of the parent's
// page, a sub-task's page and the merged stack go to SHOTS.
// Usage: node stack.cjs BASE USER PASSWORD KEY SHOTS (NODE_PATH must reach playwright-core).
'use strict';
const { failer, launch, signedIn } = require('./common.cjs');

const [base, user, password, key, shots] = process.argv.slice(2);

const fail = failer('stack');

(async () => {
  const browser = await launch();
  try {
    const errors = [];
    const page = await signedIn(browser, base, user, password, errors);

    await page.goto(`${base}/tickets/${key}`);
    const rows = page.locator('.subtasks tr[data-subtask]');
    if ((await rows.count()) !== 2) fail(`sub-tasks shown: ${await rows.count()}`);
    if ((await page.locator('.subtasks tr[data-state=ready]').count()) !== 2) fail('not every sub-task is ready');
    const stack = page.locator('.stack li');
    if ((await stack.count()) !== 2) fail(`stack entries shown: ${await stack.count()}`);
    const branches = await stack.evaluateAll((lis) => lis.map((li) => li.dataset.branch));
    await page.screenshot({ path: `${shots}/stack.png`, fullPage: true });

    // A sub-task's page points to its parent and cannot be approved alone.
    const child = await rows.first().locator('a').textContent();
    await Promise.all([page.waitForURL(`${base}/tickets/${child}`), rows.first().locator('a').click()]);
    const parent = await page.textContent('p.parent');
    if (!parent.includes(`of ${key}`)) fail(`the sub-task page does not name its parent: ${parent}`);
    if ((await page.locator('button.approve').count()) !== 0) fail('a sub-task offers its own approval');
    await page.screenshot({ path: `${shots}/subtask.png`, fullPage: true });

    await Promise.all([page.waitForURL(`${base}/tickets/${key}`), page.click(`p.parent a`)]);
    await Promise.all([page.waitForURL(`${base}/tickets/${key}`), page.click('button.approve')]);
    await page.waitForSelector('[data-status=done]', { timeout: 90_000 });
    await page.waitForSelector('button.merge', { timeout: 30_000 });
    await Promise.all([page.waitForURL(`${base}/tickets/${key}`), page.click('button.merge')]);
    let merged = false;
    for (let i = 0; i < 120 && !merged; i++) {
      merged = (await page.locator('p.merged').count()) === 1;
      if (!merged) {
        await page.waitForTimeout(500);
        await page.reload();
      }
    }
    if (!merged) fail('the stack did not land');
    if ((await page.locator('.stack li[data-pr=merged]').count()) !== 2) fail('not every PR of the stack says merged');
    await page.screenshot({ path: `${shots}/stack-merged.png`, fullPage: true });
    if (errors.length) fail(`script errors on the pages: ${errors.join('; ')}`);
    console.log(JSON.stringify({ branches }));
  } finally {
    await browser.close();
  }
})().catch((e) => fail(e.stack || String(e)));
