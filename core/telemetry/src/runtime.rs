//! The process's own gauges (`runtime.*`), read when shown: what Go's runtime reports for
//! Consul, in the terms a Rust process has: the allocator's bytes in use and held
//! (glibc's `mallinfo2`), resident memory and threads (`/proc/self`), and live async tasks.

use crate::Gauge;

pub fn gauges() -> Vec<Gauge> {
    let mut g = Vec::new();
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        g.push(Gauge::new("runtime.num_goroutines", h.metrics().num_alive_tasks() as f64));
    }
    if let Some((in_use, held)) = allocator() {
        g.push(Gauge::new("runtime.alloc_bytes", in_use as f64));
        g.push(Gauge::new("runtime.sys_bytes", held as f64));
    }
    use legate_types::proc_status::field;
    if let Some(kib) = field("self", "VmRSS") {
        g.push(Gauge::new("runtime.resident_bytes", kib as f64 * 1024.0));
    }
    if let Some(n) = field("self", "Threads") {
        g.push(Gauge::new("runtime.num_threads", n as f64));
    }
    g
}

/// Bytes handed out and not freed, and bytes the allocator holds from the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn allocator() -> Option<(u64, u64)> {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { libc::mallinfo2() };
    Some(((m.uordblks + m.hblkhd) as u64, (m.arena + m.hblkhd) as u64))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn allocator() -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn allocations_move_alloc_bytes() {
        let read = || super::allocator().map(|(a, _)| a);
        let Some(before) = read() else { return };
        let big = vec![1u8; 64 << 20];
        let during = read().unwrap();
        assert!(during >= before + (60 << 20), "{before} -> {during}");
        drop(big);
    }
}
