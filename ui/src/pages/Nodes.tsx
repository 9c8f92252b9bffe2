// The nodes of the datacenter (GET /v1/internal/ui/nodes, blocking) with their Serf health, node
// checks, service count, and the Raft leader marked (GET /v1/status/leader, re-read every 10 s).
import { PageProps } from '../App';
import { useLive } from '../live';
import { Link } from '../router';
import { Badge, Counts, Empty, ErrorBox, HealthSelect, Loading, PageTitle, SearchBox } from '../components';
import { Check, healthOf } from './Service';
import './Nodes.css';

export interface NodeService {
  ID: string;
  Service: string;
  Tags?: string[] | null;
  Address?: string;
  Port?: number;
  Meta?: Record<string, string> | null;
}

export interface NodeInfo {
  ID?: string;
  Node: string;
  Address: string;
  Datacenter?: string;
  TaggedAddresses?: Record<string, string> | null;
  Meta?: Record<string, string> | null;
  Services?: NodeService[] | null;
  Checks?: Check[] | null;
}

/** The node-level checks (no ServiceID): Consul's UI derives a node's health from these alone. */
export function nodeChecks(n: NodeInfo): Check[] {
  return (n.Checks ?? []).filter((c) => !c.ServiceID);
}

/** The leader's address as /v1/status/leader reports it ("10.0.0.1:8300", "" without a leader). */
export function useLeader() {
  const live = useLive<string>('status/leader', {}, { blocking: false, interval: 10_000 });
  // Tolerate a JSON string served without a JSON content type.
  const leader = typeof live.data === 'string' ? live.data.replace(/^"|"$/g, '') : '';
  return { leader, known: live.data !== undefined, error: live.error };
}

function splitHostPort(addr: string): [string, string] {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(addr);
  if (v6) return [v6[1], v6[2] ?? ''];
  const i = addr.lastIndexOf(':');
  return i < 0 ? [addr, ''] : [addr.slice(0, i), addr.slice(i + 1)];
}

/**
 * The names of the nodes to mark as leader: those whose address (or LAN tagged address) is the
 * leader's host. Servers register the `consul` service on their server port, so when several
 * nodes share the host (agents on one machine) the server on the leader's port wins; nodes whose
 * `consul` service is on another port are other servers.
 */
export function leaderNames(nodes: NodeInfo[], leader: string): Set<string> {
  if (!leader) return new Set();
  const [host, port] = splitHostPort(leader);
  const servers: string[] = [];
  const others: string[] = [];
  for (const n of nodes) {
    const tagged = n.TaggedAddresses ?? {};
    const addrs = [n.Address, tagged.lan, tagged.lan_ipv4, tagged.lan_ipv6];
    if (!addrs.includes(host)) continue;
    const consul = (n.Services ?? []).find((s) => s.Service === 'consul');
    if (!consul) others.push(n.Node);
    else if (!port || String(consul.Port) === port) servers.push(n.Node);
  }
  return new Set(servers.length ? servers : others);
}

export function LeaderBadge() {
  return (
    <span data-testid="leader-badge" title="Raft leader">
      <Badge status="leader">leader</Badge>
    </span>
  );
}

function NodeFilters(props: { filter: string; status: string }) {
  return (
    <div class="filters" role="search">
      <SearchBox what="nodes" placeholder="Search by name, address or meta" testid="node-search" value={props.filter} />
      <HealthSelect testid="node-status-filter" value={props.status} maintenance />
    </div>
  );
}

function matches(n: NodeInfo, filter: string, status: string): boolean {
  if (status && healthOf(nodeChecks(n)) !== status) return false;
  if (!filter) return true;
  const f = filter.toLowerCase();
  return [n.Node, n.Address, ...Object.values(n.TaggedAddresses ?? {}), ...Object.values(n.Meta ?? {})].some((s) =>
    String(s).toLowerCase().includes(f),
  );
}

function NodeRow(props: { dc: string; node: NodeInfo; leader: boolean }) {
  const n = props.node;
  const checks = nodeChecks(n);
  const count = (s: string) => checks.filter((c) => c.Status === s).length;
  const serf = (n.Checks ?? []).find((c) => c.CheckID === 'serfHealth');
  const services = n.Services ?? [];
  return (
    <tr data-testid="node-row" data-name={n.Node} data-health={healthOf(checks)}>
      <td data-label="Node">
        <Link to={`/${props.dc}/nodes/${encodeURIComponent(n.Node)}`}>{n.Node}</Link>{' '}
        {props.leader && <LeaderBadge />}
      </td>
      <td data-label="Address">
        <code>{n.Address}</code>
      </td>
      <td data-label="Serf health">
        {serf ? (
          <span title={serf.Output}>
            <Badge status={serf.Status} />
          </span>
        ) : (
          <span class="muted">none</span>
        )}
      </td>
      <td data-label="Node checks">
        {checks.length ? (
          <Counts passing={count('passing')} warning={count('warning')} critical={count('critical')} />
        ) : (
          <span class="muted">no checks</span>
        )}
      </td>
      <td data-label="Services">
        {services.length} {services.length === 1 ? 'service' : 'services'}
      </td>
    </tr>
  );
}

export function Nodes({ dc, query }: PageProps) {
  const live = useLive<NodeInfo[]>('internal/ui/nodes');
  const { leader, known: leaderKnown, error: leaderError } = useLeader();
  const filter = query.get('filter') ?? '';
  const status = query.get('status') ?? '';
  const all = live.data ?? [];
  const leaders = leaderNames(all, leader);
  const shown = all.filter((n) => matches(n, filter, status)).sort((a, b) => a.Node.localeCompare(b.Node));

  return (
    <>
      <PageTitle>Nodes</PageTitle>
      <NodeFilters filter={filter} status={status} />
      <ErrorBox error={live.error} />
      <ErrorBox error={leaderError} />
      <Loading when={live.loading && !live.data} />
      {live.data &&
        (all.length === 0 ? (
          <Empty>No nodes are registered in {dc}.</Empty>
        ) : (
          <>
            <p class="muted" aria-live="polite">
              {shown.length === all.length ? `${all.length} nodes` : `${shown.length} of ${all.length} nodes`}
              {leaderKnown && !leader && ' · no cluster leader'}
            </p>
            {shown.length === 0 ? (
              <Empty>No node matches these filters.</Empty>
            ) : (
              <table class="responsive nodes">
                <caption class="sr-only">Nodes in {dc}</caption>
                <thead>
                  <tr>
                    <th scope="col">Node</th>
                    <th scope="col">Address</th>
                    <th scope="col">Serf health</th>
                    <th scope="col">Node checks</th>
                    <th scope="col">Services</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.map((n) => (
                    <NodeRow key={n.Node} dc={dc} node={n} leader={leaders.has(n.Node)} />
                  ))}
                </tbody>
              </table>
            )}
          </>
        ))}
    </>
  );
}
