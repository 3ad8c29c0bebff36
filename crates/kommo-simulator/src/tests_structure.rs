//! End-to-end tests of the account structure endpoints, lead contacts and
//! stage history over real HTTP on 127.0.0.1: their shapes and paging, the
//! users 403, `with=contacts`, that every lead references the structure,
//! that the generated history chains to each lead's stage, that a stage
//! move through the simulator writes exactly one event, and that deleted
//! structure items stop being listed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

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

async fn get_as(sim: &Simulator, path_and_query: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path_and_query}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent")
}

async fn get(sim: &Simulator, path_and_query: &str) -> reqwest::Response {
    get_as(sim, path_and_query, TOKEN).await
}

/// A 200 `application/hal+json` body.
async fn hal(sim: &Simulator, path_and_query: &str) -> Value {
    let resp = get(sim, path_and_query).await;
    assert_eq!(resp.status(), 200, "{path_and_query}");
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("application/hal+json")
    );
    resp.json().await.expect("json body")
}

/// Pages `path` with `limit` until a 204, checking `_links.next` is there
/// exactly when a next page is (the list holds `total` items); returns the
/// items under `key`.
async fn page_all(
    sim: &Simulator,
    path: &str,
    key: &str,
    limit: usize,
    total: usize,
) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let url = format!("{path}?limit={limit}&page={page}");
        let resp = get(sim, &url).await;
        if resp.status() == 204 {
            assert!(resp.bytes().await.expect("body").is_empty());
            break;
        }
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["_page"], page);
        let items = body["_embedded"][key].as_array().expect("items").clone();
        assert!(!items.is_empty() && items.len() <= limit);
        out.extend(items);
        let next = body["_links"]["next"]["href"].as_str();
        assert_eq!(
            next.is_none(),
            out.len() == total,
            "{url}: next only before the last page"
        );
        if let Some(next) = next {
            assert!(next.ends_with(&format!("page={}", page + 1)), "{next}");
        }
        assert!(
            body["_links"]["self"]["href"]
                .as_str()
                .is_some_and(|h| h.starts_with(&sim.base_url()) && h.contains(path))
        );
    }
    assert_eq!(out.len(), total);
    out
}

fn ids(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn pipelines_list_their_statuses_with_won_and_lost_in_every_pipeline() {
    let sim = sim(10).await;
    let body = hal(&sim, "/api/v4/leads/pipelines").await;
    let pipelines = body["_embedded"]["pipelines"].as_array().expect("array");
    assert_eq!(body["_total_items"], pipelines.len());
    assert!(body.get("_page").is_none(), "not paged");
    assert_eq!(pipelines.len(), 2);
    assert_eq!(pipelines.iter().filter(|p| p["is_main"] == true).count(), 1);
    for p in pipelines {
        for key in ["id", "name", "sort", "is_unsorted_on", "is_archive"] {
            assert!(!p[key].is_null(), "{key}");
        }
        assert_eq!(p["account_id"], 31_234_567);
        let statuses = p["_embedded"]["statuses"].as_array().expect("statuses");
        assert!(statuses.iter().all(|s| s["pipeline_id"] == p["id"]));
        assert!(
            statuses
                .iter()
                .all(|s| s["color"].as_str().is_some_and(|c| c.starts_with('#')))
        );
        assert_eq!(statuses[0]["type"], 1, "the first is the unsorted one");
        assert!(statuses[1..].iter().all(|s| s["type"] == 0));
        let won = statuses.iter().find(|s| s["id"] == 142).expect("142");
        let lost = statuses.iter().find(|s| s["id"] == 143).expect("143");
        assert_eq!(won["name"], "Closed - won");
        assert_eq!(lost["name"], "Closed - lost");
        assert_eq!(won["is_editable"], false);
        let sorts: Vec<i64> = statuses.iter().filter_map(|s| s["sort"].as_i64()).collect();
        assert!(sorts.windows(2).all(|w| w[0] < w[1]), "listed by sort");
        assert!(
            statuses
                .iter()
                .all(|s| s["_links"]["self"]["href"].is_string())
        );
    }
}

#[tokio::test]
async fn custom_fields_page_with_next_only_before_the_last_page_and_204_past_it() {
    let sim = sim(10).await;
    let all = page_all(&sim, "/api/v4/leads/custom_fields", "custom_fields", 4, 10).await;
    assert_eq!(all.len(), 10);
    let first = hal(&sim, "/api/v4/leads/custom_fields?limit=4").await;
    assert_eq!(first["_total_items"], 10);
    assert_eq!(first["_page_count"], 3);
    // default limit 50: one page, no next
    let whole = hal(&sim, "/api/v4/leads/custom_fields").await;
    assert_eq!(whole["_embedded"]["custom_fields"], json!(all));
    assert!(whole["_links"].get("next").is_none());
    assert_eq!(
        get(&sim, "/api/v4/leads/custom_fields?page=2")
            .await
            .status(),
        204
    );
    assert_eq!(
        get(&sim, "/api/v4/leads/custom_fields?limit=251")
            .await
            .status(),
        400,
        "limit is at most 250"
    );
    assert_eq!(
        get(&sim, "/api/v4/leads/custom_fields?limit=250")
            .await
            .status(),
        200
    );
    for f in &all {
        assert_eq!(f["entity_type"], "leads");
        assert_eq!(f["is_api_only"], false);
        assert!(f.get("code").is_some() && f["sort"].is_i64());
        match f["type"].as_str().expect("type") {
            "select" | "multiselect" => {
                let enums = f["enums"].as_array().expect("enums");
                assert_eq!(enums.len(), 4);
                assert!(
                    enums
                        .iter()
                        .all(|e| e["id"].is_i64() && e["value"].is_string() && e["sort"].is_i64())
                );
            }
            _ => assert!(f["enums"].is_null()),
        }
    }
    let select = all.iter().find(|f| f["type"] == "select").expect("select");
    assert_eq!(
        ids(select["enums"].as_array().expect("enums")),
        [700_101, 700_102, 700_103, 700_104]
    );
}

#[tokio::test]
async fn users_page_and_answer_403_while_forbidden() {
    let sim = sim(10).await;
    let users = page_all(&sim, "/api/v4/users", "users", 3, 8).await;
    assert_eq!(users.len(), 8);
    assert!(users.iter().all(|u| u["name"].is_string()
        && u["email"].as_str().is_some_and(|e| e.contains('@'))
        && u["lang"].is_string()
        && u["rights"]["is_admin"].is_boolean()
        && u["rights"]["is_active"] == true));
    assert!(users.iter().any(|u| u["rights"]["is_admin"] == true));
    assert!(users.iter().any(|u| u["rights"]["is_admin"] == false));
    assert_eq!(get(&sim, "/api/v4/users?limit=300").await.status(), 400);

    sim.set_users_forbidden(true);
    let resp = get(&sim, "/api/v4/users").await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("application/problem+json")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], 403);
    assert_eq!(body["detail"], "Access denied");
    assert_eq!(
        get(&sim, "/api/v4/leads/pipelines").await.status(),
        200,
        "only the users list"
    );
    sim.set_users_forbidden(false);
    assert_eq!(get(&sim, "/api/v4/users").await.status(), 200);
}

