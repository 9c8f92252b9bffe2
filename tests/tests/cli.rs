//! The CLI as a user runs it: help, version, validate.

use legate_tests::{config_dir, run_legate};

#[test]
fn help_lists_subcommands() {
    for flag in ["--help", "-help", "-h"] {
        let (code, out, _) = run_legate(&[flag]);
        assert_eq!(code, 0, "{flag}");
        for cmd in ["agent", "validate", "version"] {
            assert!(out.contains(cmd), "{flag}: {cmd} missing in {out}");
        }
    }
    let (code, _, err) = run_legate(&["bogus"]);
    assert_eq!(code, 1);
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn version_text_and_json() {
    let (code, out, _) = run_legate(&["version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Legate v"), "{out}");
    assert!(out.contains("Protocol 2 spoken by default"), "{out}");
    let (code, out, _) = run_legate(&["version", "-format=json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn validate_exit_codes_and_messages() {
    let good = config_dir(&[
        ("a.json", r#"{"datacenter": "r102", "service": {"name": "web", "port": 80}}"#),
        ("b.hcl", "log_level = \"warn\"\n"),
    ]);
    let (code, out, _) = run_legate(&["validate", good.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "Configuration is valid!");
    let (code, out, _) = run_legate(&["validate", "-quiet", good.path().to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, ""));

    let bad = config_dir(&[("a.json", "{\n \"ports\": {\"http\": 99999}\n}")]);
    let (code, _, err) = run_legate(&["validate", bad.path().join("a.json").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("a.json:2: ports.http: invalid port 99999"), "{err}");

    let (code, _, err) = run_legate(&["validate", "/nonexistent/legate.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("Error reading /nonexistent/legate.json"), "{err}");
}

#[test]
fn example_config_dirs_validate() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/services");
    let (code, out, err) = run_legate(&["validate", dir]);
    assert_eq!((code, out.trim()), (0, "Configuration is valid!"), "{err}");
}
