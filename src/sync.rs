//! The sync algorithm: keyset walks over `updated_at` that keep the mirror
//! exact while the account changes under it.
//!
//! Kommo pages by offset, computed afresh at each request, so paging
//! `page=1,2,3` over a changing account skips leads. Instead every step asks
//! for page 1 of `filter[updated_at][from]=C&order[updated_at]=asc` and, once
//! the page is committed, moves the cursor `C` to the page's largest
//! `updated_at`. A lead that changes while we walk gets a newer `updated_at`
//! and is met again further on; a lead that vanishes shifts nothing behind
//! the cursor. When a whole page shares the cursor's second (a bulk import),
//! that one second is read by id with offset pages, repeated until a pass
//! finds no id the earlier passes missed (a lead leaving the second during a
//! pass can shift another one past us), and then the cursor steps past it.
//!
//! Each page is committed in one transaction with the cursor and the run's
//! counters, so a kill at any instant leaves a consistent mirror and a cursor
//! to resume from. A full pass remembers which leads it saw; when it completes,
//! the alive leads it did not see are marked deleted (never removed).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::unix_now;
use crate::kommo::{EventQuery, KommoClient, KommoError, Lead, LeadId, LeadPage, LeadQuery};
use crate::store::{CursorUpdate, PageCommit, RunCounters, RunKind, Store, StoreError};
use crate::token::Secret;

/// Passes over one crowded second before giving up on finding more ids in it.
pub const MAX_PASSES_PER_SECOND: u32 = 4;
/// Events per request (Kommo's maximum for `/api/v4/events`).
pub const EVENTS_PER_PAGE: u32 = 100;
/// Lead ids per `filter[id]` request when checking the leads events name.
pub const IDS_PER_REQUEST: usize = 50;
/// How long the page in flight may still take after a stop was requested.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// Why a sync stopped before completing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Kommo(#[from] KommoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("interrupted by a stop request; progress up to the last committed page is kept")]
    Interrupted,
}

/// What a completed sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Leads written (a lead read twice counts twice).
    pub leads_upserted: i64,
    /// Requests sent, retries included.
    pub requests: i64,
    /// Leads newly marked deleted (by a full pass's reconciliation or by
    /// the deleted-leads listing).
    pub marked_deleted: u64,
}

/// The settings the algorithm needs.
#[derive(Clone, Copy, Debug)]
pub struct SyncOptions {
    /// Leads per request.
    pub page_size: u32,
    /// Seconds an incremental sync starts before its saved cursor.
    pub overlap_seconds: u32,
}

/// The state of one run as it walks: shared by every step of the run.
pub struct RunProgress<'a> {
    /// The `sync_runs` row.
    pub run_id: i64,
    /// The token for this run (re-read at each run).
    pub token: &'a Secret,
    /// Stops the run between pages.
    pub cancel: &'a CancellationToken,
    /// Counters recorded with each page and at the end.
    pub counters: RunCounters,
    full_pass: Option<i64>,
    requests_before: u64,
}

impl<'a> RunProgress<'a> {
    pub fn new(run_id: i64, token: &'a Secret, cancel: &'a CancellationToken) -> Self {
        RunProgress {
            run_id,
            token,
            cancel,
            counters: RunCounters::default(),
            full_pass: None,
            requests_before: 0,
        }
    }
}

/// Which listing a walk reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    /// Alive leads.
    Alive,
    /// Deleted, restorable leads (`with=only_deleted`).
    Deleted,
}

/// Runs syncs of one account into one mirror.
#[derive(Clone)]
pub struct Syncer {
    client: KommoClient,
    store: Store,
    options: SyncOptions,
}

impl Syncer {
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

    pub fn client(&self) -> &KommoClient {
        &self.client
    }

    /// Runs one sync of `kind`. On error, `progress.counters` holds what was
    /// done before it, and everything committed stays committed.
    pub async fn run(
        &self,
        kind: RunKind,
        progress: &mut RunProgress<'_>,
    ) -> Result<SyncReport, SyncError> {
        progress.requests_before = self.client.requests_sent();
        let marked_deleted = match kind {
            RunKind::Full => {
                let (pass, start) = self.store.begin_full_pass(unix_now()).await?;
                if start > 0 {
                    tracing::info!(
                        run_id = progress.run_id,
                        full_pass = pass,
                        from = start,
                        "resuming the unfinished full sync"
                    );
                }
                progress.full_pass = Some(pass);
                self.walk(progress, start, Listing::Alive).await?;
                self.store.finish_full_pass(pass, unix_now()).await?
            }
            RunKind::Incremental => {
                let started = unix_now();
                let state = self.store.sync_state().await?;
                let overlap = i64::from(self.options.overlap_seconds);
                let start = state.incremental_cursor.map_or(0, |c| (c - overlap).max(0));
                self.walk(progress, start, Listing::Alive).await?;
                let deleted_start = state.deleted_cursor.map_or(0, |c| (c - overlap).max(0));
                let before = self.store.lead_counts().await?.deleted;
                self.walk(progress, deleted_start, Listing::Deleted).await?;
                self.follow_events(progress, state.events_cursor, started)
                    .await?;
                let after = self.store.lead_counts().await?.deleted;
                u64::try_from(after - before).unwrap_or(0)
            }
        };
        self.update_request_count(progress);
        Ok(SyncReport {
            leads_upserted: progress.counters.leads_upserted,
            requests: progress.counters.requests,
            marked_deleted,
        })
    }

