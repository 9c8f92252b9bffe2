//! The HTTP client flags every command shares (`-http-addr`, `-token`, `-datacenter`,
//! `-stale`, and the TLS flags `-ca-file`, `-ca-path`, `-client-cert`, `-client-key`,
//! `-tls-server-name`), resolved as Consul does: flags > `LEGATE_*` > `CONSUL_*` > default.

use std::path::PathBuf;

use legate_client::{Client, QueryOptions, TlsOptions};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct HttpFlags {
    /// Address of the agent's HTTP API (env LEGATE_HTTP_ADDR or CONSUL_HTTP_ADDR; default 127.0.0.1:8500)
    #[arg(long)]
    pub http_addr: Option<String>,
    /// ACL token (env LEGATE_HTTP_TOKEN or CONSUL_HTTP_TOKEN)
    #[arg(long)]
    pub token: Option<String>,
    /// File holding the ACL token (env LEGATE_HTTP_TOKEN_FILE or CONSUL_HTTP_TOKEN_FILE); -token wins
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Datacenter to query (default: the agent's)
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Allow any server to answer reads
    #[arg(long)]
    pub stale: bool,
    /// CA file to verify the agent's HTTPS certificate (env CONSUL_CACERT)
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Directory of CA files (env CONSUL_CAPATH)
    #[arg(long)]
    pub ca_path: Option<PathBuf>,
    /// Client certificate for HTTPS with verify_incoming (env CONSUL_CLIENT_CERT)
    #[arg(long)]
    pub client_cert: Option<PathBuf>,
    /// Key of the client certificate (env CONSUL_CLIENT_KEY)
    #[arg(long)]
    pub client_key: Option<PathBuf>,
    /// Name to verify the agent's certificate against, instead of the address (env CONSUL_TLS_SERVER_NAME)
    #[arg(long)]
    pub tls_server_name: Option<String>,
}

impl HttpFlags {
    pub fn client(&self) -> Result<Client, String> {
        let token = self.token()?;
        Client::with_overrides_tls(self.http_addr.as_deref(), token.as_deref(), &self.tls()).map_err(|e| e.to_string())
    }

    /// `-token`, else the contents of `-token-file` (or of the file the environment names),
    /// as Consul reads them; None leaves the choice to the environment's token.
    fn token(&self) -> Result<Option<String>, String> {
        if self.token.is_some() {
            return Ok(self.token.clone());
        }
        let env_file = || {
            ["LEGATE_HTTP_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE"]
                .iter()
                .find_map(|k| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from))
        };
        let from_env = std::env::var_os("LEGATE_HTTP_TOKEN").or_else(|| std::env::var_os("CONSUL_HTTP_TOKEN"));
        let file = match &self.token_file {
            Some(f) => f.clone(),
            // An explicit token in the environment wins over a token file in it.
            None if from_env.is_some() => return Ok(None),
            None => match env_file() {
                Some(f) => f,
                None => return Ok(None),
            },
        };
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("Error loading token file {}: {e}", file.display()))?;
        Ok(Some(text.trim().to_string()))
    }

    /// The environment's TLS options with the flags on top.
    pub fn tls(&self) -> TlsOptions {
        let mut tls = TlsOptions::from_env();
        let set = |to: &mut Option<PathBuf>, from: &Option<PathBuf>| {
            if from.is_some() {
                *to = from.clone();
            }
        };
        set(&mut tls.ca_file, &self.ca_file);
        set(&mut tls.ca_path, &self.ca_path);
        set(&mut tls.client_cert, &self.client_cert);
        set(&mut tls.client_key, &self.client_key);
        if let Some(n) = &self.tls_server_name {
            tls.set_server_name(n);
        }
        tls
    }

    pub fn query(&self) -> QueryOptions {
        QueryOptions { stale: self.stale, datacenter: self.datacenter.clone(), ..Default::default() }
    }
}

/// Runs an async command body on a small runtime; prints the error and returns 1 on failure.
pub fn block_on<F: std::future::Future<Output = Result<i32, String>>>(f: F) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    match rt.block_on(f) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
