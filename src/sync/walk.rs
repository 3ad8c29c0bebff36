//! One keyset walk over `updated_at`: page 1 from the cursor, commit, move
//! the cursor to the page's newest `updated_at`, until the listing ends. A
//! walk covers a whole listing (incremental syncs) or one window of a full
//! pass, whose end a split may move while it walks.
//!
//! When the listing ends is not the walk's to decide: every question goes
//! through the listing reader ([`super::listing`]), which believes an end
//! only when it is said twice in a row. A whole page inside one second is
//! read by id within that second, then the cursor steps past it, unless
//! that second is Kommo's now (more leads may still get it). No cursor
//! moves past Kommo's now: a lead stamped in the future is mirrored, not
//! followed.

use std::sync::Mutex;

use tokio::time::Instant;

use super::listing::{Expect, Paging, Said, Shown, claims_end};
use super::slices::Layout;
use super::windows::WindowPlan;
use super::{RunProgress, SyncError, Syncer};
use crate::clock::unix_now;
use crate::kommo::{Entity, Order, Record, RecordPage, RecordQuery};
use crate::poison::LockAnyway;
use crate::store::{CursorUpdate, PageCommit};

/// A lead stamped more than this many seconds past Kommo's now is stamped in
/// the future (a warning), rather than by a clock a little ahead.
pub const FUTURE_TOLERANCE_SECONDS: i64 = 60;

/// Which listing of its entity a walk reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Listing {
    /// Alive records.
    Alive,
    /// Deleted, restorable records (`with=only_deleted`, leads only: see
    /// [`Entity::lists_deleted`]).
    Deleted,
}

/// The full-pass window a walk belongs to.
#[derive(Clone, Copy)]
pub(super) struct WindowRef<'a> {
    pub pass: i64,
    pub id: i64,
    pub plan: &'a Mutex<WindowPlan>,
}

impl WindowRef<'_> {
    fn plan(&self) -> std::sync::MutexGuard<'_, WindowPlan> {
        self.plan.lock_anyway()
    }
}

/// What a walk covers.
#[derive(Clone, Copy)]
pub(super) struct Range<'a> {
    pub entity: &'static Entity,
    pub listing: Listing,
    pub start: i64,
    pub window: Option<WindowRef<'a>>,
}

impl Range<'_> {
    /// Every alive record of `entity` changed since `start` (moves the
    /// incremental cursor).
    pub fn incremental(entity: &'static Entity, start: i64) -> Range<'static> {
        Range {
            entity,
            listing: Listing::Alive,
            start,
            window: None,
        }
    }

    /// Every deleted record of `entity` listed since `start` (moves the
    /// deleted cursor).
    pub fn deleted(entity: &'static Entity, start: i64) -> Range<'static> {
        Range {
            entity,
            listing: Listing::Deleted,
            start,
            window: None,
        }
    }

    /// What the listing is, for messages: `the leads`, `the deleted leads`.
    fn name(&self) -> &'static str {
        match self.listing {
            Listing::Alive => self.entity.listing_names[0],
            Listing::Deleted => self.entity.listing_names[1],
        }
    }

    /// The current upper bound (a split may have lowered it).
    fn end(&self) -> Option<i64> {
        self.window.and_then(|w| w.plan().get(w.id).end)
    }

    /// A query of this range's listing.
    fn query(
        &self,
        from: i64,
        to: Option<i64>,
        page: u32,
        limit: u32,
        order: Order,
    ) -> RecordQuery {
        RecordQuery {
            entity: self.entity,
            updated_from: Some(from),
            updated_to: to,
            page,
            limit,
            only_deleted: self.listing == Listing::Deleted,
            order,
            ids: Vec::new(),
        }
    }
}

/// How far one page lets a walk go.
struct Reached {
    /// The newest `updated_at` at or before Kommo's now (at least the cursor).
    top: i64,
    /// The page holds leads stamped past Kommo's now.
    past_now: bool,
}

impl Syncer {
    /// Walks `range` to its end by keyset on `updated_at`.
    pub(super) async fn walk(
        &self,
        progress: &RunProgress,
        range: Range<'_>,
    ) -> Result<(), SyncError> {
        let limit = self.options.page_size;
        let mut cursor = range.start;
        loop {
            let end = range.end();
            if end.is_some_and(|end| cursor > end) {
                return Ok(());
            }
            let query = range.query(cursor, end, 1, limit, Order::UpdatedAsc);
            let said = self
                .settle(
                    progress,
                    range.name(),
                    Paging::ByKey,
                    limit as usize,
                    || self.fetch_listed(progress, &query, range.listing),
                )
                .await?;
            let (page, ended) = match said {
                Said::More(page) => (page, false),
                Said::End(page) => (page, true),
            };
            let now = self.kommo_now();
            let reached = self.reached(progress, range.entity, &page, cursor, now);
            let full = !claims_end(&page, limit as usize);
            if full && reached.top == cursor {
                if reached.past_now || cursor >= now {
                    // Nothing between the cursor and now, and the rest is
                    // stamped past now, or the crowded second is Kommo's
                    // now, which more leads may still get: read it all by
                    // id; no cursor moves past it.
                    return self.read_span(progress, cursor, None, range).await;
                }
                // A whole page inside the cursor's second: read the second
                // by id, then step past it.
                self.read_span(progress, cursor, Some(cursor), range)
                    .await?;
                cursor += 1;
                self.commit(progress, &[], range, cursor).await?;
                continue;
            }
            let committing = Instant::now();
            self.commit(progress, &page.records, range, reached.top)
                .await?;
            if let Some(w) = range.window {
                w.plan().note_step(page.round_trip + committing.elapsed());
            }
            if ended {
                return Ok(());
            }
            cursor = reached.top;
        }
    }

