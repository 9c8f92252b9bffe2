// ACL: tokens, policies and roles — lists, a page per item (its facts, an edit form, where it is
// used) and a create form at `<kind>/new`. Built-in objects cannot be deleted.
import { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { PageProps } from '../App';
import { ApiError, del, put } from '../api';
import { settings } from '../config';
import { Badge, ConfirmButton, Empty, ErrorBox, Loading, PageTitle, Tags } from '../components';
import { useLive } from '../live';
import { Link, navigate, setQuery } from '../router';
import './Acl.css';

const GLOBAL_MANAGEMENT = '00000000-0000-0000-0000-000000000001';
const ANONYMOUS = '00000000-0000-0000-0000-000000000002';

export interface AclLink {
  ID: string;
  Name: string;
}
interface ServiceIdentity {
  ServiceName: string;
  Datacenters?: string[];
}
interface NodeIdentity {
  NodeName: string;
  Datacenter: string;
}
interface TemplatedPolicy {
  TemplateName: string;
  TemplateVariables?: { name?: string };
  Datacenters?: string[];
}
interface Identities {
  ServiceIdentities?: ServiceIdentity[];
  NodeIdentities?: NodeIdentity[];
  TemplatedPolicies?: TemplatedPolicy[];
}
interface Token extends Identities {
  AccessorID: string;
  SecretID?: string;
  Description: string;
  Policies?: AclLink[];
  Roles?: AclLink[];
  Local: boolean;
  AuthMethod?: string;
  ExpirationTime?: string;
  CreateTime: string;
  CreateIndex: number;
  ModifyIndex: number;
}
interface Policy {
  ID: string;
  Name: string;
  Description: string;
  Rules?: string;
  Datacenters?: string[];
  CreateIndex: number;
  ModifyIndex: number;
}
interface Role extends Identities {
  ID: string;
  Name: string;
  Description: string;
  Policies?: AclLink[];
  CreateIndex: number;
  ModifyIndex: number;
}

type Tab = 'tokens' | 'policies' | 'roles';

// ---- shared pieces ----

function formatTime(s?: string): string {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d.getTime()) ? s : d.toLocaleString();
}

/** A 401 from the ACL API means ACLs are off on the agent (Consul's "ACL support disabled"). */
function AclError(props: { error?: Error }) {
  if (props.error instanceof ApiError && props.error.status === 401) {
    return (
      <p class="error" role="alert">
        ACLs are disabled on this agent.
      </p>
    );
  }
  return <ErrorBox error={props.error} />;
}

/** Every ACL page: the Tokens/Policies/Roles tabs, or the notice that ACLs are off. */
function AclShell(props: { dc: string; tab: Tab; children: ComponentChildren }) {
  if (!settings.aclEnabled) {
    return (
      <>
        <PageTitle>Access Controls</PageTitle>
        <p class="notice" role="status" data-testid="acl-disabled">
          ACLs are disabled on this agent.
        </p>
      </>
    );
  }
  const tabs: [Tab, string][] = [
    ['tokens', 'Tokens'],
    ['policies', 'Policies'],
    ['roles', 'Roles'],
  ];
  return (
    <>
      <nav class="tabs" aria-label="Access controls">
        {tabs.map(([t, label]) => (
          <Link key={t} to={`/${props.dc}/acls/${t}`} class={props.tab === t ? 'active' : ''}>
            {label}
          </Link>
        ))}
      </nav>
      {props.children}
    </>
  );
}

function Search(props: { value: string; label: string }) {
  return (
    <div class="filters">
      <input
        type="search"
        placeholder={props.label}
        aria-label={props.label}
        value={props.value}
        onInput={(e) => setQuery({ q: (e.target as HTMLInputElement).value })}
      />
    </div>
  );
}

const matches = (needle: string, ...fields: (string | undefined)[]) =>
  !needle || fields.some((f) => (f ?? '').toLowerCase().includes(needle.toLowerCase()));

