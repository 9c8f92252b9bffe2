//! Write Legate plugins in Rust.
//!
//! A plugin is a WASM component built for `wasm32-wasip2` against the WIT package
//! `legate:plugin@0.1.0` (`sdk/wit`). This crate generates the bindings and adds a small,
//! typed layer:
//!
//! ```ignore
//! use legate_plugin::{export_check, Check, CheckContext, CheckResult, Config};
//!
//! struct Ping;
//!
//! impl Check for Ping {
//!     fn validate(config: &Config) -> Result<(), String> {
//!         config.require("url").map(|_| ())
//!     }
//!     fn check(_ctx: &CheckContext, config: &Config) -> Result<CheckResult, String> {
//!         let resp = legate_plugin::http::get(config.require("url")?, 0)?;
//!         Ok(if resp.status == 200 { CheckResult::passing("up") } else { CheckResult::critical("down") })
//!     }
//! }
//!
//! export_check!(Ping);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` (crate-type `cdylib`) and point a
//! check's `wasm.plugin` at `target/wasm32-wasip2/release/<name>.wasm`. Event handlers
//! implement [`Handler`] and use [`export_handler!`].
//!
//! What a plugin may reach is granted by its definition: `allow_hosts` for [`http`] and
//! [`net`], `kv_read_prefixes` for [`kv`], `files` for `std::fs` (WASI preopens). Raw
//! sockets (`std::net`) are always denied: use [`net`].

#[doc(hidden)]
pub mod check_world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "check",
        pub_export_macro: true,
        export_macro_name: "__legate_export_check_world",
        default_bindings_module: "legate_plugin::check_world",
        generate_all,
    });
}

#[doc(hidden)]
pub mod handler_world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "event-handler",
        pub_export_macro: true,
        export_macro_name: "__legate_export_handler_world",
        default_bindings_module: "legate_plugin::handler_world",
        with: {
            "legate:plugin/types@0.1.0": crate::check_world::legate::plugin::types,
            "legate:plugin/log@0.1.0": crate::check_world::legate::plugin::log,
            "legate:plugin/http@0.1.0": crate::check_world::legate::plugin::http,
            "legate:plugin/net@0.1.0": crate::check_world::legate::plugin::net,
            "legate:plugin/kv@0.1.0": crate::check_world::legate::plugin::kv,
            "legate:plugin/host@0.1.0": crate::check_world::legate::plugin::host,
        },
    });
}

pub use check_world::legate::plugin::types::{CheckContext, CheckResult, CheckStatus, Event, UserEvent, WatchResult};

/// The raw generated host interfaces.
pub mod raw {
    pub use crate::check_world::legate::plugin::{host, http, kv, log, net};
}

impl CheckResult {
    pub fn passing(output: impl Into<String>) -> CheckResult {
        CheckResult { status: CheckStatus::Passing, output: output.into() }
    }
    pub fn warning(output: impl Into<String>) -> CheckResult {
        CheckResult { status: CheckStatus::Warning, output: output.into() }
    }
    pub fn critical(output: impl Into<String>) -> CheckResult {
        CheckResult { status: CheckStatus::Critical, output: output.into() }
    }
}

/// The definition's `args`, as string pairs (non-string JSON values arrive as JSON text).
#[derive(Clone, Debug, Default)]
pub struct Config(pub Vec<(String, String)>);

impl Config {
    /// The value of `key` (the last one when repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming it.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key).filter(|v| !v.is_empty()).ok_or_else(|| format!("missing required arg {key:?}"))
    }

    /// `key` parsed, or `default` when absent; an error names the key and the bad value.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None | Some("") => Ok(default),
            Some(v) => v.trim_matches('"').parse().map_err(|_| format!("arg {key:?}: cannot parse {v:?}")),
        }
    }

    /// `key` parsed, None when absent.
    pub fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.trim_matches('"').parse().map(Some).map_err(|_| format!("arg {key:?}: cannot parse {v:?}")),
        }
    }

    /// Whether every key is one of `known` (plugins reject typos at registration).
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(format!("unknown arg {k:?} (known: {})", known.join(", "))),
            None => Ok(()),
        }
    }
}

/// A health-check plugin.
pub trait Check {
    /// Runs at registration: reject bad args with a message (the agent answers 400 with it).
    fn validate(_config: &Config) -> Result<(), String> {
        Ok(())
    }
    /// One run. Err(text) is reported as critical with that text.
    fn check(ctx: &CheckContext, config: &Config) -> Result<CheckResult, String>;
}

/// An event-handler plugin (watch results and user events).
pub trait Handler {
    fn validate(_config: &Config) -> Result<(), String> {
        Ok(())
    }
    /// Ok(text) is logged by the agent; Err(text) is logged as a failure.
    fn handle(config: &Config, event: &Event) -> Result<String, String>;
}

/// Exports a [`Check`] implementation as the component's `check` world.
#[macro_export]
macro_rules! export_check {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __LegateCheckExport;
        impl $crate::check_world::Guest for __LegateCheckExport {
            fn validate(config: ::std::vec::Vec<(String, String)>) -> Result<(), String> {
                <$t as $crate::Check>::validate(&$crate::Config(config))
            }
            fn check(
                ctx: $crate::CheckContext,
                config: ::std::vec::Vec<(String, String)>,
            ) -> Result<$crate::CheckResult, String> {
                <$t as $crate::Check>::check(&ctx, &$crate::Config(config))
            }
        }
        $crate::check_world::__legate_export_check_world!(__LegateCheckExport);
        $crate::__legate_version_section!();
    };
}

