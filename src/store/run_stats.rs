//! Figures over the whole `sync_runs` table, read when the metrics endpoint is
//! scraped: runs by kind and outcome, the last successful run of each kind and
//! the leads skipped. Reading them from the table (not from counters in
//! memory) keeps them right after a restart and counts the runs of other
//! processes (a manual `--once`) too.

use super::{Store, StoreError};

/// The runs of one kind that ended with one status.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RunGroup {
    /// `full` or `incremental`.
    pub kind: String,
    /// `ok`, `failed`, `unauthorized`, `interrupted` (or `running`).
    pub status: String,
    /// How many runs.
    pub runs: i64,
    /// Unix seconds when the latest of them finished (`None` while running).
    pub last_finished_at: Option<i64>,
    /// Leads Kommo sent that these runs could not store.
    pub leads_skipped: i64,
}

impl Store {
    /// Every (kind, status) group of `sync_runs`, one scan of the table.
    pub async fn run_groups(&self) -> Result<Vec<RunGroup>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kind, status, COUNT(*) AS runs, MAX(finished_at) AS last_finished_at, \
             CAST(COALESCE(SUM(leads_skipped), 0) AS BIGINT) AS leads_skipped \
             FROM sync_runs GROUP BY kind, status ORDER BY kind, status",
        )
        .fetch_all(self.db.committed())
        .await?)
    }
}
