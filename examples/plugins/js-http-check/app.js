// HTTP JSON check in JavaScript: the same check as plugins/http-json (status, a JSON field,
// latency warning), built into a WASM component with componentize-js against sdk/wit.
//
// Args: url (required), json_path (dotted), json_equals, warn_ms.
import { send } from 'legate:plugin/http@0.1.0';

const KNOWN = ['url', 'json_path', 'json_equals', 'warn_ms'];

function args(config) {
  return Object.fromEntries(config);
}

function lookup(doc, path) {
  for (const part of path.split('.').filter((p) => p !== '')) {
    if (doc !== null && typeof doc === 'object' && part in doc) {
      doc = doc[part];
    } else {
      return undefined;
    }
  }
  return doc;
}

const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v));

// Returning is Ok; throwing a string is Err(string).
export function validate(config) {
  const a = args(config);
  const unknown = Object.keys(a).filter((k) => !KNOWN.includes(k));
  if (unknown.length > 0) {
    throw `unknown arg "${unknown[0]}" (known: ${KNOWN.join(', ')})`;
  }
  const url = a.url ?? '';
  if (!url.startsWith('http://') && !url.startsWith('https://')) {
    throw `arg "url": "${url}" is not an http:// or https:// URL`;
  }
  if (a.warn_ms !== undefined && !/^\d+$/.test(a.warn_ms)) {
    throw `arg "warn_ms": cannot parse "${a.warn_ms}"`;
  }
}

export function check(ctx, config) {
  const a = args(config);
  const url = a.url;
  let resp;
  try {
    resp = send({ method: 'get', url, headers: [], body: undefined, timeoutMs: 0, tlsSkipVerify: false });
  } catch (e) {
    const err = e.payload ?? e;
    throw `${url}: ${err.tag}${err.val !== undefined ? ': ' + err.val : ''}`;
  }
  const ms = Number(resp.elapsedUs / 1000n);
  if (resp.status < 200 || resp.status >= 300) {
    return { status: 'critical', output: `${url}: HTTP ${resp.status} in ${ms} ms` };
  }
  let detail = '';
  if (a.json_path !== undefined) {
    let doc;
    try {
      doc = JSON.parse(new TextDecoder().decode(resp.body));
    } catch (e) {
      throw `${url}: body is not JSON: ${e}`;
    }
    const found = lookup(doc, a.json_path);
    if (found === undefined) {
      return { status: 'critical', output: `${url}: JSON field "${a.json_path}" is missing` };
    }
    if (a.json_equals !== undefined && text(found) !== a.json_equals) {
      return { status: 'critical', output: `${url}: ${a.json_path} is "${text(found)}", expected "${a.json_equals}"` };
    }
    detail = `, ${a.json_path} = "${text(found)}"`;
  }
  const out = `${url}: HTTP ${resp.status} in ${ms} ms${detail} (javascript)`;
  if (a.warn_ms !== undefined && ms > Number(a.warn_ms)) {
    return { status: 'warning', output: `${out} (slower than ${a.warn_ms} ms)` };
  }
  return { status: 'passing', output: out };
}
