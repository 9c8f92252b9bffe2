//! TLS that a reload can replace: the agent builds the configs from its settings at start and
//! again on every reload (SIGHUP or a changed config file), and each new connection takes the
//! configs current when it starts. A broken new config is refused and the running one kept.

use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};

use crate::files::TlsError;
use crate::settings::{certificate_names, Settings};

/// A value replaced whole, read by every new connection; its generation counts the
/// replacements, so that long-lived connections can tell they were made under an older one.
pub struct Live<T>(RwLock<Arc<T>>, std::sync::atomic::AtomicU64);

impl<T> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live(..)")
    }
}

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(RwLock::new(Arc::new(value)), std::sync::atomic::AtomicU64::new(0))
    }

    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The value and the generation it belongs to.
    pub fn get_with_generation(&self) -> (Arc<T>, u64) {
        let guard = self.0.read().unwrap_or_else(|p| p.into_inner());
        (guard.clone(), self.generation())
    }

    pub fn generation(&self) -> u64 {
        self.1.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn set(&self, value: T) {
        let mut guard = self.0.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(value);
        self.1.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// TLS on the server RPC port and on the agent's outgoing RPC (`tls.internal_rpc`).
#[derive(Default)]
pub struct RpcTls {
    /// Accepts TLS connections (a certificate is configured).
    pub server: Option<Arc<ServerConfig>>,
    /// Connects with TLS (`verify_outgoing`).
    pub client: Option<Arc<ClientConfig>>,
    /// Plaintext connections are refused.
    pub verify_incoming: bool,
    /// Outgoing: the server's certificate must name [`RpcTls::server_name`]; incoming (with
    /// `verify_incoming`): a connection sending server-only calls (Raft, raw writes) must
    /// present a certificate that names it.
    pub verify_server_hostname: bool,
    /// `server.<datacenter>.<domain>`.
    pub server_name: String,
    /// The DNS domain (servers of another datacenter are `server.<dc>.<domain>`).
    pub domain: String,
}

impl RpcTls {
    /// No TLS at all.
    pub fn plain() -> RpcTls {
        RpcTls::default()
    }

    pub fn new(s: &Settings, datacenter: &str, domain: &str) -> Result<RpcTls, TlsError> {
        Ok(RpcTls {
            server: s.server_config(&[])?,
            client: s.outgoing_config()?,
            verify_incoming: s.verify_incoming,
            verify_server_hostname: s.verify_server_hostname,
            server_name: format!("server.{datacenter}.{}", domain.trim_end_matches('.')),
            domain: domain.trim_end_matches('.').to_string(),
        })
    }

    /// The name an outgoing connection to `ip` verifies and sends: a server of this
    /// datacenter, or of `datacenter` (a call to another one).
    pub fn connect_name(&self, ip: std::net::IpAddr, datacenter: Option<&str>) -> ServerName<'static> {
        if self.verify_server_hostname {
            let name = match datacenter {
                Some(dc) => format!("server.{dc}.{}", self.domain),
                None => self.server_name.clone(),
            };
            if let Ok(name) = ServerName::try_from(name) {
                return name;
            }
        }
        ServerName::IpAddress(ip.into())
    }

    /// Whether a peer that presented `certs` may make server-only calls: always, unless both
    /// `verify_incoming` and `verify_server_hostname` are on (Consul's AuthorizeServerConn).
    pub fn peer_is_server(&self, certs: Option<&[CertificateDer<'_>]>) -> bool {
        !(self.verify_incoming && self.verify_server_hostname) || certificate_names(certs, &self.server_name)
    }
}
