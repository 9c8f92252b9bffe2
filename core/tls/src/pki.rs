//! Certificates the way `consul tls` makes them: a CA, and server, client and CLI certificates
//! it signs, ECDSA P-256 keys. The names are what agents check: a server certificate names
//! `server.<dc>.<domain>` (what `verify_server_hostname` requires), a client certificate
//! `client.<dc>.<domain>`, a CLI certificate `cli.<dc>.<domain>` and is good for client
//! authentication only.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::files::TlsError;

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// What `tls ca create` takes.
#[derive(Clone, Debug)]
pub struct CaRequest {
    pub domain: String,
    pub days: u32,
    /// Restrict the CA to `domain`, `localhost` and `additional_constraints`.
    pub name_constraint: bool,
    pub additional_constraints: Vec<String>,
    /// The subject's common name; `Consul Agent CA <serial>` when None.
    pub common_name: Option<String>,
}

/// The kinds of `tls cert create`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
    Cli,
}

impl Kind {
    /// The word in file names: `dc1-server-consul-0.pem`.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Cli => "cli",
        }
    }
}

/// What `tls cert create` takes.
#[derive(Clone, Debug)]
pub struct CertRequest {
    pub kind: Kind,
    pub dc: String,
    pub domain: String,
    pub days: u32,
    /// Server certificates: also name `<node>.server.<dc>.<domain>`.
    pub node: Option<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl CertRequest {
    /// The name the certificate is for, also its common name.
    pub fn name(&self) -> String {
        match self.kind {
            Kind::Server => format!("server.{}.{}", self.dc, self.domain),
            Kind::Client => format!("client.{}.{}", self.dc, self.domain),
            Kind::Cli => format!("cli.{}.{}", self.dc, self.domain),
        }
    }
}

fn invalid(what: &str, e: rcgen::Error) -> TlsError {
    TlsError::Invalid(format!("{what}: {e}"))
}

/// A random positive serial number, also shown in the CA's name.
fn serial() -> (SerialNumber, u128) {
    let mut bytes = [0u8; 16];
    ring_random(&mut bytes);
    bytes[0] &= 0x7f;
    (SerialNumber::from_slice(&bytes), u128::from_be_bytes(bytes))
}

fn ring_random(out: &mut [u8]) {
    use rustls::crypto::ring::default_provider;
    // The provider's secure random source (ring's SystemRandom).
    default_provider().secure_random.fill(out).expect("the system's random source");
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // A minute back, so that a clock a little behind still accepts the certificate at once.
    params.not_before = now - Duration::minutes(1);
    params.not_after = now + Duration::days(i64::from(days));
}

fn dns(name: &str) -> Result<SanType, TlsError> {
    Ok(SanType::DnsName(name.to_string().try_into().map_err(|e| invalid(&format!("DNS name {name:?}"), e))?))
}

/// A new CA: a self-signed certificate allowed to sign others.
pub fn create_ca(req: &CaRequest) -> Result<Pem, TlsError> {
    let key = KeyPair::generate().map_err(|e| invalid("key", e))?;
    let mut params = CertificateParams::default();
    let (serial, number) = serial();
    params.serial_number = Some(serial);
    let mut dn = DistinguishedName::new();
    let cn = req.common_name.clone().unwrap_or_else(|| format!("Consul Agent CA {number}"));
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "Legate");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    if req.name_constraint {
        let mut permitted =
            vec![GeneralSubtree::DnsName(req.domain.clone()), GeneralSubtree::DnsName("localhost".into())];
        permitted.extend(req.additional_constraints.iter().cloned().map(GeneralSubtree::DnsName));
        params.name_constraints = Some(NameConstraints { permitted_subtrees: permitted, excluded_subtrees: vec![] });
    }
    validity(&mut params, req.days);
    let cert = params.self_signed(&key).map_err(|e| invalid("CA certificate", e))?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// A certificate signed by the CA in `ca` (its certificate and key, PEM).
pub fn create_cert(ca: &Pem, req: &CertRequest) -> Result<Pem, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(|e| invalid("CA key", e))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(|e| invalid("CA certificate", e))?;
    let key = KeyPair::generate().map_err(|e| invalid("key", e))?;
    let name = req.name();
    let mut params = CertificateParams::default();
    params.serial_number = Some(serial().0);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name.clone());
    params.distinguished_name = dn;
    // Consul's order: the extra names, the node's, the certificate's own, localhost; a CLI
    // certificate names only itself and localhost (and no loopback IP).
    let mut sans = Vec::new();
    if req.kind != Kind::Cli {
        for d in &req.dns_names {
            sans.push(dns(d)?);
        }
    }
    if let (Kind::Server, Some(node)) = (req.kind, &req.node) {
        sans.push(dns(&format!("{node}.server.{}.{}", req.dc, req.domain))?);
    }
    sans.push(dns(&name)?);
    sans.push(dns("localhost")?);
    sans.extend(req.ips.iter().copied().map(SanType::IpAddress));
    if req.kind != Kind::Cli {
        sans.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    }
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = match req.kind {
        Kind::Cli => vec![ExtendedKeyUsagePurpose::ClientAuth],
        _ => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, req.days);
    let cert = params.signed_by(&key, &issuer).map_err(|e| invalid("certificate", e))?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::certificate_names;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    fn ca() -> Pem {
        create_ca(&CaRequest {
            domain: "consul".into(),
            days: 30,
            name_constraint: false,
            additional_constraints: vec![],
            common_name: None,
        })
        .unwrap()
    }

    fn leaf(ca: &Pem, kind: Kind) -> CertificateDer<'static> {
        let req = CertRequest {
            kind,
            dc: "dc1".into(),
            domain: "consul".into(),
            days: 1,
            node: Some("n1".into()),
            dns_names: vec!["extra.example".into()],
            ips: vec!["10.1.2.3".parse().unwrap()],
        };
        CertificateDer::from_pem_slice(create_cert(ca, &req).unwrap().cert.as_bytes()).unwrap()
    }

    #[test]
    fn each_kind_names_what_agents_check() {
        let ca = ca();
        let server = [leaf(&ca, Kind::Server)];
        for name in ["server.dc1.consul", "n1.server.dc1.consul", "localhost", "extra.example", "127.0.0.1", "10.1.2.3"]
        {
            assert!(certificate_names(Some(&server), name), "server certificate names {name}");
        }
        assert!(!certificate_names(Some(&server), "client.dc1.consul"));
        let client = [leaf(&ca, Kind::Client)];
        assert!(certificate_names(Some(&client), "client.dc1.consul"));
        assert!(!certificate_names(Some(&client), "server.dc1.consul"), "a client certificate is no server's");
        let cli = [leaf(&ca, Kind::Cli)];
        assert!(certificate_names(Some(&cli), "cli.dc1.consul"));
        assert!(!certificate_names(Some(&cli), "127.0.0.1"));
        assert!(!certificate_names(Some(&cli), "extra.example"));
        assert!(!certificate_names(None, "server.dc1.consul"));
    }

    #[test]
    fn a_leaf_chains_to_its_ca_only() {
        let ca = ca();
        let other = self::ca();
        let cert = leaf(&ca, Kind::Server);
        let roots = |pem: &Pem| {
            let mut r = rustls::RootCertStore::empty();
            r.add(CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap()).unwrap();
            r
        };
        let parsed = rustls::server::ParsedCertificate::try_from(&cert).unwrap();
        let algs = crate::provider().signature_verification_algorithms.all;
        let now = rustls::pki_types::UnixTime::now();
        assert!(rustls::client::verify_server_cert_signed_by_trust_anchor(&parsed, &roots(&ca), &[], now, algs).is_ok());
        assert!(
            rustls::client::verify_server_cert_signed_by_trust_anchor(&parsed, &roots(&other), &[], now, algs).is_err()
        );
    }
}
