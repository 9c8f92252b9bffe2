// Builds http_check.wasm from app.js with componentize-js (npm). The jco CLI cannot read a
// --wit path outside its sandbox, so the API is called directly. `http` and `fetch-event` are
// disabled: they would import wasi:http, which Legate does not provide (plugins use
// legate:plugin/http instead).
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const { component } = await componentize({
  sourcePath: join(here, 'app.js'),
  witPath: join(here, '../../../sdk/wit'),
  worldName: 'check',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(join(here, 'http_check.wasm'), component);
console.log(`http_check.wasm: ${component.length} bytes`);
