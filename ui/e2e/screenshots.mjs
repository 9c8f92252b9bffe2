// The screenshots in docs/ui/ (scripts/ui-screenshots.sh starts the agent and fills it):
// the main pages at desktop width in the light theme, two in the dark theme and at phone width.
import { BASE, byTest, launch } from './lib.mjs';

const dir = process.env.SCREENSHOT_DIR ?? '../docs/ui';
const pages = [
  ['services', '/ui/dc1/services', byTest('service-row', 'web')],
  ['service', '/ui/dc1/services/web', byTest('instance-row', 'web-1')],
  ['nodes', '/ui/dc1/nodes', byTest('node-row')],
  ['kv', '/ui/dc1/kv/app/', byTest('kv-row')],
  ['kv-key', '/ui/dc1/kv/app/config.json', byTest('kv-value')],
  ['plugins', '/ui/dc1/plugins', byTest('plugin-card')],
  ['events', '/ui/dc1/events', byTest('event-row')],
  ['cluster', '/ui/dc1/cluster', byTest('raft-peer')],
];

const browser = await launch();
const shoot = async (name, path, ready, opts) => {
  const context = await browser.newContext(opts);
  const page = await context.newPage();
  await page.goto(BASE + path);
  await page.locator(ready).first().waitFor({ timeout: 20_000 });
  await page.screenshot({ path: `${dir}/${name}.png` });
  await context.close();
  console.log(`${dir}/${name}.png`);
};
for (const [name, path, ready] of pages) {
  await shoot(name, path, ready, { viewport: { width: 1280, height: 720 } });
}
await shoot('services-dark', '/ui/dc1/services', pages[0][2], { viewport: { width: 1280, height: 720 }, colorScheme: 'dark' });
await shoot('service-dark', '/ui/dc1/services/web', pages[1][2], { viewport: { width: 1280, height: 720 }, colorScheme: 'dark' });
await shoot('services-phone', '/ui/dc1/services', pages[0][2], { viewport: { width: 390, height: 844 }, isMobile: true });
await browser.close();
