//! One record (a lead, a contact, a company: see [`super::entity`]) as
//! received, read once: its JSON text kept whole (unknown fields
//! included, so a new field in the API never breaks anything), the columns
//! of its entity's table, its custom field values typed, and its links to
//! tags, contacts and companies.
//!
//! Reading borrows from the page's bytes: nothing is copied but what is
//! kept. Only `id` must be usable; any other field of an unexpected type is
//! noted as a misfit (its column stays NULL, `raw` keeps it) rather than a
//! reason to drop the record.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::entity::Entity;
use super::field::{Field, WireRecord};
use super::lenient::{Scalar, lenient_bool, lenient_id, lenient_list};

/// Kommo's id of a record (ids are unique within one entity).
pub type RecordId = i64;

/// The value of one scalar column.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    Null,
    Integer(i64),
    Text(String),
}

/// One value of a custom field, in the column that fits its type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldValue {
    pub field_id: i64,
    /// Its place among the field's values (a multiselect has several).
    pub position: i64,
    pub field_type: Option<String>,
    pub text: Option<String>,
    pub number: Option<f64>,
    pub boolean: Option<bool>,
    /// Unix seconds (dates arrive as numbers or as `YYYY-MM-DD` text).
    pub date: Option<i64>,
    pub enum_id: Option<i64>,
    pub enum_code: Option<String>,
    /// The field's `field_code` (`PHONE`, `EMAIL`...), when it has one.
    pub field_code: Option<String>,
}

/// One record as received.
#[derive(Clone, Debug)]
pub struct Record {
    /// Kommo's id.
    pub id: RecordId,
    /// `updated_at`, Unix seconds, when it is an integer.
    pub updated_at: Option<i64>,
    /// `is_deleted` is `true` (leads listed with `with=only_deleted`).
    pub is_deleted: bool,
    /// The whole object as received.
    pub raw: Box<RawValue>,
    /// Its entity's scalar columns ([`Entity::columns`]), in order.
    pub columns: Vec<Column>,
    /// `custom_fields_values` as received, when it is an array.
    pub custom_fields_json: Option<String>,
    /// Its custom field values, typed.
    pub field_values: Vec<FieldValue>,
    /// `_embedded.tags[].id`.
    pub tags: Vec<i64>,
    /// `_embedded.contacts[]`: (id, is_main).
    pub contacts: Vec<(i64, bool)>,
    /// `_embedded.companies[].id`.
    pub companies: Vec<i64>,
    /// Fields of an unexpected type: `price is a string`, ...
    pub misfits: Vec<String>,
}

/// Why an element of `_embedded.{entity}` is not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// It cannot be stored (no usable id): skipped and reported, the page
    /// stands.
    Unusable(String),
    /// It cannot be read at all (a number out of range, a broken string):
    /// the page is not trusted, like a body that does not parse, since the
    /// element may be a record that exists.
    Unreadable(String),
}

impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.raw.get() == other.raw.get()
    }
}

