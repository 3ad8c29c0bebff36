//! Settings: built-in defaults, then the TOML file, then `KOMMO_SYNC__SECTION__KEY`
//! environment variables, validated into typed values before anything runs.
//!
//! Every mistake is reported here, with the key and the fix, so that a bad
//! configuration exits 2 before a single request is sent.
//!
//! This file holds the typed settings and the loading; `raw` the shape of
//! the file and its defaults; `validate` the checks from one to the other.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use crate::kommo::EntitySet;
use crate::token::TokenSource;

mod raw;
pub mod validate;

use raw::RawSettings;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV_VAR: &str = "KOMMO_SYNC_CONFIG";
/// The config file used when neither `--config` nor `$KOMMO_SYNC_CONFIG` is set, if it exists.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/kommo-sync/config.toml";
/// Kommo's documented maximum of leads per page.
pub const MAX_PAGE_SIZE: u32 = 250;

/// A configuration problem: what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration: {0}")]
    Load(String),
    #[error(
        "the configuration file {0} does not exist; pass an existing file with --config or set {CONFIG_ENV_VAR}"
    )]
    MissingFile(PathBuf),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Everything the program needs, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub kommo: KommoSettings,
    pub database: DatabaseSettings,
    pub schedule: ScheduleSettings,
    pub sync: SyncSettings,
    /// How the log is written.
    pub log: LogFormat,
    /// The daemon's metrics endpoint (`[metrics]`).
    pub metrics: MetricsSettings,
    /// The config file that was read, if any (for messages).
    pub source_file: Option<PathBuf>,
}

/// How to reach Kommo.
#[derive(Clone, Debug)]
pub struct KommoSettings {
    /// Base URL of the account (`https://SUBDOMAIN.kommo.com`); `None` when neither
    /// `kommo.subdomain` nor `kommo.base_url` is set (fine for `--status`).
    pub base_url: Option<Url>,
    /// Where the token is read from at each sync.
    pub token: TokenSource,
    /// Never more requests than this in any one-second window.
    pub requests_per_second: u32,
    /// Leads per request, 1..=250.
    pub page_size: u32,
    /// Warn this many days before the token's `exp`.
    pub token_expiry_warning_days: u32,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout for a whole request, body included.
    pub request_timeout: Duration,
    /// Retries of one request after a transient failure (429, 5xx, timeout, bad body).
    pub max_retries: u32,
}

/// Where the mirror lives.
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// The SQLite file of the mirror.
    pub path: PathBuf,
    /// The largest size the mirror may grow to, in MiB (a disk budget);
    /// `None` for no limit. A sync that would pass it fails, nothing half-written.
    pub max_size_mib: Option<u32>,
    /// The mirror in PostgreSQL instead (`database.url`).
    pub postgres: Option<PostgresSettings>,
}

/// The PostgreSQL mirror: `database.url`, `database.schema`,
/// `database.password_file`.
#[derive(Clone)]
pub struct PostgresSettings {
    /// The server and database, possibly with a password: shown only
    /// through [`crate::store::without_password`].
    pub url: Url,
    /// This account's schema.
    pub schema: String,
    /// The file holding the password, if any.
    pub password_file: Option<PathBuf>,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &crate::store::without_password(&self.url))
            .field("schema", &self.schema)
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// The systemd credential (`LoadCredential=database-password:…`) read for
/// the PostgreSQL password when neither the URL nor `database.password_file`
/// gives one.
pub const DATABASE_PASSWORD_CREDENTIAL: &str = "database-password";

impl DatabaseSettings {
    /// Where the mirror is, the PostgreSQL password read from its file or
    /// credential; `Err` says what is wrong (a configuration error).
    pub fn target(&self) -> Result<crate::store::Target, String> {
        let Some(pg) = &self.postgres else {
            return Ok(crate::store::Target::Sqlite {
                path: self.path.clone(),
                max_size_mib: self.max_size_mib,
            });
        };
        let mut url = pg.url.clone();
        if url.password().is_none() {
            let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
                .map(|dir| PathBuf::from(dir).join(DATABASE_PASSWORD_CREDENTIAL))
                .filter(|path| path.exists());
            let (file, key) = match (&pg.password_file, credential) {
                (Some(file), _) => (Some(file.clone()), "database.password_file"),
                (None, Some(file)) => (Some(file), "the database-password credential"),
                (None, None) => (None, ""),
            };
            if let Some(file) = file {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    format!(
                        "cannot read the database password from {} ({key}): {e}; check the path and that this user may read it",
                        file.display()
                    )
                })?;
                let password = text.trim_end_matches(['\r', '\n']);
                if password.is_empty() {
                    return Err(format!(
                        "the database password file {} ({key}) is empty; write the password in it",
                        file.display()
                    ));
                }
                if url.set_password(Some(password)).is_err() {
                    return Err(format!(
                        "database.url {} cannot carry a password; give it a user (postgres://USER@HOST/DATABASE)",
                        crate::store::without_password(&url)
                    ));
                }
            }
        }
        Ok(crate::store::Target::Postgres {
            url,
            schema: pg.schema.clone(),
        })
    }
}