#[tokio::test]
async fn loss_reasons_and_tags_are_served_and_tags_page() {
    let sim = sim(10).await;
    let body = hal(&sim, "/api/v4/leads/loss_reasons").await;
    let reasons = body["_embedded"]["loss_reasons"].as_array().expect("array");
    assert_eq!(ids(reasons), [4_000_001, 4_000_002, 4_000_003, 4_000_004]);
    for r in reasons {
        assert!(r["name"].is_string() && r["sort"].is_i64());
        assert!(r["created_at"].as_i64() <= r["updated_at"].as_i64());
        assert!(r["_links"]["self"]["href"].is_string());
    }

    let tags = page_all(&sim, "/api/v4/leads/tags", "tags", 4, 6).await;
    assert_eq!(tags.len(), 6);
    assert!(tags.iter().all(|t| {
        let o = t.as_object().expect("object");
        o.len() == 3 && t["name"].is_string() && o.contains_key("color")
    }));
    let added = sim.add_tag("новый тег");
    assert!(!ids(&tags).contains(&added));
    let tags = page_all(&sim, "/api/v4/leads/tags", "tags", 7, 7).await;
    assert_eq!(
        tags.last(),
        Some(&json!({"id": added, "name": "новый тег", "color": null}))
    );
    assert_eq!(get(&sim, "/api/v4/leads/tags?page=2").await.status(), 204);
}

#[tokio::test]
async fn account_gives_currency_and_time_zone() {
    let sim = sim(10).await;
    let plain = hal(&sim, "/api/v4/account").await;
    assert_eq!(plain["id"], 31_234_567);
    assert_eq!(plain["subdomain"], "simulated");
    assert_eq!(plain["currency"], "USD");
    assert!(plain["name"].is_string());
    assert!(plain.get("_embedded").is_none());
    sim.set_timezone("America/Sao_Paulo", "-03:00");
    let with = hal(&sim, "/api/v4/account?with=users_groups,datetime_settings").await;
    assert_eq!(
        with["_embedded"]["datetime_settings"]["timezone"],
        "America/Sao_Paulo"
    );
    assert_eq!(
        with["_embedded"]["datetime_settings"]["timezone_offset"],
        "-03:00"
    );
    let groups = with["_embedded"]["users_groups"]
        .as_array()
        .expect("groups");
    assert_eq!(ids(groups), [0, 401_001, 401_002, 401_003]);
}

