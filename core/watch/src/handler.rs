//! Watch handlers: `args` (exec without a shell), the deprecated `handler` (a shell string),
//! `handler_type: "http"` with `http_handler_config`, and `handler_type: "wasm"` / a `wasm`
//! block (run by the plugin host through `agent::watches::run_wasm_handler`).
//!
//! Exec handlers get the result's JSON on stdin and `CONSUL_INDEX` in the environment; HTTP
//! handlers get it as the request body with an `X-Consul-Index` header.

use crate::WatchError;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::SpecError;
use crate::WatchDefinition;
use legate_types::duration::parse_go_duration;

/// Output kept from a handler for the log (Consul keeps 4 KiB).
pub const OUTPUT_LIMIT: usize = 4 * 1024;
/// Default timeout of an HTTP handler (Consul's).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What runs on a change.
#[derive(Clone, Debug, PartialEq)]
pub enum HandlerSpec {
    /// `args`: the program and its arguments, no shell.
    Exec(Vec<String>),
    /// `handler` (deprecated): a command line for the shell.
    Shell(String),
    Http(HttpHandlerConfig),
    /// The `wasm` block, for the plugin host.
    Wasm(legate_plugin_host::WasmSpec),
}

/// `http_handler_config`.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpHandlerConfig {
    pub path: String,
    pub method: String,
    pub header: Vec<(String, String)>,
    pub timeout: Duration,
    pub tls_skip_verify: bool,
}

impl HttpHandlerConfig {
    /// Parses the block (keys case-insensitive, as Consul decodes them).
    pub fn parse(v: &Json) -> Result<HttpHandlerConfig, SpecError> {
        let key = |k: &str| format!(".http_handler_config.{k}");
        let Json::Object(m) = v else {
            return Err((".http_handler_config".into(), "http_handler_config must be an object".into()));
        };
        let mut out = HttpHandlerConfig {
            path: String::new(),
            method: "POST".into(),
            header: Vec::new(),
            timeout: HTTP_TIMEOUT,
            tls_skip_verify: false,
        };
        for (k, v) in m {
            match k.to_ascii_lowercase().as_str() {
                "path" => out.path = v.as_str().ok_or_else(|| (key("path"), "path must be a string".into()))?.into(),
                "method" => {
                    let m = v.as_str().ok_or_else(|| (key("method"), "method must be a string".into()))?;
                    if m.is_empty() || reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).is_err() {
                        return Err((key("method"), format!("invalid HTTP method {m:?}")));
                    }
                    out.method = m.to_ascii_uppercase();
                }
                "header" => {
                    let Json::Object(h) = v else {
                        return Err((key("header"), "header must be a map of names to lists of values".into()));
                    };
                    for (name, vals) in h {
                        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                            return Err((key("header"), format!("invalid header name {name:?}")));
                        }
                        let vals: Vec<&str> = match vals {
                            Json::String(s) => vec![s.as_str()],
                            Json::Array(a) => a
                                .iter()
                                .map(|x| {
                                    x.as_str().ok_or_else(|| {
                                        (key("header"), format!("values of header {name:?} must be strings"))
                                    })
                                })
                                .collect::<Result<_, _>>()?,
                            _ => return Err((key("header"), format!("values of header {name:?} must be strings"))),
                        };
                        for val in vals {
                            if reqwest::header::HeaderValue::from_str(val).is_err() {
                                return Err((key("header"), format!("invalid value of header {name:?}")));
                            }
                            out.header.push((name.clone(), val.to_string()));
                        }
                    }
                }
                "timeout" => {
                    out.timeout = match v {
                        Json::String(s) => parse_go_duration(s).map_err(|e| (key("timeout"), e))?,
                        // A bare number is nanoseconds (Go's time.Duration).
                        Json::Number(n) => Duration::from_nanos(
                            n.as_u64().ok_or_else(|| (key("timeout"), "timeout must not be negative".to_string()))?,
                        ),
                        _ => return Err((key("timeout"), "timeout must be a duration such as \"10s\"".into())),
                    };
                    if out.timeout.is_zero() {
                        out.timeout = HTTP_TIMEOUT;
                    }
                }
                "tls_skip_verify" => {
                    out.tls_skip_verify = v
                        .as_bool()
                        .ok_or_else(|| (key("tls_skip_verify"), "tls_skip_verify must be a boolean".into()))?
                }
                other => return Err((key(other), format!("unknown key {other:?} in http_handler_config"))),
            }
        }
        if out.path.is_empty() {
            return Err((key("path"), "http_handler_config requires path".into()));
        }
        match reqwest::Url::parse(&out.path) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err((key("path"), format!("path {:?} is not an http(s) URL", out.path))),
        }
        Ok(out)
    }
}

