// The services of the datacenter (GET /v1/internal/ui/services, blocking): health summary, tags,
// instances and nodes, with a search, a health filter, a tag filter and a sort order, all kept in
// the query string so a filtered list can be bookmarked.
import { PageProps } from '../App';
import { useLive } from '../live';
import { Link, setQuery } from '../router';
import { Counts, Empty, ErrorBox, HealthSelect, Loading, PageTitle, SearchBox, Tags } from '../components';
import './Services.css';

interface ServiceSummary {
  Kind?: string;
  Name: string;
  Datacenter?: string;
  Tags?: string[] | null;
  Nodes?: string[] | null;
  InstanceCount: number;
  ChecksPassing: number;
  ChecksWarning: number;
  ChecksCritical: number;
  ExternalSources?: string[] | null;
}

/** How many node names a row shows before "+N more". */
const NODES_SHOWN = 5;

const KINDS: Record<string, string> = {
  'connect-proxy': 'proxy',
  'mesh-gateway': 'mesh gateway',
  'ingress-gateway': 'ingress gateway',
  'terminating-gateway': 'terminating gateway',
  'api-gateway': 'API gateway',
};

/** The worst state among a service's checks, for sorting ('none' without checks). */
function health(s: ServiceSummary): number {
  if (s.ChecksCritical > 0) return 0;
  if (s.ChecksWarning > 0) return 1;
  if (s.ChecksPassing > 0) return 2;
  return 3;
}

function matches(s: ServiceSummary, filter: string, status: string, tag: string): boolean {
  if (status === 'passing' && !(s.ChecksPassing > 0)) return false;
  if (status === 'warning' && !(s.ChecksWarning > 0)) return false;
  if (status === 'critical' && !(s.ChecksCritical > 0)) return false;
  if (tag && !(s.Tags ?? []).includes(tag)) return false;
  if (!filter) return true;
  const f = filter.toLowerCase();
  return s.Name.toLowerCase().includes(f) || (s.Tags ?? []).some((t) => t.toLowerCase().includes(f));
}

const SORTS: Record<string, (a: ServiceSummary, b: ServiceSummary) => number> = {
  '': (a, b) => a.Name.localeCompare(b.Name),
  'name-desc': (a, b) => b.Name.localeCompare(a.Name),
  health: (a, b) => health(a) - health(b) || a.Name.localeCompare(b.Name),
};

function ServiceFilters(props: { filter: string; status: string; tag: string; sort: string; tags: string[] }) {
  // A bookmarked tag that no service carries any more stays selectable (and shows no rows).
  const tags = props.tag && !props.tags.includes(props.tag) ? [props.tag, ...props.tags] : props.tags;
  return (
    <div class="filters" role="search">
      <SearchBox what="services" placeholder="Search by name or tag" testid="service-search" value={props.filter} />
      <HealthSelect testid="service-status-filter" value={props.status} />
      <label>
        Tag{' '}
        <select
          data-testid="service-tag-filter"
          value={props.tag}
          onChange={(e) => setQuery({ tag: (e.target as HTMLSelectElement).value })}
        >
          <option value="">All</option>
          {tags.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
      </label>
      <label>
        Sort{' '}
        <select
          data-testid="service-sort"
          value={props.sort}
          onChange={(e) => setQuery({ sort: (e.target as HTMLSelectElement).value })}
        >
          <option value="">Name A–Z</option>
          <option value="name-desc">Name Z–A</option>
          <option value="health">Unhealthy first</option>
        </select>
      </label>
    </div>
  );
}

function NodeNames(props: { dc: string; nodes: string[] }) {
  const nodes = [...props.nodes].sort();
  const more = nodes.length - NODES_SHOWN;
  return (
    <span class="node-names">
      {nodes.slice(0, NODES_SHOWN).map((n) => (
        <Link key={n} to={`/${props.dc}/nodes/${encodeURIComponent(n)}`}>
          {n}
        </Link>
      ))}
      {more > 0 && <span class="muted">{`+${more} more`}</span>}
    </span>
  );
}

function ServiceRow(props: { dc: string; s: ServiceSummary }) {
  const { s } = props;
  const sources = s.ExternalSources ?? [];
  const hasChecks = s.ChecksPassing + s.ChecksWarning + s.ChecksCritical > 0;
  return (
    <tr data-testid="service-row" data-name={s.Name}>
      <td data-label="Service">
        <Link to={`/${props.dc}/services/${encodeURIComponent(s.Name)}`} class="service-name">
          {s.Name}
        </Link>
        {s.Kind && <span class="kind">{KINDS[s.Kind] ?? s.Kind}</span>}
        {sources.length > 0 && <span class="muted small">{` registered by ${sources.join(', ')}`}</span>}
      </td>
      <td data-label="Health">
        {hasChecks ? (
          <Counts passing={s.ChecksPassing} warning={s.ChecksWarning} critical={s.ChecksCritical} />
        ) : (
          <span class="muted">no checks</span>
        )}
      </td>
      <td data-label="Instances">{s.InstanceCount}</td>
      <td data-label="Tags">
        <Tags tags={s.Tags} />
      </td>
      <td data-label="Nodes">
        <NodeNames dc={props.dc} nodes={s.Nodes ?? []} />
      </td>
    </tr>
  );
}

export function Services({ dc, query }: PageProps) {
  const live = useLive<ServiceSummary[]>('internal/ui/services');
  const filter = query.get('filter') ?? '';
  const status = query.get('status') ?? '';
  const tag = query.get('tag') ?? '';
  const sort = query.get('sort') ?? '';
  const all = live.data ?? [];
  const tags = [...new Set(all.flatMap((s) => s.Tags ?? []))].sort();
  const shown = all.filter((s) => matches(s, filter, status, tag)).sort(SORTS[sort] ?? SORTS['']);
  const critical = all.filter((s) => s.ChecksCritical > 0).length;

  return (
    <>
      <PageTitle>Services</PageTitle>
      <ServiceFilters filter={filter} status={status} tag={tag} sort={sort} tags={tags} />
      <ErrorBox error={live.error} />
      <Loading when={live.loading && !live.data} />
      {live.data &&
        (all.length === 0 ? (
          <Empty>No services are registered in {dc}.</Empty>
        ) : (
          <>
            <p class="muted" aria-live="polite">
              {shown.length === all.length
                ? `${all.length} services`
                : `${shown.length} of ${all.length} services`}
              {critical > 0 && ` · ${critical} with failing checks`}
            </p>
            {shown.length === 0 ? (
              <Empty>No service matches these filters.</Empty>
            ) : (
              <table class="responsive services">
                <caption class="sr-only">Services in {dc}</caption>
                <thead>
                  <tr>
                    <th scope="col">Service</th>
                    <th scope="col">Health checks</th>
                    <th scope="col">Instances</th>
                    <th scope="col">Tags</th>
                    <th scope="col">Nodes</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.map((s) => (
                    <ServiceRow key={`${s.Kind ?? ''}/${s.Name}`} dc={dc} s={s} />
                  ))}
                </tbody>
              </table>
            )}
          </>
        ))}
    </>
  );
}
