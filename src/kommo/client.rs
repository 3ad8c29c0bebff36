//! The HTTP client for Kommo's API v4: one `reqwest::Client`, one [`Pacer`]
//! for every request and retry, bounded retries with backoff and jitter for
//! transient failures, and the one place where a response becomes data or a
//! typed [`KommoError`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::{EventPage, KommoError, LeadId, LeadPage, Pacer};
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
    /// Retries of one request after a transient failure.
    pub max_retries: u32,
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
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
        }
    }
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
    /// Order by id instead of by `updated_at` (used inside one second).
    pub order_by_id: bool,
    /// Only these ids (`filter[id][]`); empty for no id filter.
    pub ids: Vec<LeadId>,
}

impl LeadQuery {
    fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("page", self.page.to_string()),
            ("limit", self.limit.to_string()),
        ];
        let with = if self.only_deleted {
            "only_deleted,source_id"
        } else {
            "source_id"
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
        if self.order_by_id {
            q.push(("order[id]", "asc".into()));
        } else {
            q.push(("order[updated_at]", "asc".into()));
        }
        q
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
}

impl KommoClient {
    /// Builds the client for `base` (e.g. `https://acme.kommo.com`).
    pub fn new(base: Url, options: ClientOptions) -> Result<KommoClient, KommoError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("kommo-sync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
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
        })
    }

    /// The gap the pacer keeps between two requests.
    pub fn request_spacing(&self) -> Duration {
        super::request_spacing(self.options.requests_per_second)
    }

    /// Requests sent so far by this client and its clones, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// One page of `GET /api/v4/leads`; a 204 is an empty page.
    pub async fn fetch_leads(
        &self,
        token: &Secret,
        query: &LeadQuery,
    ) -> Result<LeadPage, KommoError> {
        match self
            .get_json(token, "api/v4/leads", &query.to_pairs())
            .await?
        {
            None => Ok(LeadPage::default()),
            Some(body) => LeadPage::from_json(body),
        }
    }

    /// One page of `GET /api/v4/events`; a 204 is an empty page.
    pub async fn fetch_events(
        &self,
        token: &Secret,
        query: &EventQuery,
    ) -> Result<EventPage, KommoError> {
        match self
            .get_json(token, "api/v4/events", &query.to_pairs())
            .await?
        {
            None => Ok(EventPage::default()),
            Some(body) => EventPage::from_json(body),
        }
    }

    /// `GET /api/v4/account`: the cheapest probe of a token.
    pub async fn fetch_account(&self, token: &Secret) -> Result<Value, KommoError> {
        self.get_json(token, "api/v4/account", &[])
            .await?
            .ok_or_else(|| KommoError::Decode {
                message: "/api/v4/account answered 204 No Content".into(),
            })
    }

    /// GET with pacing and retries; `None` for 204.
    async fn get_json(
        &self,
        token: &Secret,
        path: &str,
        query: &[(&'static str, String)],
    ) -> Result<Option<Value>, KommoError> {
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

        let mut attempt = 0u32;
        loop {
            self.pacer.ready().await;
            self.sent.fetch_add(1, Ordering::Relaxed);
            let result = self.send_once(url.clone(), auth.clone()).await;
            match result {
                Ok(body) => return Ok(body),
                Err(error) if error.is_transient() && attempt < self.options.max_retries => {
                    let delay = match &error {
                        KommoError::RateLimited {
                            retry_after: Some(after),
                        } => *after,
                        _ => self.backoff(attempt),
                    };
                    if matches!(error, KommoError::RateLimited { .. }) {
                        self.pacer.pause_for(delay);
                    }
                    tracing::warn!(
                        path,
                        attempt = attempt + 1,
                        retry_in_ms = delay.as_millis() as u64,
                        error = %error,
                        "transient failure, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn send_once(&self, url: Url, auth: HeaderValue) -> Result<Option<Value>, KommoError> {
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
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(3600)));
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
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| KommoError::Decode {
                message: format!("HTTP {status} with a body that is not JSON ({e})"),
            })
    }

    /// Capped exponential backoff with ±25 % jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .options
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16));
        let capped = base.min(self.options.backoff_cap);
        capped.mul_f64(0.75 + fastrand::f64() * 0.5)
    }
}
