//! The account's structure: its pipelines and their statuses, custom fields
//! with their enums, users and their groups, loss reasons and tags, built
//! from the ids in `generator` that every generated lead references. It
//! exists so a mirror can be checked against names, not only ids: tests
//! rename things (a renamed user or status keeps its id) and add tags. Each
//! `*_json` function renders an item exactly as its endpoint serves it.

use serde_json::{Value, json};

use super::generator::{
    ACCOUNT_ID, DAY, FIELDS, GROUPS, LOSS_REASONS, MULTI_ENUMS, PIPELINES, SELECT_ENUMS, TAGS,
    USERS,
};

/// "Closed - won", in every pipeline.
pub(crate) const WON: i64 = 142;
/// "Closed - lost", in every pipeline.
pub(crate) const LOST: i64 = 143;
/// When the account (and its structure) was created.
const ACCOUNT_CREATED_AT: i64 = 1_577_836_800;

pub(crate) struct Status {
    pub(crate) id: i64,
    pub(crate) name: String,
    sort: i64,
    color: &'static str,
    /// 1: the "Incoming leads" (unsorted) status, else 0
    kind: u8,
    editable: bool,
}

pub(crate) struct Pipeline {
    pub(crate) id: i64,
    name: String,
    sort: i64,
    is_main: bool,
    /// first status (the unsorted one), then the others, then 142 and 143
    pub(crate) statuses: Vec<Status>,
}

pub(crate) struct Field {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) code: Option<&'static str>,
    pub(crate) kind: &'static str,
    sort: i64,
    enums: Option<Vec<(i64, &'static str)>>,
}

struct User {
    id: i64,
    name: String,
    email: String,
    lang: &'static str,
    is_admin: bool,
    group_id: i64,
}

struct LossReason {
    id: i64,
    name: String,
    sort: i64,
    updated_at: i64,
}

pub(crate) struct Tag {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) color: Option<String>,
}

/// The ids of every structure item the endpoints list now, as
/// [`super::Simulator::structure_ids`] returns them (each list in the
/// order its endpoint serves it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StructureIds {
    pub pipelines: Vec<i64>,
    /// `(pipeline_id, status_id)`: 142 and 143 are in every pipeline
    pub statuses: Vec<(i64, i64)>,
    pub users: Vec<i64>,
    pub custom_fields: Vec<i64>,
    /// `(field_id, enum_id)`
    pub custom_field_enums: Vec<(i64, i64)>,
    pub loss_reasons: Vec<i64>,
    pub tags: Vec<i64>,
}

