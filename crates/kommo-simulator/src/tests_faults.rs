//! End-to-end tests of the simulator's switchable faults and edges over real
//! HTTP on 127.0.0.1: what a client sees for each [`Fault`] (on lead
//! listings, events and the structure listings), how queued faults skip
//! and scope (one scope per listing kind), the block, the unpaid account, throttle bursts,
//! the `Date` header and clock offset, leads stamped ahead, bulk edits,
//! replication lag, ignored filters, raw objects and the request log.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const TOKEN: &str = "sim-token";

async fn sim(leads: usize) -> Simulator {
    Simulator::start(SimulatorConfig {
        leads,
        tie_block: 0,
        rate_limit_per_second: 1000,
        ..SimulatorConfig::default()
    })
    .await
    .expect("start")
}

async fn get(sim: &Simulator, path_and_query: &str) -> reqwest::Response {
    get_as(sim, path_and_query, TOKEN).await
}

async fn get_as(sim: &Simulator, path_and_query: &str, token: &str) -> reqwest::Response {
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

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// The Unix time of an IMF-fixdate header value.
fn http_date(value: &str) -> i64 {
    assert!(value.ends_with(" GMT"), "{value}");
    chrono::DateTime::parse_from_rfc2822(value)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .timestamp()
}

fn ids_of(page: &Value) -> Vec<i64> {
    page["_embedded"]["leads"]
        .as_array()
        .expect("leads array")
        .iter()
        .filter_map(|l| l["id"].as_i64())
        .collect()
}

fn lead_by_id(sim: &Simulator, id: i64) -> Value {
    sim.alive_leads()
        .into_iter()
        .find(|l| l["id"] == id)
        .expect("alive")
}

#[tokio::test]
async fn empty_leads_and_empty_object_faults() {
    let sim = sim(30).await;
    sim.delete_lead(sim.alive_ids()[0]);
    sim.queue_faults(FaultScope::Leads, 0, vec![Fault::EmptyLeads]);
    let resp = get(&sim, "/api/v4/leads?limit=5&page=3").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/hal+json")
    );
    let body = json(resp).await;
    assert_eq!(body["_page"], 3);
    assert_eq!(body["_embedded"]["leads"], json!([]));
    let next = body["_links"]["next"]["href"].as_str().expect("next");
    assert!(next.ends_with("/api/v4/leads?limit=5&page=4"), "{next}");
    assert!(
        body["_links"]["self"]["href"]
            .as_str()
            .is_some_and(|h| h.ends_with("page=3"))
    );

    sim.queue_faults(FaultScope::Events, 0, vec![Fault::EmptyLeads]);
    let body = json(get(&sim, "/api/v4/events?filter[type]=lead_deleted").await).await;
    assert_eq!(body["_page"], 1);
    assert_eq!(body["_embedded"]["events"], json!([]));
    assert!(body["_embedded"].get("leads").is_none());
    assert!(body["_links"]["next"]["href"].is_string());
    // the real events page is back (the deletion; the generated stage
    // history is another type)
    let body = json(get(&sim, "/api/v4/events?filter[type]=lead_deleted").await).await;
    assert_eq!(
        body["_embedded"]["events"].as_array().map(Vec::len),
        Some(1)
    );

    sim.queue_faults(FaultScope::Leads, 0, vec![Fault::EmptyObject]);
    let resp = get(&sim, "/api/v4/leads").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "{}");
    assert_eq!(get(&sim, "/api/v4/leads").await.status(), 200);
}

#[tokio::test]
async fn short_page_halves_the_real_page_without_next() {
    let sim = sim(25).await;
    let ids = sim.alive_ids();
    sim.queue_faults(FaultScope::Leads, 0, vec![Fault::ShortPage; 4]);
    let body = json(get(&sim, "/api/v4/leads?limit=10").await).await;
    assert_eq!(ids_of(&body), ids[..5].to_vec(), "half of the real page");
    assert!(body["_links"]["next"].is_null());
    assert!(body["_links"]["self"]["href"].is_string());
    let body = json(get(&sim, "/api/v4/leads?limit=10&page=3").await).await;
    assert_eq!(ids_of(&body), ids[20..22].to_vec(), "5 real items: 2 kept");
    let one = get(&sim, &format!("/api/v4/leads?filter[id]={}", ids[3])).await;
    assert_eq!(one.status(), 204, "one item: nothing left");
    let past = get(&sim, "/api/v4/leads?limit=10&page=9").await;
    assert_eq!(past.status(), 204);
    // no fault left: the full page
    let body = json(get(&sim, "/api/v4/leads?limit=10").await).await;
    assert_eq!(ids_of(&body).len(), 10);
}

