//! One sync attempt as the daemon and the one-shot modes see it: take the
//! mirror's sync lock, record the run, re-read the token and check its
//! expiry, run the sync, record the outcome and raise the alerts.

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::alert::Alert;
use crate::clock::{format_unix, unix_now};
use crate::kommo::KommoError;
use crate::service::SyncService;
use crate::store::{RunKind, RunStatus};
use crate::sync::{RunProgress, SyncError, SyncReport};
use crate::token::{ExpiryState, Secret, TokenSource, expiry_state};

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The run's recorded status (`Failed` also when no run could be recorded).
    pub status: RunStatus,
    /// The `sync_runs` row, when one was written.
    pub run_id: Option<i64>,
    /// What the completed sync did.
    pub report: Option<SyncReport>,
    /// A readable message when the attempt did not succeed.
    pub error: Option<String>,
    /// The alert the failure raised.
    pub alert: Option<Alert>,
}

impl AttemptOutcome {
    /// The exit status of a one-shot that ended so.
    pub fn exit_status(&self) -> u8 {
        match self.status {
            RunStatus::Ok => crate::exit::OK,
            RunStatus::Unauthorized => crate::exit::UNAUTHORIZED,
            RunStatus::Interrupted => crate::exit::INTERRUPTED,
            RunStatus::Failed | RunStatus::Running => crate::exit::FAILED,
        }
    }

    fn failed_without_run(error: String) -> Self {
        AttemptOutcome {
            status: RunStatus::Failed,
            run_id: None,
            report: None,
            error: Some(error),
            alert: None,
        }
    }
}

/// How a run ended, as recorded.
struct RunEnd {
    status: RunStatus,
    report: Option<SyncReport>,
    error: Option<String>,
    alert: Option<Alert>,
}

impl SyncService {
    /// Runs one sync of `kind` and records it (in the metrics too, when served).
    pub async fn attempt(&self, kind: RunKind, cancel: &CancellationToken) -> AttemptOutcome {
        let outcome = self.attempt_unobserved(kind, cancel).await;
        if let Some(metrics) = &self.metrics {
            let error = outcome.error.as_deref();
            metrics.record_attempt(kind, outcome.status, outcome.alert, error);
        }
        outcome
    }

    async fn attempt_unobserved(
        &self,
        kind: RunKind,
        cancel: &CancellationToken,
    ) -> AttemptOutcome {
        let store = self.syncer.store();
        let _lock = match store.lock_sync().await {
            Ok(lock) => lock,
            Err(message) => {
                tracing::error!(kind = %kind, "{message}");
                return AttemptOutcome::failed_without_run(message);
            }
        };
        if let Err(e) = store.close_abandoned_runs(unix_now()).await {
            tracing::warn!(error = %e, "cannot close runs abandoned by a killed process");
        }
        // A run another process ended a moment ago (a --backfill just before
        // this --once) may have requests still inside Kommo's one-second
        // window, which this process's pacer has not seen (its own runs it
        // has).
        if self.syncer.client().requests_sent() == 0
            && let Ok(runs) = store.recent_runs(1).await
            && let Some(last) = runs.first()
            && unix_now() - last.finished_at.unwrap_or(last.started_at) <= 1
        {
            self.syncer.client().wait_one_window();
        }
        let run_id = match store.start_run(kind, unix_now()).await {
            Ok(id) => id,
            Err(e) => {
                let message = format!(
                    "cannot record the run in the mirror {}: {e}; check free disk space and that the \
                     database is writable by this user",
                    store.describe()
                );
                tracing::error!(kind = %kind, "{message}");
                return AttemptOutcome::failed_without_run(message);
            }
        };
        // Every line of the attempt carries its run id.
        let span = tracing::info_span!("sync", run_id, kind = %kind);
        let end = self
            .run_recorded(kind, run_id, cancel)
            .instrument(span)
            .await;
        AttemptOutcome {
            status: end.status,
            run_id: Some(run_id),
            report: end.report,
            error: end.error,
            alert: end.alert,
        }
    }

