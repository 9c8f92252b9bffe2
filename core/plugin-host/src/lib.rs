//! legate-plugin-host: the WASM plugin host: check plugins and event-handler plugins, built as components against
//! the WIT package in `sdk/wit` (`legate:plugin@0.1.0`).
//!
//! # How a call runs
//!
//! One [`wasmtime::Engine`] per agent (epoch interruption on, a ticker thread bumps the epoch
//! every 10 ms). A plugin file is resolved ([`PluginHost::resolve`]), hashed (SHA-256) and
//! compiled once: the compiled artifact is cached in `<data_dir>/plugin-cache/` as
//! `<sha256>-<engine hash>.cwasm`, so restarts load it with `Component::deserialize_file`
//! instead of compiling. Linking is done once per plugin (an `InstancePre`); each call then
//! gets a fresh `Store` and instance, which makes a call cheap and leaves nothing behind when
//! a plugin traps (the next call starts from a clean instance).
//!
//! Per call:
//! - a deadline (the check's `timeout`, the handler's `timeout`): the epoch callback interrupts
//!   wasm code past it, **and** a wall-clock tokio timeout covers a guest blocked in a host call;
//! - a memory cap (`memory_mb`, default 64 MiB) through a `ResourceLimiter`;
//! - WASI with no environment, no stdio, no sockets (wasi:sockets is always denied: use the
//!   host `net`/`http` interfaces) and no files unless the definition grants `files`;
//! - host `http`/`net` reach only `allow_hosts`, with bodies capped and their time clamped to the
//!   remaining budget; host `kv` reads only under `kv_read_prefixes`.
//!
//! A trap, a timeout or a refused memory grow fails only that check (critical, with the reason
//! as output); repeated failures back off exponentially (1 s doubling to 5 min) before the
//! plugin is instantiated again.
//!
//! Registry plugins (`registry:<name>[@<version>]`, `sha256:<digest>`; see [`registry`]) are
//! resolved at every run through the agent's [`Registry`]: signatures are checked against the
//! trusted keys before any fetch, the fetched bytes against their digest, and the compiled code
//! is cached by digest like a file's. A reference that follows the latest version is replaced in
//! place when a new version is pushed, as a changed file is.
//!
//! Hot swap: every call stats the plugin file; when its size or mtime changed the plugin is
//! re-hashed and, if its content changed, compiled (or loaded from the cache) and swapped in.
//! Calls in flight finish on the old instance; check state (status, thresholds) lives in the
//! check runner and is kept.

pub mod bindings;
pub mod describe;
mod error;
pub mod host;
mod metrics;
pub mod registry;
pub mod signing;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::Kill;
use std::time::{Duration, Instant, SystemTime};

use sha2::Digest;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use bindings::v0_1::{check as check_world, handler as handler_world, types};
pub use describe::{describe, ComponentMeta};
pub use error::PluginError;
pub use host::{Facts, Grants, HostState, KvSource};
use legate_types::check::{CheckStatus, Outcome};
pub use registry::{Registry, RegistryEntry, RegistryInfo};
pub use spec::{FileGrant, PluginRef, WasmSpec};

/// Default memory cap per call.
pub const DEFAULT_MEMORY_MB: u32 = 64;
/// Default budget of a handler call.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time the wall-clock timeout gives a call past its deadline before dropping it (the
/// epoch interrupt should fire first for wasm code).
const GRACE: Duration = Duration::from_millis(50);
const EPOCH_TICK: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What a plugin file implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    Check,
    EventHandler,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Check => "legate:plugin/check@0.1.0",
            World::EventHandler => "legate:plugin/event-handler@0.1.0",
        }
    }
}

/// A plugin compiled and linked, ready to instantiate.
pub struct Loaded {
    /// The file, or for a registry plugin the text `registry:<name>@<version>`.
    pub path: PathBuf,
    pub sha256: String,
    pub world: World,
    /// Whether the compiled code came from the on-disk cache (no compile in this process).
    pub from_cache: bool,
    pub component: Component,
    /// Where a registry plugin came from (None: a file).
    pub registry: Option<RegistryInfo>,
    stamp: Stamp,
    check: Option<check_world::CheckPre<HostState>>,
    handler: Option<handler_world::EventHandlerPre<HostState>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    len: u64,
    mtime: Option<SystemTime>,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp { len: m.len(), mtime: m.modified().ok() })
}

/// How the agent configures its plugin host.
#[derive(Clone, Default)]
pub struct HostOptions {
    /// Where plugins named without a path live.
    pub plugin_dir: Option<PathBuf>,
    /// Where compiled plugins are cached; None = no disk cache (in-memory only).
    pub cache_dir: Option<PathBuf>,
    pub facts: Facts,
    pub kv: Option<Arc<dyn KvSource>>,
}

