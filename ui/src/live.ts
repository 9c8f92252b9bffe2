// Live data for a view: a blocking query (`?index=&wait=`) that re-arms itself, so an open page
// follows the agent with one outstanding request and an idle tab costs one request per wait
// period. Endpoints without an index (members, Raft configuration, plugins) are re-read every
// `interval` while the tab is visible.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, call, getToken, Params } from './api';

export const WAIT = '300s';
const DEFAULT_INTERVAL = 10_000;

export interface Live<T> {
  data?: T;
  index: string;
  error?: Error;
  loading: boolean;
  refresh: () => void;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

function visible(signal: AbortSignal): Promise<void> {
  if (!document.hidden) return Promise.resolve();
  return new Promise((resolve) => {
    const on = () => {
      if (!document.hidden || signal.aborted) {
        document.removeEventListener('visibilitychange', on);
        resolve();
      }
    };
    document.addEventListener('visibilitychange', on);
    signal.addEventListener('abort', on);
  });
}

export function useLive<T>(
  path: string | null,
  params: Params = {},
  opts: { blocking?: boolean; interval?: number; opaqueIndex?: boolean } = {},
): Live<T> {
  const blocking = opts.blocking ?? true;
  const interval = opts.interval ?? DEFAULT_INTERVAL;
  const [state, setState] = useState<{ data?: T; index: string; error?: Error; loading: boolean }>({
    index: '0',
    loading: true,
  });
  const [tick, setTick] = useState(0);
  const [token, setTokenState] = useState(getToken());
  useEffect(() => {
    const on = () => setTokenState(getToken());
    window.addEventListener('legate:token', on);
    return () => window.removeEventListener('legate:token', on);
  }, []);
  const key = JSON.stringify(params);

  useEffect(() => {
    if (path === null) return;
    const ctl = new AbortController();
    setState((s) => ({ ...s, loading: true, error: undefined }));
    (async () => {
      let index = 0n;
      let backoff = 1000;
      while (!ctl.signal.aborted) {
        await visible(ctl.signal);
        if (ctl.signal.aborted) return;
        const p: Params = { ...params };
        if (blocking && index > 0n) {
          p.index = index.toString();
          p.wait = WAIT;
        }
        try {
          const res = await call<T>('GET', path, { params: p, signal: ctl.signal });
          backoff = 1000;
          // Consul's rule: an index that went backwards (a restored snapshot) starts over.
          // (Event lists' indexes are opaque hashes: `opaqueIndex` only compares them.)
          let next = BigInt(/^\d+$/.test(res.index) ? res.index : '0');
          if (!opts.opaqueIndex && next < index) next = 0n;
          if (next !== index || !blocking || index === 0n) {
            setState({ data: res.data, index: next.toString(), loading: false });
          }
          index = next;
          if (!blocking || index === 0n) await sleep(interval, ctl.signal);
        } catch (e) {
          if (ctl.signal.aborted) return;
          // A missing key (404) answered by a blocking read: no data, and keep blocking on its
          // index, so the view follows when it appears.
          if (blocking && e instanceof ApiError && e.status === 404 && /^[1-9]\d*$/.test(e.index)) {
            const next = BigInt(e.index);
            if (next !== index) setState({ data: undefined, index: e.index, error: e, loading: false });
            index = next;
            backoff = 1000;
            continue;
          }
          setState((s) => ({ ...s, error: e as Error, loading: false }));
          // A refused token stays refused until it changes (the effect restarts then).
          if (e instanceof ApiError && (e.status === 403 || e.status === 401 || e.status === 404)) return;
          await sleep(backoff, ctl.signal);
          backoff = Math.min(backoff * 2, 30_000);
        }
      }
    })();
    return () => ctl.abort();
  }, [path, key, tick, token, blocking, interval, opts.opaqueIndex]);

  return { ...state, refresh: () => setTick((t) => t + 1) };
}