impl HandlerSpec {
    /// The handler's kind, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerSpec::Exec(_) => "exec",
            HandlerSpec::Shell(_) => "shell",
            HandlerSpec::Http(_) => "http",
            HandlerSpec::Wasm(_) => "wasm",
        }
    }

    /// The handler of a config watch; exactly one kind must be given.
    pub fn from_definition(w: &WatchDefinition) -> Result<HandlerSpec, SpecError> {
        let script = !w.args.is_empty() || w.handler.is_some();
        let kind = match w.handler_type.as_deref() {
            Some("script") => "script",
            Some("http") => "http",
            Some("wasm") => "wasm",
            Some(other) => {
                return Err((
                    ".handler_type".into(),
                    format!("unsupported handler_type {other:?} (one of script, http, wasm)"),
                ))
            }
            None if w.wasm.is_some() => "wasm",
            None if w.http_handler_config.is_some() => "http",
            None => "script",
        };
        let given = [script, w.http_handler_config.is_some(), w.wasm.is_some()].iter().filter(|b| **b).count();
        if given > 1 || (!w.args.is_empty() && w.handler.is_some()) {
            return Err((String::new(), "Only one watch handler allowed".into()));
        }
        match kind {
            "script" => {
                if !w.args.is_empty() {
                    if w.args[0].is_empty() {
                        return Err((".args".into(), "args must start with a program".into()));
                    }
                    return Ok(HandlerSpec::Exec(w.args.clone()));
                }
                match &w.handler {
                    Some(h) if !h.trim().is_empty() => Ok(HandlerSpec::Shell(h.clone())),
                    Some(_) => Err((".handler".into(), "handler is empty".into())),
                    None => {
                        Err((String::new(), "watch has no handler (args, handler, http_handler_config or wasm)".into()))
                    }
                }
            }
            "http" => match &w.http_handler_config {
                Some(c) => Ok(HandlerSpec::Http(HttpHandlerConfig::parse(c)?)),
                None => Err((".http_handler_config".into(), "handler_type http requires http_handler_config".into())),
            },
            _ => match &w.wasm {
                Some(spec) if !spec.plugin.trim().is_empty() => Ok(HandlerSpec::Wasm(spec.clone())),
                Some(_) => Err((".wasm.plugin".into(), "wasm needs the plugin to run".into())),
                None => Err((".wasm".into(), "handler_type wasm requires a wasm block".into())),
            },
        }
    }
}

/// The shell for `handler` strings and `legate watch -shell`: `$SHELL`, else `/bin/sh`.
pub fn shell_argv(command: &str) -> Vec<String> {
    let shell = std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into());
    vec![shell, "-c".into(), command.to_string()]
}

/// Where an exec handler's output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The handler writes to our stdout/stderr (`legate watch`).
    Inherit,
    /// Captured (the first [`OUTPUT_LIMIT`] bytes) for the agent's log. The handler runs in its
    /// own process group, killed as a whole on timeout or when the watch stops.
    Capture,
}

/// Kills a process group when dropped while armed (timeout, cancellation).
struct GroupKill(Option<i32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) on the process group of a child we spawned with process_group(0).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(mut r: R, buf: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
                let room = OUTPUT_LIMIT.saturating_sub(b.len());
                b.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// Runs `argv` with `input` on stdin and `CONSUL_INDEX=index`. Returns the captured output
/// (empty with [`Output::Inherit`]); a non-zero exit, a spawn failure or the timeout is an error.
pub async fn exec(
    argv: &[String],
    input: &[u8],
    index: u64,
    timeout: Option<Duration>,
    output: Output,
) -> Result<String, WatchError> {
    let Some(program) = argv.first() else { return Err(WatchError::NoCommand) };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv[1..]).env("CONSUL_INDEX", index.to_string()).stdin(Stdio::piped()).kill_on_drop(true);
    match output {
        Output::Inherit => {
            cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        }
        Output::Capture => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        }
    }
    let mut child = cmd.spawn().map_err(|source| WatchError::Spawn { program: program.clone(), source })?;
    let mut group =
        GroupKill(if output == Output::Capture { child.id().and_then(|p| i32::try_from(p).ok()) } else { None });
    let captured = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_capped(out, captured.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_capped(err, captured.clone())));
    }
    let stdin = child.stdin.take();
    let write = async move {
        if let Some(mut s) = stdin {
            // A handler that does not read its stdin is fine (EPIPE is ignored).
            let _ = s.write_all(input).await;
        }
    };
    let run = async {
        let (_, status) = tokio::join!(write, child.wait());
        status
    };
    let status = match timeout {
        Some(t) => match tokio::time::timeout(t, run).await {
            Ok(s) => s,
            // Dropping `group` kills the handler and whatever it started.
            Err(_) => return Err(WatchError::Timeout(t)),
        },
        None => run.await,
    }
    .map_err(WatchError::Wait)?;
    group.0 = None;
    // Output still held open by something the handler left running is not waited for long.
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
    }
    let text = String::from_utf8_lossy(&captured.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    if status.success() {
        Ok(text)
    } else {
        let why = match status.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".into(),
        };
        Err(WatchError::Exit(if text.trim().is_empty() { why } else { format!("{why}: {}", text.trim()) }))
    }
}

