//! File-writing event handler: appends each event as one JSON line to `path`, a file inside a
//! directory granted with the definition's `files` (e.g. `{"host_dir": "/var/log/legate",
//! "guest_dir": "/out", "writable": true}` and `path = "/out/events.jsonl"`). Without a
//! grant there is no file system and the handler fails with the WASI error.
//!
//! Args: path (required), max_bytes (rotate: truncate the file when it grows past this).

use std::io::Write;

use legate_plugin::{event_json, export_handler, Config, Event, Handler};

struct FileWriter;

impl Handler for FileWriter {
    fn validate(config: &Config) -> Result<(), String> {
        config.only(&["path", "max_bytes"])?;
        let path = config.require("path")?;
        if !path.starts_with('/') {
            return Err(format!("arg \"path\": {path:?} must be absolute (inside a granted guest_dir)"));
        }
        config.parse::<u64>("max_bytes")?;
        Ok(())
    }

    fn handle(config: &Config, event: &Event) -> Result<String, String> {
        let path = config.require("path")?;
        let mut line = event_json(event).to_string();
        line.push('\n');
        if let Some(max) = config.parse::<u64>("max_bytes")? {
            if std::fs::metadata(path).map(|m| m.len() + line.len() as u64 > max).unwrap_or(false) {
                std::fs::write(path, b"").map_err(|e| format!("{path}: {e}"))?;
            }
        }
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("{path}: {e}"))?;
        f.write_all(line.as_bytes()).map_err(|e| format!("{path}: {e}"))?;
        Ok(format!("appended {} bytes to {path}", line.len()))
    }
}

export_handler!(FileWriter);
