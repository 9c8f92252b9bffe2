//! HTTP probe: one request to `http` (method `method`, default GET; `header`, `body`), following
//! up to 10 redirects unless `disable_redirects`. 2xx is passing, 429 warning, anything else
//! critical; the output is `HTTP GET <url>: 200 OK Output: <start of body>`. Failures read as
//! Go's client words them: `Get "<url>": dial tcp 127.0.0.1:1: connect: connection refused`.
//!
//! TLS: `tls_skip_verify` accepts any certificate; `tls_server_name` is the name sent as SNI and
//! verified against the certificate (the request then goes to the URL's host's addresses, with
//! the URL's host in the `Host` header).

use std::error::Error as _;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, COOKIE, HOST, LOCATION, USER_AGENT};
use reqwest::{Client, Method, StatusCode, Url};
use tokio::time::Instant;

use legate_tls as tls;

use super::{net, Outcome};
use legate_config::CheckDefinition;

const MAX_REDIRECTS: usize = 10;

#[cfg(test)]
async fn probe(def: &CheckDefinition, timeout: Duration, max_output: usize) -> Outcome {
    probe_with(def, timeout, max_output, None).await
}

/// `agent`: the agent's CA and certificate (`enable_agent_tls_for_checks`).
pub(super) async fn probe_with(
    def: &CheckDefinition,
    timeout: Duration,
    max_output: usize,
    agent: Option<&tls::CheckTls>,
) -> Outcome {
    let target = def.http.as_deref().unwrap_or_default();
    let method = def.method.as_deref().filter(|m| !m.is_empty()).unwrap_or("GET");
    let deadline = Instant::now() + timeout;
    match run(def, target, method, deadline, max_output, agent).await {
        Ok((status, body)) => {
            let output =
                format!("HTTP {method} {target}: {} Output: {}", status_text(status), String::from_utf8_lossy(&body));
            if status.is_success() {
                Outcome::passing(output)
            } else if status == StatusCode::TOO_MANY_REQUESTS {
                Outcome::warning(output)
            } else {
                Outcome::critical(output)
            }
        }
        Err(e) => Outcome::critical(e),
    }
}

/// `200 OK`, as Go's `Response.Status`.
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Go's name for a method in errors: `Get`, `Post`.
fn go_op(method: &str) -> String {
    let mut chars = method.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}

/// Sends the request (following redirects) and reads up to `max_output` bytes of the body.
async fn run(
    def: &CheckDefinition,
    target: &str,
    method_text: &str,
    deadline: Instant,
    max_output: usize,
    agent: Option<&tls::CheckTls>,
) -> Result<(StatusCode, Vec<u8>), String> {
    let op = go_op(method_text);
    let mut url = Url::parse(target).map_err(|e| format!("parse {target:?}: {e}"))?;
    let mut method =
        Method::from_bytes(method_text.as_bytes()).map_err(|_| format!("net/http: invalid method {method_text:?}"))?;

    let mut headers = HeaderMap::new();
    let mut host_override: Option<String> = None;
    for (k, values) in &def.header {
        if k.eq_ignore_ascii_case("host") {
            host_override = values.first().cloned();
            continue;
        }
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("net/http: invalid header field name {k:?}"))?;
        for v in values {
            let value =
                HeaderValue::from_str(v).map_err(|_| format!("net/http: invalid header field value for {k:?}"))?;
            headers.append(name.clone(), value);
        }
    }
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, HeaderValue::from_static("Consul Health Check"));
    }
    if !headers.contains_key(ACCEPT) {
        headers.insert(ACCEPT, HeaderValue::from_static("text/plain, text/*, */*"));
    }
    let mut body = def.body.clone().filter(|b| !b.is_empty());

    let mut redirects = 0;
    let mut resp = loop {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{op} {:?}: unsupported protocol scheme {:?}", url.as_str(), url.scheme()));
        }
        let hop = Hop::prepare(def, &url, host_override.as_deref(), deadline, agent)
            .await
            .map_err(|e| format!("{op} {:?}: {e}", url.as_str()))?;
        let mut req = hop.client.request(method.clone(), hop.url).headers(headers.clone());
        if let Some(h) = hop.host_header {
            req = req.header(HOST, h);
        }
        if let Some(b) = &body {
            req = req.body(b.clone());
        }
        let resp = match tokio::time::timeout_at(deadline, req.send()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(format!("{op} {:?}: {}", url.as_str(), describe(&e, &url))),
            Err(_) => {
                return Err(format!(
                    "{op} {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                    url.as_str()
                ))
            }
        };
        let status = resp.status();
        let follow = !def.disable_redirects
            && matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
            && resp.headers().contains_key(LOCATION);
        if !follow {
            break resp;
        }
        if redirects == MAX_REDIRECTS {
            return Err(format!("{op} {:?}: stopped after {MAX_REDIRECTS} redirects", url.as_str()));
        }
        redirects += 1;
        let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let next = url
            .join(&location)
            .map_err(|e| format!("{op} {:?}: failed to parse Location header {location:?}: {e}", url.as_str()))?;
        if matches!(status.as_u16(), 301..=303) {
            // Go's client: these turn into a GET (HEAD stays HEAD) without a body.
            if method != Method::GET && method != Method::HEAD {
                method = Method::GET;
            }
            body = None;
        }
        // A Host header survives only relative redirects; credentials only same-host ones.
        if Url::parse(&location).is_ok() {
            host_override = None;
        }
        if next.host_str() != url.host_str() {
            headers.remove(AUTHORIZATION);
            headers.remove(COOKIE);
            headers.remove("cookie2");
            headers.remove("www-authenticate");
        }
        url = next;
    };

    let status = resp.status();
    let mut out = Vec::new();
    while out.len() < max_output {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let room = max_output - out.len();
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            // End of body, a broken body or the deadline: report what arrived.
            _ => break,
        }
    }
    Ok((status, out))
}

