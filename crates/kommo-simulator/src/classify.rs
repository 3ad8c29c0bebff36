//! What a request is, as far as fault scopes, the stats and the churn hook
//! care: which kind's listing (`/api/v4/leads`, `/api/v4/contacts`,
//! `/api/v4/companies`) and which of its listings (a keyset walk on
//! `updated_at`, the reads of a crowded second, an answer by id, the
//! deleted leads, something else), or which other endpoint. A request is
//! classified by its method, path and query (keys percent-encoded or not);
//! only `GET`s are listings.

use super::directory;
use super::kind::RecordKind;
use super::query::{is_id_filter, pairs};

/// Which listing of a kind a `GET` of its list path asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listed {
    /// first `order[...]` is `order[updated_at]`, no id filter (and, for
    /// leads, no `with=only_deleted`): a keyset walk or the newest probe
    Walk,
    /// first `order[...]` is `order[id]`, no id filter (nor
    /// `with=only_deleted`): the reads of a crowded second
    CrowdedSecond,
    /// `filter[id]`, `filter[id][]` or `filter[id][N]` (without
    /// `with=only_deleted` for leads)
    ById,
    /// leads with `with=only_deleted` (contacts and companies have no such
    /// listing: the flag is ignored there)
    Deleted,
    /// none of the above
    Other,
}

/// What a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// `GET` of a kind's list path
    Records(RecordKind, Listed),
    /// `GET /api/v4/events`
    Events,
    /// `GET /api/v4/account`
    Account,
    /// `GET /api/v4/leads/pipelines`
    Pipelines,
    /// `GET` of a kind's custom field listing (`/api/v4/leads/custom_fields`,
    /// `/api/v4/contacts/custom_fields`, `/api/v4/companies/custom_fields`)
    CustomFields(RecordKind),
    /// `GET /api/v4/users`
    Users,
    /// `GET /api/v4/leads/loss_reasons`
    LossReasons,
    /// `GET /api/v4/leads/tags`
    Tags,
    /// anything else (other paths, other methods)
    Other,
}

impl RequestKind {
    /// The kind of a request: a `GET` (`get`) of `path` with the raw query.
    pub(crate) fn classify(get: bool, path: &str, raw: Option<&str>) -> RequestKind {
        if !get {
            return RequestKind::Other;
        }
        if let Some(kind) = RecordKind::of_path(path) {
            return RequestKind::Records(kind, Self::listing(kind, raw));
        }
        if let Some(kind) = directory::custom_fields_of(path) {
            return RequestKind::CustomFields(kind);
        }
        match path {
            "/api/v4/events" => RequestKind::Events,
            directory::ACCOUNT => RequestKind::Account,
            directory::PIPELINES => RequestKind::Pipelines,
            directory::USERS => RequestKind::Users,
            directory::LOSS_REASONS => RequestKind::LossReasons,
            directory::TAGS => RequestKind::Tags,
            _ => RequestKind::Other,
        }
    }

    /// Which listing of `kind` a query asks for.
    fn listing(kind: RecordKind, raw: Option<&str>) -> Listed {
        let (mut only_deleted, mut by_id, mut first_order) = (false, false, None);
        for (key, value) in pairs(raw.unwrap_or("")) {
            if key == "with" {
                only_deleted |= value.split(',').any(|w| w.trim() == "only_deleted");
            } else if let Some(rest) = key.strip_prefix("filter[") {
                by_id |= is_id_filter(rest);
            } else if first_order.is_none()
                && let Some(field) = key.strip_prefix("order[").and_then(|r| r.strip_suffix(']'))
                && matches!(field, "id" | "updated_at" | "created_at")
            {
                first_order = Some(field.to_string());
            }
        }
        if only_deleted && kind == RecordKind::Lead {
            Listed::Deleted
        } else if by_id {
            Listed::ById
        } else {
            match first_order.as_deref() {
                Some("updated_at") => Listed::Walk,
                Some("id") => Listed::CrowdedSecond,
                _ => Listed::Other,
            }
        }
    }

    /// The kind whose listing it is, if it is one.
    pub(crate) fn record_kind(self) -> Option<RecordKind> {
        match self {
            RequestKind::Records(kind, _) => Some(kind),
            _ => None,
        }
    }

    /// Whether it is a `GET /api/v4/leads`.
    pub(crate) fn is_leads(self) -> bool {
        self.record_kind() == Some(RecordKind::Lead)
    }