/** A token's or role's policies (or roles) as links to their pages. */
export function LinkList(props: { dc: string; kind: 'policies' | 'roles'; links?: AclLink[] }) {
  if (!props.links || props.links.length === 0) return <span class="muted">None</span>;
  return (
    <span class="tags">
      {props.links.map((l) => (
        <Link key={l.ID} to={`/${props.dc}/acls/${props.kind}/${l.ID}`} class="tag">
          {l.Name || l.ID}
        </Link>
      ))}
    </span>
  );
}

/** Service and node identities and templated policies: shown, and kept as they are on save. */
function IdentityFacts(props: { item: Identities }) {
  const { ServiceIdentities: s, NodeIdentities: n, TemplatedPolicies: t } = props.item;
  return (
    <>
      {s && s.length > 0 && (
        <>
          <dt>Service identities</dt>
          <dd>
            <Tags tags={s.map((i) => i.ServiceName + (i.Datacenters?.length ? ` (${i.Datacenters.join(', ')})` : ''))} />
          </dd>
        </>
      )}
      {n && n.length > 0 && (
        <>
          <dt>Node identities</dt>
          <dd>
            <Tags tags={n.map((i) => `${i.NodeName} (${i.Datacenter})`)} />
          </dd>
        </>
      )}
      {t && t.length > 0 && (
        <>
          <dt>Templated policies</dt>
          <dd>
            <Tags tags={t.map((i) => i.TemplateName + (i.TemplateVariables?.name ? `: ${i.TemplateVariables.name}` : ''))} />
          </dd>
        </>
      )}
    </>
  );
}

const identitiesOf = (item: Identities): Identities => ({
  ...(item.ServiceIdentities ? { ServiceIdentities: item.ServiceIdentities } : {}),
  ...(item.NodeIdentities ? { NodeIdentities: item.NodeIdentities } : {}),
  ...(item.TemplatedPolicies ? { TemplatedPolicies: item.TemplatedPolicies } : {}),
});

/**
 * A form's values: they follow the live item until the user changes something, then stay as the
 * user left them; `stale` says the item changed on the agent since the edit began. After a save,
 * `commit` keeps the saved values shown until the live read brings the new version.
 */
function useDraft<F>(live: F, version: number) {
  const [draft, setDraft] = useState<{ form: F; version: number; committed: boolean } | null>(null);
  const active = draft !== null && !(draft.committed && draft.version !== version);
  const current = active ? draft.form : live;
  return {
    form: current,
    set: (patch: Partial<F>) =>
      setDraft((d) => {
        const keep = d !== null && !d.committed;
        return { form: { ...(keep ? d.form : live), ...patch }, version: keep ? d.version : version, committed: false };
      }),
    dirty: active && !draft.committed,
    stale: active && !draft.committed && draft.version !== version,
    commit: () => setDraft((d) => (d ? { ...d, committed: true } : d)),
    reset: () => setDraft(null),
  };
}

/** Checkboxes of policies or roles, picked by name; links the item has that the list lacks stay. */
function LinkPicker(props: { legend: string; path: string; selected: AclLink[]; onChange: (l: AclLink[]) => void; testid: string }) {
  const live = useLive<AclLink[]>(props.path);
  const all = [...(live.data ?? [])];
  for (const l of props.selected) if (!all.some((a) => a.ID === l.ID)) all.push(l);
  all.sort((a, b) => a.Name.localeCompare(b.Name));
  const on = new Set(props.selected.map((l) => l.ID));
  return (
    <fieldset class="acl-picker">
      <legend>{props.legend}</legend>
      <AclError error={live.error} />
      <Loading when={live.loading && !live.data} />
      {live.data && all.length === 0 && <span class="muted">None defined.</span>}
      {all.map((l) => (
        <label key={l.ID} class="acl-check" data-testid={props.testid} data-name={l.Name}>
          <input
            type="checkbox"
            checked={on.has(l.ID)}
            onChange={(e) => {
              const checked = (e.target as HTMLInputElement).checked;
              props.onChange(checked ? [...props.selected, l] : props.selected.filter((s) => s.ID !== l.ID));
            }}
          />
          {l.Name || l.ID}
        </label>
      ))}
    </fieldset>
  );
}