    async fn run_recorded(&self, kind: RunKind, run_id: i64, cancel: &CancellationToken) -> RunEnd {
        let token = match self.usable_token(run_id) {
            Ok(token) => token,
            Err((status, message, alert)) => {
                self.record(run_id, status, &Default::default(), Some(&message), alert)
                    .await;
                return RunEnd {
                    status,
                    report: None,
                    error: Some(message),
                    alert,
                };
            }
        };
        tracing::debug!(run_id, kind = %kind, "sync started");
        let progress = RunProgress::new(run_id, token, cancel.child_token());
        let result = self.syncer.run(kind, &progress).await;
        let counters = progress.counters();
        let alert = match &result {
            Err(SyncError::Kommo(e)) => e.alert(),
            _ => None,
        };
        let (status, report, message) = match result {
            Ok(report) => (RunStatus::Ok, Some(report), None),
            Err(SyncError::Kommo(KommoError::Unauthorized)) => {
                let message = token_rejected_message(&self.token_source);
                crate::raise!(Alert::TokenRejected, run_id, kind = %kind, "{message}");
                (RunStatus::Unauthorized, None, Some(message))
            }
            Err(SyncError::Interrupted) => {
                let message = SyncError::Interrupted.to_string();
                tracing::warn!(run_id, kind = %kind, leads_upserted = counters.leads_upserted, "sync {message}");
                (RunStatus::Interrupted, None, Some(message))
            }
            Err(SyncError::Kommo(e)) if alert.is_some() => {
                let message = self.account_alert_message(&e).await;
                if let Some(alert) = alert {
                    crate::raise!(alert, run_id, kind = %kind, leads_upserted = counters.leads_upserted, "{message}");
                }
                (RunStatus::Failed, None, Some(message))
            }
            Err(SyncError::Store(e)) => {
                let message = format!(
                    "cannot write the mirror {}: {e}; check free disk space and that the database \
                     is writable by this user; everything committed before is intact",
                    self.syncer.store().describe()
                );
                tracing::error!(run_id, kind = %kind, leads_upserted = counters.leads_upserted, error = %message, "sync failed");
                (RunStatus::Failed, None, Some(message))
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(run_id, kind = %kind, leads_upserted = counters.leads_upserted, error = %message, "sync failed; progress up to the last committed page is kept");
                (RunStatus::Failed, None, Some(message))
            }
        };
        self.record(run_id, status, &counters, message.as_deref(), alert)
            .await;
        // The one INFO line of the run: its outcome and counts.
        tracing::info!(
            status = %status,
            leads_upserted = counters.leads_upserted,
            leads_skipped = counters.leads_skipped,
            requests = counters.requests,
            marked_deleted = report.map_or(0, |r| r.marked_deleted),
            "sync ended"
        );
        RunEnd {
            status,
            report,
            error: message,
            alert,
        }
    }

    /// The message of an account alert, with what support needs for a block.
    async fn account_alert_message(&self, error: &KommoError) -> String {
        let mut message = error.to_string();
        if matches!(error, KommoError::Blocked { .. }) {
            let account_id = self
                .syncer
                .store()
                .account_id()
                .await
                .ok()
                .flatten()
                .map_or_else(|| "unknown yet".to_string(), |id| id.to_string());
            message.push_str(&format!(
                " (account host {}, account id {account_id})",
                self.syncer.account_host()
            ));
        }
        message
    }

    /// Reads the token and checks its expiry, raising the expiry alerts.
    fn usable_token(&self, run_id: i64) -> Result<Secret, (RunStatus, String, Option<Alert>)> {
        let token = self.token_source.read().map_err(|e| {
            let message = e.to_string();
            tracing::error!(run_id, "{message}");
            (RunStatus::Failed, message, None)
        })?;
        match self.check_expiry(&token) {
            Some(message) => Err((RunStatus::Unauthorized, message, Some(Alert::TokenExpired))),
            None => Ok(token),
        }
    }

    /// Logs the expiry alerts; returns a message when the token is already expired.
    pub fn check_expiry(&self, token: &Secret) -> Option<String> {
        if let Some(metrics) = &self.metrics {
            metrics.token_read(token);
        }
        match expiry_state(token, unix_now(), self.token_expiry_warning_days) {
            ExpiryState::Expired { expires_at } => {
                let message = format!(
                    "the Kommo token expired on {}; no request was sent with it; create a new long-lived \
                     token in the Kommo integration settings and put it in {}",
                    format_unix(expires_at),
                    self.token_source.describe()
                );
                crate::raise!(Alert::TokenExpired, expires_at, "{message}");
                Some(message)
            }
            ExpiryState::ExpiresSoon {
                expires_at,
                days_left,
            } => {
                crate::raise!(
                    Alert::TokenExpiring,
                    days_left,
                    expires_at,
                    "the Kommo token expires on {} ({days_left} days left); create a new long-lived token and replace it in {} before then",
                    format_unix(expires_at),
                    self.token_source.describe()
                );
                None
            }
            ExpiryState::Valid { .. } | ExpiryState::Unknown => None,
        }
    }

    async fn record(
        &self,
        run_id: i64,
        status: RunStatus,
        counters: &crate::store::RunCounters,
        error: Option<&str>,
        alert: Option<Alert>,
    ) {
        if let Err(e) = self
            .syncer
            .store()
            .finish_run(run_id, status, counters, error, alert, unix_now())
            .await
        {
            tracing::error!(run_id, error = %e, "cannot record the end of the run");
        }
    }
}

/// The message of the `token_rejected` alert (Kommo answered 401).
pub fn token_rejected_message(source: &TokenSource) -> String {
    format!(
        "Kommo returned HTTP 401 Unauthorized: the token is expired or revoked; create a new \
         long-lived token in the Kommo integration settings and put it in {} (it is re-read at the next sync)",
        source.describe()
    )
}
