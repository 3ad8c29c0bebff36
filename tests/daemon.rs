//! The daemon on a seconds-level schedule: follows changes, survives a
//! revoked token and recovers when the token file is rewritten, never runs
//! two syncs at once, and exits 0 on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, stop_daemon, test_token, wait_for};
use kommo_simulator::SimulatorConfig;
use sqlx::AnyPool;

async fn count_runs(pool: &AnyPool, status: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sync_runs WHERE status = ?")
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_follows_changes_alerts_recovers_and_stops_cleanly() {
    const TICK: Duration = Duration::from_secs(2);
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 800,
            tie_block: 300,
            ..SimulatorConfig::default()
        },
        "",
        // Incremental every 2 s, full every 3 s: ticks collide and must be
        // skipped. Leads alone keep a full sync near 3 s, so the ticks after
        // it can mirror a change within the test's bounds on a slow machine.
        "[schedule]\nincremental = \"*/2 * * * * *\"\nfull = \"*/3 * * * * *\"\n\
         [sync]\nentities = [\"leads\"]\n",
    )
    .await;
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

    // The first tick mirrors the account.
    let pool = loop {
        if env.db.exists() {
            break env.db().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        wait_for(Duration::from_secs(30), || async {
            count_runs(&pool, "ok").await >= 1
        })
        .await,
        "no sync finished: {}",
        read_log()
    );
    env.assert_mirror_equals_account().await;

    // A change is mirrored within two ticks.
    let changed = Instant::now();
    let mirrored = change_and_wait_until_mirrored(
        &env,
        &pool,
        env.sim.alive_ids()[17],
        2 * TICK + Duration::from_secs(2),
    )
    .await;
    assert!(
        mirrored,
        "change not mirrored after {:?}: {}",
        changed.elapsed(),
        read_log()
    );

    // Revoked token: alert at each attempt, the daemon keeps running.
    env.sim.revoke_token();
    assert!(
        wait_for(Duration::from_secs(15), || async {
            count_runs(&pool, "unauthorized").await >= 2
        })
        .await,
        "no unauthorized runs: {}",
        read_log()
    );
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon exited on a 401"
    );
    let alerts = read_log()
        .lines()
        .filter(|l| l.contains("alert=\"token_rejected\"") && l.contains("ERROR"))
        .count();
    assert!(
        alerts >= 2,
        "one alert per attempt expected: {}",
        read_log()
    );

    // A new token in the file: the next attempt succeeds without a restart.
    let new_token = test_token();
    env.sim.set_token(&new_token);
    let before = count_runs(&pool, "ok").await;
    std::fs::write(&env.token_file, &new_token).unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || async {
            count_runs(&pool, "ok").await > before
        })
        .await,
        "no recovery after the token file was rewritten: {}",
        read_log()
    );
    // One more change, mirrored by the ticks that follow (a run may be
    // slowed by the machine's load: wait for it, within bounds).
    let mirrored = change_and_wait_until_mirrored(
        &env,
        &pool,
        env.sim.alive_ids()[3],
        Duration::from_secs(20),
    )
    .await;
    assert!(
        mirrored,
        "change not mirrored after the token was replaced ({:?}): {}",
        env.sim.stats(),
        read_log()
    );
    tokio::time::sleep(TICK).await;

    // SIGTERM: exit 0.
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

    // Never two syncs at once: the recorded intervals do not overlap, and
    // colliding ticks were skipped.
    let runs: Vec<(i64, i64, Option<i64>, String)> =
        sqlx::query_as("SELECT id, started_at, finished_at, status FROM sync_runs ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(runs.len() >= 5, "{runs:?}");
    for pair in runs.windows(2) {
        let (_, _, finished, _) = &pair[0];
        let (_, started, _, _) = &pair[1];
        let finished = finished.expect("every run finished");
        assert!(finished <= *started, "runs overlap: {pair:?}");
    }
    assert!(runs.iter().all(|r| r.3 != "running"));
    assert!(read_log().contains("tick skipped"), "{}", read_log());
    assert!(!read_log().contains(&env.token) && !read_log().contains(&new_token));
    env.assert_mirror_equals_account().await;
}

