//! The bodies of the structure endpoints (`/api/v4/account`,
//! `/api/v4/leads/pipelines`, `/api/v4/leads/custom_fields`,
//! `/api/v4/contacts/custom_fields`, `/api/v4/companies/custom_fields`,
//! `/api/v4/users`, `/api/v4/leads/loss_reasons`, `/api/v4/leads/tags`):
//! which list each serves, how the paged ones page (`page`, `limit` up to
//! 250, default 50, `_links.next` only when a next page exists, 204 past
//! the end) and the 403 of `/api/v4/users` for a token without admin
//! rights. `http` turns a [`Reply`] into the response.

use serde_json::{Map, Value, json};

use super::kind::RecordKind;
use super::query::{Invalid, invalid, number, page_href, pairs};
use super::record_fields;
use super::structure::Structure;

pub(crate) const ACCOUNT: &str = "/api/v4/account";
pub(crate) const PIPELINES: &str = "/api/v4/leads/pipelines";
pub(crate) const CUSTOM_FIELDS: &str = "/api/v4/leads/custom_fields";
pub(crate) const CONTACT_CUSTOM_FIELDS: &str = "/api/v4/contacts/custom_fields";
pub(crate) const COMPANY_CUSTOM_FIELDS: &str = "/api/v4/companies/custom_fields";
pub(crate) const USERS: &str = "/api/v4/users";
pub(crate) const LOSS_REASONS: &str = "/api/v4/leads/loss_reasons";
pub(crate) const TAGS: &str = "/api/v4/leads/tags";

/// The largest `limit` the paged structure lists accept.
const MAX_LIMIT: u64 = 250;

/// Whether `path` is one of the structure endpoints.
pub(crate) fn serves(path: &str) -> bool {
    matches!(path, ACCOUNT | PIPELINES | USERS | LOSS_REASONS | TAGS)
        || custom_fields_of(path).is_some()
}

/// The kind whose custom field listing is at `path`.
pub(crate) fn custom_fields_of(path: &str) -> Option<RecordKind> {
    match path {
        CUSTOM_FIELDS => Some(RecordKind::Lead),
        CONTACT_CUSTOM_FIELDS => Some(RecordKind::Contact),
        COMPANY_CUSTOM_FIELDS => Some(RecordKind::Company),
        _ => None,
    }
}

/// What a structure request is answered.
pub(crate) enum Reply {
    Json(Value),
    NoContent,
    /// 403 problem+json with this detail
    Forbidden(&'static str),
    Invalid(Invalid),
}

/// Where the answer comes from: the structure and the request.
pub(crate) struct Request<'a> {
    pub(crate) structure: &'a Structure,
    pub(crate) base: &'a str,
    pub(crate) path: &'a str,
    pub(crate) raw: Option<&'a str>,
    pub(crate) now: i64,
    pub(crate) users_forbidden: bool,
}

/// The answer to `GET` of a path for which [`serves`] is true.
pub(crate) fn answer(r: &Request<'_>) -> Reply {
    let s = r.structure;
    match r.path {
        ACCOUNT => {
            let with: Vec<String> = pairs(r.raw.unwrap_or(""))
                .into_iter()
                .filter(|(k, _)| k == "with")
                .flat_map(|(_, v)| {
                    v.split(',')
                        .map(|w| w.trim().to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            Reply::Json(s.account_json(r.base, r.now, &with))
        }
        PIPELINES => Reply::Json(whole(r, "pipelines", s.pipelines_json(r.base))),
        LOSS_REASONS => Reply::Json(whole(r, "loss_reasons", s.loss_reasons_json(r.base))),
        CUSTOM_FIELDS => paged(r, "custom_fields", s.fields_json(r.base), true),
        CONTACT_CUSTOM_FIELDS => paged(
            r,
            "custom_fields",
            record_fields::definitions(RecordKind::Contact, r.base),
            true,
        ),
        COMPANY_CUSTOM_FIELDS => paged(
            r,
            "custom_fields",
            record_fields::definitions(RecordKind::Company, r.base),
            true,
        ),
        USERS if r.users_forbidden => Reply::Forbidden("Access denied"),
        USERS => paged(r, "users", s.users_json(r.base), true),
        _ => paged(r, "tags", s.tags_json(), false),
    }
}

/// An unpaged list: `_total_items`, `_links.self`, `_embedded.<key>`.
fn whole(r: &Request<'_>, key: &str, items: Vec<Value>) -> Value {
    let mut embedded = Map::new();
    let total = items.len();
    embedded.insert(key.to_string(), Value::Array(items));
    json!({
        "_total_items": total,
        "_links": {"self": {"href": format!("{}{}", r.base, r.path)}},
        "_embedded": embedded,
    })
}

/// `page` and `limit` of a paged structure list.
fn page_and_limit(raw: Option<&str>) -> Result<(u64, u64), Invalid> {
    let (mut page, mut limit) = (1, 50);
    for (key, value) in pairs(raw.unwrap_or("")) {
        match key.as_str() {
            "page" => {
                page = u64::try_from(number("page", &value)?)
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| invalid("page", "This value should be 1 or more."))?;
            }
            "limit" => {
                limit = u64::try_from(number("limit", &value)?)
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| invalid("limit", "This value should be between 1 and 250."))?;
            }
            _ => {}
        }
    }
    Ok((page, limit))
}

/// One page of a paged list (with `_total_items` and `_page_count` when
/// `counts`), 204 past the end.
fn paged(r: &Request<'_>, key: &str, items: Vec<Value>, counts: bool) -> Reply {
    let (page, limit) = match page_and_limit(r.raw) {
        Ok(pl) => pl,
        Err(e) => return Reply::Invalid(e),
    };
    let total = items.len() as u64;
    let start = (page - 1).saturating_mul(limit);
    if start >= total {
        return Reply::NoContent;
    }
    let more = total > start.saturating_add(limit);
    let chunk: Vec<Value> = items
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect();
    let mut links = Map::new();
    links.insert(
        "self".into(),
        json!({"href": page_href(r.base, r.path, r.raw, page)}),
    );
    if more {
        links.insert(
            "next".into(),
            json!({"href": page_href(r.base, r.path, r.raw, page + 1)}),
        );
    }
    let mut body = Map::new();
    if counts {
        body.insert("_total_items".into(), json!(total));
    }
    body.insert("_page".into(), json!(page));
    if counts {
        body.insert("_page_count".into(), json!(total.div_ceil(limit)));
    }
    body.insert("_links".into(), Value::Object(links));
    let mut embedded = Map::new();
    embedded.insert(key.to_string(), Value::Array(chunk));
    body.insert("_embedded".into(), Value::Object(embedded));
    Reply::Json(Value::Object(body))
}
