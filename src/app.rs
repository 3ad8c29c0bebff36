//! The modes of the program, wired from validated settings, and the exit
//! status each outcome maps to.

use std::num::NonZeroU32;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Mode};
use crate::clock::unix_now;
use crate::config::{ConfigError, LogFormat, Settings};
use crate::exit;
use crate::kommo::{ClientOptions, KommoClient, KommoError, RecordQuery};
use crate::metrics::MetricsServer;
use crate::service::{BuildError, ServiceSpec, SyncService};
use crate::store::{RunKind, Store};
use crate::sync::SyncOptions;
use crate::telemetry;
use crate::token::{ExpiryState, expiry_state};

/// Runs the mode the command line selects and returns the exit status.
pub async fn run(cli: Cli) -> ExitCode {
    let mode = cli.mode();
    if mode == Mode::Demo {
        telemetry::init(telemetry::QUIET_FILTER, LogFormat::Text);
        return ExitCode::from(crate::demo::run().await);
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return config_error(&e),
    };
    telemetry::init(telemetry::DEFAULT_FILTER, settings.log);
    let code = match mode {
        Mode::Status => status(&settings).await,
        Mode::Check => check(&settings).await,
        Mode::Backfill => one_shot(&settings, RunKind::Full).await,
        Mode::Once => one_shot(&settings, RunKind::Incremental).await,
        Mode::Daemon => daemon(&settings).await,
        Mode::Demo => unreachable!("handled above"),
    };
    ExitCode::from(code)
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("kommo-sync: configuration error: {e}");
    ExitCode::from(exit::CONFIG)
}

/// The client's options for the configured account.
fn client_options(settings: &Settings) -> Result<ClientOptions, String> {
    Ok(ClientOptions {
        requests_per_second: NonZeroU32::new(settings.kommo.requests_per_second)
            .ok_or("kommo.requests_per_second: must be at least 1")?,
        connect_timeout: settings.kommo.connect_timeout,
        request_timeout: settings.kommo.request_timeout,
        max_retries: settings.kommo.max_retries,
        ..ClientOptions::default()
    })
}

/// The client for the configured account. Validates what requests need.
fn build_client(settings: &Settings) -> Result<KommoClient, String> {
    let base = settings.require_base_url().map_err(|e| e.to_string())?;
    KommoClient::new(base, client_options(settings)?).map_err(|e| e.to_string())
}

/// What the configured service is built from; `Err` is a configuration error.
fn service_spec(settings: &Settings, with_metrics: bool) -> Result<ServiceSpec, String> {
    Ok(ServiceSpec {
        base_url: settings.require_base_url().map_err(|e| e.to_string())?,
        client: client_options(settings)?,
        database: settings.database.target()?,
        sync: SyncOptions {
            page_size: settings.kommo.page_size,
            overlap_seconds: settings.sync.overlap_seconds,
            parallel_windows: settings.sync.parallel_windows,
            entities: settings.sync.entities,
            structure_refresh_minutes: settings.sync.structure_refresh_minutes,
        },
        token: settings.kommo.token.clone(),
        token_expiry_warning_days: settings.kommo.token_expiry_warning_days,
        with_metrics,
    })
}

/// Builds the sync service, validating everything a sync needs (base URL,
/// readable token) before any request; `Err` is an exit status.
async fn build_service(settings: &Settings, with_metrics: bool) -> Result<SyncService, u8> {
    let config_error = |e: &dyn std::fmt::Display| {
        eprintln!("kommo-sync: configuration error: {e}");
        exit::CONFIG
    };
    let spec = service_spec(settings, with_metrics).map_err(|e| config_error(&e))?;
    if let Err(e) = settings.kommo.token.read() {
        return Err(config_error(&e));
    }
    SyncService::build(spec).await.map_err(|e| match e {
        BuildError::Config(e) => config_error(&e),
        BuildError::Store(e) => {
            eprintln!("kommo-sync: {e}");
            exit::FAILED
        }
    })
}

async fn one_shot(settings: &Settings, kind: RunKind) -> u8 {
    let service = match build_service(settings, false).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(crate::signals::cancel_on_signal(cancel.clone()));
    let progress = crate::progress::ProgressLine::start(
        service.store(),
        kind,
        settings.kommo.requests_per_second,
    );
    let outcome = service.attempt(kind, &cancel).await;
    if let Some(progress) = progress {
        progress.finish();
    }
    signals.abort();
    service.store().close().await;
    if let Some(error) = &outcome.error {
        eprintln!("kommo-sync: {kind} sync {}: {error}", outcome.status);
    }
    outcome.exit_status()
}

