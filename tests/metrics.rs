//! The daemon's metrics endpoint (`metrics.listen`): `/metrics` parsed as
//! Prometheus text and checked figure by figure against the mirror and the
//! simulator's own counters, `/healthz` turning 503 when the token is revoked
//! and 200 again once the token file is rewritten (no restart), the token
//! never in any answer, and the configuration errors around the key.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{RunOutput, TestEnv, wait_for};
use kommo_simulator::{Fault, FaultScope, RetryAfter, SimulatorConfig, SimulatorStats};
use kommo_sync::token::{Secret, fake_jwt, jwt_expiry};
use serde_json::json;
use sqlx::AnyPool;

/// One sample of the exposition: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text exposition format (0.0.4) strictly: every
/// sample's family is declared by a `# TYPE` line before it, names and
/// label names are valid, label values are quoted with their escapes, and
/// no series appears twice.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let valid_name = |name: &str, colon: bool| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = |what: &str| format!("line {}: {what}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("bad TYPE"))?;
            if !valid_name(name, true)
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
            {
                return Err(at("bad TYPE"));
            }
            if types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(at("family declared twice"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue; // HELP and comments
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value"))?;
        let name = &line[..name_end];
        if !valid_name(name, true) {
            return Err(at("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            loop {
                match chars.peek() {
                    Some((_, '}')) => {
                        let (i, _) = chars.next().unwrap();
                        rest = &inner[i + 1..];
                        break;
                    }
                    Some(_) => {}
                    None => return Err(at("unclosed labels")),
                }
                let mut key = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                if !valid_name(&key, false) || chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(at("bad label"));
                }
                let mut value = String::new();
                loop {
                    match chars.next().map(|(_, c)| c) {
                        Some('"') => break,
                        Some('\\') => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => return Err(at("bad escape")),
                        },
                        Some(c) => value.push(c),
                        None => return Err(at("unclosed label value")),
                    }
                }
                if labels.insert(key, value).is_some() {
                    return Err(at("label repeated"));
                }
                if let Some((_, ',')) = chars.peek() {
                    chars.next();
                }
            }
        }
        let mut fields = rest.split_whitespace();
        let value = match fields.next().ok_or_else(|| at("no value"))? {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().map_err(|_| at("bad value"))?,
        };
        if let Some(timestamp) = fields.next()
            && timestamp.parse::<i64>().is_err()
        {
            return Err(at("bad timestamp"));
        }
        if fields.next().is_some() {
            return Err(at("trailing text"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(at("sample before its # TYPE line"));
        }
        let sample = Sample {
            name: name.to_string(),
            labels,
            value,
        };
        if samples
            .iter()
            .any(|s| s.name == sample.name && s.labels == sample.labels)
        {
            return Err(at("series repeated"));
        }
        samples.push(sample);
    }
    Ok(samples)
}

/// A scraped and parsed `/metrics`.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The value of the series `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    /// Like [`Scrape::value`], failing when the series is absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{}", self.text))
    }

    /// Every series of `name`.
    fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn scrape(port: u16) -> Scrape {
    let response = http()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let mut samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Every series carries the account (the simulator's host), so that the
    // metrics of several instances stay apart; the checks below leave it out.
    for sample in &mut samples {
        assert_eq!(
            sample.labels.remove("account").as_deref(),
            Some("127.0.0.1"),
            "{} has no account label:\n{text}",
            sample.name
        );
    }
    Scrape { text, samples }
}

/// `/healthz`: status and body.
async fn healthz(port: u16) -> (u16, String) {
    match http()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
    {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `/healthz` every 100 ms until its status is `until` or `limit`
/// passes; returns the last answer.
async fn healthz_until(port: u16, until: fn(u16) -> bool, limit: Duration) -> (u16, String) {
    let deadline = Instant::now() + limit;
    loop {
        let answer = healthz(port).await;
        if until(answer.0) || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// What the mirror says, as the metrics should show it.
#[derive(Debug, PartialEq)]
struct MirrorFigures {
    /// (kind, status, runs, latest finished_at, leads skipped)
    groups: Vec<(String, String, i64, Option<i64>, i64)>,
    alive: i64,
    deleted: i64,
    last_run_id: Option<i64>,
}

impl MirrorFigures {
    async fn read(pool: &AnyPool) -> MirrorFigures {
        let groups = sqlx::query_as(
            "SELECT kind, status, COUNT(*), MAX(finished_at), SUM(leads_skipped) \
             FROM sync_runs GROUP BY kind, status ORDER BY kind, status",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let (alive, deleted): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(is_deleted = 0), 0), COALESCE(SUM(is_deleted = 1), 0) FROM leads",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        let last_run_id = sqlx::query_scalar("SELECT MAX(id) FROM sync_runs")
            .fetch_one(pool)
            .await
            .unwrap();
        MirrorFigures {
            groups,
            alive,
            deleted,
            last_run_id,
        }
    }

    fn running(&self) -> bool {
        self.groups.iter().any(|g| g.1 == "running")
    }
}

/// Scrapes while no sync runs (the mirror and the simulator's counters the
/// same before and after the scrape), so the figures can be compared
/// exactly; returns the scrape, the mirror's figures and the simulator's
/// counters.
async fn quiet_scrape(
    env: &TestEnv,
    pool: &AnyPool,
    port: u16,
) -> (Scrape, MirrorFigures, SimulatorStats) {
    for _ in 0..200 {
        let before = MirrorFigures::read(pool).await;
        let stats_before = env.sim.stats();
        let scraped = scrape(port).await;
        let after = MirrorFigures::read(pool).await;
        let stats_after = env.sim.stats();
        // The client counts a request before the simulator sees it, never after.
        let sent = scraped.get("kommo_sync_api_requests_total", &[]) as u64;
        assert!(sent >= stats_before.requests, "{sent} < {stats_before:?}");
        if before == after && stats_before == stats_after && !before.running() {
            return (scraped, after, stats_after);
        }
        tokio::time::sleep(Duration::from_millis(37)).await;
    }
    panic!("no moment without a sync running in 200 tries");
}

/// Checks every figure read from the mirror and the simulator.
fn assert_scrape_matches(scraped: &Scrape, mirror: &MirrorFigures, sim: &SimulatorStats) {
    assert_eq!(
        scraped.get("kommo_sync_leads", &[("state", "alive")]),
        mirror.alive as f64
    );
    assert_eq!(
        scraped.get("kommo_sync_leads", &[("state", "deleted")]),
        mirror.deleted as f64
    );
    let mut skipped = 0;
    for (kind, status, runs, last_finished, leads_skipped) in &mirror.groups {
        skipped += leads_skipped;
        assert_eq!(
            scraped.get(
                "kommo_sync_runs_total",
                &[("kind", kind), ("status", status)]
            ),
            *runs as f64,
            "runs {kind} {status}"
        );
        if status == "ok" {
            assert_eq!(
                scraped.get(
                    "kommo_sync_last_success_timestamp_seconds",
                    &[("kind", kind)]
                ),
                last_finished.unwrap() as f64
            );
        }
    }
    assert_eq!(
        scraped.series("kommo_sync_runs_total").len(),
        mirror.groups.len(),
        "one series per (kind, status) of sync_runs"
    );
    let ok_kinds = mirror.groups.iter().filter(|g| g.1 == "ok").count();
    assert_eq!(
        scraped
            .series("kommo_sync_last_success_timestamp_seconds")
            .len(),
        ok_kinds
    );
    assert_eq!(
        scraped.get("kommo_sync_leads_skipped_total", &[]),
        skipped as f64
    );
    assert_eq!(
        scraped.get("kommo_sync_api_requests_total", &[]),
        sim.requests as f64,
        "requests sent = requests the simulator received"
    );
    assert_eq!(
        scraped.get("kommo_sync_api_responses_429_total", &[]),
        sim.responses_429 as f64
    );
    assert_eq!(
        scraped.get(
            "kommo_sync_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

fn assert_tokens_absent(texts: &[&str], tokens: &[&str]) {
    for text in texts {
        for token in tokens {
            assert!(!text.contains(token), "a token leaked");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_mirror_and_health_follows_the_token() {
    let port = free_port();
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 300,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "",
        &format!(
            "[schedule]\nincremental = \"*/1 * * * * *\"\nfull = \"0 0 0 1 1 *\"\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .await;
    // A lead without an id (skipped at every sync that lists it), two 429s
    // and a 500 early in the first sync.
    let stamp = env.sim.server_now();
    env.sim
        .add_raw_lead(json!({"name": "no id at all", "updated_at": stamp}));
    env.sim.queue_faults(
        FaultScope::Leads,
        1,
        vec![
            Fault::TooManyRequests(RetryAfter::Seconds(1)),
            Fault::TooManyRequests(RetryAfter::None),
            Fault::Status(500),
        ],
    );
    let log_path = env.dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut daemon = env
        .command(&[])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the daemon starts");
    let pid = daemon.id().expect("pid");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut answers: Vec<String> = Vec::new();

    // Served before the first sync ends (the faults make it last over
    // 3 s): unhealthy, and why.
    let first = healthz_until(port, |s| s != 0, Duration::from_secs(20)).await;
    assert_eq!(first, (503, "no sync attempted yet\n".to_string()));
    let pool = loop {
        if env.db.exists() {
            break env.db().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ok_runs = |n: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sync_runs WHERE status = 'ok'")
                .fetch_one(&pool)
                .await
                .unwrap_or(0)
                >= n
        }
    };

    // Some syncs, then leads deleted in the account and mirrored as such.
    assert!(
        wait_for(Duration::from_secs(40), || ok_runs(2)).await,
        "no sync finished: {}",
        read_log()
    );
    let deleted: Vec<i64> = env
        .sim
        .alive_ids()
        .into_iter()
        .step_by(50)
        .take(4)
        .collect();
    for id in &deleted {
        assert!(env.sim.delete_lead(*id));
    }
    assert!(
        wait_for(Duration::from_secs(20), || async {
            env.marked_deleted().await.len() == deleted.len()
        })
        .await,
        "deletions not mirrored: {}",
        read_log()
    );
    let started = kommo_sync::clock::unix_now();
    assert!(wait_for(Duration::from_secs(20), || ok_runs(4)).await);
    let (scraped, mirror, stats) = quiet_scrape(&env, &pool, port).await;
    assert_scrape_matches(&scraped, &mirror, &stats);
    assert_eq!(mirror.alive, env.sim.alive_ids().len() as i64);
    assert_eq!(mirror.deleted, deleted.len() as i64);
    assert_eq!(stats.responses_429, 2, "the two queued 429s, no other");
    assert_eq!(
        scraped.get("kommo_sync_api_retries_total", &[]),
        3.0,
        "each 429 and the 500 retried once"
    );
    assert!(
        scraped.get("kommo_sync_leads_skipped_total", &[]) >= 2.0,
        "the lead without an id is skipped at every sync"
    );
    assert!(
        scraped
            .value(
                "kommo_sync_last_success_timestamp_seconds",
                &[("kind", "full")]
            )
            .is_some(),
        "the daemon's first sync, at start on an empty mirror, is a full one"
    );
    let last_ok = scraped.get(
        "kommo_sync_last_success_timestamp_seconds",
        &[("kind", "incremental")],
    );
    assert!(last_ok >= started as f64, "{last_ok} < {started}");
    assert_eq!(
        scraped.get("kommo_sync_last_attempt_status", &[("status", "ok")]),
        1.0
    );
    for status in ["failed", "unauthorized", "interrupted"] {
        assert_eq!(
            scraped.get("kommo_sync_last_attempt_status", &[("status", status)]),
            0.0
        );
    }
    let last_attempt = scraped.get("kommo_sync_last_attempt_timestamp_seconds", &[]);
    assert!(last_attempt >= last_ok && last_attempt <= kommo_sync::clock::unix_now() as f64);
    assert_eq!(scraped.get("kommo_sync_token_rejected", &[]), 0.0);
    let first_exp = jwt_expiry(&Secret::new(env.token.clone())).unwrap();
    assert_eq!(
        scraped.get("kommo_sync_token_expiry_timestamp_seconds", &[]),
        first_exp as f64
    );
    assert_eq!(healthz(port).await, (200, "ok\n".to_string()));
    answers.push(scraped.text);

    // The token revoked: 503 with the reason, the gauge at 1.
    env.sim.revoke_token();
    let rejected = healthz_until(port, |s| s == 503, Duration::from_secs(15)).await;
    assert_eq!(
        rejected,
        (503, "token rejected by Kommo (HTTP 401)\n".to_string()),
        "{}",
        read_log()
    );
    let (scraped, mirror, stats) = quiet_scrape(&env, &pool, port).await;
    assert_scrape_matches(&scraped, &mirror, &stats);
    assert_eq!(scraped.get("kommo_sync_token_rejected", &[]), 1.0);
    assert_eq!(
        scraped.get(
            "kommo_sync_last_attempt_status",
            &[("status", "unauthorized")]
        ),
        1.0
    );
    assert!(
        scraped.get(
            "kommo_sync_runs_total",
            &[("kind", "incremental"), ("status", "unauthorized")]
        ) >= 1.0
    );
    assert_eq!(
        stats.responses_401,
        scraped.get(
            "kommo_sync_runs_total",
            &[("kind", "incremental"), ("status", "unauthorized")]
        ) as u64,
        "one 401 per unauthorized run, no retry"
    );
    answers.push(scraped.text);
    answers.push(rejected.1);

    // A new token in the file: 200 again, no restart; its expiry is shown.
    let new_token = fake_jwt(kommo_sync::clock::unix_now() + 200 * 86_400)
        .expose()
        .to_string();
    env.sim.set_token(&new_token);
    std::fs::write(&env.token_file, &new_token).unwrap();
    let recovered = healthz_until(port, |s| s == 200, Duration::from_secs(15)).await;
    assert_eq!(
        recovered,
        (200, "ok\n".to_string()),
        "after the token file was rewritten: {}",
        read_log()
    );
    let (scraped, mirror, stats) = quiet_scrape(&env, &pool, port).await;
    assert_scrape_matches(&scraped, &mirror, &stats);
    assert_eq!(scraped.get("kommo_sync_token_rejected", &[]), 0.0);
    let new_exp = jwt_expiry(&Secret::new(new_token.clone())).unwrap();
    assert_ne!(new_exp, first_exp);
    assert_eq!(
        scraped.get("kommo_sync_token_expiry_timestamp_seconds", &[]),
        new_exp as f64
    );
    assert_eq!(
        daemon.try_wait().unwrap(),
        None,
        "the daemon restarted or exited"
    );
    answers.push(scraped.text);

    // SIGTERM: exit 0, and the endpoint is gone.
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon stops within 30 s of SIGTERM")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{}", read_log());
    assert_eq!(healthz(port).await.0, 0, "still served after the stop");

    let log = read_log();
    let mut texts: Vec<&str> = answers.iter().map(String::as_str).collect();
    texts.push(&log);
    assert_tokens_absent(&texts, &[&env.token, &new_token]);
}

#[tokio::test]
async fn a_listen_address_that_is_not_one_exits_2_naming_the_key() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 10,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "",
        "[metrics]\nlisten = \"nonsense\"\n",
    )
    .await;
    let out = env.run(&[]).await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("metrics.listen") && out.stderr.contains("127.0.0.1:9187"),
        "{}",
        out.stderr
    );
    assert_eq!(env.sim.stats().requests, 0, "a request was sent");
    env.assert_token_absent(&[&out]);
}

#[tokio::test]
async fn an_address_that_cannot_be_bound_exits_1_and_a_public_one_draws_a_warning() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 10,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "",
        "",
    )
    .await;
    // A port taken by another listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    env.write_config("", &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let out: RunOutput = env.run(&[]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains(&format!(
            "cannot serve metrics on 127.0.0.1:{port} (metrics.listen)"
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("unauthenticated"), "{}", out.stderr);
    // A non-loopback address (TEST-NET-1, on no interface here: nothing is
    // bound and no packet is sent) draws the warning before the bind fails.
    env.write_config("", "[metrics]\nlisten = \"192.0.2.1:9187\"\n");
    let public = env.run(&[]).await;
    assert_eq!(public.code, Some(1), "{public:#?}");
    let warning: Vec<&str> = public
        .stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("unauthenticated"))
        .collect();
    assert_eq!(warning.len(), 1, "{}", public.stderr);
    assert!(warning[0].contains("loopback"), "{}", warning[0]);
    assert_eq!(env.sim.stats().requests, 0, "a request was sent");
    env.assert_token_absent(&[&out, &public]);
}
