//! Settings: built-in defaults, then the TOML file, then `KOMMO_SYNC__SECTION__KEY`
//! environment variables, validated into typed values before anything runs.
//!
//! Every mistake is reported here, with the key and the fix, so that a bad
//! configuration exits 2 before a single request is sent.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::token::TokenSource;

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
}

/// The metrics and health endpoint of the daemon.
#[derive(Clone, Debug, Default)]
pub struct MetricsSettings {
    /// Where `/metrics` and `/healthz` are served; `None`: not served.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    kommo: RawKommo,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "text".into(),
        }
    }
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawKommo {
    subdomain: Option<String>,
    base_url: Option<String>,
    token_file: Option<PathBuf>,
    requests_per_second: i64,
    page_size: i64,
    token_expiry_warning_days: i64,
    connect_timeout_seconds: i64,
    request_timeout_seconds: i64,
    max_retries: i64,
}

impl Default for RawKommo {
    fn default() -> Self {
        RawKommo {
            subdomain: None,
            base_url: None,
            token_file: None,
            requests_per_second: 7,
            page_size: 250,
            token_expiry_warning_days: 14,
            connect_timeout_seconds: 10,
            request_timeout_seconds: 60,
            max_retries: 5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    path: PathBuf,
    max_size_mib: Option<i64>,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            path: PathBuf::from("kommo-sync.sqlite"),
            max_size_mib: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSchedule {
    incremental: String,
    full: String,
}

impl Default for RawSchedule {
    fn default() -> Self {
        RawSchedule {
            incremental: "0 */5 * * * *".into(),
            full: "0 17 3 * * *".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSync {
    overlap_seconds: i64,
    parallel_windows: i64,
    blocked_retry_seconds: i64,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            overlap_seconds: 300,
            parallel_windows: 4,
            blocked_retry_seconds: 900,
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

    fn validate(raw: RawSettings, source_file: Option<PathBuf>) -> Result<Settings, ConfigError> {
        let k = raw.kommo;
        let base_url = match (&k.base_url, &k.subdomain) {
            (Some(url), _) => Some(parse_base_url(url)?),
            (None, Some(sub)) => Some(subdomain_url(sub)?),
            (None, None) => None,
        };
        let requests_per_second = in_range(
            "kommo.requests_per_second",
            k.requests_per_second,
            1,
            1000,
            "set it to the number of requests Kommo allows per second (7 by default)",
        )?;
        let page_size = in_range(
            "kommo.page_size",
            k.page_size,
            1,
            i64::from(MAX_PAGE_SIZE),
            "Kommo returns at most 250 leads per page; use a value from 1 to 250",
        )?;
        let token_expiry_warning_days = in_range(
            "kommo.token_expiry_warning_days",
            k.token_expiry_warning_days,
            0,
            3650,
            "use a number of days, e.g. 14",
        )?;
        let connect = in_range(
            "kommo.connect_timeout_seconds",
            k.connect_timeout_seconds,
            1,
            600,
            "use a number of seconds, e.g. 10",
        )?;
        let request = in_range(
            "kommo.request_timeout_seconds",
            k.request_timeout_seconds,
            1,
            3600,
            "use a number of seconds, e.g. 60",
        )?;
        let max_retries = in_range(
            "kommo.max_retries",
            k.max_retries,
            0,
            100,
            "use a small number, e.g. 5",
        )?;
        if let Some(path) = &k.token_file
            && path.as_os_str().is_empty()
        {
            return Err(invalid(
                "kommo.token_file",
                "is empty; give the path of the file holding the token, or remove the key",
            ));
        }
        if raw.database.path.as_os_str().is_empty() {
            return Err(invalid(
                "database.path",
                "is empty; give the path of the SQLite file, e.g. /var/lib/kommo-sync/mirror.sqlite",
            ));
        }
        let incremental = CronSchedule::parse("schedule.incremental", &raw.schedule.incremental)?;
        let full = CronSchedule::parse("schedule.full", &raw.schedule.full)?;
        let parallel_windows = in_range(
            "sync.parallel_windows",
            raw.sync.parallel_windows,
            1,
            16,
            "use 1 for one sequential walk, or up to 16 (4 by default)",
        )?;
        let overlap_seconds = in_range(
            "sync.overlap_seconds",
            raw.sync.overlap_seconds,
            1,
            86_400,
            "use a number of seconds of at least 1, e.g. 300 (the default); the overlap is what lets an incremental sync read changes that became visible late",
        )?;
        let blocked_retry_seconds = in_range(
            "sync.blocked_retry_seconds",
            raw.sync.blocked_retry_seconds,
            1,
            86_400,
            "use a number of seconds, e.g. 900 (15 minutes); probing a blocked account often keeps it blocked",
        )?;
        let max_size_mib = match raw.database.max_size_mib {
            None => None,
            Some(mib) => Some(in_range(
                "database.max_size_mib",
                mib,
                1,
                16_777_216,
                "use a size in MiB, e.g. 2048, or remove the key for no limit",
            )?),
        };
        let log = LogFormat::parse(&raw.log.format).ok_or_else(|| {
            invalid(
                "log.format",
                format!(
                    "{:?} is not a log format; use \"text\" or \"json\"",
                    raw.log.format
                ),
            )
        })?;
        Ok(Settings {
            log,
            kommo: KommoSettings {
                base_url,
                token: TokenSource::configured(k.token_file),
                requests_per_second,
                page_size,
                token_expiry_warning_days,
                connect_timeout: Duration::from_secs(u64::from(connect)),
                request_timeout: Duration::from_secs(u64::from(request)),
                max_retries,
            },
            database: DatabaseSettings {
                path: raw.database.path,
                max_size_mib,
            },
            schedule: ScheduleSettings { incremental, full },
            sync: SyncSettings {
                overlap_seconds,
                parallel_windows,
                blocked_retry_seconds,
            },
            metrics: MetricsSettings {
                listen: raw
                    .metrics
                    .listen
                    .as_deref()
                    .map(parse_listen)
                    .transpose()?,
            },
            source_file,
        })
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

fn in_range(
    key: &'static str,
    value: i64,
    min: i64,
    max: i64,
    fix: &str,
) -> Result<u32, ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            key,
            format!("{value} is out of range {min}..={max}; {fix}"),
        ));
    }
    u32::try_from(value).map_err(|_| invalid(key, format!("{value} is out of range; {fix}")))
}

fn subdomain_url(sub: &str) -> Result<Url, ConfigError> {
    let sub = sub.trim();
    let valid = !sub.is_empty()
        && sub.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !sub.starts_with('-');
    if !valid {
        return Err(invalid(
            "kommo.subdomain",
            format!(
                "{sub:?} is not a subdomain; use only the first part of the account address (acme for https://acme.kommo.com), or set kommo.base_url"
            ),
        ));
    }
    parse_base_url(&format!("https://{sub}.kommo.com"))
}

/// Parses `kommo.base_url`: https anywhere, plain http only to a loopback host.
pub fn parse_base_url(text: &str) -> Result<Url, ConfigError> {
    let mut url = Url::parse(text.trim()).map_err(|e| {
        invalid(
            "kommo.base_url",
            format!("{text:?} is not a URL ({e}); use e.g. https://acme.kommo.com"),
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "kommo.base_url",
            "must not contain credentials; the token goes in kommo.token_file or KOMMO_TOKEN",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(invalid(
                "kommo.base_url",
                format!(
                    "{url} uses plain http to a non-loopback host, which would send the token unencrypted; use https://"
                ),
            ));
        }
        other => {
            return Err(invalid(
                "kommo.base_url",
                format!("scheme {other:?} is not supported; use https://"),
            ));
        }
    }
    // API paths are joined to the base: a base path must end with '/' or
    // its last segment would be replaced (https://proxy/kommo -> https://proxy/api/...).
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            "kommo.base_url",
            format!("{text:?} has no host; use e.g. https://acme.kommo.com"),
        ));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Parses `metrics.listen`: an IP address and a port.
fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        invalid(
            "metrics.listen",
            format!(
                "{text:?} is not an IP address and port; use e.g. \"127.0.0.1:9187\", or remove the key to serve no metrics"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::validate(RawSettings::default(), None).unwrap();
        assert_eq!(s.kommo.requests_per_second, 7);
        assert_eq!(s.kommo.page_size, 250);
        assert_eq!(s.schedule.incremental, "0 */5 * * * *");
        assert!(s.kommo.base_url.is_none());
    }

    #[test]
    fn refuses_plain_http_except_loopback() {
        assert!(parse_base_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_base_url("http://localhost:1").is_ok());
        assert!(parse_base_url("http://[::1]:1").is_ok());
        let err = parse_base_url("http://acme.kommo.com")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kommo.base_url") && err.contains("https"),
            "{err}"
        );
    }

    #[test]
    fn a_base_path_keeps_its_last_segment() {
        let url = parse_base_url("https://proxy.example/kommo").unwrap();
        assert_eq!(
            url.join("api/v4/leads").unwrap().as_str(),
            "https://proxy.example/kommo/api/v4/leads"
        );
    }

    #[test]
    fn subdomain_becomes_kommo_url() {
        assert_eq!(
            subdomain_url("acme").unwrap().as_str(),
            "https://acme.kommo.com/"
        );
        assert!(subdomain_url("acme.kommo.com/x").is_err());
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_must_be_an_address() {
        let s = Settings::validate(RawSettings::default(), None).unwrap();
        assert_eq!(s.metrics.listen, None);
        let with = |listen: &str| {
            let mut raw = RawSettings::default();
            raw.metrics.listen = Some(listen.to_string());
            Settings::validate(raw, None)
        };
        let s = with("127.0.0.1:9187").unwrap();
        assert_eq!(s.metrics.listen, Some("127.0.0.1:9187".parse().unwrap()));
        assert!(with("[::1]:9187").is_ok());
        for bad in ["nonsense", "9187", "localhost:9187", ""] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.starts_with("metrics.listen"), "{err}");
        }
    }

    #[test]
    fn rejects_bad_cron() {
        assert!(CronSchedule::parse("schedule.full", "0 17 3 * * *").is_ok());
        let err = CronSchedule::parse("schedule.full", "every day")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("schedule.full"), "{err}");
    }
}
