//! A check that tries what a plugin is not granted, for testing the sandbox: reading a file
//! (`read_file`), opening a raw socket (`connect`), calling `http` to a URL (`http_url`).
//! Each attempt's result goes into the output; the check is critical when any attempt
//! succeeded that `expect_denied` says must fail, passing when every one was refused.

use legate_plugin::{export_check, http, Check, CheckContext, CheckResult, Config};

struct SandboxProbe;

impl Check for SandboxProbe {
    fn validate(config: &Config) -> Result<(), String> {
        config.only(&["read_file", "connect", "http_url"])
    }

    fn check(_ctx: &CheckContext, config: &Config) -> Result<CheckResult, String> {
        let mut report = Vec::new();
        let mut escaped = false;
        if let Some(p) = config.get("read_file") {
            match std::fs::read(p) {
                Ok(b) => {
                    escaped = true;
                    report.push(format!("read {p}: {} bytes", b.len()));
                }
                Err(e) => report.push(format!("read {p}: denied ({e})")),
            }
        }
        if let Some(a) = config.get("connect") {
            match std::net::TcpStream::connect(a) {
                Ok(_) => {
                    escaped = true;
                    report.push(format!("connect {a}: connected"));
                }
                Err(e) => report.push(format!("connect {a}: denied ({e})")),
            }
        }
        if let Some(u) = config.get("http_url") {
            match http::get(u, 0) {
                Ok(r) => {
                    escaped = true;
                    report.push(format!("http {u}: HTTP {}", r.status));
                }
                Err(e) => report.push(format!("http {u}: {e}")),
            }
        }
        let out = report.join("; ");
        Ok(if escaped { CheckResult::critical(format!("sandbox escape: {out}")) } else { CheckResult::passing(out) })
    }
}

export_check!(SandboxProbe);
