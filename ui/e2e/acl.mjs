// ACL: with the management token (LEGATE_TOKEN) the scenario makes a token that may read the
// catalog but no keys; logged in with it, the services page works and the KV page shows a 403.
import { api, assert, BASE, byTest, newPage, run, screenshot, until } from './lib.mjs';

await run('acl', async (browser) => {
  const policy = await api('PUT', '/v1/acl/policy', {
    Name: 'catalog-read',
    Rules: 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }',
  });
  assert(policy.status === 200, `policy: ${policy.status} ${policy.text}`);
  const token = await api('PUT', '/v1/acl/token', { Description: 'ui reader', Policies: [{ Name: 'catalog-read' }] });
  assert(token.status === 200, `token: ${token.status} ${token.text}`);
  assert((await api('PUT', '/v1/kv/secret/key', 'x')).json === true, 'the secret key');

  const page = await newPage(browser);
  // Without a token (anonymous, default deny) the key's page is refused.
  await page.goto(`${BASE}/ui/dc1/kv/secret/key`);
  await page.locator('[role="alert"][data-status="403"]').waitFor();

  // Log in.
  await page.goto(`${BASE}/ui/dc1/login`);
  await page.fill(byTest('login-token-input'), token.json.SecretID);
  await page.click(byTest('login-submit'));
  // Logged in, the UI goes back to the services; the login page then says who is logged in.
  await page.waitForURL(/\/ui\/dc1\/services$/);
  await page.goto(`${BASE}/ui/dc1/login`);
  await until('logged in', async () => (await page.locator(byTest('login-status')).textContent()).includes('ui reader'));
  const stored = await page.evaluate(() => Object.values(localStorage).join(' '));
  assert(stored.includes(token.json.SecretID), 'the token is kept in local storage');

  // Every request carries it: the services page lists the catalog...
  await page.goto(`${BASE}/ui/dc1/services`);
  await page.locator(byTest('service-row', 'consul')).waitFor();
  // ...and a key's page shows the 403 as such (key lists are filtered, as Consul's).
  await page.goto(`${BASE}/ui/dc1/kv/secret/key`);
  const denied = page.locator('[role="alert"][data-status="403"]');
  await denied.waitFor();
  assert((await denied.textContent()).includes('403'), 'the 403 is shown as such');

  // With the management token the ACL pages list tokens and policies.
  await page.goto(`${BASE}/ui/dc1/login`);
  await page.click(byTest('logout'));
  await page.fill(byTest('login-token-input'), process.env.LEGATE_TOKEN);
  await page.click(byTest('login-submit'));
  await page.waitForURL(/\/ui\/dc1\/services$/);
  await page.goto(`${BASE}/ui/dc1/acls/policies`);
  await page.locator(byTest('policy-row', 'catalog-read')).waitFor();
  await page.goto(`${BASE}/ui/dc1/acls/tokens`);
  await page.locator(byTest('token-row', token.json.AccessorID)).waitFor();
  await screenshot(page, 'acl-tokens');
});
