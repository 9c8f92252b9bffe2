// `node e2e/run.mjs <scenario>`: one end-to-end scenario against the agent at LEGATE_URL.
// The Rust tests in tests/tests/ui.rs start the agents and run these.
const name = process.argv[2];
const scenarios = ['services', 'kv', 'plugins', 'acl', 'cluster', 'load'];
if (!scenarios.includes(name)) {
  console.error(`usage: node e2e/run.mjs <${scenarios.join('|')}>`);
  process.exit(2);
}
await import(`./${name}.mjs`);
