//! End-to-end tests of the simulator over real HTTP on 127.0.0.1: they pin
//! the Kommo behaviours the sync daemon relies on (live offset paging, 204
//! past the end, the strict rate window, 401s, deleted leads, the tie block).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::*;

const TOKEN: &str = "sim-token";

fn config(leads: usize, tie_block: usize, rate: u32) -> SimulatorConfig {
    SimulatorConfig {
        leads,
        tie_block,
        rate_limit_per_second: rate,
        ..SimulatorConfig::default()
    }
}

async fn get(sim: &Simulator, path_and_query: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path_and_query}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent")
}

async fn json(resp: reqwest::Response) -> Value {
    resp.json::<Value>().await.expect("json body")
}

fn ids_of(page: &Value) -> Vec<i64> {
    page["_embedded"]["leads"]
        .as_array()
        .expect("leads array")
        .iter()
        .map(|l| l["id"].as_i64().expect("id"))
        .collect()
}

/// Pages `page=1,2,3...` until a 204 and returns every id seen, in order.
async fn page_all(sim: &Simulator, query: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for page in 1.. {
        let resp = get(sim, &format!("/api/v4/leads?{query}&page={page}"), TOKEN).await;
        if resp.status() == 204 {
            break;
        }
        assert_eq!(resp.status(), 200);
        out.extend(ids_of(&json(resp).await));
    }
    out
}

#[tokio::test]
async fn paging_returns_every_alive_lead_once() {
    let sim = Simulator::start(config(1200, 300, 1000))
        .await
        .expect("start");
    let mut seen = Vec::new();
    let mut url = format!("{}/api/v4/leads?limit=250", sim.base_url());
    let mut pages = 0;
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
        let body = json(resp).await;
        pages += 1;
        assert_eq!(body["_page"], pages);
        seen.extend(ids_of(&body));
        match body["_links"]["next"]["href"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 5, "1200 leads / 250 = 5 pages, no next on the last");
    assert_eq!(
        seen,
        sim.alive_ids(),
        "every alive lead exactly once, id asc"
    );
    // the objects served are exactly alive_leads() (without the contacts
    // that only with=contacts shows)
    let first = json(get(&sim, "/api/v4/leads?limit=250", TOKEN).await).await;
    assert_eq!(
        first["_embedded"]["leads"].as_array().map(Vec::as_slice),
        Some(&sim.alive_leads_without_contacts()[..250])
    );
    let past = get(&sim, "/api/v4/leads?limit=250&page=6", TOKEN).await;
    assert_eq!(past.status(), 204);
    assert!(past.bytes().await.expect("body").is_empty());
    // default limit is 50
    let d = json(get(&sim, "/api/v4/leads", TOKEN).await).await;
    assert_eq!(ids_of(&d).len(), 50);
    assert!(
        d["_links"]["next"]["href"]
            .as_str()
            .is_some_and(|h| h.ends_with("/api/v4/leads?page=2"))
    );
}

