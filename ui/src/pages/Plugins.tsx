// Legate's WASM plugins (GET /v1/agent/plugins, re-read every 10 s): each loaded plugin as a card
// with what its imports let it do and the checks and watches that run it; the compile cache; and
// the checks and watches whose plugin is not loaded (yet).
import { useEffect, useState } from 'preact/hooks';
import { PageProps } from '../App';
import { useLive } from '../live';
import { Badge, Empty, ErrorBox, Loading, PageTitle, Tags } from '../components';
import './Plugins.css';

interface LoadedPlugin {
  path: string;
  sha256: string;
  world: string;
  from_cache: boolean;
  imports: string[];
  /** "file" or "registry" (pushed with `legate plugin push`). */
  source?: string;
  name?: string | null;
  version?: string | null;
  signed_by?: string[];
  fetched?: boolean;
}

interface HostState {
  plugin_dir: string | null;
  cache_dir: string | null;
  cache_files: number;
  cache_bytes: number;
  loaded: LoadedPlugin[];
}

interface FileGrant {
  host_dir: string;
  guest_dir?: string | null;
  writable?: boolean;
}

interface PluginCheck {
  CheckID: string;
  Plugin: string;
  AllowHosts?: string[] | null;
  KVReadPrefixes?: string[] | null;
  MemoryMB?: number | null;
  Files?: FileGrant[] | null;
  SHA256?: string | null;
  Status?: string;
  Output?: string;
  LastRun?: string | null;
  LastDurationMs?: number | null;
  Runs?: number;
}

interface PluginWatch {
  Type: string;
  Plugin: string;
  Key?: string;
  Prefix?: string;
  Service?: string;
  Name?: string;
  State?: string;
  LastRun?: string | null;
  LastDurationMs?: number | null;
  LastError?: string | null;
}

interface PluginsState {
  Host: HostState;
  Checks?: PluginCheck[] | null;
  Watches?: PluginWatch[] | null;
}

// ---- small formatting helpers (Cluster uses Ago too) ----

