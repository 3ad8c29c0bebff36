//! Seed-deterministic contacts and companies, and the edits churn makes to
//! them. A contact is served as `id`, `name`, `first_name`, `last_name`,
//! `responsible_user_id`, `group_id`, `created_by`, `updated_by`,
//! `created_at`, `updated_at`, `closest_task_at`, `is_deleted`,
//! `custom_fields_values`, `account_id`, `_links.self` and `_embedded`
//! (`tags` from the account's tags, `companies`: `[{id}]` of one existing
//! company or none); a company the same without the name parts and
//! without `_embedded.companies`. Their data is as awkward as the leads':
//! null and empty names, Cyrillic, emoji and quotes, no phone at all or
//! several, a phone number a few records share (what a "duplicate phones"
//! query finds), emails in mixed case. Timestamps and ids come from the
//! same [`Timeline`] and [`next_id`] as leads, each kind from rngs of its
//! own so that the leads of a seed do not depend on them; a kind's ids are
//! drawn at start, its records on first use ([`Deferred`]).

use std::cell::OnceCell;

use fastrand::Rng;
use serde_json::{Map, Value, json};

use super::generator::{ACCOUNT_ID, AccountRefs, DAY, GROUPS, TAGS, Timeline, next_id, pick, user};
use super::kind::RecordKind;
use super::links::{FIRST_COMPANY_ID, FIRST_CONTACT_ID};
use super::record_fields::{RecordField, field};
use super::table::Table;

const FIRST_NAMES: [&str; 10] = [
    "Иван",
    "Anna",
    "José",
    "Мария",
    "John",
    "Li",
    "Fatima",
    "Seán",
    "Ольга",
    "Zoë",
];
const LAST_NAMES: [&str; 10] = [
    "Петров",
    "Smith",
    "García",
    "Иванова",
    "O'Brien",
    "Wang",
    "Zahra",
    "Müller",
    "Кузнецова",
    "van der Berg",
];
const COMPANY_NAMES: [&str; 6] = [
    "ООО «Ромашка»",
    "Acme Corp",
    "O'Brien & Sons",
    "🚀 Rocket Labs",
    "\"Quote\" Holdings",
    "ИП Сидоров",
];
const POSITIONS: [&str; 4] = ["CEO", "Менеджер по закупкам", "Head of \"Sales\"", ""];
const ADDRESSES: [&str; 3] = [
    "ул. Ленина, д. 1, кв. 2\nМосква, 101000",
    "1600 Amphitheatre Pkwy\nMountain View, CA",
    "Av. Paulista, 1000 — São Paulo",
];
/// Phone kinds, the common ones more often.
const PHONE_CODES: [&str; 9] = [
    "WORK", "WORK", "MOB", "MOB", "MOB", "WORKDD", "FAX", "HOME", "OTHER",
];
const EMAIL_CODES: [&str; 4] = ["WORK", "WORK", "PRIV", "OTHER"];

/// Ids of the generated records of `kind` start here.
pub(crate) fn first_id(kind: RecordKind) -> i64 {
    match kind {
        RecordKind::Contact => FIRST_CONTACT_ID,
        _ => FIRST_COMPANY_ID,
    }
}

/// Phone numbers handed out so far: a few records get one of them again.
#[derive(Default)]
pub(crate) struct PhonePool(Vec<String>);

fn random_phone(rng: &mut Rng) -> String {
    match rng.u8(0..5) {
        0 => format!(
            "+7 9{:02} {:03}-{:02}-{:02}",
            rng.u8(0..100),
            rng.u16(0..1000),
            rng.u8(0..100),
            rng.u8(0..100)
        ),
        1 => format!("+1 (555) 01{}-{:04}", rng.u8(0..10), rng.u16(0..10_000)),
        2 => format!(
            "8 (495) {:03}-{:02}-{:02}",
            rng.u16(0..1000),
            rng.u8(0..100),
            rng.u8(0..100)
        ),
        3 => format!(
            "+55 11 9{:04}-{:04}",
            rng.u16(0..10_000),
            rng.u16(0..10_000)
        ),
        _ => format!("7916{:07}", rng.u32(0..10_000_000)),
    }
}

fn random_email(rng: &mut Rng, id: i64) -> String {
    let login = ["ivan.petrov", "anna", "J.Garcia", "info", "sales+crm"][rng.usize(..5)];
    let domain = ["example.com", "Example.COM", "пример.рф", "mail.example.ru"][rng.usize(..4)];
    format!("{login}{}@{domain}", id % 1000)
}