#[tokio::test]
async fn filters_and_order() {
    let sim = Simulator::start(config(400, 0, 1000)).await.expect("start");
    let leads = sim.alive_leads();
    let mut times: Vec<i64> = leads
        .iter()
        .filter_map(|l| l["updated_at"].as_i64())
        .collect();
    times.sort_unstable();
    let (t1, t2) = (times[100], times[200]);
    let mut expected: Vec<(i64, i64)> = leads
        .iter()
        .filter_map(|l| Some((l["updated_at"].as_i64()?, l["id"].as_i64()?)))
        .filter(|(u, _)| (t1..=t2).contains(u))
        .collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let expected: Vec<i64> = expected.into_iter().map(|(_, id)| id).collect();
    assert!(expected.len() >= 101, "both bounds are inclusive");
    let got = page_all(
        &sim,
        &format!(
            "filter[updated_at][from]={t1}&filter[updated_at][to]={t2}&order[updated_at]=desc&limit=30"
        ),
    )
    .await;
    assert_eq!(got, expected);
    // percent-encoded brackets, `from` alone
    let got = page_all(
        &sim,
        &format!("filter%5Bupdated_at%5D%5Bfrom%5D={t2}&limit=250"),
    )
    .await;
    let expected: Vec<i64> = leads
        .iter()
        .filter(|l| l["updated_at"].as_i64() >= Some(t2))
        .filter_map(|l| l["id"].as_i64())
        .collect();
    assert_eq!(got, expected);
    // order[id]=desc
    let got = page_all(&sim, "order[id]=desc&limit=250").await;
    let mut rev = sim.alive_ids();
    rev.reverse();
    assert_eq!(got, rev);
    // filter[id] repeated, both spellings
    let ids = sim.alive_ids();
    let (a, b, c) = (ids[7], ids[3], ids[300]);
    let got = page_all(
        &sim,
        &format!("filter[id]={a}&filter[id]={b}&filter%5Bid%5D%5B%5D={c}"),
    )
    .await;
    assert_eq!(got, vec![b, a, c]);
    // created_at to alone
    let oldest = leads[0]["created_at"].as_i64().expect("created_at");
    let got = page_all(&sim, &format!("filter[created_at][to]={oldest}")).await;
    assert!(got.contains(&ids[0]));
    assert!(got.iter().all(|id| {
        leads
            .iter()
            .find(|l| l["id"].as_i64() == Some(*id))
            .and_then(|l| l["created_at"].as_i64())
            <= Some(oldest)
    }));
    // validation errors
    for bad in [
        "limit=251",
        "limit=0",
        "page=abc",
        "filter[updated_at][from]=yesterday",
        "filter[id]=x",
        "order[id]=sideways",
    ] {
        let resp = get(&sim, &format!("/api/v4/leads?{bad}"), TOKEN).await;
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(
            resp.headers()["content-type"].to_str().ok(),
            Some("application/problem+json")
        );
        assert!(json(resp).await["validation-errors"].is_array(), "{bad}");
    }
    // unknown params and `with` values are ignored
    let resp = get(
        &sim,
        "/api/v4/leads?with=contacts,loss_reason&foo=bar",
        TOKEN,
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn deletion_during_offset_paging_skips_a_lead() {
    let sim = Simulator::start(config(600, 0, 1000)).await.expect("start");
    let before = sim.alive_ids();
    let mut seen = Vec::new();
    let first = json(get(&sim, "/api/v4/leads?limit=250&page=1", TOKEN).await).await;
    seen.extend(ids_of(&first));
    assert!(sim.delete_lead(before[10]));
    for page in 2..=3 {
        let body =
            json(get(&sim, &format!("/api/v4/leads?limit=250&page={page}"), TOKEN).await).await;
        seen.extend(ids_of(&body));
    }
    let seen_set: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen_set.len(), seen.len(), "no repeats");
    let missed: Vec<i64> = sim
        .alive_ids()
        .into_iter()
        .filter(|id| !seen_set.contains(id))
        .collect();
    assert_eq!(
        missed,
        vec![before[250]],
        "the lead shifted onto page 1 was skipped"
    );
    assert_eq!(sim.mutations(), vec![Mutation::Deleted(before[10])]);
}

#[tokio::test]
async fn rate_window_is_strict() {
    let sim = Simulator::start(config(50, 0, 7)).await.expect("start");
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let req = client
            .get(format!("{}/api/v4/leads", sim.base_url()))
            .bearer_auth(TOKEN);
        tasks.push(tokio::spawn(async move { req.send().await }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let resp = t.await.expect("task").expect("sent");
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            assert!(resp.headers().get("retry-after").is_none());
            let body = resp.text().await.expect("body");
            assert!(
                serde_json::from_str::<Value>(&body).is_err(),
                "429 body is not JSON"
            );
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 7);
    let stats = sim.stats();
    assert_eq!(stats.max_requests_in_any_second, 10);
    assert_eq!(stats.responses_429, 3);
    assert_eq!(stats.requests, 10);
    assert_eq!(stats.lead_requests, 10);
    // after the window has passed, requests are served again
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sim.reset_stats();
    assert_eq!(get(&sim, "/api/v4/account", TOKEN).await.status(), 200);
    assert_eq!(sim.stats().max_requests_in_any_second, 1);
}

#[tokio::test]
async fn unauthorized_revoke_and_recover() {
    let sim = Simulator::start(config(20, 0, 1000)).await.expect("start");
    let resp = get(&sim, "/api/v4/leads", "wrong-secret").await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("application/problem+json")
    );
    let body = resp.text().await.expect("body");
    assert!(!body.contains("wrong-secret"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        serde_json::json!({"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"Invalid access token"})
    );
    let no_header = reqwest::get(format!("{}/api/v4/leads", sim.base_url()))
        .await
        .expect("sent");
    assert_eq!(no_header.status(), 401);

    sim.revoke_token();
    assert_eq!(get(&sim, "/api/v4/leads", TOKEN).await.status(), 401);
    assert_eq!(get(&sim, "/api/v4/account", TOKEN).await.status(), 401);
    sim.set_token("fresh");
    assert_eq!(get(&sim, "/api/v4/leads", "fresh").await.status(), 200);
    assert_eq!(get(&sim, "/api/v4/leads", TOKEN).await.status(), 401);

    sim.revoke_token_after_lead_requests(2);
    assert_eq!(get(&sim, "/api/v4/account", "fresh").await.status(), 200);
    assert_eq!(get(&sim, "/api/v4/leads", "fresh").await.status(), 200);
    assert_eq!(get(&sim, "/api/v4/leads", "fresh").await.status(), 200);
    assert_eq!(get(&sim, "/api/v4/leads", "fresh").await.status(), 401);
    assert_eq!(get(&sim, "/api/v4/account", "fresh").await.status(), 401);
    assert_eq!(sim.stats().responses_401, 7);
}

#[tokio::test]
async fn only_deleted_and_restore() {
    let sim = Simulator::start(config(30, 0, 1000)).await.expect("start");
    let victim = sim.alive_ids()[5];
    let original = sim.alive_leads()[5].clone();
    assert_eq!(
        get(&sim, "/api/v4/leads?with=only_deleted", TOKEN)
            .await
            .status(),
        204
    );
    assert!(sim.delete_lead(victim));
    assert!(!sim.delete_lead(victim));
    assert!(!sim.alive_ids().contains(&victim));
    assert_eq!(sim.deleted_ids(), vec![victim]);
    let body = json(get(&sim, "/api/v4/leads?with=contacts,only_deleted", TOKEN).await).await;
    let listed = &body["_embedded"]["leads"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["id"], victim);
    assert_eq!(listed[0]["is_deleted"], true);
    assert!(listed[0]["name"].is_null());
    let deleted_at = listed[0]["updated_at"].as_i64().expect("updated_at");
    assert!(deleted_at >= account::now_unix() - 5);
    assert!(!page_all(&sim, "limit=250").await.contains(&victim));

    assert!(sim.restore_lead(victim));
    assert!(!sim.restore_lead(victim));
    let back = sim
        .alive_leads()
        .into_iter()
        .find(|l| l["id"] == victim)
        .expect("alive again");
    assert_eq!(back, original, "restore does not bump updated_at");
    assert!(page_all(&sim, "limit=250").await.contains(&victim));
    assert_eq!(
        get(&sim, "/api/v4/leads?with=only_deleted", TOKEN)
            .await
            .status(),
        204
    );
}

#[tokio::test]
async fn default_account_is_realistic_with_one_tie_block() {
    let sim = Simulator::start(SimulatorConfig {
        rate_limit_per_second: 1000,
        ..SimulatorConfig::default()
    })
    .await
    .expect("start");
    let leads = sim.alive_leads();
    assert_eq!(leads.len(), 5000);
    let mut by_updated: BTreeMap<i64, usize> = BTreeMap::new();
    for l in &leads {
        *by_updated
            .entry(l["updated_at"].as_i64().expect("updated_at"))
            .or_default() += 1;
    }
    let blocks: Vec<(&i64, &usize)> = by_updated.iter().filter(|(_, n)| **n >= 250).collect();
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        *blocks[0].1, 600,
        "exactly tie_block leads share one second"
    );
    assert!(by_updated.len() > 3000, "many distinct updated_at");
    assert!(
        by_updated.values().filter(|n| **n > 1).count() > 10,
        "not all distinct"
    );
    let t = *blocks[0].0;
    assert!(
        leads
            .iter()
            .filter(|l| l["updated_at"] == t)
            .all(|l| l["created_at"] == t)
    );
    // paging inside the tie second with a stable order gets all 600
    let got = page_all(
        &sim,
        &format!("filter[updated_at][from]={t}&filter[updated_at][to]={t}&order[id]=asc&limit=250"),
    )
    .await;
    assert_eq!(got.len(), 600);

    let now = account::now_unix();
    let keys: Vec<&str> = leads[0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "x_future_field")
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "name",
            "price",
            "responsible_user_id",
            "group_id",
            "status_id",
            "pipeline_id",
            "loss_reason_id",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
            "closed_at",
            "closest_task_at",
            "is_deleted",
            "custom_fields_values",
            "score",
            "account_id",
            "labor_cost",
            "is_price_modified_by_robot",
            "price_with_minor_units",
            "_links",
            "_embedded"
        ]
    );
    let mut prev = 0;
    let mut types = BTreeSet::new();
    let (mut date_num, mut date_str, mut num_num, mut num_str) = (false, false, false, false);
    for l in &leads {
        let id = l["id"].as_i64().expect("id");
        assert!(id > prev);
        prev = id;
        let (c, u) = (l["created_at"].as_i64(), l["updated_at"].as_i64());
        assert!(c <= u && u <= Some(now - 3600) && c >= Some(now - 3 * 366 * 86_400));
        let status = l["status_id"].as_i64();
        assert_eq!(l["loss_reason_id"].is_null(), status != Some(143));
        assert_eq!(
            l["closed_at"].is_null(),
            status != Some(142) && status != Some(143)
        );
        for f in l["custom_fields_values"].as_array().into_iter().flatten() {
            let kind = f["field_type"].as_str().expect("type");
            types.insert(kind.to_string());
            let v = &f["values"][0]["value"];
            match kind {
                "date" => {
                    date_num |= v.is_i64();
                    date_str |= v.is_string();
                }
                "numeric" => {
                    num_num |= v.is_number();
                    num_str |= v.is_string();
                }
                "checkbox" => assert!(v.is_boolean()),
                "select" | "multiselect" => assert!(f["values"][0]["enum_id"].is_i64()),
                _ => {}
            }
            if kind == "multiselect" {
                assert!(f["values"].as_array().map(Vec::len) >= Some(2));
            }
        }
    }
    assert_eq!(types.len(), 10, "{types:?}");
    assert!(date_num && date_str && num_num && num_str);
    let count = |p: &dyn Fn(&Value) -> bool| leads.iter().filter(|l| p(l)).count();
    assert!(count(&|l| l["name"].is_null()) > 0);
    assert!(count(&|l| l["name"] == "") > 0);
    assert!(count(&|l| l["name"].as_str().is_some_and(|s| s.contains('Р'))) > 0);
    assert!(count(&|l| l["name"].as_str().is_some_and(|s| s.contains('🚀'))) > 0);
    assert!(count(&|l| l["name"].as_str().is_some_and(|s| s.contains('\\'))) > 0);
    assert!(count(&|l| l["custom_fields_values"].is_null()) > 500);
    assert!(count(&|l| l["price"].is_null()) > 0);
    assert!(count(&|l| l.get("x_future_field").is_some()) > 0);
    assert!(count(&|l| l["status_id"] == 142) > 250);
    assert!(count(&|l| l["group_id"] == 0) > 1000);

    // same seed, same account (timestamps are relative to start time)
    let again = Simulator::start(SimulatorConfig::default())
        .await
        .expect("start");
    assert_eq!(again.alive_ids(), sim.alive_ids());
    let strip = |ls: Vec<Value>| -> Vec<(Value, Value, Value)> {
        ls.into_iter()
            .map(|l| {
                (
                    l["name"].clone(),
                    l["price"].clone(),
                    l["status_id"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(strip(again.alive_leads()), strip(leads.clone()));
    again.shutdown();
    sim.shutdown();
}

#[tokio::test]
async fn mutations_failures_churn_and_unknown_paths() {
    let sim = Simulator::start(config(100, 0, 1000)).await.expect("start");
    let id = sim.alive_ids()[0];
    let before = sim.alive_leads()[0].clone();
    assert!(sim.update_lead(id));
    assert!(!sim.update_lead(42));
    let after = sim.alive_leads()[0].clone();
    assert_ne!(after["name"], before["name"]);
    assert_ne!(after["price"], before["price"]);
    assert_ne!(
        after["custom_fields_values"],
        before["custom_fields_values"]
    );
    assert!(after["updated_at"].as_i64() >= Some(account::now_unix() - 5));
    let added = sim.add_lead();
    assert_eq!(sim.alive_ids().last(), Some(&added));
    let new = sim.alive_leads().pop().expect("lead");
    assert_eq!(new["created_at"], new["updated_at"]);

    sim.fail_next_lead_requests(2, 503);
    for _ in 0..2 {
        let resp = get(&sim, "/api/v4/leads", TOKEN).await;
        assert_eq!(resp.status(), 503);
        let body = resp.text().await.expect("body");
        assert!(serde_json::from_str::<Value>(&body).is_err());
    }
    assert_eq!(get(&sim, "/api/v4/leads", TOKEN).await.status(), 200);

    sim.set_churn_per_lead_request(7);
    assert_eq!(
        get(&sim, "/api/v4/leads?limit=250", TOKEN).await.status(),
        200
    );
    let muts = sim.mutations();
    assert_eq!(muts.len(), 2 + 7);
    assert_eq!(&muts[..2], &[Mutation::Updated(id), Mutation::Added(added)]);
    sim.set_churn_per_lead_request(0);

    let resp = get(&sim, "/api/v4/customers", TOKEN).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("application/problem+json")
    );
    let acct = json(get(&sim, "/api/v4/account?with=datetime_settings", TOKEN).await).await;
    assert_eq!(acct["id"], 31_234_567);
    assert_eq!(acct["currency"], "USD");
    assert_eq!(acct["_embedded"]["datetime_settings"]["timezone"], "UTC");
    let stats = sim.stats();
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.lead_requests, 4);

    sim.shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let gone = reqwest::Client::new()
        .get(format!("{}/api/v4/account", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(gone.is_err(), "no longer serving after shutdown");
}

#[tokio::test]
async fn hostile_queries_never_panic() {
    let sim = Simulator::start(config(40, 0, 1000)).await.expect("start");
    for (q, want) in [
        ("page=99999999999999999999", 400),
        ("page=18446744073709551615&limit=250", 204),
        ("page=-1", 400),
        ("%", 200),
        ("=&&=&page", 400),
        ("filter[id]=", 200),
        ("filter[updated_at][from]=%FF", 400),
        ("filter[updated_at][until]=5", 200),
        ("filter[name]=x&order[name]=asc", 200),
        ("order[updated_at]=DESC&order[created_at]=asc", 200),
        ("limit=%32%35%30", 200),
        ("with=only_deleted,contacts&page=2", 204),
    ] {
        let resp = get(&sim, &format!("/api/v4/leads?{q}"), TOKEN).await;
        assert_eq!(resp.status().as_u16(), want, "{q}");
    }
    let odd = reqwest::Client::new()
        .get(format!("{}/api/v4/leads", sim.base_url()))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("header"),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(odd.status(), 401);
    assert_eq!(get(&sim, "/api/v4/leads", TOKEN).await.status(), 200);
}

#[tokio::test]
async fn a_crowded_second_mid_history_holds_the_leads_given_it_and_keeps_created_before_updated() {
    let sim = Simulator::start(config(3_000, 0, 1000)).await.unwrap();
    let second = sim.crowd_one_second(700).expect("a second");
    let leads = sim.alive_leads();
    let in_second: Vec<&Value> = leads
        .iter()
        .filter(|l| l["updated_at"].as_i64() == Some(second))
        .collect();
    assert!(
        in_second.len() >= 700,
        "{} leads in the second",
        in_second.len()
    );
    assert!(
        leads
            .iter()
            .all(|l| l["created_at"].as_i64() <= l["updated_at"].as_i64()),
        "a lead updated before it was created"
    );
    // Mid-history: about as many leads updated before it as after it.
    let before = leads
        .iter()
        .filter(|l| l["updated_at"].as_i64() < Some(second))
        .count();
    assert!((900..=1_400).contains(&before), "{before} leads before it");
    sim.shutdown();
}
