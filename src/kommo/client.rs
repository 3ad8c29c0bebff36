//! The HTTP client for Kommo's API v4: one `reqwest::Client` (connections
//! kept alive), one [`Pacer`] for every request and retry, the retries of
//! `retry`, Kommo's clock noted from each answer, and the one place where a
//! response becomes data or a typed [`KommoError`]. What is asked lives in
//! `query`.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::pacer::Lane;
use super::query::{EventQuery, RecordQuery};
use super::retry::{Retry, RetryBudget, retry_after};
use super::server_clock::ServerClock;
use super::structure::{AccountInfo, Keyed, ListEndpoint, Listed};
use super::{KommoError, LeadEventsPage, Pacer, RecordPage, ResponseCounts};
use crate::poison::LockAnyway;
use crate::token::Secret;

/// How the client behaves; the defaults suit the real Kommo.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Never more requests than this in any one-second window.
    pub requests_per_second: NonZeroU32,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout for a whole request.
    pub request_timeout: Duration,
    /// Retries of one request after a transient failure other than a 429.
    pub max_retries: u32,
    /// Retries of one request after 429 Too Many Requests: a budget of its
    /// own, so that a long throttle slows a run rather than failing it.
    pub max_throttle_retries: u32,
    /// First backoff delay; doubles at each retry.
    pub backoff_base: Duration,
    /// Longest backoff delay.
    pub backoff_cap: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            requests_per_second: NonZeroU32::new(7).expect("7 is not zero"),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_retries: 5,
            max_throttle_retries: 30,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
        }
    }
}

/// A client of one Kommo account. Cheap to clone; clones share the pacer.
#[derive(Clone)]
pub struct KommoClient {
    http: reqwest::Client,
    base: Url,
    pacer: Pacer,
    options: ClientOptions,
    sent: Arc<AtomicU64>,
    counts: Arc<ResponseCounts>,
    clock: ServerClock,
    /// The stop request of the run the client serves (see
    /// [`KommoClient::send_until`]).
    run_stop: Arc<Mutex<CancellationToken>>,
}

