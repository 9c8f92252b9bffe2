// Plugins: the WASM check the test registered (LEGATE_WASM_CHECK) shows with its plugin, its
// last result and how long the run took.
import { api, assert, BASE, byTest, newPage, run, screenshot, until } from './lib.mjs';

const checkId = process.env.LEGATE_WASM_CHECK;
const plugin = process.env.LEGATE_WASM_PLUGIN;

await run('plugins', async (browser) => {
  assert(checkId && plugin, 'LEGATE_WASM_CHECK and LEGATE_WASM_PLUGIN are set');
  // The agent has run it at least once.
  const ran = await until('a run of the WASM check', async () => {
    const r = await api('GET', '/v1/agent/plugins');
    return r.json?.Checks?.find((c) => c.CheckID === checkId && c.Runs > 0);
  });
  const page = await newPage(browser);
  await page.goto(`${BASE}/ui/dc1/plugins`);
  const card = page.locator(byTest('plugin-card', plugin));
  await card.waitFor();
  assert((await card.locator(byTest('plugin-imports')).textContent()).length > 0, 'the imports are listed');
  const check = card.locator(byTest('plugin-check', checkId));
  await check.locator(`[data-status="${ran.Status}"]`).first().waitFor();
  const output = (await check.locator(byTest('plugin-check-output')).textContent()).trim();
  assert(ran.Output && output.includes(ran.Output.trim().slice(0, 40)), `the last output is shown: ${output}`);
  await page.locator(byTest('plugin-cache')).waitFor();
  await screenshot(page, 'plugins');
});
