//! `legate plugin run|inspect|compile|bench`: WASM plugins without an agent.
//!
//! - `run <wasm> --args k=v ...` runs one check (prints `status: output`; exit 0 passing,
//!   1 warning, 2 critical) or, for an event handler, feeds it one event (`--event-name`,
//!   `--payload`, or `--watch-type`, `--index`, `--json`).
//! - `inspect <wasm>` prints the world, imports (the capabilities asked for) and exports.
//! - `compile <wasm>...` compiles into the cache of `-data-dir` (`<data_dir>/plugin-cache`),
//!   so an agent using that data dir starts without compiling.
//! - `bench <wasm>` measures warm call overhead and cold start from the on-disk cache.
//!
//! The registry commands (`push`, `list`, `pull`, `rm`, `sign`, `keygen`) are in
//! `plugin_registry.rs`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use legate_config::{FileGrant, GoDuration, WasmSpec};
use legate_plugin_host::{CheckCall, CheckCallResult, HandlerEvent, HostOptions, PluginHost, World};

#[derive(clap::Subcommand, Debug)]
pub enum PluginCommand {
    /// Runs a check plugin once, or feeds an event to an event-handler plugin
    Run(RunArgs),
    /// Prints a plugin's world, imports (capabilities) and exports
    Inspect(InspectArgs),
    /// Compiles plugins into the agent's cache (<data-dir>/plugin-cache)
    Compile(CompileArgs),
    /// Measures warm call overhead and cold start from the on-disk cache
    Bench(BenchArgs),
    /// Stores a plugin in the cluster's registry (once: every agent can run it)
    Push(super::plugin_registry::PushArgs),
    /// Lists the registry's plugins, versions, digests and where they run
    List(super::plugin_registry::ListArgs),
    /// Writes a registry plugin to a file, checked against its digest
    Pull(super::plugin_registry::PullArgs),
    /// Deletes a plugin version that no check uses
    Rm(super::plugin_registry::RmArgs),
    /// Signs a plugin with an ed25519 key (for push -signature)
    Sign(super::plugin_registry::SignArgs),
    /// Creates an ed25519 key pair for signing plugins
    Keygen(super::plugin_registry::KeygenArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct HostArgs {
    /// Data dir whose plugin-cache to use (default: no disk cache)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Directory of plugins given by name (default <data-dir>/plugins)
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
}

impl HostArgs {
    fn host(&self) -> Result<PluginHost, String> {
        PluginHost::new(HostOptions {
            plugin_dir: self.plugin_dir.clone().or_else(|| self.data_dir.as_ref().map(|d| d.join("plugins"))),
            cache_dir: self.data_dir.as_ref().map(|d| d.join("plugin-cache")),
            facts: legate_plugin_host::Facts {
                node_name: gethostname::gethostname().to_string_lossy().into_owned(),
                datacenter: "dc1".into(),
            },
            kv: None,
        })
        .map_err(|e| e.to_string())
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct SpecArgs {
    /// A plugin argument (repeatable): key=value
    #[arg(long = "args", value_name = "K=V")]
    args: Vec<String>,
    /// A host the plugin may reach (repeatable)
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Memory cap in MiB
    #[arg(long)]
    memory_mb: Option<u32>,
    /// A directory grant (repeatable): host_dir[:guest_dir][:rw]
    #[arg(long = "file")]
    files: Vec<String>,
    /// Call budget (the check's timeout)
    #[arg(long, default_value = "10s")]
    timeout: GoDuration,
}

impl SpecArgs {
    fn spec(&self, plugin: &str) -> Result<WasmSpec, String> {
        let mut args = serde_json::Map::new();
        for kv in &self.args {
            let (k, v) = kv.split_once('=').ok_or_else(|| format!("--args {kv:?}: expected key=value"))?;
            args.insert(k.to_string(), serde_json::Value::String(v.to_string()));
        }
        let files = self
            .files
            .iter()
            .map(|f| {
                let mut parts = f.split(':');
                let host_dir = PathBuf::from(parts.next().unwrap_or_default());
                let mut guest_dir = None;
                let mut writable = false;
                for p in parts {
                    if p == "rw" {
                        writable = true;
                    } else {
                        guest_dir = Some(p.to_string());
                    }
                }
                FileGrant { host_dir, guest_dir, writable }
            })
            .collect();
        Ok(WasmSpec {
            plugin: plugin.to_string(),
            args,
            allow_hosts: self.allow_hosts.clone(),
            memory_mb: self.memory_mb,
            files,
            timeout: Some(self.timeout),
            ..WasmSpec::default()
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The plugin: a .wasm path or a name in the plugin dir
    plugin: String,
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    host: HostArgs,
    /// Event handlers: the user event's name
    #[arg(long)]
    event_name: Option<String>,
    /// Event handlers: the user event's payload
    #[arg(long, default_value = "")]
    payload: String,
    /// Event handlers: a watch result of this type instead of a user event
    #[arg(long)]
    watch_type: Option<String>,
    /// Event handlers: the watch result's index
    #[arg(long, default_value_t = 1)]
    index: u64,
    /// Event handlers: the watch result's JSON
    #[arg(long, default_value = "null")]
    json: String,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    plugin: String,
    #[command(flatten)]
    host: HostArgs,
    /// Print JSON
    #[arg(long)]
    format_json: bool,
}

#[derive(clap::Args, Debug)]
pub struct CompileArgs {
    #[arg(required = true)]
    plugins: Vec<String>,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    plugin: String,
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    host: HostArgs,
    /// Warm calls to time
    #[arg(long, default_value_t = 1000)]
    calls: u32,
    /// Cold starts (new host, load from the on-disk cache, first call) to time
    #[arg(long, default_value_t = 20)]
    cold: u32,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())
}

pub fn run(cmd: PluginCommand) -> i32 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let r = rt.block_on(async move {
        match cmd {
            PluginCommand::Run(a) => run_one(a).await,
            PluginCommand::Inspect(a) => inspect(a).await,
            PluginCommand::Compile(a) => compile(a).await,
            PluginCommand::Bench(a) => bench(a).await,
            PluginCommand::Push(a) => super::plugin_registry::push(a).await,
            PluginCommand::List(a) => super::plugin_registry::list(a).await,
            PluginCommand::Pull(a) => super::plugin_registry::pull(a).await,
            PluginCommand::Rm(a) => super::plugin_registry::rm(a).await,
            PluginCommand::Sign(a) => super::plugin_registry::sign(a),
            PluginCommand::Keygen(a) => super::plugin_registry::keygen(a),
        }
    });
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn call_for(spec: &SpecArgs) -> CheckCall {
    CheckCall {
        check_id: "cli".into(),
        check_name: "legate plugin run".into(),
        interval: Duration::from_secs(10),
        timeout: spec.timeout.0,
        ..CheckCall::default()
    }
}

async fn run_one(a: RunArgs) -> Result<i32, String> {
    let host = a.host.host()?;
    let spec = a.spec.spec(&a.plugin)?;
    let path = host.resolve(&a.plugin).map_err(|e| e.to_string())?;
    let loaded = host.load(&path).await.map_err(|e| e.to_string())?;
    match loaded.world {
        World::Check => {
            host.validate(&spec, Some(World::Check)).await.map_err(|e| e.to_string())?;
            let (status, output) = match host.call_check(&loaded, &spec, &call_for(&a.spec), 1).await {
                CheckCallResult::Ok(o) => (o.status, o.output),
                CheckCallResult::PluginError(t) | CheckCallResult::Killed(t) => {
                    (legate_types::check::CheckStatus::Critical, t)
                }
            };
            println!("{status}: {output}");
            Ok(match status {
                legate_types::check::CheckStatus::Passing => 0,
                legate_types::check::CheckStatus::Warning => 1,
                legate_types::check::CheckStatus::Critical => 2,
            })
        }
        World::EventHandler => {
            let event = match &a.watch_type {
                Some(t) => HandlerEvent::Watch { watch_type: t.clone(), index: a.index, payload_json: a.json.clone() },
                None => HandlerEvent::User {
                    id: uuid::Uuid::new_v4().to_string(),
                    name: a.event_name.clone().unwrap_or_else(|| "cli-event".into()),
                    payload: a.payload.clone().into_bytes(),
                    ltime: 1,
                    node_filter: String::new(),
                    service_filter: String::new(),
                    tag_filter: String::new(),
                },
            };
            match host.run_handler(&spec, event, "cli").await {
                Ok(o) => {
                    println!("ok: {}", o.output);
                    Ok(0)
                }
                Err(e) => {
                    println!("error: {e}");
                    Ok(2)
                }
            }
        }
    }
}

async fn inspect(a: InspectArgs) -> Result<i32, String> {
    let host = a.host.host()?;
    let path = host.resolve(&a.plugin).map_err(|e| e.to_string())?;
    let i = host.inspect(&path).await.map_err(|e| e.to_string())?;
    if a.format_json {
        println!("{}", serde_json::to_string_pretty(&i).map_err(|e| e.to_string())?);
        return Ok(0);
    }
    println!("Plugin:  {}", i.path);
    println!("SHA256:  {}", i.sha256);
    println!("Size:    {} bytes", i.size);
    println!("World:   {}", i.world.as_deref().unwrap_or("(none: does not load)"));
    if let Some(p) = &i.problem {
        println!("Problem: {p}");
    }
    println!("Imports (capabilities asked for):");
    for c in &i.capabilities {
        println!("  {c}");
    }
    println!("Exports:");
    for e in &i.exports {
        println!("  {e}");
    }
    Ok(if i.problem.is_some() { 1 } else { 0 })
}

async fn compile(a: CompileArgs) -> Result<i32, String> {
    if a.host.data_dir.is_none() {
        return Err("compile needs -data-dir (the cache is <data-dir>/plugin-cache)".into());
    }
    let host = a.host.host()?;
    let mut code = 0;
    for p in &a.plugins {
        let started = Instant::now();
        match host.resolve(p) {
            Ok(path) => match host.load(&path).await {
                Ok(l) => println!(
                    "{}: {} ({}, {:?}) -> {}",
                    path.display(),
                    l.world.as_str(),
                    if l.from_cache { "already cached" } else { "compiled" },
                    started.elapsed(),
                    host.cache_path(&l.sha256).map(|p| p.display().to_string()).unwrap_or_default()
                ),
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    code = 1;
                }
            },
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn rss_kib() -> u64 {
    legate_types::proc_status::field("self", "VmRSS").unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn bench(a: BenchArgs) -> Result<i32, String> {
    if a.host.data_dir.is_none() {
        return Err("bench needs -data-dir (cold starts load from <data-dir>/plugin-cache)".into());
    }
    let spec = a.spec.spec(&a.plugin)?;
    let call = call_for(&a.spec);
    // Fill the cache.
    let host = a.host.host()?;
    let path = host.resolve(&a.plugin).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let loaded = host.load(&path).await.map_err(|e| e.to_string())?;
    println!(
        "plugin {} ({}, {} bytes): first load {:?} ({})",
        path.display(),
        loaded.world.as_str(),
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        started.elapsed(),
        if loaded.from_cache { "from cache" } else { "compiled" }
    );
    if loaded.world != World::Check {
        return Err("bench runs check plugins".into());
    }
    host.validate(&spec, Some(World::Check)).await.map_err(|e| e.to_string())?;
    // Cold starts: a fresh host (engine) each time, created before the clock starts (an agent
    // has its engine); timed: load from the on-disk cache (deserialize + link), then the
    // first call (instantiate + call).
    let mut cold = Vec::new();
    let mut loads = Vec::new();
    for _ in 0..a.cold {
        let h = a.host.host()?;
        let t = Instant::now();
        let l = h.load(&path).await.map_err(|e| e.to_string())?;
        loads.push(t.elapsed());
        if !l.from_cache {
            return Err("the plugin was compiled, not loaded from the cache".into());
        }
        let r = h.call_check(&l, &spec, &call, 1).await;
        cold.push(t.elapsed());
        if let CheckCallResult::Killed(e) = r {
            return Err(e);
        }
    }
    loads.sort();
    cold.sort();
    // Warm calls: instantiate from the linked plugin + call + drop.
    let rss_before = rss_kib();
    let mut warm = Vec::with_capacity(a.calls as usize);
    let mut last = None;
    for i in 0..a.calls {
        let t = Instant::now();
        let r = host.call_check(&loaded, &spec, &call, i as u64 + 1).await;
        warm.push(t.elapsed());
        last = Some(r);
    }
    warm.sort();
    let mean = warm.iter().sum::<Duration>() / warm.len().max(1) as u32;
    println!("last result: {last:?}");
    println!(
        "warm call (instantiate + call + drop), {} calls: p50 {:?}  mean {:?}  p99 {:?}",
        warm.len(),
        percentile(&warm, 0.5),
        mean,
        percentile(&warm, 0.99)
    );
    println!(
        "cold start from the on-disk cache, {} runs: load (deserialize + link) p50 {:?}  min {:?}; \
         load + first call p50 {:?}  min {:?}  max {:?}",
        cold.len(),
        percentile(&loads, 0.5),
        loads.first().copied().unwrap_or_default(),
        percentile(&cold, 0.5),
        cold.first().copied().unwrap_or_default(),
        cold.last().copied().unwrap_or_default()
    );
    println!("RSS now {} KiB (before warm calls {} KiB)", rss_kib(), rss_before);
    Ok(0)
}
