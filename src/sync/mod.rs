//! The sync algorithm: keyset walks over `updated_at` that keep the mirror
//! exact while the account changes under it.
//!
//! Kommo pages by offset, computed afresh at each request, so paging
//! `page=1,2,3` over a changing account skips leads. Instead every step asks
//! for page 1 of `filter[updated_at][from]=C&order[updated_at]=asc` and, once
//! the page is committed, moves the cursor `C` to the page's largest
//! `updated_at` (see [`walk`]). A lead that changes while we walk gets a newer
//! `updated_at` and is met again further on; a lead that vanishes shifts
//! nothing behind the cursor. A whole page inside one second (a bulk import)
//! is read by id within that second, then the cursor steps past it.
//!
//! Each page is committed in one transaction with the cursor and the run's
//! counters, so a kill at any instant leaves a consistent mirror and a cursor
//! to resume from. A full pass ([`full`]) walks several `updated_at` windows
//! at once to use the whole rate allowance and remembers which leads it saw.
//! A listing proves that a lead exists; its silence proves nothing: so when
//! the pass completes it asks Kommo for every alive lead of the mirror it did
//! not see, by id, and marks deleted only those Kommo does not return alive
//! (never removing them). An incremental sync walks from its cursor (minus an
//! overlap), then the deleted-leads listing, then the lead events
//! ([`events`]) that reveal restores.
//!
//! A full sync reads the account's structure ([`structure`]: a handful of
//! requests, one transaction) alongside its pass; an incremental one after
//! its walks, when the last reading is older than
//! `sync.structure_refresh_minutes` or a record it wrote names a pipeline,
//! stage, loss reason or custom field the mirror lacks. Every sync follows
//! the leads' stage history in its events phase (a full sync after its pass).
//!
//! An answer that does not fit its question (Kommo ignored the filter, see
//! [`KommoError::FilterIgnored`]) stops the run at once. Every "now" the
//! algorithm uses is Kommo's (its `Date` header), never ours.

mod events;
mod full;
mod listing;
mod slices;
mod walk;
pub mod windows;
// The account's structure (see `structure.rs`).
mod structure;

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::unix_now;
use crate::kommo::{
    Entity, EntitySet, KommoClient, KommoError, LEADS, Order, Record, RecordId, RecordPage,
    RecordQuery,
};
use crate::poison::LockAnyway;
use crate::store::{PageCommit, RunCounters, RunKind, Store, StoreError};
use crate::token::Secret;

pub use listing::{MAX_PAGES_PER_PASS, MAX_PASSES_PER_LISTING};
/// Events per request (Kommo's maximum for `/api/v4/events`).
pub const EVENTS_PER_PAGE: u32 = 100;
/// Lead ids per `filter[id]` request (confirming deletions, checking the
/// leads events name); keeps the request line a few kilobytes long.
pub const IDS_PER_REQUEST: usize = 50;
/// How long the page in flight may still take after a stop was requested.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// A full-pass window with fewer seconds than twice this left is not split.
pub const MIN_WINDOW_SPLIT_SECONDS: i64 = 60;

/// Why a sync stopped before completing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Kommo(#[from] KommoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("interrupted by a stop request; progress up to the last committed page is kept")]
    Interrupted,
    #[error(
        "the listing of {entity} records ended before Kommo's newest {entity} {id} (updated_at \
         {updated_at}), which is alive: an answer was cut short; progress is kept and the next \
         full sync walks on from where the listing stopped"
    )]
    ListingCutShort {
        entity: &'static str,
        id: RecordId,
        updated_at: i64,
    },
    #[error(
        "{listing} read empty at each pass though a full page had shown it; nothing was concluded \
         from it, progress is kept and the next sync reads it again"
    )]
    ListingReadEmpty { listing: &'static str },
    #[error(
        "{listing} gave a different answer each time the same question was asked; nothing was \
         concluded from it, progress is kept and the next sync asks again"
    )]
    ListingUnsettled { listing: &'static str },
}