#[tokio::test]
async fn truncated_body_cuts_the_real_json() {
    let sim = sim(20).await;
    let full = get(&sim, "/api/v4/leads?limit=10")
        .await
        .text()
        .await
        .expect("body");
    sim.queue_faults(FaultScope::Leads, 0, vec![Fault::TruncatedBody; 2]);
    let resp = get(&sim, "/api/v4/leads?limit=10").await;
    assert_eq!(resp.status(), 200);
    let cut = resp.text().await.expect("complete (short) body");
    assert!(!cut.is_empty() && cut.len() < full.len());
    assert!(full.starts_with(&cut));
    assert!(
        (full.len() / 2).abs_diff(cut.len()) <= 4,
        "cut in its middle"
    );
    assert!(serde_json::from_str::<Value>(&cut).is_err());
    // a query answering 204 gets a cut body anyway
    let resp = get(&sim, "/api/v4/leads?limit=10&page=7").await;
    assert_eq!(resp.status(), 200);
    let cut = resp.text().await.expect("body");
    assert_eq!(cut, "{\"_page\":7,\"_emb");
    assert!(serde_json::from_str::<Value>(&cut).is_err());
    // json() on a cut body is an error, not a panic
    sim.queue_faults(FaultScope::Leads, 0, vec![Fault::TruncatedBody]);
    assert!(
        get(&sim, "/api/v4/leads")
            .await
            .json::<Value>()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn dropped_connection_is_a_client_error_not_a_status() {
    let sim = sim(10).await;
    sim.queue_faults(FaultScope::Leads, 0, vec![Fault::DroppedConnection]);
    let client = reqwest::Client::new();
    let sent = client
        .get(format!("{}/api/v4/leads", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await;
    let err = sent.expect_err("no HTTP answer");
    assert!(err.status().is_none(), "{err:?}");
    // the same client recovers on a new connection
    let resp = client
        .get(format!("{}/api/v4/leads", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("served again");
    assert_eq!(resp.status(), 200);
    // on the wire: not one byte of an answer, then the close
    sim.queue_faults(FaultScope::Leads, 0, vec![Fault::DroppedConnection]);
    let addr = sim.base_url().replace("http://", "");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /api/v4/leads HTTP/1.1\r\nHost: sim\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let statuses: Vec<u16> = sim.request_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![0, 200, 0]);
    assert_eq!(sim.stats().lead_requests, 3);
}

#[tokio::test]
async fn status_faults_and_429_retry_after_forms() {
    let sim = sim(10).await;
    sim.set_clock_offset(-7200);
    sim.queue_faults(
        FaultScope::Leads,
        0,
        vec![
            Fault::TooManyRequests(RetryAfter::None),
            Fault::TooManyRequests(RetryAfter::Seconds(7)),
            Fault::TooManyRequests(RetryAfter::HttpDate(90)),
            Fault::Blocked,
            Fault::Unpaid,
            Fault::Status(502),
            Fault::Status(1000),
            Fault::Status(101),
        ],
    );
    let resp = get(&sim, "/api/v4/leads").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), None);
    assert_eq!(header(&resp, "content-type").as_deref(), Some("text/html"));
    let body = resp.text().await.expect("body");
    assert!(body.contains("429 Too Many Requests") && body.contains("nginx"));
    assert!(serde_json::from_str::<Value>(&body).is_err());

    let resp = get(&sim, "/api/v4/leads").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("7"));

    let resp = get(&sim, "/api/v4/leads").await;
    assert_eq!(resp.status(), 429);
    let at = http_date(&header(&resp, "retry-after").expect("retry-after"));
    let date = http_date(&header(&resp, "date").expect("date"));
    assert!(
        (89..=90).contains(&(at - date)),
        "an HTTP date 90 s after the server's Date"
    );
    assert!((at - (sim.server_now() + 90)).abs() <= 2);

    let resp = get(&sim, "/api/v4/leads").await;
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "content-type").as_deref(), Some("text/html"));
    assert!(resp.text().await.expect("body").contains("403 Forbidden"));

    let resp = get(&sim, "/api/v4/leads").await;
    assert_eq!(resp.status(), 402);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(json(resp).await["status"], 402);

    let resp = get(&sim, "/api/v4/leads").await;
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.expect("body").contains("502 Bad Gateway"));
    assert_eq!(get(&sim, "/api/v4/leads").await.status(), 500, "1000");
    assert_eq!(get(&sim, "/api/v4/leads").await.status(), 500, "101");
    assert_eq!(get(&sim, "/api/v4/leads").await.status(), 200);
    assert_eq!(sim.stats().responses_429, 3);
}

#[tokio::test]
async fn queued_faults_skip_scope_and_queue_up() {
    let sim = sim(10).await;
    let started = std::time::Instant::now();
    sim.queue_faults(FaultScope::Leads, 2, vec![Fault::Status(500)]);
    sim.queue_faults(FaultScope::Leads, 1, vec![Fault::Status(503)]);
    sim.queue_faults(FaultScope::Events, 0, vec![Fault::Status(504)]);
    // other paths neither count nor get the lead faults
    assert_eq!(get(&sim, "/api/v4/account").await.status(), 200);
    assert_eq!(get(&sim, "/api/v4/events").await.status(), 504);
    let deletions = "/api/v4/events?filter[type]=lead_deleted,lead_restored";
    assert_eq!(get(&sim, deletions).await.status(), 204);
    let lead_statuses = {
        let mut out = Vec::new();
        for _ in 0..6 {
            out.push(get(&sim, "/api/v4/leads").await.status().as_u16());
        }
        out
    };
    assert_eq!(
        lead_statuses,
        vec![200, 200, 500, 200, 503, 200],
        "skip 2, fault; then the later call's skip 1, fault"
    );

    // Any covers every path; faults come before auth
    sim.queue_faults(FaultScope::Any, 1, vec![Fault::Status(500), Fault::Blocked]);
    assert_eq!(get(&sim, "/api/v4/customers").await.status(), 404);
    assert_eq!(get_as(&sim, "/api/v4/account", "bad").await.status(), 500);
    assert_eq!(get_as(&sim, "/api/v4/leads", "bad").await.status(), 403);
    assert_eq!(get_as(&sim, "/api/v4/leads", "bad").await.status(), 401);

    // fail_next_lead_requests replaces its own earlier call
    sim.fail_next_lead_requests(5, 503);
    sim.fail_next_lead_requests(1, 500);
    assert_eq!(get(&sim, "/api/v4/leads").await.status(), 500);
    assert_eq!(get(&sim, "/api/v4/leads").await.status(), 200);

    // faulted requests count in stats and in the rate window
    let stats = sim.stats();
    assert_eq!(stats.requests, 15);
    assert_eq!(stats.lead_requests, 10);
    // All 15 in one second, unless a loaded machine spread them wider.
    if started.elapsed() < Duration::from_secs(1) {
        assert_eq!(stats.max_requests_in_any_second, 15);
    } else {
        assert!((1..=15).contains(&stats.max_requests_in_any_second));
    }
}

