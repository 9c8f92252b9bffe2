//! The `legate` command line: Consul's commands and flags. Consul (Go's `flag` package) writes
//! long flags with one dash (`-data-dir=/x`, `-server`); clap wants two, so
//! [`normalize_args`] rewrites `-name` to `--name` before parsing. Both forms work.

mod acl;
mod agent;
mod catalog;
mod debug;
mod docs;
mod http_flags;
mod kv;
mod lock;
mod login;
mod members;
mod operator;
mod plugin;
mod plugin_registry;
mod rtt;
mod snapshot;
mod template;
mod tls;
mod validate;
mod version;
mod watch;

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use legate_config::LoadOptions;

#[derive(Parser, Debug)]
#[command(
    name = "legate",
    about = "Legate: a Consul-compatible service-discovery and configuration agent",
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a Legate agent (server or client)
    Agent(Box<agent::AgentFlags>),
    /// Manages ACL tokens, policies and roles
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Lists datacenters, nodes and services of the catalog
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Registers and deregisters services of the local agent
    #[command(subcommand)]
    Services(catalog::ServicesCommand),
    /// Puts the node or a service into (or out of) maintenance mode
    Maint(catalog::MaintArgs),
    /// Lists the members of the cluster
    Members(members::MembersArgs),
    /// Logs in to an auth method with a bearer token and writes the ACL token to a file
    Login(login::LoginArgs),
    /// Deletes the ACL token a login created
    Logout(login::LogoutArgs),
    /// Tells the local agent to join a cluster
    Join(members::JoinArgs),
    /// Tells the local agent to leave the cluster gracefully and stop
    Leave(members::LeaveArgs),
    /// Cluster operator tools (Raft peers)
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Generates a new gossip encryption key
    Keygen,
    /// Lists and manages gossip encryption keys
    Keyring(operator::KeyringArgs),
    /// Prints debugging information about the agent
    Info(operator::InfoArgs),
    /// Streams the agent's log lines (at -log-level, whatever the agent's own)
    Monitor(operator::MonitorArgs),
    /// Captures a debug bundle (agent, host, members, metrics, logs) as a .tar.gz
    Debug(debug::DebugArgs),
    /// Tells the agent to reload its config files
    Reload(members::ReloadArgs),
    /// Estimates the network round trip time between two nodes
    Rtt(rtt::RttArgs),
    /// Runs a command while holding a lock (leader election)
    Lock(lock::LockArgs),
    /// Fires a user event to the cluster
    Event(members::EventArgs),
    /// Forces a failed member into the left state
    ForceLeave(members::ForceLeaveArgs),
    /// Reads and writes the key/value store
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Saves, restores and inspects snapshots of the cluster state
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Runs, inspects, compiles and benchmarks WASM plugins; pushes, lists, pulls and signs registry plugins
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Creates a CA and the certificates agents and the CLI use for TLS
    #[command(subcommand)]
    Tls(tls::TlsCommand),
    /// Renders templates from KV and catalog data and keeps them current (consul-template)
    Template(template::TemplateArgs),
    /// Validates config files or directories without starting an agent
    Validate(validate::ValidateArgs),
    /// Prints the Legate version
    Version(version::VersionArgs),
    /// Watches a view of the catalog, KV or events and runs a handler on each change
    Watch(watch::WatchArgs),
    /// Prints the shell completion script (bash, zsh, fish)
    Completion(docs::CompletionArgs),
    /// Writes the man pages (one per command) into a directory
    Man(docs::ManArgs),
}

/// Rewrites Go-style single-dash long flags to clap's double-dash form: `-data-dir` ->
/// `--data-dir`, `-dc=x` -> `--dc=x`. Single letters (`-h`), negative numbers (`-1`) and
/// everything after `--` are left alone.
pub fn normalize_args<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let bytes = s.as_bytes();
        let is_single_dash_long = bytes.len() > 2
            && bytes[0] == b'-'
            && bytes[1].is_ascii_alphabetic()
            && !s[1..].split('=').next().unwrap_or("").is_empty()
            && s[1..].split('=').next().unwrap_or("").len() > 1;
        if is_single_dash_long {
            out.push(OsString::from(format!("-{s}")));
        } else {
            out.push(arg);
        }
    }
    out
}

