//! TCP protocol check: speaks enough of a protocol to tell a live server from an open port.
//!
//! Args: protocol (`redis`, `postgres`, `banner`), host (required), port (default per
//! protocol), and
//! - redis: `password` (sends AUTH first); PING must answer +PONG. `-LOADING` is warning.
//! - postgres: `user` (default postgres), `database`; sends SSLRequest, then a StartupMessage
//!   when the server declines TLS. Any authentication request (or an auth error) means the
//!   server accepts connections (pg_isready's rule); SQLSTATE 57P03 ("starting up") is
//!   critical, 53300 (too many connections) warning.
//! - banner: `expect` (prefix of the first line the server sends), `send` (optional text to
//!   send first).

use legate_plugin::net::{self, Conn};
use legate_plugin::{export_check, Check, CheckContext, CheckResult, Config};

struct TcpProtocol;

fn default_port(protocol: &str) -> Option<u16> {
    match protocol {
        "redis" => Some(6379),
        "postgres" => Some(5432),
        _ => None,
    }
}

fn target(config: &Config) -> Result<(String, String, u16), String> {
    let protocol = config.require("protocol")?.to_ascii_lowercase();
    if !matches!(protocol.as_str(), "redis" | "postgres" | "banner") {
        return Err(format!("arg \"protocol\": {protocol:?} is not one of redis, postgres, banner"));
    }
    let host = config.require("host")?.to_string();
    let port = match config.parse::<u16>("port")? {
        Some(p) => p,
        None => default_port(&protocol).ok_or("arg \"port\" is required for protocol banner")?,
    };
    Ok((protocol, host, port))
}

fn resp_line(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w == b"\r\n")
}

fn redis(conn: &Conn, config: &Config) -> Result<CheckResult, String> {
    let cmd = |args: &[&str]| {
        let mut s = format!("*{}\r\n", args.len());
        for a in args {
            s.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s
    };
    if let Some(pw) = config.get("password") {
        conn.send(cmd(&["AUTH", pw]).as_bytes()).map_err(|e| net::describe(&e))?;
        let r = conn.recv_until(0, resp_line).map_err(|e| net::describe(&e))?;
        if !r.starts_with(b"+OK") {
            return Ok(CheckResult::critical(format!("AUTH failed: {}", String::from_utf8_lossy(&r).trim())));
        }
    }
    conn.send(cmd(&["PING"]).as_bytes()).map_err(|e| net::describe(&e))?;
    let r = conn.recv_until(0, resp_line).map_err(|e| net::describe(&e))?;
    let line = String::from_utf8_lossy(&r).trim().to_string();
    Ok(if line == "+PONG" {
        CheckResult::passing("redis: PONG")
    } else if line.starts_with("-LOADING") {
        CheckResult::warning(format!("redis: loading the dataset ({line})"))
    } else if line.is_empty() {
        CheckResult::critical("redis: connection closed without an answer")
    } else {
        CheckResult::critical(format!("redis: unexpected answer {line:?}"))
    })
}

/// The fields of a PostgreSQL ErrorResponse body: (code, message).
fn pg_error(body: &[u8]) -> (String, String) {
    let (mut code, mut msg) = (String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        match field.first() {
            Some(b'C') => code = String::from_utf8_lossy(&field[1..]).into_owned(),
            Some(b'M') => msg = String::from_utf8_lossy(&field[1..]).into_owned(),
            _ => {}
        }
    }
    (code, msg)
}

fn postgres(conn: &Conn, config: &Config) -> Result<CheckResult, String> {
    // SSLRequest: length 8, code 80877103.
    conn.send(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).map_err(|e| net::describe(&e))?;
    let r = conn.recv(1, 0).map_err(|e| net::describe(&e))?;
    match r.first() {
        Some(b'S') => return Ok(CheckResult::passing("postgres: accepting connections (TLS offered)")),
        Some(b'N') => {}
        Some(b'E') => return Ok(CheckResult::critical("postgres: error answering SSLRequest")),
        Some(other) => return Ok(CheckResult::critical(format!("postgres: unexpected answer byte 0x{other:02x}"))),
        None => return Ok(CheckResult::critical("postgres: connection closed")),
    }
    let user = config.get("user").unwrap_or("postgres");
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes()); // protocol 3.0
    for (k, v) in [("user", user), ("database", config.get("database").unwrap_or(user))] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    conn.send(&msg).map_err(|e| net::describe(&e))?;
    let r = conn
        .recv_until(0, |b| b.len() >= 5 && b.len() > u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize)
        .map_err(|e| net::describe(&e))?;
    match r.first() {
        Some(b'R') => Ok(CheckResult::passing("postgres: accepting connections")),
        Some(b'E') => {
            let (code, message) = pg_error(r.get(5..).unwrap_or_default());
            Ok(match code.as_str() {
                "57P03" => CheckResult::critical(format!("postgres: rejecting connections: {message}")),
                "53300" => CheckResult::warning(format!("postgres: {message}")),
                _ => CheckResult::passing(format!("postgres: accepting connections ({code} {message})")),
            })
        }
        Some(other) => Ok(CheckResult::critical(format!("postgres: unexpected message type 0x{other:02x}"))),
        None => Ok(CheckResult::critical("postgres: connection closed during startup")),
    }
}

fn banner(conn: &Conn, config: &Config) -> Result<CheckResult, String> {
    if let Some(s) = config.get("send") {
        conn.send(s.replace("\\r\\n", "\r\n").as_bytes()).map_err(|e| net::describe(&e))?;
    }
    let r = conn.recv_until(0, |b| b.contains(&b'\n')).map_err(|e| net::describe(&e))?;
    let line = String::from_utf8_lossy(&r).lines().next().unwrap_or("").trim().to_string();
    match config.get("expect") {
        Some(want) if !line.starts_with(want) => {
            Ok(CheckResult::critical(format!("banner {line:?} does not start with {want:?}")))
        }
        _ => Ok(CheckResult::passing(format!("banner: {line}"))),
    }
}

impl Check for TcpProtocol {
    fn validate(config: &Config) -> Result<(), String> {
        config.only(&["protocol", "host", "port", "password", "user", "database", "expect", "send", "timeout_ms"])?;
        config.parse::<u32>("timeout_ms")?;
        target(config).map(|_| ())
    }

    fn check(_ctx: &CheckContext, config: &Config) -> Result<CheckResult, String> {
        let (protocol, host, port) = target(config)?;
        let conn = Conn::connect(&host, port, config.parse_or("timeout_ms", 0)?)
            .map_err(|e| format!("{host}:{port}: {}", net::describe(&e)))?;
        let r = match protocol.as_str() {
            "redis" => redis(&conn, config),
            "postgres" => postgres(&conn, config),
            _ => banner(&conn, config),
        };
        r.map_err(|e| format!("{host}:{port}: {e}"))
    }
}

export_check!(TcpProtocol);
