//! Consul's `tls` block: `tls.defaults` and the per-listener stanzas `tls.https`,
//! `tls.internal_rpc` and `tls.grpc` that override it key by key, and the old top-level keys
//! (`ca_file`, `verify_incoming`, ...) folded into it with a deprecation warning.

use serde::{Deserialize, Serialize};
use serde_json::{Map as JsonMap, Value as Json};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub defaults: TlsStanza,
    pub https: TlsStanza,
    pub internal_rpc: TlsStanza,
    pub grpc: TlsStanza,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsStanza {
    pub ca_file: Option<String>,
    pub ca_path: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub tls_min_version: Option<String>,
    /// Comma-separated IANA names of TLS 1.2 suites.
    pub tls_cipher_suites: Option<String>,
    pub verify_incoming: Option<bool>,
    pub verify_outgoing: Option<bool>,
    pub verify_server_hostname: Option<bool>,
    pub use_auto_cert: Option<bool>,
}

/// The listeners a stanza configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Https,
    InternalRpc,
}

impl Listener {
    pub fn key(self) -> &'static str {
        match self {
            Listener::Https => "tls.https",
            Listener::InternalRpc => "tls.internal_rpc",
        }
    }
}

impl TlsConfig {
    fn stanza(&self, l: Listener) -> &TlsStanza {
        match l {
            Listener::Https => &self.https,
            Listener::InternalRpc => &self.internal_rpc,
        }
    }

    /// One listener's settings: its stanza's keys, else `tls.defaults`'.
    pub fn settings(&self, l: Listener) -> legate_tls::Settings {
        let (s, d) = (self.stanza(l), &self.defaults);
        let path = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone()).map(Into::into);
        let flag = |a: Option<bool>, b: Option<bool>| a.or(b).unwrap_or(false);
        let verify_server_hostname = l == Listener::InternalRpc && flag(s.verify_server_hostname, None);
        legate_tls::Settings {
            ca_file: path(&s.ca_file, &d.ca_file),
            ca_path: path(&s.ca_path, &d.ca_path),
            cert_file: path(&s.cert_file, &d.cert_file),
            key_file: path(&s.key_file, &d.key_file),
            verify_incoming: flag(s.verify_incoming, d.verify_incoming),
            // verify_server_hostname implies verify_outgoing (Consul, CVE-2018-19653).
            verify_outgoing: flag(s.verify_outgoing, d.verify_outgoing) || verify_server_hostname,
            verify_server_hostname,
            min_version: s.tls_min_version.clone().or_else(|| d.tls_min_version.clone()),
            cipher_suites: s
                .tls_cipher_suites
                .as_ref()
                .or(d.tls_cipher_suites.as_ref())
                .map(|c| c.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        }
    }

    /// Keys Consul refuses in a stanza, as (key, reason).
    pub fn misplaced(&self) -> Option<(String, String)> {
        for (name, s) in [("defaults", &self.defaults), ("https", &self.https), ("grpc", &self.grpc)] {
            if s.verify_server_hostname.is_some() {
                return Some((
                    format!("tls.{name}.verify_server_hostname"),
                    "verify_server_hostname is only valid in the tls.internal_rpc stanza".into(),
                ));
            }
        }
        if self.grpc.verify_outgoing.is_some() {
            return Some((
                "tls.grpc.verify_outgoing".into(),
                "verify_outgoing is not valid in the tls.grpc stanza".into(),
            ));
        }
        for (name, s) in [("defaults", &self.defaults), ("https", &self.https), ("internal_rpc", &self.internal_rpc)] {
            if s.use_auto_cert.is_some() {
                return Some((
                    format!("tls.{name}.use_auto_cert"),
                    "use_auto_cert is only valid in the tls.grpc stanza".into(),
                ));
            }
        }
        None
    }
}

/// The old top-level keys and where they live now.
const DEPRECATED: &[(&str, &str, &str)] = &[
    ("ca_file", "defaults", "ca_file"),
    ("ca_path", "defaults", "ca_path"),
    ("cert_file", "defaults", "cert_file"),
    ("key_file", "defaults", "key_file"),
    ("tls_cipher_suites", "defaults", "tls_cipher_suites"),
    ("tls_min_version", "defaults", "tls_min_version"),
    ("verify_incoming", "defaults", "verify_incoming"),
    ("verify_outgoing", "defaults", "verify_outgoing"),
    ("verify_incoming_rpc", "internal_rpc", "verify_incoming"),
    ("verify_incoming_https", "https", "verify_incoming"),
    ("verify_server_hostname", "internal_rpc", "verify_server_hostname"),
];

