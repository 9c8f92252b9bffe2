// The settings the agent writes into index.html (core/http's UI handler): where the UI lives,
// whether ACLs are on, the agent's datacenter. `npm run dev` has none: defaults for a dev agent.
export interface UiSettings {
  base: string; // always ends with '/'
  aclEnabled: boolean;
  datacenter: string;
  nodeName: string;
  version: string;
}

function read(): UiSettings {
  const el = document.getElementById('legate-config');
  const fallback: UiSettings = { base: '/ui/', aclEnabled: false, datacenter: 'dc1', nodeName: '', version: '' };
  if (!el || !el.textContent) return fallback;
  try {
    return { ...fallback, ...JSON.parse(el.textContent) };
  } catch {
    return fallback;
  }
}

export const settings: UiSettings = read();
