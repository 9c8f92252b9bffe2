// One service: its instances (GET /v1/health/service/<name>, blocking) with each instance's node,
// address, tags, meta and health checks. Consul's UI spreads this over an instance page; here each
// instance is a row whose checks open their output in place.
import { PageProps } from '../App';
import { useLive } from '../live';
import { Link } from '../router';
import {
  Badge,
  Counts,
  Empty,
  ErrorBox,
  Health,
  HealthSelect,
  KeyValues,
  Loading,
  PageTitle,
  SearchBox,
  Tags,
  worst,
} from '../components';
import './Services.css';

export interface Check {
  Node: string;
  CheckID: string;
  Name: string;
  Status: string;
  Notes?: string;
  Output?: string;
  ServiceID: string;
  ServiceName: string;
  Type?: string;
}

interface ServiceEntry {
  Node: {
    ID?: string;
    Node: string;
    Address: string;
    Datacenter?: string;
    TaggedAddresses?: Record<string, string> | null;
    Meta?: Record<string, string> | null;
  };
  Service: {
    ID: string;
    Service: string;
    Tags?: string[] | null;
    Address?: string;
    Port?: number;
    Meta?: Record<string, string> | null;
    TaggedAddresses?: Record<string, unknown> | null;
  };
  Checks?: Check[] | null;
}

const SEVERITY: Record<string, number> = { critical: 0, maintenance: 1, warning: 2, passing: 3 };

/** Checks worst first, then by name (Consul's order). */
export function sortChecks(checks: Check[]): Check[] {
  return [...checks].sort(
    (a, b) => (SEVERITY[a.Status] ?? 4) - (SEVERITY[b.Status] ?? 4) || a.Name.localeCompare(b.Name),
  );
}

/** Maintenance mode is a critical check with a reserved ID; Consul shows it as maintenance. */
export function isMaintenance(c: Check): boolean {
  return c.CheckID === '_node_maintenance' || c.CheckID.startsWith('_service_maintenance:');
}

/** The health of a group of checks: maintenance when one of them is a maintenance check. */
export function healthOf(checks: Check[]): Health {
  if (checks.some(isMaintenance)) return 'maintenance';
  return worst(checks.map((c) => c.Status));
}

