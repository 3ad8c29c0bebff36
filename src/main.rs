//! The `kommo-sync` binary: parse the command line, run the selected mode
//! (which starts logging as configured), exit with its status.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = kommo_sync::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kommo-sync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(kommo_sync::app::run(cli))
}

/// glibc gives each thread that allocates its own heap arena (up to 8 per
/// core); the runtime's workers, the blocking pool and one thread per
/// SQLite connection each keep pages of freed memory in theirs. Two arenas
/// keep the peak resident set lower and flat as the account grows (see
/// docs/performance.md). Before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; no other thread
    // exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
