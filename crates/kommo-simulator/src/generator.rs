//! Realistic, seed-deterministic lead generation. It exists so that a client
//! is exercised against the awkward data a real Kommo account holds: nulls in
//! almost every field, Cyrillic/emoji/quoted names, every custom-field type in
//! both of its wire shapes (dates as numbers or strings, numerics as numbers
//! or strings), unknown new fields, sparse ids and a bulk-import block of
//! leads that all share one `updated_at` second. [`Timeline`] (the
//! `created_at`/`updated_at` of each record, with that block) and
//! [`next_id`] (sparse ids) are shared with the contacts and companies of
//! `records`. A lead's company is one of the account's companies.

use fastrand::Rng;
use serde_json::{Map, Value, json};

pub(crate) const ACCOUNT_ID: i64 = 31_234_567;
pub(crate) const FIRST_LEAD_ID: i64 = 1_000_000;

pub(crate) const DAY: i64 = 86_400;
pub(crate) const USERS: [i64; 8] = [
    9_000_001, 9_000_002, 9_000_003, 9_000_004, 9_000_005, 9_000_006, 9_000_007, 9_000_008,
];
pub(crate) const GROUPS: [i64; 3] = [401_001, 401_002, 401_003];
pub(crate) const LOSS_REASONS: [i64; 4] = [4_000_001, 4_000_002, 4_000_003, 4_000_004];
pub(crate) const PIPELINES: [(i64, &[i64]); 2] = [
    (
        7_000_001,
        &[58_000_001, 58_000_002, 58_000_003, 58_000_004, 58_000_005],
    ),
    (7_000_002, &[58_000_011, 58_000_012, 58_000_013]),
];
pub(crate) const TAGS: [(i64, &str, Option<&str>); 6] = [
    (30_001, "vip", Some("#FF5555")),
    (30_002, "website", None),
    (30_003, "повторный клиент", Some("#2E86C1")),
    (30_004, "🔥 hot", None),
    (30_005, "partner \"gold\"", Some("#F4D03F")),
    (30_006, "import-2023", None),
];

/// One custom field of the account: id, name, code, type.
pub(crate) struct FieldDef {
    pub(crate) id: i64,
    pub(crate) name: &'static str,
    pub(crate) code: Option<&'static str>,
    pub(crate) kind: &'static str,
}

pub(crate) const FIELDS: [FieldDef; 10] = [
    FieldDef {
        id: 510_001,
        name: "Comment",
        code: None,
        kind: "text",
    },
    FieldDef {
        id: 510_002,
        name: "Notes",
        code: None,
        kind: "textarea",
    },
    FieldDef {
        id: 510_003,
        name: "Seats",
        code: None,
        kind: "numeric",
    },
    FieldDef {
        id: 510_004,
        name: "VIP",
        code: None,
        kind: "checkbox",
    },
    FieldDef {
        id: 510_005,
        name: "Lead source",
        code: Some("LEAD_SOURCE"),
        kind: "select",
    },
    FieldDef {
        id: 510_006,
        name: "Products",
        code: None,
        kind: "multiselect",
    },
    FieldDef {
        id: 510_007,
        name: "Contract date",
        code: None,
        kind: "date",
    },
    FieldDef {
        id: 510_008,
        name: "Website",
        code: Some("WEBSITE"),
        kind: "url",
    },
    FieldDef {
        id: 510_009,
        name: "Meeting at",
        code: None,
        kind: "date_time",
    },
    FieldDef {
        id: 510_010,
        name: "Deposit",
        code: None,
        kind: "price",
    },
];
pub(crate) const SELECT_ENUMS: [(i64, &str, Option<&str>); 4] = [
    (700_101, "Website", Some("WEB")),
    (700_102, "Referral", None),
    (700_103, "Cold call", None),
    (700_104, "Выставка", None),
];
pub(crate) const MULTI_ENUMS: [(i64, &str, Option<&str>); 4] = [
    (700_201, "CRM", Some("CRM")),
    (700_202, "Telephony", None),
    (700_203, "Analytics", None),
    (700_204, "Поддержка 24/7", None),
];

