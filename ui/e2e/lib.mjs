// What every end-to-end scenario shares: Debian's Chromium driven by playwright-core, the agent's
// address (LEGATE_URL, started by the Rust test that runs the scenario), API calls beside the
// browser, and waiting for conditions (never sleeping then asserting).
import { chromium } from 'playwright-core';

export const BASE = process.env.LEGATE_URL ?? 'http://127.0.0.1:8500';
export const TOKEN = process.env.LEGATE_TOKEN ?? '';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/** A page that fails the scenario on a script error in the UI. */
export async function newPage(browser, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...opts });
  const page = await context.newPage();
  page.on('pageerror', (e) => {
    console.error(`UI script error: ${e.message}`);
    process.exitCode = 1;
  });
  page.setDefaultTimeout(20_000);
  return page;
}

/** A call to the agent's API with the scenario's token. */
export async function api(method, path, body, token = TOKEN) {
  const headers = {};
  if (token) headers['X-Consul-Token'] = token;
  const res = await fetch(BASE + path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

export function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

/** Polls `f` until it returns a truthy value. */
export async function until(what, f, timeoutMs = 20_000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

export const byTest = (id, name) =>
  name === undefined ? `[data-testid="${id}"]` : `[data-testid="${id}"][data-name="${name}"]`;

/** Saves a screenshot when SCREENSHOT_DIR is set (scripts/ui-screenshots.sh). */
export async function screenshot(page, name) {
  const dir = process.env.SCREENSHOT_DIR;
  if (!dir) return;
  await page.screenshot({ path: `${dir}/${name}.png`, fullPage: false });
}

/** Prints a measurement for the Rust test (and the issue's note) to pick up. */
export function measure(name, value) {
  console.log(`MEASURE ${name}=${value}`);
}

export async function run(name, scenario) {
  const browser = await launch();
  try {
    await scenario(browser);
    console.log(`PASS ${name}`);
  } catch (e) {
    console.error(`FAIL ${name}: ${e.stack ?? e}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