    /// The key under `_embedded` of its list; `None` for what is no list.
    pub(crate) fn list_key(self) -> Option<&'static str> {
        match self {
            RequestKind::Records(kind, _) => Some(kind.list_key()),
            RequestKind::Events => Some("events"),
            RequestKind::Pipelines => Some("pipelines"),
            RequestKind::CustomFields(_) => Some("custom_fields"),
            RequestKind::Users => Some("users"),
            RequestKind::LossReasons => Some("loss_reasons"),
            RequestKind::Tags => Some("tags"),
            RequestKind::Account | RequestKind::Other => None,
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn classifies_each_listing_by_path_and_query() {
        use RecordKind::{Company, Contact, Lead};
        use RequestKind as K;
        let lead = |l| K::Records(Lead, l);
        let leads = "/api/v4/leads";
        let cases: [(bool, &str, &str, RequestKind); 32] = [
            (
                true,
                leads,
                "filter[updated_at][from]=5&order[updated_at]=asc&page=2&limit=50",
                lead(Listed::Walk),
            ),
            (
                true,
                leads,
                "order%5Bupdated_at%5D=desc&limit=1",
                lead(Listed::Walk),
            ),
            (
                true,
                leads,
                "order[updated_at]=asc&order[id]=asc",
                lead(Listed::Walk),
            ),
            (
                true,
                leads,
                "filter[updated_at][from]=7&filter[updated_at][to]=7&order[id]=asc&page=3",
                lead(Listed::CrowdedSecond),
            ),
            (
                true,
                leads,
                "order[id]=desc&order[updated_at]=asc",
                lead(Listed::CrowdedSecond),
            ),
            (
                true,
                leads,
                "with=only_deleted,source_id&order[updated_at]=asc",
                lead(Listed::Deleted),
            ),
            (
                true,
                leads,
                "with=source_id%2Conly_deleted&filter[id][]=4",
                lead(Listed::Deleted),
            ),
            (
                true,
                leads,
                "filter[id][]=4&filter[id][]=5&order[id]=asc",
                lead(Listed::ById),
            ),
            (
                true,
                leads,
                "filter%5Bid%5D=4&order[updated_at]=asc",
                lead(Listed::ById),
            ),
            (
                true,
                leads,
                "filter[id][0]=4&with=contacts",
                lead(Listed::ById),
            ),
            (true, leads, "", lead(Listed::Other)),
            (
                true,
                leads,
                "filter[updated_at][from]=1&filter[updated_at][to]=1&limit=1",
                lead(Listed::Other),
            ),
            (
                true,
                leads,
                "order[created_at]=asc&order[updated_at]=asc",
                lead(Listed::Other),
            ),
            (
                true,
                leads,
                "filter[idx]=4&order[name]=asc",
                lead(Listed::Other),
            ),
            (
                true,
                "/api/v4/events",
                "filter[type]=lead_deleted",
                K::Events,
            ),
            (
                true,
                "/api/v4/account",
                "with=datetime_settings",
                K::Account,
            ),
            (true, "/api/v4/leads/pipelines", "", K::Pipelines),
            (
                true,
                "/api/v4/leads/custom_fields",
                "page=2&limit=50",
                K::CustomFields(Lead),
            ),
            (true, "/api/v4/users", "page=1&limit=250", K::Users),
            (true, "/api/v4/leads/loss_reasons", "", K::LossReasons),
            (true, "/api/v4/leads/tags", "page=1&limit=250", K::Tags),
            (
                true,
                "/api/v4/contacts",
                "order[id]=asc",
                K::Records(Contact, Listed::CrowdedSecond),
            ),
            (
                true,
                "/api/v4/contacts",
                "filter%5Bupdated_at%5D%5Bfrom%5D=1&order%5Bupdated_at%5D=asc",
                K::Records(Contact, Listed::Walk),
            ),
            (
                true,
                "/api/v4/contacts",
                "with=leads&filter[id][]=30000000",
                K::Records(Contact, Listed::ById),
            ),
            (
                true,
                "/api/v4/companies",
                "with=only_deleted&order[updated_at]=desc",
                K::Records(Company, Listed::Walk),
            ),
            (
                true,
                "/api/v4/companies",
                "",
                K::Records(Company, Listed::Other),
            ),
            (
                true,
                "/api/v4/contacts/custom_fields",
                "",
                K::CustomFields(Contact),
            ),
            (
                true,
                "/api/v4/companies/custom_fields",
                "page=1",
                K::CustomFields(Company),
            ),
            (true, "/api/v4/contacts/30000000", "", K::Other),
            (true, "/api/v4/customers", "order[id]=asc", K::Other),
            (false, leads, "order[updated_at]=asc", K::Other),
            (false, "/api/v4/contacts", "", K::Other),
        ];
        for (get, path, query, want) in cases {
            let raw = (!query.is_empty()).then_some(query);
            assert_eq!(
                RequestKind::classify(get, path, raw),
                want,
                "{path}?{query}"
            );
        }
        assert!(lead(Listed::Deleted).is_leads());
        assert!(!K::Records(Contact, Listed::Other).is_leads());
        assert_eq!(
            K::Records(Company, Listed::Walk).list_key(),
            Some("companies")
        );
        assert_eq!(K::CustomFields(Contact).list_key(), Some("custom_fields"));
        assert_eq!(K::Account.list_key(), None);
    }
}
