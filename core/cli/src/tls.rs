//! `legate tls ca create` and `legate tls cert create`: a CA and the server, client and CLI
//! certificates it signs, written in the working directory under Consul's file names
//! (`consul-agent-ca.pem`, `dc1-server-consul-0.pem`, ...), keys mode 0600.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use legate_tls::pki::{self, CaRequest, CertRequest, Kind, Pem};

#[derive(clap::Subcommand, Debug)]
pub enum TlsCommand {
    /// Creates and signs certificate authorities
    #[command(subcommand)]
    Ca(CaCommand),
    /// Creates and signs server, client and CLI certificates
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum CaCommand {
    /// Creates a new certificate authority
    Create(CaCreateArgs),
}

#[derive(clap::Subcommand, Debug)]
pub enum CertCommand {
    /// Creates a new certificate signed by the CA
    Create(CertCreateArgs),
}

#[derive(clap::Args, Debug)]
pub struct CaCreateArgs {
    /// Days the CA is valid for
    #[arg(long, default_value_t = 1825)]
    days: u32,
    /// Domain of the cluster (the CA's files are named after it)
    #[arg(long, default_value = "consul")]
    domain: String,
    /// Restrict the CA to the domain, localhost and -additional-name-constraint
    #[arg(long)]
    name_constraint: bool,
    /// More domains the CA may sign for with -name-constraint (repeatable)
    #[arg(long)]
    additional_name_constraint: Vec<String>,
    /// Common name of the CA (default: Consul Agent CA <serial>)
    #[arg(long)]
    common_name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct CertCreateArgs {
    /// A server certificate (names server.<dc>.<domain>)
    #[arg(long)]
    server: bool,
    /// A client agent certificate (names client.<dc>.<domain>)
    #[arg(long)]
    client: bool,
    /// A CLI certificate (client authentication only)
    #[arg(long)]
    cli: bool,
    /// The CA certificate (default: <domain>-agent-ca.pem)
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The CA key (default: <domain>-agent-ca-key.pem)
    #[arg(long)]
    key: Option<PathBuf>,
    /// Datacenter the certificate is for
    #[arg(long, default_value = "dc1")]
    dc: String,
    /// Domain of the cluster
    #[arg(long, default_value = "consul")]
    domain: String,
    /// Days the certificate is valid for
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// With -server: also name <node>.server.<dc>.<domain>
    #[arg(long)]
    node: Option<String>,
    /// More DNS names (repeatable)
    #[arg(long)]
    additional_dnsname: Vec<String>,
    /// More IP addresses (repeatable)
    #[arg(long)]
    additional_ipaddress: Vec<IpAddr>,
}

pub fn run(cmd: TlsCommand) -> i32 {
    let result = match cmd {
        TlsCommand::Ca(CaCommand::Create(a)) => ca_create(&a, Path::new(".")),
        TlsCommand::Cert(CertCommand::Create(a)) => cert_create(&a, Path::new(".")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Writes the certificate world-readable and the key 0600, refusing to overwrite either.
fn save(dir: &Path, cert_name: &str, key_name: &str, pem: &Pem) -> Result<(), String> {
    let (cert, key) = (dir.join(cert_name), dir.join(key_name));
    for f in [&cert, &key] {
        if f.exists() {
            return Err(format!("{} already exists.", f.display()));
        }
    }
    std::fs::write(&cert, &pem.cert).map_err(|e| format!("Error writing {}: {e}", cert.display()))?;
    println!("==> Saved {cert_name}");
    legate_types::fs::write_private(&key, pem.key.as_bytes())
        .map_err(|e| format!("Error writing {}: {e}", key.display()))?;
    println!("==> Saved {key_name}");
    Ok(())
}

fn ca_create(a: &CaCreateArgs, dir: &Path) -> Result<(), String> {
    let cert_name = format!("{}-agent-ca.pem", a.domain);
    let key_name = format!("{}-agent-ca-key.pem", a.domain);
    for f in [&cert_name, &key_name] {
        if dir.join(f).exists() {
            return Err(format!("{f} already exists."));
        }
    }
    let pem = pki::create_ca(&CaRequest {
        domain: a.domain.clone(),
        days: a.days,
        name_constraint: a.name_constraint,
        additional_constraints: a.additional_name_constraint.clone(),
        common_name: a.common_name.clone(),
    })
    .map_err(|e| format!("Error creating the CA: {e}"))?;
    save(dir, &cert_name, &key_name, &pem)
}

fn cert_create(a: &CertCreateArgs, dir: &Path) -> Result<(), String> {
    let kind = match (a.server, a.client, a.cli) {
        (true, false, false) => Kind::Server,
        (false, true, false) => Kind::Client,
        (false, false, true) => Kind::Cli,
        _ => return Err("Please provide either -server, -client, or -cli".into()),
    };
    if a.node.is_some() && kind != Kind::Server {
        return Err("-node requires -server".into());
    }
    let ca_file = a.ca.clone().unwrap_or_else(|| PathBuf::from(format!("{}-agent-ca.pem", a.domain)));
    let key_file = a.key.clone().unwrap_or_else(|| PathBuf::from(format!("{}-agent-ca-key.pem", a.domain)));
    let read = |what: &str, p: &Path| {
        std::fs::read_to_string(dir.join(p))
            .map_err(|e| format!("Error reading {what}: open {}: {}", p.display(), legate_tls::io_error(&e)))
    };
    let ca = Pem { cert: read("CA", &ca_file)?, key: read("CA key", &key_file)? };
    let prefix = format!("{}-{}-{}", a.dc, kind.word(), a.domain);
    let index = (0..10_000)
        .find(|i| {
            !dir.join(format!("{prefix}-{i}.pem")).exists() && !dir.join(format!("{prefix}-{i}-key.pem")).exists()
        })
        .ok_or("Could not find a filename that doesn't already exist")?;
    let req = CertRequest {
        kind,
        dc: a.dc.clone(),
        domain: a.domain.clone(),
        days: a.days,
        node: a.node.clone(),
        dns_names: a.additional_dnsname.clone(),
        ips: a.additional_ipaddress.clone(),
    };
    if kind == Kind::Server {
        println!(
            "==> WARNING: Server Certificates grants authority to become a\n    server and access all state in the cluster including root keys\n    and all ACL tokens. Do not distribute them to production hosts\n    that are not server nodes. Store them as securely as CA keys."
        );
    }
    let pem = pki::create_cert(&ca, &req).map_err(|e| format!("Error creating the certificate: {e}"))?;
    println!("==> Using {} and {}", ca_file.display(), key_file.display());
    save(dir, &format!("{prefix}-{index}.pem"), &format!("{prefix}-{index}-key.pem"), &pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ca_args() -> CaCreateArgs {
        CaCreateArgs {
            days: 30,
            domain: "consul".into(),
            name_constraint: false,
            additional_name_constraint: vec![],
            common_name: None,
        }
    }

    fn cert_args(server: bool, client: bool, cli: bool) -> CertCreateArgs {
        CertCreateArgs {
            server,
            client,
            cli,
            ca: None,
            key: None,
            dc: "dc1".into(),
            domain: "consul".into(),
            days: 1,
            node: None,
            additional_dnsname: vec![],
            additional_ipaddress: vec![],
        }
    }

    #[test]
    fn files_are_named_as_consul_names_them_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        ca_create(&ca_args(), dir.path()).unwrap();
        assert_eq!(ca_create(&ca_args(), dir.path()).unwrap_err(), "consul-agent-ca.pem already exists.");
        cert_create(&cert_args(true, false, false), dir.path()).unwrap();
        cert_create(&cert_args(true, false, false), dir.path()).unwrap();
        cert_create(&cert_args(false, true, false), dir.path()).unwrap();
        cert_create(&cert_args(false, false, true), dir.path()).unwrap();
        for f in [
            "consul-agent-ca.pem",
            "consul-agent-ca-key.pem",
            "dc1-server-consul-0.pem",
            "dc1-server-consul-1-key.pem",
            "dc1-client-consul-0.pem",
            "dc1-cli-consul-0-key.pem",
        ] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        for key in ["consul-agent-ca-key.pem", "dc1-server-consul-0-key.pem"] {
            let mode = std::fs::metadata(dir.path().join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            cert_create(&cert_args(true, true, false), dir.path()).unwrap_err(),
            "Please provide either -server, -client, or -cli"
        );
        let e = cert_create(&cert_args(true, false, false), dir.path()).unwrap_err();
        assert_eq!(e, "Error reading CA: open consul-agent-ca.pem: no such file or directory");
        let mut a = cert_args(false, true, false);
        a.node = Some("n1".into());
        assert_eq!(cert_create(&a, dir.path()).unwrap_err(), "-node requires -server");
    }
}
