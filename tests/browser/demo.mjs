// Drives the example proxy's demo page in headless Chromium (Debian's /usr/bin/chromium) for
// tests/browser.rs: call → revoke → call (403 + Link) → re-link through the provider's consent
// page → call → unlink → links; then the call from a page on another origin. Prints what it saw
// as JSON (the Rust test asserts it) and saves a screenshot per step under the artifacts folder.
//
// node tests/browser/demo.mjs <proxy origin> <other origin> <artifacts folder>
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [proxy, otherOrigin, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = [];
try {
  const page = await browser.newPage();
  const snapshot = async (step) => {
    await page.screenshot({ path: `${artifacts}/${String(seen.length).padStart(2, '0')}-${step}.png` });
  };
  // Clicks a button of the demo page and waits for the answer it shows.
  const press = async (button) => {
    await page.evaluate(() => { delete document.querySelector('#out').dataset.status; });
    await page.click(button);
    await page.waitForFunction(() => document.querySelector('#out').dataset.status);
    const out = page.locator('#out');
    const result = {
      step: button.slice(1),
      status: Number(await out.getAttribute('data-status')),
      text: await out.textContent(),
      relink_offered: await page.locator('#relink').isVisible(),
    };
    seen.push(result);
    await snapshot(result.step);
  };

  await page.goto(`${proxy}/demo`);
  await press('#call');
  await press('#revoke');
  await press('#call');
  // Re-link: the page asks for the authorization URL and navigates to the provider's consent.
  await page.click('#relink');
  await page.waitForSelector('#allow');
  seen.push({ step: 'consent', url: page.url(), text: await page.textContent('body') });
  await snapshot('consent');
  await Promise.all([page.waitForURL(`${proxy}/demo`), page.click('#allow')]);
  seen.push({ step: 'back', url: page.url() });
  await press('#call');
  await press('#unlink');
  await press('#links');

  // An app on another origin reads the U4 answer's signals through CORS.
  const other = await browser.newPage();
  await other.goto(`${otherOrigin}/demo/other-origin`);
  await other.click('#call');
  await other.waitForFunction(() => document.querySelector('#out').dataset.status);
  seen.push({
    step: 'other-origin',
    url: other.url(),
    status: Number(await other.getAttribute('#out', 'data-status')),
    proxy_status: await other.getAttribute('#out', 'data-proxy-status'),
    link: await other.getAttribute('#out', 'data-link'),
  });
  await other.screenshot({ path: `${artifacts}/${String(seen.length).padStart(2, '0')}-other-origin.png` });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
