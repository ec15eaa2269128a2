// Clinician viewer (issue 13), served by `nrls serve --demo`: sign in as a
// demo clinician and find a patient's records, keyboard only, with
// JavaScript on (desktop) and off (320 px wide); axe-core on every page, a
// reflow check at 400% zoom, and a screenshot of each page.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import * as b from '../lib.mjs';

const PATIENT = '9990000018';
let browser;
let nrls;

before(async () => {
  [browser, nrls] = await Promise.all([b.launch(), b.startNrls()]);
});

after(async () => {
  await browser?.close();
  await nrls?.stop();
});

/** Every page of a journey: zero axe violations, reflows, a screenshot. */
async function reviewPage(page, name) {
  await b.checkA11y(page);
  await b.assertReflows(page);
  await b.screenshot(page, name);
}

for (const { javaScript, viewport, label } of [
  { javaScript: true, viewport: b.DESKTOP, label: 'js-on' },
  { javaScript: false, viewport: b.NARROW_320, label: 'js-off-320' },
]) {
  test(`viewer: demo sign-in to a patient's records by keyboard alone (${label})`, async () => {
    const page = await b.newPage(browser, { javaScript, viewport });
    await page.goto(`${nrls.url}/viewer/`);
    assert.match(new URL(page.url()).pathname, /^\/viewer\/sign-in/);
    await reviewPage(page, `viewer-sign-in-${label}`);

    await b.tabTo(page, 'a[href="/viewer/demo-sign-in"]');
    await b.pressEnter(page);
    assert.equal(new URL(page.url()).pathname, '/viewer/demo-sign-in');
    await reviewPage(page, `viewer-demo-sign-in-${label}`);

    await b.tabTo(page, 'input[name="clinician"]');
    await b.pressSpace(page);
    await b.tabTo(page, 'button[type="submit"]');
    await b.pressEnter(page);
    if (new URL(page.url()).pathname === '/viewer/choose-role') {
      await reviewPage(page, `viewer-choose-role-${label}`);
      await b.tabTo(page, 'input[name="role"]');
      await b.pressSpace(page);
      await b.tabTo(page, 'button[type="submit"]');
      await b.pressEnter(page);
    }
    await reviewPage(page, `viewer-find-patient-${label}`);

    await b.tabTo(page, '#nhs-number');
    await page.keyboard.type(PATIENT);
    await b.tabTo(page, 'button[type="submit"]');
    await b.pressEnter(page);
    assert.match(new URL(page.url()).pathname, new RegExp(`/viewer/patient/${PATIENT}/`));
    await reviewPage(page, `viewer-records-${label}`);

    await page.setViewport(b.ZOOM_400);
    await b.assertReflows(page);
    // What the user sees first at 400% (a whole long page at 4x is megapixels).
    await b.screenshot(page, `viewer-records-zoom-400-${label}`, { fullPage: false });
    await page.close();
  });
}
