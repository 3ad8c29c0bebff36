//! The daemon's metrics and health endpoint (`metrics.listen`): `GET /metrics`
//! in the Prometheus text format and `GET /healthz`, so that a monitoring
//! system can see, without reading logs, whether the mirror is fresh, whether
//! Kommo still accepts the token and when it expires.
//!
//! Figures about the mirror (runs, last successful sync, leads) are read from
//! the database at every scrape, so they are right after a restart and count
//! the runs of other processes too. Figures about this process (requests sent,
//! 429s, retries, the last attempt, the token) live in memory: the client
//! counts requests, and [`Metrics::record_attempt`] and
//! [`Metrics::token_read`] are the hooks the attempt calls.
//!
//! The module sits low in the crate: it uses the store, the Kommo client and
//! the token, and the attempt and the daemon use it, never the reverse.

mod exposition;
mod server;

use std::sync::{Arc, Mutex, MutexGuard};

use crate::alert::Alert;
use crate::clock::unix_now;
use crate::kommo::{COMPANIES, CONTACTS, KommoClient};
use crate::poison::LockAnyway;
use crate::store::{RunKind, RunStatus, Store, StoreError};
use crate::token::{Secret, jwt_expiry};

pub use server::MetricsServer;

/// What the metrics endpoint reads: the mirror, the client's counters and
/// what the attempts reported. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Metrics {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    client: KommoClient,
    live: Mutex<LiveState>,
}

/// What this process learned from its attempts.
#[derive(Clone, Debug, Default)]
struct LiveState {
    last_attempt: Option<LastAttempt>,
    /// The `exp` of the token read last; `None` when unknown (not a JWT).
    token_expires_at: Option<i64>,
    /// The last attempt that settled the question found the token rejected.
    token_rejected: bool,
    /// The client's count of successful answers when the last attempt ended.
    accepted_answers_seen: u64,
}

/// How the last attempt of this process ended.
#[derive(Clone, Debug)]
struct LastAttempt {
    kind: RunKind,
    status: RunStatus,
    alert: Option<Alert>,
    /// A readable message (never the token) when it did not succeed.
    error: Option<String>,
    /// Unix seconds when it ended.
    ended_at: i64,
}

/// The answer of `/healthz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// The last attempt succeeded and the token is accepted.
    Healthy,
    /// Why not, in one line.
    Unhealthy(String),
}

impl Metrics {
    /// Metrics of the mirror in `store`, synced through `client`.
    pub fn new(store: Store, client: KommoClient) -> Metrics {
        let live = LiveState {
            accepted_answers_seen: client.response_counts().accepted(),
            ..LiveState::default()
        };
        Metrics {
            shared: Arc::new(Shared {
                store,
                client,
                live: Mutex::new(live),
            }),
        }
    }

