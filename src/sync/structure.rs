//! The structure phase of every sync: the account, pipelines with their
//! stages, users, lead custom fields, loss reasons and tags, fetched through
//! the same client (pacer, retries, error mapping) as the leads, then
//! written in one transaction.
//!
//! Each listing is read whole by the listing reader ([`super::listing`]):
//! two passes that agree, so eleven requests (two more per entity beyond
//! leads) for an account whose custom fields fit in 50 and whose users and
//! tags fit in 250. A full sync runs it alongside its walks; an incremental
//! one after them, only when it is due ([`Syncer::structure_due`]): the
//! structure changes seldom, and reading it at every sync would cost more
//! than the records of a quiet account. A listing that
//! cannot be read (`403` with a JSON body, typically users for a token
//! without admin rights; a `404`; a failure that outlasts the retries) is
//! left as it was in the mirror, with a warning, and the rest of the sync
//! goes on: the leads are what the mirror is for. A token rejected, a
//! blocked or unpaid account, or a stop request ends the run like anywhere
//! else.

use super::listing::Expect;
use super::slices::Layout;
use super::{RunProgress, SyncError, Syncer};
use crate::clock::unix_now;
use crate::kommo::structure::{
    CustomField, Keyed, LOSS_REASONS, ListEndpoint, PIPELINES, TAGS, USERS,
};
use crate::kommo::{Entity, KommoError};
use crate::store::{Part, StructureSnapshot};

impl Syncer {
    /// Whether an incremental sync reads the structure: the last reading
    /// (`read_at`, this machine's clock) is `structure_refresh_minutes` old
    /// (or from a clock set back since), or a record its walks wrote (each
    /// entity's walk start in `walked`) names a stage, loss reason or
    /// custom field the mirror lacks, so its named views would show NULL
    /// until the next reading.
    pub(super) async fn structure_due(
        &self,
        read_at: Option<i64>,
        walked: &[(&'static Entity, i64)],
    ) -> Result<bool, SyncError> {
        let max_age = i64::from(self.options.structure_refresh_minutes) * 60;
        let fresh = read_at.is_some_and(|at| (0..max_age).contains(&(unix_now() - at)));
        Ok(!fresh || self.store.names_unknown_structure(walked).await?)
    }

    /// Fetches the account's structure and writes what could be read.
    pub(super) async fn sync_structure(&self, progress: &RunProgress) -> Result<(), SyncError> {
        let account = self
            .stoppable(progress, self.client.fetch_account_info(&progress.token))
            .await?;
        let snapshot = StructureSnapshot {
            account: readable(progress, "/api/v4/account", account)?,
            pipelines: self.fetch_listing(progress, &PIPELINES).await?,
            custom_fields: self.fetch_custom_fields(progress).await?,
            users: self.fetch_listing(progress, &USERS).await?,
            loss_reasons: self.fetch_listing(progress, &LOSS_REASONS).await?,
            tags: self.fetch_listing(progress, &TAGS).await?,
        };
        self.store
            .write_structure(progress.run_id, &snapshot, &progress.counters(), unix_now())
            .await?;
        Ok(())
    }

    /// One listing, read whole (see [`super::listing`]); `None` when it
    /// cannot be read (warned). Its rows missing from the mirror may be
    /// flagged deleted only when it proves absence and lists something.
    /// The custom field definitions of each synced entity, each marked with
    /// its entity.
    async fn fetch_custom_fields(
        &self,
        progress: &RunProgress,
    ) -> Result<Vec<(&'static str, Option<Part<CustomField>>)>, SyncError> {
        let mut all = Vec::new();
        for entity in self.options.entities.iter() {
            let mut part = self
                .fetch_listing::<CustomField>(progress, &entity.custom_fields)
                .await?;
            for field in part.iter_mut().flat_map(|p| &mut p.items) {
                field.entity_type = entity.plural;
            }
            all.push((entity.plural, part));
        }
        Ok(all)
    }

    async fn fetch_listing<T: Keyed>(
        &self,
        progress: &RunProgress,
        endpoint: &ListEndpoint,
    ) -> Result<Option<Part<T>>, SyncError> {
        let limit = endpoint.limit.unwrap_or(u32::MAX);
        let read = self
            .read_whole(
                progress,
                endpoint.path,
                Layout::Tiled,
                limit,
                Expect::default(),
                |slice| async move {
                    let listed = self
                        .stoppable(
                            progress,
                            self.client.fetch_structure_page::<T>(
                                &progress.token,
                                endpoint,
                                slice.page,
                            ),
                        )
                        .await??;
                    Ok(listed)
                },
            )
            .await;
        let listing = match read {
            Ok(listing) => listing,
            Err(SyncError::Kommo(e)) => return readable(progress, endpoint.path, Err(e)),
            Err(e) => return Err(e),
        };
        for reason in listing.pages.iter().flat_map(|page| &page.skipped) {
            tracing::warn!(
                run_id = progress.run_id,
                listing = endpoint.path,
                "Kommo listed an element that cannot be stored ({reason}); skipped, and \
                 nothing of this listing is flagged deleted in this sync"
            );
        }
        if !listing.settled {
            tracing::warn!(
                run_id = progress.run_id,
                listing = endpoint.path,
                "the listing changed at each reading; what was read is stored and nothing of \
                 it is flagged deleted in this sync"
            );
        }
        // A listing with nothing in it (a 204, an empty 200) flags nothing
        // deleted: silence is more likely a fault than an account whose
        // every pipeline, user or tag is gone.
        let complete = listing.proves_absence() && !listing.keys.is_empty();
        let items = listing
            .pages
            .into_iter()
            .flat_map(|page| page.items)
            .collect();
        Ok(Some(Part { items, complete }))
    }
}

/// The listing's answer, `None` for one that cannot be read (warned), or
/// the error that stops the run (one that raises an alert: 401, a blocked or
/// unpaid account, ignored filters).
fn readable<T>(
    progress: &RunProgress,
    path: &str,
    result: Result<T, KommoError>,
) -> Result<Option<T>, SyncError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.alert().is_some() => Err(e.into()),
        Err(e) => {
            let hint = if path.ends_with("users") && matches!(e, KommoError::Forbidden { .. }) {
                "Kommo lists users only to administrators: give the integration's user admin \
                 rights to mirror users; "
            } else {
                ""
            };
            tracing::warn!(
                run_id = progress.run_id,
                listing = path,
                error = %e,
                "cannot read {path}; {hint}its table keeps what it held, the next sync reads it again, and the rest of this sync goes on"
            );
            Ok(None)
        }
    }
}
