// Browser journeys for the nrls web front ends, written with node's own test
// runner (`node --test testing/browser/journeys/`): Debian's chromium driven
// by puppeteer-core (which never downloads a browser), axe-core for WCAG
// checks, screenshots for reviewers, keyboard-only and reflow helpers, and the
// real nrls binary.
//
//   import { test, before, after } from 'node:test';
//   import * as b from '../lib.mjs';
//   let browser, nrls;
//   before(async () => { browser = await b.launch(); nrls = await b.startNrls(); });
//   after(async () => { await browser?.close(); await nrls?.stop(); });
//   test('find a patient, keyboard only, no JavaScript', async () => {
//     const page = await b.newPage(browser, { javaScript: false });
//     await page.goto(`${nrls.url}/viewer/`);
//     await b.checkA11y(page);
//     await b.tabTo(page, 'input[name="nhs-number"]');
//     await page.keyboard.type('9990000018');
//     await b.pressEnter(page);
//     await b.screenshot(page, 'viewer-patient');
//   });
//
// Environment:
//   NRLS_BIN          the nrls binary (default $CARGO_TARGET_DIR/debug/nrls,
//                     else target/debug/nrls)
//   NRLS_CHROMIUM     the browser (default /usr/bin/chromium)
//   NRLS_SCREENSHOTS  where screenshots go (default target/screenshots)
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import puppeteer from 'puppeteer-core';

export { startOpenIdProvider, rsaKey } from '../oidc/start.mjs';

/** The repository's root. */
export const root = resolve(new URL('.', import.meta.url).pathname, '../..');

// Chromium as this machine must run it: no sandbox (root), no GPU, and none
// of its background connections, which the closed network refuses.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches headless chromium with a fresh profile, removed on close. */
export async function launch() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'nrls-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.NRLS_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    userDataDir,
    args: CHROMIUM_ARGS,
  });
  const close = browser.close.bind(browser);
  browser.close = async () => {
    await close();
    rmSync(userDataDir, { recursive: true, force: true });
  };
  return browser;
}

/** The default desktop viewport. */
export const DESKTOP = { width: 1280, height: 1024, deviceScaleFactor: 1 };
/** WCAG 1.4.10 reflow: content usable at 320 CSS px wide. */
export const NARROW_320 = { width: 320, height: 640, deviceScaleFactor: 1 };
/**
 * 400% browser zoom of a 1280 x 1024 window. Zoom scales the CSS pixel, so
 * the page sees a 320 x 256 CSS px viewport with devicePixelRatio 4: exactly
 * what this emulates (media queries, layout and innerWidth as under real
 * zoom; screenshots at 1280 px, as the user sees them).
 */
export const ZOOM_400 = { width: 320, height: 256, deviceScaleFactor: 4 };

/**
 * A new page (own incognito-like context, so no cookies leak between tests)
 * with JavaScript on or off and a viewport.
 */
export async function newPage(browser, { javaScript = true, viewport = DESKTOP, userAgent } = {}) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setJavaScriptEnabled(javaScript);
  await page.setViewport(viewport);
  if (userAgent) await page.setUserAgent(userAgent);
  const close = page.close.bind(page);
  page.close = async () => { await close(); await context.close(); };
  return page;
}

/** Sets one of the viewports above on an open page (reloads nothing). */
export async function setViewport(page, viewport) {
  await page.setViewport(viewport);
}

/** Fails unless the page reflows: no horizontal scrolling at its viewport. */
export async function assertReflows(page) {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  if (scrollWidth > innerWidth) {
    throw new Error(`${page.url()} scrolls horizontally at ${innerWidth} CSS px: content is ${scrollWidth} px wide`);
  }
}

const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs axe-core (from node_modules, evaluated through the DevTools protocol,
 * so a strict Content-Security-Policy and disabled JavaScript do not stop it)
 * with the WCAG 2.0/2.1/2.2 A and AA rules, and throws a readable report on
 * any violation. Returns axe's results otherwise.
 */
export async function checkA11y(page, { exclude = [] } = {}) {
  const results = await withScripts(page, async () => {
    await page.evaluate(axeSource);
    return page.evaluate(
      (tags, excluded) => window.axe.run(
        { exclude: excluded.map((s) => [s]) },
        { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] },
      ),
      AXE_TAGS,
      exclude,
    );
  });
  if (results.violations.length > 0) {
    throw new Error(`accessibility violations at ${page.url()}:\n${formatViolations(results.violations)}`);
  }
  return results;
}

/** One paragraph per violated rule, one line per offending element. */
export function formatViolations(violations) {
  return violations.map((v) => {
    const nodes = v.nodes.map((n) => `    ${n.target.join(' ')}\n      ${n.failureSummary?.replace(/\n/g, '\n      ')}`).join('\n');
    return `  [${v.impact}] ${v.id}: ${v.help} (${v.helpUrl})\n${nodes}`;
  }).join('\n');
}

// page.evaluate needs script execution; a JavaScript-off page gets it back
// for the duration of the check only (page scripts already skipped stay so).
async function withScripts(page, body) {
  const off = !page.isJavaScriptEnabled();
  if (off) await page.setJavaScriptEnabled(true);
  try {
    return await body();
  } finally {
    if (off) await page.setJavaScriptEnabled(false);
  }
}

