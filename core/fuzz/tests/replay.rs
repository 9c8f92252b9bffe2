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

/// The `config` target's first finding: deeply nested HCL overflowed hcl-rs's recursive parser
/// and aborted the process. Config files, `-hcl` fragments and ACL rules now refuse it first.
#[test]
fn deeply_nested_hcl_is_refused_not_a_stack_overflow() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/config");
    let data = std::fs::read(root.join("hcl-deep-nesting-stack-overflow")).unwrap();
    let text = String::from_utf8_lossy(&data[1..]);
    let err = legate_config::load::parse_text("x.hcl", &text, "hcl").unwrap_err();
    assert!(err.to_string().contains("nesting"), "{err}");
    let deep = format!("key \"a\" {{ policy = {}\"read\"{} }}", "[".repeat(5000), "]".repeat(5000));
    let err = legate_acl::Rules::parse(&deep, false).unwrap_err();
    assert!(err.to_string().contains("nesting"), "{err}");
}

/// The `config` target's second finding: 4 KB of HCL nesting 27 levels through arrays and
/// `%{` template sequences inside strings (which the first guard did not count) kept the parser
/// backtracking for 5 s (debug build; about 1.5x per level). It is refused before parsing.
#[test]
fn hcl_nesting_through_templates_is_refused_before_parsing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/config");
    let data = std::fs::read(root.join("hcl-template-nesting-exponential-parse")).unwrap();
    let text = String::from_utf8_lossy(&data[1..]);
    assert!(legate_types::hcl_guard::nesting_depth(&text) > legate_types::hcl_guard::MAX_DEPTH);
    let err = legate_config::load::parse_text("x.hcl", &text, "hcl").unwrap_err();
    assert!(err.to_string().contains("nesting"), "{err}");
}
