//! The daemon: incremental and full syncs on cron schedules, never two at
//! once, systemd readiness and watchdog, and a clean stop on SIGTERM/SIGINT.
//!
//! tokio-cron-scheduler starts a job at every tick even if the previous run of
//! it (or of the other job) is still going, so every tick first tries a
//! non-waiting lock: a tick that finds a sync running is skipped, not queued.
//! A skipped full tick is not lost: the next tick that gets to run does the
//! full sync instead (unless the sync it found running is a full sync that
//! began a new pass, which covers it). A full sync that fails is owed too, but retried with a
//! growing delay (one minute, doubling up to an hour) so that a full pass
//! that keeps failing does not turn every incremental tick into a full one.
//!
//! At start the daemon syncs at once rather than waiting for the first tick:
//! a full sync when the mirror never completed one (or has one to resume),
//! or when the full schedule fired while the daemon was down; otherwise an
//! incremental sync.
//!
//! An account that refuses everything until a person acts (blocked for abuse,
//! or unpaid) is probed rarely: after such an answer, ticks send nothing for
//! `sync.blocked_retry_seconds` (15 minutes by default); the next attempt
//! probes (raising the alert again if it still fails) and syncs if it passes.
//!
//! These decisions live in `policy`, as values tests drive without a
//! scheduler; readiness and the watchdog in `systemd`; this file wires them
//! to the scheduler.

mod policy;
mod systemd;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::alert::Alert;
use crate::config::ScheduleSettings;
use crate::service::SyncService;
use crate::store::RunKind;

use crate::poison::LockAnyway;
use policy::{ClosedAccountGate, FullDebt, RunningSync, start_kind};
use systemd::{HEARTBEAT_SCHEDULE, Heartbeat, notify_systemd, spawn_watchdog};

/// A failure that stops the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start the scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
}

/// For tests only, and only in debug builds (a release binary has no such
/// hook): stops the scheduler this many milliseconds after start while the
/// process keeps running, as a wedged scheduler would look, so a test can see
/// the watchdog pings stop.
#[cfg(debug_assertions)]
pub const WEDGE_ENV_VAR: &str = "KOMMO_SYNC_TEST_WEDGE_SCHEDULER_AFTER_MS";

#[cfg(debug_assertions)]
fn test_wedge_after() -> Option<Duration> {
    std::env::var(WEDGE_ENV_VAR)
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

/// Shared by the ticks of both schedules.
struct TickState {
    service: SyncService,
    /// Held while a sync runs.
    running: Mutex<()>,
    /// The sync running, readable without waiting for `running`.
    running_sync: std::sync::Mutex<Option<RunningSync>>,
    full_debt: std::sync::Mutex<FullDebt>,
    closed_account: std::sync::Mutex<ClosedAccountGate>,
    /// Beaten by the scheduler every second.
    heartbeat: Heartbeat,
    /// Stops the sync in flight.
    cancel: CancellationToken,
}

impl TickState {
    fn debt(&self) -> std::sync::MutexGuard<'_, FullDebt> {
        self.full_debt.lock_anyway()
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, ClosedAccountGate> {
        self.closed_account.lock_anyway()
    }

    fn running_sync(&self) -> std::sync::MutexGuard<'_, Option<RunningSync>> {
        self.running_sync.lock_anyway()
    }

    async fn on_tick(&self, scheduled: RunKind) {
        if self.cancel.is_cancelled() {
            return;
        }
        let Ok(_guard) = self.running.try_lock() else {
            if scheduled == RunKind::Full {
                let running = *self.running_sync();
                self.debt().full_tick_skipped(running);
            }
            tracing::info!(kind = %scheduled, "tick skipped: a sync is still running");
            return;
        };
        if !self.gate().is_open(Instant::now()) {
            if scheduled == RunKind::Full {
                self.debt().full_tick_skipped(None);
            }
            tracing::debug!(kind = %scheduled, "tick skipped: the account is blocked or unpaid; waiting to probe again");
            return;
        }
        let kind = self.debt().start_tick(scheduled, Instant::now());
        // Until known otherwise the sync does not cover a full tick skipped
        // meanwhile (that tick stays owed).
        *self.running_sync() = Some(RunningSync {
            kind,
            fresh_pass: false,
        });
        if kind == RunKind::Full {
            // Whether this sync begins a new pass, as the mirror says now (a
            // pass another process begins in between is not foreseen).
            let fresh_pass = self
                .service
                .store()
                .sync_state()
                .await
                .is_ok_and(|state| state.full_cursor.is_none());
            *self.running_sync() = Some(RunningSync { kind, fresh_pass });
        }
        let outcome = self.service.attempt(kind, &self.cancel).await;
        *self.running_sync() = None;
        self.gate().attempt_ended(outcome.alert, Instant::now());
        if let Some(until) = self.gate().closed_until {
            tracing::info!(
                probe_in_s = until.saturating_duration_since(Instant::now()).as_secs(),
                "no request until the next probe of the account"
            );
        }
        if kind == RunKind::Full && !self.cancel.is_cancelled() {
            let ok = outcome.status == crate::store::RunStatus::Ok;
            let mut debt = self.debt();
            debt.full_ended(ok, Instant::now());
            if let (false, Some(at)) = (ok, debt.not_before) {
                tracing::info!(
                    retry_in_s = at.saturating_duration_since(Instant::now()).as_secs(),
                    "the full sync will be tried again (it resumes where it stopped)"
                );
            }
        }
    }
}