/// Changes lead `id` in the account and waits up to `limit` for the mirror
/// to show its new name; whether it did.
async fn change_and_wait_until_mirrored(
    env: &TestEnv,
    pool: &AnyPool,
    id: i64,
    limit: Duration,
) -> bool {
    assert!(env.sim.update_lead(id));
    let new_name = env
        .sim
        .alive_leads()
        .into_iter()
        .find(|l| l["id"] == id)
        .unwrap()["name"]
        .clone();
    wait_for(limit, || async {
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM leads WHERE id = ?")
            .bind(id)
            .fetch_one(pool)
            .await
            .ok()
            .flatten();
        name.as_deref() == new_name.as_str()
    })
    .await
}

/// Schedules that never fire during a test: whatever the daemon does, it
/// does at start.
const QUIET_SCHEDULES: &str = "[schedule]\nincremental = \"0 0 0 1 1 *\"\nfull = \"0 0 0 1 1 *\"\n";

/// Starts the daemon with its log in `<dir>/<name>.log`.
fn start_daemon(env: &TestEnv, name: &str) -> (tokio::process::Child, std::path::PathBuf) {
    let log_path = env.dir.path().join(format!("{name}.log"));
    (env.spawn_daemon(&log_path), log_path)
}

async fn runs(pool: &AnyPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT kind, status FROM sync_runs ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_on_an_empty_mirror_mirrors_every_lead_at_once_by_a_full_sync() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 3_000,
            tie_block: 300,
            ..SimulatorConfig::default()
        },
        "",
        QUIET_SCHEDULES,
    )
    .await;
    let started = Instant::now();
    let (mut daemon, log) = start_daemon(&env, "daemon");
    // 3,000 leads are 12 pages plus a few requests: about 3 s at 7/s.
    let done = wait_for(Duration::from_secs(20), || async {
        env.db.exists() && runs(&env.db().await).await == vec![("full".into(), "ok".into())]
    })
    .await;
    assert!(done, "{}", std::fs::read_to_string(&log).unwrap());
    assert!(started.elapsed() < Duration::from_secs(20));
    env.assert_mirror_equals_account().await;
    stop_daemon(&mut daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_after_missing_its_nightly_full_sync_runs_it_at_once() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 500,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "",
        "[schedule]\nincremental = \"0 0 0 1 1 *\"\nfull = \"0 17 3 * * *\"\n",
    )
    .await;
    env.run_ok(&["--backfill"]).await;
    let pool = env.db().await;

    // The last full sync is recent: the daemon starts with an incremental one.
    let (mut daemon, log) = start_daemon(&env, "recent");
    let incremental = wait_for(Duration::from_secs(15), || async {
        runs(&pool).await.last() == Some(&("incremental".into(), "ok".into()))
    })
    .await;
    assert!(incremental, "{}", std::fs::read_to_string(&log).unwrap());
    stop_daemon(&mut daemon).await;
    assert_eq!(
        runs(&pool).await,
        vec![
            ("full".into(), "ok".into()),
            ("incremental".into(), "ok".into())
        ]
    );

    // The machine was off for two days: the nightly full sync runs at start.
    sqlx::query("UPDATE sync_runs SET started_at = started_at - 2 * 86400 WHERE kind = 'full'")
        .execute(&pool)
        .await
        .unwrap();
    env.sim.delete_lead(env.sim.alive_ids()[1]);
    let (mut daemon, log) = start_daemon(&env, "missed");
    let full = wait_for(Duration::from_secs(15), || async {
        runs(&pool).await.last() == Some(&("full".into(), "ok".into()))
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(full, "{text}");
    assert!(text.contains("missed while the daemon was down"), "{text}");
    stop_daemon(&mut daemon).await;
    env.assert_mirror_equals_account().await;
}

/// The daemon as systemd runs it with `WatchdogSec=0.4`: a ping every 200 ms
/// to `socket`. systemd names the watched process in WATCHDOG_PID: a shell
/// exports its own pid, then becomes the daemon (exec keeps the pid).
fn watched_daemon(
    env: &TestEnv,
    socket: &std::path::Path,
    extra_env: &[(&str, &str)],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_kommo-sync"))
        .arg("--config")
        .arg(&env.config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", "400000")
        .envs(extra_env.iter().copied())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_sees_ready_then_watchdog_pings_then_stopping() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 300,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "",
        QUIET_SCHEDULES,
    )
    .await;
    let socket_path = env.dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let log_path = env.dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut daemon = watched_daemon(&env, &socket_path, &[])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the daemon starts");
    let mut messages: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), socket.recv(&mut buf)).await
        {
            messages.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
        }
    }
    stop_daemon(&mut daemon).await;
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await
    {
        messages.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        messages.first().map(String::as_str),
        Some("READY=1"),
        "{messages:?} {text}"
    );
    assert_eq!(
        messages.last().map(String::as_str),
        Some("STOPPING=1"),
        "{messages:?}"
    );
    let pings = &messages[1..messages.len() - 1];
    assert!(
        pings.len() >= 8 && pings.iter().all(|m| m == "WATCHDOG=1"),
        "pings every 200 ms for 3 s: {messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_run_id_on_every_line_of_an_attempt() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 600,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "",
        &format!("{QUIET_SCHEDULES}[log]\nformat = \"json\"\n"),
    )
    .await;
    // A retried 500 and a lead without an id: WARN lines from the client and the sync.
    env.sim.queue_faults(
        kommo_simulator::FaultScope::Leads,
        1,
        vec![kommo_simulator::Fault::Status(500)],
    );
    env.sim
        .add_raw_lead(serde_json::json!({"name": "no id", "updated_at": 1_000}));
    let (mut daemon, log_path) = start_daemon(&env, "json");
    let pool_ready = wait_for(Duration::from_secs(20), || async {
        env.db.exists() && runs(&env.db().await).await == vec![("full".into(), "ok".into())]
    })
    .await;
    stop_daemon(&mut daemon).await;
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(pool_ready, "{text}");
    let mut attempt_lines = 0;
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(value.is_object(), "{line}");
        let target = value["target"].as_str().unwrap_or_default();
        let in_attempt = [
            "kommo_sync::sync",
            "kommo_sync::kommo",
            "kommo_sync::store",
            "kommo_sync::attempt",
        ]
        .iter()
        .any(|t| target.starts_with(t));
        if in_attempt {
            attempt_lines += 1;
            assert!(
                value["span"]["run_id"].is_number(),
                "a line of an attempt without its run_id: {line}"
            );
        }
    }
    let messages: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["message"].as_str().map(str::to_owned))
        .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("transient failure")),
        "{text}"
    );
    assert!(
        messages.iter().any(|m| m.contains("cannot be stored")),
        "{text}"
    );
    assert_eq!(
        messages.iter().filter(|m| *m == "sync ended").count(),
        1,
        "{text}"
    );
    assert!(attempt_lines >= 3, "{text}");
    assert!(!text.contains(&env.token));
}

// The wedge hook exists only in debug builds (`cargo test`, not `--release`).
#[cfg(debug_assertions)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_pings_stop_once_the_scheduler_is_wedged() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 300,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "",
        QUIET_SCHEDULES,
    )
    .await;
    let socket_path = env.dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let started = Instant::now();
    let mut daemon = watched_daemon(
        &env,
        &socket_path,
        &[(kommo_sync::daemon::WEDGE_ENV_VAR, "1500")],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("the daemon starts");
    let mut pings: Vec<Duration> = Vec::new();
    let mut buf = vec![0u8; 4096];
    while started.elapsed() < Duration::from_secs(8) {
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), socket.recv(&mut buf)).await
            && String::from_utf8_lossy(&buf[..n]).trim() == "WATCHDOG=1"
        {
            pings.push(started.elapsed());
        }
    }
    stop_daemon(&mut daemon).await;
    let last = *pings.last().expect("pings while the scheduler ran");
    assert!(pings.len() >= 5, "{pings:?}");
    // Wedged at 1.5 s; taken for wedged once its heartbeat is 3 s old.
    assert!(
        last < Duration::from_millis(5_500),
        "pings went on after the scheduler was wedged: {pings:?}"
    );
}