/// Everything the structure endpoints serve.
pub(crate) struct Structure {
    pub(crate) pipelines: Vec<Pipeline>,
    pub(crate) fields: Vec<Field>,
    users: Vec<User>,
    groups: Vec<(i64, &'static str)>,
    loss_reasons: Vec<LossReason>,
    pub(crate) tags: Vec<Tag>,
    /// the account's time zone (IANA name) and its UTC offset
    timezone: (String, String),
}

const USER_NAMES: [(&str, &str, &str); 8] = [
    ("Ana Souza", "ana.souza", "pt"),
    ("John Miller", "john.miller", "en"),
    ("Мария Иванова", "maria.ivanova", "ru"),
    ("Carlos Pérez", "carlos.perez", "es"),
    ("Li Wei", "li.wei", "en"),
    ("O'Connor \"Sam\"", "sam.oconnor", "en"),
    ("Fatima Zahra", "fatima.zahra", "en"),
    ("🤖 Robot", "robot", "en"),
];
const GROUP_NAMES: [&str; 3] = ["Sales", "Support", "Партнёры"];
const LOSS_NAMES: [&str; 4] = [
    "Too expensive",
    "Chose a competitor",
    "No answer",
    "Не устроили сроки",
];
const PIPELINE_NAMES: [&str; 2] = ["Sales", "Partners 🤝"];
const STATUS_NAMES: [&str; 5] = [
    "Initial contact",
    "Offer made",
    "Negotiation",
    "Contract sent",
    "Invoice",
];
const COLORS: [&str; 5] = ["#99ccff", "#ffff99", "#ffcc66", "#ff8f92", "#87f2c0"];

impl Structure {
    pub(crate) fn new() -> Structure {
        let pipelines = PIPELINES
            .iter()
            .enumerate()
            .map(|(p, (pipeline_id, ids))| {
                let mut statuses: Vec<Status> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| Status {
                        id: *id,
                        name: if i == 0 {
                            "Incoming leads".to_string()
                        } else {
                            STATUS_NAMES[(i - 1) % STATUS_NAMES.len()].to_string()
                        },
                        sort: 10 * (i as i64 + 1),
                        color: if i == 0 {
                            "#c1c1c1"
                        } else {
                            COLORS[(i - 1) % COLORS.len()]
                        },
                        kind: u8::from(i == 0),
                        editable: i != 0,
                    })
                    .collect();
                statuses.push(closed(WON, "Closed - won", 10_000, "#CCFF66"));
                statuses.push(closed(LOST, "Closed - lost", 11_000, "#D5D8DB"));
                Pipeline {
                    id: *pipeline_id,
                    name: PIPELINE_NAMES[p % PIPELINE_NAMES.len()].to_string(),
                    sort: p as i64 + 1,
                    is_main: p == 0,
                    statuses,
                }
            })
            .collect();
        let fields = FIELDS
            .iter()
            .enumerate()
            .map(|(i, f)| Field {
                id: f.id,
                name: f.name.to_string(),
                code: f.code,
                kind: f.kind,
                sort: 500 + 2 * i as i64,
                enums: match f.kind {
                    "select" => Some(SELECT_ENUMS.iter().map(|e| (e.0, e.1)).collect()),
                    "multiselect" => Some(MULTI_ENUMS.iter().map(|e| (e.0, e.1)).collect()),
                    _ => None,
                },
            })
            .collect();
        let users = USERS
            .iter()
            .zip(USER_NAMES)
            .enumerate()
            .map(|(i, (id, (name, login, lang)))| User {
                id: *id,
                name: name.to_string(),
                email: format!("{login}@example.com"),
                lang,
                is_admin: i < 2,
                group_id: if i % 4 == 3 {
                    0
                } else {
                    GROUPS[i % GROUPS.len()]
                },
            })
            .collect();
        let loss_reasons = LOSS_REASONS
            .iter()
            .zip(LOSS_NAMES)
            .enumerate()
            .map(|(i, (id, name))| LossReason {
                id: *id,
                name: name.to_string(),
                sort: 10 * (i as i64 + 1),
                updated_at: ACCOUNT_CREATED_AT + DAY * (i as i64 + 1),
            })
            .collect();
        let tags = TAGS
            .iter()
            .map(|(id, name, color)| Tag {
                id: *id,
                name: name.to_string(),
                color: color.map(String::from),
            })
            .collect();
        Structure {
            pipelines,
            fields,
            users,
            groups: GROUPS.iter().copied().zip(GROUP_NAMES).collect(),
            loss_reasons,
            tags,
            timezone: ("UTC".to_string(), "+00:00".to_string()),
        }
    }

    /// The status `status_id` of pipeline `pipeline_id`.
    pub(crate) fn status(&self, pipeline_id: i64, status_id: i64) -> Option<&Status> {
        self.pipelines
            .iter()
            .find(|p| p.id == pipeline_id)?
            .statuses
            .iter()
            .find(|s| s.id == status_id)
    }

