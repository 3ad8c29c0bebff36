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

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::alert::Alert;
use crate::attempt::SyncService;
use crate::config::{CronSchedule, ScheduleSettings};
use crate::store::RunKind;

/// A failure that stops the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start the scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
}

/// First delay before a failed full sync is tried again by an incremental tick.
const FULL_RETRY_FIRST: Duration = Duration::from_secs(60);
/// Longest delay between retries of a failing full sync.
const FULL_RETRY_MAX: Duration = Duration::from_secs(3600);

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

/// The cron of the scheduler's heartbeat job: every second.
const HEARTBEAT_SCHEDULE: &str = "* * * * * *";
/// The scheduler is taken for wedged when it has not beaten for this long
/// (or for two watchdog pings, if longer), counted as in
/// [`Heartbeat::is_alive`].
const HEARTBEAT_STALE: Duration = Duration::from_secs(3);

/// When the scheduler last ran its heartbeat job, on both clocks.
///
/// The heartbeat is a job of the scheduler, run the way the sync jobs are,
/// so it shows the scheduler still starts jobs. Its jobs fire when the wall
/// clock reaches their cron time: a wall clock stepped back (NTP) holds every
/// job, the heartbeat too, until it is back where it was. So the time since
/// the last beat is counted on the monotonic clock but never beyond what the
/// wall clock moved: a clock step does not make a healthy scheduler look
/// wedged, and a scheduler that starts no job while the wall clock moves on
/// is still found out.
#[derive(Clone, Debug)]
struct Heartbeat(Arc<std::sync::Mutex<Beat>>);

#[derive(Clone, Copy, Debug)]
struct Beat {
    /// The monotonic instant of the beat.
    at: Instant,
    /// The wall-clock time of the beat.
    wall: SystemTime,
}

impl Heartbeat {
    fn new() -> Heartbeat {
        Heartbeat::new_at(Instant::now(), SystemTime::now())
    }

    fn new_at(at: Instant, wall: SystemTime) -> Heartbeat {
        Heartbeat(Arc::new(std::sync::Mutex::new(Beat { at, wall })))
    }

    fn beat(&self) {
        self.beat_at(Instant::now(), SystemTime::now());
    }

    fn beat_at(&self, at: Instant, wall: SystemTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Beat { at, wall };
    }

    /// Whether the scheduler beat within `stale` of `now` (`wall_now` on the
    /// wall clock), counting only time that both clocks saw pass.
    fn is_alive(&self, now: Instant, wall_now: SystemTime, stale: Duration) -> bool {
        let last = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(last.at);
        // Zero while the wall clock is behind the beat (stepped back).
        let wall_elapsed = wall_now.duration_since(last.wall).unwrap_or_default();
        elapsed.min(wall_elapsed) <= stale
    }
}

/// What the daemon runs at start: a full sync when none is complete yet, one
/// is unfinished, or `full` fired since the last complete one started (the
/// machine was off at the nightly hour); else an incremental sync.
fn start_kind(
    unfinished_full: bool,
    last_full_ok: Option<i64>,
    full: &CronSchedule,
    now: i64,
) -> RunKind {
    let Some(last) = last_full_ok else {
        return RunKind::Full;
    };
    let missed = chrono::DateTime::from_timestamp(last, 0)
        .and_then(|from| full.cron().find_next_occurrence(&from, false).ok())
        .is_some_and(|next| next.timestamp() <= now);
    if unfinished_full || missed {
        RunKind::Full
    } else {
        RunKind::Incremental
    }
}

/// Holds ticks back while the account is blocked or unpaid.
#[derive(Debug)]
struct ClosedAccountGate {
    /// Time between two probes of a closed account.
    retry: Duration,
    /// No attempt before this instant.
    closed_until: Option<Instant>,
}

impl ClosedAccountGate {
    /// Whether a tick at `now` may send requests.
    fn is_open(&self, now: Instant) -> bool {
        self.closed_until.is_none_or(|until| now >= until)
    }

    /// An attempt ended at `now`, with the alert it raised.
    fn attempt_ended(&mut self, alert: Option<Alert>, now: Instant) {
        self.closed_until = alert
            .is_some_and(Alert::closes_account)
            .then_some(now + self.retry);
    }
}

/// The sync a tick found running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunningSync {
    kind: RunKind,
    /// A full sync that began a new pass (rather than resuming one begun
    /// before): it covers a full tick that comes while it runs.
    fresh_pass: bool,
}

/// Whether a full sync is owed, and from when an incremental tick may do it.
#[derive(Debug, Default)]
struct FullDebt {
    /// A full sync is owed: its tick was skipped, it failed, or an
    /// unfinished one was found at start.
    owed: bool,
    /// Full syncs that failed in a row.
    failures: u32,
    /// An incremental tick does the owed full sync only from this instant.
    not_before: Option<Instant>,
}

