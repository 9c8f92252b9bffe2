// Log in: a token's SecretID is checked with /v1/acl/token/self before it is kept (localStorage);
// the page shows which token is in use and logs out.
import { useEffect, useState } from 'preact/hooks';
import { PageProps } from '../App';
import { ApiError, getToken, setToken, url } from '../api';
import { ErrorBox, PageTitle } from '../components';
import { AclLink, LinkList } from './Acl';
import { settings } from '../config';
import { useLive } from '../live';
import { Link, navigate } from '../router';
import './Acl.css';

interface SelfToken {
  AccessorID: string;
  Description: string;
  Policies?: AclLink[];
  Roles?: AclLink[];
  Local: boolean;
  ExpirationTime?: string;
}

/** Where to go after logging in: `next` if it is a path inside the UI, else the services. */
function destination(next: string | null, dc: string): string {
  const home = `/${dc || settings.datacenter}/services`;
  if (!next) return home;
  let p = next.startsWith(settings.base) ? next.slice(settings.base.length - 1) : next;
  if (!p.startsWith('/')) p = `/${p}`;
  // Not another site (`//host`, `/javascript:`), not back to this page.
  if (p.startsWith('//') || /^\/[a-z][a-z0-9+.-]*:/i.test(p) || /^\/[^/]+\/login\/?(\?|$)/.test(p)) return home;
  return p;
}

/** The stored token, following setToken calls (here and in other tabs). */
function useStoredToken(): string {
  const [token, set] = useState(getToken());
  useEffect(() => {
    const on = () => set(getToken());
    const onStorage = (e: StorageEvent) => {
      if (e.key === null || e.key === 'legate:token') on();
    };
    window.addEventListener('legate:token', on);
    window.addEventListener('storage', onStorage);
    return () => {
      window.removeEventListener('legate:token', on);
      window.removeEventListener('storage', onStorage);
    };
  }, []);
  return token;
}

/** Which token the UI uses, read with that token (token/self has no index: re-read every 10 s). */
function TokenStatus(props: { dc: string; stored: string }) {
  const self = useLive<SelfToken>(props.stored && settings.aclEnabled ? 'acl/token/self' : null, {}, { blocking: false });
  const t = props.stored ? self.data : undefined;
  const refused = self.error instanceof ApiError && self.error.status === 403;
  return (
    <section class="card acl-form" data-testid="login-status" aria-labelledby="login-status-title">
      <h2 id="login-status-title">Current token</h2>
      {!props.stored && <p>No token is stored: requests use the agent's default token.</p>}
      {props.stored && refused && (
        <p class="error" role="alert">
          The stored token is not valid (ACL not found). Log out or log in with another token.
        </p>
      )}
      {props.stored && !refused && <ErrorBox error={self.error} />}
      {props.stored && !settings.aclEnabled && <p>A token is stored; it is not needed while ACLs are disabled.</p>}
      {props.stored && settings.aclEnabled && !t && !self.error && <p class="muted">A token is stored; reading it…</p>}
      {t && !self.error && (
        <dl class="kv">
          <dt>Accessor ID</dt>
          <dd>
            <code data-testid="login-accessor">{t.AccessorID}</code>
          </dd>
          <dt>Description</dt>
          <dd data-testid="login-description">{t.Description || <span class="muted">(none)</span>}</dd>
          <dt>Policies</dt>
          <dd>
            <LinkList dc={props.dc} kind="policies" links={t.Policies} />
          </dd>
          <dt>Roles</dt>
          <dd>
            <LinkList dc={props.dc} kind="roles" links={t.Roles} />
          </dd>
          <dt>Scope</dt>
          <dd>{t.Local ? 'Local' : 'Global'}</dd>
          {t.ExpirationTime && (
            <>
              <dt>Expires</dt>
              <dd>{new Date(t.ExpirationTime).toLocaleString()}</dd>
            </>
          )}
        </dl>
      )}
      {props.stored && (
        <button type="button" data-testid="logout" onClick={() => setToken('')}>
          Log out
        </button>
      )}
    </section>
  );
}

function LoginForm(props: { dc: string; next: string | null }) {
  const [secret, setSecret] = useState('');
  const [busy, setBusy] = useState(false);
  const [notFound, setNotFound] = useState(false);
  const [error, setError] = useState<Error>();

  const submit = async (e: Event) => {
    e.preventDefault();
    const value = secret.trim();
    setNotFound(false);
    setError(undefined);
    if (!value) return;
    setBusy(true);
    try {
      // Checked with the candidate itself; it is stored only if the agent knows it.
      const res = await fetch(url('acl/token/self'), { headers: { 'X-Consul-Token': value } });
      const text = await res.text();
      if (res.status === 403) {
        setNotFound(true);
        return;
      }
      if (!res.ok) throw new ApiError(res.status, text.trim() || res.statusText);
      setToken(value);
      setSecret('');
      navigate(destination(props.next, props.dc));
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="stack card acl-form" data-testid="login-form" onSubmit={submit} aria-labelledby="login-form-title">
      <h2 id="login-form-title">Log in with a token</h2>
      <label>
        Token (SecretID)
        <input
          type="password"
          data-testid="login-token-input"
          autoComplete="off"
          spellcheck={false}
          required
          value={secret}
          onInput={(e) => {
            setSecret((e.target as HTMLInputElement).value);
            setNotFound(false);
          }}
        />
      </label>
      {notFound && (
        <p class="error" role="alert" data-testid="login-error">
          ACL not found: the agent does not know this token. It was not stored.
        </p>
      )}
      <ErrorBox error={error} />
      <div class="actions">
        <button type="submit" class="primary" data-testid="login-submit" disabled={busy}>
          Log in
        </button>
      </div>
    </form>
  );
}

export function Login({ dc, query }: PageProps) {
  const stored = useStoredToken();
  return (
    <>
      <PageTitle>Log in</PageTitle>
      {!settings.aclEnabled && (
        <p class="notice" role="status">
          ACLs are disabled on this agent: no token is needed.
        </p>
      )}
      {settings.aclEnabled && <LoginForm dc={dc} next={query.get('next')} />}
      {(settings.aclEnabled || stored) && <TokenStatus dc={dc} stored={stored} />}
    </>
  );
}