impl Record {
    /// Reads a record of `entity` out of one element of `_embedded.{entity}`.
    pub fn from_raw(entity: &Entity, raw: &RawValue) -> Result<Record, RecordError> {
        let text = raw.get();
        let kind = json_kind(text);
        if kind != "an object" {
            return Err(RecordError::Unusable(format!(
                "it is not an object but {kind}"
            )));
        }
        let normalized;
        let wire: WireRecord<'_> = match serde_json::from_str(text) {
            Ok(wire) => wire,
            // A key given twice: read it as any JSON reader here does (the
            // last one counts); `raw` keeps the text as received.
            Err(first) => {
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| RecordError::Unreadable(format!("it is not valid JSON ({e})")))?;
                normalized = value.to_string();
                serde_json::from_str(&normalized)
                    .map_err(|_| RecordError::Unreadable(format!("it cannot be read ({first})")))?
            }
        };
        let id = match &wire.id {
            Scalar::Absent | Scalar::Null => {
                return Err(RecordError::Unusable("it has no id".into()));
            }
            Scalar::Integer(id) if *id > 0 => *id,
            other => {
                return Err(RecordError::Unusable(format!(
                    "its id is not a positive integer but {}",
                    other.describe()
                )));
            }
        };
        let mut misfits = Vec::new();
        let columns = entity
            .columns
            .iter()
            .map(|&field| match wire.scalar(field) {
                Scalar::Absent | Scalar::Null => Column::Null,
                Scalar::Text(text) if field.is_text() => Column::Text(text.to_string()),
                Scalar::Integer(n) if !field.is_text() => Column::Integer(*n),
                other => {
                    misfits.push(format!("{} is {}", field.name(), other.kind()));
                    Column::Null
                }
            })
            .collect();
        let updated_at = match wire.scalar(Field::UpdatedAt) {
            Scalar::Integer(t) => Some(*t),
            _ => None,
        };
        let (custom_fields_json, field_values) = match wire.custom_fields_values {
            None => (None, Vec::new()),
            Some(raw) => match json_kind(raw.get()) {
                "null" => (None, Vec::new()),
                "an array" => {
                    // Each field on its own: one odd field costs only itself.
                    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).unwrap_or_default();
                    let mut fields = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        match serde_json::from_str::<WireField<'_>>(item.get()) {
                            Ok(field) => fields.push(field),
                            Err(e) => misfits.push(format!(
                                "custom_fields_values[{i}] cannot be read ({e}); its values are not in the field values table"
                            )),
                        }
                    }
                    (Some(raw.get().to_string()), typed_values(&fields))
                }
                other => {
                    misfits.push(format!("custom_fields_values is {other}"));
                    (None, Vec::new())
                }
            },
        };
        let embedded = match wire.embedded {
            None => WireEmbedded::default(),
            Some(raw) if json_kind(raw.get()) == "null" => WireEmbedded::default(),
            Some(raw) => serde_json::from_str(raw.get()).unwrap_or_else(|e| {
                misfits.push(format!("_embedded cannot be read ({e})"));
                WireEmbedded::default()
            }),
        };
        Ok(Record {
            id,
            updated_at,
            is_deleted: wire.is_deleted == Some(true),
            raw: raw.to_owned(),
            columns,
            custom_fields_json,
            field_values,
            tags: embedded.tags.iter().filter_map(|t| t.id).collect(),
            contacts: embedded
                .contacts
                .iter()
                .filter_map(|c| Some((c.id?, c.is_main == Some(true))))
                .collect(),
            companies: embedded.companies.iter().filter_map(|c| c.id).collect(),
            misfits,
        })
    }

    /// Like [`Record::from_raw`], from a parsed value.
    #[cfg(test)]
    pub fn from_json(entity: &Entity, value: serde_json::Value) -> Result<Record, RecordError> {
        let raw = RawValue::from_string(value.to_string())
            .map_err(|e| RecordError::Unreadable(e.to_string()))?;
        Record::from_raw(entity, &raw)
    }

    /// The record as a JSON value.
    #[cfg(test)]
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.raw.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// `an object`, `a string`... of a JSON text, from its first character.
pub(crate) fn json_kind(text: &str) -> &'static str {
    match text.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// `_embedded`: the links the mirror keeps. Elements without a usable id
/// are left out.
#[derive(Default, Deserialize)]
struct WireEmbedded {
    #[serde(default, deserialize_with = "lenient_list")]
    tags: Vec<WireLink>,
    #[serde(default, deserialize_with = "lenient_list")]
    contacts: Vec<WireLink>,
    #[serde(default, deserialize_with = "lenient_list")]
    companies: Vec<WireLink>,
}

#[derive(Default, Deserialize)]
struct WireLink {
    #[serde(default, deserialize_with = "lenient_id")]
    id: Option<i64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    is_main: Option<bool>,
}

/// One element of `custom_fields_values`.
#[derive(Deserialize)]
struct WireField<'a> {
    #[serde(default, deserialize_with = "lenient_id")]
    field_id: Option<i64>,
    #[serde(default, borrow)]
    field_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    field_code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    values: Option<Vec<WireFieldValue<'a>>>,
}