async fn daemon(settings: &Settings) -> u8 {
    let service = match build_service(settings, settings.metrics.listen.is_some()).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let metrics_server = match start_metrics(settings, &service).await {
        Ok(server) => server,
        Err(code) => return code,
    };
    let cancel = CancellationToken::new();
    tokio::spawn(crate::signals::cancel_on_signal(cancel.clone()));
    let blocked_retry =
        std::time::Duration::from_secs(u64::from(settings.sync.blocked_retry_seconds));
    let code = match crate::daemon::run(
        service,
        &settings.schedule,
        blocked_retry,
        cancel.cancelled_owned(),
    )
    .await
    {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("kommo-sync: {e}");
            exit::FAILED
        }
    };
    if let Some(server) = metrics_server {
        server.stop().await;
    }
    code
}

/// Serves the service's metrics when `metrics.listen` is set. `Err` is the
/// exit status (1: the address cannot be bound; systemd restarts the
/// service, as for any failure at start).
async fn start_metrics(
    settings: &Settings,
    service: &SyncService,
) -> Result<Option<MetricsServer>, u8> {
    let (Some(listen), Some(metrics)) = (settings.metrics.listen, service.metrics()) else {
        return Ok(None);
    };
    MetricsServer::start(listen, metrics.clone())
        .await
        .map(Some)
        .map_err(|e| {
            eprintln!("kommo-sync: {e}");
            exit::FAILED
        })
}

/// `--check`: configuration, token expiry, and one probe of the API.
async fn check(settings: &Settings) -> u8 {
    let client = match build_client(settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kommo-sync: configuration error: {e}");
            return exit::CONFIG;
        }
    };
    let token = match settings.kommo.token.read() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kommo-sync: configuration error: {e}");
            return exit::CONFIG;
        }
    };
    println!(
        "configuration: ok ({})",
        settings.source_file.as_ref().map_or_else(
            || "no file, defaults and environment".to_string(),
            |p| p.display().to_string(),
        )
    );
    if let Some(url) = &settings.kommo.base_url {
        println!("account URL:   {url}");
    }
    println!("token source:  {}", settings.kommo.token.describe());
    let now = unix_now();
    let expiry = expiry_state(&token, now, settings.kommo.token_expiry_warning_days);
    println!("token expiry:  {}", expiry.describe(now));
    if let ExpiryState::Expired { .. } = expiry {
        eprintln!(
            "kommo-sync: the token is expired; no request was sent; create a new long-lived token and replace it"
        );
        return exit::UNAUTHORIZED;
    }
    match client.fetch_account(&token).await {
        Ok(account) => {
            let field = |k: &str| {
                account.get(k).map_or_else(
                    || "?".to_string(),
                    |v| v.to_string().trim_matches('"').to_string(),
                )
            };
            println!(
                "API probe:     ok, account {} (id {}, subdomain {})",
                field("name"),
                field("id"),
                field("subdomain")
            );
        }
        Err(e) => return probe_failed(settings, &e),
    }
    // A listing that cannot match any lead (updated in the first second of
    // 1970): an account that honours filters answers 204.
    let probe = RecordQuery {
        updated_from: Some(1),
        updated_to: Some(1),
        page: 1,
        limit: 1,
        ..RecordQuery::default()
    };
    match client.fetch_records(&token, &probe).await {
        Ok(_) => {
            println!("API filters:   ok (filter[updated_at] is honoured)");
            exit::OK
        }
        Err(e) => {
            if matches!(e, KommoError::FilterIgnored { .. }) {
                println!("API filters:   NOT honoured: the sync cannot run on this account");
            }
            probe_failed(settings, &e)
        }
    }
}

/// Reports a failed `--check` probe (raising its alert) and returns the exit status.
fn probe_failed(settings: &Settings, error: &KommoError) -> u8 {
    let message = match error {
        KommoError::Unauthorized => crate::attempt::token_rejected_message(&settings.kommo.token),
        e => e.to_string(),
    };
    match error.alert() {
        Some(alert) => {
            crate::raise!(alert, "{message}");
            if !tracing::enabled!(tracing::Level::ERROR) {
                // Logging is off (RUST_LOG=off): --check still answers.
                eprintln!("kommo-sync: API probe failed: {message}");
            }
        }
        None => eprintln!("kommo-sync: API probe failed: {message}"),
    }
    match error {
        KommoError::Unauthorized => exit::UNAUTHORIZED,
        _ => exit::FAILED,
    }
}

/// `--status`: the state of the mirror, from the database only.
async fn status(settings: &Settings) -> u8 {
    let path = &settings.database.path;
    if settings.database.postgres.is_none() && !path.exists() {
        eprintln!(
            "kommo-sync: the mirror {} does not exist yet; run kommo-sync --backfill first (or check database.path)",
            path.display()
        );
        return exit::CONFIG;
    }
    let target = match settings.database.target() {
        Ok(target) => target,
        Err(e) => {
            eprintln!("kommo-sync: configuration error: {e}");
            return exit::CONFIG;
        }
    };
    let store = match Store::open_target(target).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kommo-sync: {e}");
            return exit::FAILED;
        }
    };
    match crate::status::print(&store, settings).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("kommo-sync: cannot read the mirror: {e}");
            exit::FAILED
        }
    }
}