/// When the daemon syncs (cron expressions with a seconds field, UTC).
#[derive(Clone, Debug)]
pub struct ScheduleSettings {
    pub incremental: CronSchedule,
    pub full: CronSchedule,
}

/// A cron expression, parsed once when the configuration is read: six
/// fields, seconds first, a date matching both day and weekday when both are
/// set (the syntax the scheduler uses).
#[derive(Clone, Debug)]
pub struct CronSchedule {
    text: String,
    cron: croner::Cron,
}

impl CronSchedule {
    /// Parses the value of `key`; the error names the key and the syntax.
    pub fn parse(key: &'static str, expr: &str) -> Result<CronSchedule, ConfigError> {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map(|cron| CronSchedule {
                text: expr.to_string(),
                cron,
            })
            .map_err(|e| {
                invalid(
                    key,
                    format!("{expr:?} is not a cron expression with seconds ({e}); use six fields \"sec min hour day month weekday\", e.g. \"0 */5 * * * *\""),
                )
            })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed schedule.
    pub fn cron(&self) -> &croner::Cron {
        &self.cron
    }
}

impl std::fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq<&str> for CronSchedule {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

/// Tuning of the sync algorithm.
#[derive(Clone, Debug)]
pub struct SyncSettings {
    /// An incremental sync starts this many seconds before the saved cursor,
    /// so that writes that became visible late are still met; 1..=86400.
    pub overlap_seconds: u32,
    /// Windows of `updated_at` a full sync walks at once, so that requests
    /// overlap their round trips and use the whole rate allowance.
    pub parallel_windows: u32,
    /// While the account is blocked or unpaid, the daemon sends one probing
    /// attempt at most this often (seconds; 900 = 15 minutes).
    pub blocked_retry_seconds: u32,
    /// The entities mirrored (all three by default).
    pub entities: EntitySet,
    /// An incremental sync reads the account's structure when its last
    /// reading is at least this old (minutes; 0 = at every sync); a full
    /// sync always reads it.
    pub structure_refresh_minutes: u32,
}

/// The metrics and health endpoint of the daemon.
#[derive(Clone, Debug, Default)]
pub struct MetricsSettings {
    /// Where `/metrics` and `/healthz` are served; `None`: not served.
    pub listen: Option<SocketAddr>,
}

/// The format of log lines (`log.format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json` (any case).
    pub fn parse(value: &str) -> Option<LogFormat> {
        match value.trim().to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Which config file to read: `--config`, else `$KOMMO_SYNC_CONFIG`, else the
/// system file when it exists. A file named explicitly must exist.
pub fn config_file(cli_path: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    let named = cli_path
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CONFIG_ENV_VAR).map(PathBuf::from));
    match named {
        Some(path) if path.is_file() => Ok(Some(path)),
        Some(path) => Err(ConfigError::MissingFile(path)),
        None => {
            let system = PathBuf::from(SYSTEM_CONFIG_PATH);
            Ok(system.is_file().then_some(system))
        }
    }
}

impl Settings {
    /// Loads and validates the layered configuration.
    pub fn load(cli_path: Option<&Path>) -> Result<Settings, ConfigError> {
        let file = config_file(cli_path)?;
        let mut builder = config::Config::builder();
        if let Some(path) = &file {
            builder = builder.add_source(
                config::File::from(path.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix("KOMMO_SYNC")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(false),
        );
        let raw: RawSettings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| {
                ConfigError::Load(format!(
                    "{e}; check the keys against config/kommo-sync.example.toml"
                ))
            })?;
        Self::validate(raw, file)
    }

    /// The base URL, required by every mode that talks to Kommo.
    pub fn require_base_url(&self) -> Result<Url, ConfigError> {
        self.kommo.base_url.clone().ok_or_else(|| {
            invalid(
                "kommo.subdomain",
                "is not set; set kommo.subdomain = \"acme\" for https://acme.kommo.com, or kommo.base_url for another host",
            )
        })
    }
}