/// Parses `legate agent ...` arguments (program name first) into load options, without the
/// process environment: what the agent would load, for tests and tools. `env` stands in for
/// the `LEGATE_*` variables.
pub fn agent_load_options<I: IntoIterator<Item = OsString>>(
    args: I,
    env: Vec<(String, String)>,
) -> Result<legate_config::LoadOptions, String> {
    let matches = Cli::command().try_get_matches_from(normalize_args(args)).map_err(|e| e.to_string())?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    match (cli.command, matches.subcommand()) {
        (Command::Agent(flags), Some((_, sub))) => {
            let mut opts = agent::load_options(&flags, sub)?;
            opts.env = env;
            Ok(opts)
        }
        _ => Err("not an agent command".into()),
    }
}

/// Rows as aligned columns (two spaces apart, the last column not padded), as Consul's CLI
/// prints its tables.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.len()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, s)| if i + 1 == r.len() { s.clone() } else { format!("{s:<w$}  ", w = widths[i]) })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the command line; returns the process exit code. `run_agent` runs `legate agent` with
/// the options its flags gave: the node lives above this crate (`legate_core`), so that the CLI
/// does not depend on the agent's parts.
pub fn run<I: IntoIterator<Item = OsString>>(args: I, run_agent: fn(LoadOptions) -> i32) -> i32 {
    let args = normalize_args(args);
    let matches = match Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return 1;
        }
    };
    let sub = matches.subcommand().map(|(_, m)| m);
    match cli.command {
        Command::Agent(flags) => match agent::load_options(&flags, sub.expect("agent matches")) {
            Ok(opts) => run_agent(opts),
            Err(e) => {
                eprintln!("==> {e}");
                1
            }
        },
        Command::Kv(cmd) => kv::run(cmd),
        Command::Tls(cmd) => tls::run(cmd),
        Command::Acl(cmd) => acl::run(cmd),
        Command::Members(a) => members::run_members(a),
        Command::Rtt(a) => rtt::run(a),
        Command::Login(a) => login::login(a),
        Command::Logout(a) => login::logout(a),
        Command::Join(a) => members::run_join(a),
        Command::Leave(a) => members::run_leave(a),
        Command::ForceLeave(a) => members::run_force_leave(a),
        Command::Event(a) => members::run_event(a),
        Command::Lock(a) => lock::run(a),
        Command::Reload(a) => members::run_reload(a),
        Command::Operator(cmd) => operator::run_operator(cmd),
        Command::Keygen => operator::run_keygen(),
        Command::Keyring(a) => operator::run_keyring(a),
        Command::Info(a) => operator::run_info(a),
        Command::Monitor(a) => operator::run_monitor(a),
        Command::Debug(a) => debug::run_debug(a),
        Command::Catalog(cmd) => catalog::run_catalog(cmd),
        Command::Services(cmd) => catalog::run_services(cmd),
        Command::Maint(a) => catalog::run_maint(a),
        Command::Snapshot(cmd) => snapshot::run(cmd),
        Command::Plugin(cmd) => plugin::run(cmd),
        Command::Validate(args) => validate::run(args),
        Command::Version(args) => version::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Template(args) => template::run(args),
        Command::Completion(args) => docs::run_completion(args, Cli::command()),
        Command::Man(args) => docs::run_man(args, Cli::command()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(OsString::from)).into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn every_command_definition_is_valid() {
        // clap checks a subcommand's definition only when it is built: build them all.
        Cli::command().debug_assert();
    }

    #[test]
    fn single_dash_becomes_double() {
        assert_eq!(
            norm(&["legate", "agent", "-server", "-data-dir=/x", "-dc", "r102", "--node", "n"]),
            ["legate", "agent", "--server", "--data-dir=/x", "--dc", "r102", "--node", "n"]
        );
    }

    #[test]
    fn short_flags_numbers_and_passthrough_are_kept() {
        assert_eq!(
            norm(&["legate", "-h", "agent", "-dns-port", "-1", "--", "-server"]),
            ["legate", "-h", "agent", "--dns-port", "-1", "--", "-server"]
        );
    }
}
