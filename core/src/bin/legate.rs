fn main() {
    std::process::exit(legate_core::cli::run(std::env::args_os()));
}