/// A lead name: mostly ASCII, some Cyrillic, emoji, quotes, backslashes,
/// a few empty strings and a few nulls.
pub(crate) fn random_name(rng: &mut Rng, n: i64) -> Value {
    let roll = rng.u8(0..100);
    let s = match roll {
        0..=1 => return Value::Null,
        2..=3 => String::new(),
        4..=35 => format!("Website order #{n}"),
        36..=50 => match rng.u8(0..3) {
            0 => "Сделка с ООО «Ромашка»".to_string(),
            1 => format!("Заявка с сайта №{n}"),
            _ => "Поставка оборудования — Москва".to_string(),
        },
        51..=60 => match rng.u8(0..3) {
            0 => "🚀 Launch deal".to_string(),
            1 => format!("🔥 Hot lead {n}"),
            _ => "Deal 🤝 partners 👨‍👩‍👧".to_string(),
        },
        61..=70 => match rng.u8(0..3) {
            0 => format!("Quote \"special\" deal {n}"),
            1 => format!("Path C:\\deals\\{n}\\"),
            _ => "O'Brien & Sons <b>\ttab".to_string(),
        },
        _ => match rng.u8(0..3) {
            0 => format!("Annual subscription renewal {n}"),
            1 => "Acme Corp — 50 seats".to_string(),
            _ => format!("Lead {n}"),
        },
    };
    Value::String(s)
}

/// A price in whole units, or null on ~10% of leads.
fn random_price(rng: &mut Rng) -> Option<i64> {
    match rng.u8(0..100) {
        0..=9 => None,
        10..=49 => Some(rng.i64(1..=200) * 500),
        _ => Some(rng.i64(0..=2_000_000)),
    }
}

/// Sets `price` and the "unknown" float `price_with_minor_units` together.
pub(crate) fn set_price(rng: &mut Rng, lead: &mut Map<String, Value>, old: Option<i64>) {
    let mut price = random_price(rng).unwrap_or(1_000);
    if Some(price) == old {
        price += 1;
    }
    lead.insert("price".into(), json!(price));
    lead.insert(
        "price_with_minor_units".into(),
        json!(price as f64 + f64::from(rng.u8(0..100)) / 100.0),
    );
}

/// One of the account's users, at random.
pub(crate) fn user(rng: &mut Rng) -> i64 {
    USERS[rng.usize(..USERS.len())]
}

