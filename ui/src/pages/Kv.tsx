// Key/Value: a folder view (`kv/`, `kv/<folder>/`, `?new=1` for the create form) and a key view
// (`kv/<key>`). Writes use check-and-set so the page never overwrites a change it has not seen.
import { useEffect, useState } from 'preact/hooks';
import { PageProps } from '../App';
import { ApiError, del, put } from '../api';
import { ConfirmButton, Empty, ErrorBox, Loading, PageTitle } from '../components';
import { Live, useLive } from '../live';
import { Link, navigate, setQuery } from '../router';
import './Kv.css';

interface KvEntry {
  Key: string;
  Value: string | null;
  Flags: number;
  Session?: string;
  LockIndex: number;
  CreateIndex: number;
  ModifyIndex: number;
}

interface SessionInfo {
  ID: string;
  Name: string;
  Node: string;
  Behavior: string;
  TTL: string;
  LockDelay: number | string;
}

/** Each segment of a key percent-encoded, the slashes kept (API paths and UI addresses). */
const encodeKey = (key: string) => key.split('/').map(encodeURIComponent).join('/');
const apiPath = (key: string) => `kv/${encodeKey(key)}`;
const kvLink = (dc: string, key: string) => `/${dc}/kv/${encodeKey(key)}`;

/** The folder holding a key or folder: 'a/b/' for 'a/b/c' and for 'a/b/c/'. */
function parentOf(key: string): string {
  const trimmed = key.endsWith('/') ? key.slice(0, -1) : key;
  const i = trimmed.lastIndexOf('/');
  return i < 0 ? '' : trimmed.slice(0, i + 1);
}

/** The last segment of a key or folder ('c' or 'c/'). */
function baseName(key: string): string {
  return key.slice(parentOf(key).length);
}

/** Whether the live read answered 404 (an empty folder, a key that does not exist); `useLive`
 * keeps blocking on it, so the view follows when keys appear. */
function useMissing<T>(live: Live<T>): boolean {
  return live.error instanceof ApiError && live.error.status === 404;
}

/** A value as text; a value that is not UTF-8 is shown as base64 and marked binary. */
function decodeValue(b64: string | null): { text: string; binary: boolean } {
  if (!b64) return { text: '', binary: false };
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), binary: false };
  } catch {
    return { text: b64, binary: true };
  }
}

function prettyJson(text: string): string | null {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return null;
  }
}

/** A session's LockDelay: nanoseconds as a number (Consul's JSON) or a duration string. */
function formatDelay(d: number | string): string {
  if (typeof d === 'string') return d;
  if (d % 1e9 === 0) return `${d / 1e9}s`;
  return `${d / 1e6}ms`;
}

const validFlags = (s: string) => /^\d+$/.test(s.trim()) && BigInt(s.trim()) < 2n ** 64n;

export function Kv({ dc, params, query }: PageProps) {
  const path = params[0] ?? '';
  if (path === '' || path.endsWith('/')) {
    return <KvFolder key={path} dc={dc} prefix={path} creating={query.get('new') === '1'} filter={query.get('q') ?? ''} />;
  }
  return <KvKey key={path} dc={dc} name={path} json={query.get('json') === '1'} />;
}

function Breadcrumbs(props: { dc: string; folder: string }) {
  const parts = props.folder.split('/').filter((p, i, all) => p !== '' || i < all.length - 1);
  let acc = '';
  return (
    <nav class="breadcrumbs" aria-label="Breadcrumb">
      <Link to={kvLink(props.dc, '')}>Key/Value</Link>
      {parts.map((p) => {
        acc += `${p}/`;
        return (
          <span key={acc}>
            <span aria-hidden="true">/ </span>
            <Link to={kvLink(props.dc, acc)}>{p}</Link>
          </span>
        );
      })}
    </nav>
  );
}

// ---- folder ----

