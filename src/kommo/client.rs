//! The HTTP client for Kommo's API v4: one `reqwest::Client` (connections
//! kept alive), one [`Pacer`] for every request and retry, bounded retries
//! with backoff and jitter for transient failures (429s with a budget of
//! their own, honouring `Retry-After`), Kommo's clock read from its `Date`
//! header, and the one place where a response becomes data or a typed
//! [`KommoError`].

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use reqwest::header::{AUTHORIZATION, DATE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::structure::{AccountInfo, Keyed, ListEndpoint, Listed};
use super::{KommoError, LeadEventsPage, LeadId, LeadPage, Pacer, ResponseCounts};
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

/// The order of a listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeadOrder {
    /// `order[updated_at]=asc`: keyset walks.
    #[default]
    UpdatedAsc,
    /// `order[updated_at]=desc`: the newest lead first.
    UpdatedDesc,
    /// `order[id]=asc`: stable inside one second, and for requests by id.
    IdAsc,
}

/// Which leads to ask for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeadQuery {
    /// `filter[updated_at][from]` (inclusive).
    pub updated_from: Option<i64>,
    /// `filter[updated_at][to]` (inclusive).
    pub updated_to: Option<i64>,
    /// 1-based page.
    pub page: u32,
    /// Leads per page (at most 250).
    pub limit: u32,
    /// List the deleted (restorable) leads instead (`with=only_deleted`).
    pub only_deleted: bool,
    /// The order asked for.
    pub order: LeadOrder,
    /// Only these ids (`filter[id][]`); empty for no id filter.
    pub ids: Vec<LeadId>,
}

impl LeadQuery {
    fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("page", self.page.to_string()),
            ("limit", self.limit.to_string()),
        ];
        // `contacts`: the lead's contact links (`_embedded.contacts`), which
        // Kommo leaves out unless asked.
        let with = if self.only_deleted {
            "only_deleted,source_id"
        } else {
            "contacts,source_id"
        };
        q.push(("with", with.to_string()));
        if let Some(from) = self.updated_from {
            q.push(("filter[updated_at][from]", from.to_string()));
        }
        if let Some(to) = self.updated_to {
            q.push(("filter[updated_at][to]", to.to_string()));
        }
        for id in &self.ids {
            q.push(("filter[id][]", id.to_string()));
        }
        q.push(match self.order {
            LeadOrder::UpdatedAsc => ("order[updated_at]", "asc".into()),
            LeadOrder::UpdatedDesc => ("order[updated_at]", "desc".into()),
            LeadOrder::IdAsc => ("order[id]", "asc".into()),
        });
        q
    }
}

impl LeadQuery {
    /// Fails with [`KommoError::FilterIgnored`] when `page` holds a lead this
    /// query's filter excludes: Kommo did not apply it, and no answer of the
    /// account can be trusted to mean what was asked.
    pub fn check_answer(&self, page: &LeadPage) -> Result<(), KommoError> {
        let ignored = |detail: String| Err(KommoError::FilterIgnored { detail });
        for lead in &page.leads {
            if !self.ids.is_empty() && !self.ids.contains(&lead.id) {
                return ignored(format!(
                    "asked for {} lead(s) by id, it answered with lead {}, not among them",
                    self.ids.len(),
                    lead.id
                ));
            }
            let Some(updated_at) = lead.updated_at else {
                continue;
            };
            if self.updated_from.is_some_and(|from| updated_at < from)
                || self.updated_to.is_some_and(|to| updated_at > to)
            {
                return ignored(format!(
                    "asked for leads updated from {} to {}, it answered with lead {} updated at {updated_at}",
                    self.updated_from
                        .map_or("the start".into(), |t| t.to_string()),
                    self.updated_to.map_or("now".into(), |t| t.to_string()),
                    lead.id
                ));
            }
        }
        Ok(())
    }
}

/// Which lead events to ask for (`GET /api/v4/events`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventQuery {
    /// Event types, e.g. `lead_restored`.
    pub types: Vec<&'static str>,
    /// `filter[created_at][from]` (inclusive).
    pub created_from: i64,
    /// `filter[created_at][to]` (inclusive): a fixed upper bound keeps the
    /// set of events still while it is paged by offset.
    pub created_to: i64,
    /// 1-based page.
    pub page: u32,
    /// Events per page (at most 100).
    pub limit: u32,
}

impl EventQuery {
    fn to_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("page", self.page.to_string()),
            ("limit", self.limit.to_string()),
            ("filter[type]", self.types.join(",")),
            ("filter[created_at][from]", self.created_from.to_string()),
            ("filter[created_at][to]", self.created_to.to_string()),
        ]
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
    clock: Arc<Mutex<Option<ServerTime>>>,
    /// The stop request of the run the client serves (see
    /// [`KommoClient::send_until`]).
    run_stop: Arc<Mutex<CancellationToken>>,
}

/// Kommo's clock as its last `Date` header told it.
#[derive(Clone, Copy, Debug)]
struct ServerTime {
    /// Unix seconds in the header.
    unix: i64,
    /// When the answer carrying it arrived.
    received: tokio::time::Instant,
}