#[tokio::test]
async fn faulted_requests_skip_the_churn_hook() {
    let sim = sim(50).await;
    sim.set_churn_per_lead_request(3);
    sim.queue_faults(
        FaultScope::Leads,
        0,
        vec![Fault::ShortPage, Fault::TruncatedBody, Fault::Status(500)],
    );
    for _ in 0..3 {
        get(&sim, "/api/v4/leads").await;
    }
    assert!(sim.mutations().is_empty());
    assert_eq!(get(&sim, "/api/v4/leads").await.status(), 200);
    assert_eq!(sim.mutations().len(), 3);
}

#[tokio::test]
async fn blocked_unpaid_and_throttle_answer_every_path() {
    let sim = Simulator::start(SimulatorConfig {
        leads: 10,
        tie_block: 0,
        rate_limit_per_second: 12,
        ..SimulatorConfig::default()
    })
    .await
    .expect("start");
    let started = std::time::Instant::now();
    sim.queue_faults(FaultScope::Any, 0, vec![Fault::EmptyObject]);
    sim.set_blocked(true);
    sim.set_unpaid(true);
    for path in ["/api/v4/leads", "/api/v4/account", "/api/v4/events", "/x"] {
        let resp = get_as(&sim, path, "revoked").await;
        assert_eq!(resp.status(), 403, "{path}");
        assert!(resp.text().await.expect("body").contains("nginx"));
    }
    sim.set_blocked(false);
    assert_eq!(get(&sim, "/api/v4/account").await.status(), 402);
    assert_eq!(get(&sim, "/x").await.status(), 402);
    sim.set_unpaid(false);

    sim.throttle_for(Duration::from_millis(300), RetryAfter::Seconds(2));
    for path in ["/api/v4/leads", "/api/v4/account"] {
        let resp = get(&sim, path).await;
        assert_eq!(resp.status(), 429, "{path}");
        assert_eq!(header(&resp, "retry-after").as_deref(), Some("2"));
    }
    sim.throttle_for(Duration::from_millis(300), RetryAfter::HttpDate(30));
    let resp = get(&sim, "/api/v4/events").await;
    assert_eq!(resp.status(), 429);
    let at = http_date(&header(&resp, "retry-after").expect("retry-after"));
    assert!((at - (sim.server_now() + 30)).abs() <= 2);
    // the queued fault waited for the block, unpaid and throttle to pass
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(
        get(&sim, "/api/v4/account")
            .await
            .text()
            .await
            .expect("body"),
        "{}"
    );
    assert_eq!(get(&sim, "/api/v4/account").await.status(), 200);

    // the rate window comes first: its 429 has no Retry-After
    sim.set_blocked(true);
    for _ in 0..10 {
        assert_eq!(get(&sim, "/api/v4/leads").await.status(), 403);
    }
    let resp = get(&sim, "/api/v4/leads").await;
    if started.elapsed() < Duration::from_secs(1) {
        assert_eq!(resp.status(), 429, "13th request of the second");
    } else {
        // A loaded machine spread the 13 over more than a second.
        assert!(
            matches!(resp.status().as_u16(), 403 | 429),
            "{}",
            resp.status()
        );
    }
    assert_eq!(header(&resp, "retry-after"), None);
}

#[tokio::test]
async fn date_header_and_stamps_follow_the_clock_offset() {
    let sim = sim(20).await;
    let local = account::now_unix();
    let resp = get(&sim, "/api/v4/leads").await;
    let date = http_date(&header(&resp, "date").expect("date"));
    assert!((date - local).abs() <= 2);

    sim.set_clock_offset(86_400);
    assert!((sim.server_now() - (account::now_unix() + 86_400)).abs() <= 1);
    for (path, status) in [
        ("/api/v4/leads", 200),
        ("/api/v4/leads?limit=5&page=99", 204),
        ("/api/v4/nowhere", 404),
    ] {
        let resp = get(&sim, path).await;
        assert_eq!(resp.status(), status);
        let date = http_date(&header(&resp, "date").expect("date"));
        assert!((date - (local + 86_400)).abs() <= 3, "{path}");
    }
    let resp = get_as(&sim, "/api/v4/leads", "bad").await;
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "date").is_some());

    let ids = sim.alive_ids();
    assert!(sim.update_lead(ids[0]));
    let updated = lead_by_id(&sim, ids[0])["updated_at"]
        .as_i64()
        .expect("updated_at");
    assert!((updated - sim.server_now()).abs() <= 1);
    let added = sim.add_lead();
    let new = lead_by_id(&sim, added);
    assert!((new["created_at"].as_i64().expect("created_at") - sim.server_now()).abs() <= 1);
    assert!(sim.delete_lead(ids[1]));
    let deleted = json(get(&sim, "/api/v4/leads?with=only_deleted").await).await;
    let deleted_at = deleted["_embedded"]["leads"][0]["updated_at"]
        .as_i64()
        .expect("deleted_at");
    assert!((deleted_at - sim.server_now()).abs() <= 1);
    let events = json(get(&sim, "/api/v4/events").await).await;
    let event_at = events["_embedded"]["events"][0]["created_at"]
        .as_i64()
        .expect("created_at");
    assert!((event_at - sim.server_now()).abs() <= 1);
    let acct = json(get(&sim, "/api/v4/account").await).await;
    assert!((acct["updated_at"].as_i64().expect("updated_at") - sim.server_now()).abs() <= 1);
    // the filter on updated_at sees the skewed stamp
    let from = sim.server_now() - 5;
    let body = json(
        get(
            &sim,
            &format!("/api/v4/leads?filter[updated_at][from]={from}"),
        )
        .await,
    )
    .await;
    assert_eq!(ids_of(&body), vec![ids[0], added]);

    sim.set_clock_offset(-3_600);
    let date = http_date(&header(&get(&sim, "/api/v4/account").await, "date").expect("date"));
    assert!((date - (local - 3_600)).abs() <= 3);
}

