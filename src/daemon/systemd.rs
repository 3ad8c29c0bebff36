//! The daemon's systemd side: readiness and status notifications, and the
//! watchdog, pinged only while the scheduler beats and the database answers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::poison::LockAnyway;
use crate::store::Store;

/// The cron of the scheduler's heartbeat job: every second.
pub(super) const HEARTBEAT_SCHEDULE: &str = "* * * * * *";
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
pub(super) struct Heartbeat(Arc<std::sync::Mutex<Beat>>);

#[derive(Clone, Copy, Debug)]
struct Beat {
    /// The monotonic instant of the beat.
    at: Instant,
    /// The wall-clock time of the beat.
    wall: SystemTime,
}

impl Heartbeat {
    pub(super) fn new() -> Heartbeat {
        Heartbeat::new_at(Instant::now(), SystemTime::now())
    }

    fn new_at(at: Instant, wall: SystemTime) -> Heartbeat {
        Heartbeat(Arc::new(std::sync::Mutex::new(Beat { at, wall })))
    }

    pub(super) fn beat(&self) {
        self.beat_at(Instant::now(), SystemTime::now());
    }

    fn beat_at(&self, at: Instant, wall: SystemTime) {
        *self.0.lock_anyway() = Beat { at, wall };
    }

    /// Whether the scheduler beat within `stale` of `now` (`wall_now` on the
    /// wall clock), counting only time that both clocks saw pass.
    fn is_alive(&self, now: Instant, wall_now: SystemTime, stale: Duration) -> bool {
        let last = *self.0.lock_anyway();
        let elapsed = now.saturating_duration_since(last.at);
        // Zero while the wall clock is behind the beat (stepped back).
        let wall_elapsed = wall_now.duration_since(last.wall).unwrap_or_default();
        elapsed.min(wall_elapsed) <= stale
    }
}

pub(super) fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, states)
    {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Pings systemd's watchdog at a quarter of its interval, only while the
/// scheduler beats and the database answers.
pub(super) fn spawn_watchdog(
    heartbeat: Heartbeat,
    store: Store,
) -> Option<tokio::task::JoinHandle<()>> {
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
            if !heartbeat.is_alive(Instant::now(), SystemTime::now(), stale) {
                tracing::error!("the scheduler stopped beating; withholding the watchdog ping");
            } else if store.ping().await {
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
}