/// Formats Unix seconds as a `YYYY-MM-DD` date (UTC).
fn ymd(unix: i64) -> String {
    let days = unix.div_euclid(DAY);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn enum_value(e: (i64, &str, Option<&str>)) -> Value {
    json!({"value": e.1, "enum_id": e.0, "enum_code": e.2})
}

/// The `values` array for one field of the given type.
fn field_values(rng: &mut Rng, kind: &str, now: i64) -> Value {
    let v = match kind {
        "text" => match rng.u8(0..4) {
            0 => json!("Call back after 5pm"),
            1 => json!("Клиент просил \"скидку\" 10%"),
            2 => json!("C:\\temp\\offer.pdf"),
            _ => json!(format!("ref-{}", rng.u32(1000..99_999))),
        },
        "textarea" => json!(format!(
            "Line 1\nLine 2 with \"quotes\" and a \\ backslash\n💬 {}",
            rng.u32(..1000)
        )),
        "numeric" => {
            if rng.bool() {
                json!(rng.i64(1..500))
            } else {
                json!(format!("{}.{}", rng.i64(1..500), rng.u8(0..10)))
            }
        }
        "checkbox" => json!(rng.bool()),
        "select" => return json!([enum_value(SELECT_ENUMS[rng.usize(..SELECT_ENUMS.len())])]),
        "multiselect" => {
            let mut idx: Vec<usize> = (0..MULTI_ENUMS.len()).collect();
            rng.shuffle(&mut idx);
            let n = rng.usize(2..=MULTI_ENUMS.len());
            let mut chosen: Vec<usize> = idx.into_iter().take(n).collect();
            chosen.sort_unstable();
            return Value::Array(
                chosen
                    .into_iter()
                    .map(|i| enum_value(MULTI_ENUMS[i]))
                    .collect(),
            );
        }
        "date" => {
            let day = (now - rng.i64(0..1500) * DAY).div_euclid(DAY) * DAY;
            if rng.bool() {
                json!(day)
            } else {
                json!(ymd(day))
            }
        }
        "url" => json!(format!(
            "https://example.com/landing?utm_source=ads&id={}",
            rng.u32(..100_000)
        )),
        "date_time" => json!(now + rng.i64(-400 * DAY..60 * DAY)),
        // "price" and anything else numeric
        _ => json!(rng.i64(0..100_000)),
    };
    json!([{ "value": v }])
}

fn field_entry(rng: &mut Rng, f: &FieldDef, now: i64) -> Value {
    json!({
        "field_id": f.id,
        "field_name": f.name,
        "field_code": f.code,
        "field_type": f.kind,
        "values": field_values(rng, f.kind, now),
    })
}

/// `custom_fields_values`: null on ~20% of leads, otherwise a random subset
/// of the account's fields (all of them on every 17th lead).
fn custom_fields(rng: &mut Rng, id: i64, now: i64) -> Value {
    if rng.u8(0..100) < 20 {
        return Value::Null;
    }
    let all = id % 17 == 0;
    let mut out = Vec::new();
    for f in &FIELDS {
        if all || rng.bool() {
            out.push(field_entry(rng, f, now));
        }
    }
    if out.is_empty() {
        out.push(field_entry(rng, &FIELDS[0], now));
    }
    Value::Array(out)
}

/// Changes the value of one custom field (or creates a text field when the
/// lead has none). Used by updates.
pub(crate) fn change_custom_field(rng: &mut Rng, lead: &mut Map<String, Value>, now: i64) {
    match lead.get_mut("custom_fields_values") {
        Some(Value::Array(fields)) if !fields.is_empty() => {
            let i = rng.usize(..fields.len());
            let kind = fields[i]
                .get("field_type")
                .and_then(Value::as_str)
                .unwrap_or("text")
                .to_string();
            let old = fields[i].get("values").cloned();
            let mut values = field_values(rng, &kind, now);
            for _ in 0..8 {
                if Some(&values) != old.as_ref() {
                    break;
                }
                values = field_values(rng, &kind, now);
            }
            if let Some(obj) = fields[i].as_object_mut() {
                obj.insert("values".into(), values);
            }
        }
        _ => {
            lead.insert(
                "custom_fields_values".into(),
                json!([field_entry(rng, &FIELDS[0], now)]),
            );
        }
    }
}

/// Builds one full lead object with the key order of the real API.
pub(crate) fn lead(
    rng: &mut Rng,
    id: i64,
    stamps: (i64, i64),
    now: i64,
    account: &AccountRefs<'_>,
) -> Value {
    let (created_at, updated_at) = stamps;
    let base_url = account.base_url;
    let (pipeline_id, statuses) = PIPELINES[rng.usize(..PIPELINES.len())];
    let status_id = match rng.u8(0..100) {
        0..=9 => 142,
        10..=19 => 143,
        _ => statuses[rng.usize(..statuses.len())],
    };
    let closed = status_id == 142 || status_id == 143;
    let closed_at = closed.then(|| rng.i64(created_at..=updated_at));
    let loss_reason_id = (status_id == 143).then(|| LOSS_REASONS[rng.usize(..LOSS_REASONS.len())]);
    let closest_task_at =
        (!closed && rng.u8(0..100) < 60).then(|| now + rng.i64(-10 * DAY..30 * DAY));
    let created_by = if rng.u8(0..100) < 15 { 0 } else { user(rng) };
    let updated_by = if updated_at == created_at {
        created_by
    } else {
        user(rng)
    };

    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("name".into(), random_name(rng, id));
    let price = random_price(rng);
    m.insert("price".into(), json!(price));
    let responsible = (rng.u8(0..100) >= 5).then(|| user(rng));
    m.insert("responsible_user_id".into(), json!(responsible));
    let group_id = if rng.bool() {
        0
    } else {
        GROUPS[rng.usize(..GROUPS.len())]
    };
    m.insert("group_id".into(), json!(group_id));
    m.insert("status_id".into(), json!(status_id));
    m.insert("pipeline_id".into(), json!(pipeline_id));
    m.insert("loss_reason_id".into(), json!(loss_reason_id));
    m.insert("created_by".into(), json!(created_by));
    m.insert("updated_by".into(), json!(updated_by));
    m.insert("created_at".into(), json!(created_at));
    m.insert("updated_at".into(), json!(updated_at));
    m.insert("closed_at".into(), json!(closed_at));
    m.insert("closest_task_at".into(), json!(closest_task_at));
    m.insert("is_deleted".into(), json!(false));
    m.insert("custom_fields_values".into(), custom_fields(rng, id, now));
    let score = (rng.u8(0..100) < 10).then(|| rng.i64(0..=100));
    m.insert("score".into(), json!(score));
    m.insert("account_id".into(), json!(ACCOUNT_ID));
    let labor_cost = (rng.u8(0..100) < 15).then(|| rng.i64(60..200_000));
    m.insert("labor_cost".into(), json!(labor_cost));
    m.insert(
        "is_price_modified_by_robot".into(),
        json!(rng.u8(0..100) < 5),
    );
    let minor = price.map(|p| p as f64 + f64::from(rng.u8(0..100)) / 100.0);
    m.insert("price_with_minor_units".into(), json!(minor));
    if rng.u8(0..100) < 3 {
        m.insert("x_future_field".into(), json!({"nested": [1, "two"]}));
    }
    m.insert(
        "_links".into(),
        json!({"self": {"href": format!("{base_url}/api/v4/leads/{id}")}}),
    );
    let mut tag_idx: Vec<usize> = (0..TAGS.len()).collect();
    rng.shuffle(&mut tag_idx);
    let n_tags = match rng.u8(0..10) {
        0..=5 => 0,
        6..=8 => 1,
        _ => 3,
    };
    let tags: Vec<Value> = tag_idx
        .into_iter()
        .take(n_tags)
        .map(|i| json!({"id": TAGS[i].0, "name": TAGS[i].1, "color": TAGS[i].2}))
        .collect();
    // the draw a random id used to take, mapped onto an existing company
    let companies = match (rng.u8(0..100) < 40).then(|| rng.i64(0..50_000)) {
        Some(draw) => pick(account.companies, draw).map_or(json!([]), |id| json!([{"id": id}])),
        None => json!([]),
    };
    m.insert(
        "_embedded".into(),
        json!({"tags": tags, "companies": companies}),
    );
    Value::Object(m)
}

/// What a new record may refer to: the base URL of its `_links` and the
/// ids of the companies it may belong to (alive ones, ascending).
pub(crate) struct AccountRefs<'a> {
    pub(crate) base_url: &'a str,
    pub(crate) companies: &'a [i64],
}

