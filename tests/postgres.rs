//! The mirror in PostgreSQL (`database.url`): URLs that cannot work exit 2
//! or 1 without showing their password, the password comes from its file,
//! and a reader holding a long transaction does not hold the sync back.
//! The tests that need a server run under `common::on_postgres`.

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, on_postgres};
use kommo_simulator::{RecordKind, SimulatorConfig};
use sqlx::{Connection, Executor};

fn small() -> SimulatorConfig {
    SimulatorConfig {
        leads: 300,
        tie_block: 0,
        ..SimulatorConfig::default()
    }
}

/// A config for `env`'s account with `database` as its `[database]` section.
fn config_with_database(env: &TestEnv, database: &str) -> String {
    format!(
        "[kommo]\nbase_url = \"{}\"\ntoken_file = \"{}\"\n[database]\n{database}\n[sync]\nentities = [\"leads\"]\n",
        env.sim.base_url(),
        env.token_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_url_that_cannot_work_exits_2_without_showing_its_password() {
    let env = TestEnv::start(small()).await;
    // (the [database] section, the key the message must name)
    let cases = [
        (
            "url = \"mysql://kommo:s3cr3t@db.example/crm\"",
            "database.url",
        ),
        ("url = \"postgres://kommo:s3cr3t@/crm\"", "database.url"),
        (
            "url = \"postgres://kommo:s3cr3t@db example/crm\"",
            "database.url",
        ),
        (
            "url = \"postgres://kommo:s3cr3t@127.0.0.1/crm\"\nschema = \"Acme-Corp\"",
            "database.schema",
        ),
        (
            "url = \"postgres://kommo:s3cr3t@127.0.0.1/crm\"\nmax_size_mib = 10",
            "database.max_size_mib",
        ),
        ("schema = \"acme\"", "database.schema"),
        (
            "url = \"postgres://kommo@127.0.0.1/crm\"\npassword_file = \"/nonexistent/pw\"",
            "database.password_file",
        ),
    ];
    for (database, key) in cases {
        std::fs::write(&env.config, config_with_database(&env, database)).unwrap();
        let out = env.run(&["--once"]).await;
        assert_eq!(out.code, Some(2), "{database}: {out:#?}");
        assert!(out.stderr.contains(key), "{database}: no {key} in {out:#?}");
        assert!(
            !out.stderr.contains("s3cr3t") && !out.stdout.contains("s3cr3t"),
            "{database}: the password was shown: {out:#?}"
        );
    }
    assert_eq!(env.sim.request_log().len(), 0, "no request was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_1_naming_the_url_without_its_password() {
    let env = TestEnv::start(small()).await;
    let password_file = env.dir.path().join("db-password");
    std::fs::write(&password_file, "fr0mf1le\n").unwrap();
    for database in [
        "url = \"postgres://kommo:s3cr3t@127.0.0.1:1/crm\"".to_string(),
        format!(
            "url = \"postgres://kommo@127.0.0.1:1/crm\"\npassword_file = \"{}\"",
            password_file.display()
        ),
    ] {
        std::fs::write(&env.config, config_with_database(&env, &database)).unwrap();
        for mode in ["--once", "--status"] {
            let out = env.run(&[mode]).await;
            assert_eq!(out.code, Some(1), "{database} {mode}: {out:#?}");
            assert!(
                out.stderr.contains("postgres://kommo@127.0.0.1:1/crm"),
                "{database} {mode}: the URL is named without its password: {out:#?}"
            );
            for secret in ["s3cr3t", "fr0mf1le"] {
                assert!(
                    !out.stderr.contains(secret) && !out.stdout.contains(secret),
                    "{database} {mode}: the password was shown: {out:#?}"
                );
            }
        }
    }
    assert_eq!(env.sim.request_log().len(), 0, "no request was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_holding_a_long_transaction_does_not_stop_or_slow_the_sync() {
    on_postgres(async {
        let env = TestEnv::start_with(small(), "", "[sync]\nentities = [\"leads\"]\n").await;
        env.run_ok(&["--backfill"]).await;
        let pg = env.postgres.as_ref().unwrap();
        // What a psql user does: a transaction that reads every table of
        // the mirror and stays open (ACCESS SHARE locks, an old snapshot).
        sqlx::any::install_default_drivers();
        let mut reader = sqlx::AnyConnection::connect(&pg.url).await.unwrap();
        let schema = &pg.schema;
        reader
            .execute(sqlx::AssertSqlSafe(format!(
                "SET search_path TO \"{schema}\"; BEGIN ISOLATION LEVEL REPEATABLE READ; \
                 SELECT COUNT(*) FROM leads; SELECT COUNT(*) FROM sync_runs; \
                 SELECT COUNT(*) FROM sync_state; SELECT COUNT(*) FROM entity_sync_state; \
                 SELECT COUNT(*) FROM lead_tags; SELECT COUNT(*) FROM lead_field_values"
            )))
            .await
            .unwrap();
        let seen_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        common::change_account(&env.sim, 40);
        let started = Instant::now();
        let once = tokio::time::timeout(Duration::from_secs(60), env.run(&["--once"]))
            .await
            .expect("the sync is not held back by the reader");
        assert_eq!(once.code, Some(0), "{once:#?}");
        let full = tokio::time::timeout(Duration::from_secs(120), env.run(&["--backfill"]))
            .await
            .expect("a full sync is not held back by the reader");
        assert_eq!(full.code, Some(0), "{full:#?}");
        let took = started.elapsed();
        env.assert_mirror_equals_account().await;
        // The reader still sees its snapshot, whole: none of the new rows.
        let seen_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        assert_eq!(seen_after, seen_before, "the reader's snapshot moved");
        reader.execute("COMMIT").await.unwrap();
        // The same two syncs with no reader take about as long: the reader
        // made nobody wait (a lock wait would add the whole transaction).
        common::change_account(&env.sim, 40);
        let again = Instant::now();
        env.run_ok(&["--once"]).await;
        env.run_ok(&["--backfill"]).await;
        let alone = again.elapsed();
        assert!(
            took < alone * 3 + Duration::from_secs(5),
            "with the reader {took:?}, without {alone:?}"
        );
    })
    .await;
}

/// The README's cross-account query (its view and its select), with the
/// schemas `acme` and `globex` replaced by `schemas`.
fn readme_cross_account_query(schemas: [&str; 2]) -> Vec<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .find("<!-- cross-account query")
        .expect("the README has the cross-account query");
    let block = &readme[start..];
    let sql_start = block.find("```sql\n").unwrap() + "```sql\n".len();
    let sql_end = sql_start + block[sql_start..].find("```").unwrap();
    block[sql_start..sql_end]
        .replace("acme.", &format!("{}.", schemas[0]))
        .replace("globex.", &format!("{}.", schemas[1]))
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Open leads (neither won nor lost) and their summed price, of `env`'s account.
fn open_leads(env: &TestEnv) -> (i64, i64) {
    let open: Vec<serde_json::Value> = env
        .sim
        .alive_leads()
        .into_iter()
        .filter(|l| !matches!(l["status_id"].as_i64(), Some(142 | 143)))
        .collect();
    let value = open.iter().filter_map(|l| l["price"].as_i64()).sum();
    (open.len() as i64, value)
}

/// One instance of `systemd/kommo-sync@.service` as systemd would start it:
/// its `ExecStart=` and `Environment=` lines with `%i` filled in, the
/// instance's config and token (`LoadCredential=kommo-token:`) taken from
/// `etc` instead of /etc/kommo-sync, its state directory under `var`.
fn template_instance(
    instance: &str,
    etc: &std::path::Path,
    var: &std::path::Path,
) -> tokio::process::Command {
    let unit = include_str!("../systemd/kommo-sync@.service");
    let fill = |value: &str| {
        value
            .replace("%i", instance)
            .replace("/etc/kommo-sync", &etc.display().to_string())
            .replace("/var/lib/kommo-sync", &var.display().to_string())
    };
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the template has ExecStart=");
    let mut words = exec.split_whitespace().map(fill);
    assert_eq!(words.next().as_deref(), Some("/usr/local/bin/kommo-sync"));
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kommo-sync"));
    command.args(words);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("KOMMO") || key == "CREDENTIALS_DIRECTORY" || key == "NOTIFY_SOCKET" {
            command.env_remove(key);
        }
    }
    for line in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        let (key, value) = line.split_once('=').unwrap();
        command.env(key, fill(value));
    }
    // LoadCredential=kommo-token:PATH: systemd copies PATH into the
    // instance's credentials directory.
    let credential = unit
        .lines()
        .find_map(|l| l.strip_prefix("LoadCredential=kommo-token:"))
        .expect("the template loads the token as a credential");
    let credentials = var.join(format!("credentials-{instance}"));
    std::fs::create_dir_all(&credentials).unwrap();
    std::fs::copy(fill(credential), credentials.join("kommo-token")).unwrap();
    std::fs::create_dir_all(var.join(instance)).unwrap();
    command.env("CREDENTIALS_DIRECTORY", &credentials);
    command.env("RUST_LOG", "info");
    command.stdin(std::process::Stdio::null());
    command.stdout(std::process::Stdio::null());
    // The log in a file (a pipe nobody reads would fill and stall it).
    let log = std::fs::File::create(var.join(format!("{instance}.log"))).unwrap();
    command.stderr(std::process::Stdio::from(log));
    command.kill_on_drop(true);
    command
}

/// Whether the alive leads of `env`'s mirror are the account's, each at
/// its version (polled while a daemon syncs).
async fn leads_match(env: &TestEnv) -> bool {
    let mirror: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, updated_at FROM leads WHERE is_deleted = 0 ORDER BY id")
            .fetch_all(&env.db().await)
            .await
            .unwrap_or_default();
    let mut account: Vec<(i64, i64)> = env
        .sim
        .alive_leads()
        .iter()
        .filter_map(|l| Some((l["id"].as_i64()?, l["updated_at"].as_i64()?)))
        .collect();
    account.sort_unstable();
    mirror == account
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_in_two_schemas_of_one_database_are_each_mirrored_exactly() {
    on_postgres(async {
        // Two instances of the template unit, acme and globex: two accounts,
        // an instance config and token each, one server, a schema each.
        let acme = TestEnv::start(small()).await;
        let globex = TestEnv::start(SimulatorConfig {
            leads: 450,
            seed: 7,
            ..small()
        })
        .await;
        let root = tempfile::tempdir().unwrap();
        let (etc, var) = (root.path().join("etc"), root.path().join("var"));
        std::fs::create_dir_all(&etc).unwrap();
        let mut daemons = Vec::new();
        for (instance, env) in [("acme", &acme), ("globex", &globex)] {
            let pg = env.postgres.as_ref().unwrap();
            std::fs::write(
                etc.join(format!("{instance}.toml")),
                format!(
                    "[kommo]\nbase_url = \"{}\"\n[database]\nurl = \"{}\"\nschema = \"{}\"\n\
                     [schedule]\nincremental = \"*/2 * * * * *\"\nfull = \"0 0 0 1 1 *\"\n",
                    env.sim.base_url(),
                    pg.url,
                    pg.schema
                ),
            )
            .unwrap();
            std::fs::write(etc.join(format!("{instance}.token")), &env.token).unwrap();
            daemons.push(template_instance(instance, &etc, &var).spawn().unwrap());
        }
        // Each instance backfills its account at start, then follows it.
        for env in [&acme, &globex] {
            assert!(
                common::wait_for(Duration::from_secs(90), || leads_match(env)).await,
                "an instance did not mirror its account"
            );
        }
        common::change_account(&acme.sim, 20);
        common::change_account(&globex.sim, 30);
        for env in [&acme, &globex] {
            assert!(
                common::wait_for(Duration::from_secs(60), || leads_match(env)).await,
                "an instance did not follow its account's changes"
            );
        }
        for daemon in &mut daemons {
            let pid = daemon.id().unwrap() as libc::pid_t;
            // SAFETY: a plain signal to our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for (instance, mut daemon) in ["acme", "globex"].into_iter().zip(daemons) {
            let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
                .await
                .expect("an instance stops on SIGTERM")
                .unwrap();
            let log = std::fs::read_to_string(var.join(format!("{instance}.log"))).unwrap();
            assert_eq!(status.code(), Some(0), "{instance}: {log}");
            assert!(!log.contains(&acme.token) && !log.contains(&globex.token));
        }
        acme.assert_mirror_equals_account().await;
        globex.assert_mirror_equals_account().await;
        for kind in [RecordKind::Contact, RecordKind::Company] {
            acme.assert_records_equal_account(kind).await;
            globex.assert_records_equal_account(kind).await;
        }
        // The README's query over both schemas answers for both accounts.
        let schemas = [
            acme.postgres.as_ref().unwrap().schema.as_str(),
            globex.postgres.as_ref().unwrap().schema.as_str(),
        ];
        let pool = acme.db().await;
        let statements = readme_cross_account_query(schemas);
        let (create_view, select) = (&statements[0], &statements[1]);
        // The view in acme's schema (dropped with it).
        sqlx::query(sqlx::AssertSqlSafe(create_view.clone()))
            .execute(&pool)
            .await
            .unwrap();
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(select.clone()))
            .fetch_all(&pool)
            .await
            .unwrap();
        let (acme_open, acme_value) = open_leads(&acme);
        let (globex_open, globex_value) = open_leads(&globex);
        assert_eq!(
            rows,
            vec![
                ("acme".to_string(), acme_open, acme_value),
                ("globex".to_string(), globex_open, globex_value),
            ]
        );
        assert_ne!(acme_open, globex_open, "the two accounts differ");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_fails_the_run_naming_the_mirror_and_changes_nothing() {
    on_postgres(async {
        let env = TestEnv::start_with(small(), "", "[sync]\nentities = [\"leads\"]\n").await;
        env.run_ok(&["--backfill"]).await;
        common::change_account(&env.sim, 10);
        let pg = env.postgres.as_ref().unwrap();
        let before = common::run_statuses(&env.db().await).await;
        // The server refuses every write of this session (as for a role
        // granted SELECT alone, or a read-only replica).
        let read_only = format!(
            "[kommo]\nbase_url = \"{}\"\ntoken_file = \"{}\"\n[database]\nurl = \"{}?options=-c%20default_transaction_read_only%3Don\"\nschema = \"{}\"\n[sync]\nentities = [\"leads\"]\n",
            env.sim.base_url(),
            env.token_file.display(),
            pg.url,
            pg.schema
        );
        std::fs::write(&env.config, read_only).unwrap();
        let out = env.run(&["--once"]).await;
        assert_eq!(out.code, Some(1), "{out:#?}");
        assert!(
            out.stderr.contains(&format!("(schema {})", pg.schema))
                && out.stderr.contains("read-only"),
            "the message names the mirror and the cause: {}",
            out.stderr
        );
        assert_eq!(
            common::run_statuses(&env.db().await).await,
            before,
            "nothing written, not even a run"
        );
        env.assert_token_absent(&[&out]);
        // Writable again: the next sync mirrors the changes.
        env.write_config("", "[sync]\nentities = [\"leads\"]\n");
        env.run_ok(&["--once"]).await;
        env.assert_mirror_equals_account().await;
    })
    .await;
}
