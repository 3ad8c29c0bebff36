//! Failures the account or the machine imposes: filters the account does not
//! honour, a blocked or unpaid account, throttling, a database that cannot be
//! written. Each stops or slows the run as documented, raises its alert, and
//! never leaks the token.

mod common;

use std::time::{Duration, Instant};

use common::{RunOutput, TestEnv, run_statuses, stop_daemon};
use kommo_simulator::{Fault, FaultScope, RetryAfter, SimulatorConfig};

fn account(leads: usize) -> SimulatorConfig {
    SimulatorConfig {
        leads,
        tie_block: 0,
        ..SimulatorConfig::default()
    }
}

/// Asserts exactly one ERROR line with `alert` in the run's log.
fn assert_one_alert(out: &RunOutput, alert: &str) {
    let lines = TestEnv::alert_lines(out, alert);
    assert_eq!(lines.len(), 1, "{alert}: {}", out.stderr);
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
}

async fn ignored_filters_stop_backfill_and_once_within_a_few_requests() {
    let env = TestEnv::start(account(1_000)).await;
    env.run_ok(&["--backfill"]).await;
    env.sim.set_filters_ignored(true);

    env.sim.reset_stats();
    let once = env.run(&["--once"]).await;
    assert_eq!(once.code, Some(1), "{once:#?}");
    assert_one_alert(&once, "api_filter_unavailable");
    assert!(
        once.stderr.contains("enable API filtering"),
        "{}",
        once.stderr
    );
    assert!(env.sim.stats().lead_requests <= 3, "{:?}", env.sim.stats());

    let fresh = TestEnv::start(account(1_000)).await;
    fresh.sim.set_filters_ignored(true);
    let backfill = fresh.run(&["--backfill"]).await;
    assert_eq!(backfill.code, Some(1), "{backfill:#?}");
    assert_one_alert(&backfill, "api_filter_unavailable");
    assert!(
        fresh.sim.stats().lead_requests <= 4,
        "{:?}",
        fresh.sim.stats()
    );
    assert_eq!(
        run_statuses(&fresh.db().await).await,
        vec![("full".into(), "failed".into())]
    );

    let check = fresh.run(&["--check"]).await;
    assert_eq!(check.code, Some(1), "{check:#?}");
    assert!(
        check.stdout.contains("API filters:   NOT honoured"),
        "{}",
        check.stdout
    );
    assert_one_alert(&check, "api_filter_unavailable");
    fresh.sim.set_filters_ignored(false);
    let check_ok = fresh.run_ok(&["--check"]).await;
    assert!(
        check_ok.stdout.contains("API filters:   ok"),
        "{}",
        check_ok.stdout
    );

    env.assert_token_absent(&[&once]);
    fresh.assert_token_absent(&[&backfill, &check, &check_ok]);
}

/// The requests after the first answered `status`.
fn requests_after_first(env: &TestEnv, status: u16) -> usize {
    let log = env.sim.request_log();
    let first = log
        .iter()
        .position(|r| r.status == status)
        .unwrap_or_else(|| panic!("no request answered {status}"));
    log.len() - first - 1
}

