//! End-to-end tests of the contacts and companies of the simulated account
//! over real HTTP on 127.0.0.1: their listings (the lead semantics: paging,
//! filters, order, 204, `with=leads`), their shape, their custom field
//! listings, deletions and restores (absent from listings, present as
//! events) and the links leads hold to them. Faults, churn, crowded seconds
//! and the other kind-generic edits are in `tests_record_edges`, which
//! shares the helpers here.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::RecordKind::{Company, Contact};
use super::*;

pub(super) const TOKEN: &str = "sim-token";

pub(super) async fn sim(leads: usize, contacts: usize, companies: usize) -> Simulator {
    Simulator::start(SimulatorConfig {
        leads,
        contacts,
        companies,
        tie_block: 100,
        rate_limit_per_second: 1000,
        ..SimulatorConfig::default()
    })
    .await
    .expect("start")
}

pub(super) async fn get_as(
    sim: &Simulator,
    path_and_query: &str,
    token: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path_and_query}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent")
}

pub(super) async fn get(sim: &Simulator, path_and_query: &str) -> reqwest::Response {
    get_as(sim, path_and_query, TOKEN).await
}

/// The 200 answer's body.
pub(super) async fn ok(sim: &Simulator, path_and_query: &str) -> Value {
    let resp = get(sim, path_and_query).await;
    assert_eq!(resp.status(), 200, "{path_and_query}");
    resp.json().await.expect("json body")
}

pub(super) fn items<'a>(page: &'a Value, key: &str) -> &'a [Value] {
    page["_embedded"][key].as_array().expect("list").as_slice()
}

pub(super) fn ids_in(page: &Value, key: &str) -> Vec<i64> {
    items(page, key)
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect()
}

/// Pages `page=1,2,3...` of `kind`'s listing until a 204; every id seen.
pub(super) async fn page_all(sim: &Simulator, kind: RecordKind, query: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for page in 1.. {
        let resp = get(sim, &format!("{}?{query}&page={page}", kind.path())).await;
        if resp.status() == 204 {
            break;
        }
        assert_eq!(resp.status(), 200, "{query}");
        out.extend(ids_in(&resp.json().await.expect("json"), kind.list_key()));
    }
    out
}

pub(super) fn record(sim: &Simulator, kind: RecordKind, id: i64) -> Value {
    sim.alive_records(kind)
        .into_iter()
        .find(|r| r["id"] == id)
        .expect("alive")
}

