//! A full pass: every alive record of each synced entity (leads, contacts,
//! companies), walked in several `updated_at` windows at once (see
//! [`super::windows`]), then its deletions, each confirmed by id. The
//! entities are walked side by side, each through the same code, their
//! requests sharing the one pacer: the allowance stays in use while one
//! entity ends its last windows or confirms its deletions.
//!
//! Each entity's walk begins by asking for Kommo's newest record: a window whose walk
//! ends before it, without having met it, while it is alive (unchanged, or
//! for the open window at all), was cut short (an end said twice by a
//! faulty server); the window stays unfinished (the next attempt walks on
//! from where it stopped) and the run fails. When every window is walked,
//! every alive lead of the mirror the pass did not see is asked for by id
//! (one listing read whole, see [`super::listing`]): those Kommo returns
//! alive are mirrored (and count as seen), and only those it proves gone are
//! marked deleted.
//!
//! A killed or interrupted pass resumes with the same pass number, skips the
//! entities it finished, and resumes every window where it stopped; records
//! seen before the kill still count as seen.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::listing::{Paging, Said};
use super::walk::{Listing, Range, WindowRef};
use super::windows::{Assignment, Window, WindowPlan};
use super::{ById, IDS_PER_REQUEST, MIN_WINDOW_SPLIT_SECONDS, RunProgress, SyncError, Syncer};
use crate::clock::unix_now;
use crate::kommo::{Entity, Order, Record, RecordQuery};
use crate::poison::LockAnyway;
use crate::store::PageCommit;

/// How long a worker with nothing to walk waits before it asks the plan
/// again.
const IDLE_RETRY: Duration = Duration::from_millis(50);

