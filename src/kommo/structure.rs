//! The account's structure as Kommo sends it: the account itself (with its
//! time zone), pipelines and their statuses, users, lead custom fields and
//! their enum options, loss reasons and lead tags.
//!
//! These lists name what the leads only reference by id. Each element is
//! read on its own and leniently: a null, a number sent as a string or a
//! field of an unexpected type becomes `None` (the element keeps its `raw`
//! JSON as received), unknown fields are kept in `raw` only, and an element
//! without a positive integer id cannot be stored: it is skipped with its
//! reason, and the listing is marked incomplete so that nothing is flagged
//! deleted because of it (a listing's silence proves nothing).

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::KommoError;
pub(crate) use super::lenient::lenient_i64;
use super::lenient::{opt_array, opt_bool, opt_i64, opt_string};

/// A structure listing of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListEndpoint {
    /// Path under the base URL, e.g. `api/v4/leads/pipelines`.
    pub path: &'static str,
    /// The array under `_embedded`.
    pub key: &'static str,
    /// `limit` per page for a paged listing; `None` for a listing that is
    /// not paged (its `_links.next` is still followed if present).
    pub limit: Option<u32>,
}

/// Pipelines with their statuses embedded; not paged (at most 50).
pub const PIPELINES: ListEndpoint = ListEndpoint {
    path: "api/v4/leads/pipelines",
    key: "pipelines",
    limit: None,
};
/// Lead custom field definitions; paged (Kommo's maximum `limit` is 50).
pub const CUSTOM_FIELDS: ListEndpoint = ListEndpoint {
    path: "api/v4/leads/custom_fields",
    key: "custom_fields",
    limit: Some(50),
};
/// Contact custom field definitions; paged like the leads' ones.
pub const CONTACT_CUSTOM_FIELDS: ListEndpoint = ListEndpoint {
    path: "api/v4/contacts/custom_fields",
    key: "custom_fields",
    limit: Some(50),
};
/// Company custom field definitions; paged like the leads' ones.
pub const COMPANY_CUSTOM_FIELDS: ListEndpoint = ListEndpoint {
    path: "api/v4/companies/custom_fields",
    key: "custom_fields",
    limit: Some(50),
};
/// Users; paged (`limit` up to 250); admin rights only (403 otherwise).
pub const USERS: ListEndpoint = ListEndpoint {
    path: "api/v4/users",
    key: "users",
    limit: Some(250),
};
/// Loss reasons; not paged.
pub const LOSS_REASONS: ListEndpoint = ListEndpoint {
    path: "api/v4/leads/loss_reasons",
    key: "loss_reasons",
    limit: None,
};
/// Lead tags; paged (`limit` up to 250).
pub const TAGS: ListEndpoint = ListEndpoint {
    path: "api/v4/leads/tags",
    key: "tags",
    limit: Some(250),
};

/// `GET /api/v4/account?with=datetime_settings`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AccountInfo {
    #[serde(deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub subdomain: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub currency: Option<String>,
    /// `_embedded.datetime_settings.timezone`, e.g. `Europe/Moscow`.
    #[serde(skip)]
    pub timezone: Option<String>,
    /// The object as received.
    #[serde(skip)]
    pub raw: Value,
}

impl AccountInfo {
    /// Reads the account; `Err` when it has no usable id (nothing to key it by).
    pub fn from_json(body: Value) -> Result<AccountInfo, KommoError> {
        if !body.is_object() {
            return Err(KommoError::Decode {
                message: "/api/v4/account answered with something other than a JSON object".into(),
            });
        }
        let mut account: AccountInfo =
            serde_json::from_value(body.clone()).map_err(|e| KommoError::Decode {
                message: format!("/api/v4/account: {e}"),
            })?;
        if account.id.is_none_or(|id| id <= 0) {
            return Err(KommoError::Decode {
                message: "/api/v4/account answered without a positive integer id".into(),
            });
        }
        account.timezone = body
            .pointer("/_embedded/datetime_settings/timezone")
            .and_then(Value::as_str)
            .map(String::from);
        account.raw = body;
        Ok(account)
    }
}