/// A ready HTTP handler (client built once per watch).
pub struct HttpHandler {
    config: HttpHandlerConfig,
    client: reqwest::Client,
}

impl HttpHandler {
    pub fn new(config: HttpHandlerConfig) -> Result<HttpHandler, WatchError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .danger_accept_invalid_certs(config.tls_skip_verify)
            .build()
            .map_err(WatchError::HttpClient)?;
        Ok(HttpHandler { config, client })
    }

    /// Sends the result; a status outside 2xx is an error. Returns the response body (capped).
    pub async fn call(&self, index: u64, body: Vec<u8>) -> Result<String, WatchError> {
        let method = reqwest::Method::from_bytes(self.config.method.as_bytes())
            .map_err(|_| WatchError::Method(self.config.method.clone()))?;
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &self.config.header {
            headers.entry(k.clone()).or_default().push(v.clone());
        }
        let mut req = self
            .client
            .request(method, &self.config.path)
            .header("Content-Type", "application/json")
            .header("X-Consul-Index", index.to_string());
        for (k, vs) in headers {
            for v in vs {
                req = req.header(k.as_str(), v);
            }
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|source| WatchError::Http { path: self.config.path.clone(), source })?;
        let status = resp.status();
        let mut text = resp.text().await.unwrap_or_default();
        if text.len() > OUTPUT_LIMIT {
            let mut cut = OUTPUT_LIMIT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        if status.is_success() {
            Ok(text)
        } else {
            Err(WatchError::HttpStatus { path: self.config.path.clone(), status, body: text.trim().to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn w(f: impl FnOnce(&mut WatchDefinition)) -> WatchDefinition {
        let mut d = WatchDefinition { kind: "services".into(), ..Default::default() };
        f(&mut d);
        d
    }

    #[test]
    fn handler_kinds() {
        assert_eq!(
            HandlerSpec::from_definition(&w(|d| d.args = vec!["/bin/x".into(), "a".into()])).unwrap(),
            HandlerSpec::Exec(vec!["/bin/x".into(), "a".into()])
        );
        assert_eq!(
            HandlerSpec::from_definition(&w(|d| d.handler = Some("echo hi".into()))).unwrap(),
            HandlerSpec::Shell("echo hi".into())
        );
        let both = w(|d| {
            d.args = vec!["x".into()];
            d.handler = Some("y".into());
        });
        assert_eq!(HandlerSpec::from_definition(&both).unwrap_err().1, "Only one watch handler allowed");
        let http = w(|d| {
            d.handler_type = Some("http".into());
            d.http_handler_config = Some(json!({"Path": "http://127.0.0.1:9/h", "method": "put",
                "header": {"x-a": ["1", "2"]}, "timeout": "3s", "tls_skip_verify": true}));
        });
        let HandlerSpec::Http(c) = HandlerSpec::from_definition(&http).unwrap() else { panic!() };
        assert_eq!(c.method, "PUT");
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.header, vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())]);
        assert!(c.tls_skip_verify);
        let bad = w(|d| {
            d.handler_type = Some("http".into());
            d.http_handler_config = Some(json!({"method": "POST"}));
        });
        assert_eq!(HandlerSpec::from_definition(&bad).unwrap_err().0, ".http_handler_config.path");
        let wasm =
            w(|d| d.wasm = Some(legate_plugin_host::WasmSpec { plugin: "/p.wasm".into(), ..Default::default() }));
        assert!(matches!(HandlerSpec::from_definition(&wasm).unwrap(), HandlerSpec::Wasm(_)));
        assert!(HandlerSpec::from_definition(&w(|_| {})).unwrap_err().1.contains("no handler"));
    }

    #[tokio::test]
    async fn exec_passes_stdin_and_index_and_reports_failure() {
        let out =
            exec(&shell_argv("cat; echo \" $CONSUL_INDEX\""), b"{\"a\":1}", 42, None, Output::Capture).await.unwrap();
        assert_eq!(out, "{\"a\":1} 42\n");
        let e = exec(&shell_argv("echo boom >&2; exit 3"), b"", 1, None, Output::Capture).await.unwrap_err();
        assert!(matches!(&e, WatchError::Exit(why) if why == "exit status 3: boom"), "{e}");
    }

    #[tokio::test]
    async fn a_hanging_handler_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
        let e =
            exec(&shell_argv(&script), b"", 1, Some(Duration::from_millis(300)), Output::Capture).await.unwrap_err();
        assert!(matches!(e, WatchError::Timeout(_)), "{e}");
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The grandchild was killed with the group (a zombie until its new parent reaps it).
        let mut gone = false;
        for _ in 0..100 {
            // SAFETY: signal 0 only probes whether the pid exists.
            let exists = unsafe { libc::kill(pid, 0) } == 0;
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"));
            if !exists || zombie {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone, "sleep {pid} survived");
    }
}
