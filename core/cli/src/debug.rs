//! `legate debug`: a bundle for whoever investigates an agent, as Consul's: the agent's
//! self-description (secrets redacted by the agent), members, host, metrics every interval and
//! the log at debug level for the duration, written as `<output>.tar.gz`.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::http_flags::{block_on, HttpFlags};

/// Consul's floors: shorter captures say too little.
const MIN_INTERVAL: Duration = Duration::from_secs(5);
const MIN_DURATION: Duration = Duration::from_secs(10);
const TARGETS: &[&str] = &["agent", "host", "members", "plugins", "metrics", "logs"];

#[derive(clap::Args, Debug)]
pub struct DebugArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// How long to capture metrics and logs
    #[arg(long, default_value = "5m")]
    duration: String,
    /// How often to capture metrics
    #[arg(long, default_value = "30s")]
    interval: String,
    /// What to capture (repeatable): agent, host, members, plugins, metrics, logs; all by default
    #[arg(long)]
    capture: Vec<String>,
    /// The bundle's path without `.tar.gz` (default: legate-debug-<unix time> here)
    #[arg(long)]
    output: Option<String>,
}

fn parse_at_least(name: &str, text: &str, min: Duration) -> Result<Duration, String> {
    let d = legate_types::duration::parse_go_duration(text).map_err(|e| format!("Error parsing -{name}: {e}"))?;
    if d < min {
        return Err(format!("-{name} must be at least {}", legate_types::GoDuration(min)));
    }
    Ok(d)
}

pub fn run_debug(a: DebugArgs) -> i32 {
    block_on(async move {
        let duration = parse_at_least("duration", &a.duration, MIN_DURATION)?;
        let interval = parse_at_least("interval", &a.interval, MIN_INTERVAL)?.min(duration);
        let capture: Vec<String> =
            if a.capture.is_empty() { TARGETS.iter().map(|t| t.to_string()).collect() } else { a.capture.clone() };
        if let Some(bad) = capture.iter().find(|c| !TARGETS.contains(&c.as_str())) {
            return Err(format!("Invalid capture target {bad:?}: use one of {}", TARGETS.join(", ")));
        }
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let output = a.output.clone().unwrap_or_else(|| format!("legate-debug-{stamp}"));
        let archive = format!("{output}.tar.gz");
        if std::path::Path::new(&archive).exists() {
            return Err(format!("Output file already exists: {archive}"));
        }
        let client = a.http.client()?;
        let q = a.http.query();
        let get = |path: &'static str| {
            let client = &client;
            let q = &q;
            async move { client.get_json::<Json>(path, q, &[]).await.map(|(v, _)| v).map_err(|e| format!("{path}: {e}")) }
        };
        // The agent answers first, or there is nothing to debug.
        let agent = get("/v1/agent/self").await.map_err(|e| format!("Error querying the agent: {e}"))?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let pretty = |v: &Json| serde_json::to_vec_pretty(v).unwrap_or_default();
        let wants = |t: &str| capture.iter().any(|c| c == t);
        if wants("agent") {
            files.push(("agent.json".into(), pretty(&agent)));
        }
        for (target, path, file) in [
            ("host", "/v1/agent/host", "host.json"),
            ("members", "/v1/agent/members", "members.json"),
            ("plugins", "/v1/agent/plugins", "plugins.json"),
        ] {
            if wants(target) {
                match get(path).await {
                    Ok(v) => files.push((file.into(), pretty(&v))),
                    Err(e) => eprintln!("[WARN] capturing {target}: {e}"),
                }
            }
        }
        println!("==> Capturing debug information for {} ...", legate_types::GoDuration(duration));
        // The log at debug level, for the whole duration.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let logs = if wants("logs") {
            let stream = client
                .get_stream("/v1/agent/monitor", &[("loglevel", "debug")])
                .await
                .map_err(|e| format!("Error starting the log capture: {e}"))?;
            let log = log.clone();
            Some(tokio::spawn(async move {
                let mut stream = stream;
                while let Ok(Some(chunk)) = stream.chunk().await {
                    log.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&chunk);
                }
            }))
        } else {
            None
        };
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < duration {
            if wants("metrics") {
                match get("/v1/agent/metrics").await {
                    Ok(v) => files.push((format!("metrics/{n:03}.json"), pretty(&v))),
                    Err(e) => eprintln!("[WARN] capturing metrics: {e}"),
                }
            }
            n += 1;
            let left = duration.saturating_sub(start.elapsed());
            tokio::time::sleep(interval.min(left)).await;
        }
        if let Some(task) = logs {
            // The monitor streams until the client leaves: keep what came during the duration.
            task.abort();
            let captured = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
            files.push(("agent.log".into(), captured));
        }
        write_archive(&archive, &output, &files)?;
        println!("Saved debug archive: {archive}");
        Ok(0)
    })
}

fn write_archive(archive: &str, root: &str, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    let file = std::fs::File::create(archive).map_err(|e| format!("Error creating {archive}: {e}"))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let base = std::path::Path::new(root).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        tar.append_data(&mut header, format!("{base}/{name}"), data.as_slice())
            .map_err(|e| format!("Error writing {archive}: {e}"))?;
    }
    tar.into_inner().and_then(|gz| gz.finish()).map_err(|e| format!("Error writing {archive}: {e}"))?;
    Ok(())
}