    fn live(&self) -> MutexGuard<'_, LiveState> {
        self.shared.live.lock_anyway()
    }

    /// The token was read for an attempt (or at daemon start): its expiry
    /// becomes the token expiry gauge.
    pub fn token_read(&self, token: &Secret) {
        self.live().token_expires_at = jwt_expiry(token);
    }

    /// An attempt of `kind` ended with `status` (and the alert it raised and
    /// its message, when it failed). `unauthorized` marks the token rejected;
    /// any attempt that got a successful answer from Kommo marks it accepted.
    pub fn record_attempt(
        &self,
        kind: RunKind,
        status: RunStatus,
        alert: Option<Alert>,
        error: Option<&str>,
    ) {
        let accepted_answers = self.shared.client.response_counts().accepted();
        let mut live = self.live();
        if status == RunStatus::Unauthorized {
            live.token_rejected = true;
        } else if status == RunStatus::Ok || accepted_answers > live.accepted_answers_seen {
            live.token_rejected = false;
        }
        live.accepted_answers_seen = accepted_answers;
        live.last_attempt = Some(LastAttempt {
            kind,
            status,
            alert,
            error: error.map(one_line),
            ended_at: unix_now(),
        });
    }

    /// `/healthz`: healthy when the last attempt succeeded and the token is
    /// accepted.
    pub fn health(&self) -> Health {
        let live = self.live();
        let Some(last) = &live.last_attempt else {
            return Health::Unhealthy("no sync attempted yet".into());
        };
        if last.alert == Some(Alert::TokenRejected) {
            return Health::Unhealthy("token rejected by Kommo (HTTP 401)".into());
        }
        if last.status == RunStatus::Ok {
            return Health::Healthy;
        }
        let reason = last.error.as_deref().unwrap_or("no message");
        let outcome = match last.status {
            RunStatus::Unauthorized => "unauthorized",
            RunStatus::Interrupted => "interrupted",
            _ => "failed",
        };
        Health::Unhealthy(format!("last {} sync {outcome}: {reason}", last.kind))
    }

    /// The Prometheus text of every metric, read now.
    pub async fn render(&self) -> Result<String, StoreError> {
        let run_groups = self.shared.store.run_groups().await?;
        let leads = self.shared.store.lead_counts().await?;
        let mut records = Vec::new();
        for entity in [&CONTACTS, &COMPANIES] {
            records.push((
                entity.plural,
                self.shared.store.record_counts(entity).await?,
            ));
        }
        let live = self.live().clone();
        let client = &self.shared.client;
        let snapshot = exposition::Snapshot {
            account: client.base_host(),
            run_groups,
            leads,
            records,
            requests_sent: client.requests_sent(),
            responses_429: client.response_counts().throttled(),
            retries: client.response_counts().retries(),
            last_attempt: live.last_attempt.map(|a| (a.status, a.ended_at)),
            token_expires_at: live.token_expires_at,
            token_rejected: live.token_rejected,
        };
        Ok(exposition::encode(&snapshot))
    }
}

/// A message on one line (the health answer is one line).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kommo::ClientOptions;

    async fn metrics(dir: &tempfile::TempDir) -> Metrics {
        let store = Store::open(&dir.path().join("m.sqlite")).await.unwrap();
        let client = KommoClient::new(
            "http://127.0.0.1:9/".parse().unwrap(),
            ClientOptions::default(),
        )
        .unwrap();
        Metrics::new(store, client)
    }

    #[tokio::test]
    async fn health_follows_the_last_attempt_and_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics(&dir).await;
        assert_eq!(
            m.health(),
            Health::Unhealthy("no sync attempted yet".into())
        );
        m.record_attempt(RunKind::Incremental, RunStatus::Ok, None, None);
        assert_eq!(m.health(), Health::Healthy);
        m.record_attempt(
            RunKind::Incremental,
            RunStatus::Unauthorized,
            Some(Alert::TokenRejected),
            Some("Kommo returned HTTP 401"),
        );
        assert_eq!(
            m.health(),
            Health::Unhealthy("token rejected by Kommo (HTTP 401)".into())
        );
        // A failure that got no answer from Kommo says nothing of the token.
        m.record_attempt(
            RunKind::Full,
            RunStatus::Failed,
            None,
            Some("HTTP 503\nafter 5 retries"),
        );
        assert!(m.live().token_rejected);
        assert_eq!(
            m.health(),
            Health::Unhealthy("last full sync failed: HTTP 503 after 5 retries".into())
        );
        m.record_attempt(RunKind::Incremental, RunStatus::Ok, None, None);
        assert!(!m.live().token_rejected);
        assert_eq!(m.health(), Health::Healthy);
    }

    #[tokio::test]
    async fn renders_the_mirror_and_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics(&dir).await;
        let text = m.render().await.unwrap();
        assert!(
            text.contains("kommo_sync_leads{account=\"127.0.0.1\",state=\"alive\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("kommo_sync_token_rejected{account=\"127.0.0.1\"} 0\n"),
            "{text}"
        );
        assert!(
            !text.contains("kommo_sync_token_expiry_timestamp_seconds{"),
            "unknown expiry is absent: {text}"
        );
        let token = crate::token::fake_jwt(1_900_000_000);
        m.token_read(&token);
        let text = m.render().await.unwrap();
        assert!(
            text.contains(
                "kommo_sync_token_expiry_timestamp_seconds{account=\"127.0.0.1\"} 1900000000\n"
            ),
            "{text}"
        );
        assert!(!text.contains(token.expose()));
    }
}
