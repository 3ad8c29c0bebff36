//! The daemon: incremental and full syncs on cron schedules, never two at
//! once, systemd readiness and watchdog, and a clean stop on SIGTERM/SIGINT.
//!
//! tokio-cron-scheduler starts a job at every tick even if the previous run of
//! it (or of the other job) is still going, so every tick first tries a
//! non-waiting lock: a tick that finds a sync running is skipped, not queued.
//! A skipped full tick is not lost: the next tick that gets to run does the
//! full sync instead.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::attempt::SyncService;
use crate::config::ScheduleSettings;
use crate::store::RunKind;

/// A failure that stops the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start the scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
}

/// Shared by the ticks of both schedules.
struct TickState {
    service: SyncService,
    /// Held while a sync runs.
    running: Mutex<()>,
    /// A full sync is owed (its tick was skipped, or an unfinished one exists).
    full_due: AtomicBool,
    /// Stops the sync in flight.
    cancel: CancellationToken,
}

impl TickState {
    async fn on_tick(&self, kind: RunKind) {
        if self.cancel.is_cancelled() {
            return;
        }
        let Ok(_guard) = self.running.try_lock() else {
            if kind == RunKind::Full {
                self.full_due.store(true, Ordering::SeqCst);
            }
            tracing::info!(kind = %kind, "tick skipped: a sync is still running");
            return;
        };
        let kind = if self.full_due.swap(false, Ordering::SeqCst) {
            RunKind::Full
        } else {
            kind
        };
        let outcome = self.service.attempt(kind, &self.cancel).await;
        if kind == RunKind::Full
            && outcome.status != crate::store::RunStatus::Ok
            && !self.cancel.is_cancelled()
        {
            // Try the full sync again at the next tick (it resumes where it stopped).
            self.full_due.store(true, Ordering::SeqCst);
        }
    }
}

/// Runs the daemon until `shutdown` completes, then lets the sync in flight
/// finish its page and returns.
pub async fn run(
    service: SyncService,
    schedule: &ScheduleSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let state = Arc::new(TickState {
        full_due: AtomicBool::new(false),
        running: Mutex::new(()),
        cancel: CancellationToken::new(),
        service,
    });
    if let Ok(sync_state) = state.service.syncer.store().sync_state().await
        && sync_state.full_cursor.is_some()
    {
        tracing::info!("an unfinished full sync exists; the next tick resumes it");
        state.full_due.store(true, Ordering::SeqCst);
    }
    if let Ok(token) = state.service.token_source.read() {
        state.service.check_expiry(&token);
    }

    let mut scheduler = JobScheduler::new().await?;
    for (expr, kind) in [
        (&schedule.incremental, RunKind::Incremental),
        (&schedule.full, RunKind::Full),
    ] {
        let state = state.clone();
        scheduler
            .add(Job::new_async(expr.as_str(), move |_id, _lock| {
                let state = state.clone();
                Box::pin(async move { state.on_tick(kind).await })
            })?)
            .await?;
    }
    scheduler.start().await?;
    tracing::info!(
        incremental = %schedule.incremental,
        full = %schedule.full,
        database = %state.service.syncer.store().path().display(),
        "kommo-sync daemon started"
    );
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    let watchdog = spawn_watchdog(state.clone());

    shutdown.await;
    tracing::info!("stop requested; finishing the page in flight");
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    state.cancel.cancel();
    if let Err(e) = scheduler.shutdown().await {
        tracing::warn!(error = %e, "the scheduler did not stop cleanly");
    }
    // Wait for the sync in flight, if any, to commit its page and end.
    let _idle = state.running.lock().await;
    if let Some(task) = watchdog {
        task.abort();
    }
    state.service.syncer.store().close().await;
    tracing::info!("kommo-sync daemon stopped");
    Ok(())
}

fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, states)
    {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Pings systemd's watchdog at half its interval, only while the database answers.
fn spawn_watchdog(state: Arc<TickState>) -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let interval = Duration::from_micros(usec / 2);
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            if state.service.syncer.store().ping().await {
                notify_systemd(&[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!("the database does not answer; withholding the watchdog ping");
            }
        }
    }))
}