function KvFolder(props: { dc: string; prefix: string; creating: boolean; filter: string }) {
  const { dc, prefix } = props;
  const live = useLive<string[]>(apiPath(prefix), { keys: true, separator: '/' });
  const missing = useMissing(live);
  const [error, setError] = useState<Error>();
  // The folder's own key ('a/' in the listing of 'a/') is not an entry of it.
  const entries = missing ? [] : (live.data ?? []).filter((k) => k !== prefix).sort();
  const needle = props.filter.toLowerCase();
  const shown = needle ? entries.filter((k) => baseName(k).toLowerCase().includes(needle)) : entries;
  const title = prefix ? baseName(prefix) : 'Key/Value';

  const remove = async (key: string) => {
    setError(undefined);
    try {
      await del(apiPath(key), key.endsWith('/') ? { recurse: true } : {});
      live.refresh();
    } catch (e) {
      setError(e as Error);
    }
  };
  const removeFolder = async () => {
    setError(undefined);
    try {
      await del(apiPath(prefix), { recurse: true });
      navigate(kvLink(dc, parentOf(prefix)));
    } catch (e) {
      setError(e as Error);
    }
  };

  return (
    <>
      {prefix && <Breadcrumbs dc={dc} folder={parentOf(prefix)} />}
      <PageTitle
        actions={
          <>
            {!props.creating && (
              <button type="button" class="primary" onClick={() => setQuery({ new: '1' })}>
                Create
              </button>
            )}
            {prefix && (
              <ConfirmButton
                label="Delete folder"
                question={`Delete the folder ${prefix} and every key in it?`}
                testid="kv-delete"
                onConfirm={removeFolder}
              />
            )}
          </>
        }
      >
        {title}
      </PageTitle>
      <ErrorBox error={error} />
      {props.creating && (
        <KvCreate
          dc={dc}
          prefix={prefix}
          onDone={(created) => {
            live.refresh();
            const folder = parentOf(prefix + created);
            navigate(kvLink(dc, folder));
          }}
        />
      )}
      {!missing && <ErrorBox error={live.error} />}
      {entries.length > 0 && (
        <div class="filters">
          <label>
            <span class="sr-only">Search keys</span>
            <input
              type="search"
              placeholder="Search keys"
              aria-label="Search keys"
              value={props.filter}
              onInput={(e) => setQuery({ q: (e.target as HTMLInputElement).value })}
            />
          </label>
        </div>
      )}
      <Loading when={live.loading && !live.data && !missing} />
      {missing && <Empty>There are no keys{prefix ? ' in this folder' : ''}.</Empty>}
      {!missing && live.data && shown.length === 0 && (
        <Empty>{entries.length === 0 ? 'There are no keys in this folder.' : 'No keys match the search.'}</Empty>
      )}
      {shown.length > 0 && (
        <table class="responsive">
          <thead>
            <tr>
              <th>Name</th>
              <th>Kind</th>
              <th>
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {shown.map((k) => {
              const folder = k.endsWith('/');
              return (
                <tr key={k} data-testid="kv-row" data-name={k}>
                  <td data-label="Name">
                    <Link to={kvLink(dc, k)}>
                      {baseName(k)}
                    </Link>
                  </td>
                  <td data-label="Kind">{folder ? 'Folder' : 'Key'}</td>
                  <td class="kv-row-actions">
                    <ConfirmButton
                      label="Delete"
                      ariaLabel={`Delete ${k}`}
                      question={folder ? `Delete ${k} and every key in it?` : `Delete ${k}?`}
                      testid="kv-row-delete"
                      onConfirm={() => remove(k)}
                    />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </>
  );
}

function KvCreate(props: { dc: string; prefix: string; onDone: (created: string) => void }) {
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const [flags, setFlags] = useState('0');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error>();
  const [exists, setExists] = useState<string | null>(null);
  const folder = name.endsWith('/');
  const full = props.prefix + name;

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setExists(null);
    if (!name || name.startsWith('/')) {
      setError(new Error('Enter a key name (not starting with "/").'));
      return;
    }
    if (!folder && !validFlags(flags)) {
      setError(new Error('Flags must be a whole number between 0 and 2^64-1.'));
      return;
    }
    setBusy(true);
    try {
      // cas=0: create only; `false` means the key is already there.
      const params = folder ? { cas: 0 } : { cas: 0, flags: flags.trim() };
      const res = await put<boolean>(apiPath(full), folder ? '' : value, params);
      if (res.data === false) setExists(full);
      else props.onDone(name);
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="stack card kv-form" data-testid="kv-create-form" onSubmit={submit} aria-labelledby="kv-create-title">
      <h2 id="kv-create-title">Create a key{props.prefix ? ` in ${props.prefix}` : ''}</h2>
      <label>
        Key or folder name
        <input
          data-testid="kv-key-input"
          value={name}
          required
          autoFocus
          aria-describedby="kv-key-help"
          onInput={(e) => setName((e.target as HTMLInputElement).value)}
        />
        <span id="kv-key-help" class="muted">
          Relative to {props.prefix || 'the root'}. End the name with "/" to create a folder.
        </span>
      </label>
      {!folder && (
        <>
          <label>
            Value
            <textarea
              class="code"
              data-testid="kv-value-input"
              value={value}
              onInput={(e) => setValue((e.target as HTMLTextAreaElement).value)}
            />
          </label>
          <label>
            Flags
            <input
              data-testid="kv-flags-input"
              inputMode="numeric"
              value={flags}
              onInput={(e) => setFlags((e.target as HTMLInputElement).value)}
            />
          </label>
        </>
      )}
      {exists !== null && (
        <div class="error" role="alert" data-testid="kv-exists">
          A key named <code>{exists}</code> already exists; it was not changed.{' '}
          <Link to={kvLink(props.dc, exists)}>Open it</Link>
        </div>
      )}
      <ErrorBox error={error} />
      <div class="actions">
        <button type="submit" class="primary" data-testid="kv-save" disabled={busy}>
          {folder ? 'Create folder' : 'Save'}
        </button>
        <button type="button" onClick={() => setQuery({ new: '' })}>
          Cancel
        </button>
      </div>
    </form>
  );
}

// ---- key ----

interface Draft {
  value: string;
  flags: string;
  /** The version the edit started from: its ModifyIndex is the check-and-set index. */
  base: KvEntry;
  /** Saved: shown until the live read brings the new version. */
  committed?: boolean;
}

function KvKey(props: { dc: string; name: string; json: boolean }) {
  const { dc, name } = props;
  const live = useLive<KvEntry[]>(apiPath(name));
  const missing = useMissing(live);
  const entry = missing ? undefined : live.data?.[0];

  // Consul's UI addresses (`kv/<key>/edit`, `kv/<folder>/create`) lead to this page's own ones.
  useEffect(() => {
    if (!missing) return;
    if (name.endsWith('/edit')) navigate(kvLink(dc, name.slice(0, -'/edit'.length)), true);
    else if (name === 'create' || name.endsWith('/create')) navigate(`${kvLink(dc, parentOf(name))}?new=1`, true);
  }, [missing]);

  return (
    <>
      <Breadcrumbs dc={dc} folder={parentOf(name)} />
      <PageTitle>{baseName(name)}</PageTitle>
      {!missing && <ErrorBox error={live.error} />}
      <Loading when={live.loading && !live.data && !missing} />
      {missing && (
        <Empty>
          The key <code>{name}</code> does not exist.{' '}
          <Link to={`${kvLink(dc, parentOf(name))}?new=1`}>Create a key in {parentOf(name) || 'the root'}</Link>
        </Empty>
      )}
      {entry && <KvEntryView dc={dc} entry={entry} json={props.json} />}
      {live.data && <KvEdit dc={dc} name={name} entry={entry} refresh={live.refresh} />}
    </>
  );
}

function KvEntryView(props: { dc: string; entry: KvEntry; json: boolean }) {
  const { entry } = props;
  const { text, binary } = decodeValue(entry.Value);
  const pretty = props.json && !binary ? prettyJson(text) : null;
  return (
    <>
      <section class="card" aria-labelledby="kv-value-title">
        <div class="kv-value-head">
          <h2 id="kv-value-title">Value</h2>
          {!binary && (
            <button
              type="button"
              data-testid="kv-json-toggle"
              aria-pressed={props.json}
              onClick={() => setQuery({ json: props.json ? '' : '1' })}
            >
              JSON
            </button>
          )}
        </div>
        {binary && <p class="muted">The value is not UTF-8 text; shown as base64.</p>}
        {props.json && !binary && pretty === null && <p class="muted">The value is not valid JSON.</p>}
        {entry.Value === null ? (
          <p class="muted" data-testid="kv-value">
            (empty)
          </p>
        ) : (
          <pre data-testid="kv-value">{pretty ?? text}</pre>
        )}
      </section>
      <dl class="kv">
        <dt>Flags</dt>
        <dd>{entry.Flags}</dd>
        <dt>Create index</dt>
        <dd>{entry.CreateIndex}</dd>
        <dt>Modify index</dt>
        <dd>{entry.ModifyIndex}</dd>
        <dt>Lock index</dt>
        <dd>{entry.LockIndex}</dd>
      </dl>
      {entry.Session && <LockHolder dc={props.dc} session={entry.Session} />}
    </>
  );
}

function LockHolder(props: { dc: string; session: string }) {
  const live = useLive<SessionInfo[] | null>(`session/info/${encodeURIComponent(props.session)}`);
  const s = live.data?.[0];
  return (
    <section class="card kv-lock" data-testid="kv-lock-holder" aria-labelledby="kv-lock-title">
      <h2 id="kv-lock-title">Locked by a session</h2>
      <ErrorBox error={live.error} />
      <Loading when={live.loading && !live.data} />
      {live.data && !s && (
        <p class="muted">
          Session <code>{props.session}</code> no longer exists.
        </p>
      )}
      {s && (
        <dl class="kv">
          <dt>Node</dt>
          <dd>
            <Link to={`/${props.dc}/nodes/${encodeURIComponent(s.Node)}`}>{s.Node}</Link>
          </dd>
          <dt>Name</dt>
          <dd>{s.Name || <span class="muted">(none)</span>}</dd>
          <dt>ID</dt>
          <dd>
            <code>{s.ID}</code>
          </dd>
          <dt>Behavior</dt>
          <dd>{s.Behavior}</dd>
          {s.TTL && (
            <>
              <dt>TTL</dt>
              <dd>{s.TTL}</dd>
            </>
          )}
          <dt>Lock delay</dt>
          <dd>{formatDelay(s.LockDelay)}</dd>
        </dl>
      )}
    </section>
  );
}

/**
 * The edit form. Until the user types it follows the live value; from the first change it holds
 * a draft tied to the version it started from, and Save writes with that version's ModifyIndex.
 */
function KvEdit(props: { dc: string; name: string; entry?: KvEntry; refresh: () => void }) {
  const { entry, name } = props;
  const [draft, setDraft] = useState<Draft | null>(null);
  const [conflict, setConflict] = useState(false);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  const [error, setError] = useState<Error>();
  const current = entry ? decodeValue(entry.Value) : { text: '', binary: false };
  const value = draft?.value ?? current.text;
  const flags = draft?.flags ?? String(entry?.Flags ?? 0);
  // The key moved on (or went away) since the draft began.
  const moved = draft !== null && (!entry || entry.ModifyIndex !== draft.base.ModifyIndex);
  const changed = moved && !draft?.committed;
  // A saved draft gives way to the live entry once the key moves on. Decided on the draft as it
  // is when the update runs, not as this render saw it: Preact runs a pending effect just before
  // the next render, after an edit may have begun a new draft (seen as a flaky UI test: the
  // user's typing was dropped and the live value saved back without a conflict).
  useEffect(() => {
    if (draft?.committed && moved) {
      setDraft((d) => (d?.committed && (!entry || entry.ModifyIndex !== d.base.ModifyIndex) ? null : d));
    }
  }, [draft, moved]);

  const edit = (patch: Partial<Draft>) => {
    setSaved(false);
    setDraft((d) => {
      const start = d && !d.committed ? d : entry && { value: current.text, flags: String(entry.Flags), base: entry };
      return start ? { ...start, ...patch } : d;
    });
  };

  const save = async (e: Event) => {
    e.preventDefault();
    const saving = draft;
    const base = draft?.base ?? entry;
    if (!base) return;
    setError(undefined);
    setSaved(false);
    if (!validFlags(flags)) {
      setError(new Error('Flags must be a whole number between 0 and 2^64-1.'));
      return;
    }
    setBusy(true);
    try {
      const res = await put<boolean>(apiPath(name), value, { cas: base.ModifyIndex, flags: flags.trim() });
      if (res.data === false) {
        setConflict(true);
        props.refresh();
      } else {
        // Only the draft this request wrote: one begun while it was under way stays a draft.
        setDraft((d) => (d && d === saving ? { ...d, committed: true } : d));
        setConflict(false);
        setSaved(true);
      }
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };

  // The key went away while being edited: create it anew (cas=0 refuses if it came back).
  const recreate = async () => {
    const saving = draft;
    setError(undefined);
    setBusy(true);
    try {
      const res = await put<boolean>(apiPath(name), value, { cas: 0, flags: flags.trim() });
      if (res.data === false) setError(new Error('The key exists again; it was not overwritten.'));
      else {
        setDraft((d) => (d && d === saving ? { ...d, committed: true } : d));
        setConflict(false);
        setSaved(true);
        props.refresh();
      }
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    if (!entry) return;
    setError(undefined);
    try {
      const res = await del<boolean>(apiPath(name), { cas: entry.ModifyIndex });
      if (res.data === false) setError(new Error('The key was changed by someone else since you opened it; it was not deleted.'));
      else navigate(kvLink(props.dc, parentOf(name)));
    } catch (err) {
      setError(err as Error);
    }
  };

  if (!entry && !draft) return null;
  return (
    <form class="stack card kv-form" data-testid="kv-edit-form" onSubmit={save} aria-labelledby="kv-edit-title">
      <h2 id="kv-edit-title">Edit</h2>
      {changed && !conflict && (
        <div class="notice kv-changed" role="status" data-testid="kv-changed">
          {entry
            ? `The key changed underneath you (now at index ${entry.ModifyIndex}). Saving will be refused; the current value is shown above.`
            : 'The key was deleted since you started editing.'}
        </div>
      )}
      {conflict && (
        <div class="error" role="alert" data-testid="kv-cas-conflict">
          <p>
            <strong>The key was changed by someone else since you opened it.</strong> Your value was not saved.
          </p>
          {entry ? (
            <>
              <p>The current value (index {entry.ModifyIndex}):</p>
              <pre>{decodeValue(entry.Value).text}</pre>
            </>
          ) : (
            <p>The key has been deleted.</p>
          )}
          <div class="actions">
            <button
              type="button"
              onClick={() => {
                setDraft(null);
                setConflict(false);
              }}
            >
              Discard my changes
            </button>
            {entry ? (
              <button
                type="button"
                onClick={() => {
                  setDraft((d) => (d ? { ...d, base: entry } : d));
                  setConflict(false);
                }}
              >
                Keep my changes to save over the current value
              </button>
            ) : (
              <button type="button" disabled={busy} onClick={recreate}>
                Create the key again with my value
              </button>
            )}
          </div>
        </div>
      )}
      {current.binary ? (
        <p class="muted">The value is binary; it cannot be edited here.</p>
      ) : (
        <label>
          Value
          <textarea
            class="code"
            data-testid="kv-value-input"
            value={value}
            onInput={(e) => edit({ value: (e.target as HTMLTextAreaElement).value })}
          />
        </label>
      )}
      <label>
        Flags
        <input
          data-testid="kv-flags-input"
          inputMode="numeric"
          value={flags}
          disabled={current.binary}
          onInput={(e) => edit({ flags: (e.target as HTMLInputElement).value })}
        />
      </label>
      <ErrorBox error={error} />
      {saved && (
        <p class="notice" role="status">
          Saved.
        </p>
      )}
      <div class="actions">
        <button type="submit" class="primary" data-testid="kv-save" disabled={busy || current.binary || (!entry && conflict)}>
          Save
        </button>
        {draft && !draft.committed && (
          <button
            type="button"
            onClick={() => {
              setDraft(null);
              setConflict(false);
            }}
          >
            Revert
          </button>
        )}
        {entry && (
          <ConfirmButton label="Delete" question={`Delete ${name}?`} testid="kv-delete" onConfirm={remove} />
        )}
      </div>
    </form>
  );
}