impl Syncer {
    /// Runs (or resumes) the full pass: each synced entity in turn (those
    /// the pass has already walked whole are skipped), `first`'s newest
    /// record already asked for. Returns how many records it marked deleted.
    pub(super) async fn full_pass(
        &self,
        progress: &RunProgress,
        first: &'static Entity,
        first_newest: Option<Record>,
    ) -> Result<u64, SyncError> {
        let (pass, resumed_from) = self.store.begin_full_pass(self.kommo_now()).await?;
        if resumed_from > 0 {
            tracing::info!(
                run_id = progress.run_id,
                full_pass = pass,
                from = resumed_from,
                "resuming the unfinished full sync"
            );
        }
        let before = self.deleted_count().await?;
        let mut first_newest = Some(first_newest);
        let mut entities = FuturesUnordered::new();
        for entity in self.options.entities.iter() {
            let Some(windows) = self.store.entity_windows(pass, entity).await? else {
                continue;
            };
            let newest = first_newest.take_if(|_| std::ptr::eq(entity, first));
            entities.push(super::stop_others_on_error(
                progress,
                self.entity_pass(progress, entity, pass, windows, newest),
            ));
        }
        let mut first_error = None;
        while let Some(result) = entities.next().await {
            match (result, &first_error) {
                (Ok(()), _) => {}
                // The error that stopped the others, not the interruptions
                // it caused.
                (Err(e), None | Some(SyncError::Interrupted)) => first_error = Some(e),
                (Err(_), Some(_)) => {}
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.store.finish_full_pass(pass).await?;
        Ok(u64::try_from(self.deleted_count().await? - before).unwrap_or(0))
    }

    /// One entity's share of the pass: its newest record (unless already
    /// asked for), its windows, its unseen records confirmed by id, and the
    /// entity marked walked whole.
    async fn entity_pass(
        &self,
        progress: &RunProgress,
        entity: &'static Entity,
        pass: i64,
        windows: Vec<Window>,
        newest: Option<Option<Record>>,
    ) -> Result<(), SyncError> {
        let newest = match newest {
            Some(newest) => newest,
            None => self.newest_record(progress, entity).await?,
        };
        self.walk_windows(progress, entity, pass, windows, newest.as_ref())
            .await?;
        self.confirm_unseen(progress, entity, pass).await?;
        self.store
            .finish_entity_pass(pass, entity, i64::from(self.options.overlap_seconds))
            .await?;
        Ok(())
    }

    /// Walks `entity`'s `windows` of the pass with up to
    /// `sync.parallel_windows` workers, until every window is done.
    async fn walk_windows(
        &self,
        progress: &RunProgress,
        entity: &'static Entity,
        pass: i64,
        windows: Vec<Window>,
        newest: Option<&Record>,
    ) -> Result<(), SyncError> {
        let plan = Mutex::new(WindowPlan::new(windows, MIN_WINDOW_SPLIT_SECONDS));
        let workers = self.options.parallel_windows.max(1);
        let mut running = FuturesUnordered::new();
        for worker in 0..workers {
            running.push(self.full_pass_worker(progress, entity, pass, &plan, newest, worker));
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
        if !plan.lock_anyway().all_done() {
            // Only possible if a stop came between windows.
            return Err(SyncError::Interrupted);
        }
        Ok(())
    }

    /// Kommo's newest record of `entity` (`order[updated_at]=desc&limit=1`),
    /// if any.
    pub(super) async fn newest_record(
        &self,
        progress: &RunProgress,
        entity: &'static Entity,
    ) -> Result<Option<Record>, SyncError> {
        let query = RecordQuery {
            entity,
            page: 1,
            limit: 1,
            order: Order::UpdatedDesc,
            ..RecordQuery::default()
        };
        let (Said::More(page) | Said::End(page)) = self
            .settle(progress, "the newest record", Paging::ByKey, 1, || {
                self.fetch(progress, &query)
            })
            .await?;
        Ok(page.records.into_iter().next())
    }

    /// Asks Kommo by id for every alive record of the mirror the pass did
    /// not see: mirrors those alive, marks deleted those it proves gone.
    async fn confirm_unseen(
        &self,
        progress: &RunProgress,
        entity: &'static Entity,
        pass: i64,
    ) -> Result<(), SyncError> {
        let ids = self.store.unseen_alive(entity, pass).await?;
        if !ids.is_empty() {
            tracing::info!(
                run_id = progress.run_id,
                entity = entity.plural,
                records = ids.len(),
                "asking Kommo by id for the mirrored {} this full sync did not list",
                entity.plural
            );
        }
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let ById { alive, gone } = self.read_by_id(progress, entity, chunk).await?;
            self.commit_by_id(progress, entity, &alive, &gone).await?;
        }
        Ok(())
    }

    /// Fails with [`SyncError::ListingCutShort`] when the walk of `walked`
    /// ended before Kommo's `newest` lead, in its range, without meeting it,
    /// and Kommo returns that lead alive: unchanged, or (for the open window,
    /// which reaches the present) changed at all.
    async fn check_reached(
        &self,
        progress: &RunProgress,
        entity: &'static Entity,
        pass: i64,
        walked: Window,
        newest: &Record,
    ) -> Result<(), SyncError> {
        let Some(updated_at) = newest.updated_at else {
            return Ok(());
        };
        let target = updated_at.min(self.kommo_now());
        let in_range = walked.cursor < target && walked.end.is_none_or(|end| target <= end);
        if !in_range || self.store.seen_in_pass(entity, pass, newest.id).await? {
            return Ok(());
        }
        // Unchanged, it should have been listed where it was. Changed, it
        // moved to a later second, inside the open window's range, which
        // should have listed it there.
        let alive = self.read_by_id(progress, entity, &[newest.id]).await?.alive;
        if alive
            .iter()
            .any(|l| walked.end.is_none() || l.updated_at == newest.updated_at)
        {
            return Err(SyncError::ListingCutShort {
                entity: entity.singular,
                id: newest.id,
                updated_at,
            });
        }
        Ok(())
    }

    /// Takes windows from the plan and walks them until none is left.
    async fn full_pass_worker(
        &self,
        progress: &RunProgress,
        entity: &'static Entity,
        pass: i64,
        plan: &Mutex<WindowPlan>,
        newest: Option<&Record>,
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
            let now = self.kommo_now();
            let assignment = plan.lock_anyway().assign(now);
            let window = match assignment {
                // Nothing worth splitting now: once the other walks have
                // gone further, their rest may be (the last window of a
                // pass would otherwise end one page at a time).
                Assignment::Idle if plan.lock_anyway().all_done() => return Ok(()),
                Assignment::Idle => {
                    tokio::time::sleep(IDLE_RETRY).await;
                    continue;
                }
                Assignment::Walk(window) => window,
                Assignment::Split { shortened, new } => {
                    let saved = self.store.save_split(pass, entity, &shortened, &new).await;
                    let mut plan = plan.lock_anyway();
                    if let Err(e) = saved {
                        plan.abandon_split(&shortened);
                        return Err(e.into());
                    }
                    tracing::debug!(run_id = progress.run_id, shortened = ?shortened, new = ?new, "split a window");
                    plan.apply_split(&shortened, new)
                }
            };
            let range = Range {
                entity,
                listing: Listing::Alive,
                start: window.cursor,
                window: Some(WindowRef {
                    pass,
                    id: window.id,
                    plan,
                }),
            };
            let mut walked = self.walk(progress, range).await;
            if let (Ok(()), Some(newest)) = (&walked, newest) {
                let window = plan.lock_anyway().get(window.id);
                walked = self
                    .check_reached(progress, entity, pass, window, newest)
                    .await;
            }
            match walked {
                Ok(()) => {
                    let done = plan.lock_anyway().reached_end(window.id);
                    self.save_window(progress, entity, pass, done).await?;
                }
                Err(e) => {
                    plan.lock_anyway().release(window.id);
                    return Err(e);
                }
            }
        }
    }

    /// Writes a window's state (its end reached) with the run's counters.
    async fn save_window(
        &self,
        progress: &RunProgress,
        entity: &'static Entity,
        pass: i64,
        window: Window,
    ) -> Result<(), SyncError> {
        self.store
            .commit_page(PageCommit {
                run_id: progress.run_id,
                entity,
                window: Some((pass, window)),
                counters: progress.counters(),
                now: unix_now(),
                ..PageCommit::default()
            })
            .await?;
        Ok(())
    }
}

/// Waits until the pass's first page is committed (or a window's end is
/// reached) and returns one step of a walk: the page's round trip and its
/// commit as the walk measured them (the wait for the pacer, which other
/// requests of the run share, not counted), else the time waited. How many
/// walks at once are worth it depends on it. `None` if the pass stopped or
/// had nothing left to walk.
async fn wait_for_first_step(plan: &Mutex<WindowPlan>, progress: &RunProgress) -> Option<Duration> {
    let started = Instant::now();
    loop {
        let (steps, first_step, all_done) = {
            let plan = plan.lock_anyway();
            (plan.steps(), plan.first_step(), plan.all_done())
        };
        if steps > 0 {
            return Some(first_step.unwrap_or_else(|| started.elapsed()));
        }
        if all_done || progress.stop.is_cancelled() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
