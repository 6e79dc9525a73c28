// What the browser scripts share: Debian's headless Chromium launched the same way, signing in,
// and failing with a message that names the script.
'use strict';
const { chromium } = require('playwright-core');

function failer(name) {
  return (message) => {
    console.error(`${name}: ${message}`);
    process.exit(1);
  };
}

function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

// A new page, signed in as `user`; script errors on it are collected in `errors`.
async function signedIn(browser, base, user, password, errors) {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${base}/login`);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
  return page;
}

module.exports = { failer, launch, signedIn };
