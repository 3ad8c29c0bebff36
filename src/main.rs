//! The `kommo-sync` binary: parse the command line, start logging, run the
//! selected mode, exit with its status.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = kommo_sync::cli::Cli::parse();
    let filter = if cli.mode() == kommo_sync::cli::Mode::Demo {
        kommo_sync::telemetry::QUIET_FILTER
    } else {
        kommo_sync::telemetry::DEFAULT_FILTER
    };
    kommo_sync::telemetry::init(filter);
    kommo_sync::app::run(cli).await
}
