//! End-to-end tests of what happens to contacts and companies besides
//! plain listing: faults aimed at their listings alone (and every fault
//! kind on them), churn, crowded seconds, the token check, the shared rate
//! window, per-kind stats, ignored filters, and the kind-generic edits of
//! the handle (stamped ahead, bulk, replication lag, raw objects, tag
//! renames).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::RecordKind::{Company, Contact, Lead};
use super::tests_records::{TOKEN, get, get_as, ids_in, items, ok, page_all, record, sim};
use super::*;

/// One request of each contact and company listing, by the scope covering
/// it (in [`FaultScope::CONTACT_COMPANY_LISTINGS`] order), then lead
/// requests that none of them covers.
fn requests(sim: &Simulator) -> (Vec<(FaultScope, String)>, Vec<String>) {
    let mut own = Vec::new();
    for kind in [Contact, Company] {
        let (path, id) = (kind.path(), sim.alive_ids_of(kind)[0]);
        own.extend([
            (
                FaultScope::Records(kind, RecordListing::Walk),
                format!("{path}?filter[updated_at][from]=1&order[updated_at]=asc&limit=5"),
            ),
            (
                FaultScope::Records(kind, RecordListing::CrowdedSecond),
                format!(
                    "{path}?filter%5Bupdated_at%5D%5Bfrom%5D=1&order%5Bid%5D=asc&limit=5&page=2"
                ),
            ),
            (
                FaultScope::Records(kind, RecordListing::ById),
                format!("{path}?filter[id][]={id}&with=leads"),
            ),
        ]);
        let fields = if kind == Contact {
            FaultScope::ContactCustomFields
        } else {
            FaultScope::CompanyCustomFields
        };
        own.push((fields, format!("{path}/custom_fields")));
    }
    let lead = sim.alive_ids()[0];
    let leads = vec![
        "/api/v4/leads?filter[updated_at][from]=1&order[updated_at]=asc&limit=5".into(),
        "/api/v4/leads?order[id]=asc&limit=5&page=2".into(),
        format!("/api/v4/leads?filter[id][]={lead}"),
        "/api/v4/leads/custom_fields".into(),
    ];
    (own, leads)
}

#[tokio::test]
async fn faults_aimed_at_contacts_or_companies_hit_only_their_requests() {
    let sim = sim(30, 40, 20).await;
    let (own, leads) = requests(&sim);
    let scopes: Vec<FaultScope> = own.iter().map(|(s, _)| *s).collect();
    assert_eq!(scopes, FaultScope::CONTACT_COMPANY_LISTINGS);
    let every: Vec<(Option<FaultScope>, String)> = own
        .iter()
        .map(|(s, q)| (Some(*s), q.clone()))
        .chain(leads.iter().map(|q| (None, q.clone())))
        .collect();
    for scope in &scopes {
        sim.queue_faults(*scope, 1, vec![Fault::Status(503)]);
        for round in [1, 2] {
            for (other, query) in &every {
                let want = if round == 2 && other == &Some(*scope) {
                    503
                } else {
                    200
                };
                let status = get(&sim, query).await.status();
                assert_eq!(status, want, "{scope:?} round {round}: {query}");
            }
        }
        assert_eq!(sim.clear_faults(), 0, "{scope:?}: its fault was given");
        for (other, query) in &every {
            let (path, q) = query.split_once('?').unwrap_or((query, ""));
            assert_eq!(scope.covers_get(path, q), other == &Some(*scope), "{query}");
        }
    }
    // one kind's whole listing; the lead scopes never cover contacts
    sim.queue_faults(
        FaultScope::Records(Contact, RecordListing::All),
        0,
        vec![Fault::Status(500); 3],
    );
    sim.queue_faults(FaultScope::Leads, 0, vec![Fault::Status(502); 3]);
    let mut statuses = Vec::new();
    for (_, query) in &every {
        statuses.push(get(&sim, query).await.status().as_u16());
    }
    assert_eq!(
        statuses,
        [500, 500, 500, 200, 200, 200, 200, 200, 502, 502, 502, 200]
    );
    let stats = sim.stats();
    assert_eq!(stats.requests_of(Contact), stats.contact_requests);
    // 8 scopes, 2 rounds, 3 listing requests of each kind a round; then 3
    assert_eq!(
        (stats.contact_requests, stats.company_requests),
        (8 * 2 * 3 + 3, 8 * 2 * 3 + 3)
    );
}