/// One request's client, URL and `Host` header.
struct Hop {
    client: Client,
    url: Url,
    host_header: Option<String>,
}

impl Hop {
    async fn prepare(
        def: &CheckDefinition,
        url: &Url,
        host_override: Option<&str>,
        deadline: Instant,
        agent: Option<&tls::CheckTls>,
    ) -> Result<Hop, String> {
        let tls = tls::client_config(def.tls_skip_verify, &[b"http/1.1"], agent).map_err(|e| e.to_string())?;
        let mut builder = Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0);
        let host = url.host_str().unwrap_or_default().to_string();
        let host_ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        if host == "localhost" || host_ip.is_some_and(|ip| ip.is_loopback()) {
            // As Go's ProxyFromEnvironment: never proxy requests to this host.
            builder = builder.no_proxy();
        }
        let mut send_url = url.clone();
        let mut host_header = host_override.map(str::to_string);

        let sni = def.tls_server_name.as_deref().filter(|s| !s.is_empty());
        if let Some(name) = sni.filter(|n| url.scheme() == "https" && *n != host && n.parse::<IpAddr>().is_err()) {
            // Send `name` as SNI and verify the certificate against it, while connecting to the
            // URL's own addresses: address the URL by `name` and pin `name` to those addresses.
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs = match tokio::time::timeout_at(deadline, net::resolve("tcp", &format!("{host}:{port}"))).await {
                Ok(r) => r?,
                Err(_) => return Err(format!("dial tcp: lookup {host}: i/o timeout")),
            };
            send_url.set_host(Some(name)).map_err(|e| format!("invalid tls_server_name {name:?}: {e}"))?;
            builder = builder.resolve_to_addrs(name, &addrs).no_proxy();
            if host_header.is_none() {
                host_header = Some(match url.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                });
            }
        }
        let client = builder.build().map_err(|e| describe(&e, url))?;
        Ok(Hop { client, url: send_url, host_header })
    }
}

/// The cause of a failed request, as Go's client words it where it can.
fn describe(e: &reqwest::Error, url: &Url) -> String {
    let mut io_err = None;
    let mut innermost = None;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(r) = tls::find_rustls_error(s) {
            return format!("tls: {r}");
        }
        if let Some(mut io) = s.downcast_ref::<std::io::Error>() {
            // I/O errors may wrap I/O errors: the innermost tells what happened.
            while let Some(inner) = io.get_ref().and_then(|i| i.downcast_ref::<std::io::Error>()) {
                io = inner;
            }
            io_err = Some(io);
        }
        innermost = Some(s);
        source = s.source();
    }
    let host = url.host_str().unwrap_or_default();
    if e.is_connect() && chain_says(e, "dns error") {
        let why = io_err.map(net::lookup_error).unwrap_or_else(|| "no such host".into());
        return format!("dial tcp: lookup {host}: {why}");
    }
    if e.is_connect() {
        if let Some(io) = io_err {
            let port = url.port_or_known_default().unwrap_or(0);
            return format!("dial tcp {host}:{port}: connect: {}", net::io_error(io));
        }
    }
    match (io_err, innermost) {
        (Some(io), _) => net::io_error(io),
        (None, Some(s)) => s.to_string(),
        (None, None) => e.to_string(),
    }
}

