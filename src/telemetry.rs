//! Logging: a tracing subscriber writing to stderr, filtered by `RUST_LOG`
//! (default `info`), as text or, with `KOMMO_SYNC_LOG_FORMAT=json`, as one
//! JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Environment variable choosing the log format: `text` (default) or `json`.
pub const LOG_FORMAT_ENV_VAR: &str = "KOMMO_SYNC_LOG_FORMAT";

/// The filter when `RUST_LOG` is not set: INFO for kommo-sync (one line per
/// run), warnings only from the libraries.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,tokio_cron_scheduler=warn";
/// The filter of `--demo` when `RUST_LOG` is not set: its own output says it all.
pub const QUIET_FILTER: &str = "warn";

/// Installs the global subscriber with `default_filter` unless `RUST_LOG` is
/// set. A second call does nothing.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var(LOG_FORMAT_ENV_VAR).is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // Colour only on a terminal: journald and log files get plain text, so
    // `alert="token_rejected"` can be grepped.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A subscriber already installed (tests) is fine.
    drop(result);
}