#[tokio::test]
async fn stamp_lead_ahead_lists_it_in_the_future() {
    let sim = sim(30).await;
    let id = sim.alive_ids()[4];
    let before = lead_by_id(&sim, id);
    assert!(sim.stamp_lead_ahead(id, 86_400));
    assert!(!sim.stamp_lead_ahead(7, 86_400));
    let after = lead_by_id(&sim, id);
    assert_ne!(after["name"], before["name"]);
    let stamp = after["updated_at"].as_i64().expect("updated_at");
    assert!((stamp - (sim.server_now() + 86_400)).abs() <= 1);
    let body = json(get(&sim, "/api/v4/leads?order[updated_at]=desc&limit=3").await).await;
    assert_eq!(ids_of(&body)[0], id);
    let from = sim.server_now() + 3_600;
    let body = json(
        get(
            &sim,
            &format!("/api/v4/leads?filter[updated_at][from]={from}"),
        )
        .await,
    )
    .await;
    assert_eq!(ids_of(&body), vec![id]);
    assert_eq!(sim.mutations(), vec![Mutation::Updated(id)]);
}

#[tokio::test]
async fn bulk_update_stamps_one_second_all_visible() {
    let sim = sim(300).await;
    let ids: Vec<i64> = sim.alive_ids().into_iter().step_by(3).take(80).collect();
    let mut asked = ids.clone();
    asked.push(1);
    asked.push(ids[0]);
    assert_eq!(sim.bulk_update(&asked), 80, "unknown and repeated ids");
    assert_eq!(sim.mutations().len(), 80);
    let leads = sim.alive_leads();
    let stamps: std::collections::BTreeSet<i64> = leads
        .iter()
        .filter(|l| l["id"].as_i64().is_some_and(|id| ids.contains(&id)))
        .filter_map(|l| l["updated_at"].as_i64())
        .collect();
    assert_eq!(stamps.len(), 1, "one second for the whole edit");
    let t = *stamps.first().expect("stamp");
    assert!((t - sim.server_now()).abs() <= 1);
    let body = json(
        get(
            &sim,
            &format!(
                "/api/v4/leads?filter[updated_at][from]={t}&filter[updated_at][to]={t}&order[id]=asc&limit=250"
            ),
        )
        .await,
    )
    .await;
    assert_eq!(ids_of(&body), ids);
}

#[tokio::test]
async fn scheduled_bulk_update_fires_after_n_lead_requests() {
    let sim = sim(200).await;
    let before = sim.alive_leads();
    sim.schedule_bulk_update(3, 25);
    get(&sim, "/api/v4/leads?limit=250").await;
    get(&sim, "/api/v4/account").await;
    get(&sim, "/api/v4/leads?limit=250").await;
    assert!(sim.bulk_updated_ids().is_empty());
    assert_eq!(sim.alive_leads(), before);
    // the third lead request is answered from the account before the edit
    let third = json(get(&sim, "/api/v4/leads?limit=250&with=contacts").await).await;
    assert_eq!(third["_embedded"]["leads"], Value::Array(before.clone()));
    let changed = sim.bulk_updated_ids();
    assert_eq!(changed.len(), 25);
    let leads = sim.alive_leads();
    let stamps: std::collections::BTreeSet<i64> = leads
        .iter()
        .filter(|l| l["id"].as_i64().is_some_and(|id| changed.contains(&id)))
        .filter_map(|l| l["updated_at"].as_i64())
        .collect();
    assert_eq!(stamps.len(), 1);
    let t = *stamps.first().expect("stamp");
    let body = json(
        get(
            &sim,
            &format!("/api/v4/leads?filter[updated_at][from]={t}&order[id]=asc&limit=250"),
        )
        .await,
    )
    .await;
    assert_eq!(ids_of(&body), changed);
    // once only; after = 0 runs at once
    get(&sim, "/api/v4/leads").await;
    assert_eq!(sim.bulk_updated_ids().len(), 25);
    sim.schedule_bulk_update(0, 5);
    assert_eq!(sim.bulk_updated_ids().len(), 30);
    // same seed, same picks
    let again = self::sim(200).await;
    again.schedule_bulk_update(1, 25);
    get(&again, "/api/v4/leads").await;
    assert_eq!(again.bulk_updated_ids(), changed);
}