/// Whether some error in `e`'s chain displays as `text`.
fn chain_says(e: &reqwest::Error, text: &str) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if s.to_string() == text {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::checks::CheckStatus;
    use legate_tls::test_support::TestTls;

    #[derive(Clone, Debug)]
    struct Seen {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Seen {
        fn header(&self, name: &str) -> Vec<&str> {
            self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
        }
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// A tiny HTTP/1.1 server: one request per connection, answers chosen by path.
    async fn server(tls: Option<TestTls>) -> (String, Log) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let log: Log = Default::default();
        let log2 = log.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let (log, tls) = (log2.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(tls) => {
                            if let Some(s) = tls.accept(s).await {
                                handle(s, log).await
                            }
                        }
                        None => handle(s, log).await,
                    }
                });
            }
        });
        (addr.to_string(), log)
    }

    async fn handle<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, log: Log) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap().split(' ');
        let (method, path) = (first.next().unwrap().to_string(), first.next().unwrap().to_string());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < len {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        let seen = Seen { method, path, headers, body: String::from_utf8_lossy(&body).to_string() };
        log.lock().unwrap().push(seen.clone());
        let (status, extra, text) = match seen.path.as_str() {
            "/ok" => ("200 OK", String::new(), "all good".to_string()),
            "/busy" => ("429 Too Many Requests", String::new(), "slow down".to_string()),
            "/fail" => ("500 Internal Server Error", String::new(), "boom".to_string()),
            "/redirect" => ("302 Found", "Location: /ok\r\n".to_string(), String::new()),
            "/loop" => ("302 Found", "Location: /loop\r\n".to_string(), String::new()),
            "/see-echo" => ("302 Found", "Location: /echo\r\n".to_string(), String::new()),
            "/keep-echo" => ("307 Temporary Redirect", "Location: /echo\r\n".to_string(), String::new()),
            "/echo" => ("200 OK", String::new(), format!("{} {}", seen.method, seen.body)),
            "/big" => ("200 OK", String::new(), "é".repeat(5000)),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            _ => ("404 Not Found", String::new(), "nope".to_string()),
        };
        let resp =
            format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{text}", text.len());
        let _ = s.write_all(resp.as_bytes()).await;
        let _ = s.shutdown().await;
    }

    fn def(url: String) -> CheckDefinition {
        CheckDefinition { http: Some(url), ..Default::default() }
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn statuses_and_output() {
        let (addr, log) = server(None).await;
        let url = format!("http://{addr}/ok");
        let o = probe(&def(url.clone()), T, 4096).await;
        assert_eq!(o, Outcome::passing(format!("HTTP GET {url}: 200 OK Output: all good")));
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.header("user-agent"), ["Consul Health Check"]);
        assert_eq!(seen.header("accept"), ["text/plain, text/*, */*"]);

        let url = format!("http://{addr}/busy");
        let o = probe(&def(url.clone()), T, 4096).await;
        assert_eq!(o, Outcome::warning(format!("HTTP GET {url}: 429 Too Many Requests Output: slow down")));

        let url = format!("http://{addr}/fail");
        let o = probe(&def(url.clone()), T, 4096).await;
        assert_eq!(o, Outcome::critical(format!("HTTP GET {url}: 500 Internal Server Error Output: boom")));
    }

    #[tokio::test]
    async fn method_headers_and_body() {
        let (addr, log) = server(None).await;
        let mut header = BTreeMap::new();
        header.insert("X-Multi".to_string(), vec!["a".to_string(), "b".to_string()]);
        header.insert("User-Agent".to_string(), vec!["custom".to_string()]);
        header.insert("Host".to_string(), vec!["svc.internal".to_string()]);
        let url = format!("http://{addr}/echo");
        let d = CheckDefinition {
            method: Some("POST".into()),
            header,
            body: Some("{\"ping\":1}".into()),
            ..def(url.clone())
        };
        let o = probe(&d, T, 4096).await;
        assert_eq!(o, Outcome::passing(format!("HTTP POST {url}: 200 OK Output: POST {{\"ping\":1}}")));
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(seen.header("x-multi"), ["a", "b"]);
        assert_eq!(seen.header("user-agent"), ["custom"]);
        assert_eq!(seen.header("host"), ["svc.internal"]);
        assert_eq!(seen.header("accept"), ["text/plain, text/*, */*"]);
    }

    #[tokio::test]
    async fn redirects() {
        let (addr, log) = server(None).await;
        let url = format!("http://{addr}/redirect");
        let o = probe(&def(url.clone()), T, 4096).await;
        assert_eq!(o, Outcome::passing(format!("HTTP GET {url}: 200 OK Output: all good")));
        assert_eq!(log.lock().unwrap().iter().map(|s| s.path.as_str()).collect::<Vec<_>>(), ["/redirect", "/ok"]);

        let d = CheckDefinition { disable_redirects: true, ..def(url.clone()) };
        let o = probe(&d, T, 4096).await;
        assert_eq!(o, Outcome::critical(format!("HTTP GET {url}: 302 Found Output: ")));

        let url = format!("http://{addr}/loop");
        let o = probe(&def(url.clone()), T, 4096).await;
        assert_eq!(o, Outcome::critical(format!("Get {url:?}: stopped after 10 redirects")));

        // 302 turns a POST into a GET without body; 307 keeps both.
        let post = |path: &str| CheckDefinition {
            method: Some("POST".into()),
            body: Some("data".into()),
            ..def(format!("http://{addr}{path}"))
        };
        let o = probe(&post("/see-echo"), T, 4096).await;
        assert!(o.output.ends_with("200 OK Output: GET "), "{}", o.output);
        let o = probe(&post("/keep-echo"), T, 4096).await;
        assert!(o.output.ends_with("200 OK Output: POST data"), "{}", o.output);
    }

    #[tokio::test]
    async fn timeout_is_critical() {
        let (addr, _) = server(None).await;
        let url = format!("http://{addr}/slow");
        let started = std::time::Instant::now();
        let o = probe(&def(url.clone()), Duration::from_millis(300), 4096).await;
        assert_eq!(
            o,
            Outcome::critical(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ))
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn connection_refused_is_critical() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/health");
        let o = probe(&def(url.clone()), T, 4096).await;
        assert_eq!(
            o,
            Outcome::critical(format!("Get {url:?}: dial tcp 127.0.0.1:{port}: connect: connection refused"))
        );
    }

    #[tokio::test]
    async fn unknown_host_is_critical() {
        let o = probe(&def("http://nohost.invalid/health".into()), T, 4096).await;
        assert_eq!(
            o,
            Outcome::critical("Get \"http://nohost.invalid/health\": dial tcp: lookup nohost.invalid: no such host")
        );
    }

    #[tokio::test]
    async fn bad_urls_are_critical() {
        let o = probe(&def("not a url".into()), T, 4096).await;
        assert_eq!(o.status, CheckStatus::Critical);
        assert!(o.output.starts_with("parse \"not a url\""), "{}", o.output);
        let o = probe(&def("ftp://127.0.0.1/x".into()), T, 4096).await;
        assert_eq!(o, Outcome::critical("Get \"ftp://127.0.0.1/x\": unsupported protocol scheme \"ftp\""));
    }

    #[tokio::test]
    async fn body_is_capped_on_a_char_boundary() {
        let (addr, _) = server(None).await;
        let o = super::super::probe(&def(format!("http://{addr}/big")), T, 101, None).await;
        assert_eq!(o.status, CheckStatus::Passing);
        assert!(o.output.len() <= 101, "{}", o.output.len());
        assert!(o.output.ends_with('é'), "{}", o.output);
        assert!(!o.output.contains('\u{FFFD}'), "{}", o.output);
    }

    #[tokio::test]
    async fn https_verification_skip_and_server_name() {
        let tls = TestTls::new(&[]);
        let (addr, log) = server(Some(tls.clone())).await;
        let url = format!("https://{addr}/ok");

        let o = probe(&def(url.clone()), T, 4096).await;
        assert_eq!(o.status, CheckStatus::Critical, "{}", o.output);
        assert!(o.output.starts_with(&format!("Get {url:?}: tls: invalid peer certificate")), "{}", o.output);
        assert!(log.lock().unwrap().is_empty());

        let d = CheckDefinition { tls_skip_verify: true, ..def(url.clone()) };
        let o = probe(&d, T, 4096).await;
        assert_eq!(o, Outcome::passing(format!("HTTP GET {url}: 200 OK Output: all good")));
        // No SNI for an IP address.
        assert_eq!(tls.sni(1).await, None);

        let d = CheckDefinition {
            tls_skip_verify: true,
            tls_server_name: Some("legate.test".into()),
            ..def(format!("https://{addr}/redirect"))
        };
        let o = probe(&d, T, 4096).await;
        assert_eq!(o.status, CheckStatus::Passing, "{}", o.output);
        // Both hops (the redirect and its target) sent the override.
        assert_eq!(tls.sni(2).await.as_deref(), Some("legate.test"));
        assert_eq!(tls.sni(3).await.as_deref(), Some("legate.test"));
        let seen = log.lock().unwrap().last().cloned().unwrap();
        assert_eq!(seen.path, "/ok");
        assert_eq!(seen.header("host"), [addr.as_str()]);
    }
}
