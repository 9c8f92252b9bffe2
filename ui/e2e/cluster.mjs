// Cluster and events: this agent as a member and the Raft leader, a reload's result (a good
// config, then a broken file: the error names it and the running config stays), and an event
// fired from the UI reaching the agent's event list. LEGATE_CONFIG_FILE is the agent's config
// file the scenario may rewrite.
import { writeFileSync } from 'node:fs';
import { api, assert, BASE, byTest, newPage, run, screenshot, until } from './lib.mjs';

await run('cluster', async (browser) => {
  const file = process.env.LEGATE_CONFIG_FILE;
  assert(file, 'LEGATE_CONFIG_FILE is set');
  const self = (await api('GET', '/v1/agent/self')).json;
  const node = self.Config.NodeName;

  const page = await newPage(browser);
  await page.goto(`${BASE}/ui/dc1/cluster`);
  await page.locator(byTest('member-row', node)).waitFor();
  await page.locator(`${byTest('raft-peer', node)}[data-leader="true"]`).waitFor();
  await page.locator(byTest('config-sources')).filter({ hasText: file }).waitFor();

  // A reload from the UI: the new value applied.
  writeFileSync(file, 'node_meta { rack = "r2" }\n');
  await page.click(byTest('reload-button'));
  await page.locator(`${byTest('last-reload')}[data-ok="true"]`).waitFor();
  await until('the new meta runs', async () => (await api('GET', '/v1/agent/self')).json.Meta.rack === 'r2');
  await screenshot(page, 'cluster');

  // A broken file: the reload fails, says where, and the running config stays.
  writeFileSync(file, 'node_meta { rack = \n');
  await page.click(byTest('reload-button'));
  const failed = page.locator(`${byTest('last-reload')}[data-ok="false"]`);
  await failed.waitFor();
  assert((await failed.textContent()).includes(file.split('/').pop()), 'the error names the file');
  assert((await api('GET', '/v1/agent/self')).json.Meta.rack === 'r2', 'the running config stayed');

  // Events: fire one from the UI; the list (a blocking query) shows it.
  await page.goto(`${BASE}/ui/dc1/events`);
  await page.fill(byTest('event-name-input'), 'deploy');
  await page.fill(byTest('event-payload-input'), 'v2.1');
  await page.click(byTest('event-fire'));
  const row = page.locator(byTest('event-row', 'deploy'));
  await row.waitFor();
  assert((await row.textContent()).includes('v2.1'), 'the payload is shown');
  const list = (await api('GET', '/v1/event/list?name=deploy')).json;
  assert(list.length === 1 && list[0].Name === 'deploy', 'the agent has the event');
});