#[tokio::test]
async fn late_visible_update_appears_with_its_old_stamp() {
    let sim = sim(40).await;
    let ids = sim.alive_ids();
    let id = ids[7];
    let old = lead_by_id(&sim, id);
    let called_at = sim.server_now();
    assert!(sim.update_lead_visible_after(id, Duration::from_millis(600)));
    assert!(!sim.update_lead_visible_after(1, Duration::from_millis(600)));
    assert_eq!(sim.mutations(), vec![Mutation::Updated(id)]);
    assert_eq!(
        lead_by_id(&sim, id),
        old,
        "alive_leads shows what is served"
    );
    let by_id = json(
        get(
            &sim,
            &format!("/api/v4/leads?filter[id]={id}&with=contacts"),
        )
        .await,
    )
    .await;
    assert_eq!(by_id["_embedded"]["leads"][0], old);
    let recent = format!("/api/v4/leads?filter[updated_at][from]={called_at}");
    assert_eq!(
        get(&sim, &recent).await.status(),
        204,
        "invisible to filters"
    );
    let top = json(get(&sim, "/api/v4/leads?order[updated_at]=desc&limit=1").await).await;
    assert!(
        top["_embedded"]["leads"][0]["updated_at"].as_i64() < Some(called_at),
        "invisible to the order"
    );

    tokio::time::sleep(Duration::from_millis(700)).await;
    let new = lead_by_id(&sim, id);
    assert_ne!(new, old);
    let stamp = new["updated_at"].as_i64().expect("updated_at");
    assert!(stamp >= called_at && stamp <= called_at + 1 && stamp <= sim.server_now());
    let by_id = json(
        get(
            &sim,
            &format!("/api/v4/leads?filter[id]={id}&with=contacts"),
        )
        .await,
    )
    .await;
    assert_eq!(by_id["_embedded"]["leads"][0], new);
    let listed = json(get(&sim, &recent).await).await;
    assert_eq!(ids_of(&listed), vec![id], "listed with the old stamp");

    // a deletion during the lag is visible at once; by id only alive leads
    let other = ids[9];
    assert!(sim.update_lead_visible_after(other, Duration::from_secs(30)));
    assert!(sim.delete_lead(other));
    assert_eq!(
        get(&sim, &format!("/api/v4/leads?filter[id][]={other}"))
            .await
            .status(),
        204
    );
    let deleted = json(get(&sim, "/api/v4/leads?with=only_deleted").await).await;
    assert_eq!(ids_of(&deleted), vec![other]);
    assert!(sim.restore_lead(other));
    let restored = lead_by_id(&sim, other);
    assert!(
        restored["updated_at"].as_i64() >= Some(called_at),
        "the change shows"
    );
}

#[tokio::test]
async fn ignored_filters_answer_the_unfiltered_list_in_order() {
    let sim = sim(60).await;
    let ids = sim.alive_ids();
    sim.delete_lead(ids[0]);
    let alive = sim.alive_ids();
    sim.set_filters_ignored(true);
    let query = format!(
        "/api/v4/leads?filter[id]={}&filter[updated_at][from]=2000000000&order[id]=desc&limit=250",
        ids[5]
    );
    let body = json(get(&sim, &query).await).await;
    let mut expected = alive.clone();
    expected.reverse();
    assert_eq!(ids_of(&body), expected, "filters ignored, order kept");
    let body = json(get(&sim, "/api/v4/leads?filter[id]=1&limit=10&page=2").await).await;
    assert_eq!(ids_of(&body), alive[10..20].to_vec(), "page and limit kept");
    assert_eq!(get(&sim, "/api/v4/leads?filter[id]=x").await.status(), 400);
    let deleted = json(get(&sim, "/api/v4/leads?with=only_deleted&filter[id]=1").await).await;
    assert_eq!(ids_of(&deleted), vec![ids[0]]);

    sim.set_filters_ignored(false);
    let body = json(get(&sim, &format!("/api/v4/leads?filter[id]={}", ids[5])).await).await;
    assert_eq!(ids_of(&body), vec![ids[5]]);
    assert_eq!(
        get(&sim, &format!("/api/v4/leads?filter[id]={}", ids[0]))
            .await
            .status(),
        204,
        "a deleted lead is absent by id"
    );
}

#[tokio::test]
async fn raw_leads_are_listed_but_only_integer_ids_are_leads() {
    let sim = sim(10).await;
    let ids = sim.alive_ids();
    let t = sim.server_now();
    let id_less = json!({"name": "no id", "updated_at": t, "price": null});
    let string_id = json!({"id": "12345", "name": "string id", "updated_at": "soon"});
    let odd = json!({
        "id": 99_999_999,
        "name": "NUL \u{0} and 𝄞 and 🚀",
        "price": "1200",
        "updated_at": t,
        "created_at": t,
        "custom_fields_values": {"510001": "not an array"},
        "_embedded": {"tags": "none"},
    });
    sim.add_raw_lead(id_less.clone());
    sim.add_raw_lead(string_id.clone());
    sim.add_raw_lead(odd.clone());
    sim.add_raw_lead(json!(42));

    let mut expected_ids = ids.clone();
    expected_ids.push(99_999_999);
    assert_eq!(sim.alive_ids(), expected_ids);
    assert_eq!(sim.alive_leads().last(), Some(&odd), "exactly as given");

    let body = json(get(&sim, "/api/v4/leads?limit=250").await).await;
    let listed = body["_embedded"]["leads"]
        .as_array()
        .expect("leads")
        .clone();
    assert_eq!(listed.len(), 14);
    assert_eq!(
        &listed[..3],
        &[id_less.clone(), string_id.clone(), json!(42)],
        "no integer id sorts first ascending"
    );
    assert_eq!(listed.last(), Some(&odd));
    let body = json(get(&sim, "/api/v4/leads?order[id]=desc&limit=250").await).await;
    let listed = body["_embedded"]["leads"]
        .as_array()
        .expect("leads")
        .clone();
    assert_eq!(listed[0], odd);
    assert_eq!(listed.len(), 14);
    assert!(listed[11..].contains(&id_less), "and last descending");

    let from = format!("/api/v4/leads?filter[updated_at][from]={t}&limit=250");
    let body = json(get(&sim, &from).await).await;
    let listed = body["_embedded"]["leads"]
        .as_array()
        .expect("leads")
        .clone();
    assert_eq!(
        listed,
        vec![id_less, odd.clone()],
        "a string updated_at matches no range"
    );
    let body = json(get(&sim, "/api/v4/leads?filter[id]=99999999").await).await;
    assert_eq!(body["_embedded"]["leads"], json!([odd]));
    assert_eq!(
        get(&sim, "/api/v4/leads?filter[id]=12345").await.status(),
        204
    );
    // a raw object replaces the lead of its id
    let replacement = json!({"id": ids[0], "name": 5});
    sim.add_raw_lead(replacement.clone());
    assert_eq!(lead_by_id(&sim, ids[0]), replacement);
    assert_eq!(sim.alive_ids().len(), expected_ids.len());
}

