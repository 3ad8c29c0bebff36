//! The `sync_runs` table: one row per sync attempt, its kind, outcome and
//! counters.

use std::fmt;

use sqlx::{Any, Transaction};

use super::Store;
use super::StoreError;
use crate::alert::Alert;

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    /// Every lead, then deletion reconciliation.
    Full,
    /// Changes since the last sync.
    Incremental,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Full => "full",
            RunKind::Incremental => "incremental",
        }
    }

    /// The kind a `sync_runs.kind` value stands for.
    pub fn parse(text: &str) -> Option<RunKind> {
        [RunKind::Full, RunKind::Incremental]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How a run ended (or that it is still running).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Ok,
    Failed,
    Unauthorized,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Unauthorized => "unauthorized",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// The status a `sync_runs.status` value stands for.
    pub fn parse(text: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Ok,
            RunStatus::Failed,
            RunStatus::Unauthorized,
            RunStatus::Interrupted,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The counters a run keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounters {
    /// Leads written (a lead read twice counts twice).
    pub leads_upserted: i64,
    /// HTTP requests sent, retries included.
    pub requests: i64,
    /// Leads Kommo sent that could not be stored (no usable id).
    pub leads_skipped: i64,
}

/// A row of `sync_runs`, with the alert the run raised (`run_alerts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    pub id: i64,
    pub kind: RunKind,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: RunStatus,
    pub leads_upserted: i64,
    pub leads_skipped: i64,
    pub requests: i64,
    pub error: Option<String>,
    pub alert: Option<Alert>,
}

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for RunRecord {
    fn from_row(row: &'r sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        /// A value this build does not know (a newer build wrote it).
        fn unknown(column: &str, value: &str) -> sqlx::Error {
            sqlx::Error::ColumnDecode {
                index: column.to_string(),
                source: format!("unknown value {value:?}; a newer kommo-sync wrote it").into(),
            }
        }
        let kind: String = row.try_get("kind")?;
        let status: String = row.try_get("status")?;
        let alert: Option<String> = row.try_get("alert")?;
        Ok(RunRecord {
            id: row.try_get("id")?,
            kind: RunKind::parse(&kind).ok_or_else(|| unknown("kind", &kind))?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            status: RunStatus::parse(&status).ok_or_else(|| unknown("status", &status))?,
            leads_upserted: row.try_get("leads_upserted")?,
            leads_skipped: row.try_get("leads_skipped")?,
            requests: row.try_get("requests")?,
            error: row.try_get("error")?,
            // An alert this build does not know is no alert it acts on.
            alert: alert.as_deref().and_then(Alert::from_name),
        })
    }
}

pub async fn set_counters(
    tx: &mut Transaction<'static, Any>,
    run_id: i64,
    counters: &RunCounters,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sync_runs SET leads_upserted = $1, leads_skipped = $2, requests = $3 WHERE id = $4",
    )
    .bind(counters.leads_upserted)
    .bind(counters.leads_skipped)
    .bind(counters.requests)
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Records the start of a run (a batch lost by an earlier run no longer
    /// refuses pages).
    pub async fn start_run(&self, kind: RunKind, now: i64) -> Result<i64, StoreError> {
        let db = self.db.flushed_for_new_run().await?;
        let pool = db.pool();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sync_runs (kind, started_at, status) VALUES ($1, $2, 'running') RETURNING id",
        )
        .bind(kind.as_str())
        .bind(now)
        .fetch_one(pool)
        .await?;
        Ok(id)
    }

    /// Records the end of a run, with the alert it raised.
    pub async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        counters: &RunCounters,
        error: Option<&str>,
        alert: Option<Alert>,
        now: i64,
    ) -> Result<(), StoreError> {
        let db = self.db.flushed().await?;
        let pool = db.pool();
        let mut tx = pool.begin().await?;
        sqlx::query(
            "UPDATE sync_runs SET status = $1, finished_at = $2, leads_upserted = $3, leads_skipped = $4, \
             requests = $5, error = $6 WHERE id = $7",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(counters.leads_upserted)
        .bind(counters.leads_skipped)
        .bind(counters.requests)
        .bind(error)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        if let Some(alert) = alert {
            sqlx::query(
                "INSERT INTO run_alerts (run_id, alert) VALUES ($1, $2) \
                 ON CONFLICT (run_id) DO UPDATE SET alert = excluded.alert",
            )
            .bind(run_id)
            .bind(alert.name())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks runs left `running` by a process that died as `interrupted`.
    /// Call only while holding the sync lock, so no live run is touched.
    pub async fn close_abandoned_runs(&self, now: i64) -> Result<u64, StoreError> {
        let db = self.db.flushed().await?;
        let pool = db.pool();
        let result = sqlx::query(
            "UPDATE sync_runs SET status = 'interrupted', finished_at = $1, \
             error = 'the process ended before the run finished (killed or crashed); the next run resumed from the last committed page' \
             WHERE status = 'running'",
        )
        .bind(now)
        .execute(pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// When the last run of `kind` that ended `ok` started.
    pub async fn last_ok_start(&self, kind: RunKind) -> Result<Option<i64>, StoreError> {
        let db = self.db.flushed().await?;
        let pool = db.pool();
        Ok(sqlx::query_scalar(
            "SELECT MAX(started_at) FROM sync_runs WHERE kind = $1 AND status = 'ok'",
        )
        .bind(kind.as_str())
        .fetch_one(pool)
        .await?)
    }

    /// The counters of the run in progress as committed (for the progress
    /// line, which must not commit the run's batch early).
    pub async fn running_run_counters(&self) -> Result<Option<RunCounters>, StoreError> {
        let pool = self.db.committed();
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT leads_upserted, leads_skipped, requests FROM sync_runs \
             WHERE status = 'running' ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(pool)
        .await?;
        Ok(
            row.map(|(leads_upserted, leads_skipped, requests)| RunCounters {
                leads_upserted,
                leads_skipped,
                requests,
            }),
        )
    }

    /// The most recent runs, newest first, with the alert each raised.
    pub async fn recent_runs(&self, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        let db = self.db.flushed().await?;
        let pool = db.pool();
        Ok(sqlx::query_as(
            "SELECT id, kind, started_at, finished_at, status, leads_upserted, leads_skipped, requests, \
             error, alert FROM sync_runs LEFT JOIN run_alerts ON run_alerts.run_id = sync_runs.id \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await?)
    }
}
