//! `PluginError`: why a plugin could not be found, loaded, linked, validated or called. Its
//! text is what a check shows as its output and what a refused registration answers.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// wasmtime's engine or linker could not be set up.
    #[error("wasm {what}: {err:#}")]
    Engine { what: &'static str, err: wasmtime::Error },
    #[error("plugin cache {}: {source}", path.display())]
    CacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("epoch ticker: {0}")]
    Ticker(#[source] std::io::Error),
    #[error("plugin http client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("no plugin given")]
    NoPlugin,
    #[error("plugin {0:?} is a name but the agent has no plugin_dir (set plugin_dir or data_dir, or give a path)")]
    NoPluginDir(String),
    #[error("plugin {name:?} not found at {}", path.display())]
    NotFound { name: String, path: PathBuf },
    /// The plugin file could not be read.
    #[error("plugin {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {} changed while loading; try again", .0.display())]
    Changed(PathBuf),
    #[error("plugin compile task: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("not a valid WASM component: {0:#}")]
    NotAComponent(wasmtime::Error),
    #[error("plugin imports something Legate does not provide: {0:#}")]
    Imports(wasmtime::Error),
    #[error("{} is neither a {check} nor a {handler} component", path.display())]
    NoWorld { path: PathBuf, check: &'static str, handler: &'static str },
    #[error("plugin {plugin:?} is a {found} component, not {want}")]
    WrongWorld { plugin: String, found: &'static str, want: String },
    #[error("files grant {}: {err:#}", path.display())]
    Grant { path: PathBuf, err: wasmtime::Error },
    #[error("wasm memory_mb must be > 0")]
    ZeroMemory,
    #[error("plugin {} has sha256 {sha256} but the definition pins {pin}", path.display())]
    Pin { path: PathBuf, sha256: String, pin: String },
    /// The plugin's `validate` answered Err at registration.
    #[error("plugin {plugin:?} rejected its configuration: {msg}")]
    Rejected { plugin: String, msg: String },
    /// The plugin's `validate` could not run at registration (trap, timeout, memory).
    #[error("plugin {plugin:?} failed to validate its configuration: {why}")]
    ValidateFailed { plugin: String, why: String },
    /// The plugin's `validate` answered Err before a run.
    #[error("invalid plugin configuration: {0}")]
    InvalidConfig(String),
    /// A call that was killed (trap, timeout, memory limit).
    #[error("{0}")]
    Killed(String),
    /// The plugin's own `Err` answer.
    #[error("{0}")]
    Plugin(String),
    /// A registry reference that could not be resolved or fetched.
    #[error("{0}")]
    Registry(String),
    /// Fetched bytes that are not the blob they were asked for.
    #[error("plugin {plugin}: digest mismatch: expected sha256 {expected}, got {got}")]
    Digest { plugin: String, expected: String, got: String },
    /// `plugins.trusted_keys` is set and no signature of the blob verifies under one of them.
    #[error("plugin {plugin} (sha256 {sha256}) is not signed by a trusted key")]
    Unsigned { plugin: String, sha256: String },
    /// A malformed `registry:` or `sha256:` reference.
    #[error("{0}")]
    BadRef(String),
}