#[tokio::test]
async fn structure_endpoints_need_the_token_are_logged_and_honour_block_and_unpaid() {
    let sim = sim(10).await;
    let paths = [
        "/api/v4/leads/pipelines",
        "/api/v4/leads/custom_fields",
        "/api/v4/users",
        "/api/v4/leads/loss_reasons",
        "/api/v4/leads/tags",
    ];
    for path in paths {
        assert_eq!(get_as(&sim, path, "wrong").await.status(), 401, "{path}");
    }
    sim.set_blocked(true);
    for path in paths {
        let resp = get(&sim, path).await;
        assert_eq!(resp.status(), 403, "{path}");
        assert!(resp.text().await.expect("body").contains("nginx"));
    }
    sim.set_blocked(false);
    sim.set_unpaid(true);
    for path in paths {
        assert_eq!(get(&sim, path).await.status(), 402, "{path}");
    }
    sim.set_unpaid(false);
    for path in paths {
        assert_eq!(get(&sim, path).await.status(), 200, "{path}");
    }
    let log = sim.request_log();
    assert_eq!(log.len(), 4 * paths.len());
    assert_eq!(sim.stats().requests, 4 * paths.len() as u64);
    assert_eq!(sim.stats().lead_requests, 0);
    assert!(log.iter().all(|r| paths.contains(&r.path.as_str())));
}

#[tokio::test]
async fn structure_snapshot_is_exactly_what_the_endpoints_serve() {
    let sim = sim(10).await;
    assert!(sim.rename_user(9_000_003, "Renamed user"));
    assert!(sim.rename_status(7_000_002, 143, "Perdido"));
    assert!(sim.rename_custom_field(510_005, "Source"));
    assert!(sim.rename_loss_reason(4_000_002, "Went elsewhere"));
    assert!(sim.rename_tag(30_002, "web"));
    assert!(!sim.rename_user(1, "nobody"));
    assert!(!sim.rename_status(7_000_001, 58_000_011, "other pipeline's"));
    let s = sim.structure();
    let served = |body: &Value, key: &str| body["_embedded"][key].clone();
    assert_eq!(
        s["pipelines"],
        served(&hal(&sim, "/api/v4/leads/pipelines").await, "pipelines")
    );
    assert_eq!(
        s["custom_fields"],
        served(
            &hal(&sim, "/api/v4/leads/custom_fields?limit=250").await,
            "custom_fields"
        )
    );
    assert_eq!(
        s["users"],
        served(&hal(&sim, "/api/v4/users?limit=250").await, "users")
    );
    assert_eq!(
        s["loss_reasons"],
        served(
            &hal(&sim, "/api/v4/leads/loss_reasons").await,
            "loss_reasons"
        )
    );
    assert_eq!(
        s["tags"],
        served(&hal(&sim, "/api/v4/leads/tags?limit=250").await, "tags")
    );
    let mut account = hal(&sim, "/api/v4/account?with=datetime_settings,users_groups").await;
    let mut snap = s["account"].clone();
    account["updated_at"] = json!(0);
    snap["updated_at"] = json!(0);
    assert_eq!(snap, account);

    // renamed, same ids
    let find = |list: &Value, id: i64| {
        list.as_array()
            .and_then(|l| l.iter().find(|i| i["id"] == id).cloned())
            .expect("listed")
    };
    assert_eq!(find(&s["users"], 9_000_003)["name"], "Renamed user");
    assert_eq!(find(&s["custom_fields"], 510_005)["name"], "Source");
    assert_eq!(
        find(&s["loss_reasons"], 4_000_002)["name"],
        "Went elsewhere"
    );
    assert_eq!(find(&s["tags"], 30_002)["name"], "web");
    let partners = find(&s["pipelines"], 7_000_002);
    assert_eq!(
        find(&partners["_embedded"]["statuses"], 143)["name"],
        "Perdido"
    );
    let sales = find(&s["pipelines"], 7_000_001);
    assert_eq!(
        find(&sales["_embedded"]["statuses"], 143)["name"],
        "Closed - lost",
        "143 of the other pipeline keeps its name"
    );
}