/// The agent's plugin host. Cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    engine_hash: String,
    linker: Linker<HostState>,
    opts: HostOptions,
    /// Loaded plugins by file path, or for registry plugins by the reference's text
    /// (`registry:x`, `registry:x@1`, `sha256:...`): a reference that follows the latest
    /// version is replaced in place, and the map does not grow with every version.
    loaded: Mutex<HashMap<PathBuf, Arc<Loaded>>>,
    /// The plugin registry, installed by the agent once it exists (after the host).
    registry: OnceLock<Arc<dyn Registry>>,
    /// Serializes compiles and cache fills (a compile uses every core).
    loading: tokio::sync::Mutex<()>,
    /// (sha256, args) pairs whose `validate` passed (handlers; checks keep their own).
    validated: Mutex<HashSet<(String, String)>>,
    clients: (reqwest::Client, reqwest::Client),
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Why a call failed (the plugin's own `Err` results are not failures of the call).
#[derive(Debug, Clone, PartialEq)]
pub struct CallFailure(pub String);

/// How a check call ended, before thresholds.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckCallResult {
    Ok(Outcome),
    /// The plugin returned Err(text).
    PluginError(String),
    /// Trap, timeout or memory: the call was killed.
    Killed(String),
}

/// A check run's context, from its definition.
#[derive(Clone, Debug, Default)]
pub struct CheckCall {
    pub check_id: String,
    pub check_name: String,
    pub service_id: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub token: Option<String>,
}

/// Per-check state the runner keeps between runs: attempts, backoff after failures, and
/// which plugin build its configuration was validated against.
#[derive(Debug, Default)]
pub struct CheckState {
    pub attempt: u64,
    /// The plugin the last run resolved to (set once it loaded).
    pub running: Option<Running>,
    validated: Option<String>,
    pub consecutive_failures: u32,
    retry_at: Option<Instant>,
    last_failure: String,
}

/// The plugin a check's last run used.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Running {
    /// The file, or `registry:<name>@<version>`.
    pub plugin: String,
    pub sha256: String,
    /// For a registry plugin: its name, version and signers.
    pub registry: Option<RegistryInfo>,
}

/// An event for an event-handler plugin.
#[derive(Clone, Debug, PartialEq)]
pub enum HandlerEvent {
    User {
        id: String,
        name: String,
        payload: Vec<u8>,
        ltime: u64,
        node_filter: String,
        service_filter: String,
        tag_filter: String,
    },
    /// A watch fired: its type, the blocking index and the JSON a Consul handler gets on stdin.
    Watch { watch_type: String, index: u64, payload_json: String },
}

/// What a handler returned (its Ok text).
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerOutcome {
    pub output: String,
}

/// Runs an event-handler plugin on one event. Err is the plugin's Err text, or why the call
/// failed (not found, not an event handler, invalid configuration, trap, timeout, memory).
pub async fn run_handler(
    host: &PluginHost,
    spec: &WasmSpec,
    event: HandlerEvent,
) -> Result<HandlerOutcome, PluginError> {
    host.run_handler(spec, event, "handler").await
}

/// The definition's `args` as the plugin's config pairs.
pub fn config_pairs(args: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    args.iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// Lowercase hex of the sha256 of `bytes` (the registry's content address).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn go(d: Duration) -> String {
    legate_types::GoDuration(d).to_string()
}

