//! `legate validate [-quiet] [-config-format=json|hcl|toml] <file-or-dir>...`: loads and
//! validates config as the agent would, without starting it. Exit 0 valid, 1 invalid.

use std::path::PathBuf;

use legate_config::{load, LoadOptions};

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Print nothing when the config is valid
    #[arg(long)]
    quiet: bool,
    /// Force the format of every file: json, hcl or toml
    #[arg(long, value_parser = ["json", "hcl", "toml"])]
    config_format: Option<String>,
    /// Config files or directories, loaded in order as -config-file / -config-dir would be
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub fn run(args: ValidateArgs) -> i32 {
    let mut base = serde_json::Map::new();
    // As `consul validate`: a file need not name a data_dir to be valid on its own.
    base.insert("data_dir".into(), serde_json::Value::String("/tmp/legate-validate".into()));
    let opts = LoadOptions { sources: args.paths, config_format: args.config_format, base, ..LoadOptions::default() };
    match load(&opts) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("==> Warning: {w}");
            }
            if !args.quiet {
                println!("Configuration is valid!");
            }
            0
        }
        Err(e) => {
            eprintln!("Config validation failed: {e}");
            1
        }
    }
}