impl FullDebt {
    /// A tick of `scheduled` kind got to run at `now`: what it runs. A full
    /// sync pays what was owed before it.
    fn start_tick(&mut self, scheduled: RunKind, now: Instant) -> RunKind {
        let retry_allowed = self.not_before.is_none_or(|at| now >= at);
        if scheduled == RunKind::Full || (self.owed && retry_allowed) {
            self.owed = false;
            RunKind::Full
        } else {
            RunKind::Incremental
        }
    }

    /// A full tick found a sync running.
    fn full_tick_skipped(&mut self, running: Option<RunningSync>) {
        let covered = running.is_some_and(|r| r.kind == RunKind::Full && r.fresh_pass);
        if !covered {
            // The next tick that runs does the full sync, whatever the
            // retry delay of an earlier failure said.
            self.owed = true;
            self.not_before = None;
        }
    }

    /// A full sync ended (`ok`) or failed at `now`. A full tick skipped while
    /// it ran and not covered by it stays owed.
    fn full_ended(&mut self, ok: bool, now: Instant) {
        if ok {
            self.failures = 0;
            self.not_before = None;
            return;
        }
        self.owed = true;
        self.failures = self.failures.saturating_add(1);
        let delay = FULL_RETRY_FIRST
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(FULL_RETRY_MAX);
        self.not_before = Some(now + delay);
    }
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
        self.full_debt.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, ClosedAccountGate> {
        self.closed_account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn running_sync(&self) -> std::sync::MutexGuard<'_, Option<RunningSync>> {
        self.running_sync.lock().unwrap_or_else(|e| e.into_inner())
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
                .syncer
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
    if let Ok(token) = state.service.token_source.read() {
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
        database = %state.service.syncer.store().path().display(),
        "kommo-sync daemon started"
    );
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    let watchdog = spawn_watchdog(state.clone());
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
    state.service.syncer.store().close().await;
    tracing::info!("kommo-sync daemon stopped");
    Ok(())
}

/// A daemon restarted while the account is blocked or unpaid (its last run
/// failed so, less than a retry period ago) waits out the rest of the period
/// before it probes again.
async fn seed_closed_account_gate(state: &TickState) {
    let Ok(runs) = state.service.syncer.store().recent_runs(1).await else {
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
    let store = state.service.syncer.store();
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

fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, states)
    {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Pings systemd's watchdog at a quarter of its interval, only while the
/// scheduler beats and the database answers.
fn spawn_watchdog(state: Arc<TickState>) -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    // A ping every quarter of the interval: one withheld ping never gets a
    // healthy service killed.
    let interval = Duration::from_micros(usec / 4).max(Duration::from_millis(1));
    let stale = HEARTBEAT_STALE.max(2 * interval);
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            if !state
                .heartbeat
                .is_alive(Instant::now(), SystemTime::now(), stale)
            {
                tracing::error!("the scheduler stopped beating; withholding the watchdog ping");
            } else if state.service.syncer.store().ping().await {
                notify_systemd(&[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!("the database does not answer; withholding the watchdog ping");
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: RunKind = RunKind::Full;
    const INCREMENTAL: RunKind = RunKind::Incremental;

    fn running(kind: RunKind, fresh_pass: bool) -> Option<RunningSync> {
        Some(RunningSync { kind, fresh_pass })
    }

    /// The heartbeat as tokio-cron-scheduler runs it, second by second for
    /// `seconds`, judged at every step of 100 ms: every 500 ms (monotonic)
    /// the scheduler reads the wall clock and runs the job once it reaches
    /// the next whole second after the last run. `wall_offset(t)` is how far
    /// the wall clock is from the monotonic one at `t` (a step changes it);
    /// `wedged_at` stops the scheduler. Returns, per step, the time, whether
    /// [`Heartbeat::is_alive`] holds, and the monotonic age of the last beat
    /// (what the rule before wall-clock steps were allowed for judged alone).
    fn run_heartbeat(
        seconds: u64,
        wall_offset: impl Fn(Duration) -> i64,
        wedged_at: Option<Duration>,
    ) -> Vec<(Duration, bool, Duration)> {
        let start = Instant::now();
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let wall = |t: Duration| {
            let offset = wall_offset(t);
            let shifted = epoch + t;
            if offset >= 0 {
                shifted + Duration::from_secs(offset.unsigned_abs())
            } else {
                shifted - Duration::from_secs(offset.unsigned_abs())
            }
        };
        let next_second = |w: SystemTime| {
            let secs = w.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs + 1)
        };
        let heartbeat = Heartbeat::new_at(start, wall(Duration::ZERO));
        let mut next_run = next_second(wall(Duration::ZERO));
        let mut last_beat = start;
        let mut seen = Vec::new();
        let step = Duration::from_millis(100);
        let mut t = Duration::ZERO;
        while t <= Duration::from_secs(seconds) {
            let now = start + t;
            let running = wedged_at.is_none_or(|at| t < at);
            if running && t.as_millis().is_multiple_of(500) && wall(t) >= next_run {
                heartbeat.beat_at(now, wall(t));
                last_beat = now;
                next_run = next_second(wall(t));
            }
            let alive = heartbeat.is_alive(now, wall(t), HEARTBEAT_STALE);
            seen.push((t, alive, now - last_beat));
            t += step;
        }
        seen
    }

    /// How long, in all, `seen` was not taken as alive.
    fn time_not_alive(seen: &[(Duration, bool, Duration)]) -> Duration {
        let steps = seen.iter().filter(|(_, alive, _)| !alive).count();
        Duration::from_millis(100) * u32::try_from(steps).unwrap()
    }

    #[test]
    fn a_wall_clock_stepped_back_a_minute_withholds_no_ping() {
        // At 10 s NTP steps the wall clock back by 60 s.
        let seen = run_heartbeat(
            120,
            |t| if t < Duration::from_secs(10) { 0 } else { -60 },
            None,
        );
        assert_eq!(time_not_alive(&seen), Duration::ZERO);
        // The beats did stop for a minute. The rule before, the beat's
        // monotonic age alone, withheld the pings for 57.9 s of it.
        let withheld_by_age = seen
            .iter()
            .filter(|(_, _, age)| *age > HEARTBEAT_STALE)
            .count();
        assert_eq!(withheld_by_age, 579, "steps of 100 ms");
        // A step forward neither.
        let seen = run_heartbeat(
            120,
            |t| if t < Duration::from_secs(10) { 0 } else { 60 },
            None,
        );
        assert_eq!(time_not_alive(&seen), Duration::ZERO);
    }

    /// The first step of `seen` not taken as alive, checking that no later
    /// one is: a wedged scheduler stays taken for wedged.
    fn taken_for_wedged_at(seen: &[(Duration, bool, Duration)]) -> Duration {
        let first = seen
            .iter()
            .position(|(_, alive, _)| !alive)
            .expect("taken for wedged");
        assert!(seen[first..].iter().all(|(_, alive, _)| !alive), "{seen:?}");
        seen[first].0
    }

    #[test]
    fn a_scheduler_that_stops_beating_is_taken_for_wedged() {
        let wedged_at = Duration::from_secs(10);
        // The last beat is at 9 s: wedged once it is over 3 s old.
        let seen = run_heartbeat(30, |_| 0, Some(wedged_at));
        assert_eq!(taken_for_wedged_at(&seen), Duration::from_millis(12_100));
        // Wedged as the wall clock steps back a minute: found out once the
        // wall clock is again over 3 s past the last beat, a minute later.
        let seen = run_heartbeat(90, |t| if t < wedged_at { 0 } else { -60 }, Some(wedged_at));
        assert_eq!(taken_for_wedged_at(&seen), Duration::from_millis(72_100));
        // Wedged as the wall clock steps forward: found out as without a step.
        let seen = run_heartbeat(30, |t| if t < wedged_at { 0 } else { 60 }, Some(wedged_at));
        assert_eq!(taken_for_wedged_at(&seen), Duration::from_millis(12_100));
    }

    #[test]
    fn the_first_sync_is_full_until_one_completes_or_when_the_nightly_one_was_missed() {
        let nightly = CronSchedule::parse("schedule.full", "0 17 3 * * *").unwrap();
        let day = 86_400;
        // 2026-11-30 03:17:00 UTC, the nightly hour.
        let nightly_at = 1_796_008_620;
        assert_eq!(
            start_kind(false, None, &nightly, nightly_at),
            FULL,
            "never completed"
        );
        assert_eq!(
            start_kind(true, Some(nightly_at - 60), &nightly, nightly_at + 3_600),
            FULL,
            "an unfinished one resumes"
        );
        assert_eq!(
            start_kind(false, Some(nightly_at), &nightly, nightly_at + day - 60),
            INCREMENTAL,
            "the last nightly sync is recent"
        );
        assert_eq!(
            start_kind(false, Some(nightly_at), &nightly, nightly_at + day + 60),
            FULL,
            "the machine was off at the nightly hour"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_account_is_probed_once_per_retry_period_then_synced_again() {
        let retry = Duration::from_secs(15 * 60);
        let mut gate = ClosedAccountGate {
            retry,
            closed_until: None,
        };
        let tick = Duration::from_secs(2);
        let start = Instant::now();
        let mut probes = Vec::new();
        // Blocked for 40 minutes; a tick every 2 seconds for an hour.
        while Instant::now() < start + Duration::from_secs(3600) {
            let now = Instant::now();
            if gate.is_open(now) {
                probes.push(now - start);
                let blocked = now < start + Duration::from_secs(40 * 60);
                gate.attempt_ended(blocked.then_some(Alert::AccountBlocked), now);
            }
            tokio::time::sleep(tick).await;
        }
        let blocked_probes: Vec<_> = probes
            .iter()
            .filter(|t| **t < Duration::from_secs(40 * 60))
            .collect();
        assert_eq!(blocked_probes.len(), 3, "{blocked_probes:?}");
        for pair in blocked_probes.windows(2) {
            assert!(*pair[1] - *pair[0] >= retry, "{blocked_probes:?}");
        }
        // Unblocked at 40 min: the probe at 45 min passes, then every tick syncs.
        let after = probes.len() - blocked_probes.len();
        assert!(
            after >= 450,
            "synced {after} times after the block was lifted"
        );
        assert_eq!(
            probes.iter().find(|t| **t >= Duration::from_secs(40 * 60)),
            Some(&Duration::from_secs(45 * 60))
        );
        // Any other failure does not hold ticks back.
        gate.attempt_ended(Some(Alert::TokenRejected), Instant::now());
        assert!(gate.is_open(Instant::now()));
        gate.attempt_ended(Some(Alert::AccountUnpaid), Instant::now());
        assert!(!gate.is_open(Instant::now() + Duration::from_secs(60)));
    }

    #[test]
    fn an_owed_full_sync_runs_once_then_ticks_are_incremental_again() {
        let now = Instant::now();
        let mut debt = FullDebt {
            owed: true,
            ..FullDebt::default()
        };
        assert_eq!(debt.start_tick(INCREMENTAL, now), FULL);
        debt.full_ended(true, now);
        assert_eq!(debt.start_tick(INCREMENTAL, now), INCREMENTAL, "paid");
        assert_eq!(debt.start_tick(INCREMENTAL, now), INCREMENTAL);
        assert_eq!(debt.start_tick(FULL, now), FULL, "a full tick always runs");
    }

    #[test]
    fn a_skipped_full_tick_is_owed_unless_a_fresh_full_pass_is_running() {
        let now = Instant::now();
        let mut debt = FullDebt::default();
        assert_eq!(debt.start_tick(FULL, now), FULL);
        debt.full_tick_skipped(running(FULL, true));
        debt.full_ended(true, now);
        assert_eq!(
            debt.start_tick(INCREMENTAL, now),
            INCREMENTAL,
            "a pass begun before the tick and ended after it covers it"
        );

        assert_eq!(debt.start_tick(FULL, now), FULL);
        debt.full_tick_skipped(running(FULL, false));
        debt.full_ended(true, now);
        assert_eq!(
            debt.start_tick(INCREMENTAL, now),
            FULL,
            "a resumed pass began before the tick: still owed after it ends"
        );
        debt.full_ended(true, now);
        assert_eq!(debt.start_tick(INCREMENTAL, now), INCREMENTAL, "paid");

        debt.full_tick_skipped(running(INCREMENTAL, false));
        assert_eq!(debt.start_tick(INCREMENTAL, now), FULL);
    }

    #[test]
    fn a_skipped_full_tick_lifts_the_retry_delay() {
        let start = Instant::now();
        let mut debt = FullDebt::default();
        assert_eq!(debt.start_tick(FULL, start), FULL);
        debt.full_ended(false, start);
        assert_eq!(debt.start_tick(INCREMENTAL, start), INCREMENTAL);
        debt.full_tick_skipped(running(INCREMENTAL, false));
        assert_eq!(
            debt.start_tick(INCREMENTAL, start),
            FULL,
            "the next tick that runs does the skipped full sync"
        );
    }

    #[test]
    fn a_failing_full_sync_is_retried_with_a_growing_delay() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut debt = FullDebt::default();
        assert_eq!(debt.start_tick(FULL, start), FULL);
        debt.full_ended(false, start);
        assert_eq!(
            debt.start_tick(INCREMENTAL, start + minute / 2),
            INCREMENTAL,
            "incremental ticks go on meanwhile"
        );
        assert_eq!(debt.start_tick(INCREMENTAL, start + minute), FULL);
        debt.full_ended(false, start);
        assert_eq!(debt.not_before, Some(start + 2 * minute));
        for _ in 0..20 {
            assert_eq!(debt.start_tick(FULL, start), FULL);
            debt.full_ended(false, start);
        }
        assert_eq!(debt.not_before, Some(start + FULL_RETRY_MAX));
        assert_eq!(debt.start_tick(INCREMENTAL, start), INCREMENTAL);
        assert_eq!(debt.start_tick(INCREMENTAL, start + FULL_RETRY_MAX), FULL);
        debt.full_ended(true, start);
        assert_eq!(
            debt.start_tick(INCREMENTAL, start + FULL_RETRY_MAX),
            INCREMENTAL,
            "paid"
        );
    }
}
