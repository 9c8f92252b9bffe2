// The cluster as this agent sees it, each part its own live query: this agent (with Legate's
// configuration sources, last reload and a Reload button), gossip members (LAN or WAN, ?pool=),
// the Raft peer set, and autopilot's health. None of these endpoints has a blocking index: they
// are re-read every 10 s (the agent's own facts every 30 s).
import { useState } from 'preact/hooks';
import { PageProps } from '../App';
import { put } from '../api';
import { Live, useLive } from '../live';
import { Link } from '../router';
import { Badge, Empty, ErrorBox, Loading, PageTitle } from '../components';
import { Ago } from './Plugins';
import './Cluster.css';

// ---- this agent ----

interface LastReload {
  Time: string;
  Ok: boolean;
  Error: string | null;
  Applied?: string[] | null;
  RequiresRestart?: string[] | null;
}

interface AgentSelf {
  Config: { NodeName: string; Datacenter: string; Server: boolean; Version: string; Revision?: string };
  /** Legate's own: where the configuration comes from and how the last reload went. */
  Legate?: { ConfigSources?: string[] | null; LastReload?: LastReload | null };
}

function KeyList(props: { keys?: string[] | null; none: string }) {
  if (!props.keys || props.keys.length === 0) return <span class="muted">{props.none}</span>;
  return (
    <ul class="key-list">
      {props.keys.map((k) => (
        <li key={k}>
          <code>{k}</code>
        </li>
      ))}
    </ul>
  );
}

function LastReloadView(props: { reload?: LastReload | null }) {
  const r = props.reload;
  if (!r) {
    return (
      <p class="muted" data-testid="last-reload">
        Not reloaded since the agent started.
      </p>
    );
  }
  return (
    <div class="last-reload" data-testid="last-reload" data-ok={r.Ok ? 'true' : 'false'}>
      <p>
        {r.Ok ? <Badge status="passing">applied</Badge> : <Badge status="critical">failed</Badge>} <Ago time={r.Time} />
      </p>
      {r.Ok ? (
        <dl class="kv">
          <dt>Applied</dt>
          <dd>
            <KeyList keys={r.Applied} none="nothing changed" />
          </dd>
          <dt>Needs a restart</dt>
          <dd>
            <KeyList keys={r.RequiresRestart} none="none" />
            {!!r.RequiresRestart?.length && (
              <p class="muted">These changes take effect when the agent restarts; until then the old values stay.</p>
            )}
          </dd>
        </dl>
      ) : (
        <>
          <pre class="reload-error">{r.Error}</pre>
          <p>The new configuration was not applied: the agent keeps running with its previous configuration.</p>
        </>
      )}
    </div>
  );
}