/** The current time, re-read every `ms` so relative times stay true between polls. */
function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export function relative(then: number, now: number): string {
  const s = Math.round((now - then) / 1000);
  if (s < 1) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** An RFC 3339 time as "12 s ago", the exact time on hover. */
export function Ago(props: { time?: string | null; never?: string }) {
  const now = useNow();
  if (!props.time) return <span class="muted">{props.never ?? 'never'}</span>;
  const t = Date.parse(props.time);
  if (Number.isNaN(t)) return <span>{props.time}</span>;
  return (
    <time dateTime={props.time} title={new Date(t).toLocaleString()}>
      {relative(t, now)}
    </time>
  );
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

function duration(ms?: number | null): string {
  if (ms === null || ms === undefined) return '';
  return ms < 1000 ? `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** `/x/http_json.wasm` -> `http_json`. */
function pluginName(path: string): string {
  return (path.split('/').pop() ?? path).replace(/\.wasm$/, '');
}

/** Whether a check's or watch's `Plugin` (a name in plugin_dir, or a path) is this loaded file. */
function uses(plugin: string, path: string): boolean {
  const p = plugin.replace(/^\.\//, '');
  return p === pluginName(path) || p === path || path.endsWith('/' + p);
}

/** `legate:plugin/check@0.1.0` -> `check`, `...event-handler@...` -> `event handler`. */
function worldName(world: string): string {
  const m = /\/([^@/]+)(@|$)/.exec(world);
  return m ? m[1].replace(/-/g, ' ') : world;
}

// ---- capabilities: what each import lets a plugin ask the host for ----

interface Capability {
  label: string;
  detail?: string;
  warn?: boolean;
}

// Legate's own interfaces, by interface name (the version stripped).
const LEGATE: Record<string, Capability> = {
  'legate:plugin/http': { label: 'Outbound HTTP', detail: "to the hosts in the check's AllowHosts" },
  'legate:plugin/net': { label: 'TCP and TLS', detail: "to the hosts in the check's AllowHosts" },
  'legate:plugin/kv': { label: 'KV read', detail: "under the check's KVReadPrefixes" },
  'legate:plugin/log': { label: 'Agent log', detail: 'writes lines to the agent log' },
  'legate:plugin/host': { label: 'Host facts', detail: 'node name, datacenter, clocks' },
  'legate:plugin/types': { label: 'Shared types' },
};

// Standard WASI, by package (`wasi:io/streams` -> `wasi:io`).
const WASI: Record<string, Capability> = {
  'wasi:io': { label: 'Streams and polling' },
  'wasi:clocks': { label: 'Clocks' },
  'wasi:random': { label: 'Random numbers' },
  'wasi:cli': { label: 'Process basics', detail: 'stdio (discarded), environment (empty), exit' },
  'wasi:filesystem': { label: 'Files', detail: "only the directories granted in the check's Files" },
  'wasi:sockets': { label: 'Raw sockets', detail: 'always denied; use legate:plugin/net', warn: true },
  'wasi:http': { label: 'wasi:http', detail: 'not provided: the plugin will not load', warn: true },
};

interface CapGroup {
  title: string;
  items: { key: string; cap: Capability; imports: string[] }[];
}

function groupImports(imports: string[]): CapGroup[] {
  const groups: CapGroup[] = [
    { title: 'Legate', items: [] },
    { title: 'Standard WASI', items: [] },
    { title: 'Other', items: [] },
  ];
  const add = (g: CapGroup, key: string, cap: Capability, imp: string) => {
    const item = g.items.find((i) => i.key === key);
    if (item) item.imports.push(imp);
    else g.items.push({ key, cap, imports: [imp] });
  };
  for (const imp of [...imports].sort()) {
    const iface = imp.split('@')[0];
    if (iface.startsWith('legate:')) {
      add(groups[0], iface, LEGATE[iface] ?? { label: iface, detail: 'unknown to this agent', warn: true }, imp);
    } else if (iface.startsWith('wasi:')) {
      const pkg = iface.split('/')[0];
      add(groups[1], pkg, WASI[pkg] ?? { label: pkg, detail: 'not provided by Legate', warn: true }, imp);
    } else {
      add(groups[2], iface, { label: iface, detail: 'not provided by Legate', warn: true }, imp);
    }
  }
  return groups.filter((g) => g.items.length > 0);
}

function Imports(props: { imports: string[] }) {
  const groups = groupImports(props.imports);
  return (
    <div class="plugin-imports" data-testid="plugin-imports">
      <h4>Capabilities</h4>
      {groups.length === 0 && <Empty>Imports nothing.</Empty>}
      {groups.map((g) => (
        <div class="cap-group" key={g.title}>
          <h5>{g.title}</h5>
          <ul>
            {g.items.map((i) => (
              <li key={i.key} class={i.cap.warn ? 'cap-warn' : ''}>
                <strong>{i.cap.label}</strong>
                {i.cap.detail && <span class="muted"> — {i.cap.detail}</span>}
                <div class="cap-imports">
                  {i.imports.map((imp) => (
                    <code key={imp}>{imp}</code>
                  ))}
                </div>
              </li>
            ))}
          </ul>
        </div>
      ))}
    </div>
  );
}

// ---- checks and watches ----

function Grants(props: { check: PluginCheck }) {
  const c = props.check;
  const files = c.Files ?? [];
  return (
    <dl class="kv grants">
      <dt>Hosts</dt>
      <dd>{c.AllowHosts?.length ? <Tags tags={c.AllowHosts} /> : <span class="muted">no network</span>}</dd>
      <dt>KV read</dt>
      <dd>
        {c.KVReadPrefixes?.length ? <Tags tags={c.KVReadPrefixes} /> : <span class="muted">no KV</span>}
      </dd>
      <dt>Memory</dt>
      <dd>{c.MemoryMB ? `${c.MemoryMB} MiB` : <span class="muted">default (64 MiB)</span>}</dd>
      <dt>Files</dt>
      <dd>
        {files.length === 0 ? (
          <span class="muted">none</span>
        ) : (
          files.map((f) => (
            <div key={f.host_dir}>
              <code>{f.host_dir}</code> as <code>{f.guest_dir || '/'}</code> {f.writable ? '(writable)' : '(read-only)'}
            </div>
          ))
        )}
      </dd>
      {c.SHA256 && (
        <>
          <dt>Pinned</dt>
          <dd>
            <code title={c.SHA256}>sha256 {c.SHA256.slice(0, 12)}…</code>
          </dd>
        </>
      )}
    </dl>
  );
}

function CheckItem(props: { check: PluginCheck; showPlugin?: boolean }) {
  const c = props.check;
  const status = c.Status || 'unknown';
  return (
    <li class="plugin-check" data-testid="plugin-check" data-name={c.CheckID}>
      <div class="plugin-check-head">
        <Badge status={status} />
        <strong>{c.CheckID}</strong>
        {props.showPlugin && (
          <span class="muted">
            plugin <code>{c.Plugin}</code>
          </span>
        )}
        <span class="muted">
          last run <Ago time={c.LastRun} />
          {c.LastDurationMs !== null && c.LastDurationMs !== undefined && ` in ${duration(c.LastDurationMs)}`}
          {c.Runs !== undefined && ` · ${c.Runs} run${c.Runs === 1 ? '' : 's'}`}
        </span>
      </div>
      {c.Output ? (
        <pre data-testid="plugin-check-output">{c.Output}</pre>
      ) : (
        <p class="muted" data-testid="plugin-check-output">
          No output yet.
        </p>
      )}
      <Grants check={c} />
    </li>
  );
}

/** What a watch follows: `key app/config`, `service web`, `event deploy`... */
function watchTarget(w: PluginWatch): string {
  const what = w.Key ?? w.Prefix ?? w.Service ?? w.Name ?? w.State ?? '';
  return what ? `${w.Type} ${what}` : w.Type;
}

function WatchItem(props: { watch: PluginWatch; showPlugin?: boolean }) {
  const w = props.watch;
  const target = watchTarget(w);
  return (
    <li class="plugin-watch" data-testid="plugin-watch" data-name={target}>
      <div class="plugin-check-head">
        {w.LastError ? <Badge status="critical">error</Badge> : w.LastRun ? <Badge status="passing">ok</Badge> : null}
        <strong>watch {target}</strong>
        {props.showPlugin && (
          <span class="muted">
            plugin <code>{w.Plugin}</code>
          </span>
        )}
        <span class="muted">
          last run <Ago time={w.LastRun} />
          {w.LastDurationMs !== null && w.LastDurationMs !== undefined && ` in ${duration(w.LastDurationMs)}`}
        </span>
      </div>
      {w.LastError && <pre class="plugin-error">{w.LastError}</pre>}
    </li>
  );
}

function Users(props: { checks: PluginCheck[]; watches: PluginWatch[]; showPlugin?: boolean }) {
  if (props.checks.length === 0 && props.watches.length === 0) return <Empty>No check or watch uses it.</Empty>;
  return (
    <ul class="plugin-users">
      {props.checks.map((c) => (
        <CheckItem key={c.CheckID} check={c} showPlugin={props.showPlugin} />
      ))}
      {props.watches.map((w, i) => (
        <WatchItem key={`${watchTarget(w)}-${i}`} watch={w} showPlugin={props.showPlugin} />
      ))}
    </ul>
  );
}

// ---- the page ----

function PluginCard(props: { plugin: LoadedPlugin; checks: PluginCheck[]; watches: PluginWatch[] }) {
  const p = props.plugin;
  const name = pluginName(p.path);
  const id = `plugin-${name}`;
  return (
    <section class="card plugin-card" data-testid="plugin-card" data-name={name} aria-labelledby={id}>
      <h3 id={id}>
        {name} <span class="tag" title={p.world}>{worldName(p.world)}</span>
      </h3>
      <dl class="kv">
        {p.source === 'registry' ? (
          <>
            <dt>Registry</dt>
            <dd>
              <code>{p.path}</code> → version <code>{p.version}</code>
              {p.fetched ? ' (fetched from the servers by this agent)' : ''}
            </dd>
            <dt>Signed by</dt>
            <dd>{p.signed_by && p.signed_by.length > 0 ? p.signed_by.join(', ') : 'not signed'}</dd>
          </>
        ) : (
          <>
            <dt>File</dt>
            <dd>
              <code>{p.path}</code>
            </dd>
          </>
        )}
        <dt>Digest</dt>
        <dd>
          <code title={p.sha256}>sha256 {p.sha256.slice(0, 12)}…</code>
        </dd>
        <dt>Compiled</dt>
        <dd>{p.from_cache ? 'loaded from the compile cache' : 'compiled at load'}</dd>
      </dl>
      <Imports imports={p.imports} />
      <h4>Used by</h4>
      <Users checks={props.checks} watches={props.watches} />
    </section>
  );
}

function Cache(props: { host: HostState }) {
  const h = props.host;
  return (
    <dl class="kv" data-testid="plugin-cache">
      <dt>Plugin directory</dt>
      <dd>{h.plugin_dir ? <code>{h.plugin_dir}</code> : <span class="muted">none (no data_dir or plugin_dir)</span>}</dd>
      <dt>Compile cache</dt>
      <dd>{h.cache_dir ? <code>{h.cache_dir}</code> : <span class="muted">none (compiled in memory only)</span>}</dd>
      <dt>Cached</dt>
      <dd>
        {h.cache_files} file{h.cache_files === 1 ? '' : 's'}, {bytes(h.cache_bytes)}
      </dd>
    </dl>
  );
}

export function Plugins(_: PageProps) {
  const live = useLive<PluginsState>('agent/plugins', {}, { blocking: false, interval: 10_000 });
  const state = live.data;
  const loaded = state?.Host.loaded ?? [];
  const checks = state?.Checks ?? [];
  const watches = state?.Watches ?? [];
  const isLoaded = (plugin: string) => loaded.some((l) => uses(plugin, l.path));
  const orphanChecks = checks.filter((c) => !isLoaded(c.Plugin));
  const orphanWatches = watches.filter((w) => !isLoaded(w.Plugin));

  return (
    <>
      <PageTitle>Plugins</PageTitle>
      <ErrorBox error={live.error} />
      <Loading when={live.loading && !state} />
      {state && (
        <>
          <h2>Plugin host</h2>
          <Cache host={state.Host} />

          <h2>Loaded plugins</h2>
          {loaded.length === 0 && <Empty>No plugin is loaded.</Empty>}
          {loaded.map((p) => (
            <PluginCard
              key={p.path}
              plugin={p}
              checks={checks.filter((c) => uses(c.Plugin, p.path))}
              watches={watches.filter((w) => uses(w.Plugin, p.path))}
            />
          ))}

          {(orphanChecks.length > 0 || orphanWatches.length > 0) && (
            <>
              <h2>Not loaded yet</h2>
              <p class="muted">These checks and watches name a plugin that is not loaded (yet, or it failed to load).</p>
              <Users checks={orphanChecks} watches={orphanWatches} showPlugin />
            </>
          )}
        </>
      )}
    </>
  );
}
