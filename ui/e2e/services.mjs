// Services: the list shows a registered service; its page shows the instance's check, which goes
// critical live (no reload) when the check's target stops.
import http from 'node:http';
import { api, assert, BASE, byTest, newPage, run, screenshot, until } from './lib.mjs';

await run('services', async (browser) => {
  const target = http.createServer((_, res) => res.end('ok'));
  await new Promise((r) => target.listen(0, '127.0.0.1', r));
  const port = target.address().port;
  const reg = await api('PUT', '/v1/agent/service/register', {
    Name: 'web',
    ID: 'web-1',
    Port: port,
    Tags: ['v1', 'frontend'],
    Meta: { team: 'ui' },
    Check: { CheckID: 'web-http', Name: 'web http', HTTP: `http://127.0.0.1:${port}/`, Interval: '1s' },
  });
  assert(reg.status === 200, `register: ${reg.status} ${reg.text}`);
  await api('PUT', '/v1/agent/service/register', { Name: 'db', ID: 'db-1', Port: 5432, Tags: ['primary'] });
  await until('the check passing in the catalog', async () => {
    const r = await api('GET', '/v1/health/checks/web');
    return r.json?.some((c) => c.CheckID === 'web-http' && c.Status === 'passing');
  });

  const page = await newPage(browser);
  let navigations = 0;
  page.on('framenavigated', (f) => f === page.mainFrame() && navigations++);
  // The agent's root redirects to the UI, which opens on the services of the agent's datacenter.
  await page.goto(BASE + '/');
  await page.waitForURL(/\/ui\/dc1\/services$/);
  const row = page.locator(byTest('service-row', 'web'));
  await row.waitFor();
  assert((await row.textContent()).includes('frontend'), 'the list shows the tags');
  await page.locator(byTest('service-row', 'db')).waitFor();

  // Search narrows the list and lands in the URL (bookmarkable).
  await page.fill(byTest('service-search'), 'web');
  await until('db filtered out', async () => (await page.locator(byTest('service-row', 'db')).count()) === 0);
  assert(page.url().includes('filter=web'), `search in the URL: ${page.url()}`);
  await screenshot(page, 'services');

  // Keyboard: the row's link is reachable and opens the service.
  await row.locator('a').first().focus();
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/ui\/dc1\/services\/web$/);
  const check = page.locator(byTest('check', 'web-http'));
  await check.locator('[data-status="passing"]').first().waitFor();
  assert((await page.locator(byTest('instance-row', 'web-1')).count()) === 1, 'the instance is listed');
  await screenshot(page, 'service');

  // The target stops: the page follows through its blocking query.
  const before = navigations;
  await new Promise((r) => target.close(r));
  target.closeAllConnections?.();
  await check.locator('[data-status="critical"]').first().waitFor({ timeout: 20_000 });
  assert(navigations === before, 'the page updated in place, without a reload');
  // A bookmarked address opens the same page directly.
  const direct = await newPage(browser);
  await direct.goto(`${BASE}/ui/dc1/services/web`);
  await direct.locator(byTest('check', 'web-http')).locator('[data-status="critical"]').first().waitFor();
});