#[tokio::test]
async fn listings_page_every_alive_contact_and_company_once() {
    let sim = sim(50, 700, 300).await;
    for (kind, pages) in [(Contact, 3), (Company, 2)] {
        let (path, key) = (kind.path(), kind.list_key());
        let mut url = format!("{}{path}?limit=250", sim.base_url());
        let (mut seen, mut n) = (Vec::new(), 0);
        loop {
            let resp = reqwest::Client::new()
                .get(&url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("sent");
            assert_eq!(resp.status(), 200);
            assert_eq!(
                resp.headers()["content-type"].to_str().ok(),
                Some("application/hal+json")
            );
            let body: Value = resp.json().await.expect("json");
            n += 1;
            assert_eq!(body["_page"], n);
            seen.extend(ids_in(&body, key));
            match body["_links"]["next"]["href"].as_str() {
                Some(next) => url = next.to_string(),
                None => break,
            }
        }
        assert_eq!(n, pages, "{kind:?}: no next on the last page");
        assert_eq!(seen, sim.alive_ids_of(kind), "every record once, id asc");
        let first = ok(&sim, &format!("{path}?limit=250")).await;
        assert_eq!(items(&first, key), &sim.alive_records(kind)[..250]);
        let past = get(&sim, &format!("{path}?limit=250&page={}", pages + 1)).await;
        assert_eq!(past.status(), 204);
        assert!(past.bytes().await.expect("body").is_empty());
        let default = ok(&sim, path).await;
        assert_eq!(ids_in(&default, key).len(), 50, "default limit");
        assert!(
            default["_links"]["next"]["href"]
                .as_str()
                .is_some_and(|h| h.ends_with(&format!("{path}?page=2")))
        );
        let bad = get(&sim, &format!("{path}?limit=251")).await;
        assert_eq!(bad.status(), 400);
    }
}

#[tokio::test]
async fn filters_order_ids_and_shared_seconds_work_as_for_leads() {
    let sim = sim(20, 600, 200).await;
    for (kind, tie) in [(Contact, 60), (Company, 20)] {
        let records = sim.alive_records(kind);
        let mut times: Vec<i64> = records
            .iter()
            .map(|r| r["updated_at"].as_i64().expect("updated_at"))
            .collect();
        times.sort_unstable();
        let (t1, t2) = (times[times.len() / 4], times[times.len() / 2]);
        let mut expected: Vec<(i64, i64)> = records
            .iter()
            .filter_map(|r| Some((r["updated_at"].as_i64()?, r["id"].as_i64()?)))
            .filter(|(u, _)| (t1..=t2).contains(u))
            .collect();
        expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let expected: Vec<i64> = expected.into_iter().map(|(_, id)| id).collect();
        let query = format!(
            "filter[updated_at][from]={t1}&filter[updated_at][to]={t2}&order[updated_at]=desc&limit=30"
        );
        assert_eq!(page_all(&sim, kind, &query).await, expected, "{kind:?}");
        // percent-encoded, `from` alone, id descending
        let query = format!("filter%5Bupdated_at%5D%5Bfrom%5D={t2}&order%5Bid%5D=desc&limit=250");
        let mut want: Vec<i64> = records
            .iter()
            .filter(|r| r["updated_at"].as_i64() >= Some(t2))
            .filter_map(|r| r["id"].as_i64())
            .collect();
        want.reverse();
        assert_eq!(page_all(&sim, kind, &query).await, want);

        let ids = sim.alive_ids_of(kind);
        let query = format!(
            "filter[id][]={}&filter[id][]={}&filter[id][]=7",
            ids[3], ids[10]
        );
        assert_eq!(page_all(&sim, kind, &query).await, [ids[3], ids[10]]);
        let query = format!("filter[id]={},{}", ids[12], ids[0]);
        assert_eq!(page_all(&sim, kind, &query).await, [ids[0], ids[12]]);

        // one bulk-import second holds tie_block.min(n / 10) records, and a
        // few other seconds are shared too
        let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
        for t in &times {
            *per_second.entry(*t).or_default() += 1;
        }
        assert_eq!(per_second.values().max(), Some(&tie), "{kind:?}");
        assert!(per_second.values().filter(|n| **n > 1).count() > 2);
    }
}

#[tokio::test]
async fn contacts_and_companies_look_like_kommo_s() {
    let sim = sim(10, 2000, 500).await;
    let contacts = sim.alive_records(Contact);
    let companies = sim.alive_records(Company);
    let company_ids: BTreeSet<i64> = sim.alive_ids_of(Company).into_iter().collect();
    assert_eq!(contacts.len(), 2000);
    assert!(
        contacts
            .iter()
            .all(|c| c["id"].as_i64() >= Some(30_000_000))
    );
    assert!(company_ids.iter().all(|id| *id >= 40_000_000));
    let base = [
        "id",
        "name",
        "first_name",
        "last_name",
        "responsible_user_id",
        "group_id",
        "created_by",
        "updated_by",
        "created_at",
        "updated_at",
        "closest_task_at",
        "is_deleted",
        "custom_fields_values",
        "account_id",
        "_links",
        "_embedded",
    ];
    let keys =
        |r: &Value| -> Vec<String> { r.as_object().expect("object").keys().cloned().collect() };
    assert!(contacts.iter().all(|c| keys(c) == base));
    let company_keys: Vec<&str> = base
        .iter()
        .copied()
        .filter(|k| !["first_name", "last_name"].contains(k))
        .collect();
    assert!(companies.iter().all(|c| keys(c) == company_keys));

    let tags: BTreeMap<i64, Value> = sim.structure()["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| (t["id"].as_i64().expect("id"), t.clone()))
        .collect();
    let mut phone_owners: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let (mut no_phone, mut several, mut with_company, mut tagged) = (0, 0, 0, 0);
    let mut codes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in contacts.iter().chain(&companies) {
        let id = c["id"].as_i64().expect("id");
        assert_eq!(c["is_deleted"], false);
        assert_eq!(c["account_id"], 31_234_567);
        assert!(c["created_at"].as_i64() <= c["updated_at"].as_i64());
        let href = c["_links"]["self"]["href"].as_str().expect("href");
        assert!(href.ends_with(&format!("/{id}")), "{href}");
        for t in c["_embedded"]["tags"].as_array().expect("tags") {
            assert_eq!(Some(t), tags.get(&t["id"].as_i64().expect("tag id")));
            tagged += 1;
        }
        let fields = c["custom_fields_values"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let phones: Vec<&Value> = fields
            .iter()
            .filter(|f| f["field_code"] == "PHONE")
            .flat_map(|f| f["values"].as_array().expect("values"))
            .collect();
        match phones.len() {
            0 => no_phone += 1,
            1 => {}
            _ => several += 1,
        }
        for f in &fields {
            let code = f["field_code"].as_str().expect("code");
            for v in f["values"].as_array().expect("values") {
                assert!(v["value"].is_string(), "{v}");
                if let Some(e) = v["enum_code"].as_str() {
                    assert!(v["enum_id"].is_i64());
                    codes
                        .entry(code.to_string())
                        .or_default()
                        .insert(e.to_string());
                }
            }
        }
        if c.get("first_name").is_some() {
            for p in phones {
                let number = p["value"].as_str().expect("phone").to_string();
                phone_owners.entry(number).or_default().insert(id);
            }
            let linked = c["_embedded"]["companies"].as_array().expect("companies");
            assert!(linked.len() <= 1);
            for l in linked {
                assert!(company_ids.contains(&l["id"].as_i64().expect("id")));
                with_company += 1;
            }
        } else {
            assert!(c["_embedded"].get("companies").is_none());
        }
    }
    assert!(no_phone > 100 && several > 100, "{no_phone} {several}");
    assert!(with_company > 500 && with_company < 2000, "{with_company}");
    assert!(tagged > 100);
    let shared = phone_owners.values().filter(|o| o.len() > 1).count();
    assert!(shared >= 5, "duplicate phones to find: {shared}");
    let set = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        codes["PHONE"],
        set(&["WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"])
    );
    assert_eq!(codes["EMAIL"], set(&["WORK", "PRIV", "OTHER"]));
    for code in ["WEB", "ADDRESS"] {
        let n = companies
            .iter()
            .filter(|c| {
                c.to_string()
                    .contains(&format!("\"field_code\":\"{code}\""))
            })
            .count();
        assert!(n > 50, "{code}: {n}");
    }
    let count = |p: &dyn Fn(&Value) -> bool| contacts.iter().filter(|c| p(c)).count();
    assert!(count(&|c| c["name"].is_null()) > 0);
    assert!(count(&|c| c["last_name"] == "" && c["name"] != "") > 0);
    assert!(count(&|c| c["name"].as_str().is_some_and(|n| n.contains('🚀'))) > 0);

    // same seed, same records
    let twin = self::sim(10, 2000, 500).await;
    let strip = |rs: Vec<Value>| -> Vec<(Value, Value, Value)> {
        rs.into_iter()
            .map(|r| {
                (
                    r["id"].clone(),
                    r["name"].clone(),
                    r["custom_fields_values"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(strip(twin.alive_records(Contact)), strip(contacts));
    assert_eq!(strip(twin.alive_records(Company)), strip(companies));
}

#[tokio::test]
async fn deleted_contacts_and_companies_are_absent_and_show_as_events() {
    let sim = sim(20, 100, 50).await;
    for kind in [Contact, Company] {
        let (path, key, entity) = (kind.path(), kind.list_key(), kind.entity_type());
        let ids = sim.alive_ids_of(kind);
        let (gone, back) = (ids[5], ids[6]);
        let before = record(&sim, kind, back);
        let now = sim.server_now();
        assert!(sim.delete_record(kind, gone) && sim.delete_record(kind, back));
        assert!(!sim.delete_record(kind, gone), "no longer alive");
        assert_eq!(sim.deleted_ids_of(kind), [gone, back]);
        let listed = page_all(&sim, kind, "limit=250").await;
        assert_eq!(listed, sim.alive_ids_of(kind));
        assert!(!listed.contains(&gone) && !listed.contains(&back));
        for query in [
            format!("filter[id][]={gone}&filter[id][]={back}"),
            format!("filter[id][]={gone}&with=only_deleted"),
        ] {
            let resp = get(&sim, &format!("{path}?{query}")).await;
            assert_eq!(resp.status(), 204, "{query}");
        }
        // no deleted listing: with=only_deleted lists the alive ones
        let flagged = ok(&sim, &format!("{path}?with=only_deleted&limit=250")).await;
        assert_eq!(ids_in(&flagged, key), listed[..listed.len().min(250)]);

        let deletions = ok(
            &sim,
            &format!("/api/v4/events?filter[type]={}", kind.deleted_event()),
        )
        .await;
        let events = items(&deletions, "events");
        assert_eq!(events.len(), 2);
        let mut seen = BTreeSet::new();
        for e in events {
            assert_eq!(e["type"], kind.deleted_event());
            assert_eq!(e["entity_type"], entity);
            assert!(e["id"].is_string());
            assert_eq!(
                (e["value_before"].clone(), e["value_after"].clone()),
                (json!([]), json!([]))
            );
            assert!(e["created_at"].as_i64() >= Some(now));
            seen.insert(e["entity_id"].as_i64().expect("entity_id"));
        }
        assert_eq!(seen, BTreeSet::from([gone, back]));

        assert!(sim.restore_record(kind, back));
        assert!(!sim.restore_record(kind, back), "no longer deleted");
        let restores = format!("/api/v4/events?filter[type][]={}", kind.restored_event());
        let restores = ok(&sim, &restores).await;
        let restored: Vec<&Value> = items(&restores, "events")
            .iter()
            .map(|e| &e["entity_id"])
            .collect();
        assert_eq!(restored, [&json!(back)]);
        let by_id = ok(&sim, &format!("{path}?filter[id][]={back}")).await;
        assert_eq!(
            items(&by_id, key),
            [before],
            "restored as it was, updated_at kept"
        );
        assert_eq!(
            sim.mutations_of(kind),
            [
                Mutation::Deleted(gone),
                Mutation::Deleted(back),
                Mutation::Restored(back)
            ]
        );
    }
    // entity filter; lead event types do not list them; leads untouched
    let companies = ok(&sim, "/api/v4/events?filter[entity]=company").await;
    assert!(
        items(&companies, "events")
            .iter()
            .all(|e| e["entity_type"] == "company")
    );
    assert_eq!(items(&companies, "events").len(), 3);
    let lead_types = get(
        &sim,
        "/api/v4/events?filter[type]=lead_deleted,lead_restored",
    )
    .await;
    assert_eq!(lead_types.status(), 204);
    assert!(sim.mutations().is_empty());
}

#[tokio::test]
async fn leads_link_only_to_existing_contacts_and_companies() {
    let sim = sim(800, 300, 100).await;
    let contacts: BTreeSet<i64> = sim.alive_ids_of(Contact).into_iter().collect();
    let companies: BTreeSet<i64> = sim.alive_ids_of(Company).into_iter().collect();
    let linked = |lead: &Value, key: &str| -> Vec<i64> {
        lead["_embedded"][key]
            .as_array()
            .expect("links")
            .iter()
            .map(|l| l["id"].as_i64().expect("id"))
            .collect()
    };
    let (mut with_contacts, mut with_company) = (0, 0);
    for lead in sim.alive_leads() {
        let cs = linked(&lead, "contacts");
        assert!(cs.iter().all(|c| contacts.contains(c)), "{cs:?}");
        let co = linked(&lead, "companies");
        assert!(co.iter().all(|c| companies.contains(c)), "{co:?}");
        with_contacts += usize::from(!cs.is_empty());
        with_company += usize::from(!co.is_empty());
    }
    assert!(
        with_contacts > 400 && with_company > 200,
        "{with_contacts} {with_company}"
    );

    // new leads (and contacts) link to what is alive when they are made
    let small = self::sim(5, 4, 2).await;
    let cs = small.alive_ids_of(Contact);
    let co = small.alive_ids_of(Company);
    assert!(small.delete_record(Contact, cs[0]) && small.delete_record(Contact, cs[1]));
    assert!(small.delete_record(Company, co[0]));
    let (mut linked_contacts, mut linked_companies) = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..40 {
        let id = small.add_lead();
        let lead = small
            .alive_leads()
            .into_iter()
            .find(|l| l["id"] == id)
            .expect("added");
        linked_contacts.extend(linked(&lead, "contacts"));
        linked_companies.extend(linked(&lead, "companies"));
    }
    assert_eq!(linked_contacts, BTreeSet::from([cs[2], cs[3]]));
    assert_eq!(linked_companies, BTreeSet::from([co[1]]));
    for _ in 0..10 {
        let id = small.add_record(Contact);
        let contact = record(&small, Contact, id);
        assert!(linked(&contact, "companies").iter().all(|c| *c == co[1]));
    }
    // deleting a contact leaves the leads that link to it as they are
    let before = sim.alive_leads();
    let used = linked(
        before
            .iter()
            .find(|l| !linked(l, "contacts").is_empty())
            .expect("one"),
        "contacts",
    )[0];
    assert!(sim.delete_record(Contact, used));
    assert_eq!(sim.alive_leads(), before);
}

#[tokio::test]
async fn with_leads_lists_the_alive_leads_linked_to_each_record() {
    let sim = sim(400, 60, 20).await;
    for kind in [Contact, Company] {
        let (path, key) = (kind.path(), kind.list_key());
        let expected = |sim: &Simulator| {
            let mut by: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
            for lead in sim.alive_leads() {
                for l in lead["_embedded"][key].as_array().expect("links") {
                    by.entry(l["id"].as_i64().expect("id"))
                        .or_default()
                        .push(json!({"id": lead["id"]}));
                }
            }
            by
        };
        let check = |page: &Value, by: &BTreeMap<i64, Vec<Value>>| {
            for r in items(page, key) {
                let id = r["id"].as_i64().expect("id");
                let want = Value::Array(by.get(&id).cloned().unwrap_or_default());
                assert_eq!(r["_embedded"]["leads"], want, "{kind:?} {id}");
            }
        };
        let by = expected(&sim);
        assert!(by.values().any(|l| l.len() > 1));
        let with = ok(&sim, &format!("{path}?limit=250&with=leads")).await;
        check(&with, &by);
        let plain = ok(&sim, &format!("{path}?limit=250")).await;
        assert_eq!(items(&plain, key), sim.alive_records(kind).as_slice());
        assert!(
            items(&plain, key)
                .iter()
                .all(|r| r["_embedded"].get("leads").is_none())
        );
        // a deleted lead is no longer listed
        let (record_id, leads) = by.iter().find(|(_, l)| l.len() > 1).expect("one");
        let dropped = leads[0]["id"].as_i64().expect("id");
        assert!(sim.delete_lead(dropped));
        let by = expected(&sim);
        assert!(!by[record_id].contains(&json!({"id": dropped})));
        check(
            &ok(
                &sim,
                &format!("{path}?limit=250&with=leads,catalog_elements"),
            )
            .await,
            &by,
        );
    }
}

#[tokio::test]
async fn custom_field_listings_define_every_field_records_use() {
    let sim = sim(10, 300, 100).await;
    for (kind, codes) in [
        (Contact, vec!["PHONE", "EMAIL", "POSITION"]),
        (Company, vec!["PHONE", "EMAIL", "WEB", "ADDRESS"]),
    ] {
        let path = format!("{}/custom_fields", kind.path());
        let body = ok(&sim, &path).await;
        assert_eq!(body["_total_items"], codes.len());
        let fields = items(&body, "custom_fields");
        let got: Vec<&str> = fields.iter().filter_map(|f| f["code"].as_str()).collect();
        assert_eq!(got, codes);
        let defs: BTreeMap<i64, &Value> = fields
            .iter()
            .map(|f| (f["id"].as_i64().expect("id"), f))
            .collect();
        let enum_values = |f: &Value| -> Vec<String> {
            f["enums"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["value"].as_str().expect("value").to_string())
                .collect()
        };
        assert_eq!(
            enum_values(&fields[0]),
            ["WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"]
        );
        assert_eq!(enum_values(&fields[1]), ["WORK", "PRIV", "OTHER"]);
        assert!(fields[2]["enums"].is_null());
        let mut used = BTreeSet::new();
        for r in sim.alive_records(kind) {
            for f in r["custom_fields_values"].as_array().into_iter().flatten() {
                let def = defs[&f["field_id"].as_i64().expect("field_id")];
                assert_eq!(
                    (&f["field_code"], &f["field_type"]),
                    (&def["code"], &def["type"])
                );
                used.insert(f["field_id"].as_i64().expect("id"));
                for v in f["values"].as_array().expect("values") {
                    if let Some(enum_id) = v["enum_id"].as_i64() {
                        let e = def["enums"]
                            .as_array()
                            .expect("enums")
                            .iter()
                            .find(|e| e["id"] == enum_id)
                            .expect("a defined enum");
                        assert_eq!(e["value"], v["enum_code"]);
                    }
                }
            }
        }
        assert_eq!(used.len(), codes.len(), "{kind:?}: every field is used");
        let first = ok(&sim, &format!("{path}?limit=2")).await;
        assert_eq!(items(&first, "custom_fields").len(), 2);
        assert!(
            first["_links"]["next"]["href"]
                .as_str()
                .is_some_and(|h| h.ends_with("page=2"))
        );
        let second = ok(&sim, &format!("{path}?limit=2&page=2")).await;
        assert_eq!(items(&second, "custom_fields").len(), codes.len() - 2);
        assert_eq!(
            get(&sim, &format!("{path}?limit=2&page=3")).await.status(),
            204
        );
        assert_eq!(get_as(&sim, &path, "bad").await.status(), 401);
    }
}
