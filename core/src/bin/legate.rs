fn main() {
    // glibc gives every thread that allocates its own arena (up to 8 per core) and keeps freed
    // memory in each: with tokio's workers and blocking threads that multiplies idle RSS. Two
    // arenas keep allocation fast without the bloat.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt is called once, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    std::process::exit(legate_core::cli::run(std::env::args_os()));
}
