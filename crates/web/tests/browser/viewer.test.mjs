// The clinician viewer's journeys in a real browser (issue 13), on the test
// harness in testing/browser/lib.mjs: headless Debian chromium against
// `nrls serve --demo`, keyboard only, with JavaScript on (desktop) and off
// (320 px wide), axe-core (WCAG 2.0/2.1/2.2 A and AA) on every page, a
// reflow check on every page and at 400% zoom on the patient pages, and a
// screenshot of each page.
//
//   scripts/test-deps                           # chromium, node packages (once)
//   cargo build -p nrls
//   NRLS_SCREENSHOTS=docs/screenshots/viewer node --test crates/web/tests/browser/
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import * as b from '../../../../testing/browser/lib.mjs';

// Demo patients (crates/nrls/src/demo): 0 has every pointer type, 2 has a
// source that never answers (partial record), 4 objects to sharing.
const RICH = '9990000018';
const PARTIAL = '9990000034';
const OBJECTING = '9990000050';
// The demo sign-in's radios, in order.
const CLINICIANS = ['patel', 'reid', 'okafor', 'hughes'];

let browser;
let nrls;

before(async () => {
  [browser, nrls] = await Promise.all([b.launch(), b.startNrls()]);
});

after(async () => {
  await browser?.close();
  await nrls?.stop();
});

/** Every page: zero axe violations, no horizontal scrolling, a screenshot. */
async function review(page, name) {
  await b.checkA11y(page);
  await b.assertReflows(page);
  await b.screenshot(page, name);
}

/** A patient page also at 400% zoom, then back. */
async function reviewZoomed(page, name, viewport) {
  await review(page, name);
  await b.setViewport(page, b.ZOOM_400);
  await b.assertReflows(page);
  await b.screenshot(page, `${name}-zoom-400`);
  await b.setViewport(page, viewport);
}

const path = (page) => new URL(page.url()).pathname;
const text = (page) => page.evaluate(() => document.body.innerText);

/** Ticks the n-th radio of a group by keyboard: Tab in, arrows along. */
async function chooseRadio(page, name, index) {
  await b.tabTo(page, `input[name="${name}"]`);
  if (index === 0) {
    await b.pressSpace(page);
  }
  for (let i = 0; i < index; i += 1) {
    await page.keyboard.press('ArrowDown');
  }
}

async function submit(page) {
  await b.tabTo(page, 'main button[type="submit"]');
  return b.pressEnter(page);
}

/** From the start page to "Find a patient", as one demo clinician. */
async function signIn(page, clinician, label, { screenshots = false } = {}) {
  await page.goto(`${nrls.url}/viewer/`);
  assert.equal(path(page), '/viewer/sign-in');
  if (screenshots) await review(page, `viewer-01-sign-in-${label}`);
  await b.tabTo(page, 'a[href="/viewer/demo-sign-in"]');
  await b.pressEnter(page);
  if (screenshots) await review(page, `viewer-02-demo-sign-in-${label}`);
  await chooseRadio(page, 'clinician', CLINICIANS.indexOf(clinician));
  await submit(page);
}

async function findPatient(page, nhsNumber) {
  await b.tabTo(page, '#nhs-number');
  await page.keyboard.type(nhsNumber);
  return submit(page);
}

