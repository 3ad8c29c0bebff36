//! Logging: a tracing subscriber writing to stderr, filtered by `RUST_LOG`
//! (default `info`), as text or as one JSON object per line (`log.format`,
//! overridden by `KOMMO_SYNC_LOG_FORMAT`). The fields of the spans a line is
//! in (a sync attempt's `run_id`) are part of every line.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::ProgressBar;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::poison::LockAnyway;

/// Environment variable overriding `log.format`: `text` or `json`.
pub const LOG_FORMAT_ENV_VAR: &str = "KOMMO_SYNC_LOG_FORMAT";

/// The filter when `RUST_LOG` is not set: INFO for kommo-sync (one line per
/// run), warnings only from the libraries.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,tokio_cron_scheduler=warn";
/// The filter of `--demo` when `RUST_LOG` is not set: its own output says it all.
pub const QUIET_FILTER: &str = "warn";

/// Installs the global subscriber with `default_filter` unless `RUST_LOG` is
/// set, in `format` unless `KOMMO_SYNC_LOG_FORMAT` says otherwise. A second
/// call does nothing.
pub fn init(default_filter: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let format = std::env::var(LOG_FORMAT_ENV_VAR)
        .ok()
        .and_then(|v| LogFormat::parse(&v))
        .unwrap_or(format);
    let json = format == LogFormat::Json;
    // Colour only on a terminal: journald and log files get plain text, so
    // `alert="token_rejected"` can be grepped.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(|| LogWriter);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A subscriber already installed (tests) is fine.
    drop(result);
}

/// The progress line being drawn on stderr, if any: log lines are written
/// with it cleared, then it is drawn again, so the two never mix.
static PROGRESS_LINE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Sets (or, with `None`, forgets) the progress line log lines must step around.
pub fn set_progress_line(bar: Option<ProgressBar>) {
    *PROGRESS_LINE.lock_anyway() = bar;
}

/// stderr, stepping around the progress line.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = PROGRESS_LINE.lock_anyway().clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
