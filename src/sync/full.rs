//! A full pass: every alive lead, walked in several `updated_at` windows at
//! once (see [`super::windows`]), then the reconciliation of deletions.
//!
//! A killed or interrupted pass resumes with the same pass number and every
//! window where it stopped; leads seen before the kill still count as seen.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::walk::{Listing, Range, WindowRef};
use super::windows::{Assignment, Window, WindowPlan};
use super::{MIN_WINDOW_SPLIT_SECONDS, RunProgress, SyncError, Syncer};
use crate::clock::unix_now;
use crate::store::{DeletionVerdict, PageCommit};

impl Syncer {
    /// Runs (or resumes) the full pass; returns how many leads it marked deleted.
    pub(super) async fn full_pass(&self, progress: &RunProgress) -> Result<u64, SyncError> {
        let (pass, resumed_from) = self.store.begin_full_pass(unix_now()).await?;
        if resumed_from > 0 {
            tracing::info!(
                run_id = progress.run_id,
                full_pass = pass,
                from = resumed_from,
                "resuming the unfinished full sync"
            );
        }
        let windows = self.store.full_pass_windows(pass).await?;
        let plan = Mutex::new(WindowPlan::new(windows, MIN_WINDOW_SPLIT_SECONDS));
        let workers = self.options.parallel_windows.max(1);
        let mut running = FuturesUnordered::new();
        for worker in 0..workers {
            running.push(self.full_pass_worker(progress, pass, &plan, worker));
        }
        let mut first_error = None;
        while let Some(result) = running.next().await {
            if let Err(e) = result
                && first_error.is_none()
            {
                // Stop the other walks after their page in flight.
                progress.stop.cancel();
                first_error = Some(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let all_done = plan.lock().unwrap_or_else(|e| e.into_inner()).all_done();
        if !all_done {
            // Only possible if a stop came between windows.
            return Err(SyncError::Interrupted);
        }
        let (verdict, deleted) = self.store.finish_full_pass(pass, unix_now()).await?;
        match verdict {
            DeletionVerdict::Allowed => {}
            DeletionVerdict::NothingListed => tracing::warn!(
                run_id = progress.run_id,
                full_pass = pass,
                "the full sync listed no lead at all; no lead is marked deleted (an empty listing is more likely a fault than an empty account)"
            ),
            DeletionVerdict::SecondUnread => tracing::warn!(
                run_id = progress.run_id,
                full_pass = pass,
                "a crowded second could not be read whole during this full sync; no lead is marked deleted this time, the next full sync reconciles deletions"
            ),
        }
        Ok(deleted)
    }

    /// Takes windows from the plan and walks them until none is left.
    async fn full_pass_worker(
        &self,
        progress: &RunProgress,
        pass: i64,
        plan: &Mutex<WindowPlan>,
        worker: u32,
    ) -> Result<(), SyncError> {
        if worker > 0 {
            let Some(step) = wait_for_first_step(plan, progress).await else {
                return Ok(());
            };
            // Parallel walks pay off only when one step of a walk (a round
            // trip and a commit) is longer than the pacer's gap between
            // requests: with `n` walks, `n` requests are in flight per step.
            // Beyond that, each extra window only adds the request that finds
            // its end.
            let spacing = self.client.request_spacing();
            let useful = step.as_secs_f64() / spacing.as_secs_f64();
            if f64::from(worker) >= useful.ceil() {
                return Ok(());
            }
            tracing::debug!(
                run_id = progress.run_id,
                worker,
                step_ms = step.as_millis() as u64,
                "another window walk"
            );
            tokio::time::sleep(spacing * worker).await;
        }
        loop {
            if progress.stop.is_cancelled() {
                return Err(SyncError::Interrupted);
            }
            let assignment = plan
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .assign(unix_now());
            let window = match assignment {
                Assignment::Idle => return Ok(()),
                Assignment::Walk(window) => window,
                Assignment::Split { shortened, new } => {
                    let saved = self.store.save_split(pass, &shortened, &new).await;
                    let mut plan = plan.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = saved {
                        plan.abandon_split(&shortened);
                        return Err(e.into());
                    }
                    tracing::debug!(run_id = progress.run_id, shortened = ?shortened, new = ?new, "split a window");
                    plan.apply_split(&shortened, new)
                }
            };
            let range = Range {
                listing: Listing::Alive,
                start: window.cursor,
                window: Some(WindowRef {
                    pass,
                    id: window.id,
                    plan,
                }),
            };
            match self.walk(progress, range).await {
                Ok(()) => {
                    let done = {
                        let mut plan = plan.lock().unwrap_or_else(|e| e.into_inner());
                        plan.reached_end(window.id);
                        plan.get(window.id)
                    };
                    self.save_window(progress, pass, done).await?;
                }
                Err(e) => {
                    plan.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .release(window.id);
                    return Err(e);
                }
            }
        }
    }

    /// Writes a window's state (its end reached) with the run's counters.
    async fn save_window(
        &self,
        progress: &RunProgress,
        pass: i64,
        window: Window,
    ) -> Result<(), SyncError> {
        self.store
            .commit_page(PageCommit {
                run_id: progress.run_id,
                leads: &[],
                gone: &[],
                cursor: Default::default(),
                window: Some((pass, window)),
                counters: progress.counters(),
                now: unix_now(),
            })
            .await?;
        Ok(())
    }
}

/// Waits until the pass's first page is committed (or a window's end is
/// reached) and returns how long that took: one step of a walk, request and
/// commit. How many walks at once are worth it depends on it. `None` if the
/// pass stopped or had nothing left to walk.
async fn wait_for_first_step(plan: &Mutex<WindowPlan>, progress: &RunProgress) -> Option<Duration> {
    let started = Instant::now();
    loop {
        let (steps, all_done) = {
            let plan = plan.lock().unwrap_or_else(|e| e.into_inner());
            (plan.steps(), plan.all_done())
        };
        if steps > 0 {
            return Some(started.elapsed());
        }
        if all_done || progress.stop.is_cancelled() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