    /// Walks one listing from `start` to its end by keyset on `updated_at`.
    async fn walk(
        &self,
        progress: &mut RunProgress<'_>,
        start: i64,
        listing: Listing,
    ) -> Result<(), SyncError> {
        let limit = self.options.page_size;
        let mut cursor = start;
        loop {
            let query = LeadQuery {
                updated_from: Some(cursor),
                updated_to: None,
                page: 1,
                limit,
                only_deleted: listing == Listing::Deleted,
                order_by_id: false,
                ids: Vec::new(),
            };
            let page = self.fetch(progress, &query).await?;
            if page.leads.is_empty() {
                return Ok(());
            }
            let more = is_full(&page, limit);
            let Some(newest) = page.max_updated_at() else {
                return Err(KommoError::Decode {
                    message: format!("a page of leads from updated_at {cursor} carries no updated_at; the mirror cannot advance past it"),
                }
                .into());
            };
            let top = newest.max(cursor);
            if more && top == cursor {
                // A whole page inside the cursor's second: read the second by
                // id, then step past it.
                self.walk_second(progress, cursor, listing).await?;
                cursor += 1;
                continue;
            }
            self.commit(progress, &page.leads, listing, top).await?;
            if !more {
                return Ok(());
            }
            cursor = top;
        }
    }

    /// Reads every lead whose `updated_at` is `second`, by id with offset
    /// pages, until a pass brings no id the earlier passes had not seen.
    async fn walk_second(
        &self,
        progress: &mut RunProgress<'_>,
        second: i64,
        listing: Listing,
    ) -> Result<(), SyncError> {
        let limit = self.options.page_size;
        let mut seen: HashSet<i64> = HashSet::new();
        for pass in 1..=MAX_PASSES_PER_SECOND {
            let mut new_ids = 0usize;
            for page_number in 1.. {
                let query = LeadQuery {
                    updated_from: Some(second),
                    updated_to: Some(second),
                    page: page_number,
                    limit,
                    only_deleted: listing == Listing::Deleted,
                    order_by_id: true,
                    ids: Vec::new(),
                };
                let page = self.fetch(progress, &query).await?;
                new_ids += page.leads.iter().filter(|l| seen.insert(l.id)).count();
                if !page.leads.is_empty() {
                    self.commit(progress, &page.leads, listing, second).await?;
                }
                if !is_full(&page, limit) {
                    break;
                }
            }
            tracing::debug!(
                run_id = progress.run_id,
                second,
                pass,
                new_ids,
                "read one crowded second"
            );
            if pass > 1 && new_ids == 0 {
                return Ok(());
            }
        }
        tracing::warn!(
            run_id = progress.run_id,
            second,
            "leads kept changing inside one second while it was read; the next full sync reads it again"
        );
        Ok(())
    }