/// Runs the daemon until `shutdown` completes, then lets the sync in flight
/// finish its page and returns.
pub async fn run(
    service: SyncService,
    schedule: &ScheduleSettings,
    blocked_retry: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let state = Arc::new(TickState {
        full_debt: std::sync::Mutex::default(),
        closed_account: std::sync::Mutex::new(ClosedAccountGate {
            retry: blocked_retry,
            closed_until: None,
        }),
        heartbeat: Heartbeat::new(),
        running: Mutex::new(()),
        running_sync: std::sync::Mutex::new(None),
        cancel: CancellationToken::new(),
        service,
    });
    if let Ok(token) = state.service.token_source().read() {
        state.service.check_expiry(&token);
    }
    seed_closed_account_gate(&state).await;
    let first = first_sync(&state, schedule).await;

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
    // The scheduler's heartbeat: the watchdog pings only while it beats.
    let heartbeat = state.heartbeat.clone();
    scheduler
        .add(Job::new_async(HEARTBEAT_SCHEDULE, move |_id, _lock| {
            let heartbeat = heartbeat.clone();
            Box::pin(async move { heartbeat.beat() })
        })?)
        .await?;
    scheduler.start().await?;
    tracing::info!(
        incremental = %schedule.incremental,
        full = %schedule.full,
        database = %state.service.store().describe(),
        "kommo-sync daemon started"
    );
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    let watchdog = spawn_watchdog(state.heartbeat.clone(), state.service.store().clone());
    #[cfg(debug_assertions)]
    if let Some(after) = test_wedge_after() {
        let mut wedged = scheduler.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            tracing::warn!("{WEDGE_ENV_VAR}: the scheduler stops while the process runs");
            let _ = wedged.shutdown().await;
        });
    }
    {
        let state = state.clone();
        tokio::spawn(async move { state.on_tick(first).await });
    }

    shutdown.await;
    tracing::info!("stop requested; finishing the page in flight");
    if let Some(task) = watchdog {
        task.abort();
    }
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    state.cancel.cancel();
    if let Err(e) = scheduler.shutdown().await {
        tracing::warn!(error = %e, "the scheduler did not stop cleanly");
    }
    // Wait for the sync in flight, if any, to commit its page and end.
    let _idle = state.running.lock().await;
    state.service.store().close().await;
    tracing::info!("kommo-sync daemon stopped");
    Ok(())
}

/// A daemon restarted while the account is blocked or unpaid (its last run
/// failed so, less than a retry period ago) waits out the rest of the period
/// before it probes again.
async fn seed_closed_account_gate(state: &TickState) {
    let Ok(runs) = state.service.store().recent_runs(1).await else {
        return;
    };
    let Some(last) = runs.first() else {
        return;
    };
    let closed = last.alert.is_some_and(Alert::closes_account);
    let ago = crate::clock::unix_now() - last.finished_at.unwrap_or(last.started_at);
    let mut gate = state.gate();
    let left = gate
        .retry
        .saturating_sub(Duration::from_secs(u64::try_from(ago).unwrap_or(0)));
    if closed && !left.is_zero() {
        tracing::info!(
            probe_in_s = left.as_secs(),
            "the account was blocked or unpaid at the last run; no request until the next probe"
        );
        gate.closed_until = Some(Instant::now() + left);
    }
}

/// The kind of the sync the daemon runs at start (see [`start_kind`]).
async fn first_sync(state: &TickState, schedule: &ScheduleSettings) -> RunKind {
    let store = state.service.store();
    let unfinished = store
        .sync_state()
        .await
        .is_ok_and(|s| s.full_cursor.is_some());
    let last_full_ok = store.last_ok_start(RunKind::Full).await.ok().flatten();
    let kind = start_kind(
        unfinished,
        last_full_ok,
        &schedule.full,
        crate::clock::unix_now(),
    );
    let why = match (kind, unfinished, last_full_ok) {
        (RunKind::Incremental, ..) => "the last full sync is recent",
        (RunKind::Full, true, _) => "an unfinished full sync resumes",
        (RunKind::Full, false, None) => "the mirror never completed a full sync",
        (RunKind::Full, false, Some(_)) => {
            "the scheduled full sync was missed while the daemon was down"
        }
    };
    tracing::info!(kind = %kind, "syncing at start: {why}");
    kind
}
