//! The `kommo-sync` binary: parse the command line, start logging, run the
//! selected mode, exit with its status.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = kommo_sync::cli::Cli::parse();
    kommo_sync::telemetry::init();
    kommo_sync::app::run(cli).await
}
