// Key/Value: create a key in a folder, edit it, see a concurrent edit reported instead of
// overwritten, delete it; the API sees each step.
import { api, assert, BASE, byTest, newPage, run, screenshot, until } from './lib.mjs';

const value = async (key) => {
  const r = await api('GET', `/v1/kv/${key}?raw`);
  return r.status === 200 ? r.text : null;
};

await run('kv', async (browser) => {
  const page = await newPage(browser);
  // A key that does not exist yet: its page blocks on the 404's index and shows the key as soon
  // as it is written (well within a 10 s re-read).
  const missing = page.waitForResponse((r) => r.url().includes('/v1/kv/app/later') && r.status() === 404);
  await page.goto(`${BASE}/ui/dc1/kv/app/later`);
  await missing;
  assert((await api('PUT', '/v1/kv/app/later', 'arrived')).json === true, 'the late key');
  await page.locator(byTest('kv-value')).filter({ hasText: 'arrived' }).waitFor({ timeout: 5_000 });

  await page.goto(`${BASE}/ui/dc1/kv/?new=1`);
  await page.locator(byTest('kv-create-form')).waitFor();
  await page.fill(byTest('kv-key-input'), 'app/config');
  await page.fill(byTest('kv-value-input'), '{"replicas":1}');
  await page.click(byTest('kv-save'));
  await until('the key stored', async () => (await value('app/config')) === '{"replicas":1}');

  // The page goes to the new key's folder, which lists it; the key's page shows its value.
  await page.waitForURL(/\/kv\/app\/$/);
  await page.locator(byTest('kv-row', 'app/config')).locator('a').first().click();
  await page.waitForURL(/\/kv\/app\/config/);
  await until('the value shown', async () =>
    (await page.locator(byTest('kv-value')).textContent()).includes('"replicas":1'),
  );
  await screenshot(page, 'kv');

  // Edit and save.
  await page.fill(byTest('kv-value-input'), '{"replicas":2}');
  await page.click(byTest('kv-save'));
  await until('the edit stored', async () => (await value('app/config')) === '{"replicas":2}');

  // A concurrent edit: someone else writes while this page edits; saving reports it.
  await until('the view caught up', async () =>
    (await page.locator(byTest('kv-value')).textContent()).includes('"replicas":2'),
  );
  await page.fill(byTest('kv-value-input'), '{"replicas":3}');
  const other = await api('PUT', '/v1/kv/app/config', '{"replicas":9}');
  assert(other.json === true, 'the concurrent write');
  // The edit holds (a draft), whatever the live read and the last save's answer did meanwhile.
  assert((await page.inputValue(byTest('kv-value-input'))) === '{"replicas":3}', 'the draft held');
  await page.click(byTest('kv-save'));
  await page.locator(byTest('kv-cas-conflict')).waitFor();
  assert((await value('app/config')) === '{"replicas":9}', 'the concurrent write was not overwritten');

  // Delete.
  await page.goto(`${BASE}/ui/dc1/kv/app/config`);
  await until('the value shown', async () =>
    (await page.locator(byTest('kv-value')).textContent()).includes('"replicas":9'),
  );
  await page.click(byTest('kv-delete'));
  await page.click(byTest('confirm-delete'));
  await until('the key deleted', async () => (await value('app/config')) === null);
});
