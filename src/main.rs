//! The `kommo-sync` binary: parse the command line, run the selected mode
//! (which starts logging as configured), exit with its status.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = kommo_sync::cli::Cli::parse();
    kommo_sync::app::run(cli).await
}
