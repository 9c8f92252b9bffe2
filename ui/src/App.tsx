// The shell: navigation, the datacenter, the token, and the route table. URLs follow Consul's UI
// (`<base><dc>/services/<name>`), so bookmarks from Consul keep working.
import { FunctionComponent } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { getToken, setDatacenter } from './api';
import { settings } from './config';
import { useLive } from './live';
import { Link, navigate, useLocation } from './router';
import { Services } from './pages/Services';
import { Service } from './pages/Service';
import { Nodes } from './pages/Nodes';
import { Node } from './pages/Node';
import { Kv } from './pages/Kv';
import { AclTokens, AclToken, AclPolicies, AclPolicy, AclRoles, AclRole } from './pages/Acl';
import { Login } from './pages/Login';
import { Plugins } from './pages/Plugins';
import { Events } from './pages/Events';
import { Cluster } from './pages/Cluster';

export interface PageProps {
  dc: string;
  /** The route's captures: `['web']` for `services/web`. */
  params: string[];
  query: URLSearchParams;
}

type Route = [RegExp, FunctionComponent<PageProps>];

// Matched against the path after `<dc>/`.
const routes: Route[] = [
  [/^services\/?$/, Services],
  [/^services\/([^/]+)\/?$/, Service],
  [/^nodes\/?$/, Nodes],
  [/^nodes\/([^/]+)\/?$/, Node],
  [/^kv(?:\/(.*))?$/, Kv],
  [/^acls\/tokens\/?$/, AclTokens],
  [/^acls\/tokens\/([^/]+)\/?$/, AclToken],
  [/^acls\/policies\/?$/, AclPolicies],
  [/^acls\/policies\/([^/]+)\/?$/, AclPolicy],
  [/^acls\/roles\/?$/, AclRoles],
  [/^acls\/roles\/([^/]+)\/?$/, AclRole],
  [/^login\/?$/, Login],
  [/^plugins\/?$/, Plugins],
  [/^events\/?$/, Events],
  [/^cluster\/?$/, Cluster],
];

const nav: [string, string][] = [
  ['services', 'Services'],
  ['nodes', 'Nodes'],
  ['kv', 'Key/Value'],
  ...(settings.aclEnabled ? ([['acls/tokens', 'ACL']] as [string, string][]) : []),
  ['plugins', 'Plugins'],
  ['events', 'Events'],
  ['cluster', 'Cluster'],
];

function Datacenters(props: { dc: string; rest: string }) {
  // Datacenters come and go rarely: read once per wait period.
  const dcs = useLive<string[]>('catalog/datacenters', {}, { blocking: false, interval: 300_000 });
  const list = dcs.data ?? [props.dc];
  return (
    <label class="dc">
      <span class="sr-only">Datacenter</span>
      <select
        value={props.dc}
        aria-label="Datacenter"
        onChange={(e) => navigate(`/${(e.target as HTMLSelectElement).value}/${props.rest}`)}
      >
        {list.map((d) => (
          <option key={d} value={d}>
            {d}
          </option>
        ))}
      </select>
    </label>
  );
}

export function App() {
  const { path, query } = useLocation();
  const m = /^\/([^/]+)\/?(.*)$/.exec(path);
  const dc = m ? decodeURIComponent(m[1]) : '';
  const rest = m ? m[2] : '';
  useEffect(() => {
    // `/` opens the services of the agent's datacenter; `/login` the login of it.
    if (dc === 'login') navigate(`/${settings.datacenter}/login`, true);
    else if (!dc || !rest) navigate(`/${dc || settings.datacenter}/services`, true);
  }, [dc, rest]);
  // The header's token state follows logins and logouts.
  const [, setTokenTick] = useState(0);
  useEffect(() => {
    const on = () => setTokenTick((t) => t + 1);
    window.addEventListener('legate:token', on);
    return () => window.removeEventListener('legate:token', on);
  }, []);
  setDatacenter(dc || settings.datacenter);
  let page = null;
  for (const [re, Page] of routes) {
    const hit = re.exec(rest);
    if (hit) {
      page = <Page dc={dc} params={hit.slice(1).map((p) => (p === undefined ? '' : decodeURIComponent(p)))} query={query} />;
      break;
    }
  }
  const section = rest.split('/')[0];
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link to={`/${dc}/services`} class="brand">
          Legate
        </Link>
        <nav aria-label="Main">
          <ul>
            {nav.map(([to, label]) => (
              <li key={to}>
                <Link to={`/${dc}/${to}`} class={section === to.split('/')[0] ? 'active' : ''}>
                  {label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div class="top-right">
          <Datacenters dc={dc} rest={rest} />
          {settings.aclEnabled && (
            <Link to={`/${dc}/login`} class="login-link">
              {getToken() ? 'Token ✓' : 'Log in'}
            </Link>
          )}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {page ?? (
          <div class="error" role="alert">
            No page at this address. <Link to={`/${dc || settings.datacenter}/services`}>Services</Link>
          </div>
        )}
      </main>
    </>
  );
}