function FormStatus(props: { stale: boolean; saved: boolean; error?: Error }) {
  return (
    <>
      {props.stale && (
        <p class="notice" role="status" data-testid="acl-stale">
          This was changed on the agent since you began editing; saving replaces that change.
        </p>
      )}
      <AclError error={props.error} />
      {props.saved && (
        <p class="notice" role="status">
          Saved.
        </p>
      )}
    </>
  );
}

/** Runs a write, keeping its busy, error and saved states. */
function useWrite() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error>();
  const [saved, setSaved] = useState(false);
  const run = async (f: () => Promise<void>, markSaved = true) => {
    setBusy(true);
    setError(undefined);
    setSaved(false);
    try {
      await f();
      if (markSaved) setSaved(true);
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, saved, run, clearSaved: () => setSaved(false) };
}

function TokensUsing(props: { dc: string; params: Record<string, string> }) {
  const live = useLive<Token[]>('acl/tokens', props.params);
  return (
    <section aria-labelledby="applied-title">
      <h2 id="applied-title">Applied to tokens</h2>
      <AclError error={live.error} />
      <Loading when={live.loading && !live.data} />
      {live.data && live.data.length === 0 && <Empty>No token uses this.</Empty>}
      {live.data && live.data.length > 0 && <TokenTable dc={props.dc} tokens={live.data} />}
    </section>
  );
}

// ---- tokens ----

