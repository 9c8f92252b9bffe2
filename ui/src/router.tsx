// Path-based routing under the UI's base path, so every page has a URL that can be bookmarked;
// the agent answers index.html for any path under the base.
import { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { settings } from './config';

/** The path inside the UI: '/services/web' for '<base>services/web'. */
export function currentPath(): string {
  const p = location.pathname;
  const base = settings.base;
  if (p.startsWith(base)) return '/' + p.slice(base.length);
  if (p + '/' === base) return '/';
  return p;
}

export function href(to: string): string {
  return settings.base + to.replace(/^\//, '');
}

export function navigate(to: string, replace = false) {
  const target = href(to);
  if (replace) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  window.dispatchEvent(new Event('legate:navigate'));
}

export function useLocation(): { path: string; query: URLSearchParams } {
  const [, setTick] = useState(0);
  useEffect(() => {
    const on = () => setTick((t) => t + 1);
    window.addEventListener('popstate', on);
    window.addEventListener('legate:navigate', on);
    return () => {
      window.removeEventListener('popstate', on);
      window.removeEventListener('legate:navigate', on);
    };
  }, []);
  return { path: currentPath(), query: new URLSearchParams(location.search) };
}

/** Sets the query string of the current page (filters, search) without a new history entry. */
export function setQuery(values: Record<string, string>) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(values)) {
    if (v) q.set(k, v);
    else q.delete(k);
  }
  const qs = q.toString();
  history.replaceState(null, '', location.pathname + (qs ? `?${qs}` : ''));
  window.dispatchEvent(new Event('legate:navigate'));
}

export function Link(props: { to: string; class?: string; children: ComponentChildren; title?: string }) {
  return (
    <a
      href={href(props.to)}
      class={props.class}
      title={props.title}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(props.to);
      }}
    >
      {props.children}
    </a>
  );
}
