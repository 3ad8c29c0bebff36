//! The custom fields of contacts and companies: their definitions, as
//! `GET /api/v4/contacts/custom_fields` and `/api/v4/companies/custom_fields`
//! list them, and the entries a record's `custom_fields_values` holds for
//! them. Phones and emails are `multitext` fields coded `PHONE` / `EMAIL`
//! whose every value names its kind by `enum_id` and `enum_code` (`WORK`,
//! `WORKDD`, `MOB`, `FAX`, `HOME`, `OTHER` for phones; `WORK`, `PRIV`,
//! `OTHER` for emails); companies also have `WEB` and `ADDRESS`, contacts a
//! `POSITION` text field. Contacts and companies have fields (and enum ids)
//! of their own, as on the real service.

use serde_json::{Value, json};

use super::generator::ACCOUNT_ID;
use super::kind::RecordKind;

/// One field of a contact or company, with its options (`(enum_id,
/// enum_code)`) for multitext fields.
pub(crate) struct RecordField {
    pub(crate) id: i64,
    pub(crate) name: &'static str,
    pub(crate) code: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) enums: &'static [(i64, &'static str)],
}

const CONTACT_PHONE_ENUMS: [(i64, &str); 6] = [
    (620_101, "WORK"),
    (620_102, "WORKDD"),
    (620_103, "MOB"),
    (620_104, "FAX"),
    (620_105, "HOME"),
    (620_106, "OTHER"),
];
const CONTACT_EMAIL_ENUMS: [(i64, &str); 3] =
    [(620_201, "WORK"), (620_202, "PRIV"), (620_203, "OTHER")];
const COMPANY_PHONE_ENUMS: [(i64, &str); 6] = [
    (630_101, "WORK"),
    (630_102, "WORKDD"),
    (630_103, "MOB"),
    (630_104, "FAX"),
    (630_105, "HOME"),
    (630_106, "OTHER"),
];
const COMPANY_EMAIL_ENUMS: [(i64, &str); 3] =
    [(630_201, "WORK"), (630_202, "PRIV"), (630_203, "OTHER")];

/// The fields of contacts: phone, email, position.
pub(crate) const CONTACT_FIELDS: [RecordField; 3] = [
    RecordField {
        id: 520_001,
        name: "Phone",
        code: "PHONE",
        kind: "multitext",
        enums: &CONTACT_PHONE_ENUMS,
    },
    RecordField {
        id: 520_002,
        name: "Email",
        code: "EMAIL",
        kind: "multitext",
        enums: &CONTACT_EMAIL_ENUMS,
    },
    RecordField {
        id: 520_003,
        name: "Position",
        code: "POSITION",
        kind: "text",
        enums: &[],
    },
];

/// The fields of companies: phone, email, web site, address.
pub(crate) const COMPANY_FIELDS: [RecordField; 4] = [
    RecordField {
        id: 530_001,
        name: "Phone",
        code: "PHONE",
        kind: "multitext",
        enums: &COMPANY_PHONE_ENUMS,
    },
    RecordField {
        id: 530_002,
        name: "Email",
        code: "EMAIL",
        kind: "multitext",
        enums: &COMPANY_EMAIL_ENUMS,
    },
    RecordField {
        id: 530_003,
        name: "Web",
        code: "WEB",
        kind: "url",
        enums: &[],
    },
    RecordField {
        id: 530_004,
        name: "Address",
        code: "ADDRESS",
        kind: "textarea",
        enums: &[],
    },
];

/// The fields records of `kind` carry (none for leads: theirs are the
/// structure's).
pub(crate) fn fields_of(kind: RecordKind) -> &'static [RecordField] {
    match kind {
        RecordKind::Lead => &[],
        RecordKind::Contact => &CONTACT_FIELDS,
        RecordKind::Company => &COMPANY_FIELDS,
    }
}

/// The field of `kind` coded `code`.
pub(crate) fn field(kind: RecordKind, code: &str) -> Option<&'static RecordField> {
    fields_of(kind).iter().find(|f| f.code == code)
}

impl RecordField {
    /// The option coded `code` (`(enum_id, enum_code)`).
    pub(crate) fn option(&self, code: &str) -> Option<(i64, &'static str)> {
        self.enums.iter().copied().find(|(_, c)| *c == code)
    }

    /// A `custom_fields_values` entry of this field holding `values`.
    pub(crate) fn entry(&self, values: Vec<Value>) -> Value {
        json!({
            "field_id": self.id,
            "field_name": self.name,
            "field_code": self.code,
            "field_type": self.kind,
            "values": values,
        })
    }

    /// The definition as the kind's custom field listing serves it.
    fn definition(&self, kind: RecordKind, sort: i64, base: &str) -> Value {
        let path = kind.path();
        let enums = (!self.enums.is_empty()).then(|| {
            self.enums
                .iter()
                .enumerate()
                .map(|(i, (id, code))| json!({"id": id, "value": code, "sort": 2 * (i as i64 + 1)}))
                .collect::<Vec<Value>>()
        });
        json!({
            "id": self.id,
            "name": self.name,
            "type": self.kind,
            "account_id": ACCOUNT_ID,
            "code": self.code,
            "sort": sort,
            "is_api_only": false,
            "enums": enums,
            "group_id": null,
            "required_statuses": [],
            "is_deletable": false,
            "is_predefined": true,
            "entity_type": kind.list_key(),
            "remind": null,
            "_links": {"self": {"href": format!("{base}{path}/custom_fields/{}", self.id)}},
        })
    }
}

/// Every field definition of `kind`, as its custom field listing serves
/// them, in order.
pub(crate) fn definitions(kind: RecordKind, base: &str) -> Vec<Value> {
    fields_of(kind)
        .iter()
        .enumerate()
        .map(|(i, f)| f.definition(kind, 4 + 2 * i as i64, base))
        .collect()
}
