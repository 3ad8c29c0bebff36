//! An in-process simulator of the Kommo API v4 lead endpoints, so the sync
//! daemon can be tested (and demonstrated) without a real account: offset
//! paging computed live, 204 past the end, a strict 7-per-second window with
//! non-JSON 429s, 401 problem+json on bad or revoked tokens, injected 5xx,
//! deleted leads, and concurrent churn while a client pages. The behaviour
//! follows `docs/kommo-api.md`.
//!
//! [`Simulator`] is the public handle; `account` holds the leads,
//! `generator` creates them, `query` parses list requests, `http` serves
//! them and `stats` counts what happened.

mod account;
mod events;
mod generator;
mod http;
mod query;
mod stats;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

pub use account::Mutation;
pub use stats::SimulatorStats;

use account::Account;
use stats::RateWindow;

/// How the simulated account is generated and policed.
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// number of leads to generate (default 5000)
    pub leads: usize,
    /// size of a bulk-import block of leads that all share ONE updated_at
    /// second (default 600, i.e. > 2 pages of 250); 0 = none
    pub tie_block: usize,
    /// RNG seed, deterministic generation (default 42)
    pub seed: u64,
    /// strict limit: more than this many requests arriving within any closed
    /// 1-second window get 429 (default 7)
    pub rate_limit_per_second: u32,
    /// the one token accepted (Authorization: Bearer <token>) initially
    pub token: String,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            leads: 5000,
            tie_block: 600,
            seed: 42,
            rate_limit_per_second: 7,
            token: "sim-token".to_string(),
        }
    }
}

/// Test-controlled knobs of the lead endpoint.
struct Control {
    token: Option<String>,
    revoke_after: Option<u64>,
    fail_next: u32,
    fail_status: u16,
    churn: usize,
    /// Added before every answer, like the round trip to a distant server.
    latency: std::time::Duration,
}

/// Everything behind the one mutex.
struct State {
    account: Account,
    control: Control,
    stats: SimulatorStats,
    window: RateWindow,
    rate_limit: u32,
    /// Requests received and not yet answered.
    in_flight: u64,
}

/// State shared by the handle and the server task.
struct Shared {
    state: Mutex<State>,
    base_url: String,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// Locks the state; a poisoned lock is still used (no panic cascades).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle to a running simulator. Cheap to clone; the server keeps running
/// until [`Simulator::shutdown`] (or the runtime ends).
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl Simulator {
    /// Generates the account, binds `127.0.0.1:0` and serves in a spawned
    /// tokio task.
    pub async fn start(config: SimulatorConfig) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://127.0.0.1:{}", addr.port());
        let account = Account::new(
            config.leads,
            config.tie_block,
            config.seed,
            base_url.clone(),
        );
        let (tx, mut rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                account,
                control: Control {
                    token: Some(config.token),
                    revoke_after: None,
                    fail_next: 0,
                    fail_status: 500,
                    churn: 0,
                    latency: std::time::Duration::ZERO,
                },
                stats: SimulatorStats::default(),
                window: RateWindow::default(),
                rate_limit: config.rate_limit_per_second,
                in_flight: 0,
            }),
            base_url,
            shutdown: tx,
        });
        let app = http::router(shared.clone());
        tracing::debug!(%addr, leads = config.leads, "kommo simulator listening");
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %e, "kommo simulator server failed");
            }
        });
        Ok(Simulator { shared })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The accepted token becomes this one; any other gets 401.
    pub fn set_token(&self, token: &str) {
        let mut st = self.shared.lock();
        st.control.token = Some(token.to_string());
        st.control.revoke_after = None;
    }

    /// No token is accepted any more (all 401) until `set_token`.
    pub fn revoke_token(&self) {
        let mut st = self.shared.lock();
        st.control.token = None;
        st.control.revoke_after = None;
    }

    /// The next `n` authorized lead requests are answered normally, then the
    /// token is revoked (`n = 0` revokes now).
    pub fn revoke_token_after_lead_requests(&self, n: u64) {
        let mut st = self.shared.lock();
        if n == 0 {
            st.control.token = None;
            st.control.revoke_after = None;
        } else {
            st.control.revoke_after = Some(n);
        }
    }

    /// The next `n` lead requests answer `status` with a non-JSON body.
    pub fn fail_next_lead_requests(&self, n: u32, status: u16) {
        let mut st = self.shared.lock();
        st.control.fail_next = n;
        st.control.fail_status = status;
    }

    /// Before answering each lead request, apply `n` random mutations.
    pub fn set_churn_per_lead_request(&self, n: usize) {
        self.shared.lock().control.churn = n;
    }

    /// Delays every answer by `latency` (the request is counted, and its
    /// answer decided, on arrival).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.shared.lock().control.latency = latency;
    }

    /// Changes name, price and a custom field; `updated_at` = now.
    pub fn update_lead(&self, id: i64) -> bool {
        self.shared.lock().account.update(id)
    }

    /// Moves the lead to the deleted set; its listed `updated_at` = now.
    pub fn delete_lead(&self, id: i64) -> bool {
        self.shared.lock().account.delete(id)
    }

    /// Back to alive, `updated_at` unchanged.
    pub fn restore_lead(&self, id: i64) -> bool {
        self.shared.lock().account.restore(id)
    }

    /// A new lead with a new highest id; `created_at = updated_at = now`.
    pub fn add_lead(&self) -> i64 {
        self.shared.lock().account.add()
    }

    /// Alive leads sorted by id, exactly as the API returns them.
    pub fn alive_leads(&self) -> Vec<serde_json::Value> {
        self.shared.lock().account.alive_leads()
    }

    pub fn alive_ids(&self) -> Vec<i64> {
        self.shared.lock().account.alive_ids()
    }

    pub fn deleted_ids(&self) -> Vec<i64> {
        self.shared.lock().account.deleted_ids()
    }

    /// Every mutation applied since start, in order.
    pub fn mutations(&self) -> Vec<Mutation> {
        self.shared.lock().account.mutations()
    }

    pub fn stats(&self) -> SimulatorStats {
        self.shared.lock().stats.clone()
    }

    pub fn reset_stats(&self) {
        self.shared.lock().stats = SimulatorStats::default();
    }

    /// Stops serving (graceful: in-flight requests finish).
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}
