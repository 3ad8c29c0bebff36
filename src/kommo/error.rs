//! What can go wrong talking to Kommo, decided in one place: the HTTP status
//! (or transport failure) becomes a typed error that knows whether retrying
//! can help.

use std::time::Duration;

use crate::alert::Alert;

/// A failed request to Kommo. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum KommoError {
    #[error(
        "Kommo returned HTTP 401 Unauthorized: the token is expired or revoked; create a new \
         long-lived token in the Kommo integration settings and replace the old one"
    )]
    Unauthorized,
    #[error(
        "Kommo returned HTTP 402 Payment Required: the account's subscription is not paid, so its \
         API is closed; an account admin must renew it in Kommo (Settings, Billing); the sync \
         resumes by itself once it is paid"
    )]
    PaymentRequired,
    #[error(
        "Kommo returned HTTP 403 Forbidden with an HTML page ({detail}): the account or this \
         server's IP is blocked, usually for exceeding the API rate limit; only Kommo support can \
         lift it: write to them with the account's subdomain and id and this server's public IP \
         address; kommo-sync probes at most once every 15 minutes until the block is lifted"
    )]
    Blocked { detail: String },
    #[error(
        "Kommo returned HTTP 403 Forbidden ({detail}): the integration lacks rights, or this \
         machine's IP is not on the account's allow list"
    )]
    Forbidden { detail: String },
    #[error(
        "Kommo ignored the request's filter ({detail}): API filtering is not enabled for this \
         account (on some accounts it is a paid add-on), so no listing can be trusted and the \
         sync stopped; enable API filtering for the account (ask Kommo support), then run \
         kommo-sync --check"
    )]
    FilterIgnored { detail: String },
    #[error(
        "Kommo rejected the request with HTTP 400 ({detail}); this is a bug in kommo-sync, please report it"
    )]
    BadRequest { detail: String },
    #[error(
        "Kommo returned HTTP 429 Too Many Requests; lower kommo.requests_per_second if it persists"
    )]
    RateLimited { retry_after: Option<Duration> },
    #[error(
        "Kommo returned HTTP {status} (server error); it usually passes, the next sync retries"
    )]
    Server { status: u16 },
    #[error("Kommo returned unexpected HTTP {status} ({detail})")]
    UnexpectedStatus { status: u16, detail: String },
    #[error(
        "cannot reach Kommo: {message}; check the network and kommo.subdomain / kommo.base_url"
    )]
    Transport { message: String },
    #[error("Kommo sent a response that cannot be read: {message}")]
    Decode { message: String },
    #[error("the request was not sent: the run it belonged to was stopping")]
    NotSent,
}

impl KommoError {
    /// Whether retrying the same request later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KommoError::RateLimited { .. }
                | KommoError::Server { .. }
                | KommoError::Transport { .. }
                | KommoError::Decode { .. }
        )
    }

    /// The alert this error raises, if any.
    pub fn alert(&self) -> Option<Alert> {
        match self {
            KommoError::Unauthorized => Some(Alert::TokenRejected),
            KommoError::Blocked { .. } => Some(Alert::AccountBlocked),
            KommoError::PaymentRequired => Some(Alert::AccountUnpaid),
            KommoError::FilterIgnored { .. } => Some(Alert::ApiFilterUnavailable),
            _ => None,
        }
    }

    /// Builds the error for a non-success status and its (possibly non-JSON) body.
    pub fn from_status(status: u16, retry_after: Option<Duration>, body: &[u8]) -> KommoError {
        let detail = problem_detail(body);
        match status {
            401 => KommoError::Unauthorized,
            402 => KommoError::PaymentRequired,
            // An abuse block is an nginx HTML page; a lack of rights is problem+json.
            403 if serde_json::from_slice::<serde_json::Value>(body).is_err() => {
                KommoError::Blocked { detail }
            }
            403 => KommoError::Forbidden { detail },
            400 => KommoError::BadRequest { detail },
            429 => KommoError::RateLimited { retry_after },
            500..=599 => KommoError::Server { status },
            _ => KommoError::UnexpectedStatus { status, detail },
        }
    }
}

impl From<reqwest::Error> for KommoError {
    fn from(e: reqwest::Error) -> Self {
        // Without the URL: it carries no secret, but keeps messages short.
        let e = e.without_url();
        let kind = if e.is_timeout() {
            "the request timed out"
        } else if e.is_connect() {
            "the connection failed"
        } else {
            "the request failed"
        };
        let mut message = format!("{kind}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        KommoError::Transport { message }
    }
}

/// A short, printable summary of an error body: the problem+json `detail` or
/// `title` when there is one, otherwise the first characters of the text.
fn problem_detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["detail", "title"] {
            if let Some(s) = v.get(key).and_then(|d| d.as_str()) {
                let mut text = s.to_string();
                if let Some(errors) = v.get("validation-errors") {
                    text.push_str(&format!("; validation-errors: {errors}"));
                }
                return truncate(&text);
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "empty body".into()
    } else {
        truncate(&text)
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_statuses() {
        assert!(matches!(
            KommoError::from_status(401, None, b""),
            KommoError::Unauthorized
        ));
        assert!(!KommoError::from_status(401, None, b"").is_transient());
        let blocked = KommoError::from_status(403, None, b"<html>blocked</html>");
        assert!(!blocked.is_transient());
        assert_eq!(blocked.alert(), Some(Alert::AccountBlocked));
        let forbidden = KommoError::from_status(403, None, br#"{"title":"Forbidden"}"#);
        assert!(matches!(forbidden, KommoError::Forbidden { .. }));
        assert_eq!(forbidden.alert(), None);
        assert_eq!(
            KommoError::from_status(402, None, b"").alert(),
            Some(Alert::AccountUnpaid)
        );
        for closed in [blocked, KommoError::from_status(402, None, b"")] {
            assert!(closed.alert().is_some_and(Alert::closes_account));
        }
        assert!(
            !KommoError::Unauthorized
                .alert()
                .is_some_and(Alert::closes_account)
        );
        assert!(KommoError::from_status(429, None, b"Too many").is_transient());
        assert!(KommoError::from_status(503, None, b"").is_transient());
        let e = KommoError::from_status(
            400,
            None,
            br#"{"title":"Bad Request","detail":"bad limit","validation-errors":[1]}"#,
        );
        assert!(e.to_string().contains("bad limit"), "{e}");
    }
}
