//! The command line's contract: configuration errors exit 2 before any
//! request, `--check` and `--status` report without leaking the token, and
//! `--demo` works with nothing set up.

mod common;

use common::TestEnv;
use kommo_simulator::SimulatorConfig;

fn small() -> SimulatorConfig {
    SimulatorConfig {
        leads: 300,
        tie_block: 0,
        ..SimulatorConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_2_before_any_request() {
    let env = TestEnv::start(small()).await;
    let db = env.db.display().to_string();
    let token_file = env.token_file.display().to_string();
    let base = env.sim.base_url();
    // (config file text, the key the message must name)
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "[kommo]\nbase_url = \"{base}\"\ntoken_file = \"/nonexistent/token\"\n[database]\npath = \"{db}\"\n"
            ),
            "kommo.token_file",
        ),
        (
            format!("[kommo]\nbase_url = \"{base}\"\n[database]\npath = \"{db}\"\n"),
            "KOMMO_TOKEN",
        ),
        (
            format!(
                "[kommo]\nbase_url = \"http://example.com\"\ntoken_file = \"{token_file}\"\n[database]\npath = \"{db}\"\n"
            ),
            "kommo.base_url",
        ),
        (
            format!(
                "[kommo]\nbase_url = \"{base}\"\ntoken_file = \"{token_file}\"\npage_size = 251\n[database]\npath = \"{db}\"\n"
            ),
            "kommo.page_size",
        ),
        (
            format!(
                "[kommo]\nbase_url = \"{base}\"\ntoken_file = \"{token_file}\"\npage_size = 0\n[database]\npath = \"{db}\"\n"
            ),
            "kommo.page_size",
        ),
        (
            format!(
                "[kommo]\nbase_url = \"{base}\"\ntoken_file = \"{token_file}\"\nrequests_per_second = 0\n[database]\npath = \"{db}\"\n"
            ),
            "kommo.requests_per_second",
        ),
        (
            format!(
                "[kommo]\nbase_url = \"{base}\"\ntoken_file = \"{token_file}\"\n[database]\npath = \"{db}\"\n[schedule]\nincremental = \"every five minutes\"\n"
            ),
            "schedule.incremental",
        ),
        (
            format!(
                "[kommo]\nbase_url = \"{base}\"\ntoken_file = \"{token_file}\"\n[database]\npath = \"{db}\"\n[schedule]\nfull = \"0 17 3 * *\"\n"
            ),
            "schedule.full",
        ),
        (
            format!("[kommo]\ntoken_file = \"{token_file}\"\n[database]\npath = \"{db}\"\n"),
            "kommo.subdomain",
        ),
        (
            format!(
                "[kommo]\nbase_url = \"{base}\"\ntoken_file = \"{token_file}\"\npage_sise = 100\n[database]\npath = \"{db}\"\n"
            ),
            "page_sise",
        ),
    ];
    for (text, key) in &cases {
        std::fs::write(&env.config, text).unwrap();
        for mode in [&["--backfill"][..], &["--once"], &["--check"], &[]] {
            let out = env.run(mode).await;
            assert_eq!(out.code, Some(2), "{key} with {mode:?}: {out:#?}");
            assert!(
                out.stderr.contains(key),
                "{key} with {mode:?}: message does not name it: {}",
                out.stderr
            );
        }
    }
    // Two modes at once, and a config file that does not exist, are usage errors too.
    env.write_config("", "");
    assert_eq!(env.run(&["--once", "--backfill"]).await.code, Some(2));
    let mut cmd = env.command(&[]);
    cmd.args(["--config", "/nonexistent/kommo.toml", "--once"]);
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        env.sim.stats().requests,
        0,
        "a request was sent despite a configuration error"
    );
    assert!(
        !env.db.exists(),
        "a configuration error created the database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlap_below_one_second_exits_2_before_any_request() {
    let env = TestEnv::start(small()).await;
    // From the file (0 and a negative value), and from the environment.
    let cases: [(&str, Option<&str>); 3] = [
        ("[sync]\noverlap_seconds = 0", None),
        ("[sync]\noverlap_seconds = -5", None),
        ("", Some("0")),
    ];
    for (sections, from_env) in cases {
        env.write_config("", sections);
        for mode in [&["--backfill"][..], &["--once"], &["--check"], &[]] {
            let mut cmd = env.command(mode);
            if let Some(value) = from_env {
                cmd.env("KOMMO_SYNC__SYNC__OVERLAP_SECONDS", value);
            }
            let out = cmd.output().await.unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let case = format!("{sections:?} / env {from_env:?} with {mode:?}");
            assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
            assert!(
                stderr.contains("sync.overlap_seconds") && stderr.contains("at least 1"),
                "{case}: the message names the key and the fix: {stderr}"
            );
        }
    }
    assert_eq!(
        env.sim.stats().requests,
        0,
        "a request was sent despite a configuration error"
    );
    assert!(
        !env.db.exists(),
        "a configuration error created the database"
    );
    // One second is the smallest overlap allowed.
    env.write_config("", "[sync]\noverlap_seconds = 1");
    env.run_ok(&["--backfill"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_the_file() {
    let env = TestEnv::start(small()).await;
    std::fs::write(
        &env.config,
        format!("[kommo]\nbase_url = \"{}\"\n", env.sim.base_url()),
    )
    .unwrap();
    // A value that looks like a number stays the string it is (a relative
    // path, taken from the working directory).
    let other_db = env.dir.path().join("007");
    let mut cmd = env.command(&["--backfill"]);
    cmd.env("KOMMO_SYNC__DATABASE__PATH", "007")
        .env("KOMMO_SYNC__KOMMO__PAGE_SIZE", "100")
        .env("KOMMO_TOKEN", &env.token);
    let out = cmd.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(other_db.exists());
    // 300 leads at page_size 100 (keyset pages overlap by a lead) take 3 or 4
    // pages, plus the newest-lead probe and the two requests that confirm the
    // end (from the last page's newest second, asked twice); at the default
    // 250 they would take 2 pages.
    let lead_requests = env.sim.stats().lead_requests;
    assert!(
        (6..=7).contains(&lead_requests),
        "page_size from the environment: {lead_requests} requests"
    );
    let pool = common::open_db(&other_db).await;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_status_report_without_the_token() {
    let env = TestEnv::start(small()).await;
    let out = env.run_ok(&["--check"]).await;
    assert!(out.stdout.contains("API probe:     ok"), "{}", out.stdout);
    assert!(out.stdout.contains("API filters:   ok"), "{}", out.stdout);
    // The test token expires in a year: the date and the days left.
    assert!(
        out.stdout.contains("token expiry:  ")
            && (out.stdout.contains("(364 days left)") || out.stdout.contains("(365 days left)")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(&env.token) && !out.stderr.contains(&env.token));
    assert_eq!(
        env.sim.stats().requests,
        2,
        "the account probe and the filter probe"
    );

    // --status before any sync: a clear message, no request.
    let out = env.run(&["--status"]).await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("--backfill"));

    env.run_ok(&["--backfill"]).await;
    env.sim.reset_stats();
    let out = env.run_ok(&["--status"]).await;
    assert!(
        out.stdout.contains("300 alive, 0 deleted"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("full        ok"), "{}", out.stdout);
    assert!(out.stdout.contains("days left)"), "{}", out.stdout);
    assert!(!out.stdout.contains(&env.token));
    assert_eq!(env.sim.stats().requests, 0, "--status sent a request");

    // A token that is not a JWT: both say it carries no expiry.
    std::fs::write(&env.token_file, "opaque-token").unwrap();
    let out = env.run_ok(&["--status"]).await;
    assert!(
        out.stdout
            .contains("token expiry:        no expiry in the token"),
        "{}",
        out.stdout
    );
    env.sim.set_token("opaque-token");
    let out = env.run_ok(&["--check"]).await;
    assert!(
        out.stdout.contains("token expiry:  no expiry in the token"),
        "{}",
        out.stdout
    );
    std::fs::write(&env.token_file, &env.token).unwrap();
    env.sim.set_token(&env.token);

    // A revoked token: --check exits 3 with the alert.
    env.sim.revoke_token();
    let out = env.run(&["--check"]).await;
    assert_eq!(out.code, Some(3), "{out:#?}");
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("alert=\"token_rejected\""))
            .count(),
        1,
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("API probe failed"), "said once");
    // With logging off, --check still says why it failed.
    let out = env
        .command(&["--check"])
        .env("RUST_LOG", "off")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("API probe failed"), "{stderr}");
    assert!(!stderr.contains("alert=") && !stderr.contains(&env.token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_alerts_and_sends_nothing() {
    let env = TestEnv::start(small()).await;
    let expired = kommo_sync::token::fake_jwt(kommo_sync::clock::unix_now() - 60);
    std::fs::write(&env.token_file, expired.expose()).unwrap();
    let out = env.run(&["--once"]).await;
    assert_eq!(out.code, Some(3), "{out:#?}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("alert=\"token_expired\"")),
        "{}",
        out.stderr
    );
    assert_eq!(env.sim.stats().requests, 0);

    let soon = kommo_sync::token::fake_jwt(kommo_sync::clock::unix_now() + 3 * 86_400 + 600);
    env.sim.set_token(soon.expose());
    std::fs::write(&env.token_file, soon.expose()).unwrap();
    let out = env.run_ok(&["--once"]).await;
    let warn = out
        .stderr
        .lines()
        .find(|l| l.contains("alert=\"token_expiring\""))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        warn.contains("WARN") && warn.contains("days_left=3"),
        "{warn}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_with_nothing_set_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kommo-sync"));
    cmd.arg("--demo")
        .current_dir(dir.path())
        .env_remove("KOMMO_TOKEN")
        .env("NO_COLOR", "1");
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Alive leads, contacts and companies equal to the simulated account: yes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("The largest open leads and the people behind them"),
        "{stdout}"
    );
    assert!(stdout.contains("0 answered 429"), "{stdout}");
    let pool = common::open_db(&dir.path().join("kommo-demo.sqlite")).await;
    let (alive, deleted): (i64, i64) =
        sqlx::query_as("SELECT SUM(is_deleted = 0), SUM(is_deleted) FROM leads")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((alive, deleted), (5_005, 5));
    let (contacts, deleted_contacts, companies): (i64, i64, i64) = sqlx::query_as(
        "SELECT SUM(is_deleted = 0), SUM(is_deleted), (SELECT COUNT(*) FROM companies) FROM contacts",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((contacts, deleted_contacts, companies), (2_997, 3, 1_000));
    readme_queries_answer_with_names(&pool).await;
}

/// Runs each SQL example of the README's "Example queries" on the demo's
/// mirror: each answers with rows, and its name columns hold names, not ids.
async fn readme_queries_answer_with_names(pool: &sqlx::SqlitePool) {
    use sqlx::{Column, Row, ValueRef};
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### Example queries")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has an Example queries section");
    let queries: Vec<&str> = section
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .collect();
    assert!(queries.len() >= 4, "{} queries", queries.len());
    let name_columns = [
        "pipeline",
        "stage",
        "pipeline_name",
        "status_name",
        "lead_source",
        "manager",
        "name",
    ];
    for query in queries {
        let rows = sqlx::query(sqlx::AssertSqlSafe(query.to_string()))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert!(
            !rows.is_empty(),
            "no rows from the README's query:\n{query}"
        );
        for row in &rows {
            for column in row.columns() {
                if !name_columns.contains(&column.name()) {
                    continue;
                }
                let raw = row.try_get_raw(column.ordinal()).unwrap();
                if raw.is_null() {
                    continue;
                }
                let text: String = row
                    .try_get(column.ordinal())
                    .unwrap_or_else(|e| panic!("{} is not text in\n{query}: {e}", column.name()));
                assert!(
                    text.parse::<i64>().is_err(),
                    "{} holds an id ({text}), not a name, in\n{query}",
                    column.name()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_readable_by_others_draws_a_warning_with_the_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::start(small()).await;
    let out = env.run_ok(&["--check"]).await;
    assert!(
        !out.stderr.contains("chmod"),
        "mode 600 is fine: {}",
        out.stderr
    );
    // Readable by this process's own group (the README's option B): fine.
    std::fs::set_permissions(&env.token_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = env.run_ok(&["--check"]).await;
    assert!(!out.stderr.contains("chmod"), "own group: {}", out.stderr);
    std::fs::set_permissions(&env.token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run_ok(&["--check"]).await;
    let path = env.token_file.display().to_string();
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("WARN") && l.contains("can be read by other users"))
        .unwrap_or_else(|| panic!("no warning: {}", out.stderr));
    assert!(
        warning.contains(&format!("chmod 600 {path}")),
        "names the file and the command: {warning}"
    );
    env.assert_token_absent(&[&out]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_on_a_terminal_shows_progress_and_none_otherwise() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 2_000,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        // About 22 requests at 4/s: several seconds of progress.
        "requests_per_second = 4\npage_size = 100",
        "",
    )
    .await;
    let piped = env.run_ok(&["--backfill"]).await;
    assert!(
        !piped.stderr.contains("leads/s") && !piped.stdout.contains("leads/s"),
        "no progress off a terminal: {}",
        piped.stderr
    );

    // Under a pseudo-terminal (script(1)), the same run draws its progress,
    // and a log line written meanwhile (a retried 500) does not mix with it.
    env.sim.queue_faults(
        kommo_simulator::FaultScope::Leads,
        8,
        vec![kommo_simulator::Fault::Status(500)],
    );
    let command = format!(
        "'{}' --config '{}' --backfill",
        env!("CARGO_BIN_EXE_kommo-sync"),
        env.config.display()
    );
    let out = tokio::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("script(1) runs");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(
        screen.contains("full sync: ") && screen.contains("leads/s") && screen.contains("elapsed"),
        "the terminal shows progress: {screen}"
    );
    assert!(screen.contains("requests ("), "{screen}");
    // What the terminal shows: each \r returns to the start of the line.
    let warnings: Vec<&str> = screen
        .split(['\r', '\n'])
        .filter(|l| l.contains("transient failure"))
        .collect();
    assert_eq!(warnings.len(), 1, "{screen}");
    assert!(
        !warnings[0].contains("elapsed"),
        "the log line mixed with the progress line: {:?}",
        warnings[0]
    );
    assert!(!screen.contains(&env.token));
}
