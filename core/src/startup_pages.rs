//! A client agent gives back the pages of its binary that only starting up used.
//!
//! Starting touches code that never runs again: flag and config parsing (HCL, JSON, figment),
//! the CLI, the plugin engine's setup, data-dir and key loading. The kernel maps the binary's
//! pages in as they are touched (and 64 KiB around each fault), and they stay in the agent's RSS
//! for as long as it runs: about 16 MiB of a 19 MiB idle client agent, of which an idle agent
//! uses less than half. Once the agent is up (its first full anti-entropy sync succeeded), the
//! read-only mappings of the binary are paged out (`MADV_PAGEOUT`, Linux 5.4+); what the
//! running agent uses faults back in. Pages that another process maps too (a second agent from
//! the same binary) are left alone by the kernel. Servers keep theirs: they run far more of the
//! binary, and a cold page on the write path costs more than it saves.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::agent::AgentShared;

/// Waits for the first full sync, then pages the binary's read-only mappings out once.
pub async fn page_out_after_start(shared: Arc<AgentShared>, shutdown: CancellationToken) {
    let mut synced = shared.catalog_synced.subscribe();
    tokio::select! {
        _ = shutdown.cancelled() => return,
        r = synced.wait_for(|s| *s) => if r.is_err() { return },
    }
    match tokio::task::spawn_blocking(page_out_binary).await {
        Ok(Ok((before, after))) => tracing::debug!(
            before_kib = before,
            after_kib = after,
            "paged out the binary's startup pages (file-backed RSS {before} KiB -> {after} KiB)"
        ),
        Ok(Err(e)) => tracing::debug!(error = %e, "could not page out the binary's startup pages"),
        Err(e) => tracing::debug!(error = %e, "paging out the binary's startup pages failed"),
    }
}

/// `MADV_PAGEOUT` on every read-only mapping of our own executable; returns the file-backed
/// RSS (KiB) before and after.
#[cfg(target_os = "linux")]
fn page_out_binary() -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;

    let inode = std::fs::metadata("/proc/self/exe")?.ino();
    let before = rss_file_kib()?;
    for (start, end) in read_only_mappings(&std::fs::read_to_string("/proc/self/maps")?, inode) {
        // SAFETY: the range is a whole mapping of this process (from /proc/self/maps), read-only
        // and backed by the executable file: paging it out only drops clean pages, which the
        // kernel reads back in on the next access.
        let r = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, rss_file_kib()?))
}

#[cfg(not(target_os = "linux"))]
fn page_out_binary() -> std::io::Result<(u64, u64)> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "MADV_PAGEOUT is Linux's"))
}

/// The `(start, end)` of each mapping in `maps` (the text of /proc/PID/maps) of the file with
/// this inode that is not writable.
fn read_only_mappings(maps: &str, inode: u64) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let (_offset, _dev) = (f.next()?, f.next()?);
            let ino: u64 = f.next()?.parse().ok()?;
            if ino != inode || perms.contains('w') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?))
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn rss_file_kib() -> std::io::Result<u64> {
    legate_types::proc_status::field("self", "RssFile")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no RssFile in /proc/self/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
5619ad4ae000-5619adc0c000 r--p 00000000 fe:00 5459231                    /usr/bin/legate
5619adc0c000-5619afce8000 r-xp 0075d000 fe:00 5459231                    /usr/bin/legate
5619afdc1000-5619afe00000 rw-p 02911000 fe:00 5459231                    /usr/bin/legate
5619afe00000-5619afe10000 rw-p 00000000 00:00 0                          [heap]
7fdf155d1000-7fdf15727000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
7fdf16000000-7fdf16100000 r-xp 00026000 fe:00 5459231                    /usr/bin/legate (deleted)
";

    #[test]
    fn only_the_read_only_mappings_of_the_executable_are_chosen() {
        let got = read_only_mappings(MAPS, 5459231);
        assert_eq!(
            got,
            vec![(0x5619ad4ae000, 0x5619adc0c000), (0x5619adc0c000, 0x5619afce8000), (0x7fdf16000000, 0x7fdf16100000),]
        );
        assert!(read_only_mappings(MAPS, 1).is_empty());
    }
}