impl PluginHost {
    /// Builds the engine, the linker (WASI p2 + the legate interfaces) and starts the epoch
    /// ticker.
    pub fn new(opts: HostOptions) -> Result<PluginHost, PluginError> {
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        cfg.wasm_component_model(true);
        let engine = Engine::new(&cfg).map_err(|err| PluginError::Engine { what: "engine", err })?;
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = format!("{:016x}", h.finish());
        let mut linker: Linker<HostState> = Linker::new(&engine);
        // Plugins built with newer WASI minors (0.2.x) link against these (semver matching).
        let linker_error = |err| PluginError::Engine { what: "linker", err };
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(linker_error)?;
        check_world::Check::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(linker_error)?;
        if let Some(dir) = &opts.cache_dir {
            create_private_dir(dir).map_err(|source| PluginError::CacheDir { path: dir.clone(), source })?;
        }
        let clients = (http_client(false)?, http_client(true)?);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(PluginError::Ticker)?;
        }
        Ok(PluginHost {
            inner: Arc::new(Inner {
                engine,
                engine_hash,
                linker,
                opts,
                loaded: Mutex::new(HashMap::new()),
                registry: OnceLock::new(),
                loading: tokio::sync::Mutex::new(()),
                validated: Mutex::new(HashSet::new()),
                clients,
                stop,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.opts.cache_dir.as_deref()
    }

    /// Installs the plugin registry (once: later calls are ignored).
    pub fn set_registry(&self, registry: Arc<dyn Registry>) {
        let _ = self.inner.registry.set(registry);
    }

    /// A plugin by its definition's `plugin` text: a file (resolved and loaded, reloaded when it
    /// changed) or a registry reference (resolved at every call).
    pub async fn open(&self, plugin: &str) -> Result<Arc<Loaded>, PluginError> {
        match PluginRef::parse(plugin).map_err(PluginError::BadRef)? {
            PluginRef::File(_) => {
                let path = self.resolve(plugin)?;
                self.load(&path).await
            }
            r => self.load_registry(&r).await,
        }
    }

    /// A registry plugin: resolved through the registry, its signatures checked against the
    /// trusted keys before any fetch, then taken from what is loaded, from the compile cache,
    /// or fetched, checked against its digest and compiled.
    async fn load_registry(&self, r: &PluginRef) -> Result<Arc<Loaded>, PluginError> {
        let key = PathBuf::from(r.to_string());
        let registry = self.inner.registry.get().cloned().ok_or_else(|| {
            PluginError::Registry(format!("plugin {r}: this agent has no plugin registry (is it a server's agent?)"))
        })?;
        let entry = registry.resolve(r).await.map_err(PluginError::Registry)?;
        let shown = format!("registry:{}@{}", entry.name, entry.version);
        let trusted = registry.trusted_keys();
        if !trusted.is_empty() && !registry::signed_by_trusted(&entry, &trusted) {
            metrics::registry_refused(&entry.name, "unsigned");
            return Err(PluginError::Unsigned { plugin: shown, sha256: entry.sha256 });
        }
        let info = |fetched: bool| RegistryInfo {
            name: entry.name.clone(),
            version: entry.version.clone(),
            signed_by: registry::valid_signers(&entry),
            fetched,
        };
        let current = self.inner.loaded.lock().unwrap().get(&key).cloned();
        if let Some(l) = current.filter(|l| l.sha256 == entry.sha256 && l.path.as_path() == Path::new(&shown)) {
            return Ok(l);
        }
        let _guard = self.inner.loading.lock().await;
        // The same blob under another reference (or version): no fetch, no compile, no link.
        let same_blob = {
            let loaded = self.inner.loaded.lock().unwrap();
            let same = |l: &&Arc<Loaded>| l.sha256 == entry.sha256;
            loaded.get(&key).filter(same).or_else(|| loaded.values().find(same)).cloned()
        };
        let loaded = match same_blob {
            Some(p) => Arc::new(Loaded {
                path: PathBuf::from(&shown),
                sha256: p.sha256.clone(),
                world: p.world,
                from_cache: p.from_cache,
                component: p.component.clone(),
                registry: Some(RegistryInfo { fetched: p.registry.as_ref().is_some_and(|i| i.fetched), ..info(false) }),
                stamp: p.stamp,
                check: p.check.clone(),
                handler: p.handler.clone(),
            }),
            None => {
                let (component, from_cache, fetched) = match self.deserialize_cached(&entry.sha256) {
                    Some(c) => (c, true, false),
                    None => {
                        let started = Instant::now();
                        let bytes = registry.fetch(&entry).await.map_err(PluginError::Registry)?;
                        let got = sha256_hex(&bytes);
                        if got != entry.sha256 {
                            metrics::registry_refused(&entry.name, "digest");
                            return Err(PluginError::Digest { plugin: shown, expected: entry.sha256.clone(), got });
                        }
                        metrics::registry_fetch(&entry.name, bytes.len(), started);
                        let (c, from_cache) = self.compile_cached(&bytes, &entry.sha256).await?;
                        (c, from_cache, true)
                    }
                };
                let st = Stamp { len: entry.size, mtime: None };
                let mut l = self.link(Path::new(&shown), entry.sha256.clone(), st, component, from_cache)?;
                l.registry = Some(info(fetched));
                metrics::loaded(Path::new(&shown), from_cache, false);
                tracing::info!(
                    plugin = %shown,
                    sha256 = %l.sha256,
                    world = l.world.as_str(),
                    from_cache,
                    fetched,
                    "wasm plugin loaded from the registry"
                );
                Arc::new(l)
            }
        };
        self.inner.loaded.lock().unwrap().insert(key, loaded.clone());
        Ok(loaded)
    }

    /// Where a plugin named `plugin` lives: a path (it contains a `/` or ends in `.wasm`),
    /// else `<plugin_dir>/<name>.wasm`.
    pub fn resolve(&self, plugin: &str) -> Result<PathBuf, PluginError> {
        if plugin.is_empty() {
            return Err(PluginError::NoPlugin);
        }
        let path = if plugin.contains('/') || plugin.ends_with(".wasm") {
            PathBuf::from(plugin)
        } else {
            let Some(dir) = &self.inner.opts.plugin_dir else {
                return Err(PluginError::NoPluginDir(plugin.to_string()));
            };
            dir.join(format!("{plugin}.wasm"))
        };
        if !path.is_file() {
            return Err(PluginError::NotFound { name: plugin.to_string(), path });
        }
        Ok(path)
    }

    /// The plugin at `path`, compiled (or loaded from the cache) and linked; reloaded when the
    /// file changed since the last call.
    pub async fn load(&self, path: &Path) -> Result<Arc<Loaded>, PluginError> {
        let unreadable = |source| PluginError::Read { path: path.to_path_buf(), source };
        let st = stamp(path).map_err(unreadable)?;
        if let Some(l) = self.cached(path, st) {
            return Ok(l);
        }
        let _guard = self.inner.loading.lock().await;
        if let Some(l) = self.cached(path, st) {
            return Ok(l);
        }
        // The content hash: from the stamp index when the file is unchanged since it was last
        // hashed (a restart then reads no plugin bytes at all), else by reading the file.
        let mut bytes = None;
        let sha = match self.indexed_sha(path, st) {
            Some(sha) => sha,
            None => {
                let b = tokio::fs::read(path).await.map_err(unreadable)?;
                let sha = sha256_hex(&b);
                bytes = Some(b);
                sha
            }
        };
        let previous = self.inner.loaded.lock().unwrap().get(path).cloned();
        let loaded = match previous {
            // Touched but not changed: keep the linked plugin.
            Some(p) if p.sha256 == sha => Arc::new(Loaded {
                path: p.path.clone(),
                sha256: sha,
                world: p.world,
                from_cache: p.from_cache,
                component: p.component.clone(),
                registry: None,
                stamp: st,
                check: p.check.clone(),
                handler: p.handler.clone(),
            }),
            _ => {
                let (component, from_cache) = match self.deserialize_cached(&sha) {
                    Some(c) => (c, true),
                    None => {
                        let b = match bytes.take() {
                            Some(b) => b,
                            None => tokio::fs::read(path).await.map_err(unreadable)?,
                        };
                        if sha256_hex(&b) != sha {
                            return Err(PluginError::Changed(path.to_path_buf()));
                        }
                        self.compile_cached(&b, &sha).await?
                    }
                };
                let l = Arc::new(self.link(path, sha, st, component, from_cache)?);
                metrics::loaded(path, from_cache, previous.is_some());
                tracing::info!(plugin = %path.display(), sha256 = %l.sha256, world = l.world.as_str(), from_cache, "wasm plugin loaded");
                l
            }
        };
        self.record_sha(path, st, &loaded.sha256);
        self.inner.loaded.lock().unwrap().insert(path.to_path_buf(), loaded.clone());
        Ok(loaded)
    }

    fn cached(&self, path: &Path, st: Stamp) -> Option<Arc<Loaded>> {
        self.inner.loaded.lock().unwrap().get(path).filter(|l| l.stamp == st).cloned()
    }

    /// The cache file for a plugin's content.
    pub fn cache_path(&self, sha: &str) -> Option<PathBuf> {
        self.inner.opts.cache_dir.as_ref().map(|d| d.join(format!("{sha}-{}.cwasm", self.inner.engine_hash)))
    }

    /// Where the stamp index records the hash of the file at `path`.
    fn index_path(&self, path: &Path) -> Option<PathBuf> {
        let dir = self.inner.opts.cache_dir.as_ref()?;
        let abs = std::fs::canonicalize(path).ok()?;
        Some(dir.join("index").join(format!("{}.json", &sha256_hex(abs.as_os_str().as_encoded_bytes())[..32])))
    }

    /// The recorded content hash of `path`, if its size and mtime are still those recorded.
    fn indexed_sha(&self, path: &Path, st: Stamp) -> Option<String> {
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(self.index_path(path)?).ok()?).ok()?;
        let mtime = st.mtime?.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_nanos() as u64;
        (rec["len"].as_u64() == Some(st.len) && rec["mtime_ns"].as_u64() == Some(mtime))
            .then(|| rec["sha256"].as_str().map(str::to_string))
            .flatten()
    }

    fn record_sha(&self, path: &Path, st: Stamp, sha: &str) {
        let (Some(p), Some(mtime)) = (self.index_path(path), st.mtime) else { return };
        let Ok(mtime) = mtime.duration_since(SystemTime::UNIX_EPOCH) else { return };
        let rec = serde_json::json!({"path": path, "len": st.len, "mtime_ns": mtime.as_nanos() as u64, "sha256": sha});
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        let r = std::fs::create_dir_all(p.parent().unwrap_or(Path::new(".")))
            .and_then(|_| std::fs::write(&tmp, rec.to_string()))
            .and_then(|_| std::fs::rename(&tmp, &p));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(file = %p.display(), error = %e, "cannot record plugin hash");
        }
    }

    /// The compiled plugin with content `sha` from the on-disk cache.
    fn deserialize_cached(&self, sha: &str) -> Option<Component> {
        let p = self.cache_path(sha)?;
        if !p.is_file() {
            return None;
        }
        // SAFETY: only files this agent wrote into its own private cache dir are deserialized,
        // and the name carries the engine's compatibility hash.
        match unsafe { Component::deserialize_file(&self.inner.engine, &p) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "dropping unusable plugin cache entry");
                let _ = std::fs::remove_file(&p);
                None
            }
        }
    }

    async fn compile_cached(&self, bytes: &[u8], sha: &str) -> Result<(Component, bool), PluginError> {
        if let Some(c) = self.deserialize_cached(sha) {
            return Ok((c, true));
        }
        let cache = self.cache_path(sha);
        let engine = self.inner.engine.clone();
        let owned = bytes.to_vec();
        let started = Instant::now();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &owned))
            .await?
            .map_err(PluginError::NotAComponent)?;
        tracing::debug!(sha256 = %sha, elapsed = ?started.elapsed(), "wasm plugin compiled");
        if let Some(p) = cache {
            match component.serialize() {
                Ok(art) => {
                    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
                    if let Err(e) = std::fs::write(&tmp, &art).and_then(|_| std::fs::rename(&tmp, &p)) {
                        let _ = std::fs::remove_file(&tmp);
                        tracing::warn!(file = %p.display(), error = %e, "cannot write plugin cache entry");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize compiled plugin"),
            }
        }
        Ok((component, false))
    }

    fn link(
        &self,
        path: &Path,
        sha: String,
        st: Stamp,
        component: Component,
        from_cache: bool,
    ) -> Result<Loaded, PluginError> {
        let pre = self.inner.linker.instantiate_pre(&component).map_err(PluginError::Imports)?;
        let check = check_world::CheckPre::new(pre.clone()).ok();
        let handler = if check.is_none() { handler_world::EventHandlerPre::new(pre).ok() } else { None };
        let world = match (&check, &handler) {
            (Some(_), _) => World::Check,
            (None, Some(_)) => World::EventHandler,
            _ => {
                return Err(PluginError::NoWorld {
                    path: path.to_path_buf(),
                    check: World::Check.as_str(),
                    handler: World::EventHandler.as_str(),
                })
            }
        };
        Ok(Loaded {
            path: path.to_path_buf(),
            sha256: sha,
            world,
            from_cache,
            component,
            registry: None,
            stamp: st,
            check,
            handler,
        })
    }

    fn store(
        &self,
        spec: &WasmSpec,
        budget: Duration,
        caller: &str,
        token: Option<String>,
    ) -> Result<Store<HostState>, PluginError> {
        let mut wasi = WasiCtxBuilder::new();
        for g in &spec.files {
            let guest = g.guest_dir.clone().unwrap_or_else(|| "/".into());
            let perms = if g.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            wasi.preopened_dir(&g.host_dir, &guest, perms)
                .map_err(|err| PluginError::Grant { path: g.host_dir.clone(), err })?;
        }
        let deadline = Instant::now() + budget;
        let grants = Arc::new(Grants {
            allow_hosts: spec.allow_hosts.clone(),
            kv_read_prefixes: spec.kv_read_prefixes.clone(),
            token,
        });
        let mb = spec.memory_mb.unwrap_or(DEFAULT_MEMORY_MB).max(1) as usize;
        let state = HostState::new(
            wasi.build(),
            mb << 20,
            deadline,
            grants,
            Arc::new(self.inner.opts.facts.clone()),
            self.inner.opts.kv.clone(),
            &self.inner.clients,
            spec.plugin.clone(),
            caller.to_string(),
        );
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(wasmtime::UpdateDeadline::Interrupt)
            } else {
                // Yield to tokio at every tick so a busy guest never starves the executor.
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    /// Turns a failed call into the text a check shows.
    fn failure(store: &Store<HostState>, spec: &WasmSpec, budget: Duration, err: wasmtime::Error) -> CallFailure {
        let mb = spec.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
        if store.data().limits.denied {
            metrics::killed(&spec.plugin, Kill::Memory);
            return CallFailure(format!("plugin exceeded its memory limit of {mb} MiB"));
        }
        if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            metrics::killed(&spec.plugin, Kill::Timeout);
            return CallFailure(format!("plugin timed out after {}", go(budget)));
        }
        match err.downcast_ref::<Trap>() {
            Some(t) => {
                metrics::killed(&spec.plugin, Kill::Trap);
                CallFailure(format!("plugin trapped: {t}"))
            }
            None => CallFailure(format!("plugin failed: {err:#}")),
        }
    }

    fn timed_out(spec: &WasmSpec, budget: Duration) -> CallFailure {
        metrics::killed(&spec.plugin, Kill::Timeout);
        CallFailure(format!("plugin timed out after {} (blocked in a host call)", go(budget)))
    }

    /// Calls the plugin's `validate` with the spec's args.
    pub async fn validate_loaded(
        &self,
        loaded: &Loaded,
        spec: &WasmSpec,
        budget: Duration,
    ) -> Result<Result<(), String>, CallFailure> {
        let config = config_pairs(&spec.args);
        let mut store = self.store(spec, budget, "validate", None).map_err(|e| CallFailure(e.to_string()))?;
        let started = Instant::now();
        let r = match (&loaded.check, &loaded.handler) {
            (Some(pre), _) => {
                let fut = async {
                    let inst = pre.instantiate_async(&mut store).await?;
                    inst.call_validate(&mut store, &config).await
                };
                tokio::time::timeout(budget + GRACE, fut).await
            }
            (None, Some(pre)) => {
                let fut = async {
                    let inst = pre.instantiate_async(&mut store).await?;
                    inst.call_validate(&mut store, &config).await
                };
                tokio::time::timeout(budget + GRACE, fut).await
            }
            _ => unreachable!("a loaded plugin has a world"),
        };
        let result = match r {
            Err(_) => Err(Self::timed_out(spec, budget)),
            Ok(Err(e)) => Err(Self::failure(&store, spec, budget, e)),
            Ok(Ok(v)) => Ok(v),
        };
        metrics::call(&spec.plugin, "validate", started, if matches!(result, Ok(Ok(()))) { "ok" } else { "error" });
        result
    }

    /// Validates a definition's `wasm` block: the plugin resolves, loads, and accepts its args.
    /// The error is the text to refuse the registration with.
    pub async fn validate(&self, spec: &WasmSpec, want: Option<World>) -> Result<(), PluginError> {
        if spec.memory_mb == Some(0) {
            return Err(PluginError::ZeroMemory);
        }
        let loaded = self.open(&spec.plugin).await?;
        if let Some(w) = want {
            if loaded.world != w {
                return Err(PluginError::WrongWorld {
                    plugin: spec.plugin.clone(),
                    found: loaded.world.as_str(),
                    want: format!("a {}", w.as_str()),
                });
            }
        }
        check_pin(spec, &loaded)?;
        match self.validate_loaded(&loaded, spec, Duration::from_secs(10)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(PluginError::Rejected { plugin: spec.plugin.clone(), msg }),
            Err(CallFailure(why)) => Err(PluginError::ValidateFailed { plugin: spec.plugin.clone(), why }),
        }
    }

    /// Runs one check call (no validation, no backoff): the building block of
    /// [`PluginHost::run_check`] and `legate plugin run`.
    pub async fn call_check(
        &self,
        loaded: &Loaded,
        spec: &WasmSpec,
        call: &CheckCall,
        attempt: u64,
    ) -> CheckCallResult {
        let Some(pre) = &loaded.check else {
            return CheckCallResult::Killed(format!("{} is not a check plugin", loaded.path.display()));
        };
        let ctx = types::CheckContext {
            check_id: call.check_id.clone(),
            check_name: call.check_name.clone(),
            service_id: call.service_id.clone(),
            node_name: self.inner.opts.facts.node_name.clone(),
            datacenter: self.inner.opts.facts.datacenter.clone(),
            interval_ms: call.interval.as_millis() as u64,
            timeout_ms: call.timeout.as_millis() as u64,
            attempt,
        };
        let config = config_pairs(&spec.args);
        let budget = call.timeout;
        let mut store = match self.store(spec, budget, &call.check_id, call.token.clone()) {
            Ok(s) => s,
            Err(e) => return CheckCallResult::Killed(e.to_string()),
        };
        let started = Instant::now();
        let fut = async {
            let inst = pre.instantiate_async(&mut store).await?;
            inst.call_check(&mut store, &ctx, &config).await
        };
        let result = match tokio::time::timeout(budget + GRACE, fut).await {
            Err(_) => CheckCallResult::Killed(Self::timed_out(spec, budget).0),
            Ok(Err(e)) => CheckCallResult::Killed(Self::failure(&store, spec, budget, e).0),
            Ok(Ok(Err(text))) => CheckCallResult::PluginError(text),
            Ok(Ok(Ok(r))) => CheckCallResult::Ok(Outcome {
                status: match r.status {
                    types::CheckStatus::Passing => CheckStatus::Passing,
                    types::CheckStatus::Warning => CheckStatus::Warning,
                    types::CheckStatus::Critical => CheckStatus::Critical,
                },
                output: r.output,
            }),
        };
        let outcome = match &result {
            CheckCallResult::Ok(o) => o.status.as_str(),
            CheckCallResult::PluginError(_) | CheckCallResult::Killed(_) => "error",
        };
        metrics::call(&spec.plugin, "check", started, outcome);
        result
    }

    /// One scheduled run of a check plugin: resolve, (re)load, validate when the plugin or
    /// check is new, call; failures are critical with the reason, and repeated kills back off.
    pub async fn run_check(&self, spec: &WasmSpec, call: &CheckCall, state: &mut CheckState) -> Outcome {
        if let Some(at) = state.retry_at {
            let now = Instant::now();
            if at > now {
                return Outcome::critical(format!(
                    "plugin failed {} times in a row, next try in {}: {}",
                    state.consecutive_failures,
                    go(Duration::from_secs((at - now).as_secs().max(1))),
                    state.last_failure
                ));
            }
        }
        let loaded = match self.open(&spec.plugin).await {
            Ok(l) => l,
            Err(e) => return Outcome::critical(e.to_string()),
        };
        state.running = Some(Running {
            plugin: loaded.path.display().to_string(),
            sha256: loaded.sha256.clone(),
            registry: loaded.registry.clone(),
        });
        if let Err(e) = check_pin(spec, &loaded) {
            return Outcome::critical(e.to_string());
        }
        if state.validated.as_deref() != Some(loaded.sha256.as_str()) {
            match self.validate_loaded(&loaded, spec, call.timeout).await {
                Ok(Ok(())) => state.validated = Some(loaded.sha256.clone()),
                Ok(Err(msg)) => return Outcome::critical(format!("invalid plugin configuration: {msg}")),
                Err(CallFailure(why)) => return self.killed(state, call, &spec.plugin, why),
            }
        }
        state.attempt += 1;
        match self.call_check(&loaded, spec, call, state.attempt).await {
            CheckCallResult::Ok(o) => {
                state.consecutive_failures = 0;
                state.retry_at = None;
                o
            }
            CheckCallResult::PluginError(text) => {
                state.consecutive_failures = 0;
                state.retry_at = None;
                Outcome::critical(text)
            }
            CheckCallResult::Killed(why) => self.killed(state, call, &spec.plugin, why),
        }
    }

    fn killed(&self, state: &mut CheckState, call: &CheckCall, plugin: &str, why: String) -> Outcome {
        state.consecutive_failures += 1;
        tracing::warn!(check = %call.check_id, failures = state.consecutive_failures, reason = %why, "wasm check plugin failed");
        // First failure: try again at the next interval; then 1s, 2s, 4s... up to 5 minutes.
        if state.consecutive_failures > 1 {
            let exp = (state.consecutive_failures - 2).min(16);
            let backoff = Duration::from_secs(1u64 << exp).min(MAX_BACKOFF);
            state.retry_at = Some(Instant::now() + backoff);
            metrics::backoff(plugin);
        }
        state.last_failure = why.clone();
        Outcome::critical(why)
    }

    /// Runs an event-handler plugin on one event; `caller` names it in logs.
    pub async fn run_handler(
        &self,
        spec: &WasmSpec,
        event: HandlerEvent,
        caller: &str,
    ) -> Result<HandlerOutcome, PluginError> {
        let loaded = self.open(&spec.plugin).await?;
        check_pin(spec, &loaded)?;
        let Some(pre) = &loaded.handler else {
            return Err(PluginError::WrongWorld {
                plugin: spec.plugin.clone(),
                found: loaded.world.as_str(),
                want: "an event handler".into(),
            });
        };
        let budget = spec.timeout.map(|t| t.0).filter(|t| !t.is_zero()).unwrap_or(DEFAULT_HANDLER_TIMEOUT);
        let key = (loaded.sha256.clone(), serde_json::Value::Object(spec.args.clone()).to_string());
        if !self.inner.validated.lock().unwrap().contains(&key) {
            match self.validate_loaded(&loaded, spec, budget).await {
                Ok(Ok(())) => {
                    self.inner.validated.lock().unwrap().insert(key);
                }
                Ok(Err(msg)) => return Err(PluginError::InvalidConfig(msg)),
                Err(CallFailure(why)) => return Err(PluginError::Killed(why)),
            }
        }
        let event = match event {
            HandlerEvent::User { id, name, payload, ltime, node_filter, service_filter, tag_filter } => {
                types::Event::User(types::UserEvent {
                    id,
                    name,
                    payload,
                    ltime,
                    node_filter,
                    service_filter,
                    tag_filter,
                })
            }
            HandlerEvent::Watch { watch_type, index, payload_json } => {
                types::Event::Watch(types::WatchResult { watch_type, index, payload_json })
            }
        };
        let config = config_pairs(&spec.args);
        let mut store = self.store(spec, budget, caller, None)?;
        let started = Instant::now();
        let fut = async {
            let inst = pre.instantiate_async(&mut store).await?;
            inst.call_handle(&mut store, &config, &event).await
        };
        let result = match tokio::time::timeout(budget + GRACE, fut).await {
            Err(_) => Err(PluginError::Killed(Self::timed_out(spec, budget).0)),
            Ok(Err(e)) => Err(PluginError::Killed(Self::failure(&store, spec, budget, e).0)),
            Ok(Ok(Err(text))) => Err(PluginError::Plugin(text)),
            Ok(Ok(Ok(output))) => Ok(HandlerOutcome { output }),
        };
        metrics::call(&spec.plugin, "handler", started, if result.is_ok() { "ok" } else { "error" });
        result
    }
}