/// The `created_at` and `updated_at` of `n` records in id order:
/// `created_at` grows with the id over the last ~3 years, `updated_at`
/// lies in `[created_at, now-3600]` (equal to it on ~30%, to the previous
/// record's on ~8%), and `tie_block` consecutive records get
/// `created_at = updated_at = T` for one second `T` that no other record
/// uses (a bulk import).
pub(crate) struct Timeline {
    created: Vec<i64>,
    tie: std::ops::Range<usize>,
    tie_t: i64,
    max_updated: i64,
    prev_updated: Option<i64>,
}

impl Timeline {
    /// Draws every `created_at` and where the tie block goes.
    pub(crate) fn new(rng: &mut Rng, n: usize, tie_block: usize, now: i64) -> Timeline {
        let newest = now - 2 * DAY;
        let oldest = now - 3 * 365 * DAY;
        let mut created: Vec<i64> = (0..n).map(|_| rng.i64(oldest..=newest)).collect();
        created.sort_unstable();

        let tie = tie_block.min(n);
        let tie_start = if tie == 0 { 0 } else { rng.usize(0..=n - tie) };
        let tie_range = tie_start..tie_start + tie;
        let tie_t = created.get(tie_start).copied().unwrap_or(newest);
        if tie > 0 {
            for (i, c) in created.iter_mut().enumerate() {
                if tie_range.contains(&i) {
                    *c = tie_t;
                } else if i < tie_start && *c >= tie_t {
                    *c = tie_t - 1;
                } else if i >= tie_range.end && *c <= tie_t {
                    *c = tie_t + 1;
                }
            }
        }
        Timeline {
            created,
            tie: tie_range,
            tie_t,
            max_updated: now - 3600,
            prev_updated: None,
        }
    }