/// What a completed sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Leads written (a lead read twice counts twice).
    pub leads_upserted: i64,
    /// Requests sent, retries included.
    pub requests: i64,
    /// Records (leads, contacts, companies) newly marked deleted (by a full
    /// pass's reconciliation, the deleted-leads listing or the events).
    pub marked_deleted: u64,
}

/// What Kommo said of leads asked for by id.
struct ById {
    /// Returned alive.
    alive: Vec<Record>,
    /// Proven gone: shown deleted, or absent from a listing read whole.
    gone: Vec<RecordId>,
}

/// The settings the algorithm needs.
#[derive(Clone, Copy, Debug)]
pub struct SyncOptions {
    /// Leads per request.
    pub page_size: u32,
    /// Seconds an incremental sync starts before its saved cursor.
    pub overlap_seconds: u32,
    /// Windows a full pass walks at once (1 = one sequential walk).
    pub parallel_windows: u32,
    /// The entities mirrored (`sync.entities`).
    pub entities: EntitySet,
    /// An incremental sync reads the structure when its last reading is
    /// at least this many minutes old (0: at every sync).
    pub structure_refresh_minutes: u32,
}

impl SyncOptions {
    /// Where a read resumes from a saved `cursor`: `overlap_seconds`
    /// before it (writes that became visible late are met again), never
    /// before 0.
    pub fn resume_from(&self, cursor: i64) -> i64 {
        (cursor - i64::from(self.overlap_seconds)).max(0)
    }
}

