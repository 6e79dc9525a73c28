// The product-owner assistant in the dashboard, in Debian's headless Chromium driven by
// playwright-core: sign in, open /assistant, ask a question, wait (without reloading) until a
// worker's answer with its draft appears, save the draft as a ticket, and see it saved.
// Screenshots of the answer and of the saved draft go to SHOTS.
// Usage: node assistant.cjs BASE USER PASSWORD PROJECT SHOTS (NODE_PATH must reach playwright-core).
'use strict';
const { failer, launch, signedIn } = require('./common.cjs');

const [base, user, password, project, shots] = process.argv.slice(2);

const fail = failer('assistant');

(async () => {
  const browser = await launch();
  try {
    const errors = [];
    const page = await signedIn(browser, base, user, password, errors);
    await page.click('nav a[href="/assistant"]');
    await page.waitForURL(`${base}/assistant`);
    const heading = await page.textContent('h1');
    if (!heading.includes(project)) fail(`the page is about ${heading}`);

    await page.fill('form.ask textarea[name=question]', 'What would it take to add SSO? Draft a ticket.');
    await Promise.all([page.waitForURL(/\/assistant\?project=.*&c=/), page.click('form.ask button[type=submit]')]);
    // A worker answers while the page polls.
    await page.waitForSelector('.draft[data-draft="1"] button', { timeout: 60_000 });
    const answer = await page.textContent('pre.answer');
    if (!answer.includes('README.md')) fail(`the answer cites no file: ${answer}`);
    // What it cites is in the repository, so no note of missing citations.
    if (answer.includes('codemill checked')) fail(`a citation was not found: ${answer}`);
    if (answer.includes('"drafts"')) fail('the drafts JSON shows in the answer');
    const title = await page.textContent('.draft[data-draft="1"] h3');
    if (!title.includes('Add OIDC login')) fail(`the draft is ${title}`);
    await page.screenshot({ path: `${shots}/assistant-answer.png`, fullPage: true });

    await Promise.all([page.waitForLoadState('load'), page.click('.draft[data-draft="1"] button')]);
    await page.waitForSelector('.draft[data-draft="1"] .saved', { timeout: 30_000 });
    const saved = (await page.textContent('.draft[data-draft="1"] .saved')).trim();
    if ((await page.locator('.draft[data-draft="1"] button').count()) !== 0) fail('a saved draft is offered again');
    await page.screenshot({ path: `${shots}/assistant-saved.png`, fullPage: true });
    if (errors.length) fail(`script errors on the pages: ${errors.join('; ')}`);
    console.log(JSON.stringify({ saved }));
  } finally {
    await browser.close();
  }
})().catch((e) => fail(e.stack || String(e)));
