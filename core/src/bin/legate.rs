fn main() {
    // glibc gives every thread that allocates its own arena (up to 8 per core) and keeps freed
    // memory in each: with tokio's workers and blocking threads that multiplies idle RSS. Two
    // arenas keep allocation fast without the bloat. An operator's MALLOC_ARENA_MAX (glibc's
    // own variable, read before main) is left to stand.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt is called once, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
    std::process::exit(legate_core::cli::run(std::env::args_os()));
}