    /// Follows `lead_deleted` / `lead_restored` events since the event
    /// cursor: a restore need not change a lead's `updated_at`, so the keyset
    /// walk may never meet a restored lead. Every lead an event names is
    /// fetched by id: the ones returned are alive and upserted, the ones whose
    /// last event is a deletion and that are not returned are marked deleted.
    async fn follow_events(
        &self,
        progress: &mut RunProgress<'_>,
        events_cursor: Option<i64>,
        until: i64,
    ) -> Result<(), SyncError> {
        let Some(cursor) = events_cursor else {
            // Nothing to catch up on before the first sync: start following now.
            return self.commit_events_cursor(progress, until).await;
        };
        let from = (cursor - i64::from(self.options.overlap_seconds)).max(0);
        let mut last_event: HashMap<LeadId, (i64, bool)> = HashMap::new();
        for page_number in 1.. {
            if progress.cancel.is_cancelled() {
                return Err(SyncError::Interrupted);
            }
            let query = EventQuery {
                types: vec!["lead_deleted", "lead_restored"],
                created_from: from,
                created_to: until,
                page: page_number,
                limit: EVENTS_PER_PAGE,
            };
            let result = self.client.fetch_events(progress.token, &query).await;
            self.update_request_count(progress);
            let page = match result {
                Ok(page) => page,
                Err(KommoError::Unauthorized) => return Err(KommoError::Unauthorized.into()),
                Err(e) if !e.is_transient() => {
                    tracing::warn!(run_id = progress.run_id, error = %e, "cannot read lead events; restores are picked up by the next full sync");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            for event in &page.events {
                let deleted = event.kind == "lead_deleted";
                let entry = last_event
                    .entry(event.lead_id)
                    .or_insert((event.created_at, deleted));
                if event.created_at >= entry.0 {
                    *entry = (event.created_at, deleted);
                }
            }
            if !page.has_next && page.events.len() < EVENTS_PER_PAGE as usize {
                break;
            }
        }
        let mut ids: Vec<LeadId> = last_event.keys().copied().collect();
        ids.sort_unstable();
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let query = LeadQuery {
                updated_from: None,
                updated_to: None,
                page: 1,
                limit: self.options.page_size.max(IDS_PER_REQUEST as u32),
                only_deleted: false,
                order_by_id: true,
                ids: chunk.to_vec(),
            };
            let page = self.fetch(progress, &query).await?;
            let alive: Vec<Lead> = page
                .leads
                .into_iter()
                .filter(|l| !l.is_deleted && chunk.contains(&l.id))
                .collect();
            let gone: Vec<LeadId> = chunk
                .iter()
                .filter(|id| last_event[id].1 && !alive.iter().any(|l| l.id == **id))
                .copied()
                .collect();
            progress.counters.leads_upserted += alive.len() as i64;
            self.store
                .commit_page(PageCommit {
                    run_id: progress.run_id,
                    leads: &alive,
                    gone: &gone,
                    full_pass: None,
                    cursor: CursorUpdate::default(),
                    counters: progress.counters,
                    now: unix_now(),
                })
                .await?;
        }
        self.commit_events_cursor(progress, until).await
    }

    async fn commit_events_cursor(
        &self,
        progress: &mut RunProgress<'_>,
        until: i64,
    ) -> Result<(), SyncError> {
        self.store
            .commit_page(PageCommit {
                run_id: progress.run_id,
                leads: &[],
                gone: &[],
                full_pass: None,
                cursor: CursorUpdate {
                    events: Some(until),
                    ..CursorUpdate::default()
                },
                counters: progress.counters,
                now: unix_now(),
            })
            .await?;
        Ok(())
    }

    /// Fetches one page; a stop request lets the page in flight finish (up to
    /// [`STOP_GRACE`]) and then ends the run.
    async fn fetch(
        &self,
        progress: &mut RunProgress<'_>,
        query: &LeadQuery,
    ) -> Result<LeadPage, SyncError> {
        if progress.cancel.is_cancelled() {
            return Err(SyncError::Interrupted);
        }
        let request = self.client.fetch_leads(progress.token, query);
        tokio::pin!(request);
        let result = tokio::select! {
            result = &mut request => result,
            () = progress.cancel.cancelled() => {
                match tokio::time::timeout(STOP_GRACE, &mut request).await {
                    Ok(result) => result,
                    Err(_) => return Err(SyncError::Interrupted),
                }
            }
        };
        self.update_request_count(progress);
        Ok(result?)
    }

    /// Commits a page with the cursor it reaches.
    async fn commit(
        &self,
        progress: &mut RunProgress<'_>,
        leads: &[Lead],
        listing: Listing,
        reached: i64,
    ) -> Result<(), SyncError> {
        progress.counters.leads_upserted += leads.len() as i64;
        let cursor = match listing {
            Listing::Alive => CursorUpdate {
                incremental: Some(reached),
                deleted: None,
                full: progress.full_pass.map(|_| reached),
                events: None,
            },
            Listing::Deleted => CursorUpdate {
                deleted: Some(reached),
                ..CursorUpdate::default()
            },
        };
        self.store
            .commit_page(PageCommit {
                run_id: progress.run_id,
                leads,
                gone: &[],
                full_pass: progress.full_pass,
                cursor,
                counters: progress.counters,
                now: unix_now(),
            })
            .await?;
        Ok(())
    }

    fn update_request_count(&self, progress: &mut RunProgress<'_>) {
        let sent = self.client.requests_sent() - progress.requests_before;
        progress.counters.requests = i64::try_from(sent).unwrap_or(i64::MAX);
    }
}

/// Whether more leads may follow this page.
fn is_full(page: &LeadPage, limit: u32) -> bool {
    page.has_next || page.leads.len() >= limit as usize
}