/// Exports a [`Handler`] implementation as the component's `event-handler` world.
#[macro_export]
macro_rules! export_handler {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __LegateHandlerExport;
        impl $crate::handler_world::Guest for __LegateHandlerExport {
            fn validate(config: ::std::vec::Vec<(String, String)>) -> Result<(), String> {
                <$t as $crate::Handler>::validate(&$crate::Config(config))
            }
            fn handle(config: ::std::vec::Vec<(String, String)>, event: $crate::Event) -> Result<String, String> {
                <$t as $crate::Handler>::handle(&$crate::Config(config), &event)
            }
        }
        $crate::handler_world::__legate_export_handler_world!(__LegateHandlerExport);
        $crate::__legate_version_section!();
    };
}

/// Writes the plugin crate's version (`CARGO_PKG_VERSION`, expanded in the plugin's crate) as a
/// `"version"` custom section: what `legate plugin push` takes as the version when `-version`
/// is not given (the section `wasm-tools metadata add --version` writes).
#[doc(hidden)]
#[macro_export]
macro_rules! __legate_version_section {
    () => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[link_section = "version"]
        #[used]
        static __LEGATE_PLUGIN_VERSION: [u8; env!("CARGO_PKG_VERSION").len()] =
            $crate::__version_bytes::<{ env!("CARGO_PKG_VERSION").len() }>(env!("CARGO_PKG_VERSION"));
    };
}

/// The bytes of `s` as an array of its length (for the version section).
#[doc(hidden)]
pub const fn __version_bytes<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N && i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Agent log lines, tagged with the plugin and check by the host.
pub mod log {
    use crate::raw::log::{log, Level};
    pub fn debug(msg: &str) {
        log(Level::Debug, msg)
    }
    pub fn info(msg: &str) {
        log(Level::Info, msg)
    }
    pub fn warn(msg: &str) {
        log(Level::Warn, msg)
    }
    pub fn error(msg: &str) {
        log(Level::Error, msg)
    }
}

/// Facts about the agent and the call.
pub mod host {
    pub use crate::raw::host::{agent_version, datacenter, node_name, now_ms, remaining_ms};
}

/// Outbound HTTP through the host (only `allow_hosts`).
pub mod http {
    pub use crate::raw::http::{send, HttpError, Method, Request, Response};

    /// The error as a sentence.
    pub fn describe(e: &HttpError) -> String {
        match e {
            HttpError::Denied(s) => format!("denied: {s}"),
            HttpError::InvalidUrl(s) => format!("invalid url: {s}"),
            HttpError::Timeout => "timed out".into(),
            HttpError::Connect(s) => format!("connect: {s}"),
            HttpError::Other(s) => s.clone(),
        }
    }

    /// A request with no headers and no body.
    pub fn request(method: Method, url: &str, timeout_ms: u32) -> Request {
        Request { method, url: url.to_string(), headers: Vec::new(), body: None, timeout_ms, tls_skip_verify: false }
    }

    /// GET `url`; errors as text.
    pub fn get(url: &str, timeout_ms: u32) -> Result<Response, String> {
        send(&request(Method::Get, url, timeout_ms)).map_err(|e| describe(&e))
    }
}

/// Raw TCP and TLS through the host (only `allow_hosts`).
pub mod net {
    pub use crate::raw::net::{tcp_close, tcp_connect, tcp_recv, tcp_send, tls_certificates, NetError};

    /// The error as a sentence.
    pub fn describe(e: &NetError) -> String {
        match e {
            NetError::Denied(s) => format!("denied: {s}"),
            NetError::Timeout => "timed out".into(),
            NetError::Refused => "connection refused".into(),
            NetError::Resolve(s) => format!("resolve: {s}"),
            NetError::Closed => "connection closed".into(),
            NetError::UnknownConnection => "unknown connection".into(),
            NetError::Other(s) => s.clone(),
        }
    }

    /// A connection closed when dropped.
    pub struct Conn(pub u32);

    impl Conn {
        pub fn connect(host: &str, port: u16, timeout_ms: u32) -> Result<Conn, NetError> {
            tcp_connect(host, port, timeout_ms).map(Conn)
        }
        pub fn send(&self, data: &[u8]) -> Result<(), NetError> {
            tcp_send(self.0, data)
        }
        pub fn recv(&self, max: u32, timeout_ms: u32) -> Result<Vec<u8>, NetError> {
            tcp_recv(self.0, max, timeout_ms)
        }
        /// Reads until `done(buffer)` or the peer closes.
        pub fn recv_until(&self, timeout_ms: u32, done: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>, NetError> {
            let mut buf = Vec::new();
            while !done(&buf) {
                let chunk = self.recv(64 * 1024, timeout_ms)?;
                if chunk.is_empty() {
                    break;
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(buf)
        }
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            tcp_close(self.0)
        }
    }
}

/// Read-only KV through the host (only `kv_read_prefixes`).
pub mod kv {
    pub use crate::raw::kv::{get, list_keys, Entry, KvError};
}

/// An event as the JSON object handlers usually forward: `{"Type":"user",...}` for user
/// events (Consul's event fields, payload base64-free as text when UTF-8) or
/// `{"Type":"watch","WatchType":..,"Index":..,"Data":<the watch JSON>}`.
pub fn event_json(event: &Event) -> serde_json::Value {
    match event {
        Event::User(u) => serde_json::json!({
            "Type": "user",
            "ID": u.id,
            "Name": u.name,
            "Payload": String::from_utf8_lossy(&u.payload),
            "LTime": u.ltime,
            "NodeFilter": u.node_filter,
            "ServiceFilter": u.service_filter,
            "TagFilter": u.tag_filter,
        }),
        Event::Watch(w) => serde_json::json!({
            "Type": "watch",
            "WatchType": w.watch_type,
            "Index": w.index,
            "Data": serde_json::from_str::<serde_json::Value>(&w.payload_json).unwrap_or(serde_json::Value::Null),
        }),
    }
}