#[tokio::test]
async fn every_fault_kind_works_on_contact_and_company_listings() {
    let sim = sim(10, 120, 40).await;
    let walk = "/api/v4/contacts?order[updated_at]=asc&limit=10";
    let scope = FaultScope::Records(Contact, RecordListing::Walk);
    let real_text = get(&sim, walk).await.text().await.expect("body");
    let real: Value = serde_json::from_str(&real_text).expect("json");
    let fault = |f: Fault| {
        sim.queue_faults(scope, 0, vec![f]);
        get(&sim, walk)
    };
    for f in [Fault::EmptyList, Fault::EmptyLeads] {
        let body: Value = fault(f).await.json().await.expect("json");
        assert_eq!(body["_embedded"]["contacts"], json!([]));
        assert!(body["_links"]["next"]["href"].is_string());
    }
    assert_eq!(
        fault(Fault::EmptyObject).await.text().await.expect("body"),
        "{}"
    );
    let short: Value = fault(Fault::ShortPage).await.json().await.expect("json");
    assert_eq!(items(&short, "contacts"), &items(&real, "contacts")[..5]);
    assert!(short["_links"].get("next").is_none());
    let cut = fault(Fault::TruncatedBody)
        .await
        .text()
        .await
        .expect("body");
    assert!(real_text.starts_with(&cut) && cut.len() < real_text.len());
    assert!(serde_json::from_str::<Value>(&cut).is_err());
    let string_id: Value = fault(Fault::StringId).await.json().await.expect("json");
    let first = items(&real, "contacts")[0]["id"].as_i64().expect("id");
    assert_eq!(
        string_id["_embedded"]["contacts"][0]["id"],
        first.to_string()
    );
    let without: Value = fault(Fault::WithoutIsDeleted)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        items(&without, "contacts")
            .iter()
            .all(|c| c.get("is_deleted").is_none())
    );
    let throttled = fault(Fault::TooManyRequests(RetryAfter::Seconds(3))).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "3");
    assert_eq!(fault(Fault::Status(502)).await.status(), 502);
    // a dropped connection is no HTTP answer at all
    sim.queue_faults(scope, 0, vec![Fault::DroppedConnection]);
    let dropped = reqwest::Client::new()
        .get(format!("{}{walk}", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(dropped.is_err());
    // on the company field listing
    let fields = "/api/v4/companies/custom_fields";
    sim.queue_faults(
        FaultScope::CompanyCustomFields,
        0,
        vec![Fault::NullEnums, Fault::ShortPage],
    );
    let nulled = ok(&sim, fields).await;
    assert!(
        items(&nulled, "custom_fields")
            .iter()
            .all(|f| f["enums"].is_null())
    );
    assert_eq!(items(&ok(&sim, fields).await, "custom_fields").len(), 2);
    assert_eq!(sim.clear_faults(), 0);
    assert_eq!(sim.stats().lead_requests, 0);
}

#[tokio::test]
async fn churn_on_contacts_changes_contacts_only() {
    let sim = sim(30, 200, 50).await;
    let original: BTreeSet<i64> = sim.alive_ids_of(Contact).into_iter().collect();
    sim.set_churn_per_request_of(Contact, 10);
    for n in 1..=3 {
        let page = ok(&sim, "/api/v4/contacts?limit=250").await;
        assert_eq!(
            ids_in(&page, "contacts"),
            sim.alive_ids_of(Contact),
            "changed before the answer"
        );
        assert_eq!(sim.mutations_of(Contact).len(), 10 * n);
    }
    assert_eq!(get(&sim, "/api/v4/contacts?limit=999").await.status(), 400);
    ok(&sim, "/api/v4/leads").await;
    ok(&sim, "/api/v4/companies").await;
    let muts = sim.mutations_of(Contact);
    assert_eq!(
        muts.len(),
        30,
        "no churn on a 400, a lead or a company request"
    );
    assert!(sim.mutations().is_empty() && sim.mutations_of(Company).is_empty());
    let count = |f: fn(&Mutation) -> bool| muts.iter().filter(|m| f(m)).count();
    assert!(count(|m| matches!(m, Mutation::Updated(_))) > 10);
    assert!(count(|m| matches!(m, Mutation::Deleted(_))) > 2);
    assert!(count(|m| matches!(m, Mutation::Added(_))) > 1);
    let deleted = ok(
        &sim,
        "/api/v4/events?filter[type]=contact_deleted&limit=100",
    )
    .await;
    assert_eq!(
        items(&deleted, "events").len(),
        count(|m| matches!(m, Mutation::Deleted(_)))
    );
    for m in &muts {
        if let Mutation::Added(id) = m {
            assert!(!original.contains(id) && *id > *original.last().expect("ids"));
        }
    }
    sim.set_churn_per_request_of(Contact, 0);
    ok(&sim, "/api/v4/contacts").await;
    assert_eq!(sim.mutations_of(Contact).len(), 30);
}

#[tokio::test]
async fn crowd_one_second_of_contacts_fills_one_second_mid_history() {
    let sim = sim(30, 800, 100).await;
    let t = sim.crowd_one_second_of(Contact, 300).expect("a second");
    let in_t: Vec<i64> = sim
        .alive_records(Contact)
        .iter()
        .filter(|c| c["updated_at"] == t)
        .filter_map(|c| c["id"].as_i64())
        .collect();
    assert!(in_t.len() >= 300, "{}", in_t.len());
    let mut times: Vec<i64> = sim
        .alive_records(Contact)
        .iter()
        .filter_map(|c| c["updated_at"].as_i64())
        .collect();
    times.sort_unstable();
    assert!(times[0] < t && t < times[times.len() - 1], "mid-history");
    let query =
        format!("filter[updated_at][from]={t}&filter[updated_at][to]={t}&order[id]=asc&limit=250");
    assert_eq!(
        page_all(&sim, Contact, &query).await,
        in_t,
        "paged inside the second by id"
    );
    assert_eq!(sim.mutations_of(Contact).len(), 300);
    assert!(sim.mutations().is_empty(), "leads untouched");
    assert_eq!(sim.crowd_one_second_of(Company, 0), None);
    assert!(sim.crowd_one_second(5).is_some());
}

#[tokio::test]
async fn auth_rate_window_stats_and_ignored_filters_apply_to_contacts() {
    let sim = Simulator::start(SimulatorConfig {
        leads: 10,
        contacts: 50,
        companies: 20,
        rate_limit_per_second: 3,
        ..SimulatorConfig::default()
    })
    .await
    .expect("start");
    let bad = get_as(&sim, "/api/v4/contacts", "bad").await;
    assert_eq!(bad.status(), 401);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    assert_eq!(get(&sim, "/api/v4/leads").await.status(), 200);
    assert_eq!(get(&sim, "/api/v4/companies").await.status(), 200);
    assert_eq!(
        get(&sim, "/api/v4/contacts").await.status(),
        429,
        "one window for all"
    );
    let stats = sim.stats();
    assert_eq!(
        (
            stats.lead_requests,
            stats.contact_requests,
            stats.company_requests
        ),
        (1, 2, 1)
    );
    assert_eq!(stats.responses_429, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sim.set_filters_ignored(true);
    let id = sim.alive_ids_of(Contact)[0];
    let all = ok(
        &sim,
        &format!("/api/v4/contacts?filter[id][]={id}&limit=250"),
    )
    .await;
    assert_eq!(ids_in(&all, "contacts"), sim.alive_ids_of(Contact));
}

#[tokio::test]
async fn generic_edits_stamp_lag_raw_objects_and_tag_renames() {
    let sim = sim(10, 100, 60).await;
    let ids = sim.alive_ids_of(Company);
    let now = sim.server_now();
    assert!(sim.stamp_ahead(Company, ids[0], 3600));
    assert!(record(&sim, Company, ids[0])["updated_at"].as_i64() >= Some(now + 3600));
    assert_eq!(sim.bulk_update_of(Company, &[ids[1], ids[2], ids[2], 7]), 2);
    assert_eq!(
        record(&sim, Company, ids[1])["updated_at"],
        record(&sim, Company, ids[2])["updated_at"]
    );
    let before = record(&sim, Company, ids[3]);
    assert!(sim.update_visible_after(Company, ids[3], Duration::from_secs(600)));
    assert_eq!(
        record(&sim, Company, ids[3]),
        before,
        "the change is not visible yet"
    );
    let by_id = ok(&sim, &format!("/api/v4/companies?filter[id][]={}", ids[3])).await;
    assert_eq!(items(&by_id, "companies"), [before]);
    assert!(!sim.update_record(Company, 7) && !sim.stamp_ahead(Company, 7, 1));

    let contact = sim.alive_ids_of(Contact)[4];
    let old = record(&sim, Contact, contact);
    assert!(sim.update_record(Contact, contact));
    let new = record(&sim, Contact, contact);
    assert_ne!(new, old);
    assert!(new["updated_at"].as_i64() >= Some(now));

    sim.add_raw_record(Company, json!({"id": "x", "name": 5}));
    sim.add_raw_record(
        Company,
        json!({"id": 49_000_000, "name": null, "updated_at": 5}),
    );
    assert!(sim.alive_ids_of(Company).contains(&49_000_000));
    assert_eq!(
        record(&sim, Company, 49_000_000),
        json!({"id": 49_000_000, "name": null, "updated_at": 5})
    );
    let listed = ok(&sim, "/api/v4/companies?limit=250&order[id]=asc").await;
    assert_eq!(
        items(&listed, "companies").len(),
        sim.alive_ids_of(Company).len() + 1
    );
    assert_eq!(
        items(&listed, "companies")[0]["id"],
        "x",
        "a non-integer id sorts first"
    );
    let added = sim.add_record(Company);
    assert!(added > 49_000_000);
    let a = record(&sim, Company, added);
    assert_eq!(a["created_at"], a["updated_at"]);

    let tagged = sim
        .alive_records(Contact)
        .into_iter()
        .find(|c| !c["_embedded"]["tags"].as_array().expect("tags").is_empty())
        .expect("a tagged contact");
    let tag = tagged["_embedded"]["tags"][0]["id"]
        .as_i64()
        .expect("tag id");
    assert!(sim.rename_tag(tag, "renamed ✓"));
    let after = record(&sim, Contact, tagged["id"].as_i64().expect("id"));
    assert_eq!(after["_embedded"]["tags"][0]["name"], "renamed ✓");
    assert_eq!(after["updated_at"], tagged["updated_at"]);
    assert!(sim.mutations_of(Lead).is_empty());
}
