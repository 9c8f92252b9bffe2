//! `fanout-load`: the load generator of the blocking fan-out benchmark
//! (`scripts/bench-services.py --only fanout`). Parks `--waiters` blocking queries (one
//! connection each) on one running agent, waits until the agent's `rpc.queries_blocking` gauge
//! counts them all, reads the agent's RSS (`--pid`), makes one write that ends them and times
//! every waiter's answer from the moment the write was sent.
//!
//! KV (default): the waiters block on `GET /v1/kv/<key>?index=` over `--keys` keys, each key
//! written once. `--service N`: they block on `GET /v1/health/service/fanout?index=` (a service
//! of N instances, each with a passing check: consul-template's and Prometheus's query) and
//! the write registers one more instance.
//!
//! ```text
//! fanout-load --addr 127.0.0.1:8500 --waiters 10000 [--keys 1 | --service 100] [--pid PID] [--token T]
//! ```
//!
//! Written for the job so that the client is not what is measured: one thread, raw HTTP/1.1,
//! a few hundred bytes per waiter; it prints its own CPU time over the wake-up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

struct Args {
    addr: String,
    waiters: usize,
    keys: usize,
    pid: Option<u32>,
    token: Option<String>,
    /// Instances of the service the waiters watch (health mode), or None (KV mode).
    service: Option<usize>,
}

fn args() -> Result<Args> {
    let mut a = Args { addr: "127.0.0.1:8500".into(), waiters: 10_000, keys: 1, pid: None, token: None, service: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = value()?,
            "--waiters" => a.waiters = value()?.parse()?,
            "--keys" => a.keys = value()?.parse::<usize>()?.max(1),
            "--pid" => a.pid = Some(value()?.parse()?),
            "--token" => a.token = Some(value()?),
            "--service" => a.service = Some(value()?.parse()?),
            _ => bail!(
                "usage: fanout-load --addr HOST:PORT --waiters N [--keys K | --service N] [--pid PID] [--token T]"
            ),
        }
    }
    Ok(a)
}

/// One response: status, the headers' text, the body.
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends one request on a fresh connection and reads its response (Content-Length bodies only,
/// as the agent sends them).
async fn exchange(addr: &str, request: &[u8]) -> Result<Response> {
    let mut s = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    s.write_all(request).await?;
    read_response(&mut s).await
}

async fn read_response(s: &mut TcpStream) -> Result<Response> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the response's headers");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| anyhow!("bad status line"))?;
    let mut r = Response { status, head, body: buf[head_end..].to_vec() };
    let len: usize = r.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while r.body.len() < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed in the body");
        }
        r.body.extend_from_slice(&chunk[..n]);
    }
    Ok(r)
}

