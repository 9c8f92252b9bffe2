// What the UI costs: the bytes of a first load (compressed, as sent), and the requests an idle
// tab makes per view (IDLE_SECONDS, default 30).
import { assert, BASE, byTest, measure, newPage, run } from './lib.mjs';

const idleSeconds = Number(process.env.IDLE_SECONDS ?? 30);

await run('load', async (browser) => {
  const page = await newPage(browser);
  // The page, its script and its styles (the API's long polls never finish: not counted).
  const finished = [];
  page.on('requestfinished', (r) => !r.url().includes('/v1/') && finished.push(r));
  await page.goto(`${BASE}/ui/dc1/services`, { waitUntil: 'load' });
  await page.locator(byTest('service-row', 'consul')).waitFor();
  assert(finished.length >= 3, `page, script and styles loaded: ${finished.map((r) => r.url())}`);
  let bytes = 0;
  for (const r of finished) {
    const sizes = await r.sizes();
    bytes += sizes.responseBodySize + sizes.responseHeadersSize;
  }
  measure('first_load_bytes', bytes);
  assert(bytes > 0 && bytes < 300 * 1024, `first load under 300 KB: ${bytes}`);

  // Idle: only the views' long polls (blocking queries re-armed on change or after `wait`).
  const api = [];
  page.on('request', (r) => r.url().includes('/v1/') && api.push(r.url()));
  await new Promise((r) => setTimeout(r, idleSeconds * 1000));
  measure('idle_api_requests', api.length);
  measure('idle_seconds', idleSeconds);
  for (const u of api) console.log(`  idle request: ${u.replace(BASE, '')}`);
  // Nothing changes in the agent meanwhile: no view should ask more than once per period.
  assert(api.length <= 2, `an idle tab stays quiet: ${api.length} requests in ${idleSeconds} s`);
});
