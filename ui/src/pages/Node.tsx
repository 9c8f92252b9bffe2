// One node (GET /v1/internal/ui/node/<name>, blocking): its service instances, health checks,
// tagged addresses, metadata, and its network coordinate with the round-trip times it predicts
// (GET /v1/coordinate/nodes, re-read every 30 s, as Consul's "Round Trip Time" tab does).
import { PageProps } from '../App';
import { ApiError } from '../api';
import { settings } from '../config';
import { useLive } from '../live';
import { Link } from '../router';
import { Badge, Empty, ErrorBox, KeyValues, Loading, PageTitle, Tags } from '../components';
import { Check, CheckOutput, healthOf, hostPort, sortChecks } from './Service';
import { LeaderBadge, NodeInfo, NodeService, leaderNames, nodeChecks, useLeader } from './Nodes';
import './Nodes.css';

interface Coord {
  Vec: number[];
  Error: number;
  Adjustment: number;
  Height: number;
}

interface CoordEntry {
  Node: string;
  Segment?: string;
  Coord: Coord;
}

/** Consul's estimate of the round trip between two coordinates, in seconds (lib/coordinate). */
function rtt(a: Coord, b: Coord): number {
  const len = Math.min(a.Vec.length, b.Vec.length);
  let sum = 0;
  for (let i = 0; i < len; i++) sum += (a.Vec[i] - b.Vec[i]) ** 2;
  const dist = Math.sqrt(sum) + a.Height + b.Height;
  const adjusted = dist + a.Adjustment + b.Adjustment;
  return adjusted > 0 ? adjusted : dist;
}

function ms(seconds: number): string {
  return `${(seconds * 1000).toFixed(2)} ms`;
}