fn check_pin(spec: &WasmSpec, loaded: &Loaded) -> Result<(), PluginError> {
    match spec.sha256.as_deref().filter(|s| !s.is_empty()) {
        Some(pin) if !pin.eq_ignore_ascii_case(&loaded.sha256) => {
            Err(PluginError::Pin { path: loaded.path.clone(), sha256: loaded.sha256.clone(), pin: pin.to_string() })
        }
        _ => Ok(()),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn http_client(insecure: bool) -> Result<reqwest::Client, PluginError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(insecure)
        .user_agent(concat!("legate-plugin/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(PluginError::HttpClient)
}

/// The plugin host's state, for operators (`/v1/agent/plugins`, `legate debug`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostReport {
    pub plugin_dir: Option<String>,
    pub cache_dir: Option<String>,
    /// Compiled plugins in the disk cache, and their total size in bytes.
    pub cache_files: usize,
    pub cache_bytes: u64,
    pub loaded: Vec<LoadedState>,
}

/// One plugin the host has loaded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadedState {
    /// The file, or for a registry plugin the reference it is loaded under.
    pub path: String,
    pub sha256: String,
    pub world: String,
    pub from_cache: bool,
    pub imports: Vec<String>,
    /// "file" or "registry".
    pub source: String,
    /// A registry plugin's name, version, signers and whether this process fetched it.
    pub name: Option<String>,
    pub version: Option<String>,
    pub signed_by: Vec<String>,
    pub fetched: bool,
}

/// What a component imports and exports, and the capabilities that implies.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub world: Option<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub capabilities: Vec<String>,
    pub problem: Option<String>,
}

