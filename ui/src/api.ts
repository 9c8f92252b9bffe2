// Every call the UI makes to the agent's /v1 API: the token from local storage on each request,
// Consul's error texts kept, and the blocking-query index read from X-Consul-Index.

const TOKEN_KEY = 'legate:token';

export function getToken(): string {
  return localStorage.getItem(TOKEN_KEY) ?? '';
}

export function setToken(token: string) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new Event('legate:token'));
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public text: string,
    /** X-Consul-Index of the answer: a 404 of a blocking read (a missing key) has one too. */
    public index = '0',
  ) {
    super(status === 403 ? `Permission denied (403): ${text}` : `${status}: ${text}`);
  }
}

import { settings } from './config';

// The datacenter the UI shows (from the URL): calls to another one carry `?dc=`.
let datacenter = settings.datacenter;
export function setDatacenter(dc: string) {
  datacenter = dc;
}

export type Params = Record<string, string | number | boolean | undefined | null>;

export function url(path: string, params: Params = {}): string {
  const q = new URLSearchParams();
  if (datacenter && datacenter !== settings.datacenter && !path.startsWith('agent/') && params.dc === undefined) {
    q.set('dc', datacenter);
  }
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === false) continue;
    q.set(k, v === true ? '' : String(v));
  }
  const qs = q.toString().replace(/=(&|$)/g, '$1');
  return `/v1/${path}${qs ? `?${qs}` : ''}`;
}

export interface Response<T> {
  data: T;
  /** X-Consul-Index as sent: a decimal u64 (event indexes are hashes beyond 2^53). */
  index: string;
}

export async function call<T>(
  method: string,
  path: string,
  opts: { params?: Params; body?: unknown; raw?: boolean; signal?: AbortSignal } = {},
): Promise<Response<T>> {
  const headers: Record<string, string> = {};
  const token = getToken();
  if (token) headers['X-Consul-Token'] = token;
  let body: BodyInit | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  }
  const res = await fetch(url(path, opts.params), { method, headers, body, signal: opts.signal });
  const index = res.headers.get('X-Consul-Index') ?? '0';
  const text = await res.text();
  if (!res.ok) throw new ApiError(res.status, text.trim() || res.statusText, index);
  let data: unknown = text;
  if (!opts.raw && (res.headers.get('Content-Type') ?? '').includes('json')) {
    data = text ? JSON.parse(text) : null;
  }
  return { data: data as T, index };
}

export const get = <T>(path: string, params?: Params) => call<T>('GET', path, { params });
export const put = <T>(path: string, body?: unknown, params?: Params) => call<T>('PUT', path, { body, params });
export const del = <T>(path: string, params?: Params) => call<T>('DELETE', path, { params });

/** Base64 (as KV values come) to text, UTF-8 aware. */
export function fromBase64(b64: string | null): string {
  if (!b64) return '';
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}
