//! Every query of `docs/queries.sql`, run on a mirror of the simulated
//! account made by the real binary, and compared with the same answer
//! computed in Rust from the simulator's own state (its alive leads, its
//! structure, its stage history), never from the mirror. A query added to
//! the file without an answer here fails the test.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::TestEnv;
use kommo_simulator::{RecordKind, SimulatorConfig, StatusChange};
use serde_json::{Value, json};
use sqlx::{AnyPool, Row, TypeInfo, ValueRef};

const QUERIES: &str = include_str!("../docs/queries.sql");
/// The same queries written for PostgreSQL: the same names, columns, rows.
const POSTGRES_QUERIES: &str = include_str!("../docs/queries.postgres.sql");
const DAY: i64 = 86_400;

/// The queries of the file: (name, SQL), split on their `-- query:` headers.
fn queries(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("-- query: ") {
            out.push((name.trim().to_string(), String::new()));
        } else if let Some((_, sql)) = out.last_mut() {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    out
}

/// A query's rows, each column as JSON: an integer, a real, text or NULL.
async fn run(pool: &AnyPool, sql: &str) -> Vec<Vec<Value>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    let raw = row.try_get_raw(i).unwrap();
                    if raw.is_null() {
                        return Value::Null;
                    }
                    match raw.type_info().name() {
                        "INTEGER" | "BIGINT" | "SMALLINT" => json!(row.get::<i64, _>(i)),
                        "REAL" | "DOUBLE" => json!(row.get::<f64, _>(i)),
                        "TEXT" => json!(row.get::<String, _>(i)),
                        other => panic!("column {i} has type {other}"),
                    }
                })
                .collect()
        })
        .collect()
}

/// Whether two results are equal, REAL values to within the 2 decimals the
/// queries round to.
fn same(got: &[Vec<Value>], want: &[Vec<Value>]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.len() == w.len()
                && g.iter().zip(w).all(|(a, b)| match (a, b) {
                    (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                        (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 0.005 + 1e-9
                    }
                    _ => a == b,
                })
        })
}

/// A stay of a lead in a stage: pipeline, status, entered, left.
type Stay = (Option<i64>, Option<i64>, i64, Option<i64>);

/// The account as the simulator holds it.
struct Account {
    leads: Vec<Value>,
    deleted: Vec<Value>,
    events: Vec<StatusChange>,
    pipelines: BTreeMap<i64, (String, i64)>,
    statuses: HashMap<(i64, i64), (String, i64)>,
    users: HashMap<i64, String>,
    loss_reasons: HashMap<i64, String>,
    tags: Vec<(i64, String)>,
    lead_source_field: i64,
    /// Alive contacts and companies, by id.
    contacts: BTreeMap<i64, Value>,
    companies: BTreeMap<i64, Value>,
}