/// What an import lets a plugin ask for.
pub fn capability(import: &str) -> &'static str {
    let name = import.split('@').next().unwrap_or(import);
    match name {
        "legate:plugin/http" => "outbound HTTP to allow_hosts",
        "legate:plugin/net" => "TCP and TLS to allow_hosts",
        "legate:plugin/kv" => "KV reads under kv_read_prefixes",
        "legate:plugin/log" => "agent log lines",
        "legate:plugin/host" => "node name, datacenter, clocks",
        "legate:plugin/types" => "shared types",
        n if n.starts_with("wasi:filesystem") => "files (only directories granted with `files`)",
        n if n.starts_with("wasi:sockets") => "raw sockets (always denied; use legate:plugin/net)",
        n if n.starts_with("wasi:http") => "wasi:http (not provided: the plugin will not load)",
        n if n.starts_with("wasi:cli/environment") => "environment (empty)",
        n if n.starts_with("wasi:cli") => "stdio (discarded), exit",
        n if n.starts_with("wasi:clocks") => "clocks",
        n if n.starts_with("wasi:random") => "random numbers",
        n if n.starts_with("wasi:io") => "WASI streams and polling",
        _ => "unknown: not provided by Legate",
    }
}

impl PluginHost {
    /// The loaded plugins (with what they import) and the compile cache.
    pub fn state(&self) -> HostReport {
        let engine = &self.inner.engine;
        let mut loaded: Vec<LoadedState> = self
            .inner
            .loaded
            .lock()
            .unwrap()
            .iter()
            .map(|(key, l)| LoadedState {
                path: key.display().to_string(),
                sha256: l.sha256.clone(),
                world: l.world.as_str().to_string(),
                from_cache: l.from_cache,
                imports: l.component.component_type().imports(engine).map(|(n, _)| n.to_string()).collect(),
                source: if l.registry.is_some() { "registry" } else { "file" }.to_string(),
                name: l.registry.as_ref().map(|r| r.name.clone()),
                version: l.registry.as_ref().map(|r| r.version.clone()),
                signed_by: l.registry.as_ref().map(|r| r.signed_by.clone()).unwrap_or_default(),
                fetched: l.registry.as_ref().is_some_and(|r| r.fetched),
            })
            .collect();
        loaded.sort_by(|a, b| a.path.cmp(&b.path));
        let (mut cache_files, mut cache_bytes) = (0, 0);
        if let Some(dir) = &self.inner.opts.cache_dir {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.path().extension().is_some_and(|e| e == "cwasm") {
                    cache_files += 1;
                    cache_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        HostReport {
            plugin_dir: self.inner.opts.plugin_dir.as_ref().map(|d| d.display().to_string()),
            cache_dir: self.inner.opts.cache_dir.as_ref().map(|d| d.display().to_string()),
            cache_files,
            cache_bytes,
            loaded,
        }
    }

    /// Inspects a component file: world, imports, exports, capabilities (loads it through the
    /// cache; a component that does not link is still described, with the problem).
    pub async fn inspect(&self, path: &Path) -> Result<Inspection, PluginError> {
        let bytes =
            tokio::fs::read(path).await.map_err(|source| PluginError::Read { path: path.to_path_buf(), source })?;
        let sha = sha256_hex(&bytes);
        let _guard = self.inner.loading.lock().await;
        let (component, _) = self.compile_cached(&bytes, &sha).await?;
        drop(_guard);
        let ty = component.component_type();
        let engine = &self.inner.engine;
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let mut capabilities: Vec<String> = imports.iter().map(|i| format!("{i}: {}", capability(i))).collect();
        capabilities.dedup();
        let (world, problem) = match self.load(path).await {
            Ok(l) => (Some(l.world.as_str().to_string()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(Inspection {
            path: path.display().to_string(),
            sha256: sha,
            size: bytes.len() as u64,
            world,
            imports,
            exports,
            capabilities,
            problem,
        })
    }
}
