// Pieces every page uses: health badges, error and loading states, key/value tables.
import { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';
import { setQuery } from './router';

export type Health = 'passing' | 'warning' | 'critical' | 'maintenance';

export function Badge(props: { status: string; children?: ComponentChildren }) {
  return (
    <span class={`badge badge-${props.status}`} data-status={props.status}>
      {props.children ?? props.status}
    </span>
  );
}

export function Counts(props: { passing: number; warning: number; critical: number }) {
  return (
    <span class="counts" aria-label={`${props.passing} passing, ${props.warning} warning, ${props.critical} critical`}>
      {props.passing > 0 && <Badge status="passing">{`✓ ${props.passing}`}</Badge>}
      {props.warning > 0 && <Badge status="warning">{`! ${props.warning}`}</Badge>}
      {props.critical > 0 && <Badge status="critical">{`✕ ${props.critical}`}</Badge>}
    </span>
  );
}

export function ErrorBox(props: { error?: Error }) {
  if (!props.error) return null;
  const forbidden = props.error instanceof ApiError && props.error.status === 403;
  return (
    <div class={`error ${forbidden ? 'forbidden' : ''}`} role="alert" data-status={(props.error as ApiError).status}>
      {forbidden ? (
        <>
          <strong>403 Forbidden.</strong> Your token does not allow this:{' '}
          <code>{(props.error as ApiError).text}</code>
        </>
      ) : (
        props.error.message
      )}
    </div>
  );
}

export function Loading(props: { when: boolean }) {
  return props.when ? <p class="muted" aria-busy="true">Loading…</p> : null;
}

export function Empty(props: { children: ComponentChildren }) {
  return <p class="empty muted">{props.children}</p>;
}

export function Tags(props: { tags?: string[] | null }) {
  if (!props.tags || props.tags.length === 0) return null;
  return (
    <span class="tags">
      {props.tags.map((t) => (
        <span class="tag" key={t}>
          {t}
        </span>
      ))}
    </span>
  );
}

/** A definition list of a string map (meta, tagged addresses). */
export function KeyValues(props: { map?: Record<string, unknown> | null; empty?: string }) {
  const entries = Object.entries(props.map ?? {});
  if (entries.length === 0) return <Empty>{props.empty ?? 'None.'}</Empty>;
  return (
    <dl class="kv">
      {entries.map(([k, v]) => (
        <>
          <dt key={`k-${k}`}>{k}</dt>
          <dd key={`v-${k}`}>{typeof v === 'string' ? v : JSON.stringify(v)}</dd>
        </>
      ))}
    </dl>
  );
}

/** Worst status of a list of checks (Consul's order: critical > warning > passing). */
export function worst(statuses: string[]): Health {
  if (statuses.includes('critical')) return 'critical';
  if (statuses.includes('maintenance')) return 'maintenance';
  if (statuses.includes('warning')) return 'warning';
  return 'passing';
}

export function PageTitle(props: { children: ComponentChildren; actions?: ComponentChildren }) {
  document.title = `${typeof props.children === 'string' ? props.children + ' - ' : ''}Legate`;
  return (
    <div class="page-title">
      <h1>{props.children}</h1>
      {props.actions && <div class="actions">{props.actions}</div>}
    </div>
  );
}

/**
 * A destructive action asked twice, inline (no browser dialog): the first click shows the
 * question with a "Confirm" button (`data-testid="confirm-delete"`) and "Cancel".
 */
export function ConfirmButton(props: {
  label: string;
  question: string;
  onConfirm: () => void | Promise<void>;
  testid?: string;
  disabled?: boolean;
  ariaLabel?: string;
}) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const confirm = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (asking) confirm.current?.focus();
  }, [asking]);
  if (!asking) {
    return (
      <button
        type="button"
        class="danger"
        data-testid={props.testid}
        aria-label={props.ariaLabel}
        disabled={props.disabled}
        onClick={() => setAsking(true)}
      >
        {props.label}
      </button>
    );
  }
  return (
    <span class="actions" role="group" aria-label={props.question}>
      <span>{props.question}</span>
      <button
        type="button"
        class="danger"
        data-testid="confirm-delete"
        disabled={busy}
        ref={confirm}
        onClick={async () => {
          setBusy(true);
          try {
            await props.onConfirm();
          } finally {
            setBusy(false);
            setAsking(false);
          }
        }}
      >
        Confirm
      </button>
      <button type="button" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

/** A list's search box; its text goes in the page's `filter` query parameter. */
export function SearchBox(props: { what: string; placeholder: string; testid: string; value: string }) {
  return (
    <label>
      <span class="sr-only">Search {props.what}</span>
      <input
        type="search"
        placeholder={props.placeholder}
        aria-label={`Search ${props.what}`}
        data-testid={props.testid}
        value={props.value}
        onInput={(e) => setQuery({ filter: (e.target as HTMLInputElement).value })}
      />
    </label>
  );
}

/** A list's health filter; the choice goes in the page's `status` query parameter. */
export function HealthSelect(props: { testid: string; value: string; maintenance?: boolean }) {
  return (
    <label>
      Health{' '}
      <select
        data-testid={props.testid}
        value={props.value}
        onChange={(e) => setQuery({ status: (e.target as HTMLSelectElement).value })}
      >
        <option value="">All</option>
        <option value="passing">Passing</option>
        <option value="warning">Warning</option>
        <option value="critical">Critical</option>
        {props.maintenance && <option value="maintenance">Maintenance</option>}
      </select>
    </label>
  );
}