impl KommoClient {
    /// Builds the client for `base` (e.g. `https://acme.kommo.com`).
    pub fn new(base: Url, options: ClientOptions) -> Result<KommoClient, KommoError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("kommo-sync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| KommoError::Transport {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(KommoClient {
            http,
            base,
            pacer: Pacer::new(options.requests_per_second),
            options,
            sent: Arc::new(AtomicU64::new(0)),
            counts: Arc::default(),
            clock: ServerClock::default(),
            run_stop: Arc::default(),
        })
    }

    /// Binds the stop request of the run about to start: once `stop` is
    /// cancelled, a request that has not left yet (waiting in the pacer, or
    /// between two tries) is not sent and fails with
    /// [`KommoError::NotSent`]; one already sent is answered as usual. A run
    /// that fails in one of its concurrent walks then sends nothing more,
    /// which matters most after a `403` block. One run at a time per client.
    pub fn send_until(&self, stop: CancellationToken) {
        *self.run_stop.lock_anyway() = stop;
    }

    fn run_stopped(&self) -> bool {
        self.run_stop.lock_anyway().is_cancelled()
    }

    /// Kommo's now in Unix seconds, from the `Date` header of its last answer
    /// plus the time since; `None` before any answer carried one.
    pub fn server_now(&self) -> Option<i64> {
        self.clock.now()
    }

    /// The host of the account's base URL, e.g. `acme.kommo.com`.
    pub fn base_host(&self) -> String {
        self.base.host_str().unwrap_or_default().to_string()
    }

    /// Holds every request back for one rate window: requests another
    /// process sent just before may still count in Kommo's window.
    pub fn wait_one_window(&self) {
        self.pacer
            .pause_for(std::time::Duration::from_secs(1) + super::WINDOW_MARGIN);
    }

    /// The gap the pacer keeps between two requests.
    pub fn request_spacing(&self) -> Duration {
        super::request_spacing(self.options.requests_per_second)
    }

    /// Requests sent so far by this client and its clones, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Responses received so far by this client and its clones, by kind.
    pub fn response_counts(&self) -> &ResponseCounts {
        &self.counts
    }

    /// One page of `GET /api/v4/{entity}` (`leads`, `contacts`...); a 204
    /// is an empty page. A 200 without records is retried like any transient
    /// failure; an answer that does not fit the query (see
    /// [`RecordQuery::check_answer`]) is an error.
    pub async fn fetch_records(
        &self,
        token: &Secret,
        query: &RecordQuery,
    ) -> Result<RecordPage, KommoError> {
        let path = format!("api/v4/{}", query.entity.plural);
        let (mut page, round_trip) = self
            .get_bytes_timed(token, &path, &query.to_pairs(), Lane::Window, |body| {
                let page = match body {
                    None => RecordPage::default(),
                    Some(body) => RecordPage::from_slice(query.entity, body)?,
                };
                query.check_answer(&page)?;
                Ok(page)
            })
            .await?;
        page.round_trip = round_trip;
        Ok(page)
    }

    /// One page of `GET /api/v4/events`; a 204 is an empty page. The page
    /// holds every lead event, and the stage changes read out of them.
    pub async fn fetch_events(
        &self,
        token: &Secret,
        query: &EventQuery,
    ) -> Result<LeadEventsPage, KommoError> {
        self.get(
            token,
            "api/v4/events",
            &query.to_pairs(),
            LeadEventsPage::from_json,
        )
        .await
    }

    /// `GET /api/v4/account?with=datetime_settings`: the account with its
    /// time zone.
    pub async fn fetch_account_info(&self, token: &Secret) -> Result<AccountInfo, KommoError> {
        let query = [("with", "datetime_settings".to_string())];
        self.get(token, "api/v4/account", &query, |body| {
            AccountInfo::from_json(body.ok_or_else(|| KommoError::Decode {
                message: "/api/v4/account answered 204 No Content".into(),
            })?)
        })
        .await
    }

    /// Page `page` (1-based) of a structure listing such as
    /// `/api/v4/leads/pipelines`; a 204 is an empty last page.
    pub async fn fetch_structure_page<T: Keyed>(
        &self,
        token: &Secret,
        endpoint: &ListEndpoint,
        page: u32,
    ) -> Result<Listed<T>, KommoError> {
        let mut query = Vec::new();
        if endpoint.limit.is_some() || page > 1 {
            query.push(("page", page.to_string()));
        }
        if let Some(limit) = endpoint.limit {
            query.push(("limit", limit.to_string()));
        }
        self.get(token, endpoint.path, &query, |body| {
            Listed::from_json(endpoint.path, endpoint.key, body)
        })
        .await
    }

    /// `GET /api/v4/account`: the cheapest probe of a token.
    pub async fn fetch_account(&self, token: &Secret) -> Result<Value, KommoError> {
        self.get(token, "api/v4/account", &[], |body| {
            body.ok_or_else(|| KommoError::Decode {
                message: "/api/v4/account answered 204 No Content".into(),
            })
        })
        .await
    }

    /// GET with pacing and retries; `parse` gets the JSON body (`None` for
    /// 204), and a transient error from it is retried like a failed request.
    async fn get<T>(
        &self,
        token: &Secret,
        path: &str,
        query: &[(&'static str, String)],
        parse: impl Fn(Option<Value>) -> Result<T, KommoError>,
    ) -> Result<T, KommoError> {
        self.get_bytes(token, path, query, |body| {
            let value = body
                .map(|bytes| {
                    serde_json::from_slice(bytes).map_err(|e| KommoError::Decode {
                        message: format!("HTTP 200 with a body that is not JSON ({e})"),
                    })
                })
                .transpose()?;
            parse(value)
        })
        .await
    }

    /// Like [`KommoClient::get`], with the body's bytes: a large answer is
    /// read where it lies, without building a JSON tree first.
    async fn get_bytes<T>(
        &self,
        token: &Secret,
        path: &str,
        query: &[(&'static str, String)],
        parse: impl Fn(Option<&[u8]>) -> Result<T, KommoError>,
    ) -> Result<T, KommoError> {
        Ok(self
            .get_bytes_timed(token, path, query, Lane::Chain, parse)
            .await?
            .0)
    }

    /// [`KommoClient::get_bytes`], with the round trip of the try that
    /// succeeded (from sending to the answer read and parsed, without the
    /// wait for the pacer).
    async fn get_bytes_timed<T>(
        &self,
        token: &Secret,
        path: &str,
        query: &[(&'static str, String)],
        lane: Lane,
        parse: impl Fn(Option<&[u8]>) -> Result<T, KommoError>,
    ) -> Result<(T, Duration), KommoError> {
        let mut url = self.base.join(path).map_err(|e| KommoError::Transport {
            message: format!("cannot build the URL for {path}: {e}"),
        })?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                KommoError::Transport {
                message:
                    "the token contains characters that cannot go in an HTTP header; paste it again"
                        .into(),
            }
            })?;
        auth.set_sensitive(true);

        let mut budget = RetryBudget::default();
        loop {
            self.pacer.ready(lane).await;
            if self.run_stopped() {
                return Err(KommoError::NotSent);
            }
            self.sent.fetch_add(1, Ordering::Relaxed);
            let sent_at = tokio::time::Instant::now();
            let result = self
                .send_once(url.clone(), auth.clone())
                .await
                .and_then(|body| parse(body.as_deref()));
            let error = match result {
                Ok(value) => return Ok((value, sent_at.elapsed())),
                Err(error) => error,
            };
            let delay = match budget.next(&error, &self.options) {
                Some(Retry::After(delay)) => delay,
                Some(Retry::Throttled(delay)) => {
                    // Every request of the client waits, not just this one.
                    self.pacer.pause_for(delay);
                    delay
                }
                None => return Err(error),
            };
            self.counts.note_retry();
            tracing::warn!(
                path,
                failures = budget.failures,
                throttles = budget.throttles,
                retry_in_ms = delay.as_millis() as u64,
                error = %error,
                "transient failure, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(
        &self,
        url: Url,
        auth: HeaderValue,
    ) -> Result<Option<bytes::Bytes>, KommoError> {
        let response = self
            .http
            .get(url)
            .header(AUTHORIZATION, auth)
            .header(
                reqwest::header::ACCEPT,
                "application/hal+json, application/json",
            )
            .send()
            .await?;
        let status = response.status();
        self.counts.note(status);
        self.clock.note(response.headers());
        let retry_after = retry_after(response.headers(), crate::clock::unix_now());
        let body = response.bytes().await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(KommoError::from_status(status.as_u16(), retry_after, &body));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(Some(body))
    }
}