/// Moves one source's old top-level TLS keys into its `tls` block (a key the block already
/// sets wins), warning about each, as Consul does.
pub(crate) fn fold_deprecated(name: &str, data: &mut JsonMap<String, Json>, warnings: &mut Vec<String>) {
    if data.remove("tls_prefer_server_cipher_suites").is_some() {
        warnings
            .push(format!("{name}: The 'tls_prefer_server_cipher_suites' field is deprecated and will be ignored."));
    }
    for (old, stanza, key) in DEPRECATED {
        let Some(value) = data.remove(*old) else { continue };
        warnings.push(format!("{name}: The '{old}' field is deprecated. Use the 'tls.{stanza}.{key}' field instead."));
        let tls = data.entry("tls").or_insert_with(|| Json::Object(JsonMap::new()));
        let Json::Object(tls) = tls else { continue };
        let block = tls.entry(*stanza).or_insert_with(|| Json::Object(JsonMap::new()));
        if let Json::Object(block) = block {
            block.entry(*key).or_insert(value);
        }
    }
    if let Some(Json::Object(tls)) = data.get("tls") {
        if tls.contains_key("grpc") {
            warnings.push(format!(
                "{name}: config key \"tls.grpc\" is accepted for Consul compatibility but has no effect in Legate (no gRPC port)"
            ));
        }
    }
    // The old tls_min_version values (tls10 ... tls13).
    if let Some(Json::Object(tls)) = data.get_mut("tls") {
        for (stanza, block) in tls.iter_mut() {
            let Some(Json::String(v)) = block.get_mut("tls_min_version") else { continue };
            let new = match v.as_str() {
                "tls10" => "TLSv1_0",
                "tls11" => "TLSv1_1",
                "tls12" => "TLSv1_2",
                "tls13" => "TLSv1_3",
                _ => continue,
            };
            warnings.push(format!(
                "{name}: tls.{stanza}.tls_min_version: '{v}' is deprecated, please specify '{new}' instead"
            ));
            *v = new.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_keys_move_into_the_block_and_the_block_wins() {
        let mut data: JsonMap<String, Json> = serde_json::from_str(
            r#"{"ca_file":"old.pem","verify_incoming_rpc":true,"verify_server_hostname":true,
                "tls":{"defaults":{"ca_file":"new.pem","tls_min_version":"tls13"}}}"#,
        )
        .unwrap();
        let mut warnings = Vec::new();
        fold_deprecated("a.json", &mut data, &mut warnings);
        let tls: TlsConfig = serde_json::from_value(data["tls"].clone()).unwrap();
        assert_eq!(tls.defaults.ca_file.as_deref(), Some("new.pem"), "the new key wins");
        assert_eq!(tls.defaults.tls_min_version.as_deref(), Some("TLSv1_3"));
        assert_eq!(tls.internal_rpc.verify_incoming, Some(true));
        assert!(!data.contains_key("ca_file"));
        assert!(warnings.iter().any(|w| w.contains("'ca_file' field is deprecated")), "{warnings:?}");
        let rpc = tls.settings(Listener::InternalRpc);
        assert!(rpc.verify_incoming && rpc.verify_server_hostname && rpc.verify_outgoing, "{rpc:?}");
        let https = tls.settings(Listener::Https);
        assert!(!https.verify_incoming && !https.verify_server_hostname);
        assert_eq!(https.ca_file.as_deref(), Some(std::path::Path::new("new.pem")), "inherited from defaults");
    }

    #[test]
    fn stanza_keys_consul_refuses_are_named() {
        let tls = TlsConfig {
            https: TlsStanza { verify_server_hostname: Some(true), ..Default::default() },
            ..Default::default()
        };
        assert_eq!(tls.misplaced().unwrap().0, "tls.https.verify_server_hostname");
        assert!(TlsConfig::default().misplaced().is_none());
    }
}
