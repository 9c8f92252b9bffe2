// Consul's user events: the agent's recent events (a blocking GET /v1/event/list, its index an
// opaque hash), filtered by name (?name=, in the page's query string), and a form that fires one
// (PUT /v1/event/fire/<name> with the payload as the raw body).
import { useState } from 'preact/hooks';
import { PageProps } from '../App';
import { fromBase64, put } from '../api';
import { useLive } from '../live';
import { setQuery } from '../router';
import { Empty, ErrorBox, Loading, PageTitle } from '../components';
import './Events.css';

interface UserEvent {
  ID: string;
  Name: string;
  Payload: string | null;
  NodeFilter: string;
  ServiceFilter: string;
  TagFilter: string;
  Version: number;
  LTime: number;
}

function FireForm() {
  const [name, setName] = useState('');
  const [payload, setPayload] = useState('');
  const [node, setNode] = useState('');
  const [service, setService] = useState('');
  const [tag, setTag] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error>();
  const [fired, setFired] = useState<UserEvent>();

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    setFired(undefined);
    try {
      const res = await put<UserEvent>(`event/fire/${encodeURIComponent(name.trim())}`, payload, {
        node: node || undefined,
        service: service || undefined,
        tag: tag || undefined,
      });
      setFired(res.data);
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="stack" data-testid="event-fire-form" onSubmit={submit} aria-labelledby="fire-title">
      <h2 id="fire-title">Fire an event</h2>
      <label>
        Name
        <input
          data-testid="event-name-input"
          required
          value={name}
          onInput={(e) => setName((e.target as HTMLInputElement).value)}
        />
      </label>
      <label>
        Payload
        <textarea
          class="code event-payload"
          data-testid="event-payload-input"
          value={payload}
          onInput={(e) => setPayload((e.target as HTMLTextAreaElement).value)}
        />
      </label>
      <fieldset class="event-filters">
        <legend>Deliver only to (regular expressions, optional)</legend>
        <label>
          Node
          <input data-testid="event-node-input" value={node} onInput={(e) => setNode((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Service
          <input
            data-testid="event-service-input"
            value={service}
            onInput={(e) => setService((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          Tag (needs a service)
          <input data-testid="event-tag-input" value={tag} onInput={(e) => setTag((e.target as HTMLInputElement).value)} />
        </label>
      </fieldset>
      <ErrorBox error={error} />
      {fired && (
        <p class="notice" role="status" data-testid="event-fired">
          Fired <strong>{fired.Name}</strong>: ID <code data-testid="event-fired-id">{fired.ID}</code>
        </p>
      )}
      <div>
        <button type="submit" class="primary" data-testid="event-fire" disabled={busy || !name.trim()}>
          {busy ? 'Firing…' : 'Fire event'}
        </button>
      </div>
    </form>
  );
}

/** The name filter: applied on submit (the agent matches names exactly), kept in ?name=. */
function NameFilter(props: { name: string }) {
  const [value, setValue] = useState(props.name);
  return (
    <form
      class="filters"
      role="search"
      data-testid="event-filter-form"
      onSubmit={(e) => {
        e.preventDefault();
        setQuery({ name: value.trim() });
      }}
    >
      <label>
        <span class="sr-only">Event name</span>
        <input
          type="search"
          placeholder="Event name"
          aria-label="Event name"
          data-testid="event-filter-input"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
        />
      </label>
      <button type="submit">Filter</button>
      {props.name && (
        <button
          type="button"
          onClick={() => {
            setValue('');
            setQuery({ name: '' });
          }}
        >
          Show all
        </button>
      )}
    </form>
  );
}

function Filters(props: { event: UserEvent }) {
  const e = props.event;
  const parts = [
    ['node', e.NodeFilter],
    ['service', e.ServiceFilter],
    ['tag', e.TagFilter],
  ].filter(([, v]) => v);
  if (parts.length === 0) return <span class="muted">all nodes</span>;
  return (
    <>
      {parts.map(([k, v]) => (
        <div key={k}>
          {k} <code>{v}</code>
        </div>
      ))}
    </>
  );
}

function EventRow(props: { event: UserEvent }) {
  const e = props.event;
  const payload = fromBase64(e.Payload);
  return (
    <tr data-testid="event-row" data-name={e.Name}>
      <td data-label="Name">
        <strong>{e.Name}</strong>
      </td>
      <td data-label="Payload">
        {payload ? <pre class="event-payload-text">{payload}</pre> : <span class="muted">none</span>}
      </td>
      <td data-label="Filters">
        <Filters event={e} />
      </td>
      <td data-label="ID">
        <code class="event-id">{e.ID}</code>
      </td>
      <td data-label="Lamport time">{e.LTime}</td>
    </tr>
  );
}

export function Events(props: PageProps) {
  const name = props.query.get('name') ?? '';
  const live = useLive<UserEvent[]>('event/list', { name: name || undefined }, { opaqueIndex: true });
  // The agent lists its ring buffer oldest first.
  const events = [...(live.data ?? [])].reverse();

  return (
    <>
      <PageTitle>Events</PageTitle>
      <p class="muted">
        User events this agent received (its last 256). Events whose filters exclude this agent are
        delivered elsewhere and not listed here.
      </p>
      <section class="card">
        <FireForm />
      </section>
      <h2>Recent events</h2>
      <NameFilter key={name} name={name} />
      <ErrorBox error={live.error} />
      <Loading when={live.loading && !live.data} />
      {live.data && events.length === 0 && <Empty>{name ? `No event named “${name}”.` : 'No events yet.'}</Empty>}
      {events.length > 0 && (
        <table class="responsive" data-testid="event-list">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Payload</th>
              <th scope="col">Filters</th>
              <th scope="col">ID</th>
              <th scope="col">Lamport time</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <EventRow key={e.ID} event={e} />
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