/** The folder screenshots go to. */
export function screenshotDir() {
  return resolve(root, process.env.NRLS_SCREENSHOTS ?? 'target/screenshots');
}

/**
 * Saves a PNG as `<dir>/<name>.png` (the whole page unless `fullPage` is
 * false) and returns its path.
 */
export async function screenshot(page, name, { fullPage = true } = {}) {
  const dir = screenshotDir();
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name.replace(/[^A-Za-z0-9._-]+/g, '-')}.png`);
  await page.screenshot({ path, fullPage });
  return path;
}

/** A short description of the focused element ("button#go 'Search'"). */
export async function focused(page) {
  return withScripts(page, () => page.evaluate(() => {
    const e = document.activeElement;
    if (!e || e === document.body) return 'body';
    const id = e.id ? `#${e.id}` : '';
    const text = (e.getAttribute('aria-label') ?? e.textContent ?? e.value ?? '').trim().slice(0, 40);
    return `${e.tagName.toLowerCase()}${id} '${text}'`;
  }));
}

/**
 * Presses Tab (at most `max` times) until the focused element matches
 * `selector`; throws with the focus order seen otherwise. Keyboard only: the
 * page is never clicked.
 */
export async function tabTo(page, selector, { max = 40, shift = false } = {}) {
  const seen = [];
  for (let i = 0; i < max; i += 1) {
    if (shift) await page.keyboard.down('Shift');
    await page.keyboard.press('Tab');
    if (shift) await page.keyboard.up('Shift');
    const matches = await withScripts(page, () => page.evaluate(
      (s) => document.activeElement?.matches(s) ?? false,
      selector,
    ));
    if (matches) return;
    seen.push(await focused(page));
  }
  throw new Error(`no element matching ${selector} reached by Tab at ${page.url()}; focus went:\n  ${seen.join('\n  ')}`);
}

/**
 * Presses Enter on the focused element and, by default, waits for the page
 * load it starts (a link or a submit button); `{ navigation: false }` when it
 * starts none (JavaScript enhancement). Resolves to the navigation's response.
 */
export async function pressEnter(page, { navigation = true } = {}) {
  return pressKey(page, 'Enter', navigation);
}

/**
 * Presses Space on the focused element (ticks a radio or checkbox, presses a
 * button); `{ navigation: true }` waits for the page load it starts.
 */
export async function pressSpace(page, { navigation = false } = {}) {
  return pressKey(page, 'Space', navigation);
}

async function pressKey(page, key, navigation) {
  if (!navigation) {
    await page.keyboard.press(key);
    return null;
  }
  const [response] = await Promise.all([page.waitForNavigation({ timeout: 15_000 }), page.keyboard.press(key)]);
  return response;
}

/**
 * Completes sign-in at the test OpenID provider (testing/oidc/provider.mjs) in
 * the browser: fills its own sign-in form as `accountId`, confirms its consent
 * form, and waits until the browser has left the provider's origin (back at
 * the relying party). The page must be showing the provider when called.
 */
export async function signInAtOp(page, accountId, { maxSteps = 6 } = {}) {
  const op = new URL(page.url()).origin;
  for (let step = 0; step < maxSteps && new URL(page.url()).origin === op; step += 1) {
    const prompt = await page.$eval('input[name="prompt"]', (e) => e.value).catch(() => null);
    if (prompt === 'login') {
      await page.type('input[name="login"]', accountId);
      await page.type('input[name="password"]', 'any');
    } else if (prompt !== 'consent') {
      throw new Error(`no sign-in or consent form at ${page.url()}:\n${(await page.content()).slice(0, 2000)}`);
    }
    await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  }
  if (new URL(page.url()).origin === op) throw new Error(`still at the provider after ${maxSteps} steps: ${page.url()}`);
  return page.url();
}

async function freePort() {
  return new Promise((resolveIt, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolveIt(port));
    });
  });
}

/** The nrls binary the journeys run. */
export function nrlsBinary() {
  if (process.env.NRLS_BIN) return resolve(root, process.env.NRLS_BIN);
  return resolve(root, process.env.CARGO_TARGET_DIR ?? 'target', 'debug/nrls');
}

/**
 * Starts `nrls serve` (by default `--demo`, the embedded store in a fresh data
 * folder) on a free loopback port and resolves once `/livez` answers 200.
 * `args` replaces the default `['--demo']`; `env` adds variables.
 */
export async function startNrls({ args = ['--demo'], env = {} } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'nrls-journey-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(nrlsBinary(), ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, ...args], {
    cwd: dataDir,
    env: { ...process.env, NRLS_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (chunk) => { log += chunk; });
  child.stderr.on('data', (chunk) => { log += chunk; });
  let exited = null;
  child.on('exit', (code, signal) => { exited = `exited (${code ?? signal})`; });
  child.on('error', (e) => { exited = `did not start: ${e.message}`; });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      await new Promise((done) => { child.on('exit', done); child.kill('SIGTERM'); });
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`nrls (${nrlsBinary()}) ${exited}:\n${log}`);
    try {
      const res = await fetch(`${url}/livez`);
      if (res.ok) return { url, process: child, log: () => log, stop };
    } catch { /* not listening yet */ }
    await new Promise((r) => { setTimeout(r, 100); });
  }
  await stop();
  throw new Error(`nrls did not answer /livez within 60 s:\n${log}`);
}
