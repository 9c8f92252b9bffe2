//! Files that hold secrets (ACL tokens, gossip keys, the state store and its snapshots): written
//! atomically, readable by the agent's user only (0600), in directories only it can enter
//! (0700).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) if missing; a directory this creates is 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `data` to `path` through a temporary file that is 0600 from its creation, fsyncs it,
/// renames it over `path` and fsyncs the directory: readers see the old or the new content,
/// never a part, and never a moment of wider permissions.
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        // An older temporary file keeps its mode through `open`: set it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Narrows an existing file (a database another library created) to 0600.
pub fn make_private(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_dirs_are_the_owners_only() {
        let root = std::env::temp_dir().join(format!("legate-private-{}", std::process::id()));
        let dir = root.join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let f = dir.join("secret.json");
        std::fs::write(f.with_extension("tmp"), b"stale").unwrap();
        std::fs::set_permissions(f.with_extension("tmp"), std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"{}").unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"{}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