/// A `{value, enum_id, enum_code}` of the multitext field `f`.
fn coded(f: &RecordField, value: String, code: &str) -> Value {
    let (enum_id, enum_code) = f.option(code).unwrap_or((0, "OTHER"));
    json!({"value": value, "enum_id": enum_id, "enum_code": enum_code})
}

/// 0 to 3 phones (none on ~15% of records); ~3% of them a number an
/// earlier record has.
fn phones(rng: &mut Rng, f: &RecordField, pool: &mut PhonePool) -> Vec<Value> {
    let n = match rng.u8(0..100) {
        0..=14 => 0,
        15..=69 => 1,
        70..=89 => 2,
        _ => 3,
    };
    (0..n)
        .map(|_| {
            let number = if !pool.0.is_empty() && rng.u8(0..100) < 3 {
                pool.0[rng.usize(..pool.0.len())].clone()
            } else {
                let number = random_phone(rng);
                pool.0.push(number.clone());
                number
            };
            coded(f, number, PHONE_CODES[rng.usize(..PHONE_CODES.len())])
        })
        .collect()
}

/// 0 to 2 emails (none on ~35% of records).
fn emails(rng: &mut Rng, f: &RecordField, id: i64) -> Vec<Value> {
    let n = match rng.u8(0..100) {
        0..=34 => 0,
        35..=89 => 1,
        _ => 2,
    };
    (0..n)
        .map(|_| {
            let email = random_email(rng, id);
            coded(f, email, EMAIL_CODES[rng.usize(..EMAIL_CODES.len())])
        })
        .collect()
}

/// `custom_fields_values` of a record of `kind`: null when it has none.
fn custom_fields(rng: &mut Rng, kind: RecordKind, id: i64, pool: &mut PhonePool) -> Value {
    let mut out = Vec::new();
    if let Some(f) = field(kind, "PHONE") {
        let values = phones(rng, f, pool);
        if !values.is_empty() {
            out.push(f.entry(values));
        }
    }
    if let Some(f) = field(kind, "EMAIL") {
        let values = emails(rng, f, id);
        if !values.is_empty() {
            out.push(f.entry(values));
        }
    }
    let single = |code: &str, value: String| {
        field(kind, code).map(|f| f.entry(vec![json!({"value": value})]))
    };
    let extra = match kind {
        RecordKind::Contact => (rng.u8(0..100) < 30)
            .then(|| single("POSITION", POSITIONS[rng.usize(..POSITIONS.len())].into()))
            .flatten()
            .into_iter()
            .collect(),
        _ => {
            let web = (rng.u8(0..100) < 60)
                .then(|| single("WEB", format!("https://www.site{id}.example.com/?ref=crm")));
            let address = (rng.u8(0..100) < 40)
                .then(|| single("ADDRESS", ADDRESSES[rng.usize(..ADDRESSES.len())].into()));
            [web, address].into_iter().flatten().flatten().collect()
        }
    };
    out.extend::<Vec<Value>>(extra);
    if out.is_empty() {
        Value::Null
    } else {
        Value::Array(out)
    }
}

/// A contact's `(name, first_name, last_name)`: mostly "First Last", some
/// first names alone, quotes and emoji, a few nulls and empty strings.
fn contact_names(rng: &mut Rng) -> (Value, Value, Value) {
    let first = FIRST_NAMES[rng.usize(..FIRST_NAMES.len())];
    let last = LAST_NAMES[rng.usize(..LAST_NAMES.len())];
    match rng.u8(0..100) {
        0..=1 => (Value::Null, json!(""), json!("")),
        2..=3 => (json!(""), json!(""), json!("")),
        4..=11 => (json!(first), json!(first), json!("")),
        12..=16 => {
            let first = format!("{first} \"Sam\"");
            let last = format!("{last} 🚀");
            (json!(format!("{first} {last}")), json!(first), json!(last))
        }
        _ => (json!(format!("{first} {last}")), json!(first), json!(last)),
    }
}

fn company_name(rng: &mut Rng, id: i64) -> Value {
    match rng.u8(0..100) {
        0..=1 => Value::Null,
        2..=3 => json!(""),
        4..=40 => json!(format!(
            "{} {}",
            COMPANY_NAMES[rng.usize(..COMPANY_NAMES.len())],
            id % 1000
        )),
        _ => json!(COMPANY_NAMES[rng.usize(..COMPANY_NAMES.len())]),
    }
}

