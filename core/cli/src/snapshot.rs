//! `legate snapshot save|restore|inspect`.

use std::path::PathBuf;

use super::http_flags::{block_on, HttpFlags};
use legate_state::snapshot::unarchive;

#[derive(clap::Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Saves a snapshot of the cluster state to a file
    Save {
        #[command(flatten)]
        http: HttpFlags,
        file: PathBuf,
    },
    /// Restores a snapshot file into the cluster
    Restore {
        #[command(flatten)]
        http: HttpFlags,
        file: PathBuf,
    },
    /// Prints the metadata of a snapshot file
    Inspect { file: PathBuf },
}

pub fn run(cmd: SnapshotCommand) -> i32 {
    block_on(async move {
        match cmd {
            SnapshotCommand::Save { http, file } => {
                let client = http.client()?;
                let (bytes, index) =
                    client.snapshot_save(http.stale).await.map_err(|e| format!("Error saving snapshot: {e}"))?;
                unarchive(&bytes).map_err(|e| format!("Error verifying snapshot file: {e}"))?;
                let tmp = file.with_extension("tmp");
                std::fs::write(&tmp, &bytes).map_err(|e| format!("Error writing snapshot file: {e}"))?;
                std::fs::rename(&tmp, &file).map_err(|e| format!("Error writing snapshot file: {e}"))?;
                println!("Saved and verified snapshot to index {index}");
                Ok(0)
            }
            SnapshotCommand::Restore { http, file } => {
                let bytes = std::fs::read(&file).map_err(|e| format!("Error opening snapshot file: {e}"))?;
                http.client()?
                    .snapshot_restore(bytes.into())
                    .await
                    .map_err(|e| format!("Error restoring snapshot: {e}"))?;
                println!("Restored snapshot");
                Ok(0)
            }
            SnapshotCommand::Inspect { file } => {
                let bytes = std::fs::read(&file).map_err(|e| format!("Error opening snapshot file: {e}"))?;
                let (meta, data) = unarchive(&bytes).map_err(|e| format!("Error verifying snapshot: {e}"))?;
                for (k, v) in [
                    ("ID", meta.id),
                    ("Size", meta.size.to_string()),
                    ("Index", meta.index.to_string()),
                    ("Term", meta.term.to_string()),
                    ("Version", meta.version.to_string()),
                    ("KV entries", data.kv.len().to_string()),
                ] {
                    println!(" {k:<13}{v}");
                }
                Ok(0)
            }
        }
    })
}