/// One element of a custom field's `values`.
#[derive(Deserialize)]
struct WireFieldValue<'a> {
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "lenient_id")]
    enum_id: Option<i64>,
    #[serde(default, borrow)]
    enum_code: Option<Cow<'a, str>>,
}

/// The typed rows of a record's custom field values.
fn typed_values(fields: &[WireField<'_>]) -> Vec<FieldValue> {
    let mut out = Vec::new();
    for field in fields {
        let Some(field_id) = field.field_id else {
            continue;
        };
        for (position, v) in field.values.iter().flatten().enumerate() {
            let mut row = FieldValue {
                field_id,
                position: position as i64,
                field_type: field.field_type.as_deref().map(str::to_string),
                enum_id: v.enum_id,
                enum_code: v.enum_code.as_deref().map(str::to_string),
                field_code: field.field_code.as_deref().map(str::to_string),
                ..FieldValue::default()
            };
            if let Some(raw) = v.value {
                type_value(&mut row, raw);
            }
            out.push(row);
        }
    }
    out
}

/// Puts one `value` in the column its field type calls for. A value that
/// does not fit (a numeric field holding `"abc"`) keeps its text.
fn type_value(row: &mut FieldValue, raw: &RawValue) {
    let value: Scalar<'_> = match serde_json::from_str(raw.get()) {
        Ok(Scalar::Other(_, _)) | Err(_) => {
            // A boolean, a fractional number, an object: look at it whole.
            match serde_json::from_str::<serde_json::Value>(raw.get()) {
                Ok(serde_json::Value::Bool(b)) => {
                    row.boolean = Some(b);
                    return;
                }
                Ok(serde_json::Value::Number(n)) => {
                    let kind = row.field_type.as_deref();
                    if is_text(kind) {
                        row.text = Some(n.to_string());
                    } else if is_date(kind) {
                        row.date = n.as_f64().map(|f| f as i64);
                    } else {
                        row.number = n.as_f64();
                    }
                    return;
                }
                _ => {
                    row.text = Some(raw.get().to_string());
                    return;
                }
            }
        }
        Ok(v) => v,
    };
    let kind = row.field_type.as_deref();
    match value {
        Scalar::Absent | Scalar::Null | Scalar::Other(_, _) => {}
        Scalar::Integer(n) if is_text(kind) => row.text = Some(n.to_string()),
        Scalar::Integer(n) => {
            if is_date(kind) {
                row.date = Some(n);
            } else if kind == Some("checkbox") {
                row.boolean = Some(n != 0);
            } else {
                row.number = Some(n as f64);
            }
        }
        Scalar::Text(text) => {
            let t = text.trim();
            match kind {
                Some("numeric" | "price" | "monetary") => match t.parse::<f64>() {
                    Ok(n) if n.is_finite() => row.number = Some(n),
                    _ => row.text = Some(text.into_owned()),
                },
                Some("checkbox") => match t {
                    "1" | "true" | "Y" | "y" => row.boolean = Some(true),
                    "0" | "false" | "N" | "n" | "" => row.boolean = Some(false),
                    _ => row.text = Some(text.into_owned()),
                },
                k if is_date(k) => match parse_date(t) {
                    Some(unix) => row.date = Some(unix),
                    None => row.text = Some(text.into_owned()),
                },
                _ => row.text = Some(text.into_owned()),
            }
        }
    }
}

/// Field types whose values are text, whatever JSON type they arrive as.
fn is_text(kind: Option<&str>) -> bool {
    matches!(
        kind,
        Some(
            "text"
                | "textarea"
                | "url"
                | "select"
                | "multiselect"
                | "radiobutton"
                | "streetaddress"
        )
    )
}

fn is_date(kind: Option<&str>) -> bool {
    matches!(kind, Some("date" | "date_time" | "birthday"))
}

