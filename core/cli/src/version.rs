//! `legate version [-format=json]`.

use legate_types::version;

#[derive(clap::Args, Debug)]
pub struct VersionArgs {
    /// Output format: text or json
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

pub fn run(args: VersionArgs) -> i32 {
    if args.format == "json" {
        let v = serde_json::json!({
            "Version": version::VERSION,
            "ConsulVersion": version::CONSUL_VERSION,
            "Revision": version::GIT_SHA,
            "Prerelease": "",
            "FullVersion": format!("{} (Consul API {})", version::VERSION, version::CONSUL_VERSION),
            "BuildDate": version::BUILD_DATE,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return 0;
    }
    println!("Legate v{} (Consul API v{})", version::VERSION, version::CONSUL_VERSION);
    println!("Revision {}", version::GIT_SHA);
    println!("Build Date {}", version::BUILD_DATE);
    println!(
        "Protocol {} spoken by default, understands {} to {} (agent will automatically use protocol >2 when speaking to compatible agents)",
        version::PROTOCOL,
        version::PROTOCOL_MIN,
        version::PROTOCOL_MAX
    );
    0
}
