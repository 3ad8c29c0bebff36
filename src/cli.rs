//! The command line: one optional config file and at most one mode.

use std::path::PathBuf;

use clap::{ArgGroup, Parser};

/// Keeps an exact, queryable SQLite mirror of every lead of a Kommo account.
///
/// Without a mode flag it runs as a daemon, syncing on the configured
/// schedule until SIGTERM or SIGINT.
#[derive(Debug, Parser)]
#[command(name = "kommo-sync", version, about, long_about = None)]
#[command(group(ArgGroup::new("mode").args(["backfill", "once", "check", "status", "demo"]).multiple(false)))]
pub struct Cli {
    /// Configuration file (TOML). Default: $KOMMO_SYNC_CONFIG, else
    /// /etc/kommo-sync/config.toml when it exists.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// One full sync of every lead, then reconcile deletions, then exit.
    #[arg(long)]
    pub backfill: bool,

    /// One incremental sync (changes since the last sync), then exit.
    #[arg(long)]
    pub once: bool,

    /// Validate the configuration, probe the API with the token, print the
    /// token's expiry date, exit.
    #[arg(long)]
    pub check: bool,

    /// Print the state of the mirror from the database, exit (sends no request).
    #[arg(long)]
    pub status: bool,

    /// Run a simulated Kommo account on 127.0.0.1, mirror it into
    /// ./kommo-demo.sqlite, print what was mirrored, exit (no account needed).
    #[arg(long)]
    pub demo: bool,
}

/// The mode selected on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Daemon,
    Backfill,
    Once,
    Check,
    Status,
    Demo,
}

impl Cli {
    /// The one mode the flags select (clap already refuses two).
    pub fn mode(&self) -> Mode {
        if self.backfill {
            Mode::Backfill
        } else if self.once {
            Mode::Once
        } else if self.check {
            Mode::Check
        } else if self.status {
            Mode::Status
        } else if self.demo {
            Mode::Demo
        } else {
            Mode::Daemon
        }
    }
}