#[tokio::test]
async fn request_log_records_every_request_and_its_status() {
    let sim = Simulator::start(SimulatorConfig {
        leads: 10,
        tie_block: 0,
        rate_limit_per_second: 5,
        ..SimulatorConfig::default()
    })
    .await
    .expect("start");
    get(&sim, "/api/v4/leads?limit=5").await;
    get(&sim, "/api/v4/leads?limit=5&page=9").await;
    get_as(&sim, "/api/v4/account", "bad").await;
    get(&sim, "/api/v4/nowhere").await;
    sim.queue_faults(FaultScope::Any, 0, vec![Fault::DroppedConnection]);
    let dropped = reqwest::Client::new()
        .get(format!("{}/api/v4/events", sim.base_url()))
        .send()
        .await;
    assert!(dropped.is_err());
    get(&sim, "/api/v4/leads").await;
    let log = sim.request_log();
    let seen: Vec<(&str, &str, u16)> = log
        .iter()
        .map(|r| (r.path.as_str(), r.query.as_str(), r.status))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/api/v4/leads", "limit=5", 200),
            ("/api/v4/leads", "limit=5&page=9", 204),
            ("/api/v4/account", "", 401),
            ("/api/v4/nowhere", "", 404),
            ("/api/v4/events", "", 0),
            ("/api/v4/leads", "", 429),
        ]
    );
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(log[0].at <= tokio::time::Instant::now());
}

/// One request of every listing kind, by the scope that covers it.
fn one_request_per_listing(sim: &Simulator) -> Vec<(FaultScope, String)> {
    let alive = sim.alive_ids()[0];
    vec![
        (
            FaultScope::LeadWalk,
            "/api/v4/leads?filter[updated_at][from]=1&order[updated_at]=asc&limit=5".into(),
        ),
        (
            FaultScope::CrowdedSecond,
            "/api/v4/leads?filter%5Bupdated_at%5D%5Bfrom%5D=1&filter%5Bupdated_at%5D%5Bto%5D=4000000000&order%5Bid%5D=asc&limit=5&page=2".into(),
        ),
        (
            FaultScope::DeletedLeads,
            "/api/v4/leads?with=only_deleted,source_id&order[updated_at]=asc".into(),
        ),
        (
            FaultScope::LeadsById,
            format!("/api/v4/leads?filter[id][]={alive}&order[id]=asc"),
        ),
        (
            FaultScope::Events,
            "/api/v4/events?filter[type]=lead_deleted".into(),
        ),
        (
            FaultScope::Account,
            "/api/v4/account?with=datetime_settings".into(),
        ),
        (FaultScope::Pipelines, "/api/v4/leads/pipelines".into()),
        (
            FaultScope::CustomFields,
            "/api/v4/leads/custom_fields?page=1&limit=50".into(),
        ),
        (FaultScope::Users, "/api/v4/users?page=1&limit=250".into()),
        (FaultScope::LossReasons, "/api/v4/leads/loss_reasons".into()),
        (FaultScope::Tags, "/api/v4/leads/tags?page=1&limit=250".into()),
    ]
}

#[tokio::test]
async fn each_listing_scope_faults_its_own_requests_only_and_skips_only_them() {
    let sim = sim(40).await;
    sim.delete_lead(sim.alive_ids()[1]);
    let requests = one_request_per_listing(&sim);
    let scopes: Vec<FaultScope> = requests.iter().map(|(s, _)| *s).collect();
    assert_eq!(scopes, FaultScope::LISTINGS.to_vec());
    for (scope, _) in &requests {
        sim.queue_faults(*scope, 1, vec![Fault::Status(503)]);
        // the first round passes: its own request is the one skipped
        for (other, path_and_query) in &requests {
            let status = get(&sim, path_and_query).await.status();
            assert_eq!(
                status, 200,
                "{scope:?}, round 1: {other:?} {path_and_query}"
            );
        }
        for (other, path_and_query) in &requests {
            let status = get(&sim, path_and_query).await.status();
            let want = if other == scope { 503 } else { 200 };
            assert_eq!(
                status, want,
                "{scope:?}, round 2: {other:?} {path_and_query}"
            );
        }
        assert_eq!(sim.clear_faults(), 0, "{scope:?}: its fault was given");
    }
    for (scope, path_and_query) in &requests {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        for other in FaultScope::LISTINGS {
            assert_eq!(
                other.covers_get(path, query),
                other == *scope,
                "{other:?} {path_and_query}"
            );
        }
    }

    // Leads still covers every lead request, and its skip counts them all
    sim.queue_faults(FaultScope::Leads, 4, vec![Fault::Status(502)]);
    let mut statuses = Vec::new();
    for (_, path_and_query) in &requests {
        statuses.push(get(&sim, path_and_query).await.status().as_u16());
    }
    statuses.push(get(&sim, "/api/v4/leads").await.status().as_u16());
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 502]
    );
    // a batch whose skip is never reached is counted when cleared
    sim.queue_faults(
        FaultScope::Tags,
        50,
        vec![Fault::ShortPage, Fault::EmptyList],
    );
    assert_eq!(sim.clear_faults(), 2);
    assert_eq!(get(&sim, "/api/v4/leads/tags").await.status(), 200);
}

/// The answer to `path_and_query` with `fault` queued for `scope`: status
/// and body text.
async fn faulted(
    sim: &Simulator,
    scope: FaultScope,
    fault: Fault,
    path_and_query: &str,
) -> (u16, String) {
    sim.queue_faults(scope, 0, vec![fault.clone()]);
    let resp = get(sim, path_and_query).await;
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("body");
    assert_eq!(sim.clear_faults(), 0, "{fault:?} given to {path_and_query}");
    (status, body)
}