/// 0 to 2 of the account's tags.
fn tags(rng: &mut Rng) -> Value {
    let n = match rng.u8(0..10) {
        0..=5 => 0,
        6..=8 => 1,
        _ => 2,
    };
    let mut idx: Vec<usize> = (0..TAGS.len()).collect();
    rng.shuffle(&mut idx);
    Value::Array(
        idx.into_iter()
            .take(n)
            .map(|i| json!({"id": TAGS[i].0, "name": TAGS[i].1, "color": TAGS[i].2}))
            .collect(),
    )
}

/// One contact or company (`kind`) with the key order of the real API.
pub(crate) fn record(
    kind: RecordKind,
    rng: &mut Rng,
    id: i64,
    (created_at, updated_at): (i64, i64),
    now: i64,
    account: &AccountRefs<'_>,
    pool: &mut PhonePool,
) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    if kind == RecordKind::Contact {
        let (name, first, last) = contact_names(rng);
        m.insert("name".into(), name);
        m.insert("first_name".into(), first);
        m.insert("last_name".into(), last);
    } else {
        m.insert("name".into(), company_name(rng, id));
    }
    let responsible = (rng.u8(0..100) >= 5).then(|| user(rng));
    m.insert("responsible_user_id".into(), json!(responsible));
    let group_id = if rng.bool() {
        0
    } else {
        GROUPS[rng.usize(..GROUPS.len())]
    };
    m.insert("group_id".into(), json!(group_id));
    let created_by = if rng.u8(0..100) < 15 { 0 } else { user(rng) };
    let updated_by = if updated_at == created_at {
        created_by
    } else {
        user(rng)
    };
    m.insert("created_by".into(), json!(created_by));
    m.insert("updated_by".into(), json!(updated_by));
    m.insert("created_at".into(), json!(created_at));
    m.insert("updated_at".into(), json!(updated_at));
    let closest_task_at = (rng.u8(0..100) < 30).then(|| now + rng.i64(-10 * DAY..30 * DAY));
    m.insert("closest_task_at".into(), json!(closest_task_at));
    m.insert("is_deleted".into(), json!(false));
    m.insert(
        "custom_fields_values".into(),
        custom_fields(rng, kind, id, pool),
    );
    m.insert("account_id".into(), json!(ACCOUNT_ID));
    let path = kind.path();
    m.insert(
        "_links".into(),
        json!({"self": {"href": format!("{}{path}/{id}", account.base_url)}}),
    );
    let mut embedded = Map::new();
    embedded.insert("tags".into(), tags(rng));
    if kind == RecordKind::Contact {
        let company = (rng.u8(0..100) < 60)
            .then(|| pick(account.companies, rng.i64(0..1_000_000)))
            .flatten();
        embedded.insert(
            "companies".into(),
            company.map_or(json!([]), |id| json!([{"id": id}])),
        );
    }
    m.insert("_embedded".into(), Value::Object(embedded));
    Value::Object(m)
}

/// What generating the records of one kind takes, decided at start: their
/// ids (drawn from an id stream of their own, so that leads can link to
/// them before they exist) and everything their content is drawn from.
pub(crate) struct Plan {
    kind: RecordKind,
    seed: u64,
    ids: Vec<i64>,
    next_id: i64,
    tie_block: usize,
    now: i64,
    base_url: String,
    /// the companies a contact may belong to
    companies: Vec<i64>,
}

impl Plan {
    /// `n` records of `kind` with ids from [`first_id`] (with gaps), a
    /// bulk-import block of `tie_block` records, stamped relative to `now`.
    pub(crate) fn new(
        kind: RecordKind,
        seed: u64,
        n: usize,
        tie_block: usize,
        now: i64,
        base_url: &str,
        companies: Vec<i64>,
    ) -> Plan {
        let mut id_rng = Rng::with_seed(seed.rotate_left(17));
        let mut ids = Vec::with_capacity(n);
        let mut id = first_id(kind);
        for _ in 0..n {
            ids.push(id);
            id = next_id(&mut id_rng, id);
        }
        Plan {
            kind,
            seed,
            ids,
            next_id: id,
            tie_block,
            now,
            base_url: base_url.to_string(),
            companies,
        }
    }