/// An element of a structure listing that has an id of its own.
pub trait Keyed: DeserializeOwned {
    /// The element's id as received (lenient), if any.
    fn id(&self) -> Option<i64>;
    /// Keeps the element's JSON as received.
    fn set_raw(&mut self, raw: Value);
    /// Checks and reads what the element embeds (statuses, enum options);
    /// the reasons of the parts skipped.
    fn read_embedded(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// One stage of a pipeline (`_embedded.statuses[]`). 142 (won) and 143
/// (lost) exist in every pipeline, so a status is keyed by its pipeline too.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Status {
    #[serde(deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    /// The pipeline listing it (not the status's own `pipeline_id`).
    #[serde(skip)]
    pub pipeline_id: i64,
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "opt_i64")]
    pub sort: Option<i64>,
    /// `type`: 0 a regular stage, 1 the "unsorted" stage.
    #[serde(rename = "type", deserialize_with = "opt_i64")]
    pub kind: Option<i64>,
    #[serde(deserialize_with = "opt_string")]
    pub color: Option<String>,
    #[serde(deserialize_with = "opt_bool")]
    pub is_editable: Option<bool>,
    #[serde(skip)]
    pub raw: Value,
}

/// A pipeline with its stages.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Pipeline {
    #[serde(deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "opt_i64")]
    pub sort: Option<i64>,
    #[serde(deserialize_with = "opt_bool")]
    pub is_main: Option<bool>,
    #[serde(deserialize_with = "opt_bool")]
    pub is_archive: Option<bool>,
    #[serde(skip)]
    pub statuses: Vec<Status>,
    #[serde(skip)]
    pub raw: Value,
}

impl Keyed for Pipeline {
    fn id(&self) -> Option<i64> {
        self.id
    }
    fn set_raw(&mut self, raw: Value) {
        self.raw = raw;
    }
    fn read_embedded(&mut self) -> Vec<String> {
        let pipeline_id = self.id.unwrap_or_default();
        let items = match self.raw.pointer("/_embedded/statuses") {
            Some(Value::Array(items)) => items.clone(),
            _ => {
                return vec![format!(
                    "pipeline {pipeline_id} lists no _embedded.statuses array"
                )];
            }
        };
        let mut skipped = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match read_element::<StatusItem>(item) {
                Ok(StatusItem(mut status)) => {
                    status.pipeline_id = pipeline_id;
                    self.statuses.push(status);
                }
                Err(reason) => skipped.push(format!(
                    "status {index} of pipeline {pipeline_id}: {reason}"
                )),
            }
        }
        skipped
    }
}

/// A status read as a [`Keyed`] element.
#[derive(Deserialize)]
#[serde(transparent)]
struct StatusItem(Status);

impl Keyed for StatusItem {
    fn id(&self) -> Option<i64> {
        self.0.id
    }
    fn set_raw(&mut self, raw: Value) {
        self.0.raw = raw;
    }
}

/// A user of the account (`/api/v4/users`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct User {
    #[serde(deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub email: Option<String>,
    /// `rights.is_admin`.
    #[serde(skip)]
    pub is_admin: Option<bool>,
    /// `rights.is_active`.
    #[serde(skip)]
    pub is_active: Option<bool>,
    #[serde(skip)]
    pub raw: Value,
}

impl Keyed for User {
    fn id(&self) -> Option<i64> {
        self.id
    }
    fn set_raw(&mut self, raw: Value) {
        let flag = |k: &str| {
            raw.pointer(&format!("/rights/{k}"))
                .and_then(Value::as_bool)
        };
        self.is_admin = flag("is_admin");
        self.is_active = flag("is_active");
        self.raw = raw;
    }
}

/// One option of a select, multiselect or radiobutton field.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct FieldEnum {
    #[serde(deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    /// The field it belongs to.
    #[serde(skip)]
    pub field_id: i64,
    #[serde(deserialize_with = "opt_string")]
    pub value: Option<String>,
    #[serde(deserialize_with = "opt_i64")]
    pub sort: Option<i64>,
    /// `code`, when Kommo sends one (e.g. `WORK` for phone types).
    #[serde(deserialize_with = "opt_string")]
    pub code: Option<String>,
}

impl Keyed for FieldEnum {
    fn id(&self) -> Option<i64> {
        self.id
    }
    fn set_raw(&mut self, _raw: Value) {}
}