/// Unix seconds of `2020-05-08`, an RFC 3339 time, or a number in text.
fn parse_date(text: &str) -> Option<i64> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(n);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp());
    }
    let day = chrono::NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kommo::entity::LEADS;
    use serde_json::json;

    fn lead(v: serde_json::Value) -> Record {
        Record::from_json(&LEADS, v).unwrap()
    }

    #[test]
    fn columns_keep_integers_and_text_and_null_what_does_not_fit() {
        let l = lead(json!({
            "id": 5, "name": "Deal", "price": "1500", "status_id": 142,
            "created_at": 10, "updated_at": 20, "score": 1.5, "group_id": null,
            "is_deleted": false, "new_field": {"a": [1, 2]}
        }));
        assert_eq!(l.id, 5);
        assert_eq!(l.updated_at, Some(20));
        assert!(!l.is_deleted);
        assert_eq!(l.columns[0], Column::Text("Deal".into()));
        assert_eq!(l.columns[1], Column::Null);
        assert_eq!(l.columns[4], Column::Integer(142));
        assert_eq!(l.columns[10], Column::Null);
        assert_eq!(
            l.misfits,
            vec![
                "price is a string",
                "score is a fractional or out-of-range number"
            ]
        );
        assert_eq!(l.to_value()["new_field"], json!({"a": [1, 2]}));
    }

    #[test]
    fn custom_field_values_are_typed_whatever_their_wire_shape() {
        let l = lead(json!({"id": 1, "custom_fields_values": [
            {"field_id": 1, "field_type": "numeric", "values": [{"value": "12.5"}]},
            {"field_id": 2, "field_type": "numeric", "values": [{"value": 7}]},
            {"field_id": 3, "field_type": "date", "values": [{"value": "2020-05-08"}]},
            {"field_id": 4, "field_type": "date", "values": [{"value": 1588896000}]},
            {"field_id": 5, "field_type": "checkbox", "values": [{"value": true}]},
            {"field_id": 6, "field_type": "multiselect", "values": [
                {"value": "CRM", "enum_id": 11, "enum_code": "CRM"},
                {"value": "Поддержка", "enum_id": 12, "enum_code": null}]},
            {"field_id": 7, "field_type": "text", "values": [{"value": "a \"q\""}]},
            {"field_id": 8, "field_type": "numeric", "values": [{"value": "abc"}]},
            {"field_id": 9, "field_type": "price", "values": [{"value": 1.25}]}
        ]}));
        let v = &l.field_values;
        assert_eq!(v.len(), 10);
        assert_eq!(v[0].number, Some(12.5));
        assert_eq!(v[1].number, Some(7.0));
        assert_eq!(v[2].date, Some(1_588_896_000));
        assert_eq!(v[3].date, Some(1_588_896_000));
        assert_eq!(v[4].boolean, Some(true));
        assert_eq!((v[5].position, v[6].position), (0, 1));
        assert_eq!(v[6].text.as_deref(), Some("Поддержка"));
        assert_eq!(v[6].enum_id, Some(12));
        assert_eq!(v[5].enum_code.as_deref(), Some("CRM"));
        assert_eq!(v[7].text.as_deref(), Some("a \"q\""));
        assert_eq!((v[8].number, v[8].text.as_deref()), (None, Some("abc")));
        assert_eq!(v[9].number, Some(1.25));
        assert!(l.custom_fields_json.unwrap().starts_with("[{"));
    }

    #[test]
    fn links_come_from_embedded_and_bad_shapes_are_misfits_not_failures() {
        let l = lead(json!({"id": 1, "_embedded": {
            "tags": [{"id": 3, "name": "vip"}, {"id": null}],
            "contacts": [{"id": 7, "is_main": true}, {"id": 8, "is_main": false}],
            "companies": [{"id": 9}]
        }}));
        assert_eq!(l.tags, vec![3]);
        assert_eq!(l.contacts, vec![(7, true), (8, false)]);
        assert_eq!(l.companies, vec![9]);
        let odd = lead(json!({"id": 2, "custom_fields_values": {"x": 1}, "_embedded": 5}));
        assert!(odd.field_values.is_empty() && odd.tags.is_empty());
        assert_eq!(
            odd.misfits.len(),
            2,
            "custom_fields_values and _embedded: {:?}",
            odd.misfits
        );
        assert!(odd.custom_fields_json.is_none());
    }
}