    /// `(created_at, updated_at)` of the `i`-th record (called in order),
    /// drawing its `updated_at`.
    pub(crate) fn stamps(&mut self, rng: &mut Rng, i: usize) -> (i64, i64) {
        let created_at = self.created[i];
        let tie_t = self.tie_t;
        let updated_at = if self.tie.contains(&i) {
            tie_t
        } else {
            let mut u = match rng.u8(0..100) {
                0..=29 => created_at,
                30..=37 => match self.prev_updated {
                    Some(p) if p >= created_at => p,
                    _ => rng.i64(created_at..=self.max_updated),
                },
                _ => rng.i64(created_at..=self.max_updated),
            };
            if !self.tie.is_empty() && u == tie_t {
                u = if created_at < tie_t {
                    tie_t - 1
                } else {
                    tie_t + 1
                };
            }
            u
        };
        self.prev_updated = Some(updated_at);
        (created_at, updated_at)
    }
}

/// The element of `ids` a random non-negative `draw` lands on (`None`
/// when `ids` is empty).
pub(crate) fn pick(ids: &[i64], draw: i64) -> Option<i64> {
    let draw = usize::try_from(draw).unwrap_or(0);
    (!ids.is_empty()).then(|| ids[draw % ids.len()])
}

/// The id after `id` in a generated account: the next one, or a gap of 1
/// to 39 ids on ~15% of records.
pub(crate) fn next_id(rng: &mut Rng, id: i64) -> i64 {
    let mut id = id + 1;
    if rng.u8(0..100) < 15 {
        id += rng.i64(1..40);
    }
    id
}

/// Generates `leads` leads in id order (ids from [`FIRST_LEAD_ID`], with
/// gaps, stamped by a [`Timeline`]) and returns them with the next free id.
pub(crate) fn generate(
    rng: &mut Rng,
    leads: usize,
    tie_block: usize,
    now: i64,
    account: &AccountRefs<'_>,
) -> (Vec<Value>, i64) {
    let mut timeline = Timeline::new(rng, leads, tie_block, now);
    let mut out = Vec::with_capacity(leads);
    let mut id = FIRST_LEAD_ID;
    for i in 0..leads {
        let stamps = timeline.stamps(rng, i);
        out.push(lead(rng, id, stamps, now, account));
        id = next_id(rng, id);
    }
    (out, id)
}

/// Changes a lead's name, price and a custom field, as a user editing it
/// does; `updated_at` = `stamp`.
pub(crate) fn change(rng: &mut Rng, lead: &mut Map<String, Value>, id: i64, stamp: i64, now: i64) {
    let old_name = lead.get("name").cloned();
    let mut name = random_name(rng, id);
    if name.is_null() || name == Value::String(String::new()) || Some(&name) == old_name.as_ref() {
        name = json!(match rng.u8(0..3) {
            0 => format!("Обновлённая сделка {}", rng.u32(..100_000)),
            1 => format!("✨ Updated deal {}", rng.u32(..100_000)),
            _ => format!("Updated \"deal\" {}", rng.u32(..100_000)),
        });
    }
    lead.insert("name".into(), name);
    let old_price = lead.get("price").and_then(Value::as_i64);
    set_price(rng, lead, old_price);
    change_custom_field(rng, lead, now);
    lead.insert("updated_by".into(), json!(9_000_001 + rng.i64(0..8)));
    lead.insert("updated_at".into(), json!(stamp));
}

#[cfg(test)]
mod unit {
    use super::ymd;

    #[test]
    fn ymd_formats_dates() {
        assert_eq!(ymd(0), "1970-01-01");
        assert_eq!(ymd(1_588_896_000), "2020-05-08");
        assert_eq!(ymd(951_782_400), "2000-02-29");
    }
}