/// The real answer's body, as JSON.
async fn real(sim: &Simulator, path_and_query: &str) -> Value {
    let resp = get(sim, path_and_query).await;
    assert_eq!(resp.status(), 200, "{path_and_query}");
    json(resp).await
}

/// An account with at least `events` lead_deleted events.
async fn with_deletions(events: usize) -> Simulator {
    let sim = sim(60).await;
    for id in sim.alive_ids().into_iter().take(events) {
        sim.delete_lead(id);
    }
    sim
}

#[tokio::test]
async fn empty_list_answers_the_listings_own_key_with_next() {
    let sim = with_deletions(3).await;
    let cases = [
        (
            FaultScope::Events,
            "/api/v4/events?filter[type]=lead_deleted&page=2",
            "events",
            2,
        ),
        (
            FaultScope::Tags,
            "/api/v4/leads/tags?page=1&limit=250",
            "tags",
            1,
        ),
        (
            FaultScope::Pipelines,
            "/api/v4/leads/pipelines",
            "pipelines",
            1,
        ),
        (
            FaultScope::CustomFields,
            "/api/v4/leads/custom_fields?limit=50",
            "custom_fields",
            1,
        ),
        (FaultScope::Users, "/api/v4/users", "users", 1),
        (
            FaultScope::LossReasons,
            "/api/v4/leads/loss_reasons",
            "loss_reasons",
            1,
        ),
        (
            FaultScope::DeletedLeads,
            "/api/v4/leads?with=only_deleted&page=3",
            "leads",
            3,
        ),
        (
            FaultScope::LeadWalk,
            "/api/v4/leads?order[updated_at]=desc",
            "leads",
            1,
        ),
    ];
    for (scope, path_and_query, key, page) in cases {
        for fault in [Fault::EmptyList, Fault::EmptyLeads] {
            let (status, body) = faulted(&sim, scope, fault.clone(), path_and_query).await;
            assert_eq!(status, 200, "{fault:?} {path_and_query}");
            let body: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(
                body["_embedded"],
                json!({key: []}),
                "{fault:?} {path_and_query}"
            );
            assert_eq!(body["_page"], page);
            let next = body["_links"]["next"]["href"].as_str().expect("next");
            assert!(next.contains(&format!("page={}", page + 1)), "{next}");
        }
    }
    // the account is no list: its real answer
    let (status, body) = faulted(
        &sim,
        FaultScope::Account,
        Fault::EmptyList,
        "/api/v4/account",
    )
    .await;
    assert_eq!(status, 200);
    // `updated_at` is the simulator's now: the two answers may straddle a second.
    let mut faulted_account = serde_json::from_str::<Value>(&body).expect("json");
    let mut real_account = real(&sim, "/api/v4/account").await;
    faulted_account["updated_at"] = json!(0);
    real_account["updated_at"] = json!(0);
    assert_eq!(faulted_account, real_account);
}

#[tokio::test]
async fn short_page_halves_events_and_structure_listings_without_next() {
    let sim = with_deletions(12).await;
    let cases = [
        (
            FaultScope::Events,
            "/api/v4/events?filter[type]=lead_deleted&limit=10",
            "events",
            5,
        ),
        (
            FaultScope::Tags,
            "/api/v4/leads/tags?page=1&limit=250",
            "tags",
            3,
        ),
        (
            FaultScope::Pipelines,
            "/api/v4/leads/pipelines",
            "pipelines",
            1,
        ),
        (
            FaultScope::LossReasons,
            "/api/v4/leads/loss_reasons",
            "loss_reasons",
            2,
        ),
        (
            FaultScope::CustomFields,
            "/api/v4/leads/custom_fields?limit=4",
            "custom_fields",
            2,
        ),
        (
            FaultScope::LeadWalk,
            "/api/v4/leads?order[updated_at]=asc&limit=9",
            "leads",
            4,
        ),
        (
            FaultScope::DeletedLeads,
            "/api/v4/leads?with=only_deleted&limit=7",
            "leads",
            3,
        ),
    ];
    for (scope, path_and_query, key, kept) in cases {
        let full = real(&sim, path_and_query).await;
        let (status, body) = faulted(&sim, scope, Fault::ShortPage, path_and_query).await;
        assert_eq!(status, 200, "{path_and_query}");
        let body: Value = serde_json::from_str(&body).expect("json");
        let items = body["_embedded"][key].as_array().expect("list");
        assert_eq!(items.len(), kept, "{path_and_query}");
        assert_eq!(
            items[..],
            full["_embedded"][key].as_array().expect("list")[..kept]
        );
        assert!(body["_links"]["next"].is_null(), "{path_and_query}");
        assert_eq!(body["_links"]["self"], full["_links"]["self"]);
        assert_eq!(body["_page_count"], full["_page_count"], "{path_and_query}");
    }
    // one item (or none) left: 204
    for (scope, path_and_query) in [
        (FaultScope::Tags, "/api/v4/leads/tags?page=2&limit=5"),
        (FaultScope::Tags, "/api/v4/leads/tags?page=9"),
        (
            FaultScope::Events,
            "/api/v4/events?filter[type]=lead_deleted&limit=11&page=2",
        ),
        (
            FaultScope::LeadsById,
            &format!("/api/v4/leads?filter[id][]={}", sim.alive_ids()[0]),
        ),
    ] {
        let (status, body) = faulted(&sim, scope, Fault::ShortPage, path_and_query).await;
        assert_eq!((status, body.as_str()), (204, ""), "{path_and_query}");
    }
    // the account is no list: its real answer
    let (status, body) = faulted(
        &sim,
        FaultScope::Account,
        Fault::ShortPage,
        "/api/v4/account",
    )
    .await;
    assert_eq!(status, 200);
    // `updated_at` is the simulator's now: the two answers may straddle a second.
    let mut faulted_account = serde_json::from_str::<Value>(&body).expect("json");
    let mut real_account = real(&sim, "/api/v4/account").await;
    faulted_account["updated_at"] = json!(0);
    real_account["updated_at"] = json!(0);
    assert_eq!(faulted_account, real_account);
}

