//! The daemon's decisions, as plain values that tests drive without a
//! scheduler: which sync runs at start, which one a tick runs when a full
//! sync is owed, and how long a closed (blocked or unpaid) account is left
//! alone.

use std::time::Duration;

use tokio::time::Instant;

use crate::alert::Alert;
use crate::config::CronSchedule;
use crate::store::RunKind;

/// First delay before a failed full sync is tried again by an incremental tick.
const FULL_RETRY_FIRST: Duration = Duration::from_secs(60);
/// Longest delay between retries of a failing full sync.
const FULL_RETRY_MAX: Duration = Duration::from_secs(3600);

/// What the daemon runs at start: a full sync when none is complete yet, one
/// is unfinished, or `full` fired since the last complete one started (the
/// machine was off at the nightly hour); else an incremental sync.
pub(super) fn start_kind(
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
pub(super) struct ClosedAccountGate {
    /// Time between two probes of a closed account.
    pub(super) retry: Duration,
    /// No attempt before this instant.
    pub(super) closed_until: Option<Instant>,
}

impl ClosedAccountGate {
    /// Whether a tick at `now` may send requests.
    pub(super) fn is_open(&self, now: Instant) -> bool {
        self.closed_until.is_none_or(|until| now >= until)
    }

    /// An attempt ended at `now`, with the alert it raised.
    pub(super) fn attempt_ended(&mut self, alert: Option<Alert>, now: Instant) {
        self.closed_until = alert
            .is_some_and(Alert::closes_account)
            .then_some(now + self.retry);
    }
}

/// The sync a tick found running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RunningSync {
    pub(super) kind: RunKind,
    /// A full sync that began a new pass (rather than resuming one begun
    /// before): it covers a full tick that comes while it runs.
    pub(super) fresh_pass: bool,
}

/// Whether a full sync is owed, and from when an incremental tick may do it.
#[derive(Debug, Default)]
pub(super) struct FullDebt {
    /// A full sync is owed: its tick was skipped, it failed, or an
    /// unfinished one was found at start.
    owed: bool,
    /// Full syncs that failed in a row.
    failures: u32,
    /// An incremental tick does the owed full sync only from this instant.
    pub(super) not_before: Option<Instant>,
}

impl FullDebt {
    /// A tick of `scheduled` kind got to run at `now`: what it runs. A full
    /// sync pays what was owed before it.
    pub(super) fn start_tick(&mut self, scheduled: RunKind, now: Instant) -> RunKind {
        let retry_allowed = self.not_before.is_none_or(|at| now >= at);
        if scheduled == RunKind::Full || (self.owed && retry_allowed) {
            self.owed = false;
            RunKind::Full
        } else {
            RunKind::Incremental
        }
    }

    /// A full tick found a sync running.
    pub(super) fn full_tick_skipped(&mut self, running: Option<RunningSync>) {
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
    pub(super) fn full_ended(&mut self, ok: bool, now: Instant) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: RunKind = RunKind::Full;
    const INCREMENTAL: RunKind = RunKind::Incremental;

    fn running(kind: RunKind, fresh_pass: bool) -> Option<RunningSync> {
        Some(RunningSync { kind, fresh_pass })
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