    /// The ids the records will have, ascending.
    pub(crate) fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// The records, in id order, stamped by a [`Timeline`]; the table's
    /// rng (for later changes) continues the stream they were drawn from.
    pub(crate) fn generate(&self) -> Table {
        let mut rng = Rng::with_seed(self.seed);
        let n = self.ids.len();
        let mut timeline = Timeline::new(&mut rng, n, self.tie_block, self.now);
        let refs = AccountRefs {
            base_url: &self.base_url,
            companies: &self.companies,
        };
        let mut pool = PhonePool::default();
        let mut out = Vec::with_capacity(n);
        for (i, id) in self.ids.iter().enumerate() {
            let stamps = timeline.stamps(&mut rng, i);
            out.push(record(
                self.kind, &mut rng, *id, stamps, self.now, &refs, &mut pool,
            ));
        }
        Table::new(out, self.next_id, rng)
    }
}

/// The contacts or the companies of the account: generated from their
/// [`Plan`] the first time they are used (most tests never list them, and
/// generating thousands of records is what a simulator's start would
/// otherwise spend its time on). The result is the same whenever that is:
/// it depends on the seed and the start time only.
pub(crate) struct Deferred {
    plan: Plan,
    table: OnceCell<Table>,
}

impl Deferred {
    pub(crate) fn new(plan: Plan) -> Deferred {
        Deferred {
            plan,
            table: OnceCell::new(),
        }
    }

    pub(crate) fn get(&self) -> &Table {
        self.table.get_or_init(|| self.plan.generate())
    }

    pub(crate) fn get_mut(&mut self) -> &mut Table {
        self.get();
        match self.table.get_mut() {
            Some(table) => table,
            None => unreachable!("initialised just above"),
        }
    }

    /// The alive ids, ascending, without generating the records when they
    /// are not yet (then every planned record is alive).
    pub(crate) fn alive_ids(&self) -> Vec<i64> {
        match self.table.get() {
            Some(table) => table.alive_ids(),
            None => self.plan.ids().to_vec(),
        }
    }
}

/// The values of `record`'s field coded `code`, for editing (the entry is
/// added when missing).
fn values_mut<'a>(
    record: &'a mut Map<String, Value>,
    f: &RecordField,
) -> Option<&'a mut Vec<Value>> {
    let fields = record.entry("custom_fields_values").or_insert(Value::Null);
    if !fields.is_array() {
        *fields = json!([]);
    }
    let list = fields.as_array_mut()?;
    let at = match list
        .iter()
        .position(|e| e.get("field_id").and_then(Value::as_i64) == Some(f.id))
    {
        Some(i) => i,
        None => {
            list.push(f.entry(Vec::new()));
            list.len() - 1
        }
    };
    list[at].get_mut("values").and_then(Value::as_array_mut)
}

/// Changes a contact's or company's name or one of its phones or emails
/// (adding one when it has none), as a user editing it does;
/// `updated_by` a user, `updated_at` = `stamp`.
pub(crate) fn change(
    kind: RecordKind,
    rng: &mut Rng,
    record: &mut Map<String, Value>,
    id: i64,
    stamp: i64,
) {
    match rng.u8(0..3) {
        0 => {
            let old = record.get("name").cloned();
            let mut name = if kind == RecordKind::Contact {
                let (name, first, last) = contact_names(rng);
                record.insert("first_name".into(), first);
                record.insert("last_name".into(), last);
                name
            } else {
                company_name(rng, id)
            };
            if name.is_null() || name == json!("") || Some(&name) == old.as_ref() {
                name = json!(format!("Обновлённый контакт {}", rng.u32(..100_000)));
            }
            record.insert("name".into(), name);
        }
        roll => {
            let (code, value) = if roll == 1 {
                ("PHONE", random_phone(rng))
            } else {
                let other = id + i64::from(rng.u16(1..1000));
                ("EMAIL", random_email(rng, other))
            };
            if let Some(f) = field(kind, code)
                && let Some(values) = values_mut(record, f)
            {
                let codes = if code == "PHONE" {
                    &PHONE_CODES[..]
                } else {
                    &EMAIL_CODES[..]
                };
                let new = coded(f, value, codes[rng.usize(..codes.len())]);
                if values.is_empty() {
                    values.push(new);
                } else {
                    let i = rng.usize(..values.len());
                    values[i] = new;
                }
            }
        }
    }
    record.insert("updated_by".into(), json!(user(rng)));
    record.insert("updated_at".into(), json!(stamp));
}