/// Records by their id.
fn by_id(records: Vec<Value>) -> BTreeMap<i64, Value> {
    records
        .into_iter()
        .filter_map(|r| Some((int(&r, "id")?, r)))
        .collect()
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn text(v: &Value) -> Value {
    v.as_str().map_or(Value::Null, |s| json!(s))
}

fn ymd(unix: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .format(format)
        .to_string()
}

impl Account {
    fn read(env: &TestEnv, deleted: Vec<Value>) -> Account {
        let s = env.sim.structure();
        let mut pipelines = BTreeMap::new();
        let mut statuses = HashMap::new();
        for p in s["pipelines"].as_array().unwrap() {
            let pid = p["id"].as_i64().unwrap();
            pipelines.insert(
                pid,
                (
                    p["name"].as_str().unwrap().to_string(),
                    int(p, "sort").unwrap(),
                ),
            );
            for st in p["_embedded"]["statuses"].as_array().unwrap() {
                statuses.insert(
                    (pid, st["id"].as_i64().unwrap()),
                    (
                        st["name"].as_str().unwrap().to_string(),
                        int(st, "sort").unwrap(),
                    ),
                );
            }
        }
        let named = |key: &str| -> HashMap<i64, String> {
            s[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| {
                    (
                        u["id"].as_i64().unwrap(),
                        u["name"].as_str().unwrap().into(),
                    )
                })
                .collect()
        };
        let lead_source_field = s["custom_fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "LEAD_SOURCE")
            .and_then(|f| f["id"].as_i64())
            .expect("a LEAD_SOURCE field");
        Account {
            leads: env.sim.alive_leads(),
            deleted,
            events: env.sim.status_events(),
            pipelines,
            statuses,
            users: named("users"),
            loss_reasons: named("loss_reasons"),
            tags: s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["id"].as_i64().unwrap(),
                        t["name"].as_str().unwrap().into(),
                    )
                })
                .collect(),
            lead_source_field,
            contacts: by_id(env.sim.alive_records(RecordKind::Contact)),
            companies: by_id(env.sim.alive_records(RecordKind::Company)),
        }
    }

    /// A lead's linked ids (`_embedded.contacts` or `companies`), main
    /// contacts only with `main_only`.
    fn linked(lead: &Value, key: &str, main_only: bool) -> Vec<i64> {
        let mut ids: Vec<i64> = lead["_embedded"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| !main_only || x["is_main"] == json!(true))
                    .filter_map(|x| x["id"].as_i64())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The texts of a contact's values of the field coded `code`, in the
    /// order the view numbers them (by field id, then position).
    fn coded_values(contact: &Value, code: &str) -> Vec<String> {
        let mut fields: Vec<&Value> = contact["custom_fields_values"]
            .as_array()
            .map(|a| a.iter().filter(|f| f["field_code"] == code).collect())
            .unwrap_or_default();
        fields.sort_by_key(|f| int(f, "field_id"));
        fields
            .iter()
            .flat_map(|f| f["values"].as_array().into_iter().flatten())
            .filter_map(|v| v["value"].as_str().map(str::to_string))
            .collect()
    }

    /// The lead's main contact as leads_with_people finds it: the smallest
    /// main contact id, if that contact is alive.
    fn main_contact(&self, lead: &Value) -> Option<(i64, &Value)> {
        let id = *Self::linked(lead, "contacts", true).first()?;
        self.contacts.get(&id).map(|c| (id, c))
    }

    /// The lead's company as leads_with_people finds it.
    fn company(&self, lead: &Value) -> Option<(i64, &Value)> {
        let id = *Self::linked(lead, "companies", false).first()?;
        self.companies.get(&id).map(|c| (id, c))
    }

    fn pipeline_name(&self, id: Option<i64>) -> Value {
        id.and_then(|id| self.pipelines.get(&id))
            .map_or(Value::Null, |(n, _)| json!(n))
    }

    fn status(&self, pipeline: Option<i64>, status: Option<i64>) -> Option<&(String, i64)> {
        self.statuses.get(&(pipeline?, status?))
    }

    fn status_name(&self, pipeline: Option<i64>, status: Option<i64>) -> Value {
        self.status(pipeline, status)
            .map_or(Value::Null, |(n, _)| json!(n))
    }

    fn user_name(&self, id: Option<i64>) -> Value {
        id.and_then(|id| self.users.get(&id))
            .map_or(Value::Null, |n| json!(n))
    }

    fn outcome(lead: &Value) -> &'static str {
        match int(lead, "status_id") {
            Some(142) => "won",
            Some(143) => "lost",
            _ => "open",
        }
    }

    fn price(lead: &Value) -> i64 {
        int(lead, "price").unwrap_or(0)
    }

    /// Each alive lead's stays: (pipeline, status, entered, left), as the
    /// README defines them.
    fn stays(&self) -> Vec<Stay> {
        let mut by_lead: HashMap<i64, Vec<&StatusChange>> = HashMap::new();
        for e in &self.events {
            by_lead.entry(e.lead_id).or_default().push(e);
        }
        let mut stays = Vec::new();
        for lead in &self.leads {
            let id = int(lead, "id").unwrap();
            let created = int(lead, "created_at");
            match by_lead.get_mut(&id) {
                None => {
                    if let Some(created) = created {
                        stays.push((
                            int(lead, "pipeline_id"),
                            int(lead, "status_id"),
                            created,
                            None,
                        ));
                    }
                }
                Some(changes) => {
                    changes.sort_by(|a, b| {
                        (a.created_at, &a.event_id).cmp(&(b.created_at, &b.event_id))
                    });
                    let first = changes[0];
                    if let Some(created) = created.filter(|c| *c <= first.created_at) {
                        stays.push((
                            Some(first.from_pipeline),
                            Some(first.from_status),
                            created,
                            Some(first.created_at),
                        ));
                    }
                    for (i, c) in changes.iter().enumerate() {
                        let left = changes.get(i + 1).map(|n| n.created_at);
                        stays.push((Some(c.to_pipeline), Some(c.to_status), c.created_at, left));
                    }
                }
            }
        }
        stays
    }

    /// The answer to query `name` at `now`; `None` for a query unknown here.
    fn expected(&self, name: &str, now: i64) -> Option<Vec<Vec<Value>>> {
        let midnight = now - now.rem_euclid(DAY);
        let rows = match name {
            "won_revenue_by_month_and_pipeline" => {
                let mut groups: BTreeMap<(std::cmp::Reverse<String>, Option<i64>), (i64, i64)> =
                    BTreeMap::new();
                for l in self.leads.iter().filter(|l| Self::outcome(l) == "won") {
                    let Some(closed) = int(l, "closed_at") else {
                        continue;
                    };
                    let key = (
                        std::cmp::Reverse(ymd(closed, "%Y-%m")),
                        int(l, "pipeline_id"),
                    );
                    let g = groups.entry(key).or_default();
                    g.0 += 1;
                    g.1 += Self::price(l);
                }
                groups
                    .into_iter()
                    .map(|((month, p), (n, sum))| {
                        vec![json!(month.0), self.pipeline_name(p), json!(n), json!(sum)]
                    })
                    .collect()
            }
            "funnel_by_stage" => {
                let mut stages: Vec<(i64, i64, i64, i64)> = self
                    .statuses
                    .iter()
                    .map(|((p, s), (_, sort))| (self.pipelines[p].1, *p, *sort, *s))
                    .collect();
                stages.sort();
                stages
                    .into_iter()
                    .map(|(_, p, _, s)| {
                        let here: Vec<&Value> = self
                            .leads
                            .iter()
                            .filter(|l| {
                                int(l, "pipeline_id") == Some(p) && int(l, "status_id") == Some(s)
                            })
                            .collect();
                        vec![
                            self.pipeline_name(Some(p)),
                            self.status_name(Some(p), Some(s)),
                            json!(here.len()),
                            json!(here.iter().map(|l| Self::price(l)).sum::<i64>()),
                        ]
                    })
                    .collect()
            }
            "conversion_rate_per_pipeline" => {
                let mut groups: BTreeMap<Option<i64>, [i64; 3]> = BTreeMap::new();
                for l in &self.leads {
                    let g = groups.entry(int(l, "pipeline_id")).or_default();
                    match Self::outcome(l) {
                        "won" => g[0] += 1,
                        "lost" => g[1] += 1,
                        _ => g[2] += 1,
                    }
                }
                groups
                    .into_iter()
                    .map(|(p, [won, lost, open])| {
                        let rate = if won + lost == 0 {
                            Value::Null
                        } else {
                            json!(100.0 * won as f64 / (won + lost) as f64)
                        };
                        vec![
                            self.pipeline_name(p),
                            json!(won),
                            json!(lost),
                            json!(open),
                            rate,
                        ]
                    })
                    .collect()
            }
            "median_days_to_close" => {
                let mut groups: BTreeMap<Option<i64>, Vec<i64>> = BTreeMap::new();
                for l in self.leads.iter().filter(|l| Self::outcome(l) == "won") {
                    if let (Some(c), Some(k)) = (int(l, "created_at"), int(l, "closed_at")) {
                        groups.entry(int(l, "pipeline_id")).or_default().push(k - c);
                    }
                }
                groups
                    .into_iter()
                    .map(|(p, mut d)| {
                        d.sort();
                        let n = d.len();
                        let median = (d[(n - 1) / 2] + d[n / 2]) as f64 / 2.0 / DAY as f64;
                        vec![self.pipeline_name(p), json!(n), json!(median)]
                    })
                    .collect()
            }
            "open_leads_per_manager" => {
                let mut groups: BTreeMap<Option<i64>, (i64, i64)> = BTreeMap::new();
                for l in self.leads.iter().filter(|l| Self::outcome(l) == "open") {
                    let g = groups.entry(int(l, "responsible_user_id")).or_default();
                    g.0 += 1;
                    g.1 += Self::price(l);
                }
                let mut rows: Vec<(Option<i64>, i64, i64)> =
                    groups.into_iter().map(|(u, (n, v))| (u, n, v)).collect();
                rows.sort_by_key(|(u, n, _)| (std::cmp::Reverse(*n), *u));
                rows.into_iter()
                    .map(|(u, n, v)| {
                        let label = match u {
                            None => json!("(nobody)"),
                            Some(id) => self
                                .users
                                .get(&id)
                                .map_or_else(|| json!(format!("user {id}")), |name| json!(name)),
                        };
                        vec![label, json!(n), json!(v)]
                    })
                    .collect()
            }
            "stale_open_leads" => {
                let mut stale: Vec<&Value> = self
                    .leads
                    .iter()
                    .filter(|l| Self::outcome(l) == "open")
                    .filter(|l| int(l, "updated_at").is_some_and(|u| u <= now - 30 * DAY))
                    .collect();
                stale.sort_by_key(|l| (int(l, "updated_at"), int(l, "id")));
                stale
                    .into_iter()
                    .take(25)
                    .map(|l| {
                        let (p, s) = (int(l, "pipeline_id"), int(l, "status_id"));
                        vec![
                            json!(int(l, "id")),
                            text(&l["name"]),
                            self.pipeline_name(p),
                            self.status_name(p, s),
                            self.user_name(int(l, "responsible_user_id")),
                            json!((now - int(l, "updated_at").unwrap()) / DAY),
                        ]
                    })
                    .collect()
            }
            "average_days_in_stage" => {
                let mut groups: BTreeMap<(Option<i64>, Option<i64>), (i64, i64)> = BTreeMap::new();
                for (p, s, entered, left) in self.stays() {
                    if let Some(left) = left {
                        let g = groups.entry((p, s)).or_default();
                        g.0 += 1;
                        g.1 += left - entered;
                    }
                }
                let mut rows: Vec<_> = groups.into_iter().collect();
                rows.sort_by_key(|((p, s), _)| (*p, self.status(*p, *s).map(|st| st.1), *s));
                rows.into_iter()
                    .map(|((p, s), (n, total))| {
                        vec![
                            self.pipeline_name(p),
                            self.status_name(p, s),
                            json!(n),
                            json!(total as f64 / n as f64 / DAY as f64),
                        ]
                    })
                    .collect()
            }
            "leads_by_lead_source" => {
                let mut groups: BTreeMap<Option<String>, (i64, i64)> = BTreeMap::new();
                for l in &self.leads {
                    for f in l["custom_fields_values"].as_array().into_iter().flatten() {
                        if f["field_id"].as_i64() != Some(self.lead_source_field) {
                            continue;
                        }
                        for v in f["values"].as_array().into_iter().flatten() {
                            let g = groups
                                .entry(v["value"].as_str().map(String::from))
                                .or_default();
                            g.0 += 1;
                            g.1 += Self::price(l);
                        }
                    }
                }
                let mut rows: Vec<_> = groups.into_iter().collect();
                rows.sort_by_key(|(value, (n, _))| (std::cmp::Reverse(*n), value.clone()));
                rows.into_iter()
                    .map(|(value, (n, sum))| vec![json!(value), json!(n), json!(sum)])
                    .collect()
            }
            "leads_deleted_last_30_days" => {
                let mut deleted: Vec<&Value> = self.deleted.iter().collect();
                deleted.sort_by_key(|l| int(l, "id"));
                deleted
                    .into_iter()
                    .map(|l| {
                        vec![
                            json!(int(l, "id")),
                            text(&l["name"]),
                            self.pipeline_name(int(l, "pipeline_id")),
                            json!(int(l, "price")),
                        ]
                    })
                    .collect()
            }
            "tag_counts" => {
                let mut rows: Vec<(i64, i64, String)> = self
                    .tags
                    .iter()
                    .map(|(id, name)| {
                        let n = self
                            .leads
                            .iter()
                            .filter(|l| {
                                l["_embedded"]["tags"]
                                    .as_array()
                                    .is_some_and(|t| t.iter().any(|t| t["id"] == *id))
                            })
                            .count() as i64;
                        (n, *id, name.clone())
                    })
                    .collect();
                rows.sort_by_key(|(n, id, _)| (std::cmp::Reverse(*n), *id));
                rows.into_iter()
                    .map(|(n, _, name)| vec![json!(name), json!(n)])
                    .collect()
            }
            "leads_changed_today" => {
                let mut groups: BTreeMap<Option<i64>, [i64; 4]> = BTreeMap::new();
                let since = |l: &Value, k: &str| int(l, k).is_some_and(|t| t >= midnight);
                for l in self.leads.iter().filter(|l| since(l, "updated_at")) {
                    let g = groups.entry(int(l, "pipeline_id")).or_default();
                    g[0] += 1;
                    g[1] += i64::from(since(l, "created_at"));
                    g[2] += i64::from(Self::outcome(l) == "won" && since(l, "closed_at"));
                    g[3] += i64::from(Self::outcome(l) == "lost" && since(l, "closed_at"));
                }
                groups
                    .into_iter()
                    .map(|(p, [c, n, w, lost])| {
                        vec![
                            self.pipeline_name(p),
                            json!(c),
                            json!(n),
                            json!(w),
                            json!(lost),
                        ]
                    })
                    .collect()
            }
            "loss_reasons_of_lost_leads" => {
                let mut groups: BTreeMap<Option<i64>, (i64, i64)> = BTreeMap::new();
                for l in self.leads.iter().filter(|l| Self::outcome(l) == "lost") {
                    let g = groups.entry(int(l, "loss_reason_id")).or_default();
                    g.0 += 1;
                    g.1 += Self::price(l);
                }
                let mut rows: Vec<_> = groups.into_iter().collect();
                rows.sort_by_key(|(r, (n, _))| (std::cmp::Reverse(*n), *r));
                rows.into_iter()
                    .map(|(r, (n, v))| {
                        let label = r
                            .and_then(|r| self.loss_reasons.get(&r))
                            .map_or_else(|| json!("(no reason given)"), |n| json!(n));
                        vec![label, json!(n), json!(v)]
                    })
                    .collect()
            }
            "stage_entries_per_week" => {
                let monday = |t: i64| {
                    let day = t.div_euclid(DAY);
                    (day - (day + 3).rem_euclid(7)) * DAY
                };
                let cutoff = monday(now) - 7 * 7 * DAY;
                let mut groups: BTreeMap<(std::cmp::Reverse<i64>, i64, Option<i64>, i64), i64> =
                    BTreeMap::new();
                for e in self.events.iter().filter(|e| e.created_at >= cutoff) {
                    let sort = self
                        .status(Some(e.to_pipeline), Some(e.to_status))
                        .map(|s| s.1);
                    *groups
                        .entry((
                            std::cmp::Reverse(monday(e.created_at)),
                            e.to_pipeline,
                            sort,
                            e.to_status,
                        ))
                        .or_default() += 1;
                }
                groups
                    .into_iter()
                    .map(|((week, p, _, s), n)| {
                        vec![
                            json!(ymd(week.0, "%Y-%m-%d")),
                            self.pipeline_name(Some(p)),
                            self.status_name(Some(p), Some(s)),
                            json!(n),
                        ]
                    })
                    .collect()
            }
            "won_revenue_by_company" => {
                let mut groups: BTreeMap<i64, (Value, i64, i64)> = BTreeMap::new();
                for l in self.leads.iter().filter(|l| Self::outcome(l) == "won") {
                    if let Some((id, company)) = self.company(l) {
                        let g = groups.entry(id).or_insert((text(&company["name"]), 0, 0));
                        g.1 += 1;
                        g.2 += Self::price(l);
                    }
                }
                let mut rows: Vec<(i64, i64, Vec<Value>)> = groups
                    .into_iter()
                    .map(|(id, (name, n, sum))| (sum, id, vec![name, json!(n), json!(sum)]))
                    .collect();
                rows.sort_by_key(|(sum, id, _)| (std::cmp::Reverse(*sum), *id));
                rows.into_iter().map(|(_, _, row)| row).collect()
            }
            "open_leads_whose_main_contact_has_no_phone" => self
                .leads
                .iter()
                .filter(|l| Self::outcome(l) == "open")
                .filter_map(|l| {
                    let (_, contact) = self.main_contact(l)?;
                    Self::coded_values(contact, "PHONE").is_empty().then(|| {
                        vec![
                            json!(int(l, "id")),
                            text(&l["name"]),
                            text(&contact["name"]),
                        ]
                    })
                })
                .collect(),
            "contacts_with_several_open_leads" => {
                let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
                let open = |l: &&Value| !matches!(int(l, "status_id"), Some(142 | 143));
                for l in self.leads.iter().filter(open) {
                    for id in Self::linked(l, "contacts", false) {
                        if self.contacts.contains_key(&id) {
                            *counts.entry(id).or_default() += 1;
                        }
                    }
                }
                let mut rows: Vec<(i64, i64)> =
                    counts.into_iter().filter(|(_, n)| *n > 1).collect();
                rows.sort_by_key(|(id, n)| (std::cmp::Reverse(*n), *id));
                rows.into_iter()
                    .map(|(id, n)| vec![json!(id), text(&self.contacts[&id]["name"]), json!(n)])
                    .collect()
            }
            "duplicate_phones" => {
                let mut owners: BTreeMap<String, std::collections::BTreeSet<i64>> = BTreeMap::new();
                for (id, c) in &self.contacts {
                    for phone in Self::coded_values(c, "PHONE") {
                        owners.entry(phone).or_default().insert(*id);
                    }
                }
                let mut rows: Vec<(String, usize, i64)> = owners
                    .into_iter()
                    .filter(|(_, ids)| ids.len() > 1)
                    .map(|(phone, ids)| (phone, ids.len(), *ids.first().unwrap()))
                    .collect();
                rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                rows.into_iter()
                    .map(|(phone, n, first)| vec![json!(phone), json!(n), json!(first)])
                    .collect()
            }
            _ => return None,
        };
        Some(rows)
    }
}