/// The state of one run, shared by every walk of the run (several at once
/// in a full pass).
pub struct RunProgress {
    /// The `sync_runs` row.
    pub run_id: i64,
    /// The token for this run (re-read at each run).
    pub token: Secret,
    /// Set by a stop request (signal) or by a walk that failed: every walk of
    /// the run stops after its page in flight.
    pub stop: CancellationToken,
    leads_upserted: AtomicI64,
    leads_skipped: AtomicI64,
    requests: AtomicI64,
    /// The client's request count when the run started.
    requests_before: AtomicU64,
    /// Leads already warned about as stamped in the future.
    future_warned: Mutex<HashSet<(&'static str, RecordId)>>,
}

impl RunProgress {
    /// `stop` is usually a child of the process's shutdown token.
    pub fn new(run_id: i64, token: Secret, stop: CancellationToken) -> Self {
        RunProgress {
            run_id,
            token,
            stop,
            leads_upserted: AtomicI64::new(0),
            leads_skipped: AtomicI64::new(0),
            requests: AtomicI64::new(0),
            requests_before: AtomicU64::new(0),
            future_warned: Mutex::new(HashSet::new()),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> RunCounters {
        RunCounters {
            leads_upserted: self.leads_upserted.load(Ordering::Relaxed),
            leads_skipped: self.leads_skipped.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// Whether this is the run's first warning about `id` being stamped in the future.
    fn first_future_warning(&self, entity: &'static Entity, id: RecordId) -> bool {
        self.future_warned.lock_anyway().insert((entity.plural, id))
    }

    /// Counts `n` records of `entity` written; `sync_runs.leads_upserted`
    /// counts leads only.
    fn add_written(&self, entity: &Entity, n: usize) -> RunCounters {
        if std::ptr::eq(entity, &LEADS) {
            self.leads_upserted.fetch_add(n as i64, Ordering::Relaxed);
        }
        self.counters()
    }

    /// Records the client's request count: the run's requests are what the
    /// client sent since the run started (one run at a time per client).
    fn note_requests(&self, client: &KommoClient) {
        let sent = client.requests_sent() - self.requests_before.load(Ordering::Relaxed);
        self.requests
            .fetch_max(i64::try_from(sent).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

/// Runs `branch`; if it fails, asks every other branch of the run to stop
/// after its request in flight (a branch is never dropped midway: its pages
/// commit whole or not at all).
async fn stop_others_on_error<T>(
    progress: &RunProgress,
    branch: impl std::future::Future<Output = Result<T, SyncError>>,
) -> Result<T, SyncError> {
    let result = branch.await;
    if result.is_err() {
        progress.stop.cancel();
    }
    result
}

/// Runs syncs of one account into one mirror.
#[derive(Clone)]
pub struct Syncer {
    client: KommoClient,
    store: Store,
    options: SyncOptions,
}

impl Syncer {
    /// Commits what answers by id said: the records alive and those gone.
    async fn commit_by_id(
        &self,
        progress: &RunProgress,
        entity: &'static Entity,
        alive: &[Record],
        gone: &[RecordId],
    ) -> Result<(), SyncError> {
        let counters = progress.add_written(entity, alive.len());
        self.store
            .commit_page(PageCommit {
                run_id: progress.run_id,
                entity,
                records: alive,
                gone,
                counters,
                now: unix_now(),
                ..PageCommit::default()
            })
            .await?;
        Ok(())
    }

    pub fn new(client: KommoClient, store: Store, options: SyncOptions) -> Syncer {
        Syncer {
            client,
            store,
            options,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The client, shared with the metrics endpoint (it reads its counters).
    pub fn client(&self) -> &KommoClient {
        &self.client
    }

    /// The host of the Kommo account (what support asks for).
    pub fn account_host(&self) -> String {
        self.client.base_host()
    }

    /// Runs one sync of `kind`. On error, `progress.counters()` holds what was
    /// done before it, and everything committed stays committed.
    pub async fn run(
        &self,
        kind: RunKind,
        progress: &RunProgress,
    ) -> Result<SyncReport, SyncError> {
        progress
            .requests_before
            .store(self.client.requests_sent(), Ordering::Relaxed);
        self.client.send_until(progress.stop.clone());
        let marked_deleted = match kind {
            RunKind::Full => {
                // One request first: a blocked or unpaid account, or a
                // rejected token, is met by one request, not by one per walk.
                let first = self.options.entities.iter().next().unwrap_or(&LEADS);
                let newest = self.newest_record(progress, first).await?;
                // The structure and the stage history are walked alongside
                // the pass, not after it: with long round trips their chain
                // of requests fills pacer slots the lead walks leave empty.
                let (pass, account) = tokio::join!(
                    stop_others_on_error(progress, self.full_pass(progress, first, newest)),
                    stop_others_on_error(progress, async {
                        self.sync_structure(progress).await?;
                        self.follow_stage_history(progress).await
                    }),
                );
                match (pass, account) {
                    (Ok(marked_deleted), Ok(())) => marked_deleted,
                    (Err(e), Ok(())) | (Ok(_), Err(e)) => return Err(e),
                    // The error that stopped the run, not the interruption
                    // it caused in the other branch.
                    (Err(SyncError::Interrupted), Err(e)) | (Err(e), Err(_)) => return Err(e),
                }
            }
            RunKind::Incremental => {
                let state = self.store.sync_state().await?;
                let before = self.deleted_count().await?;
                let mut walked = Vec::new();
                let resume =
                    |cursor: Option<i64>| cursor.map_or(0, |c| self.options.resume_from(c));
                for entity in self.options.entities.iter() {
                    let cursors = self.store.entity_state(entity).await?;
                    let start = resume(cursors.incremental_cursor);
                    walked.push((entity, start));
                    self.walk(progress, walk::Range::incremental(entity, start))
                        .await?;
                    if entity.lists_deleted {
                        let deleted_start = resume(cursors.deleted_cursor);
                        self.walk(progress, walk::Range::deleted(entity, deleted_start))
                            .await?;
                    }
                }
                if self.structure_due(state.structure_read_at, &walked).await? {
                    self.sync_structure(progress).await?;
                }
                self.follow_events(progress, state.events_cursor, self.kommo_now())
                    .await?;
                u64::try_from(self.deleted_count().await? - before).unwrap_or(0)
            }
        };
        let counters = progress.counters();
        Ok(SyncReport {
            leads_upserted: counters.leads_upserted,
            requests: counters.requests,
            marked_deleted,
        })
    }

    /// Records of every synced entity the mirror holds deleted.
    async fn deleted_count(&self) -> Result<i64, SyncError> {
        let mut deleted = 0;
        for entity in self.options.entities.iter() {
            deleted += self.store.record_counts(entity).await?.deleted;
        }
        Ok(deleted)
    }

    /// Kommo's now: its last `Date` header, else (before any answer) ours.
    fn kommo_now(&self) -> i64 {
        self.client.server_now().unwrap_or_else(unix_now)
    }

    /// Fetches one page of leads (see [`Syncer::stoppable`]) and reports the
    /// leads it had to skip.
    async fn fetch(
        &self,
        progress: &RunProgress,
        query: &RecordQuery,
    ) -> Result<RecordPage, SyncError> {
        let page = self
            .stoppable(progress, self.client.fetch_records(&progress.token, query))
            .await??;
        let entity = query.entity;
        let leads = std::ptr::eq(entity, &LEADS);
        for skipped in &page.skipped {
            tracing::warn!(
                run_id = progress.run_id,
                index = skipped.index,
                "Kommo sent a {} that cannot be stored ({}); skipped{}",
                entity.singular,
                skipped.reason,
                if leads {
                    ", and counted in sync_runs.leads_skipped"
                } else {
                    ""
                }
            );
        }
        if leads {
            progress
                .leads_skipped
                .fetch_add(page.skipped.len() as i64, Ordering::Relaxed);
        }
        Ok(page)
    }

    /// What Kommo says of the leads `ids` (one listing read whole, see
    /// [`listing`]): those it returns alive, and those it proves gone (shown
    /// deleted, or absent from an answer read whole twice in a row). An
    /// answer with a lead it could not read proves no absence.
    async fn read_by_id(
        &self,
        progress: &RunProgress,
        entity: &'static Entity,
        ids: &[RecordId],
    ) -> Result<ById, SyncError> {
        const LIMIT: u32 = 250;
        let expect = listing::Expect {
            not_empty: false,
            at_most: Some(ids.len()),
        };
        let listing = self
            .read_whole(
                progress,
                "leads asked for by id",
                slices::Layout::Tiled,
                LIMIT,
                expect,
                |slice| async move {
                    let query = RecordQuery {
                        entity,
                        page: slice.page,
                        limit: slice.limit,
                        order: Order::IdAsc,
                        ids: ids.to_vec(),
                        ..RecordQuery::default()
                    };
                    self.fetch(progress, &query).await
                },
            )
            .await?;
        let absence_proven = listing.proves_absence();
        let (deleted, alive): (Vec<Record>, Vec<Record>) = listing
            .pages
            .into_iter()
            .flat_map(|page| page.records)
            .partition(|lead| lead.is_deleted);
        let gone = ids
            .iter()
            .filter(|id| {
                deleted.iter().any(|l| l.id == **id)
                    || (absence_proven && !listing.keys.contains(id))
            })
            .copied()
            .collect();
        Ok(ById { alive, gone })
    }

    /// Runs one request (with its retries). A stop request lets a request in
    /// flight finish for up to [`STOP_GRACE`], then abandons it (nothing of
    /// it was committed); a stop before it leaves the pacer sends nothing
    /// (see [`KommoClient::send_until`]).
    async fn stoppable<T>(
        &self,
        progress: &RunProgress,
        request: impl std::future::Future<Output = Result<T, KommoError>>,
    ) -> Result<Result<T, KommoError>, SyncError> {
        if progress.stop.is_cancelled() {
            return Err(SyncError::Interrupted);
        }
        tokio::pin!(request);
        let result = tokio::select! {
            result = &mut request => result,
            () = progress.stop.cancelled() => {
                match tokio::time::timeout(STOP_GRACE, &mut request).await {
                    Ok(result) => result,
                    Err(_) => return Err(SyncError::Interrupted),
                }
            }
        };
        progress.note_requests(&self.client);
        if matches!(result, Err(KommoError::NotSent)) {
            return Err(SyncError::Interrupted);
        }
        Ok(result)
    }
}