function median(sorted: number[]): number {
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function ServicesSection(props: { dc: string; node: NodeInfo }) {
  const services = [...(props.node.Services ?? [])].sort(
    (a, b) => a.Service.localeCompare(b.Service) || a.ID.localeCompare(b.ID),
  );
  const checks = props.node.Checks ?? [];
  return (
    <section aria-labelledby="node-services-h">
      <h2 id="node-services-h">Service instances</h2>
      {services.length === 0 ? (
        <Empty>No services are registered on this node.</Empty>
      ) : (
        <table class="responsive">
          <thead>
            <tr>
              <th scope="col">Service</th>
              <th scope="col">ID</th>
              <th scope="col">Address</th>
              <th scope="col">Tags</th>
              <th scope="col">Service checks</th>
            </tr>
          </thead>
          <tbody>
            {services.map((s) => (
              <ServiceRow key={s.ID} dc={props.dc} node={props.node} service={s} checks={checks} />
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function ServiceRow(props: { dc: string; node: NodeInfo; service: NodeService; checks: Check[] }) {
  const s = props.service;
  const own = props.checks.filter((c) => c.ServiceID === s.ID);
  return (
    <tr data-testid="node-service" data-name={s.ID} data-service={s.Service}>
      <td data-label="Service">
        <Link to={`/${props.dc}/services/${encodeURIComponent(s.Service)}`}>{s.Service}</Link>
      </td>
      <td data-label="ID">
        <code>{s.ID}</code>
      </td>
      <td data-label="Address">
        <code>{hostPort(s.Address || props.node.Address, s.Port)}</code>
      </td>
      <td data-label="Tags">
        <Tags tags={s.Tags} />
      </td>
      <td data-label="Service checks">
        {own.length ? (
          <Badge status={healthOf(own)}>{`${healthOf(own)} (${own.length})`}</Badge>
        ) : (
          <span class="muted">no checks</span>
        )}
      </td>
    </tr>
  );
}

function ChecksSection(props: { dc: string; node: NodeInfo }) {
  const checks = sortChecks(props.node.Checks ?? []);
  return (
    <section aria-labelledby="node-checks-h">
      <h2 id="node-checks-h">Health checks</h2>
      {checks.length === 0 ? (
        <Empty>No health checks are registered on this node.</Empty>
      ) : (
        <table class="responsive">
          <thead>
            <tr>
              <th scope="col">Status</th>
              <th scope="col">Name</th>
              <th scope="col">Service</th>
              <th scope="col">Type</th>
              <th scope="col">Output</th>
            </tr>
          </thead>
          <tbody>
            {checks.map((c) => (
              <tr key={c.CheckID} data-testid="node-check" data-name={c.CheckID}>
                <td data-label="Status">
                  <Badge status={c.Status} />
                </td>
                <td data-label="Name">
                  <strong>{c.Name || c.CheckID}</strong>
                  {c.Name && c.Name !== c.CheckID && (
                    <>
                      {' '}
                      <code class="muted">{c.CheckID}</code>
                    </>
                  )}
                  {c.Notes && <p class="check-notes muted">{c.Notes}</p>}
                </td>
                <td data-label="Service">
                  {c.ServiceName ? (
                    <Link to={`/${props.dc}/services/${encodeURIComponent(c.ServiceName)}`}>{c.ServiceName}</Link>
                  ) : (
                    <span class="muted">node</span>
                  )}
                </td>
                <td data-label="Type">{c.Type || <span class="muted">—</span>}</td>
                <td data-label="Output" class="output-cell">
                  <CheckOutput check={c} testid="node-check-output" />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** This node's coordinate(s) (one per network segment) and the round trips they predict. */
function CoordinateSection(props: { name: string }) {
  const live = useLive<CoordEntry[]>('coordinate/nodes', {}, { blocking: false, interval: 30_000 });
  const all = live.data ?? [];
  const mine = all.filter((c) => c.Node === props.name && c.Coord);
  return (
    <section aria-labelledby="node-coordinate-h">
      <h2 id="node-coordinate-h">Network coordinate</h2>
      <ErrorBox error={live.error} />
      <Loading when={live.loading && !live.data} />
      {live.data && mine.length === 0 && <Empty>This node has no network coordinate yet.</Empty>}
      {mine.map((c) => {
        const others = all
          .filter((o) => o.Node !== props.name && (o.Segment ?? '') === (c.Segment ?? '') && o.Coord)
          .map((o) => ({ node: o.Node, rtt: rtt(c.Coord, o.Coord) }));
        const times = others.map((o) => o.rtt).sort((a, b) => a - b);
        const agent = others.find((o) => o.node === settings.nodeName);
        return (
          <div class="card coordinate" key={c.Segment ?? ''} data-testid="node-coordinate" data-segment={c.Segment ?? ''}>
            <dl class="kv">
              {c.Segment && (
                <>
                  <dt>Segment</dt>
                  <dd>{c.Segment}</dd>
                </>
              )}
              {times.length > 0 && (
                <>
                  <dt>Round trip to other nodes</dt>
                  <dd>
                    min {ms(times[0])} · median {ms(median(times))} · max {ms(times[times.length - 1])}{' '}
                    <span class="muted">({times.length === 1 ? '1 node' : `${times.length} nodes`})</span>
                  </dd>
                </>
              )}
              {agent && (
                <>
                  <dt>Round trip to {agent.node}</dt>
                  <dd>{ms(agent.rtt)}</dd>
                </>
              )}
              <dt>Vector</dt>
              <dd>
                <code>{c.Coord.Vec.map((v) => String(Number(v.toPrecision(4)))).join(', ')}</code>
              </dd>
              <dt>Error</dt>
              <dd>{String(Number(c.Coord.Error.toPrecision(4)))}</dd>
              <dt>Adjustment</dt>
              <dd>{ms(c.Coord.Adjustment)}</dd>
              <dt>Height</dt>
              <dd>{ms(c.Coord.Height)}</dd>
            </dl>
          </div>
        );
      })}
    </section>
  );
}

function NotFound(props: { dc: string; name: string }) {
  return (
    <div class="error" role="alert" data-status="404">
      There is no node named <strong>{props.name}</strong> in {props.dc}.{' '}
      <Link to={`/${props.dc}/nodes`}>All nodes</Link>
    </div>
  );
}

export function Node({ dc, params }: PageProps) {
  const name = params[0];
  const live = useLive<NodeInfo>(`internal/ui/node/${encodeURIComponent(name)}`);
  const { leader, error: leaderError } = useLeader();
  // Data of the previous node stays until the new one arrives: show only this one's.
  const node = live.data && live.data.Node === name ? live.data : undefined;
  const missing = live.error instanceof ApiError && live.error.status === 404;
  const isLeader = node ? leaderNames([node], leader).has(node.Node) : false;
  const checks = node ? nodeChecks(node) : [];

  return (
    <>
      <nav class="breadcrumbs" aria-label="Breadcrumbs">
        <Link to={`/${dc}/nodes`}>Nodes</Link>
        <span aria-hidden="true">/</span>
        <span>{name}</span>
      </nav>
      <PageTitle>{name}</PageTitle>
      {missing ? <NotFound dc={dc} name={name} /> : <ErrorBox error={live.error} />}
      <ErrorBox error={leaderError} />
      <Loading when={live.loading && !node && !missing} />
      {node && !missing && (
        <>
          <dl class="kv summary">
            <dt>Health</dt>
            <dd>
              {checks.length ? <Badge status={healthOf(checks)} /> : <span class="muted">no node checks</span>}{' '}
              {isLeader && <LeaderBadge />}
            </dd>
            <dt>Address</dt>
            <dd>
              <code>{node.Address}</code>
            </dd>
            {node.ID && (
              <>
                <dt>ID</dt>
                <dd>
                  <code>{node.ID}</code>
                </dd>
              </>
            )}
            {node.Datacenter && (
              <>
                <dt>Datacenter</dt>
                <dd>{node.Datacenter}</dd>
              </>
            )}
          </dl>
          <ChecksSection dc={dc} node={node} />
          <ServicesSection dc={dc} node={node} />
          <section aria-labelledby="node-addresses-h">
            <h2 id="node-addresses-h">Tagged addresses</h2>
            <div data-testid="node-tagged-addresses">
              <KeyValues map={node.TaggedAddresses} empty="No tagged addresses." />
            </div>
          </section>
          <section aria-labelledby="node-meta-h">
            <h2 id="node-meta-h">Metadata</h2>
            <div data-testid="node-meta">
              <KeyValues map={node.Meta} empty="No metadata." />
            </div>
          </section>
          <CoordinateSection name={node.Node} />
        </>
      )}
    </>
  );
}