fn request(method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: legate\r\nContent-Length: {}\r\n", body.len());
    if let Some(t) = token {
        r.push_str(&format!("X-Consul-Token: {t}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// Sends one request and wants a 200.
async fn must(addr: &str, req: Vec<u8>) -> Result<Response> {
    let r = exchange(addr, &req).await?;
    if r.status != 200 {
        bail!(
            "{} answered {}: {}",
            String::from_utf8_lossy(&req).lines().next().unwrap_or(""),
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(r)
}

/// A catalog registration of instance `i` of service "fanout" on its own node, with a passing
/// check.
fn instance(i: usize) -> Vec<u8> {
    serde_json::json!({
        "Node": format!("fanout-{i}"),
        "Address": format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
        "Service": {"ID": "fanout", "Service": "fanout", "Port": 8080, "Tags": ["bench"]},
        "Check": {"CheckID": "service:fanout", "Name": "fanout", "Status": "passing", "ServiceID": "fanout"},
    })
    .to_string()
    .into_bytes()
}

fn rss_kib(pid: u32) -> Option<u64> {
    legate_types::proc_status::field(&pid.to_string(), "VmRSS")
}

/// This process's CPU time (user + system).
fn cpu_time() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The agent's `rpc.queries_blocking` gauge from `/v1/agent/metrics`.
async fn queries_blocking(a: &Args) -> Result<f64> {
    let r = exchange(&a.addr, &request("GET", "/v1/agent/metrics", a.token.as_deref(), b"")).await?;
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    v["Gauges"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["Name"].as_str().is_some_and(|n| n.ends_with("rpc.queries_blocking"))))
        .and_then(|g| g["Value"].as_f64())
        .ok_or_else(|| anyhow!("the agent shows no rpc.queries_blocking gauge"))
}

fn raise_nofile(n: u64) {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain rlimit calls on a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max.min(l.rlim_cur.max(n));
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

async fn run(a: Args) -> Result<()> {
    raise_nofile(a.waiters as u64 * 2 + 1024);
    let token = a.token.as_deref();
    let (watched, writes) = match a.service {
        None => {
            let keys: Vec<String> = (0..a.keys).map(|k| format!("/v1/kv/bench/fanout-{k}")).collect();
            for k in &keys {
                must(&a.addr, request("PUT", k, token, b"0")).await?;
            }
            let writes = keys.iter().map(|k| request("PUT", k, token, b"1")).collect();
            (keys, writes)
        }
        Some(n) => {
            for i in 0..n {
                must(&a.addr, request("PUT", "/v1/catalog/register", token, &instance(i))).await?;
            }
            let write = request("PUT", "/v1/catalog/register", token, &instance(n));
            (vec!["/v1/health/service/fanout".to_string()], vec![write])
        }
    };
    let mut index = 0u64;
    for path in &watched {
        let get = must(&a.addr, request("GET", path, token, b"")).await?;
        index = index.max(get.header("x-consul-index").and_then(|v| v.parse().ok()).context("no X-Consul-Index")?);
    }
    let before = a.pid.and_then(rss_kib);

    let sent = Arc::new(AtomicUsize::new(0));
    let connecting = Arc::new(Semaphore::new(256));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<Instant>>();
    for i in 0..a.waiters {
        let (addr, sent, connecting, done) = (a.addr.clone(), sent.clone(), connecting.clone(), done_tx.clone());
        let req = request("GET", &format!("{}?index={index}&wait=5m", watched[i % watched.len()]), token, b"");
        tokio::spawn(async move {
            let r = async {
                let permit = connecting.acquire().await?;
                let mut s = TcpStream::connect(&addr).await?;
                s.write_all(&req).await?;
                drop(permit);
                sent.fetch_add(1, Ordering::Relaxed);
                let r = read_response(&mut s).await?;
                let at = Instant::now();
                if r.status != 200 {
                    bail!("a waiter got {}", r.status);
                }
                Ok(at)
            }
            .await;
            let _ = done.send(r);
        });
    }
    drop(done_tx);

    // Parked when the agent counts every waiter as a blocked query.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = queries_blocking(&a).await?;
        if sent.load(Ordering::Relaxed) == a.waiters && n >= a.waiters as f64 {
            break;
        }
        if let Ok(Some(Err(e))) = tokio::time::timeout(Duration::from_millis(100), done_rx.recv()).await {
            return Err(e.context("a waiter failed before the write"));
        }
        if Instant::now() > deadline {
            bail!("only {n} of {} waiters parked after 120 s", a.waiters);
        }
    }
    let during = a.pid.and_then(rss_kib);

    let cpu0 = cpu_time();
    let t_write = Instant::now();
    for w in writes {
        must(&a.addr, w).await?;
    }
    let t_ack = Instant::now();
    let mut lat = Vec::with_capacity(a.waiters);
    while let Some(r) = tokio::time::timeout(Duration::from_secs(120), done_rx.recv())
        .await
        .context("waiters still parked 120 s after the write")?
    {
        let at = r?;
        lat.push(at.saturating_duration_since(t_write).as_secs_f64() * 1000.0);
    }
    let last = lat.iter().cloned().fold(0.0, f64::max);
    let cpu = cpu_time() - cpu0;
    lat.sort_by(f64::total_cmp);
    println!(
        "{} waiters on {}: answered after the write was sent p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (its ack after {:.1} ms); load generator CPU {:.0} ms",
        a.waiters,
        match a.service {
            None => format!("{} key(s)", a.keys),
            Some(n) => format!("health/service of {n} instances"),
        },
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        last,
        (t_ack - t_write).as_secs_f64() * 1000.0,
        cpu.as_secs_f64() * 1000.0,
    );
    if let (Some(b), Some(d)) = (before, during) {
        println!(
            "agent RSS {:.1} -> {:.1} MiB with the waiters parked: {:.0} B per waiter",
            b as f64 / 1024.0,
            d as f64 / 1024.0,
            (d.saturating_sub(b) * 1024) as f64 / a.waiters as f64
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let a = args()?;
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(run(a))
}