/// A custom field definition of leads, contacts or companies
/// (`/api/v4/leads/custom_fields`...).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CustomField {
    #[serde(deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// `type`, e.g. `text`, `numeric`, `select`, `date`.
    #[serde(rename = "type", deserialize_with = "opt_string")]
    pub kind: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub code: Option<String>,
    #[serde(deserialize_with = "opt_i64")]
    pub sort: Option<i64>,
    #[serde(deserialize_with = "opt_bool")]
    pub is_api_only: Option<bool>,
    #[serde(deserialize_with = "opt_string")]
    pub group_id: Option<String>,
    #[serde(deserialize_with = "opt_array", rename = "enums")]
    enum_items: Option<Vec<Value>>,
    #[serde(skip)]
    pub enums: Vec<FieldEnum>,
    /// `enums` came as an array: an option it does not list is gone. A
    /// null or missing `enums` says nothing of the field's options.
    #[serde(skip)]
    pub enums_listed: bool,
    #[serde(skip)]
    pub raw: Value,
    /// The entity whose field it is (`leads`, `contacts`, `companies`),
    /// from the listing it came from.
    #[serde(skip)]
    pub entity_type: &'static str,
}

impl Keyed for CustomField {
    fn id(&self) -> Option<i64> {
        self.id
    }
    fn set_raw(&mut self, raw: Value) {
        self.raw = raw;
    }
    fn read_embedded(&mut self) -> Vec<String> {
        let field_id = self.id.unwrap_or_default();
        let mut skipped = Vec::new();
        let items = self.enum_items.take();
        self.enums_listed = items.is_some();
        for (index, item) in items.into_iter().flatten().enumerate() {
            match read_element::<FieldEnum>(item) {
                Ok(mut option) => {
                    option.field_id = field_id;
                    self.enums.push(option);
                }
                Err(reason) => {
                    skipped.push(format!("enum {index} of custom field {field_id}: {reason}"))
                }
            }
        }
        skipped
    }
}

/// A reason a lead was lost (`/api/v4/leads/loss_reasons`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LossReason {
    #[serde(deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "opt_i64")]
    pub sort: Option<i64>,
    #[serde(skip)]
    pub raw: Value,
}

/// A lead tag (`/api/v4/leads/tags`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Tag {
    #[serde(deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub color: Option<String>,
    #[serde(skip)]
    pub raw: Value,
}

/// [`Keyed`] for elements whose `id` and `raw` are plain fields and that
/// embed nothing.
macro_rules! keyed_by_fields {
    ($($element:ty),+) => {$(
        impl Keyed for $element {
            fn id(&self) -> Option<i64> {
                self.id
            }
            fn set_raw(&mut self, raw: Value) {
                self.raw = raw;
            }
        }
    )+};
}

keyed_by_fields!(LossReason, Tag);

/// Reads one element; `Err` says why it cannot be stored.
fn read_element<T: Keyed>(item: Value) -> Result<T, String> {
    if !item.is_object() {
        return Err("it is not a JSON object".into());
    }
    let mut element: T = serde_json::from_value(item.clone()).map_err(|e| e.to_string())?;
    match element.id() {
        Some(id) if id > 0 => {}
        _ => {
            return Err(format!(
                "its id is not a positive integer but {}",
                item.get("id").map_or("missing".into(), Value::to_string)
            ));
        }
    }
    element.set_raw(item);
    Ok(element)
}

/// One page of a structure listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed<T> {
    /// The elements that can be stored, in the order received.
    pub items: Vec<T>,
    /// Why each element (or embedded element) that cannot be stored was skipped.
    pub skipped: Vec<String>,
    /// Elements received, stored or not (what tells a short page).
    pub received: usize,
    /// `_links.next` was present.
    pub has_next: bool,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Listed {
            items: Vec::new(),
            skipped: Vec::new(),
            received: 0,
            has_next: false,
        }
    }
}

