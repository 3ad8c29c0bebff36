//! From the configuration as written to typed [`Settings`]: every value
//! checked, and every mistake reported with its key and the fix, so that a
//! bad configuration exits 2 before a single request is sent.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use super::raw::RawSettings;
use super::*;
use crate::kommo::{ENTITIES, Entity, EntitySet, LEADS};
use crate::token::TokenSource;

impl Settings {
    pub(super) fn validate(
        raw: RawSettings,
        source_file: Option<PathBuf>,
    ) -> Result<Settings, ConfigError> {
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
        let entities = entity_set(&raw.sync.entities)?;
        let structure_refresh_minutes = in_range(
            "sync.structure_refresh_minutes",
            raw.sync.structure_refresh_minutes,
            0,
            10_080,
            "use a number of minutes up to 10080 (a week), e.g. 60 (the default), or 0 to read the structure at every sync",
        )?;
        let postgres = postgres_settings(&raw.database)?;
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
                postgres,
            },
            schedule: ScheduleSettings { incremental, full },
            sync: SyncSettings {
                overlap_seconds,
                parallel_windows,
                blocked_retry_seconds,
                entities,
                structure_refresh_minutes,
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
}

pub(super) fn in_range(
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

pub(super) fn subdomain_url(sub: &str) -> Result<Url, ConfigError> {
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

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Parses `metrics.listen`: an IP address and a port.
pub(super) fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        invalid(
            "metrics.listen",
            format!(
                "{text:?} is not an IP address and port; use e.g. \"127.0.0.1:9187\", or remove the key to serve no metrics"
            ),
        )
    })
}

/// `sync.entities`: known names, leads among them (every other entity hangs
/// off the leads' links), each once.
fn entity_set(names: &[String]) -> Result<EntitySet, ConfigError> {
    let key = "sync.entities";
    let known = || {
        ENTITIES
            .iter()
            .map(|e| format!("\"{}\"", e.plural))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut set = EntitySet::NONE;
    for name in names {
        let Some(entity) = Entity::named(name) else {
            return Err(invalid(
                key,
                format!(
                    "{name:?} is not an entity kommo-sync mirrors; use some of {}",
                    known()
                ),
            ));
        };
        if set.contains(entity) {
            return Err(invalid(
                key,
                format!("names {name:?} twice; list each entity once"),
            ));
        }
        set = set.with(entity);
    }
    if !set.contains(&LEADS) {
        return Err(invalid(
            key,
            format!(
                "must include \"leads\" (the mirror is of leads first); e.g. [{}]",
                known()
            ),
        ));
    }
    Ok(set)
}

/// `database.url`, `database.schema` and `database.password_file`: the
/// PostgreSQL mirror, or `None` for SQLite. The URL is never shown with its
/// password.
fn postgres_settings(
    raw: &super::raw::RawDatabase,
) -> Result<Option<PostgresSettings>, ConfigError> {
    let Some(text) = &raw.url else {
        if raw.schema != "public" {
            return Err(invalid(
                "database.schema",
                "is for PostgreSQL; set database.url too, or remove database.schema",
            ));
        }
        return Ok(None);
    };
    let shown = crate::store::without_password_text(text);
    let url = Url::parse(text).map_err(|e| {
        invalid(
            "database.url",
            format!("{shown:?} is not a URL ({e}); write it as postgres://USER@HOST:PORT/DATABASE"),
        )
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(invalid(
            "database.url",
            format!(
                "{shown:?} is not a PostgreSQL URL; write it as postgres://USER@HOST:PORT/DATABASE, or remove database.url to use the SQLite file of database.path"
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            "database.url",
            format!("{shown:?} names no host; write it as postgres://USER@HOST:PORT/DATABASE"),
        ));
    }
    if raw.max_size_mib.is_some() {
        return Err(invalid(
            "database.max_size_mib",
            "is for the SQLite file; remove it when database.url is set (limit the PostgreSQL database on the server)",
        ));
    }
    let schema = &raw.schema;
    let plain = schema.len() <= 63
        && schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(invalid(
            "database.schema",
            format!(
                "{schema:?} is not a plain schema name; use lower-case letters, digits and _ (at most 63, not starting with a digit), e.g. \"acme\""
            ),
        ));
    }
    if let Some(path) = &raw.password_file
        && path.as_os_str().is_empty()
    {
        return Err(invalid(
            "database.password_file",
            "is empty; give the path of the file holding the database password, or remove the key",
        ));
    }
    Ok(Some(PostgresSettings {
        url,
        schema: schema.clone(),
        password_file: raw.password_file.clone(),
    }))
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
    fn entities_are_all_three_by_default_and_must_be_known_unique_and_include_leads() {
        let s = Settings::validate(RawSettings::default(), None).unwrap();
        assert_eq!(s.sync.entities, EntitySet::ALL);
        let with = |names: &[&str]| {
            let mut raw = RawSettings::default();
            raw.sync.entities = names.iter().map(|n| n.to_string()).collect();
            Settings::validate(raw, None)
        };
        assert_eq!(with(&["leads"]).unwrap().sync.entities, EntitySet::LEADS);
        let s = with(&["companies", "leads", "contacts"]).unwrap();
        assert_eq!(s.sync.entities, EntitySet::ALL);
        for (bad, says) in [
            (&["leads", "tasks"][..], "\"tasks\" is not an entity"),
            (&["leads", "leads"][..], "twice"),
            (&["contacts"][..], "must include \"leads\""),
            (&[][..], "must include \"leads\""),
        ] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("sync.entities") && err.contains(says),
                "{err}"
            );
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
