//! The metrics as Prometheus text: a snapshot of the figures, read at one
//! scrape, written out with `prometheus-client` (the Prometheus project's own
//! Rust client) in the text exposition format 0.0.4.
//!
//! Every figure is read at scrape time (from the database or from counters
//! kept elsewhere), so a fresh registry is filled from the snapshot at each
//! scrape instead of keeping metric objects up to date between scrapes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::store::{RunGroup, RunStatus, StoredLeadCounts};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The statuses an attempt ends with, one `last_attempt_status` series each.
const END_STATUSES: [RunStatus; 4] = [
    RunStatus::Ok,
    RunStatus::Failed,
    RunStatus::Unauthorized,
    RunStatus::Interrupted,
];

/// The figures of one scrape.
#[derive(Debug)]
pub struct Snapshot {
    /// The Kommo account (its host, e.g. `acme.kommo.com`): a label of every
    /// series, so that the metrics of several instances stay apart.
    pub account: String,
    /// `sync_runs` by kind and status.
    pub run_groups: Vec<RunGroup>,
    /// Leads in the mirror.
    pub leads: StoredLeadCounts,
    /// Contacts and companies in the mirror, by entity (`contacts`...).
    pub records: Vec<(&'static str, StoredLeadCounts)>,
    /// Requests sent to Kommo by this process, retries included.
    pub requests_sent: u64,
    /// 429 answers received by this process.
    pub responses_429: u64,
    /// Requests this process sent again after a failure.
    pub retries: u64,
    /// How this process's last attempt ended, and when (Unix seconds).
    pub last_attempt: Option<(RunStatus, i64)>,
    /// The token's `exp`, when known.
    pub token_expires_at: Option<i64>,
    /// Kommo rejected the token at the last attempt that could tell.
    pub token_rejected: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    kind: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntityStateLabel {
    entity: String,
    state: String,
}

fn gauge(value: i64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value);
    gauge
}

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

/// Writes `snapshot` as Prometheus text.
pub fn encode(snapshot: &Snapshot) -> String {
    let mut registry = Registry::with_prefix_and_labels(
        "kommo_sync",
        std::iter::once((
            std::borrow::Cow::Borrowed("account"),
            std::borrow::Cow::Owned(snapshot.account.clone()),
        )),
    );
    registry.register(
        "build",
        "The running kommo-sync version (always 1)",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );

    let last_success = Family::<KindLabel, Gauge>::default();
    let runs = Family::<RunLabels, Counter>::default();
    let mut leads_skipped = 0;
    for group in &snapshot.run_groups {
        leads_skipped += group.leads_skipped;
        if group.status == RunStatus::Running.as_str() {
            continue;
        }
        runs.get_or_create(&RunLabels {
            kind: group.kind.clone(),
            status: group.status.clone(),
        })
        .inc_by(u64::try_from(group.runs).unwrap_or(0));
        if let (true, Some(at)) = (
            group.status == RunStatus::Ok.as_str(),
            group.last_finished_at,
        ) {
            last_success
                .get_or_create(&KindLabel {
                    kind: group.kind.clone(),
                })
                .set(at);
        }
    }
    registry.register(
        "last_success_timestamp_seconds",
        "When the last successful sync of each kind (full, incremental) finished, Unix seconds, from sync_runs",
        last_success,
    );
    registry.register(
        "runs",
        "Finished sync runs by kind and status, from sync_runs (every process, since the mirror was created)",
        runs,
    );
    registry.register(
        "leads_skipped",
        "Leads Kommo sent that could not be stored (no usable id), summed over sync_runs",
        counter(u64::try_from(leads_skipped).unwrap_or(0)),
    );

    if let Some((status, ended_at)) = snapshot.last_attempt {
        registry.register(
            "last_attempt_timestamp_seconds",
            "When this process's last sync attempt ended, Unix seconds",
            gauge(ended_at),
        );
        let by_status = Family::<StatusLabel, Gauge>::default();
        for each in END_STATUSES {
            by_status
                .get_or_create(&StatusLabel {
                    status: each.as_str().to_string(),
                })
                .set(i64::from(each == status));
        }
        registry.register(
            "last_attempt_status",
            "How this process's last sync attempt ended: 1 for its status, 0 for the others",
            by_status,
        );
    }

    let leads = Family::<StateLabel, Gauge>::default();
    for (state, count) in [
        ("alive", snapshot.leads.alive),
        ("deleted", snapshot.leads.deleted),
    ] {
        leads
            .get_or_create(&StateLabel {
                state: state.to_string(),
            })
            .set(count);
    }
    registry.register(
        "leads",
        "Leads in the mirror: alive, and marked deleted",
        leads,
    );
    let records = Family::<EntityStateLabel, Gauge>::default();
    for (entity, counts) in &snapshot.records {
        for (state, count) in [("alive", counts.alive), ("deleted", counts.deleted)] {
            records
                .get_or_create(&EntityStateLabel {
                    entity: entity.to_string(),
                    state: state.to_string(),
                })
                .set(count);
        }
    }
    registry.register(
        "records",
        "Contacts and companies in the mirror, by entity: alive, and marked deleted",
        records,
    );

    registry.register(
        "api_requests",
        "HTTP requests sent to Kommo by this process, retries included",
        counter(snapshot.requests_sent),
    );
    registry.register(
        "api_responses_429",
        "429 Too Many Requests answers Kommo gave this process",
        counter(snapshot.responses_429),
    );
    registry.register(
        "api_retries",
        "Requests this process sent again after a 429 or a transient failure",
        counter(snapshot.retries),
    );

    if let Some(expires_at) = snapshot.token_expires_at {
        registry.register(
            "token_expiry_timestamp_seconds",
            "When the token expires (its JWT exp claim), Unix seconds; absent when unknown",
            gauge(expires_at),
        );
    }
    registry.register(
        "token_rejected",
        "1 when Kommo rejected the token (HTTP 401, or expired) at the last attempt that could tell, else 0",
        gauge(i64::from(snapshot.token_rejected)),
    );

    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_text::encode(&mut text, &registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_figure_with_its_labels() {
        let group = |kind: &str, status: &str, runs, last, skipped| RunGroup {
            kind: kind.into(),
            status: status.into(),
            runs,
            last_finished_at: last,
            leads_skipped: skipped,
        };
        let snapshot = Snapshot {
            account: "acme.kommo.com".into(),
            run_groups: vec![
                group("full", "ok", 2, Some(1_700_000_100), 3),
                group("incremental", "failed", 4, Some(1_700_000_300), 0),
                group("incremental", "ok", 7, Some(1_700_000_200), 1),
                group("incremental", "running", 1, None, 2),
            ],
            leads: StoredLeadCounts {
                total: 12,
                alive: 10,
                deleted: 2,
                newest_update: None,
            },
            records: vec![(
                "contacts",
                StoredLeadCounts {
                    total: 5,
                    alive: 4,
                    deleted: 1,
                    newest_update: None,
                },
            )],
            requests_sent: 40,
            responses_429: 2,
            retries: 3,
            last_attempt: Some((RunStatus::Failed, 1_700_000_300)),
            token_expires_at: None,
            token_rejected: false,
        };
        let text = encode(&snapshot);
        for line in [
            "kommo_sync_build_info{account=\"acme.kommo.com\",version=\"",
            "kommo_sync_last_success_timestamp_seconds{account=\"acme.kommo.com\",kind=\"full\"} 1700000100\n",
            "kommo_sync_last_success_timestamp_seconds{account=\"acme.kommo.com\",kind=\"incremental\"} 1700000200\n",
            "kommo_sync_runs_total{account=\"acme.kommo.com\",kind=\"incremental\",status=\"failed\"} 4\n",
            "kommo_sync_runs_total{account=\"acme.kommo.com\",kind=\"incremental\",status=\"ok\"} 7\n",
            "kommo_sync_leads_skipped_total{account=\"acme.kommo.com\"} 6\n",
            "kommo_sync_last_attempt_timestamp_seconds{account=\"acme.kommo.com\"} 1700000300\n",
            "kommo_sync_last_attempt_status{account=\"acme.kommo.com\",status=\"failed\"} 1\n",
            "kommo_sync_last_attempt_status{account=\"acme.kommo.com\",status=\"ok\"} 0\n",
            "kommo_sync_leads{account=\"acme.kommo.com\",state=\"alive\"} 10\n",
            "kommo_sync_leads{account=\"acme.kommo.com\",state=\"deleted\"} 2\n",
            "kommo_sync_records{account=\"acme.kommo.com\",entity=\"contacts\",state=\"alive\"} 4\n",
            "kommo_sync_records{account=\"acme.kommo.com\",entity=\"contacts\",state=\"deleted\"} 1\n",
            "kommo_sync_api_requests_total{account=\"acme.kommo.com\"} 40\n",
            "kommo_sync_api_responses_429_total{account=\"acme.kommo.com\"} 2\n",
            "kommo_sync_api_retries_total{account=\"acme.kommo.com\"} 3\n",
            "kommo_sync_token_rejected{account=\"acme.kommo.com\"} 0\n",
            "# TYPE kommo_sync_runs_total counter\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("status=\"running\""), "{text}");
        assert!(!text.contains("token_expiry"), "{text}");
    }
}
