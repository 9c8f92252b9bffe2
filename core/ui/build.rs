//! Builds the web UI from `ui/` with npm (Vite) into OUT_DIR and embeds every file,
//! gzip-compressed, with its Content-Type and an ETag.
//!
//! - `npm ci` runs when `ui/node_modules` is missing or older than `ui/package-lock.json`;
//!   `npm run build` (tsc, then vite) runs whenever a UI source changes (cargo's
//!   rerun-if-changed on `ui/src`, `ui/index.html` and the npm and Vite configs).
//! - `LEGATE_UI_DIST=<dir>` embeds an already built UI instead (packagers who build it apart);
//!   `LEGATE_NPM=<path>` picks the npm to run.
//! - Without npm the build fails and says what to install.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

include!("src/mime.rs");

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let ui = manifest.join("../../ui");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-env-changed=LEGATE_UI_DIST");
    println!("cargo:rerun-if-env-changed=LEGATE_NPM");
    let dist = match std::env::var_os("LEGATE_UI_DIST") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            println!("cargo:rerun-if-changed={}", dir.display());
            dir
        }
        None => {
            for p in ["src", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json"] {
                println!("cargo:rerun-if-changed={}", ui.join(p).display());
            }
            let dist = out.join("ui-dist");
            build_ui(&ui, &dist);
            dist
        }
    };
    embed(&dist, &out);
}

fn npm() -> String {
    std::env::var("LEGATE_NPM").unwrap_or_else(|_| "npm".into())
}

fn run(ui: &Path, args: &[&str], env: &[(&str, &Path)]) {
    let mut cmd = Command::new(npm());
    cmd.args(args).current_dir(ui);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap_or_else(|e| {
        panic!(
            "legate-ui: cannot run `{} {}` in {}: {e}\n\
             Building Legate's web UI needs Node.js (>= 18) and npm: on Debian `apt-get install nodejs npm`.\n\
             (Or set LEGATE_UI_DIST to a UI already built with `npm ci && npm run build` in ui/.)",
            npm(),
            args.join(" "),
            ui.display()
        )
    });
    if !output.status.success() {
        panic!(
            "legate-ui: `npm {}` in {} failed ({}):\n{}\n{}",
            args.join(" "),
            ui.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn build_ui(ui: &Path, dist: &Path) {
    // npm records what it installed in node_modules/.package-lock.json.
    let installed = modified(&ui.join("node_modules/.package-lock.json"));
    let wanted = modified(&ui.join("package-lock.json"));
    if installed.is_none() || wanted > installed {
        run(ui, &["ci", "--no-audit", "--no-fund", "--loglevel=error"], &[]);
    }
    run(ui, &["run", "build", "--silent"], &[("LEGATE_UI_OUT", dist)]);
}

fn files(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("legate-ui: cannot read {}: {e}", dir.display()))
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        if path.is_dir() {
            files(&path, &rel, out);
        } else {
            out.push((rel, path));
        }
    }
}

fn embed(dist: &Path, out: &Path) {
    let mut list = Vec::new();
    files(dist, "", &mut list);
    assert!(
        list.iter().any(|(rel, _)| rel == "index.html"),
        "legate-ui: {} has no index.html (is it a built UI?)",
        dist.display()
    );
    let gz_dir = out.join("ui-gz");
    std::fs::create_dir_all(&gz_dir).unwrap();
    let mut code = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (i, (rel, path)) in list.iter().enumerate() {
        let raw = std::fs::read(path).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&raw).unwrap();
        let gz = enc.finish().unwrap();
        let gz_path = gz_dir.join(format!("{i}.gz"));
        std::fs::write(&gz_path, &gz).unwrap();
        use sha2::Digest;
        let etag = hex::encode(&sha2::Sha256::digest(&raw)[..12]);
        code.push_str(&format!(
            "    Asset {{ path: {rel:?}, gzip: include_bytes!({gz:?}), len: {len}, content_type: {ct:?}, etag: \"\\\"{etag}\\\"\" }},\n",
            gz = gz_path.display().to_string(),
            len = raw.len(),
            ct = content_type(rel),
        ));
    }
    code.push_str("];\n");
    std::fs::write(out.join("assets.rs"), code).unwrap();
}