    /// One page of `range`'s listing. Every lead the deleted-leads listing
    /// shows is deleted, whatever its own `is_deleted` says.
    async fn fetch_listed(
        &self,
        progress: &RunProgress,
        query: &RecordQuery,
        listing: Listing,
    ) -> Result<RecordPage, SyncError> {
        let mut page = self.fetch(progress, query).await?;
        if listing == Listing::Deleted {
            for lead in &mut page.records {
                lead.is_deleted = true;
            }
        }
        Ok(page)
    }

    /// How far a page lets the walk go: its newest `updated_at` up to
    /// Kommo's `now` (never back before `cursor`); records stamped past now
    /// are mirrored but not followed. Warns once per run about each record
    /// stamped more than a minute in the future.
    fn reached(
        &self,
        progress: &RunProgress,
        entity: &'static Entity,
        page: &RecordPage,
        cursor: i64,
        now: i64,
    ) -> Reached {
        let mut reached = Reached {
            top: cursor,
            past_now: false,
        };
        for record in &page.records {
            let Some(updated_at) = record.updated_at else {
                continue;
            };
            if updated_at > now + FUTURE_TOLERANCE_SECONDS
                && progress.first_future_warning(entity, record.id)
            {
                tracing::warn!(
                    run_id = progress.run_id,
                    entity = entity.plural,
                    record_id = record.id,
                    updated_at,
                    kommo_now = now,
                    "{} {} is stamped {}, past Kommo's clock ({}); it is mirrored, but no cursor follows it past now",
                    entity.singular,
                    record.id,
                    crate::clock::format_unix(updated_at),
                    crate::clock::format_unix(now),
                );
            }
            if updated_at > now {
                reached.past_now = true;
            } else {
                reached.top = reached.top.max(updated_at);
            }
        }
        reached
    }

    /// Reads every lead with `updated_at` in `[from, to]` (to the end of the
    /// listing when `to` is `None`), by id with offset pages, as one listing
    /// read whole (see [`super::listing`]): a page showed it full, so it
    /// cannot read empty. A lead leaving the span during a pass (it changed,
    /// so it is met again later) shifts the offsets of the others and may
    /// hide one from that pass; a pass during which nothing left reads the
    /// span whole, and the next pass then shows the same ids. A span that
    /// never settles is left with a warning: a full pass asks for every
    /// lead it did not see by id, and the next incremental sync reads the
    /// span again. One that never showed a lead fails the run.
    async fn read_span(
        &self,
        progress: &RunProgress,
        from: i64,
        to: Option<i64>,
        range: Range<'_>,
    ) -> Result<(), SyncError> {
        let expect = Expect {
            not_empty: true,
            at_most: None,
        };
        let span = self
            .read_whole(
                progress,
                "a crowded second",
                Layout::Overlapping,
                self.options.page_size,
                expect,
                |slice| async move {
                    let query = range.query(from, to, slice.page, slice.limit, Order::IdAsc);
                    let page = self.fetch_listed(progress, &query, range.listing).await?;
                    if !page.records.is_empty() {
                        self.commit(progress, &page.records, range, from).await?;
                    }
                    Ok(Shown::from(&page))
                },
            )
            .await?;
        if !span.settled {
            tracing::warn!(
                run_id = progress.run_id,
                from,
                to,
                "leads kept changing inside one second while it was read; the next sync reads it again"
            );
        }
        Ok(())
    }

    /// Commits a page with the cursor it reaches, in one transaction.
    async fn commit(
        &self,
        progress: &RunProgress,
        leads: &[Record],
        range: Range<'_>,
        reached: i64,
    ) -> Result<(), SyncError> {
        let counters = progress.add_written(range.entity, leads.len());
        let cursor = match (range.listing, range.window) {
            (Listing::Alive, None) => CursorUpdate {
                incremental: Some(reached),
                ..CursorUpdate::default()
            },
            (Listing::Deleted, _) => CursorUpdate {
                deleted: Some(reached),
                ..CursorUpdate::default()
            },
            (Listing::Alive, Some(_)) => CursorUpdate::default(),
        };
        let window = range
            .window
            .map(|w| (w.pass, w.plan().advanced(w.id, reached)));
        self.store
            .commit_page(PageCommit {
                run_id: progress.run_id,
                entity: range.entity,
                records: leads,
                gone: &[],
                cursor,
                window,
                counters,
                now: unix_now(),
            })
            .await?;
        if let Some(w) = range.window {
            let oldest = leads.iter().filter_map(|l| l.updated_at).min();
            w.plan().advance(w.id, reached, oldest);
        }
        Ok(())
    }
}