/** `host:port`, with IPv6 hosts bracketed; the bare host when there is no port. */
export function hostPort(address: string, port?: number): string {
  if (!port) return address;
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/** A check's output, folded away in a <details> (open for checks that are not passing). */
export function CheckOutput(props: { check: Check; testid: string }) {
  const { check } = props;
  if (!check.Output) return <span class="muted">No output</span>;
  return (
    <details class="check-output" open={check.Status !== 'passing'}>
      <summary>Output</summary>
      <pre data-testid={props.testid}>{check.Output}</pre>
    </details>
  );
}

/** One check as a list item: status, name, ID, type, notes and output. */
function CheckItem(props: { check: Check }) {
  const c = props.check;
  return (
    <li class="check" data-testid="check" data-name={c.CheckID}>
      <div class="check-head">
        <Badge status={c.Status} />
        <strong>{c.Name || c.CheckID}</strong>
        {c.Name && c.Name !== c.CheckID && <code class="muted">{c.CheckID}</code>}
        {c.Type && <span class="tag">{c.Type}</span>}
        <span class="muted small">{c.ServiceID ? 'service check' : 'node check'}</span>
      </div>
      {c.Notes && <p class="check-notes muted">{c.Notes}</p>}
      <CheckOutput check={c} testid="instance-output" />
    </li>
  );
}

function InstanceRow(props: { dc: string; entry: ServiceEntry }) {
  const { Node: node, Service: svc } = props.entry;
  const checks = sortChecks(props.entry.Checks ?? []);
  const health = healthOf(checks);
  return (
    <tr data-testid="instance-row" data-name={svc.ID} data-node={node.Node}>
      <td data-label="Health">
        {checks.length ? <Badge status={health} /> : <span class="muted">no checks</span>}
      </td>
      <td data-label="ID">
        <code>{svc.ID}</code>
      </td>
      <td data-label="Node">
        <Link to={`/${props.dc}/nodes/${encodeURIComponent(node.Node)}`}>{node.Node}</Link>
      </td>
      <td data-label="Address">
        <code>{hostPort(svc.Address || node.Address, svc.Port)}</code>
      </td>
      <td data-label="Tags">
        <Tags tags={svc.Tags} />
      </td>
      <td data-label="Meta">
        {Object.keys(svc.Meta ?? {}).length ? <KeyValues map={svc.Meta} /> : <span class="muted">—</span>}
      </td>
      <td data-label="Checks" class="checks-cell">
        {checks.length ? (
          <ul class="checks" aria-label={`Checks of ${svc.ID} on ${node.Node}`}>
            {checks.map((c) => (
              <CheckItem key={c.CheckID} check={c} />
            ))}
          </ul>
        ) : (
          <span class="muted">No checks.</span>
        )}
      </td>
    </tr>
  );
}

function InstanceFilters(props: { filter: string; status: string }) {
  return (
    <div class="filters" role="search">
      <SearchBox
        what="instances"
        placeholder="Search by ID, node, address or tag"
        testid="instance-search"
        value={props.filter}
      />
      <HealthSelect testid="instance-status-filter" value={props.status} maintenance />
    </div>
  );
}

function matches(e: ServiceEntry, filter: string, status: string): boolean {
  if (status && healthOf(e.Checks ?? []) !== status) return false;
  if (!filter) return true;
  const f = filter.toLowerCase();
  return [e.Service.ID, e.Node.Node, e.Service.Address ?? '', e.Node.Address, ...(e.Service.Tags ?? [])].some((s) =>
    s.toLowerCase().includes(f),
  );
}

export function Service({ dc, params, query }: PageProps) {
  const name = params[0];
  const live = useLive<ServiceEntry[]>(`health/service/${encodeURIComponent(name)}`);
  const filter = query.get('filter') ?? '';
  const status = query.get('status') ?? '';
  // Data of the previous service stays until the new one arrives: show only this one's.
  const all = (live.data ?? []).filter((e) => e.Service.Service === name);
  const shown = all.filter((e) => matches(e, filter, status));
  const healths = all.map((e) => healthOf(e.Checks ?? []));
  const tags = [...new Set(all.flatMap((e) => e.Service.Tags ?? []))].sort();
  const count = (h: string) => healths.filter((x) => x === h).length;

  return (
    <>
      <nav class="breadcrumbs" aria-label="Breadcrumbs">
        <Link to={`/${dc}/services`}>Services</Link>
        <span aria-hidden="true">/</span>
        <span>{name}</span>
      </nav>
      <PageTitle>{name}</PageTitle>
      <ErrorBox error={live.error} />
      <Loading when={live.loading && !live.data} />
      {live.data && (
        <>
          <dl class="kv summary">
            <dt>Instances</dt>
            <dd>
              {all.length}{' '}
              <Counts passing={count('passing')} warning={count('warning')} critical={count('critical')} />
              {count('maintenance') > 0 && <Badge status="maintenance">{`${count('maintenance')} in maintenance`}</Badge>}
            </dd>
            <dt>Tags</dt>
            <dd>{tags.length ? <Tags tags={tags} /> : <span class="muted">None</span>}</dd>
          </dl>
          <h2>Instances</h2>
          {all.length === 0 ? (
            <Empty>
              No instances of {name} are registered in {dc}.
            </Empty>
          ) : (
            <>
              <InstanceFilters filter={filter} status={status} />
              {shown.length === 0 ? (
                <Empty>No instance matches these filters.</Empty>
              ) : (
                <table class="responsive instances">
                  <caption class="sr-only">Instances of {name}</caption>
                  <thead>
                    <tr>
                      <th scope="col">Health</th>
                      <th scope="col">ID</th>
                      <th scope="col">Node</th>
                      <th scope="col">Address</th>
                      <th scope="col">Tags</th>
                      <th scope="col">Meta</th>
                      <th scope="col">Checks</th>
                    </tr>
                  </thead>
                  <tbody>
                    {shown.map((e) => (
                      <InstanceRow key={`${e.Node.Node}/${e.Service.ID}`} dc={dc} entry={e} />
                    ))}
                  </tbody>
                </table>
              )}
            </>
          )}
        </>
      )}
    </>
  );
}