impl<T: Keyed> Listed<T> {
    /// Parses a 200 body whose elements are `_embedded.<key>`; `None` (a 204)
    /// is an empty last page. A body without that array is a (transient)
    /// decode error: only a 204 or a list says what there is.
    pub fn from_json(path: &str, key: &str, body: Option<Value>) -> Result<Listed<T>, KommoError> {
        let Some(body) = body else {
            return Ok(Listed::default());
        };
        let items = match body.get("_embedded").and_then(|e| e.get(key)) {
            Some(Value::Array(items)) => items.clone(),
            _ => {
                return Err(KommoError::Decode {
                    message: format!(
                        "{path} answered HTTP 200 without an _embedded.{key} array; only a 204 \
                         No Content or a list is an answer"
                    ),
                });
            }
        };
        let has_next = body
            .get("_links")
            .and_then(|l| l.get("next"))
            .is_some_and(|n| !n.is_null());
        let mut page = Listed {
            items: Vec::with_capacity(items.len()),
            skipped: Vec::new(),
            received: items.len(),
            has_next,
        };
        for (index, item) in items.into_iter().enumerate() {
            match read_element::<T>(item) {
                Ok(mut element) => {
                    page.skipped.extend(element.read_embedded());
                    page.items.push(element);
                }
                Err(reason) => page.skipped.push(format!("{key}[{index}]: {reason}")),
            }
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_pipelines_with_their_statuses_keyed_by_the_listing_pipeline() {
        let page: Listed<Pipeline> = Listed::from_json(
            "p",
            "pipelines",
            Some(json!({"_embedded": {"pipelines": [
                {"id": 7, "name": "Sales", "sort": "1", "is_main": true, "new_field": [1],
                 "_embedded": {"statuses": [
                    {"id": 142, "name": "Won", "sort": 10000, "type": 0, "color": "#CCFF66", "pipeline_id": 7},
                    {"id": "x"},
                    {"id": 55, "name": null, "sort": null, "type": 1, "color": 3, "pipeline_id": 99}
                 ]}},
                {"name": "no id"}
            ]}})),
        )
        .unwrap();
        assert_eq!(page.items.len(), 1);
        let p = &page.items[0];
        assert_eq!((p.id, p.sort, p.is_main), (Some(7), Some(1), Some(true)));
        assert_eq!(p.raw["new_field"], json!([1]));
        assert_eq!(p.statuses.len(), 2);
        assert_eq!(p.statuses[0].kind, Some(0));
        assert_eq!(
            p.statuses[1].pipeline_id, 7,
            "keyed by the listing pipeline"
        );
        assert_eq!(p.statuses[1].color.as_deref(), Some("3"));
        assert_eq!(page.skipped.len(), 2, "{:?}", page.skipped);
        assert!(!page.has_next);
    }

    #[test]
    fn reads_fields_users_and_tags_leniently() {
        let fields: Listed<CustomField> = Listed::from_json(
            "f",
            "custom_fields",
            Some(
                json!({"_links": {"next": {"href": "n"}}, "_embedded": {"custom_fields": [
                    {"id": 1, "name": "Source", "type": "select", "code": null,
                     "enums": [{"id": 11, "value": "Web", "sort": 1}, {"value": "no id"}]},
                    {"id": 2, "name": "Seats", "type": "numeric", "enums": null}
                ]}}),
            ),
        )
        .unwrap();
        assert!(fields.has_next);
        assert_eq!(fields.items[0].enums.len(), 1);
        assert_eq!(fields.items[0].enums[0].field_id, 1);
        assert!(fields.items[1].enums.is_empty());
        assert_eq!(fields.skipped.len(), 1);

        let users: Listed<User> = Listed::from_json(
            "u",
            "users",
            Some(json!({"_embedded": {"users": [
                {"id": 5, "name": "Ann", "email": "a@x", "rights": {"is_admin": true, "is_active": false}},
                {"id": 6, "name": "Bob", "rights": null}
            ]}})),
        )
        .unwrap();
        assert_eq!(users.items[0].is_admin, Some(true));
        assert_eq!(users.items[0].is_active, Some(false));
        assert_eq!(users.items[1].is_admin, None);

        let none: Listed<Tag> = Listed::from_json("t", "tags", None).unwrap();
        assert!(none.items.is_empty() && !none.has_next);
        let e = Listed::<Tag>::from_json("t", "tags", Some(json!({"_embedded": {}}))).unwrap_err();
        assert!(e.is_transient(), "{e}");
    }

    #[test]
    fn reads_the_account_and_its_time_zone() {
        let a = AccountInfo::from_json(json!({
            "id": 31, "name": "Acme", "subdomain": "acme", "currency": "USD",
            "_embedded": {"datetime_settings": {"timezone": "Europe/Madrid"}}
        }))
        .unwrap();
        assert_eq!(a.timezone.as_deref(), Some("Europe/Madrid"));
        assert_eq!(a.currency.as_deref(), Some("USD"));
        assert!(AccountInfo::from_json(json!({"name": "no id"})).is_err());
        assert!(AccountInfo::from_json(json!([1])).is_err());
    }
}
