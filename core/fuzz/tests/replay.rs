//! Replays every committed fuzz input (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/` at the repository root)
//! through its target: seconds, on stable, in the normal test suite. No new fuzzing here.

use std::path::Path;

#[test]
fn every_corpus_and_regression_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut ran = 0;
    for (name, target) in legate_fuzz_targets::TARGETS {
        let mut files = Vec::new();
        for kind in ["corpus", "regressions"] {
            if let Ok(dir) = std::fs::read_dir(root.join(kind).join(name)) {
                files.extend(dir.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()));
            }
        }
        assert!(!files.is_empty(), "no corpus for {name}");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            target(&data);
            ran += 1;
        }
    }
    assert!(ran >= legate_fuzz_targets::TARGETS.len());
}

/// The `config` target's findings against hcl-rs, the HCL 2 parser Legate used before its own
/// HCL 1 parser (legate-hcl): deeply nested text overflowed its recursive parser and aborted
/// the process, and 4 KB nesting 27 levels through arrays and `%{` sequences kept it
/// backtracking for seconds. Both inputs are refused now, and nesting has a bound wherever HCL
/// is read (config files, `-hcl` fragments, ACL rules).
#[test]
fn hcl_findings_are_refused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/config");
    for name in ["hcl-deep-nesting-stack-overflow", "hcl-template-nesting-exponential-parse"] {
        let data = std::fs::read(root.join(name)).unwrap();
        let text = String::from_utf8_lossy(&data[1..]);
        assert!(legate_config::load::parse_text("x.hcl", &text, "hcl").is_err(), "{name}");
    }
    let deep = format!("a = {}1{}", "[".repeat(5000), "]".repeat(5000));
    let err = legate_config::load::parse_text("x.hcl", &deep, "hcl").unwrap_err();
    assert!(err.to_string().contains("nesting"), "{err}");
    let deep = format!("key \"a\" {{ policy = {}\"read\"{} }}", "[".repeat(5000), "]".repeat(5000));
    let err = legate_acl::Rules::parse(&deep, false).unwrap_err();
    assert!(err.to_string().contains("nesting"), "{err}");
}
