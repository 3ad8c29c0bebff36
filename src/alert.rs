//! The alerts: the log lines an operator's monitoring greps for
//! (`alert="token_rejected"`...), as one enum. Each alert knows its name (the
//! `alert` field, fixed by interface.md), its level and what the operator must
//! do; it is raised with [`raise!`](crate::raise) and stored as data (its
//! name in `run_alerts`), never recognised from a message's text.

use std::fmt;

/// A condition a person must act on, raised as one log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alert {
    /// Kommo answered 401: the token is expired or revoked.
    TokenRejected,
    /// The token's own expiry date has passed; no request is sent with it.
    TokenExpired,
    /// The token expires within `token.expiry_warning_days`.
    TokenExpiring,
    /// Kommo answered 403 with an HTML page: the account or IP is blocked.
    AccountBlocked,
    /// Kommo answered 402: the account's subscription is unpaid.
    AccountUnpaid,
    /// Kommo ignores `filter[...]`: no listing can be trusted.
    ApiFilterUnavailable,
}

/// The level an alert is logged at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertLevel {
    Warn,
    Error,
}

impl Alert {
    /// Every alert, for tables and tests.
    pub const ALL: [Alert; 6] = [
        Alert::TokenRejected,
        Alert::TokenExpired,
        Alert::TokenExpiring,
        Alert::AccountBlocked,
        Alert::AccountUnpaid,
        Alert::ApiFilterUnavailable,
    ];

    /// The `alert` field of its log line.
    pub fn name(self) -> &'static str {
        match self {
            Alert::TokenRejected => "token_rejected",
            Alert::TokenExpired => "token_expired",
            Alert::TokenExpiring => "token_expiring",
            Alert::AccountBlocked => "account_blocked",
            Alert::AccountUnpaid => "account_unpaid",
            Alert::ApiFilterUnavailable => "api_filter_unavailable",
        }
    }

    /// The alert a stored name stands for.
    pub fn from_name(name: &str) -> Option<Alert> {
        Alert::ALL.into_iter().find(|alert| alert.name() == name)
    }

    /// A warning ahead of time, or an error that stops syncing.
    pub fn level(self) -> AlertLevel {
        match self {
            Alert::TokenExpiring => AlertLevel::Warn,
            _ => AlertLevel::Error,
        }
    }

    /// What the operator must do (each message says it in its own words,
    /// with the details of the case).
    pub fn what_to_do(self) -> &'static str {
        match self {
            Alert::TokenRejected | Alert::TokenExpired | Alert::TokenExpiring => {
                "create a new long-lived token in the Kommo integration settings and put it where \
                 kommo-sync reads it; it is re-read at the next sync"
            }
            Alert::AccountBlocked => {
                "write to Kommo support with the account's subdomain and id and this server's \
                 public IP address; kommo-sync probes rarely until the block is lifted"
            }
            Alert::AccountUnpaid => "an account admin must renew the subscription in Kommo",
            Alert::ApiFilterUnavailable => {
                "ask Kommo support to enable API filtering for the account, then run kommo-sync --check"
            }
        }
    }

    /// Whether the account refuses every request until a person acts (a
    /// block or an unpaid subscription): the daemon then probes rarely.
    pub fn closes_account(self) -> bool {
        matches!(self, Alert::AccountBlocked | Alert::AccountUnpaid)
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Logs an [`Alert`] at its level with its name as the `alert` field:
/// `raise!(alert, run_id, "message {x}")` takes the fields and message of
/// `tracing::error!`.
#[macro_export]
macro_rules! raise {
    ($alert:expr, $($fields_and_message:tt)+) => {{
        let alert: $crate::alert::Alert = $alert;
        match alert.level() {
            $crate::alert::AlertLevel::Warn => {
                ::tracing::warn!(alert = alert.name(), $($fields_and_message)+)
            }
            $crate::alert::AlertLevel::Error => {
                ::tracing::error!(alert = alert.name(), $($fields_and_message)+)
            }
        }
    }};
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn every_alert_is_found_again_by_its_name() {
        for alert in Alert::ALL {
            assert_eq!(Alert::from_name(alert.name()), Some(alert));
        }
        assert_eq!(Alert::from_name("Kommo returned HTTP 403"), None);
    }

    #[test]
    fn only_a_block_or_an_unpaid_account_closes_it() {
        let closing: Vec<_> = Alert::ALL
            .into_iter()
            .filter(|a| a.closes_account())
            .collect();
        assert_eq!(closing, [Alert::AccountBlocked, Alert::AccountUnpaid]);
    }
}