    pub(crate) fn pipeline(&self, pipeline_id: i64) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.id == pipeline_id)
    }

    pub(crate) fn field(&self, field_id: i64) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == field_id)
    }

    pub(crate) fn tag(&self, tag_id: i64) -> Option<&Tag> {
        self.tags.iter().find(|t| t.id == tag_id)
    }

    pub(crate) fn user_ids(&self) -> Vec<i64> {
        self.users.iter().map(|u| u.id).collect()
    }

    pub(crate) fn loss_reason_ids(&self) -> Vec<i64> {
        self.loss_reasons.iter().map(|r| r.id).collect()
    }

    pub(crate) fn rename_user(&mut self, id: i64, name: &str) -> bool {
        self.users
            .iter_mut()
            .find(|u| u.id == id)
            .map(|u| u.name = name.to_string())
            .is_some()
    }

    pub(crate) fn rename_status(&mut self, pipeline_id: i64, status_id: i64, name: &str) -> bool {
        self.pipelines
            .iter_mut()
            .find(|p| p.id == pipeline_id)
            .and_then(|p| p.statuses.iter_mut().find(|s| s.id == status_id))
            .map(|s| s.name = name.to_string())
            .is_some()
    }

    pub(crate) fn rename_field(&mut self, id: i64, name: &str) -> bool {
        self.fields
            .iter_mut()
            .find(|f| f.id == id)
            .map(|f| f.name = name.to_string())
            .is_some()
    }

    pub(crate) fn rename_tag(&mut self, id: i64, name: &str) -> bool {
        self.tags
            .iter_mut()
            .find(|t| t.id == id)
            .map(|t| t.name = name.to_string())
            .is_some()
    }

    pub(crate) fn rename_loss_reason(&mut self, id: i64, name: &str, now: i64) -> bool {
        self.loss_reasons
            .iter_mut()
            .find(|r| r.id == id)
            .map(|r| {
                r.name = name.to_string();
                r.updated_at = now;
            })
            .is_some()
    }

    /// Removes the tag from the listing. False when unknown.
    pub(crate) fn delete_tag(&mut self, id: i64) -> bool {
        let before = self.tags.len();
        self.tags.retain(|t| t.id != id);
        self.tags.len() < before
    }

    /// Removes the custom field (and its enums) from the listing. False
    /// when unknown.
    pub(crate) fn delete_field(&mut self, id: i64) -> bool {
        let before = self.fields.len();
        self.fields.retain(|f| f.id != id);
        self.fields.len() < before
    }

    /// Removes option `enum_id` from the `enums` of field `field_id` (a
    /// field left without options lists `enums: []`). False when unknown.
    pub(crate) fn delete_field_enum(&mut self, field_id: i64, enum_id: i64) -> bool {
        let Some(enums) = self
            .fields
            .iter_mut()
            .find(|f| f.id == field_id)
            .and_then(|f| f.enums.as_mut())
        else {
            return false;
        };
        let before = enums.len();
        enums.retain(|(id, _)| *id != enum_id);
        enums.len() < before
    }

    /// Removes the loss reason from the listing. False when unknown.
    pub(crate) fn delete_loss_reason(&mut self, id: i64) -> bool {
        let before = self.loss_reasons.len();
        self.loss_reasons.retain(|r| r.id != id);
        self.loss_reasons.len() < before
    }

    /// Removes status `status_id` from pipeline `pipeline_id`. False when
    /// unknown, and for the statuses Kommo keeps in every pipeline: 142,
    /// 143 and the "Incoming leads" one.
    pub(crate) fn delete_status(&mut self, pipeline_id: i64, status_id: i64) -> bool {
        let Some(p) = self.pipelines.iter_mut().find(|p| p.id == pipeline_id) else {
            return false;
        };
        let before = p.statuses.len();
        p.statuses
            .retain(|s| s.id != status_id || s.id == WON || s.id == LOST || s.kind == 1);
        p.statuses.len() < before
    }

    /// Removes the pipeline (and its statuses). False when unknown, and for
    /// the main pipeline, which Kommo does not delete.
    pub(crate) fn delete_pipeline(&mut self, id: i64) -> bool {
        let before = self.pipelines.len();
        self.pipelines.retain(|p| p.id != id || p.is_main);
        self.pipelines.len() < before
    }

    /// A new text custom field with the next free id.
    pub(crate) fn add_field(&mut self, name: &str) -> i64 {
        let id = self.fields.iter().map(|f| f.id).max().unwrap_or(510_000) + 1;
        let sort = self.fields.iter().map(|f| f.sort).max().unwrap_or(500) + 2;
        self.fields.push(Field {
            id,
            name: name.to_string(),
            code: None,
            kind: "text",
            sort,
            enums: None,
        });
        id
    }

    /// The ids of everything listed now.
    pub(crate) fn ids(&self) -> StructureIds {
        StructureIds {
            pipelines: self.pipelines.iter().map(|p| p.id).collect(),
            statuses: self
                .pipelines
                .iter()
                .flat_map(|p| p.statuses.iter().map(move |s| (p.id, s.id)))
                .collect(),
            users: self.user_ids(),
            custom_fields: self.fields.iter().map(|f| f.id).collect(),
            custom_field_enums: self
                .fields
                .iter()
                .flat_map(|f| f.enums.iter().flatten().map(move |(id, _)| (f.id, *id)))
                .collect(),
            loss_reasons: self.loss_reason_ids(),
            tags: self.tags.iter().map(|t| t.id).collect(),
        }
    }

    /// A new tag (no colour) with the next free id.
    pub(crate) fn add_tag(&mut self, name: &str) -> i64 {
        let id = self.tags.iter().map(|t| t.id).max().unwrap_or(30_000) + 1;
        self.tags.push(Tag {
            id,
            name: name.to_string(),
            color: None,
        });
        id
    }

    pub(crate) fn set_timezone(&mut self, name: &str, offset: &str) {
        self.timezone = (name.to_string(), offset.to_string());
    }

    /// `GET /api/v4/account`, with `_embedded` parts for the `with` values
    /// `datetime_settings` and `users_groups`.
    pub(crate) fn account_json(&self, base: &str, now: i64, with: &[String]) -> Value {
        let mut body = json!({
            "id": ACCOUNT_ID,
            "name": "Simulated account",
            "subdomain": "simulated",
            "created_at": ACCOUNT_CREATED_AT,
            "created_by": 0,
            "updated_at": now,
            "updated_by": 0,
            "current_user_id": USERS[0],
            "country": "US",
            "currency": "USD",
            "currency_symbol": "$",
            "customers_mode": "disabled",
            "is_unsorted_on": true,
            "is_loss_reason_enabled": true,
            "is_helpbot_enabled": false,
            "is_technical_account": false,
            "contact_name_display_order": 1,
            "_links": {"self": {"href": format!("{base}/api/v4/account")}},
        });
        let mut embedded = serde_json::Map::new();
        if with.iter().any(|w| w == "datetime_settings") {
            embedded.insert(
                "datetime_settings".into(),
                json!({
                    "date_pattern": "d.m.Y H:i",
                    "short_date_pattern": "d.m.Y",
                    "short_time_pattern": "H:i",
                    "date_format": "d.m.Y",
                    "time_format": "H:i:s",
                    "timezone": self.timezone.0,
                    "timezone_offset": self.timezone.1,
                }),
            );
        }
        if with.iter().any(|w| w == "users_groups") {
            let groups: Vec<Value> = std::iter::once((0, "Отдел продаж"))
                .chain(self.groups.iter().copied())
                .map(|(id, name)| json!({"id": id, "name": name, "uuid": null}))
                .collect();
            embedded.insert("users_groups".into(), Value::Array(groups));
        }
        if !embedded.is_empty()
            && let Some(obj) = body.as_object_mut()
        {
            obj.insert("_embedded".into(), Value::Object(embedded));
        }
        body
    }

    pub(crate) fn pipelines_json(&self, base: &str) -> Vec<Value> {
        self.pipelines
            .iter()
            .map(|p| {
                let statuses: Vec<Value> = p
                    .statuses
                    .iter()
                    .map(|s| {
                        json!({
                            "id": s.id,
                            "name": s.name,
                            "sort": s.sort,
                            "is_editable": s.editable,
                            "pipeline_id": p.id,
                            "color": s.color,
                            "type": s.kind,
                            "account_id": ACCOUNT_ID,
                            "_links": {"self": {"href": format!(
                                "{base}/api/v4/leads/pipelines/{}/statuses/{}", p.id, s.id
                            )}},
                        })
                    })
                    .collect();
                json!({
                    "id": p.id,
                    "name": p.name,
                    "sort": p.sort,
                    "is_main": p.is_main,
                    "is_unsorted_on": true,
                    "is_archive": false,
                    "account_id": ACCOUNT_ID,
                    "_links": {"self": {"href": format!("{base}/api/v4/leads/pipelines/{}", p.id)}},
                    "_embedded": {"statuses": statuses},
                })
            })
            .collect()
    }

    pub(crate) fn fields_json(&self, base: &str) -> Vec<Value> {
        self.fields
            .iter()
            .map(|f| {
                let enums = f.enums.as_ref().map(|es| {
                    es.iter()
                        .enumerate()
                        .map(|(i, (id, value))| {
                            json!({"id": id, "value": value, "sort": 500 + i as i64})
                        })
                        .collect::<Vec<Value>>()
                });
                json!({
                    "id": f.id,
                    "name": f.name,
                    "type": f.kind,
                    "account_id": ACCOUNT_ID,
                    "code": f.code,
                    "sort": f.sort,
                    "is_api_only": false,
                    "enums": enums,
                    "group_id": null,
                    "required_statuses": [],
                    "is_deletable": true,
                    "is_predefined": false,
                    "entity_type": "leads",
                    "remind": null,
                    "currency": (f.kind == "price").then_some("USD"),
                    "_links": {"self": {"href": format!("{base}/api/v4/leads/custom_fields/{}", f.id)}},
                })
            })
            .collect()
    }

    pub(crate) fn users_json(&self, base: &str) -> Vec<Value> {
        let all = json!({"view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A"});
        let own = json!({"view": "M", "edit": "M", "add": "A", "delete": "M", "export": "D"});
        self.users
            .iter()
            .map(|u| {
                let entity = if u.is_admin { &all } else { &own };
                json!({
                    "id": u.id,
                    "name": u.name,
                    "email": u.email,
                    "lang": u.lang,
                    "rights": {
                        "leads": entity,
                        "contacts": entity,
                        "companies": entity,
                        "tasks": {"edit": "A", "delete": "A"},
                        "mail_access": u.is_admin,
                        "catalog_access": u.is_admin,
                        "is_admin": u.is_admin,
                        "is_free": false,
                        "is_active": true,
                        "group_id": (u.group_id != 0).then_some(u.group_id),
                        "role_id": null,
                    },
                    "_links": {"self": {"href": format!("{base}/api/v4/users/{}", u.id)}},
                })
            })
            .collect()
    }

    pub(crate) fn loss_reasons_json(&self, base: &str) -> Vec<Value> {
        self.loss_reasons
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "name": r.name,
                    "sort": r.sort,
                    "created_at": ACCOUNT_CREATED_AT,
                    "updated_at": r.updated_at,
                    "_links": {"self": {"href": format!("{base}/api/v4/leads/loss_reasons/{}", r.id)}},
                })
            })
            .collect()
    }

    pub(crate) fn tags_json(&self) -> Vec<Value> {
        self.tags.iter().map(Tag::to_json).collect()
    }

    /// The whole structure, each part exactly as its endpoint serves it
    /// (the account with `with=datetime_settings,users_groups`).
    pub(crate) fn snapshot(&self, base: &str, now: i64) -> Value {
        let with = ["datetime_settings".to_string(), "users_groups".to_string()];
        json!({
            "account": self.account_json(base, now, &with),
            "pipelines": self.pipelines_json(base),
            "custom_fields": self.fields_json(base),
            "users": self.users_json(base),
            "loss_reasons": self.loss_reasons_json(base),
            "tags": self.tags_json(),
        })
    }
}

impl Tag {
    /// The tag as `/api/v4/leads/tags` and a lead's `_embedded.tags` show it.
    pub(crate) fn to_json(&self) -> Value {
        json!({"id": self.id, "name": self.name, "color": self.color})
    }
}

fn closed(id: i64, name: &str, sort: i64, color: &'static str) -> Status {
    Status {
        id,
        name: name.to_string(),
        sort,
        color,
        kind: 0,
        editable: false,
    }
}