function ReloadButton(props: { onDone: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error>();
  const [done, setDone] = useState(false);
  const reload = async () => {
    setBusy(true);
    setError(undefined);
    setDone(false);
    try {
      await put('agent/reload');
      setDone(true);
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
      // A failed reload is recorded too (LastReload): show it either way.
      props.onDone();
    }
  };
  return (
    <div class="reload">
      <button type="button" class="primary" data-testid="reload-button" disabled={busy} onClick={reload}>
        {busy ? 'Reloading…' : 'Reload configuration'}
      </button>
      {done && (
        <span class="notice" role="status">
          Reloaded.
        </span>
      )}
      <ErrorBox error={error} />
    </div>
  );
}

function ThisAgent(props: { live: Live<AgentSelf> }) {
  const { live } = props;
  const self = live.data;
  const legate = self?.Legate;
  return (
    <section aria-labelledby="agent-title">
      <h2 id="agent-title">This agent</h2>
      <ErrorBox error={live.error} />
      <Loading when={live.loading && !self} />
      {self && (
        <div class="card">
          <dl class="kv">
            <dt>Node</dt>
            <dd>{self.Config.NodeName}</dd>
            <dt>Datacenter</dt>
            <dd>{self.Config.Datacenter}</dd>
            <dt>Mode</dt>
            <dd>{self.Config.Server ? 'server' : 'client'}</dd>
            <dt>Version</dt>
            <dd>
              {self.Config.Version}
              {self.Config.Revision && <span class="muted"> ({self.Config.Revision})</span>}
            </dd>
            <dt>Configuration</dt>
            <dd data-testid="config-sources">
              <KeyList keys={legate?.ConfigSources} none="no files or directories (flags and defaults only)" />
            </dd>
          </dl>
          <h3>Last reload</h3>
          <LastReloadView reload={legate?.LastReload} />
          <ReloadButton onDone={live.refresh} />
        </div>
      )}
    </section>
  );
}

// ---- gossip members ----

interface Member {
  Name: string;
  Addr: string;
  Port: number;
  Tags?: Record<string, string> | null;
  Status: number;
}

// Serf's member states.
const SERF_STATUS = ['none', 'alive', 'leaving', 'left', 'failed'];

function Members(props: { dc: string; wan: boolean; server: boolean }) {
  const live = useLive<Member[]>('agent/members', { wan: props.wan || undefined }, { blocking: false, interval: 10_000 });
  const members = [...(live.data ?? [])].sort((a, b) => a.Name.localeCompare(b.Name));
  const counts = SERF_STATUS.map((s, i) => [s, members.filter((m) => m.Status === i).length] as const).filter(
    ([, n]) => n > 0,
  );
  return (
    <section aria-labelledby="members-title">
      <h2 id="members-title">Members</h2>
      {(props.server || props.wan) && (
        <nav class="tabs" aria-label="Gossip pool">
          <Link to={`/${props.dc}/cluster`} class={props.wan ? '' : 'active'}>
            LAN
          </Link>
          <Link to={`/${props.dc}/cluster?pool=wan`} class={props.wan ? 'active' : ''}>
            WAN
          </Link>
        </nav>
      )}
      <ErrorBox error={live.error} />
      <Loading when={live.loading && !live.data} />
      {live.data && members.length === 0 && <Empty>No members.</Empty>}
      {members.length > 0 && (
        <>
          <p class="muted">
            {members.length} member{members.length === 1 ? '' : 's'}: {counts.map(([s, n]) => `${n} ${s}`).join(', ')}
          </p>
          <table class="responsive">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Address</th>
                <th scope="col">Role</th>
                <th scope="col">Datacenter</th>
                <th scope="col">Status</th>
                <th scope="col">Build</th>
              </tr>
            </thead>
            <tbody>
              {members.map((m) => {
                const status = SERF_STATUS[m.Status] ?? String(m.Status);
                return (
                  <tr key={m.Name} data-testid="member-row" data-name={m.Name}>
                    <td data-label="Name">{m.Name}</td>
                    <td data-label="Address">
                      <code>
                        {m.Addr.includes(':') ? `[${m.Addr}]` : m.Addr}:{m.Port}
                      </code>
                    </td>
                    <td data-label="Role">{m.Tags?.role === 'consul' ? 'server' : 'client'}</td>
                    <td data-label="Datacenter">{m.Tags?.dc ?? ''}</td>
                    <td data-label="Status">
                      <Badge status={status} />
                    </td>
                    <td data-label="Build">{m.Tags?.build ? <code>{m.Tags.build}</code> : ''}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

// ---- Raft ----

interface RaftServer {
  ID: string;
  Node: string;
  Address: string;
  Leader: boolean;
  Voter: boolean;
  ProtocolVersion: string;
}

function Raft() {
  const live = useLive<{ Servers: RaftServer[]; Index: number }>(
    'operator/raft/configuration',
    {},
    { blocking: false, interval: 10_000 },
  );
  const servers = live.data?.Servers ?? [];
  return (
    <section aria-labelledby="raft-title">
      <h2 id="raft-title">Raft peers</h2>
      <ErrorBox error={live.error} />
      <Loading when={live.loading && !live.data} />
      {live.data && servers.length === 0 && <Empty>No Raft servers.</Empty>}
      {servers.length > 0 && (
        <>
          <p class="muted">Configuration at Raft index {live.data?.Index}.</p>
          <table class="responsive">
            <thead>
              <tr>
                <th scope="col">Node</th>
                <th scope="col">ID</th>
                <th scope="col">Address</th>
                <th scope="col">Role</th>
                <th scope="col">Protocol</th>
              </tr>
            </thead>
            <tbody>
              {servers.map((s) => (
                <tr key={s.ID} data-testid="raft-peer" data-name={s.Node} data-leader={String(s.Leader)}>
                  <td data-label="Node">{s.Node}</td>
                  <td data-label="ID">
                    <code class="raft-id">{s.ID}</code>
                  </td>
                  <td data-label="Address">
                    <code>{s.Address}</code>
                  </td>
                  <td data-label="Role">
                    <span class="tags">
                      {s.Leader && <Badge status="leader">leader</Badge>}
                      <span class="tag">{s.Voter ? 'voter' : 'non-voter'}</span>
                    </span>
                  </td>
                  <td data-label="Protocol">{s.ProtocolVersion}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

// ---- autopilot ----

interface AutopilotServer {
  ID: string;
  Name: string;
  Address: string;
  SerfStatus: string;
  Version: string;
  Leader: boolean;
  LastContact: string;
  LastTerm: number;
  LastIndex: number;
  Healthy: boolean;
  Voter: boolean;
  StableSince: string;
}

interface AutopilotHealth {
  Healthy: boolean;
  FailureTolerance: number;
  Servers: AutopilotServer[] | null;
}

function Autopilot() {
  const live = useLive<AutopilotHealth>('operator/autopilot/health', {}, { blocking: false, interval: 10_000 });
  const h = live.data;
  return (
    <section aria-labelledby="autopilot-title">
      <h2 id="autopilot-title">Autopilot</h2>
      <ErrorBox error={live.error} />
      <Loading when={live.loading && !h} />
      {h && (
        <div data-testid="autopilot-health" data-healthy={String(h.Healthy)}>
          <p>
            {h.Healthy ? <Badge status="passing">healthy</Badge> : <Badge status="critical">unhealthy</Badge>}{' '}
            Failure tolerance: <strong>{h.FailureTolerance}</strong>{' '}
            <span class="muted">
              (server{h.FailureTolerance === 1 ? '' : 's'} that can fail without losing quorum)
            </span>
          </p>
          {(h.Servers ?? []).length > 0 && (
            <table class="responsive">
              <thead>
                <tr>
                  <th scope="col">Server</th>
                  <th scope="col">Health</th>
                  <th scope="col">Role</th>
                  <th scope="col">Serf</th>
                  <th scope="col">Version</th>
                  <th scope="col">Last contact</th>
                  <th scope="col">Term / index</th>
                  <th scope="col">Stable since</th>
                </tr>
              </thead>
              <tbody>
                {(h.Servers ?? []).map((s) => (
                  <tr key={s.ID} data-testid="autopilot-server" data-name={s.Name}>
                    <td data-label="Server">
                      {s.Name}
                      <div class="muted">
                        <code>{s.Address}</code>
                      </div>
                    </td>
                    <td data-label="Health">
                      {s.Healthy ? <Badge status="passing">healthy</Badge> : <Badge status="critical">unhealthy</Badge>}
                    </td>
                    <td data-label="Role">
                      <span class="tags">
                        {s.Leader && <Badge status="leader">leader</Badge>}
                        <span class="tag">{s.Voter ? 'voter' : 'non-voter'}</span>
                      </span>
                    </td>
                    <td data-label="Serf">
                      <Badge status={s.SerfStatus} />
                    </td>
                    <td data-label="Version">{s.Version}</td>
                    <td data-label="Last contact">{s.LastContact}</td>
                    <td data-label="Term / index">
                      {s.LastTerm} / {s.LastIndex}
                    </td>
                    <td data-label="Stable since">
                      <Ago time={s.StableSince} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
      )}
    </section>
  );
}

export function Cluster(props: PageProps) {
  const self = useLive<AgentSelf>('agent/self', {}, { blocking: false, interval: 30_000 });
  const wan = props.query.get('pool') === 'wan';
  return (
    <>
      <PageTitle>Cluster</PageTitle>
      <ThisAgent live={self} />
      <Members dc={props.dc} wan={wan} server={!!self.data?.Config.Server} />
      <Raft />
      <Autopilot />
    </>
  );
}
