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