async fn a_blocked_or_unpaid_account_stops_every_phase_at_once() {
    for (fault, status, alert) in [
        (Fault::Blocked, 403, "account_blocked"),
        (Fault::Unpaid, 402, "account_unpaid"),
    ] {
        // In the leads walk of a backfill.
        let env = TestEnv::start(account(2_000)).await;
        env.sim
            .queue_faults(FaultScope::Leads, 3, vec![fault.clone()]);
        let backfill = env.run(&["--backfill"]).await;
        assert_eq!(backfill.code, Some(1), "{backfill:#?}");
        assert_one_alert(&backfill, alert);
        assert_eq!(
            requests_after_first(&env, status),
            0,
            "{alert}: a request followed"
        );
        if alert == "account_blocked" {
            assert!(
                backfill.stderr.contains("Kommo support")
                    && backfill.stderr.contains("127.0.0.1")
                    && backfill.stderr.contains("account id"),
                "what support needs: {}",
                backfill.stderr
            );
        }

        // In the events phase of an incremental sync.
        env.run_ok(&["--backfill"]).await;
        env.sim.delete_lead(env.sim.alive_ids()[3]);
        env.sim
            .queue_faults(FaultScope::Events, 0, vec![fault.clone()]);
        let before = env.sim.request_log().len();
        let once = env.run(&["--once"]).await;
        assert_eq!(once.code, Some(1), "{once:#?}");
        assert_one_alert(&once, alert);
        let log = env.sim.request_log();
        let last = log.last().unwrap();
        assert!(log.len() > before);
        assert_eq!(
            (last.path.as_str(), last.status),
            ("/api/v4/events", status),
            "nothing was sent after the events answered {status}"
        );
        env.assert_token_absent(&[&backfill, &once]);
    }
}

async fn a_full_sync_of_a_blocked_account_sends_one_request() {
    let env = TestEnv::start(account(300)).await;
    env.run_ok(&["--backfill"]).await;
    env.sim.set_blocked(true);
    // Long round trips: a second request sent before the first answer
    // came back would show.
    env.sim.set_latency(std::time::Duration::from_millis(300));
    let before = env.sim.request_log().len();
    let out = env.run(&["--backfill"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert_one_alert(&out, "account_blocked");
    let sent: Vec<String> = env.sim.request_log()[before..]
        .iter()
        .map(|r| format!("{} {}", r.status, r.path))
        .collect();
    assert_eq!(sent.len(), 1, "the probe of a blocked account: {sent:?}");
}

async fn a_blocked_daemon_probes_rarely_and_syncs_again_once_unblocked() {
    let env = TestEnv::start_with(
        account(300),
        "",
        "[schedule]\nincremental = \"* * * * * *\"\nfull = \"0 0 0 1 1 *\"\n[sync]\nblocked_retry_seconds = 4\n",
    )
    .await;
    env.run_ok(&["--backfill"]).await;
    env.sim.set_blocked(true);
    let log_path = env.dir.path().join("daemon.log");
    let mut daemon = env.spawn_daemon(&log_path);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let blocked_requests: Vec<Instant> = env
        .sim
        .request_log()
        .iter()
        .filter(|r| r.status == 403)
        .map(|r| r.at.into_std())
        .collect();
    let text = std::fs::read_to_string(&log_path).unwrap();
    // Ticks every second for 9 s; one probe per 4 s at most.
    assert!(
        (2..=3).contains(&blocked_requests.len()),
        "{} requests in {:?} while blocked: {text}",
        blocked_requests.len(),
        started.elapsed()
    );
    for pair in blocked_requests.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(3_900),
            "{pair:?}"
        );
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("alert=\"account_blocked\""))
            .count(),
        blocked_requests.len(),
        "an alert at each probe: {text}"
    );
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon keeps running"
    );

    // Restarted right after a probe while still blocked (systemd's
    // Restart=, an upgrade): the new process waits out the rest of the
    // period before it probes.
    let probes = |sim: &kommo_simulator::Simulator| {
        sim.request_log().iter().filter(|r| r.status == 403).count()
    };
    let seen = probes(&env.sim);
    while probes(&env.sim) == seen {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_daemon(&mut daemon).await;
    let mut daemon = env.spawn_daemon(&log_path);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all_probes: Vec<Instant> = env
        .sim
        .request_log()
        .iter()
        .filter(|r| r.status == 403)
        .map(|r| r.at.into_std())
        .collect();
    for pair in all_probes.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(3_900),
            "a probe came {:?} after the last one, across a restart",
            pair[1] - pair[0]
        );
    }

    env.sim.set_blocked(false);
    let id = env.sim.alive_ids()[5];
    env.sim.update_lead(id);
    let pool = env.db().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok_after_block: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sync_runs WHERE status = 'ok' AND id > \
             (SELECT MAX(id) FROM sync_runs WHERE status = 'failed')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if ok_after_block > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no sync after the block was lifted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_daemon(&mut daemon).await;
    env.assert_mirror_equals_account().await;
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains(&env.token));
    env.assert_token_absent(&[]);
}

