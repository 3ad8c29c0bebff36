//! The configuration as written: the shape of the TOML file and of the
//! `KOMMO_SYNC__SECTION__KEY` variables, with the built-in defaults, before
//! any check. Unknown keys are refused here.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    #[serde(default)]
    pub(super) kommo: RawKommo,
    #[serde(default)]
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) schedule: RawSchedule,
    #[serde(default)]
    pub(super) sync: RawSync,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub(super) format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "text".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawKommo {
    pub(super) subdomain: Option<String>,
    pub(super) base_url: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) requests_per_second: i64,
    pub(super) page_size: i64,
    pub(super) token_expiry_warning_days: i64,
    pub(super) connect_timeout_seconds: i64,
    pub(super) request_timeout_seconds: i64,
    pub(super) max_retries: i64,
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
pub(super) struct RawDatabase {
    pub(super) path: PathBuf,
    pub(super) max_size_mib: Option<i64>,
    pub(super) url: Option<String>,
    pub(super) schema: String,
    pub(super) password_file: Option<PathBuf>,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            path: PathBuf::from("kommo-sync.sqlite"),
            max_size_mib: None,
            url: None,
            schema: "public".to_string(),
            password_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSchedule {
    pub(super) incremental: String,
    pub(super) full: String,
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
pub(super) struct RawSync {
    pub(super) overlap_seconds: i64,
    pub(super) parallel_windows: i64,
    pub(super) blocked_retry_seconds: i64,
    pub(super) entities: Vec<String>,
    pub(super) structure_refresh_minutes: i64,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            overlap_seconds: 300,
            parallel_windows: 4,
            blocked_retry_seconds: 900,
            entities: vec!["leads".into(), "contacts".into(), "companies".into()],
            structure_refresh_minutes: 60,
        }
    }
}