#[tokio::test]
async fn truncated_body_cuts_every_listing_and_204_and_empty_object_answer_any() {
    let sim = with_deletions(3).await;
    for (scope, path_and_query) in one_request_per_listing(&sim) {
        let before = get(&sim, &path_and_query).await.text().await.expect("body");
        let (status, cut) = faulted(&sim, scope, Fault::TruncatedBody, &path_and_query).await;
        let after = get(&sim, &path_and_query).await.text().await.expect("body");
        assert_eq!(status, 200, "{path_and_query}");
        // The account's `updated_at` is the simulator's now: a second may
        // turn between two answers, never between both pairs of them.
        assert!(
            [before, after]
                .iter()
                .any(|full| !cut.is_empty() && full.starts_with(&cut) && cut.len() < full.len()),
            "{path_and_query}"
        );
        assert!(
            serde_json::from_str::<Value>(&cut).is_err(),
            "{path_and_query}"
        );

        let (status, body) = faulted(&sim, scope, Fault::Status(204), &path_and_query).await;
        assert_eq!((status, body.as_str()), (204, ""), "{path_and_query}");
        let (status, body) = faulted(&sim, scope, Fault::EmptyObject, &path_and_query).await;
        assert_eq!((status, body.as_str()), (200, "{}"), "{path_and_query}");
    }
    // a listing past its end (204) gets a cut page naming the page asked
    let (status, cut) = faulted(
        &sim,
        FaultScope::Tags,
        Fault::TruncatedBody,
        "/api/v4/leads/tags?page=4",
    )
    .await;
    assert_eq!((status, cut.as_str()), (200, "{\"_page\":4,\"_emb"));
    let (status, cut) = faulted(
        &sim,
        FaultScope::Events,
        Fault::TruncatedBody,
        "/api/v4/events?filter[type]=nothing",
    )
    .await;
    assert_eq!((status, cut.as_str()), (200, "{\"_page\":1,\"_emb"));
}

#[tokio::test]
async fn string_id_sends_the_first_elements_id_as_a_string() {
    let sim = with_deletions(3).await;
    // The account's answer carries the server's time: held still, the two
    // answers compared differ only by the fault.
    sim.freeze_clock(true);
    let cases = [
        (
            FaultScope::LeadWalk,
            "/api/v4/leads?order[updated_at]=asc&limit=5",
            Some("leads"),
        ),
        (
            FaultScope::LeadsById,
            "/api/v4/leads?filter[id][]=1000010&filter[id][]=1000011&filter[id][]=1000012",
            Some("leads"),
        ),
        (
            FaultScope::DeletedLeads,
            "/api/v4/leads?with=only_deleted",
            Some("leads"),
        ),
        (FaultScope::Tags, "/api/v4/leads/tags", Some("tags")),
        (
            FaultScope::Pipelines,
            "/api/v4/leads/pipelines",
            Some("pipelines"),
        ),
        (FaultScope::Users, "/api/v4/users", Some("users")),
        (FaultScope::Account, "/api/v4/account", None),
    ];
    for (scope, path_and_query, key) in cases {
        let full = real(&sim, path_and_query).await;
        let (status, body) = faulted(&sim, scope, Fault::StringId, path_and_query).await;
        assert_eq!(status, 200);
        let body: Value = serde_json::from_str(&body).expect("json");
        let (got, want) = match key {
            Some(key) => (
                body["_embedded"][key].clone(),
                full["_embedded"][key].clone(),
            ),
            None => (body.clone(), full.clone()),
        };
        let mut expected = want.clone();
        let first = match key {
            Some(_) => &mut expected[0],
            None => &mut expected,
        };
        let id = first["id"].as_i64().expect("a numeric id");
        first["id"] = json!(id.to_string());
        assert_eq!(got, expected, "{path_and_query}: only the first id changes");
        assert!(
            got.as_array()
                .is_none_or(|items| items.len() < 2 || items[1]["id"].is_i64())
        );
    }
    // events: ids are strings already; StringEntityId turns the lead's id
    let path_and_query = "/api/v4/events?filter[type]=lead_deleted";
    let full = real(&sim, path_and_query).await;
    let (_, body) = faulted(&sim, FaultScope::Events, Fault::StringId, path_and_query).await;
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json"), full);
    let (_, body) = faulted(
        &sim,
        FaultScope::Events,
        Fault::StringEntityId,
        path_and_query,
    )
    .await;
    let body: Value = serde_json::from_str(&body).expect("json");
    let events = body["_embedded"]["events"].as_array().expect("events");
    let lead = full["_embedded"]["events"][0]["entity_id"]
        .as_i64()
        .expect("lead id");
    assert_eq!(events[0]["entity_id"], json!(lead.to_string()));
    assert!(events[1..].iter().all(|e| e["entity_id"].is_i64()));
    // StringEntityId leaves elements without one alone; an empty answer stays 204
    let (_, body) = faulted(
        &sim,
        FaultScope::Tags,
        Fault::StringEntityId,
        "/api/v4/leads/tags",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        real(&sim, "/api/v4/leads/tags").await
    );
    let (status, _) = faulted(
        &sim,
        FaultScope::Tags,
        Fault::StringId,
        "/api/v4/leads/tags?page=3",
    )
    .await;
    assert_eq!(status, 204);
}
