//! The HTTP client flags every command shares (`-http-addr`, `-token`, `-datacenter`,
//! `-stale`), resolved as Consul does: flags > `LEGATE_HTTP_*` > `CONSUL_HTTP_*` > default.

use legate_client::{Client, QueryOptions};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct HttpFlags {
    /// Address of the agent's HTTP API (env LEGATE_HTTP_ADDR or CONSUL_HTTP_ADDR; default 127.0.0.1:8500)
    #[arg(long)]
    pub http_addr: Option<String>,
    /// ACL token (env LEGATE_HTTP_TOKEN or CONSUL_HTTP_TOKEN)
    #[arg(long)]
    pub token: Option<String>,
    /// Datacenter to query (default: the agent's)
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Allow any server to answer reads
    #[arg(long)]
    pub stale: bool,
}

impl HttpFlags {
    pub fn client(&self) -> Result<Client, String> {
        Client::with_overrides(self.http_addr.as_deref(), self.token.as_deref()).map_err(|e| e.to_string())
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
