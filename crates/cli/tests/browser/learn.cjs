// What codemill learned, in the dashboard, in Debian's headless Chromium driven by
// playwright-core: sign in, open Learning from the board, read the metrics and the proposals'
// diffs, apply one (a worker carries it out while the page polls) and reject the other.
// Screenshots of the proposals and of the decided page go to SHOTS.
// Usage: node learn.cjs BASE USER PASSWORD PROJECT SHOTS (NODE_PATH must reach playwright-core).
'use strict';
const { failer, launch, signedIn } = require('./common.cjs');

const [base, user, password, project, shots] = process.argv.slice(2);

const fail = failer('learn');

(async () => {
  const browser = await launch();
  try {
    const errors = [];
    const page = await signedIn(browser, base, user, password, errors);
    await page.click('nav a[href="/learn"]');
    await page.waitForURL(`${base}/learn`);
    const heading = await page.textContent('h1');
    if (!heading.includes(project)) fail(`the page is about ${heading}`);
    const rejected = await page.textContent('table.metrics tr[data-week] td:nth-child(5)');
    if (rejected.trim() !== '2') fail(`the metrics show ${rejected} rejected`);
    const checklist = page.locator('.proposal', { hasText: 'errors checklist' });
    const knowledge = page.locator('.proposal', { hasText: 'knowledge:' });
    if ((await checklist.count()) !== 1 || (await knowledge.count()) !== 1) fail('the two proposals are not shown');
    const diff = await checklist.locator('pre.diff .add').allTextContents();
    if (!diff.some((l) => l.includes('Is every error handled?'))) fail(`the diff shows ${diff}`);
    await page.screenshot({ path: `${shots}/learn-proposed.png`, fullPage: true });

    await Promise.all([page.waitForLoadState('load'), knowledge.locator('button.approve').click()]);
    await page.waitForSelector('.proposal[data-state=applied]', { timeout: 60_000 });
    const applied = await page.textContent('.proposal[data-state=applied] .saved');
    if (!applied.includes('knowledge #')) fail(`applied as ${applied}`);
    await Promise.all([
      page.waitForLoadState('load'),
      page.locator('.proposal', { hasText: 'errors checklist' }).locator('button.reject').click(),
    ]);
    await page.waitForSelector('.proposal[data-state=rejected]');
    if ((await page.locator('button.approve').count()) !== 0) fail('a decided proposal is offered again');
    await page.screenshot({ path: `${shots}/learn-decided.png`, fullPage: true });
    if (errors.length) fail(`script errors on the pages: ${errors.join('; ')}`);
    console.log(JSON.stringify({ applied: applied.trim() }));
  } finally {
    await browser.close();
  }
})().catch((e) => fail(e.stack || String(e)));
