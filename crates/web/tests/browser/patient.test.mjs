// The patient pages' journeys in a real browser (issue 14), on the harness
// in testing/browser/lib.mjs: headless Debian chromium against
// `nrls serve --demo` and its demo NHS login, keyboard only, with
// JavaScript on (desktop) and off (320 px wide), axe-core (WCAG 2.0/2.1/2.2
// A and AA) and a reflow check on every page, and a screenshot of each.
//
//   cargo build -p nrls
//   NRLS_SCREENSHOTS=docs/screenshots/patient node --test crates/web/tests/browser/patient.test.mjs
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import * as b from '../../../../testing/browser/lib.mjs';

// The demo NHS login's radios, in order (crates/web/src/patient/demo.rs).
const PATIENTS = ['ada', 'ben', 'cara'];
const NHS_APP = 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 nhsapp-android/2.41.0';

let browser;
let nrls;

before(async () => {
  [browser, nrls] = await Promise.all([b.launch(), b.startNrls()]);
});

after(async () => {
  await browser?.close();
  await nrls?.stop();
});

async function review(page, name) {
  await b.checkA11y(page);
  await b.assertReflows(page);
  await b.screenshot(page, name);
}

const path = (page) => new URL(page.url()).pathname;
const text = (page) => page.evaluate(() => document.body.innerText);

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

async function signIn(page, who, label, { screenshots = false } = {}) {
  await page.goto(`${nrls.url}/my-record/`);
  assert.equal(path(page), '/my-record/sign-in');
  if (screenshots) await review(page, `patient-01-sign-in-${label}`);
  await b.tabTo(page, 'a[href="/my-record/demo-sign-in"]');
  await b.pressEnter(page);
  if (screenshots) await review(page, `patient-02-demo-sign-in-${label}`);
  await chooseRadio(page, 'patient', PATIENTS.indexOf(who));
  await submit(page);
}

for (const { javaScript, viewport, label } of [
  { javaScript: true, viewport: b.DESKTOP, label: 'js-on' },
  { javaScript: false, viewport: b.NARROW_320, label: 'js-off-320' },
]) {
  test(`patient: where my records are, then my say over sharing (${label})`, async () => {
    const page = await b.newPage(browser, { javaScript, viewport });
    await signIn(page, 'ada', label, { screenshots: true });
    assert.equal(path(page), '/my-record/where-my-records-are');
    const records = await text(page);
    assert.match(records, /We found \d+ records? about you/);
    assert.doesNotMatch(records, /ssp:\/\/|ASID/);
    await review(page, `patient-03-where-my-records-are-${label}`);

    await b.tabTo(page, 'a[href="/my-record/shared-care-record"]');
    await b.pressEnter(page);
    assert.equal(path(page), '/my-record/shared-care-record');
    const summary = await text(page);
    assert.match(summary, /Your shared care record/);
    for (const section of ['Allergies', 'Medicines', 'Conditions', 'Immunisations']) {
      assert.match(summary, new RegExp(section));
    }
    assert.doesNotMatch(summary, /ssp:\/\/|ASID|127\.0\.0\.1/);
    await review(page, `patient-03b-shared-care-record-${label}`);
    await page.goto(`${nrls.url}/my-record/where-my-records-are`);

    await b.tabTo(page, 'a[href="/my-record/who-looked"]');
    await b.pressEnter(page);
    const history = await text(page);
    assert.match(history, /Emergency access \(reason given: Emergency treatment\)/);
    assert.match(history, /Yorkshire Ambulance Service \(RX9\)/);
    assert.doesNotMatch(history, /Tom Reid|demo-reid|unconscious/);
    await review(page, `patient-04a-who-looked-${label}`);
    await b.tabTo(page, '#own');
    await b.pressSpace(page);
    await b.tabTo(page, 'main button[type="submit"]');
    await b.pressEnter(page);
    assert.match(await text(page), /You looked/);
    await review(page, `patient-04b-who-looked-own-${label}`);
    await page.goto(`${nrls.url}/my-record/where-my-records-are`);

    await b.tabTo(page, 'a[href="/my-record/sharing"]');
    await b.pressEnter(page);
    assert.match(await text(page), /Your records are shared/);
    await review(page, `patient-04-sharing-${label}`);
    await submit(page);
    assert.equal(path(page), '/my-record/sharing');
    assert.match(await text(page), /You chose to stop sharing/);
    await review(page, `patient-05-sharing-stopped-${label}`);
    await submit(page);
    assert.match(await text(page), /Your records are shared/);

    await b.tabTo(page, 'button.nhsuk-header__account-button');
    await b.pressEnter(page);
    assert.equal(path(page), '/my-record/signed-out');
    await review(page, `patient-06-signed-out-${label}`);
    await page.close();
  });

  test(`patient: not proved to P9, no data (${label})`, async () => {
    const page = await b.newPage(browser, { javaScript, viewport });
    await signIn(page, 'cara', label);
    assert.equal(path(page), '/my-record/prove-who-you-are');
    assert.match(await text(page), /You need to prove who you are first/);
    await review(page, `patient-07-prove-who-you-are-${label}`);
    await page.goto(`${nrls.url}/my-record/where-my-records-are`);
    assert.equal(path(page), '/my-record/prove-who-you-are');
    await page.close();
  });
}

test('patient: inside the NHS App there is no header or footer of our own', async () => {
  const page = await b.newPage(browser, { viewport: b.NARROW_320, userAgent: NHS_APP });
  await signIn(page, 'ada', 'nhs-app');
  assert.equal(path(page), '/my-record/where-my-records-are');
  assert.equal(await page.$('header'), null);
  assert.equal(await page.$('footer'), null);
  await review(page, 'patient-08-where-my-records-are-nhs-app');
  await page.close();
});