/// The longest pause a `Retry-After` can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The shortest pause after a 429, whatever `Retry-After` says.
const MIN_THROTTLE_PAUSE: Duration = Duration::from_secs(1);
/// First pause after a 429 without `Retry-After`; doubles at each 429 in a row.
const THROTTLE_BACKOFF_BASE: Duration = Duration::from_secs(2);

/// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix seconds.
fn parse_http_date(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(text.trim())
        .ok()
        .map(|t| t.timestamp())
}

/// The pause a `Retry-After` header asks for: seconds, or an HTTP date read
/// against the same answer's `Date` (both Kommo's clock), else ours.
fn retry_after(headers: &HeaderMap, local_now: i64) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds = match text.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let at = parse_http_date(text)?;
            let now = headers
                .get(DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_http_date)
                .unwrap_or(local_now);
            u64::try_from(at - now).unwrap_or(0)
        }
    };
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
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
            clock: Arc::new(Mutex::new(None)),
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
        *self.run_stop.lock().unwrap_or_else(|e| e.into_inner()) = stop;
    }

    fn run_stopped(&self) -> bool {
        self.run_stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_cancelled()
    }

    /// Kommo's now in Unix seconds, from the `Date` header of its last answer
    /// plus the time since; `None` before any answer carried one.
    pub fn server_now(&self) -> Option<i64> {
        let time = (*self.clock.lock().unwrap_or_else(|e| e.into_inner()))?;
        let elapsed = i64::try_from(time.received.elapsed().as_secs()).unwrap_or(i64::MAX);
        Some(time.unix.saturating_add(elapsed))
    }

    fn note_server_time(&self, headers: &HeaderMap) {
        if let Some(unix) = headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
        {
            *self.clock.lock().unwrap_or_else(|e| e.into_inner()) = Some(ServerTime {
                unix,
                received: tokio::time::Instant::now(),
            });
        }
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

    /// One page of `GET /api/v4/leads`; a 204 is an empty page. A 200
    /// without leads is retried like any transient failure; an answer that
    /// does not fit the query (see [`LeadQuery::check_answer`]) is an error.
    pub async fn fetch_leads(
        &self,
        token: &Secret,
        query: &LeadQuery,
    ) -> Result<LeadPage, KommoError> {
        let (mut page, round_trip) = self
            .get_bytes_timed(token, "api/v4/leads", &query.to_pairs(), |body| {
                let page = match body {
                    None => LeadPage::default(),
                    Some(body) => LeadPage::from_slice(body)?,
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
        Ok(self.get_bytes_timed(token, path, query, parse).await?.0)
    }

    /// [`KommoClient::get_bytes`], with the round trip of the try that
    /// succeeded (from sending to the answer read and parsed, without the
    /// wait for the pacer).
    async fn get_bytes_timed<T>(
        &self,
        token: &Secret,
        path: &str,
        query: &[(&'static str, String)],
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

        let mut failures = 0u32;
        let mut throttles = 0u32;
        loop {
            self.pacer.ready().await;
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
            let delay = match &error {
                KommoError::RateLimited { retry_after }
                    if throttles < self.options.max_throttle_retries =>
                {
                    // A Retry-After of 0 (or a date already past) still waits
                    // a second: retrying a throttled account at once is what
                    // gets it blocked.
                    let delay = retry_after
                        .map(|d| d.max(MIN_THROTTLE_PAUSE))
                        .unwrap_or_else(|| {
                            jitter(backoff(
                                THROTTLE_BACKOFF_BASE,
                                throttles,
                                self.options.backoff_cap,
                            ))
                        });
                    throttles += 1;
                    // Every request of the client waits, not just this one.
                    self.pacer.pause_for(delay);
                    delay
                }
                e if e.is_transient()
                    && !matches!(e, KommoError::RateLimited { .. })
                    && failures < self.options.max_retries =>
                {
                    let delay = jitter(backoff(
                        self.options.backoff_base,
                        failures,
                        self.options.backoff_cap,
                    ));
                    failures += 1;
                    delay
                }
                _ => return Err(error),
            };
            self.counts.note_retry();
            tracing::warn!(
                path,
                failures,
                throttles,
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
        self.note_server_time(response.headers());
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

/// `base` doubled `attempt` times, at most `cap`.
fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16)).min(cap)
}

/// ±25 % jitter, so that clients do not retry in step.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(0.75 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(reqwest::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_in_seconds_and_as_an_http_date() {
        let now = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(now, 784_111_777);
        assert_eq!(
            retry_after(&headers(&[(RETRY_AFTER, "7")]), now),
            Some(Duration::from_secs(7))
        );
        // A date is read against the answer's own Date header...
        let h = headers(&[
            (RETRY_AFTER, "Sun, 06 Nov 1994 08:50:07 GMT"),
            (DATE, "Sun, 06 Nov 1994 08:49:47 GMT"),
        ]);
        assert_eq!(retry_after(&h, 0), Some(Duration::from_secs(20)));
        // ...or against our clock without one; a date in the past means now.
        let h = headers(&[(RETRY_AFTER, "Sun, 06 Nov 1994 08:50:07 GMT")]);
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(&h, now + 100), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[(RETRY_AFTER, "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        assert_eq!(
            retry_after(&headers(&[(RETRY_AFTER, "999999")]), now),
            Some(MAX_RETRY_AFTER)
        );
    }
}
