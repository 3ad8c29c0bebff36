//! When to try a failed request again: transient failures with backoff and
//! jitter up to `max_retries`, 429s with a budget of their own, honouring
//! `Retry-After` (seconds, or a date read on Kommo's clock).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::server_clock::{header_date, parse_http_date};
use super::{ClientOptions, KommoError};

/// The longest pause a `Retry-After` can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The shortest pause after a 429, whatever `Retry-After` says.
const MIN_THROTTLE_PAUSE: Duration = Duration::from_secs(1);
/// First pause after a 429 without `Retry-After`; doubles at each 429 in a row.
const THROTTLE_BACKOFF_BASE: Duration = Duration::from_secs(2);

/// The pause a `Retry-After` header asks for: seconds, or an HTTP date read
/// against the same answer's `Date` (both Kommo's clock), else ours.
pub(super) fn retry_after(headers: &HeaderMap, local_now: i64) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds = match text.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let at = parse_http_date(text)?;
            let now = header_date(headers).unwrap_or(local_now);
            u64::try_from(at - now).unwrap_or(0)
        }
    };
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The retries one request has used.
#[derive(Debug, Default)]
pub(super) struct RetryBudget {
    /// Transient failures other than 429 so far.
    pub(super) failures: u32,
    /// 429s so far.
    pub(super) throttles: u32,
}

/// How long to wait before the next try.
pub(super) enum Retry {
    /// After a transient failure.
    After(Duration),
    /// After a 429: every request of the client waits, not just this one.
    Throttled(Duration),
}

impl RetryBudget {
    /// The wait before trying again after `error`, or `None` when the error
    /// is final or the budget for its kind is spent.
    pub(super) fn next(&mut self, error: &KommoError, options: &ClientOptions) -> Option<Retry> {
        match error {
            KommoError::RateLimited { retry_after }
                if self.throttles < options.max_throttle_retries =>
            {
                // A Retry-After of 0 (or a date already past) still waits
                // a second: retrying a throttled account at once is what
                // gets it blocked.
                let delay = retry_after
                    .map(|d| d.max(MIN_THROTTLE_PAUSE))
                    .unwrap_or_else(|| {
                        jitter(backoff(
                            THROTTLE_BACKOFF_BASE,
                            self.throttles,
                            options.backoff_cap,
                        ))
                    });
                self.throttles += 1;
                Some(Retry::Throttled(delay))
            }
            e if e.is_transient()
                && !matches!(e, KommoError::RateLimited { .. })
                && self.failures < options.max_retries =>
            {
                let delay = jitter(backoff(
                    options.backoff_base,
                    self.failures,
                    options.backoff_cap,
                ));
                self.failures += 1;
                Some(Retry::After(delay))
            }
            _ => None,
        }
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
    use reqwest::header::{DATE, HeaderValue};

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