/// On PostgreSQL the queries of its twin, docs/queries.postgres.sql, which
/// must name the same queries in the same order.
async fn every_query_of_docs_queries_sql_answers_as_the_account_itself() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 1_500,
            contacts: 1_000,
            companies: 300,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "",
        // The structure read at every sync: a manager renamed between the
        // syncs is named at once, not within the hour.
        "[sync]\nstructure_refresh_minutes = 0\n",
    )
    .await;
    env.run_ok(&["--backfill"]).await;

    // The account changes: stages move (into won and lost too), leads are
    // edited, deleted and added, a tag is used, a manager renamed.
    let s = env.sim.structure();
    let open: Vec<Value> = env
        .sim
        .alive_leads()
        .into_iter()
        .filter(|l| Account::outcome(l) == "open" && int(l, "pipeline_id").is_some())
        .collect();
    for (i, lead) in open.iter().take(24).enumerate() {
        let (id, p) = (int(lead, "id").unwrap(), int(lead, "pipeline_id").unwrap());
        let stages: Vec<i64> = s["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == p)
            .unwrap()["_embedded"]["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|st| st["id"].as_i64())
            .filter(|st| Some(*st) != int(lead, "status_id"))
            .collect();
        assert!(env.sim.change_lead_status(id, p, stages[i % stages.len()]));
    }
    let ids = env.sim.alive_ids();
    for id in ids.iter().skip(100).step_by(97).take(10) {
        env.sim.update_lead(*id);
    }
    let tag = env.sim.add_tag("queried");
    for id in ids.iter().skip(7).step_by(50).take(12) {
        assert!(env.sim.set_lead_tags(*id, &[tag]));
    }
    let user = s["users"][1]["id"].as_i64().unwrap();
    assert!(env.sim.rename_user(user, "Renamed manager"));
    let doomed: Vec<i64> = ids.iter().skip(31).step_by(301).take(4).copied().collect();
    let deleted: Vec<Value> = env
        .sim
        .alive_leads()
        .into_iter()
        .filter(|l| int(l, "id").is_some_and(|id| doomed.contains(&id)))
        .collect();
    for id in &doomed {
        assert!(env.sim.delete_lead(*id));
    }
    for _ in 0..3 {
        env.sim.add_lead();
    }
    env.run_ok(&["--once"]).await;

    let pool = env.db().await;
    let account = Account::read(&env, deleted);
    let queries = if env.on_postgres() {
        let twin = queries(POSTGRES_QUERIES);
        let names = |qs: &[(String, String)]| qs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&twin),
            names(&queries(QUERIES)),
            "docs/queries.postgres.sql names the queries of docs/queries.sql, in order"
        );
        twin
    } else {
        queries(QUERIES)
    };
    assert!(queries.len() >= 12, "{} queries", queries.len());
    let mut names: Vec<&str> = queries.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), queries.len(), "query names are unique");
    for (name, sql) in &queries {
        let before = kommo_sync::clock::unix_now();
        let got = run(&pool, sql).await;
        let after = kommo_sync::clock::unix_now();
        let want = account.expected(name, before).unwrap_or_else(|| {
            panic!("docs/queries.sql has query {name} with no expected answer in tests/queries.rs")
        });
        let want_after = account.expected(name, after).unwrap();
        assert!(
            same(&got, &want) || same(&got, &want_after),
            "query {name}:\n mirror:  {got:?}\n account: {want:?}"
        );
        assert!(
            !got.is_empty(),
            "query {name} answered nothing: not a test of it"
        );
    }
}

on_each_backend!(every_query_of_docs_queries_sql_answers_as_the_account_itself);