function TokenTable(props: { dc: string; tokens: Token[] }) {
  return (
    <table class="responsive">
      <thead>
        <tr>
          <th>Accessor ID</th>
          <th>Description</th>
          <th>Policies and roles</th>
          <th>Scope</th>
          <th>Created</th>
        </tr>
      </thead>
      <tbody>
        {props.tokens.map((t) => (
          <tr key={t.AccessorID} data-testid="token-row" data-name={t.AccessorID}>
            <td data-label="Accessor ID">
              <Link to={`/${props.dc}/acls/tokens/${t.AccessorID}`}>
                <code>{t.AccessorID}</code>
              </Link>
              {t.AccessorID === ANONYMOUS && (
                <>
                  {' '}
                  <Badge status="builtin">anonymous</Badge>
                </>
              )}
            </td>
            <td data-label="Description">{t.Description}</td>
            <td data-label="Policies and roles">
              <LinkList dc={props.dc} kind="policies" links={t.Policies} />
              {t.Roles && t.Roles.length > 0 && (
                <>
                  {' '}
                  <LinkList dc={props.dc} kind="roles" links={t.Roles} />
                </>
              )}
            </td>
            <td data-label="Scope">{t.Local ? 'Local' : 'Global'}</td>
            <td data-label="Created" title={t.CreateTime}>
              {formatTime(t.CreateTime)}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function AclTokens({ dc, query }: PageProps) {
  const live = useLive<Token[]>(settings.aclEnabled ? 'acl/tokens' : null);
  const q = query.get('q') ?? '';
  const tokens = (live.data ?? [])
    .filter((t) => matches(q, t.AccessorID, t.Description, ...(t.Policies ?? []).map((p) => p.Name), ...(t.Roles ?? []).map((r) => r.Name)))
    .sort((a, b) => b.CreateTime.localeCompare(a.CreateTime));
  return (
    <AclShell dc={dc} tab="tokens">
      <PageTitle
        actions={
          <button type="button" class="primary" onClick={() => navigate(`/${dc}/acls/tokens/new`)}>
            Create token
          </button>
        }
      >
        Tokens
      </PageTitle>
      <AclError error={live.error} />
      <Search value={q} label="Search tokens" />
      <Loading when={live.loading && !live.data} />
      {live.data && tokens.length === 0 && <Empty>{q ? 'No tokens match the search.' : 'There are no tokens.'}</Empty>}
      {tokens.length > 0 && <TokenTable dc={dc} tokens={tokens} />}
    </AclShell>
  );
}

export function AclToken({ dc, params }: PageProps) {
  const id = params[0];
  const isNew = id === 'new';
  const live = useLive<Token>(settings.aclEnabled && !isNew ? `acl/token/${encodeURIComponent(id)}` : null);
  const t = live.data;
  return (
    <AclShell dc={dc} tab="tokens">
      <nav class="breadcrumbs" aria-label="Breadcrumb">
        <Link to={`/${dc}/acls/tokens`}>Tokens</Link>
      </nav>
      {isNew ? (
        <>
          <PageTitle>New token</PageTitle>
          <TokenForm key="new" dc={dc} />
        </>
      ) : (
        <>
          <PageTitle>{t ? t.Description || t.AccessorID : 'Token'}</PageTitle>
          <AclError error={live.error} />
          <Loading when={live.loading && !t} />
          {t && (
            <>
              <TokenFacts token={t} dc={dc} />
              <TokenForm key={t.AccessorID} dc={dc} token={t} />
            </>
          )}
        </>
      )}
    </AclShell>
  );
}

function TokenFacts(props: { dc: string; token: Token }) {
  const t = props.token;
  const [shown, setShown] = useState(false);
  const secret = t.SecretID && t.SecretID !== '<hidden>' ? t.SecretID : null;
  return (
    <dl class="kv card">
      <dt>Accessor ID</dt>
      <dd>
        <code data-testid="token-accessor">{t.AccessorID}</code>
      </dd>
      <dt>Secret ID</dt>
      <dd>
        {secret === null ? (
          <span class="muted">Hidden: reading secrets needs acl:write.</span>
        ) : shown ? (
          <span class="actions">
            <code data-testid="token-secret">{secret}</code>
            <button type="button" onClick={() => setShown(false)}>
              Hide secret
            </button>
          </span>
        ) : (
          <button type="button" data-testid="show-secret" onClick={() => setShown(true)}>
            Show secret
          </button>
        )}
      </dd>
      <dt>Scope</dt>
      <dd>{t.Local ? 'Local (this datacenter)' : 'Global'}</dd>
      <dt>Policies</dt>
      <dd>
        <LinkList dc={props.dc} kind="policies" links={t.Policies} />
      </dd>
      <dt>Roles</dt>
      <dd>
        <LinkList dc={props.dc} kind="roles" links={t.Roles} />
      </dd>
      <IdentityFacts item={t} />
      {t.AuthMethod && (
        <>
          <dt>Auth method</dt>
          <dd>{t.AuthMethod}</dd>
        </>
      )}
      <dt>Created</dt>
      <dd title={t.CreateTime}>{formatTime(t.CreateTime)}</dd>
      {t.ExpirationTime && (
        <>
          <dt>Expires</dt>
          <dd title={t.ExpirationTime}>{formatTime(t.ExpirationTime)}</dd>
        </>
      )}
    </dl>
  );
}

interface TokenFields {
  Description: string;
  Policies: AclLink[];
  Roles: AclLink[];
  Local: boolean;
  ExpirationTTL: string;
}

function TokenForm(props: { dc: string; token?: Token }) {
  const t = props.token;
  const d = useDraft<TokenFields>(
    { Description: t?.Description ?? '', Policies: t?.Policies ?? [], Roles: t?.Roles ?? [], Local: t?.Local ?? false, ExpirationTTL: '' },
    t?.ModifyIndex ?? 0,
  );
  const w = useWrite();
  const f = d.form;
  const edit = (p: Partial<TokenFields>) => {
    w.clearSaved();
    d.set(p);
  };

  const submit = (e: Event) => {
    e.preventDefault();
    const links = (l: AclLink[]) => l.map((x) => ({ ID: x.ID }));
    if (!t) {
      return w.run(async () => {
        const body = {
          Description: f.Description,
          Policies: links(f.Policies),
          Roles: links(f.Roles),
          Local: f.Local,
          ...(f.ExpirationTTL.trim() ? { ExpirationTTL: f.ExpirationTTL.trim() } : {}),
        };
        const res = await put<Token>('acl/token', body);
        navigate(`/${props.dc}/acls/tokens/${res.data.AccessorID}`);
      }, false);
    }
    return w.run(async () => {
      // The identities are sent back unchanged: an update replaces what it is given.
      const body = {
        AccessorID: t.AccessorID,
        Description: f.Description,
        Policies: links(f.Policies),
        Roles: links(f.Roles),
        Local: t.Local,
        ...identitiesOf(t),
      };
      await put<Token>(`acl/token/${encodeURIComponent(t.AccessorID)}`, body);
      d.commit();
    });
  };

  const remove = () =>
    w.run(async () => {
      await del(`acl/token/${encodeURIComponent(t!.AccessorID)}`);
      navigate(`/${props.dc}/acls/tokens`);
    }, false);

  return (
    <form class="stack card acl-form" data-testid="acl-form" onSubmit={submit} aria-labelledby="token-form-title">
      <h2 id="token-form-title">{t ? 'Edit token' : 'Create a token'}</h2>
      <label>
        Description
        <input data-testid="description-input" value={f.Description} onInput={(e) => edit({ Description: (e.target as HTMLInputElement).value })} />
      </label>
      <LinkPicker legend="Policies" path="acl/policies" testid="policy-option" selected={f.Policies} onChange={(l) => edit({ Policies: l })} />
      <LinkPicker legend="Roles" path="acl/roles" testid="role-option" selected={f.Roles} onChange={(l) => edit({ Roles: l })} />
      {!t && (
        <>
          <label class="acl-check">
            <input type="checkbox" checked={f.Local} onChange={(e) => edit({ Local: (e.target as HTMLInputElement).checked })} />
            Local: valid in this datacenter only
          </label>
          <label>
            Expires after (optional)
            <input
              value={f.ExpirationTTL}
              placeholder="e.g. 8h"
              aria-describedby="ttl-help"
              onInput={(e) => edit({ ExpirationTTL: (e.target as HTMLInputElement).value })}
            />
            <span id="ttl-help" class="muted">
              A duration between 1m and 24h; empty for a token that does not expire.
            </span>
          </label>
        </>
      )}
      <FormStatus stale={d.stale} saved={w.saved} error={w.error} />
      <div class="actions">
        <button type="submit" class="primary" data-testid="acl-save" disabled={w.busy}>
          {t ? 'Save' : 'Create'}
        </button>
        {d.dirty && t && (
          <button type="button" onClick={d.reset}>
            Revert
          </button>
        )}
        {t && t.AccessorID !== ANONYMOUS && (
          <ConfirmButton label="Delete" question="Delete this token? Anything using it loses access." testid="acl-delete" onConfirm={remove} />
        )}
      </div>
    </form>
  );
}

// ---- policies ----

export function AclPolicies({ dc, query }: PageProps) {
  const live = useLive<Policy[]>(settings.aclEnabled ? 'acl/policies' : null);
  const q = query.get('q') ?? '';
  const policies = (live.data ?? []).filter((p) => matches(q, p.Name, p.Description)).sort((a, b) => a.Name.localeCompare(b.Name));
  return (
    <AclShell dc={dc} tab="policies">
      <PageTitle
        actions={
          <button type="button" class="primary" onClick={() => navigate(`/${dc}/acls/policies/new`)}>
            Create policy
          </button>
        }
      >
        Policies
      </PageTitle>
      <AclError error={live.error} />
      <Search value={q} label="Search policies" />
      <Loading when={live.loading && !live.data} />
      {live.data && policies.length === 0 && <Empty>{q ? 'No policies match the search.' : 'There are no policies.'}</Empty>}
      {policies.length > 0 && (
        <table class="responsive">
          <thead>
            <tr>
              <th>Name</th>
              <th>Description</th>
              <th>Datacenters</th>
            </tr>
          </thead>
          <tbody>
            {policies.map((p) => (
              <tr key={p.ID} data-testid="policy-row" data-name={p.Name}>
                <td data-label="Name">
                  <Link to={`/${dc}/acls/policies/${p.ID}`}>{p.Name}</Link>
                  {p.ID === GLOBAL_MANAGEMENT && (
                    <>
                      {' '}
                      <Badge status="builtin">built-in</Badge>
                    </>
                  )}
                </td>
                <td data-label="Description">{p.Description}</td>
                <td data-label="Datacenters">{p.Datacenters?.length ? p.Datacenters.join(', ') : 'All'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </AclShell>
  );
}

export function AclPolicy({ dc, params }: PageProps) {
  const id = params[0];
  const isNew = id === 'new';
  const live = useLive<Policy>(settings.aclEnabled && !isNew ? `acl/policy/${encodeURIComponent(id)}` : null);
  const p = live.data;
  return (
    <AclShell dc={dc} tab="policies">
      <nav class="breadcrumbs" aria-label="Breadcrumb">
        <Link to={`/${dc}/acls/policies`}>Policies</Link>
      </nav>
      {isNew ? (
        <>
          <PageTitle>New policy</PageTitle>
          <PolicyForm key="new" dc={dc} />
        </>
      ) : (
        <>
          <PageTitle>{p ? p.Name : 'Policy'}</PageTitle>
          <AclError error={live.error} />
          <Loading when={live.loading && !p} />
          {p && (
            <>
              <dl class="kv card">
                <dt>ID</dt>
                <dd>
                  <code>{p.ID}</code>
                </dd>
                <dt>Datacenters</dt>
                <dd>{p.Datacenters?.length ? p.Datacenters.join(', ') : 'All'}</dd>
              </dl>
              <PolicyForm key={p.ID} dc={dc} policy={p} />
              <TokensUsing dc={dc} params={{ policy: p.ID }} />
            </>
          )}
        </>
      )}
    </AclShell>
  );
}

interface PolicyFields {
  Name: string;
  Description: string;
  Rules: string;
  Datacenters: string;
}

function PolicyForm(props: { dc: string; policy?: Policy }) {
  const p = props.policy;
  const builtin = p?.ID === GLOBAL_MANAGEMENT;
  const d = useDraft<PolicyFields>(
    { Name: p?.Name ?? '', Description: p?.Description ?? '', Rules: p?.Rules ?? '', Datacenters: (p?.Datacenters ?? []).join(', ') },
    p?.ModifyIndex ?? 0,
  );
  const w = useWrite();
  const f = d.form;
  const edit = (x: Partial<PolicyFields>) => {
    w.clearSaved();
    d.set(x);
  };

  const submit = (e: Event) => {
    e.preventDefault();
    const body = {
      Name: f.Name.trim(),
      Description: f.Description,
      Rules: f.Rules,
      Datacenters: f.Datacenters.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    };
    if (!p) {
      return w.run(async () => {
        const res = await put<Policy>('acl/policy', body);
        navigate(`/${props.dc}/acls/policies/${res.data.ID}`);
      }, false);
    }
    return w.run(async () => {
      await put<Policy>(`acl/policy/${encodeURIComponent(p.ID)}`, { ID: p.ID, ...body });
      d.commit();
    });
  };

  const remove = () =>
    w.run(async () => {
      await del(`acl/policy/${encodeURIComponent(p!.ID)}`);
      navigate(`/${props.dc}/acls/policies`);
    }, false);

  return (
    <form class="stack card acl-form" data-testid="acl-form" onSubmit={submit} aria-labelledby="policy-form-title">
      <h2 id="policy-form-title">{p ? 'Edit policy' : 'Create a policy'}</h2>
      {builtin && <p class="muted">The built-in global-management policy keeps its name and rules.</p>}
      <label>
        Name
        <input
          data-testid="name-input"
          value={f.Name}
          required
          readOnly={builtin}
          onInput={(e) => edit({ Name: (e.target as HTMLInputElement).value })}
        />
      </label>
      <label>
        Description
        <input data-testid="description-input" value={f.Description} onInput={(e) => edit({ Description: (e.target as HTMLInputElement).value })} />
      </label>
      <label>
        Rules (HCL or JSON)
        <textarea
          class="code"
          data-testid="policy-rules-input"
          value={f.Rules}
          readOnly={builtin}
          spellcheck={false}
          onInput={(e) => edit({ Rules: (e.target as HTMLTextAreaElement).value })}
        />
      </label>
      <label>
        Valid datacenters (optional)
        <input
          value={f.Datacenters}
          placeholder="All datacenters"
          aria-describedby="dcs-help"
          onInput={(e) => edit({ Datacenters: (e.target as HTMLInputElement).value })}
        />
        <span id="dcs-help" class="muted">
          Comma-separated; empty for every datacenter.
        </span>
      </label>
      <FormStatus stale={d.stale} saved={w.saved} error={w.error} />
      <div class="actions">
        <button type="submit" class="primary" data-testid="acl-save" disabled={w.busy}>
          {p ? 'Save' : 'Create'}
        </button>
        {d.dirty && p && (
          <button type="button" onClick={d.reset}>
            Revert
          </button>
        )}
        {p && !builtin && (
          <ConfirmButton
            label="Delete"
            question={`Delete the policy ${p.Name}? Tokens and roles using it lose it.`}
            testid="acl-delete"
            onConfirm={remove}
          />
        )}
      </div>
    </form>
  );
}

// ---- roles ----

export function AclRoles({ dc, query }: PageProps) {
  const live = useLive<Role[]>(settings.aclEnabled ? 'acl/roles' : null);
  const q = query.get('q') ?? '';
  const roles = (live.data ?? [])
    .filter((r) => matches(q, r.Name, r.Description, ...(r.Policies ?? []).map((p) => p.Name)))
    .sort((a, b) => a.Name.localeCompare(b.Name));
  return (
    <AclShell dc={dc} tab="roles">
      <PageTitle
        actions={
          <button type="button" class="primary" onClick={() => navigate(`/${dc}/acls/roles/new`)}>
            Create role
          </button>
        }
      >
        Roles
      </PageTitle>
      <AclError error={live.error} />
      <Search value={q} label="Search roles" />
      <Loading when={live.loading && !live.data} />
      {live.data && roles.length === 0 && <Empty>{q ? 'No roles match the search.' : 'There are no roles.'}</Empty>}
      {roles.length > 0 && (
        <table class="responsive">
          <thead>
            <tr>
              <th>Name</th>
              <th>Description</th>
              <th>Policies</th>
            </tr>
          </thead>
          <tbody>
            {roles.map((r) => (
              <tr key={r.ID} data-testid="role-row" data-name={r.Name}>
                <td data-label="Name">
                  <Link to={`/${dc}/acls/roles/${r.ID}`}>{r.Name}</Link>
                </td>
                <td data-label="Description">{r.Description}</td>
                <td data-label="Policies">
                  <LinkList dc={dc} kind="policies" links={r.Policies} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </AclShell>
  );
}

export function AclRole({ dc, params }: PageProps) {
  const id = params[0];
  const isNew = id === 'new';
  const live = useLive<Role>(settings.aclEnabled && !isNew ? `acl/role/${encodeURIComponent(id)}` : null);
  const r = live.data;
  return (
    <AclShell dc={dc} tab="roles">
      <nav class="breadcrumbs" aria-label="Breadcrumb">
        <Link to={`/${dc}/acls/roles`}>Roles</Link>
      </nav>
      {isNew ? (
        <>
          <PageTitle>New role</PageTitle>
          <RoleForm key="new" dc={dc} />
        </>
      ) : (
        <>
          <PageTitle>{r ? r.Name : 'Role'}</PageTitle>
          <AclError error={live.error} />
          <Loading when={live.loading && !r} />
          {r && (
            <>
              <dl class="kv card">
                <dt>ID</dt>
                <dd>
                  <code>{r.ID}</code>
                </dd>
                <dt>Policies</dt>
                <dd>
                  <LinkList dc={dc} kind="policies" links={r.Policies} />
                </dd>
                <IdentityFacts item={r} />
              </dl>
              <RoleForm key={r.ID} dc={dc} role={r} />
              <TokensUsing dc={dc} params={{ role: r.ID }} />
            </>
          )}
        </>
      )}
    </AclShell>
  );
}

interface RoleFields {
  Name: string;
  Description: string;
  Policies: AclLink[];
}

function RoleForm(props: { dc: string; role?: Role }) {
  const r = props.role;
  const d = useDraft<RoleFields>({ Name: r?.Name ?? '', Description: r?.Description ?? '', Policies: r?.Policies ?? [] }, r?.ModifyIndex ?? 0);
  const w = useWrite();
  const f = d.form;
  const edit = (x: Partial<RoleFields>) => {
    w.clearSaved();
    d.set(x);
  };

  const submit = (e: Event) => {
    e.preventDefault();
    const body = { Name: f.Name.trim(), Description: f.Description, Policies: f.Policies.map((p) => ({ ID: p.ID })) };
    if (!r) {
      return w.run(async () => {
        const res = await put<Role>('acl/role', body);
        navigate(`/${props.dc}/acls/roles/${res.data.ID}`);
      }, false);
    }
    return w.run(async () => {
      // An update replaces the role: its identities go back unchanged.
      await put<Role>(`acl/role/${encodeURIComponent(r.ID)}`, { ID: r.ID, ...body, ...identitiesOf(r) });
      d.commit();
    });
  };

  const remove = () =>
    w.run(async () => {
      await del(`acl/role/${encodeURIComponent(r!.ID)}`);
      navigate(`/${props.dc}/acls/roles`);
    }, false);

  return (
    <form class="stack card acl-form" data-testid="acl-form" onSubmit={submit} aria-labelledby="role-form-title">
      <h2 id="role-form-title">{r ? 'Edit role' : 'Create a role'}</h2>
      <label>
        Name
        <input data-testid="name-input" value={f.Name} required onInput={(e) => edit({ Name: (e.target as HTMLInputElement).value })} />
      </label>
      <label>
        Description
        <input data-testid="description-input" value={f.Description} onInput={(e) => edit({ Description: (e.target as HTMLInputElement).value })} />
      </label>
      <LinkPicker legend="Policies" path="acl/policies" testid="policy-option" selected={f.Policies} onChange={(l) => edit({ Policies: l })} />
      <FormStatus stale={d.stale} saved={w.saved} error={w.error} />
      <div class="actions">
        <button type="submit" class="primary" data-testid="acl-save" disabled={w.busy}>
          {r ? 'Save' : 'Create'}
        </button>
        {d.dirty && r && (
          <button type="button" onClick={d.reset}>
            Revert
          </button>
        )}
        {r && (
          <ConfirmButton
            label="Delete"
            question={`Delete the role ${r.Name}? Tokens using it lose it.`}
            testid="acl-delete"
            onConfirm={remove}
          />
        )}
      </div>
    </form>
  );
}
