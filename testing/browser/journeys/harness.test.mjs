// The browser harness proves itself on static fixtures served with a strict
// Content-Security-Policy (as nrls's pages are): every check must pass on the
// accessible page and fail on the deliberately broken one, or it checks
// nothing. The last test starts the real nrls binary.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join } from 'node:path';
import { after, before, test } from 'node:test';

import * as b from '../lib.mjs';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css', '.js': 'text/javascript' };
let browser;
let server;
let base;

before(async () => {
  server = createServer((req, res) => {
    const file = join(fixtures, new URL(req.url, 'http://x').pathname.replace(/^\/+/, ''));
    if (!file.startsWith(fixtures) || !existsSync(file) || statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'",
    });
    res.end(readFileSync(file));
  });
  await new Promise((done) => { server.listen(0, '127.0.0.1', done); });
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await b.launch();
});

after(async () => {
  await browser?.close();
  server?.close();
});

for (const javaScript of [true, false]) {
  test(`an accessible page passes axe with JavaScript ${javaScript ? 'on' : 'off'}`, async () => {
    const page = await b.newPage(browser, { javaScript });
    await page.goto(`${base}/clean.html`);
    const state = await page.$eval('#js-state', (e) => e.textContent);
    assert.equal(state, javaScript ? 'JavaScript is on' : 'JavaScript is off');
    const results = await b.checkA11y(page);
    assert.ok(results.passes === undefined || Array.isArray(results.passes));
    const shot = await b.screenshot(page, `harness-clean-js-${javaScript ? 'on' : 'off'}`);
    assert.deepEqual([...readFileSync(shot).subarray(1, 4)].map((c) => String.fromCharCode(c)).join(''), 'PNG');
    await page.close();
  });
}

test('checkA11y fails on violations with a report naming each rule and element', async () => {
  const page = await b.newPage(browser, { javaScript: false });
  await page.goto(`${base}/violations.html`);
  const error = await b.checkA11y(page).then(() => null, (e) => e);
  assert.ok(error, 'checkA11y passed a page with known violations');
  for (const rule of ['html-has-lang', 'image-alt', 'label', 'color-contrast']) {
    assert.match(error.message, new RegExp(`\\] ${rule}: `), `${rule} missing from:\n${error.message}`);
  }
  assert.match(error.message, /img\b/);
  await page.close();
});

test('keyboard only: Tab reaches the search button and Enter submits the form', async () => {
  const page = await b.newPage(browser, { javaScript: false });
  await page.goto(`${base}/clean.html`);
  await b.tabTo(page, '#nhs-number');
  await page.keyboard.type('9990000018');
  await b.tabTo(page, '#search');
  assert.match(await b.focused(page), /^button#search 'Search'/);
  await b.pressEnter(page);
  assert.equal(new URL(page.url()).searchParams.get('nhs-number'), '9990000018');
  await assert.rejects(b.tabTo(page, '#no-such-element', { max: 5 }), /no element matching #no-such-element/);
  await page.close();
});

test('400% zoom is a 320 CSS px viewport at 4 device pixels per px, and reflow is checked', async () => {
  const page = await b.newPage(browser, { viewport: b.ZOOM_400 });
  await page.goto(`${base}/clean.html`);
  const seen = await page.evaluate(() => [window.innerWidth, window.devicePixelRatio]);
  assert.deepEqual(seen, [320, 4]);
  await b.assertReflows(page);
  await b.screenshot(page, 'harness-clean-zoom-400');
  await b.setViewport(page, b.NARROW_320);
  await page.goto(`${base}/violations.html`);
  await assert.rejects(b.assertReflows(page), /scrolls horizontally at 320 CSS px/);
  await page.close();
});

test('startNrls runs the real binary until it answers', async () => {
  const nrls = await b.startNrls();
  try {
    const page = await b.newPage(browser, { javaScript: false });
    const response = await page.goto(`${nrls.url}/livez`);
    assert.equal(response.status(), 200);
    await page.close();
  } finally {
    await nrls.stop();
  }
  await assert.rejects(
    b.startNrls({ args: ['--no-such-flag'] }),
    /nrls .* exited/,
  );
});

test('signInAtOp signs in at the real OpenID provider and returns to the relying party', async () => {
  const { createHash, randomBytes } = await import('node:crypto');
  const redirect = `${base}/clean.html`;
  const client = b.rsaKey('rp-1');
  const op = await b.startOpenIdProvider({
    profile: 'cis2',
    clients: [{ client_id: 'journey-rp', jwks: { keys: [client.public_jwk] }, redirect_uris: [redirect] }],
    accounts: { 555000000001: { name: 'Alex Carter', nhsid_useruid: '555000000001' } },
  });
  try {
    const verifier = randomBytes(32).toString('base64url');
    const authorize = new URL(`${op.issuer}/auth`);
    for (const [k, v] of Object.entries({
      response_type: 'code', client_id: 'journey-rp', redirect_uri: redirect, scope: 'openid profile',
      state: 'journey-state', nonce: 'n-1', code_challenge_method: 'S256',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    })) authorize.searchParams.set(k, v);
    const page = await b.newPage(browser, { javaScript: false });
    await page.goto(authorize.href);
    const back = new URL(await b.signInAtOp(page, '555000000001'));
    assert.equal(back.origin + back.pathname, redirect);
    assert.equal(back.searchParams.get('state'), 'journey-state');
    assert.match(back.searchParams.get('code') ?? '', /^[\w-]{20,}$/);
    assert.equal(back.searchParams.get('iss'), op.issuer);
    await page.close();
  } finally {
    await op.stop();
  }
});