#[tokio::test]
async fn contacts_are_listed_only_with_with_contacts() {
    let sim = sim(300).await;
    let plain = hal(&sim, "/api/v4/leads?limit=250").await;
    assert!(
        plain["_embedded"]["leads"]
            .as_array()
            .expect("leads")
            .iter()
            .all(|l| l["_embedded"].get("contacts").is_none()
                && l["_embedded"]["tags"].is_array()
                && l["_embedded"]["companies"].is_array())
    );
    let with = hal(&sim, "/api/v4/leads?limit=250&with=loss_reason,contacts").await;
    let leads = with["_embedded"]["leads"].as_array().expect("leads");
    assert_eq!(leads.as_slice(), &sim.alive_leads()[..250]);
    let mut sizes = BTreeSet::new();
    for l in leads {
        let contacts = l["_embedded"]["contacts"].as_array().expect("contacts");
        sizes.insert(contacts.len());
        assert!(contacts.len() <= 3);
        if !contacts.is_empty() {
            assert_eq!(contacts.iter().filter(|c| c["is_main"] == true).count(), 1);
        }
        assert!(
            contacts
                .iter()
                .all(|c| c["id"].as_i64().is_some_and(|id| id >= 30_000_000))
        );
        let companies = l["_embedded"]["companies"].as_array().expect("companies");
        assert!(companies.len() <= 1);
    }
    assert_eq!(sizes, BTreeSet::from([0, 1, 2, 3]));
    // stored, not drawn per request; same seed, same contacts
    let again = hal(&sim, "/api/v4/leads?limit=250&with=contacts").await;
    assert_eq!(again["_embedded"]["leads"], with["_embedded"]["leads"]);
    let twin = self::sim(300).await;
    let contacts = |ls: Vec<Value>| -> Vec<Value> {
        ls.into_iter()
            .map(|l| l["_embedded"]["contacts"].clone())
            .collect()
    };
    assert_eq!(contacts(twin.alive_leads()), contacts(sim.alive_leads()));
    assert_eq!(
        sim.alive_leads_without_contacts(),
        sim.alive_leads()
            .into_iter()
            .map(|mut l| {
                l["_embedded"]
                    .as_object_mut()
                    .map(|e| e.shift_remove("contacts"));
                l
            })
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn every_lead_references_ids_of_the_structure() {
    let sim = sim(2000).await;
    let s = sim.structure();
    let statuses: BTreeSet<(i64, i64)> = s["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .flat_map(|p| {
            p["_embedded"]["statuses"]
                .as_array()
                .expect("statuses")
                .iter()
                .map(|st| {
                    (
                        p["id"].as_i64().expect("id"),
                        st["id"].as_i64().expect("id"),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let set = |key: &str| -> BTreeSet<i64> {
        ids(s[key].as_array().expect("list")).into_iter().collect()
    };
    let users = set("users");
    let reasons = set("loss_reasons");
    let groups: BTreeSet<i64> = ids(s["account"]["_embedded"]["users_groups"]
        .as_array()
        .expect("groups"))
    .into_iter()
    .collect();
    let tags: BTreeMap<i64, Value> = s["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| (t["id"].as_i64().expect("id"), t.clone()))
        .collect();
    let fields: BTreeMap<i64, Value> = s["custom_fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| (f["id"].as_i64().expect("id"), f.clone()))
        .collect();
    let leads = sim.alive_leads();
    assert_eq!(leads.len(), 2000);
    for l in &leads {
        let stage = (
            l["pipeline_id"].as_i64().expect("pipeline"),
            l["status_id"].as_i64().expect("status"),
        );
        assert!(statuses.contains(&stage), "{stage:?}");
        for key in ["responsible_user_id", "created_by", "updated_by"] {
            if let Some(u) = l[key].as_i64().filter(|u| *u != 0) {
                assert!(users.contains(&u), "{key} {u}");
            }
        }
        assert!(groups.contains(&l["group_id"].as_i64().expect("group")));
        if let Some(r) = l["loss_reason_id"].as_i64() {
            assert!(reasons.contains(&r));
        }
        for t in l["_embedded"]["tags"].as_array().expect("tags") {
            assert_eq!(Some(t), tags.get(&t["id"].as_i64().expect("id")));
        }
        for f in l["custom_fields_values"].as_array().into_iter().flatten() {
            let def = &fields[&f["field_id"].as_i64().expect("field id")];
            assert_eq!(f["field_name"], def["name"]);
            assert_eq!(f["field_code"], def["code"]);
            assert_eq!(f["field_type"], def["type"]);
            if let Some(enums) = def["enums"].as_array() {
                let known: BTreeSet<i64> = ids(enums).into_iter().collect();
                for v in f["values"].as_array().expect("values") {
                    assert!(known.contains(&v["enum_id"].as_i64().expect("enum_id")));
                }
            }
        }
    }
}

/// The stage chains of the log, by lead, oldest first.
fn chains(sim: &Simulator) -> BTreeMap<i64, Vec<StatusChange>> {
    let mut out: BTreeMap<i64, Vec<StatusChange>> = BTreeMap::new();
    for e in sim.status_events() {
        out.entry(e.lead_id).or_default().push(e);
    }
    out
}

#[tokio::test]
async fn generated_history_chains_end_at_each_lead_current_status_before_its_updated_at() {
    let sim = sim(2000).await;
    let now = sim.server_now();
    let first_status: BTreeMap<i64, i64> =
        [(7_000_001, 58_000_001), (7_000_002, 58_000_011)].into();
    let leads: BTreeMap<i64, Value> = sim
        .alive_leads()
        .into_iter()
        .map(|l| (l["id"].as_i64().expect("id"), l))
        .collect();
    let chains = chains(&sim);
    assert!(chains.len() > 50, "{} leads with history", chains.len());
    let events = sim.status_events();
    assert!(
        events
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at)
    );
    let ids: BTreeSet<&String> = events.iter().map(|e| &e.event_id).collect();
    assert_eq!(ids.len(), events.len(), "unique event ids");
    for (id, lead) in &leads {
        let int = |k: &str| lead[k].as_i64().expect(k);
        let (created, updated) = (int("created_at"), int("updated_at"));
        let (pipeline, status) = (int("pipeline_id"), int("status_id"));
        let expected =
            created >= now - 120 * 86_400 && updated > created && status != first_status[&pipeline];
        let Some(chain) = chains.get(id) else {
            assert!(!expected, "lead {id} lacks its history");
            continue;
        };
        assert!(expected, "lead {id} has history it should not");
        assert!((1..=3).contains(&chain.len()));
        assert_eq!(chain[0].from_status, first_status[&pipeline]);
        for pair in chain.windows(2) {
            assert_eq!(
                (pair[0].to_pipeline, pair[0].to_status),
                (pair[1].from_pipeline, pair[1].from_status)
            );
        }
        let last = chain.last().expect("last");
        assert_eq!((last.to_pipeline, last.to_status), (pipeline, status));
        for e in chain {
            assert!(e.created_at >= created && e.created_at <= updated && e.created_at <= now);
            assert_ne!(e.from_status, e.to_status);
        }
        if let Some(closed) = lead["closed_at"].as_i64() {
            assert_eq!(last.created_at, closed, "closed when moved to 142/143");
        }
    }
}

#[tokio::test]
async fn a_status_change_moves_the_lead_and_writes_one_event() {
    let sim = sim(50).await;
    let id = sim
        .alive_leads()
        .iter()
        .find(|l| l["pipeline_id"] == 7_000_001 && l["status_id"] == 58_000_002)
        .and_then(|l| l["id"].as_i64())
        .expect("a lead in 58000002");
    let before = sim.status_events();
    assert!(sim.change_lead_status(id, 7_000_001, 143));
    let lead = sim
        .alive_leads()
        .into_iter()
        .find(|l| l["id"] == id)
        .expect("alive");
    let at = lead["updated_at"].as_i64().expect("updated_at");
    assert!((at - sim.server_now()).abs() <= 1);
    assert_eq!(lead["status_id"], 143);
    assert_eq!(lead["closed_at"], at);
    let reasons = [4_000_001, 4_000_002, 4_000_003, 4_000_004];
    assert!(reasons.contains(&lead["loss_reason_id"].as_i64().expect("reason")));
    let after = sim.status_events();
    assert_eq!(after.len(), before.len() + 1);
    let e = after.last().expect("event");
    assert_eq!(
        (
            e.lead_id,
            e.from_pipeline,
            e.from_status,
            e.to_pipeline,
            e.to_status,
            e.created_at
        ),
        (id, 7_000_001, 58_000_002, 7_000_001, 143, at)
    );
    assert_eq!(sim.mutations(), vec![Mutation::Updated(id)]);
    let served = hal(
        &sim,
        "/api/v4/events?filter[type]=lead_status_changed&limit=1",
    )
    .await;
    let ev = &served["_embedded"]["events"][0];
    assert_eq!(ev["id"], json!(e.event_id));
    assert_eq!(ev["entity_id"], id);
    assert_eq!(ev["entity_type"], "lead");
    assert_eq!(ev["created_at"], at);
    assert_eq!(ev["created_by"], e.created_by);
    assert_eq!(
        ev["value_before"],
        json!([{"lead_status": {"id": 58_000_002, "pipeline_id": 7_000_001}}])
    );
    assert_eq!(
        ev["value_after"],
        json!([{"lead_status": {"id": 143, "pipeline_id": 7_000_001}}])
    );

    // to another pipeline's open status: reopened
    assert!(sim.change_lead_status(id, 7_000_002, 58_000_012));
    let lead = sim
        .alive_leads()
        .into_iter()
        .find(|l| l["id"] == id)
        .expect("alive");
    assert_eq!(
        (lead["pipeline_id"].clone(), lead["status_id"].clone()),
        (json!(7_000_002), json!(58_000_012))
    );
    assert!(lead["closed_at"].is_null() && lead["loss_reason_id"].is_null());
    assert_eq!(sim.status_events().len(), before.len() + 2);

    // refused: unknown status, status of another pipeline, where it is,
    // no such lead
    assert!(!sim.change_lead_status(id, 7_000_002, 58_000_003));
    assert!(!sim.change_lead_status(id, 7_000_002, 999));
    assert!(!sim.change_lead_status(id, 7_000_002, 58_000_012));
    assert!(!sim.change_lead_status(1, 7_000_002, 142));
    assert_eq!(sim.status_events().len(), before.len() + 2);
    assert_eq!(sim.mutations().len(), 2);
}

#[tokio::test]
async fn events_filter_types_in_both_shapes_and_serve_at_most_100() {
    let sim = sim(2000).await;
    let ids = sim.alive_ids();
    sim.delete_lead(ids[0]);
    sim.delete_lead(ids[1]);
    sim.restore_lead(ids[1]);
    let statuses = sim.status_events().len();
    assert!(statuses > 150, "{statuses}");

    let count = |body: &Value| body["_embedded"]["events"].as_array().map_or(0, Vec::len);
    let comma = hal(
        &sim,
        "/api/v4/events?filter[type]=lead_deleted,lead_restored",
    )
    .await;
    let repeated = hal(
        &sim,
        "/api/v4/events?filter%5Btype%5D%5B%5D=lead_deleted&filter[type][]=lead_restored&filter[entity]=lead",
    )
    .await;
    assert_eq!(count(&comma), 3);
    assert_eq!(comma["_embedded"], repeated["_embedded"]);
    assert!(comma["_links"].get("next").is_none());

    let typed = "/api/v4/events?filter[type]=lead_status_changed";
    assert_eq!(count(&hal(&sim, typed).await), 50, "default limit");
    assert_eq!(count(&hal(&sim, &format!("{typed}&limit=100")).await), 100);
    let big = hal(&sim, &format!("{typed}&limit=250")).await;
    assert_eq!(count(&big), 50, "a limit over 100 is not honoured");
    assert!(big["_links"]["next"]["href"].is_string());
    let mut seen = BTreeSet::new();
    for page in 1.. {
        let resp = get(&sim, &format!("{typed}&limit=100&page={page}")).await;
        if resp.status() == 204 {
            break;
        }
        let body: Value = resp.json().await.expect("json");
        let events = body["_embedded"]["events"].as_array().expect("events");
        assert_eq!(
            body["_links"].get("next").is_some(),
            seen.len() + events.len() < statuses
        );
        for e in events {
            assert_eq!(e["type"], "lead_status_changed");
            seen.insert(e["id"].as_str().expect("id").to_string());
        }
    }
    assert_eq!(seen.len(), statuses);

    // a created_at window, both ends inclusive
    let all = sim.status_events();
    let t = all[all.len() / 2].created_at;
    let in_second = all.iter().filter(|e| e.created_at == t).count();
    let body = hal(
        &sim,
        &format!("{typed}&filter[created_at][from]={t}&filter[created_at][to]={t}&limit=100"),
    )
    .await;
    assert_eq!(count(&body), in_second);
    assert_eq!(
        get(&sim, "/api/v4/events?filter[type]=lead_status_changed&filter[created_at][from]=1&filter[created_at][to]=2")
            .await
            .status(),
        204
    );
}

#[tokio::test]
async fn churn_moves_some_leads_between_stages_consistently() {
    let sim = sim(200).await;
    let before = sim.status_events().len();
    sim.set_churn_per_lead_request(40);
    for _ in 0..3 {
        assert_eq!(get(&sim, "/api/v4/leads").await.status(), 200);
    }
    let events = sim.status_events();
    let new = &events[before..];
    assert!(!new.is_empty(), "about one update in five moves a stage");
    assert_eq!(sim.mutations().len(), 120);
    let leads: BTreeMap<i64, Value> = sim
        .alive_leads()
        .into_iter()
        .map(|l| (l["id"].as_i64().expect("id"), l))
        .collect();
    let chains = chains(&sim);
    for e in new {
        assert!((e.created_at - sim.server_now()).abs() <= 2);
        let last = chains[&e.lead_id].last().expect("last");
        if let Some(lead) = leads.get(&e.lead_id) {
            assert_eq!(
                (lead["pipeline_id"].as_i64(), lead["status_id"].as_i64()),
                (Some(last.to_pipeline), Some(last.to_status))
            );
        }
    }
}

#[tokio::test]
async fn lead_edits_bump_updated_at_and_tag_and_field_renames_show_inside_leads() {
    let sim = sim(30).await;
    let lead_of = |id: i64| {
        sim.alive_leads()
            .into_iter()
            .find(|l| l["id"] == id)
            .expect("alive")
    };
    let ids = sim.alive_ids();
    let (a, b, c) = (ids[3], ids[4], ids[5]);
    let old_a = lead_of(a)["updated_at"].as_i64().expect("updated_at");
    let now = sim.server_now();

    let new_tag = sim.add_tag("fresh");
    assert!(sim.set_lead_tags(a, &[30_001, new_tag, 30_001]));
    let tagged = lead_of(a);
    assert_eq!(
        tagged["_embedded"]["tags"],
        json!([
            {"id": 30_001, "name": "vip", "color": "#FF5555"},
            {"id": new_tag, "name": "fresh", "color": null},
        ])
    );
    let stamp = tagged["updated_at"].as_i64().expect("updated_at");
    assert!(stamp >= now && stamp >= old_a);
    assert!(!sim.set_lead_tags(a, &[12_345]), "unknown tag");
    assert!(!sim.set_lead_tags(1, &[30_001]), "no such lead");

    assert!(sim.set_lead_contacts(b, &[(30_000_777, false), (30_000_778, true)]));
    let linked = lead_of(b);
    assert_eq!(
        linked["_embedded"]["contacts"],
        json!([{"id": 30_000_777, "is_main": false}, {"id": 30_000_778, "is_main": true}])
    );
    assert!(linked["updated_at"].as_i64() >= Some(now));
    let listed = hal(&sim, &format!("/api/v4/leads?filter[id]={b}&with=contacts")).await;
    assert_eq!(listed["_embedded"]["leads"][0], linked);

    let values = json!([{"value": "Referral", "enum_id": 700_102, "enum_code": null}]);
    assert!(sim.set_lead_custom_field(c, 510_005, values.clone()));
    assert!(sim.set_lead_custom_field(c, 510_001, json!([{"value": "hi"}])));
    let edited = lead_of(c);
    let field = |lead: &Value, fid: i64| {
        lead["custom_fields_values"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["field_id"] == fid).cloned())
    };
    assert_eq!(field(&edited, 510_005).expect("field")["values"], values);
    assert_eq!(
        field(&edited, 510_005).expect("field")["field_code"],
        "LEAD_SOURCE"
    );
    assert!(edited["updated_at"].as_i64() >= Some(now));
    assert!(sim.set_lead_custom_field(c, 510_001, json!([])));
    assert!(
        field(&lead_of(c), 510_001).is_none(),
        "[] removes the field"
    );
    assert!(!sim.set_lead_custom_field(c, 1, json!([{"value": 1}])));

    // renames: the name inside leads changes, updated_at does not
    let before = lead_of(a)["updated_at"].clone();
    assert!(sim.rename_tag(30_001, "VIP client"));
    assert_eq!(lead_of(a)["_embedded"]["tags"][0]["name"], "VIP client");
    assert_eq!(lead_of(a)["updated_at"], before);
    let before = lead_of(c)["updated_at"].clone();
    assert!(sim.rename_custom_field(510_005, "Origin"));
    assert_eq!(
        field(&lead_of(c), 510_005).expect("field")["field_name"],
        "Origin"
    );
    assert_eq!(lead_of(c)["updated_at"], before);
    assert_eq!(
        sim.mutations(),
        [a, b, c, c, c].map(Mutation::Updated).to_vec(),
        "renames are no lead mutations"
    );
}

#[tokio::test]
async fn deleted_structure_items_stop_being_listed_and_leads_keep_them() {
    let sim = sim(200).await;
    let before = sim.structure_ids();
    assert_eq!(
        before.tags,
        [30_001, 30_002, 30_003, 30_004, 30_005, 30_006]
    );
    assert_eq!(before.pipelines, [7_000_001, 7_000_002]);
    assert!(before.statuses.contains(&(7_000_002, 142)));
    assert!(before.custom_field_enums.contains(&(510_005, 700_102)));
    let tagged = sim
        .alive_leads()
        .into_iter()
        .find(|l| {
            l["_embedded"]["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["id"] == 30_002))
        })
        .expect("a lead tagged 30002");

    assert!(sim.delete_tag(30_002));
    assert!(sim.delete_custom_field(510_001));
    assert!(sim.delete_custom_field_enum(510_005, 700_102));
    assert!(sim.delete_loss_reason(4_000_003));
    assert!(sim.delete_status(7_000_001, 58_000_003));
    assert!(sim.delete_pipeline(7_000_002));
    // unknown ids, and what Kommo keeps
    assert!(!sim.delete_tag(30_002));
    assert!(!sim.delete_custom_field(510_001));
    assert!(!sim.delete_custom_field_enum(510_005, 700_102));
    assert!(!sim.delete_custom_field_enum(510_003, 700_101), "no enums");
    assert!(!sim.delete_loss_reason(4_000_003));
    assert!(!sim.delete_status(7_000_001, 142));
    assert!(!sim.delete_status(7_000_001, 143));
    assert!(
        !sim.delete_status(7_000_001, 58_000_001),
        "the incoming-leads status"
    );
    assert!(
        !sim.delete_status(7_000_002, 58_000_011),
        "its pipeline is gone"
    );
    assert!(!sim.delete_pipeline(7_000_001), "the main pipeline");

    let tags = ids(hal(&sim, "/api/v4/leads/tags").await["_embedded"]["tags"]
        .as_array()
        .expect("tags"));
    assert_eq!(tags, [30_001, 30_003, 30_004, 30_005, 30_006]);
    let fields = hal(&sim, "/api/v4/leads/custom_fields").await;
    let fields = fields["_embedded"]["custom_fields"]
        .as_array()
        .expect("fields")
        .clone();
    assert!(!ids(&fields).contains(&510_001));
    let select = fields.iter().find(|f| f["id"] == 510_005).expect("select");
    assert_eq!(
        ids(select["enums"].as_array().expect("enums")),
        [700_101, 700_103, 700_104]
    );
    let reasons = hal(&sim, "/api/v4/leads/loss_reasons").await;
    assert_eq!(
        ids(reasons["_embedded"]["loss_reasons"]
            .as_array()
            .expect("reasons")),
        [4_000_001, 4_000_002, 4_000_004]
    );
    let pipelines = hal(&sim, "/api/v4/leads/pipelines").await;
    let pipelines = pipelines["_embedded"]["pipelines"]
        .as_array()
        .expect("pipelines");
    assert_eq!(ids(pipelines), [7_000_001]);
    assert_eq!(
        ids(pipelines[0]["_embedded"]["statuses"]
            .as_array()
            .expect("statuses")),
        [58_000_001, 58_000_002, 58_000_004, 58_000_005, 142, 143]
    );

    let after = sim.structure_ids();
    assert_eq!(after.tags, tags);
    assert_eq!(after.pipelines, [7_000_001]);
    assert_eq!(
        after.statuses,
        [58_000_001, 58_000_002, 58_000_004, 58_000_005, 142, 143].map(|s| (7_000_001, s))
    );
    assert!(!after.custom_fields.contains(&510_001));
    assert!(!after.custom_field_enums.contains(&(510_005, 700_102)));
    assert_eq!(after.loss_reasons, [4_000_001, 4_000_002, 4_000_004]);
    assert_eq!(after.users, before.users);
    // the snapshot is what the endpoints serve
    let snapshot = sim.structure();
    assert_eq!(ids(snapshot["tags"].as_array().expect("tags")), tags);
    assert_eq!(snapshot["pipelines"], json!(pipelines));

    // leads keep what was deleted, unchanged; nothing new can use it
    let still = sim
        .alive_leads()
        .into_iter()
        .find(|l| l["id"] == tagged["id"])
        .expect("alive");
    assert_eq!(still, tagged);
    let id = tagged["id"].as_i64().expect("id");
    assert!(!sim.set_lead_tags(id, &[30_002]));
    assert!(!sim.change_lead_status(id, 7_000_001, 58_000_003));
    assert!(!sim.change_lead_status(id, 7_000_002, 58_000_012));
    assert!(!sim.set_lead_custom_field(id, 510_001, json!([{"value": "x"}])));
}

#[tokio::test]
async fn a_lead_lost_after_every_loss_reason_is_deleted_has_none() {
    let sim = sim(50).await;
    for id in sim.structure_ids().loss_reasons {
        assert!(sim.delete_loss_reason(id));
    }
    let lead = sim
        .alive_leads()
        .into_iter()
        .find(|l| l["pipeline_id"] == 7_000_001 && l["status_id"] != 143)
        .expect("an open lead");
    let id = lead["id"].as_i64().expect("id");
    assert!(sim.change_lead_status(id, 7_000_001, 143));
    let lost = sim
        .alive_leads()
        .into_iter()
        .find(|l| l["id"] == id)
        .expect("alive");
    assert_eq!(lost["status_id"], 143);
    assert_eq!(lost["loss_reason_id"], Value::Null);
    assert_eq!(get(&sim, "/api/v4/leads/loss_reasons").await.status(), 200);
}

#[tokio::test]
async fn added_custom_fields_page_the_listing() {
    let sim = sim(10).await;
    let added: Vec<i64> = (0..45)
        .map(|i| sim.add_custom_field(&format!("Extra {i}")))
        .collect();
    assert_eq!(added[0], 510_011);
    let fields = page_all(&sim, "/api/v4/leads/custom_fields", "custom_fields", 50, 55).await;
    assert_eq!(ids(&fields)[10..], added[..]);
    let extra = &fields[10];
    assert_eq!(extra["type"], "text");
    assert_eq!(extra["enums"], Value::Null);
    assert!(extra["sort"].as_i64() > fields[9]["sort"].as_i64());
    assert!(sim.delete_custom_field(added[3]));
    assert_eq!(sim.structure_ids().custom_fields.len(), 54);
}