async fn throttling_holds_every_request_until_the_pause_ends_and_the_run_completes() {
    for (retry_after, pause) in [
        (RetryAfter::Seconds(2), Duration::from_secs(2)),
        (RetryAfter::HttpDate(2), Duration::from_secs(2)),
        // Without Retry-After the client backs off on its own (2 s ± 25 %).
        (RetryAfter::None, Duration::from_millis(1_500)),
    ] {
        let env = TestEnv::start(account(2_000)).await;
        env.sim.throttle_for(Duration::from_secs(3), retry_after);
        let out = env.run_ok(&["--backfill"]).await;
        env.assert_mirror_equals_account().await;
        let log = env.sim.request_log();
        let throttled = log.iter().filter(|r| r.status == 429).count();
        assert!(throttled >= 1, "{retry_after:?}: no 429 met");
        for (i, record) in log.iter().enumerate().filter(|(_, r)| r.status == 429) {
            if let Some(next) = log.get(i + 1) {
                let gap = next.at - record.at;
                assert!(
                    gap + Duration::from_millis(50) >= pause,
                    "{retry_after:?}: a request came {gap:?} after a 429"
                );
            }
        }
        env.assert_token_absent(&[&out]);
    }
}

/// Runs `args` as an unprivileged user when the tests run as root (root
/// writes through file permissions), so that a read-only file is read-only.
async fn run_unprivileged(env: &TestEnv, args: &[&str]) -> RunOutput {
    let mut cmd = env.command(args);
    if running_as_root() {
        cmd.uid(65_534).gid(65_534);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("finishes")
        .expect("runs");
    RunOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

async fn integrity(env: &TestEnv) -> String {
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&env.db().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_fails_the_run_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::start(account(500)).await;
    env.run_ok(&["--backfill"]).await;
    env.sim.update_lead(env.sim.alive_ids()[0]);
    let set_mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(env.dir.path(), 0o755);
    set_mode(&env.db, 0o444);
    set_mode(&env.token_file, 0o644);
    set_mode(&env.config, 0o644);
    let out = run_unprivileged(&env, &["--once"]).await;
    set_mode(&env.db, 0o644);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains(&env.db.display().to_string()) && out.stderr.contains("readonly"),
        "the message names the file and the cause: {}",
        out.stderr
    );
    assert_eq!(integrity(&env).await, "ok");
    env.assert_token_absent(&[&out]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_run_naming_the_file_and_keeps_what_was_committed() {
    // About 18 MB of mirror for 8 MiB of room: the first batches of pages
    // fit, a later one does not.
    let env = TestEnv::start_with(account(6_000), "", "max_size_mib = 8\n").await;
    let out = env.run(&["--backfill"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains(&env.db.display().to_string()) && out.stderr.contains("full"),
        "the message names the file and the cause: {}",
        out.stderr
    );
    assert_eq!(integrity(&env).await, "ok");
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
        .fetch_one(&env.db().await)
        .await
        .unwrap();
    assert!(kept > 0, "the pages committed before are kept");
    // With room again, the backfill resumes and completes.
    env.write_config("", "");
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    env.assert_token_absent(&[&out]);
}

on_each_backend!(
    ignored_filters_stop_backfill_and_once_within_a_few_requests,
    a_blocked_or_unpaid_account_stops_every_phase_at_once,
    a_full_sync_of_a_blocked_account_sends_one_request,
    a_blocked_daemon_probes_rarely_and_syncs_again_once_unblocked,
    throttling_holds_every_request_until_the_pause_ends_and_the_run_completes,
);