for (const { javaScript, viewport, label } of [
  { javaScript: true, viewport: b.DESKTOP, label: 'js-on' },
  { javaScript: false, viewport: b.NARROW_320, label: 'js-off-320' },
]) {
  test(`viewer: find a patient, where the records are, the shared care record (${label})`, async () => {
    const page = await b.newPage(browser, { javaScript, viewport });
    await signIn(page, 'patel', label, { screenshots: true });
    assert.equal(path(page), '/viewer/patient');
    await review(page, `viewer-03-find-patient-${label}`);

    // A mistyped NHS number: the error summary links to the field.
    await findPatient(page, '9990000019');
    assert.match(await text(page), /There is a problem/);
    assert.equal(await page.$eval('.nhsuk-error-summary a', (a) => a.getAttribute('href')), '#nhs-number');
    await review(page, `viewer-04-find-patient-error-${label}`);
    await page.$eval('#nhs-number', (input) => { input.value = ''; });

    await findPatient(page, RICH);
    assert.equal(path(page), `/viewer/patient/${RICH}/records`);
    const records = await text(page);
    assert.ok(records.indexOf('Mental health crisis plan') < records.indexOf('Advance care plan'));
    assert.match(records, /Retrieved through the Spine Secure Proxy \(target ASID \d+\)/);
    await reviewZoomed(page, `viewer-05-records-${label}`, viewport);

    await b.tabTo(page, `a[href="/viewer/patient/${RICH}/record"]`);
    await b.pressEnter(page);
    assert.match(await text(page), /Every source known to hold part of this patient's record answered/);
    assert.match(await text(page), /recorded differently by/);
    await reviewZoomed(page, `viewer-06-shared-record-${label}`, viewport);

    // A partial record cannot pass for a complete one.
    await page.goto(`${nrls.url}/viewer/patient`);
    await findPatient(page, PARTIAL);
    await b.tabTo(page, `a[href="/viewer/patient/${PARTIAL}/record"]`);
    await b.pressEnter(page);
    const partial = await text(page);
    assert.match(partial, /This record is incomplete/);
    assert.match(partial, /never answers.*\(RR8\)/);
    await reviewZoomed(page, `viewer-07-shared-record-partial-${label}`, viewport);

    // Recent patients, then sign out from the header.
    await page.goto(`${nrls.url}/viewer/patient`);
    assert.match(await text(page), /999 000 0034[\s\S]*999 000 0018/);
    await b.tabTo(page, 'button.nhsuk-header__account-button');
    await b.pressEnter(page);
    assert.equal(path(page), '/viewer/signed-out');
    await review(page, `viewer-08-signed-out-${label}`);
    await page.close();
  });

  test(`viewer: no relationship, then break-glass with a reason (${label})`, async () => {
    const page = await b.newPage(browser, { javaScript, viewport });
    await signIn(page, 'reid', label);
    const refused = await findPatient(page, RICH);
    assert.equal(refused.status(), 403);
    assert.match(await text(page), /You need a reason to see this patient's records/);
    await review(page, `viewer-09-relationship-${label}`);

    // Nothing chosen: every problem in the error summary.
    await submit(page);
    const errors = await page.$$eval('.nhsuk-error-summary a', (as) => as.map((a) => a.getAttribute('href')));
    assert.deepEqual(errors, ['#basis', '#category', '#detail']);
    await review(page, `viewer-10-relationship-errors-${label}`);

    await chooseRadio(page, 'basis', 1);
    await b.tabTo(page, '#category');
    await page.keyboard.type('Emergency');
    await b.tabTo(page, '#detail');
    await page.keyboard.type('Unconscious at the scene, no history available');
    await submit(page);
    assert.equal(path(page), `/viewer/patient/${RICH}/records`);
    const granted = await text(page);
    assert.match(granted, /Emergency access in use/);
    assert.match(granted, /Mental health crisis plan/);
    await reviewZoomed(page, `viewer-11-records-break-glass-${label}`, viewport);

    // The banner stays for the rest of the session.
    await page.goto(`${nrls.url}/viewer/patient`);
    assert.match(await text(page), /Emergency access in use/);
    await page.close();
  });

  test(`viewer: two roles to choose from, and a patient's objection (${label})`, async () => {
    const page = await b.newPage(browser, { javaScript, viewport });
    await signIn(page, 'hughes', label);
    assert.equal(path(page), '/viewer/choose-role');
    await review(page, `viewer-12-choose-role-${label}`);
    await chooseRadio(page, 'role', 0);
    await submit(page);
    assert.equal(path(page), '/viewer/patient');
    await findPatient(page, OBJECTING);
    assert.match(await text(page), /This patient has objected to sharing their records/);
    await reviewZoomed(page, `viewer-13-records-objection-${label}`, viewport);
    await page.close();
  });

  test(`viewer: a sensitive record only for the sensitive-records role (${label})`, async () => {
    const page = await b.newPage(browser, { javaScript, viewport });
    await signIn(page, 'okafor', label);
    await findPatient(page, RICH);
    const crisisPlans = await page.$$eval('h3', (hs) => hs.filter((h) => h.textContent.includes('Mental health crisis plan')).length);
    assert.equal(crisisPlans, 1);
    const rows = await page.$$eval('h3', (hs) => {
      const h = hs.find((x) => x.textContent.includes('Mental health crisis plan'));
      return h.nextElementSibling.querySelectorAll('tbody tr').length;
    });
    assert.equal(rows, 2, 'the labelled crisis plan is shown to this role');
    await review(page, `viewer-14-records-sensitive-${label}`);
    await page.close();
  });
}
