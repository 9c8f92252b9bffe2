//! `legate completion bash|zsh|fish` and `legate man <dir>`: shell completions and man pages
//! generated from the clap definitions the command line itself parses, so they cannot drift.

use std::path::{Path, PathBuf};

use clap::Args;
use clap_complete::Shell;

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages into (legate.1, legate-agent.1, legate-kv-get.1, ...)
    dir: PathBuf,
}

/// Prints the completion script for `legate` in `shell`'s language.
pub fn run_completion(args: CompletionArgs, mut cmd: clap::Command) -> i32 {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "legate", &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => 0,
        // A reader that stops early (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("Error writing the completion script: {e}");
            1
        }
    }
}

/// Writes one roff page per command and subcommand.
pub fn run_man(args: ManArgs, cmd: clap::Command) -> i32 {
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("Error creating {}: {e}", args.dir.display());
        return 1;
    }
    let mut cmd = cmd;
    cmd.build();
    let mut written = 0;
    match write_pages(&cmd, "legate", &args.dir, &mut written) {
        Ok(()) => {
            println!("Wrote {written} man pages to {}", args.dir.display());
            0
        }
        Err(e) => {
            eprintln!("Error writing man pages: {e}");
            1
        }
    }
}

fn write_pages(cmd: &clap::Command, page: &str, dir: &Path, written: &mut usize) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let named = cmd.clone().display_name(page.to_string());
    clap_mangen::Man::new(named).render(&mut buf)?;
    std::fs::write(dir.join(format!("{page}.1")), buf)?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{page}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
