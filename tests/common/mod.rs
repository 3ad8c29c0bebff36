//! Test harness: each test gets its own simulated Kommo account on 127.0.0.1,
//! its own directory with a config file, a token file and a real mirror (a
//! SQLite file, or under [`on_postgres`] a schema of its own in the
//! PostgreSQL server of `KOMMO_SYNC_TEST_POSTGRES_URL`, dropped afterwards),
//! and runs the real `kommo-sync` binary against them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use std::collections::{BTreeSet, HashSet};

use kommo_simulator::{Mutation, Simulator, SimulatorConfig};
use serde_json::Value;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AnyPool, ConnectOptions, Connection, Executor};
use tempfile::TempDir;

pub mod records;

/// The columns copied from the lead's field of the same name, written out
/// from interface.md on purpose (not taken from the store) so that a column
/// the store forgot fails the tests.
pub const SCALAR_COLUMNS: [&str; 17] = [
    "name",
    "price",
    "responsible_user_id",
    "group_id",
    "status_id",
    "pipeline_id",
    "loss_reason_id",
    "source_id",
    "created_by",
    "updated_by",
    "score",
    "account_id",
    "labor_cost",
    "created_at",
    "updated_at",
    "closed_at",
    "closest_task_at",
];

/// What one run of the binary printed and returned.
#[derive(Debug)]
pub struct RunOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// One test's world.
pub struct TestEnv {
    pub sim: Simulator,
    pub dir: TempDir,
    pub token: String,
    pub token_file: PathBuf,
    /// The SQLite mirror's file (unused on PostgreSQL).
    pub db: PathBuf,
    pub config: PathBuf,
    /// The PostgreSQL mirror, when the test runs under [`on_postgres`].
    pub postgres: Option<PostgresMirror>,
}

/// A test's PostgreSQL mirror: the server and a schema of its own.
pub struct PostgresMirror {
    pub url: String,
    pub schema: String,
}

/// The environment variable naming the PostgreSQL server of the tests.
pub const POSTGRES_URL_VARIABLE: &str = "KOMMO_SYNC_TEST_POSTGRES_URL";

tokio::task_local! {
    /// The PostgreSQL server of the test running in this task, if any.
    static POSTGRES_URL: String;
}

/// Runs `test` with its mirror in PostgreSQL (a schema of its own, dropped
/// afterwards), when `KOMMO_SYNC_TEST_POSTGRES_URL` names a server; else
/// says once that the PostgreSQL tests are skipped, and passes.
pub async fn on_postgres(test: impl std::future::Future<Output = ()>) {
    match std::env::var(POSTGRES_URL_VARIABLE) {
        Ok(url) if !url.is_empty() => POSTGRES_URL.scope(url, test).await,
        _ => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                // Straight to the terminal: the harness captures eprintln!.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: the PostgreSQL runs of these tests were skipped: {POSTGRES_URL_VARIABLE} is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
                );
            });
        }
    }
}

/// Each named test (an `async fn` of the file) twice: `sqlite::NAME` on a
/// SQLite file, `postgres::NAME` in a PostgreSQL schema ([`on_postgres`]).
#[macro_export]
macro_rules! on_each_backend {
    ($($name:ident),+ $(,)?) => {
        /// The tests of this file on a SQLite mirror.
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name().await
                }
            )+
        }
        /// The same tests on a PostgreSQL mirror.
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::on_postgres(super::$name()).await
                }
            )+
        }
    };
}

/// A schema name no other test uses.
fn unique_schema() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

impl Drop for TestEnv {
    /// Drops the test's PostgreSQL schema.
    fn drop(&mut self) {
        let Some(pg) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime: a thread of its own with a
        // runtime of its own does the async work.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                sqlx::any::install_default_drivers();
                if let Ok(mut connection) = sqlx::AnyConnection::connect(&pg.url).await {
                    let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", pg.schema);
                    let _ = connection.execute(sqlx::AssertSqlSafe(drop)).await;
                    let _ = connection.close().await;
                }
            });
        })
        .join();
    }
}

/// A JWT-shaped token valid for a year, unique to the test.
pub fn test_token() -> String {
    kommo_sync::token::fake_jwt(kommo_sync::clock::unix_now() + 365 * 86_400)
        .expose()
        .to_string()
}

impl TestEnv {
    /// Starts a simulator with `config` (its token replaced by a fresh JWT) and
    /// writes a config file pointing at it, plus `extra` TOML lines per section.
    pub async fn start(config: SimulatorConfig) -> TestEnv {
        Self::start_with(config, "", "").await
    }

    /// Like [`TestEnv::start`], with extra lines in `[kommo]` and at the top level sections.
    pub async fn start_with(
        mut config: SimulatorConfig,
        kommo_extra: &str,
        sections: &str,
    ) -> TestEnv {
        let token = test_token();
        config.token = token.clone();
        let sim = Simulator::start(config).await.expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let db = dir.path().join("mirror.sqlite");
        let config = dir.path().join("config.toml");
        let postgres = POSTGRES_URL
            .try_with(|url| PostgresMirror {
                url: url.clone(),
                schema: unique_schema(),
            })
            .ok();
        let env = TestEnv {
            sim,
            dir,
            token,
            token_file,
            db,
            config,
            postgres,
        };
        env.write_config(kommo_extra, sections);
        env
    }

    /// Rewrites the config file.
    pub fn write_config(&self, kommo_extra: &str, sections: &str) {
        let database = match &self.postgres {
            None => format!("path = \"{}\"", self.db.display()),
            Some(pg) => format!("url = \"{}\"\nschema = \"{}\"", pg.url, pg.schema),
        };
        let text = format!(
            "[kommo]\nbase_url = \"{}\"\ntoken_file = \"{}\"\n{kommo_extra}\n[database]\n{database}\n{sections}\n",
            self.sim.base_url(),
            self.token_file.display(),
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Whether the mirror is in PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// The binary, with this test's config and a clean environment.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kommo-sync"));
        cmd.arg("--config").arg(&self.config).args(args);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("KOMMO") || key == "CREDENTIALS_DIRECTORY" || key == "NOTIFY_SOCKET"
            {
                cmd.env_remove(key);
            }
        }
        cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
        cmd.current_dir(self.dir.path());
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Runs the binary to completion.
    pub async fn run(&self, args: &[&str]) -> RunOutput {
        let out = tokio::time::timeout(Duration::from_secs(300), self.command(args).output())
            .await
            .expect("kommo-sync finishes within 5 minutes")
            .expect("kommo-sync runs");
        RunOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs the binary and insists on exit 0.
    pub async fn run_ok(&self, args: &[&str]) -> RunOutput {
        let out = self.run(args).await;
        assert_eq!(out.code, Some(0), "kommo-sync {args:?} failed: {out:#?}");
        out
    }

    /// A read connection to the mirror, whichever database holds it.
    pub async fn db(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        match &self.postgres {
            None => {
                let url = SqliteConnectOptions::new()
                    .filename(&self.db)
                    .to_url_lossy();
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA busy_timeout = 30000")
                                .await
                                .map(|_| ())
                        })
                    })
                    .connect_with(AnyConnectOptions::from_url(&url).unwrap())
                    .await
                    .expect("mirror opens")
            }
            Some(pg) => {
                let set = format!("SET search_path TO \"{}\"", pg.schema);
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(move |conn, _| {
                        let set = set.clone();
                        Box::pin(
                            async move { conn.execute(sqlx::AssertSqlSafe(set)).await.map(|_| ()) },
                        )
                    })
                    .connect(&pg.url)
                    .await
                    .expect("mirror opens")
            }
        }
    }

    /// Asserts that the alive leads of the mirror are exactly the account's
    /// alive leads, every column equal to the lead's field.
    pub async fn assert_mirror_equals_account(&self) {
        let expected = self.sim.alive_leads();
        let rows = mirror_rows(&self.db().await, "is_deleted = 0").await;
        let mirror_ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let account_ids: Vec<i64> = expected.iter().map(|l| l["id"].as_i64().unwrap()).collect();
        assert_eq!(
            mirror_ids.len(),
            account_ids.len(),
            "alive lead count differs: mirror {} vs account {}",
            mirror_ids.len(),
            account_ids.len()
        );
        assert_eq!(mirror_ids, account_ids, "alive lead ids differ");
        for (row, lead) in rows.iter().zip(&expected) {
            assert_row_equals_lead(row, lead);
        }
    }
}

/// The anomalies a listing can meet, each answered in place of a page.
pub fn anomalies() -> Vec<(&'static str, kommo_simulator::Fault)> {
    use kommo_simulator::Fault;
    vec![
        ("empty 200", Fault::EmptyLeads),
        ("{} body", Fault::EmptyObject),
        ("short page without next", Fault::ShortPage),
        ("truncated body", Fault::TruncatedBody),
    ]
}

/// Whether `pool` reads a PostgreSQL mirror.
pub fn is_postgres(pool: &AnyPool) -> bool {
    pool.connect_options()
        .database_url
        .scheme()
        .starts_with("postgres")
}

/// Opens a SQLite file read-write (tests only read).
pub async fn open_db(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(30));
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("mirror opens")
}

/// One row of `leads`, with its scalar columns as a JSON object (types kept).
#[derive(Debug)]
pub struct MirrorRow {
    pub id: i64,
    pub columns: Value,
    pub is_deleted: i64,
    pub deleted_at: Option<i64>,
    pub custom_fields_values: Option<String>,
    pub raw: String,
}

/// A `leads` row as selected by [`mirror_rows`].
type RowTuple = (i64, String, i64, Option<i64>, Option<String>, String);

/// The rows matching `filter`, by id.
pub async fn mirror_rows(pool: &AnyPool, filter: &str) -> Vec<MirrorRow> {
    let object: Vec<String> = SCALAR_COLUMNS
        .iter()
        .map(|c| format!("'{c}', {c}"))
        .collect();
    let json_object = if is_postgres(pool) {
        "json_build_object"
    } else {
        "json_object"
    };
    let sql = format!(
        "SELECT id, CAST({json_object}({}) AS TEXT), is_deleted, deleted_at, \
         CAST(custom_fields_values AS TEXT), CAST(raw AS TEXT) FROM leads WHERE {filter} ORDER BY id",
        object.join(", ")
    );
    let rows: Vec<RowTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap();
    rows.into_iter()
        .map(
            |(id, columns, is_deleted, deleted_at, custom_fields_values, raw)| MirrorRow {
                id,
                columns: serde_json::from_str(&columns).unwrap(),
                is_deleted,
                deleted_at,
                custom_fields_values,
                raw,
            },
        )
        .collect()
}

/// Asserts every interface column of `row` equals the field of `lead`.
pub fn assert_row_equals_lead(row: &MirrorRow, lead: &Value) {
    let id = row.id;
    assert_eq!(Some(id), lead["id"].as_i64());
    for column in SCALAR_COLUMNS {
        let want = lead.get(column).cloned().unwrap_or(Value::Null);
        assert_eq!(row.columns[column], want, "lead {id}: column {column}");
    }
    assert_eq!(row.is_deleted, 0, "lead {id}: is_deleted");
    assert_eq!(row.deleted_at, None, "lead {id}: deleted_at");
    let cf: Value = row
        .custom_fields_values
        .as_deref()
        .map_or(Value::Null, |s| serde_json::from_str(s).unwrap());
    assert_eq!(
        cf,
        lead.get("custom_fields_values")
            .cloned()
            .unwrap_or(Value::Null),
        "lead {id}: custom_fields_values"
    );
    let raw: Value = serde_json::from_str(&row.raw).unwrap();
    assert_eq!(&raw, lead, "lead {id}: raw");
}

/// The statuses of the runs, oldest first.
pub async fn run_statuses(pool: &AnyPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT kind, status FROM sync_runs ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Every lead a mutation touched so far (updated, deleted, restored or added).
pub fn touched_ids(sim: &Simulator) -> HashSet<i64> {
    sim.mutations()
        .iter()
        .map(|m| match m {
            Mutation::Updated(id)
            | Mutation::Deleted(id)
            | Mutation::Restored(id)
            | Mutation::Added(id) => *id,
        })
        .collect()
}

impl TestEnv {
    /// Asserts the token appears nowhere: not in what the runs printed, not
    /// in the database files (WAL and shared memory included).
    pub fn assert_token_absent(&self, outputs: &[&RunOutput]) {
        for out in outputs {
            assert!(
                !out.stdout.contains(&self.token) && !out.stderr.contains(&self.token),
                "the token leaked into the output"
            );
        }
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let mut name = self.db.as_os_str().to_owned();
            name.push(suffix);
            if let Ok(bytes) = std::fs::read(&name) {
                assert!(
                    !bytes
                        .windows(self.token.len())
                        .any(|w| w == self.token.as_bytes()),
                    "the token leaked into {}",
                    PathBuf::from(name).display()
                );
            }
        }
    }

    /// The lines of `out.stderr` carrying `alert="<alert>"`.
    pub fn alert_lines<'a>(out: &'a RunOutput, alert: &str) -> Vec<&'a str> {
        let field = format!("alert=\"{alert}\"");
        out.stderr.lines().filter(|l| l.contains(&field)).collect()
    }

    /// Ids the mirror holds marked deleted.
    pub async fn marked_deleted(&self) -> HashSet<i64> {
        sqlx::query_scalar("SELECT id FROM leads WHERE is_deleted = 1")
            .fetch_all(&self.db().await)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// Asserts that no lead alive in the account is marked deleted, except
    /// leads restored after mutation number `since` (a restore that follows
    /// the pass's confirmation is the next --once's to mirror).
    pub async fn assert_no_false_deletion(&self, since: usize) {
        let restored_late: HashSet<i64> = self.sim.mutations()[since..]
            .iter()
            .filter_map(|m| match m {
                Mutation::Restored(id) => Some(*id),
                _ => None,
            })
            .collect();
        let alive: HashSet<i64> = self.sim.alive_ids().into_iter().collect();
        let false_deletions: Vec<i64> = self
            .marked_deleted()
            .await
            .into_iter()
            .filter(|id| alive.contains(id) && !restored_late.contains(id))
            .collect();
        assert!(
            false_deletions.is_empty(),
            "{} alive leads marked deleted: {:?}",
            false_deletions.len(),
            &false_deletions[..false_deletions.len().min(10)]
        );
    }

    /// Asserts that every lead in `deleted` (deleted in the account) is
    /// marked deleted in the mirror, if the mirror has it.
    pub async fn assert_marked_deleted(&self, deleted: &HashSet<i64>) {
        let pool = self.db().await;
        let alive_in_mirror: HashSet<i64> =
            sqlx::query_scalar("SELECT id FROM leads WHERE is_deleted = 0")
                .fetch_all(&pool)
                .await
                .unwrap()
                .into_iter()
                .collect();
        let unmarked: Vec<&i64> = deleted.intersection(&alive_in_mirror).collect();
        assert!(
            unmarked.is_empty(),
            "{} deleted leads not marked deleted: {:?}",
            unmarked.len(),
            &unmarked[..unmarked.len().min(10)]
        );
    }
}

/// Applies `n` updates, `n / 4` deletions, `n / 4` additions and restores
/// every other deleted lead: an account changing between syncs.
pub fn change_account(sim: &Simulator, n: usize) {
    let ids = sim.alive_ids();
    let step = (ids.len() / (n + n / 4 + 1)).max(1);
    let mut picked = ids.iter().step_by(step);
    for id in picked.by_ref().take(n) {
        sim.update_lead(*id);
    }
    for id in picked.by_ref().take(n / 4) {
        sim.delete_lead(*id);
    }
    for _ in 0..n / 4 {
        sim.add_lead();
    }
    for id in sim.deleted_ids().iter().step_by(2) {
        sim.restore_lead(*id);
    }
}

/// Polls `check` every 100 ms until it is true or `limit` passes.
pub async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

impl TestEnv {
    /// Starts the daemon with its stdout and stderr appended to `log`.
    pub fn spawn_daemon(&self, log: &Path) -> tokio::process::Child {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        self.command(&[])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("the daemon starts")
    }
}

/// Sends SIGTERM and insists on exit 0 within 30 s.
pub async fn stop_daemon(child: &mut tokio::process::Child) {
    let pid = child.id().expect("running");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the daemon stops within 30 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// What the listings tests look at: stage changes and structure rows.
impl TestEnv {
    /// Moves `n` open leads to another stage of their pipeline (one stage
    /// change event each).
    pub fn move_open_leads(&self, n: usize) {
        let structure = self.sim.structure();
        let pipelines = structure["pipelines"].as_array().unwrap();
        let mut moved = 0;
        for lead in self.sim.alive_leads() {
            if moved == n {
                break;
            }
            let (Some(id), Some(pipeline), Some(status)) = (
                lead["id"].as_i64(),
                lead["pipeline_id"].as_i64(),
                lead["status_id"].as_i64(),
            ) else {
                continue;
            };
            if matches!(status, 142 | 143) {
                continue;
            }
            let Some(next) = pipelines
                .iter()
                .find(|p| p["id"] == pipeline)
                .and_then(|p| p["_embedded"]["statuses"].as_array())
                .and_then(|stages| {
                    stages
                        .iter()
                        .filter_map(|s| s["id"].as_i64())
                        .find(|s| *s != status && !matches!(s, 142 | 143))
                })
            else {
                continue;
            };
            assert!(self.sim.change_lead_status(id, pipeline, next));
            moved += 1;
        }
        assert_eq!(moved, n, "the account has {n} open leads to move");
    }

    /// The event ids of the account's stage changes missing from the mirror.
    pub async fn stage_changes_missing(&self) -> Vec<String> {
        let mirrored: BTreeSet<String> =
            sqlx::query_scalar("SELECT event_id FROM lead_status_changes")
                .fetch_all(&self.db().await)
                .await
                .unwrap()
                .into_iter()
                .collect();
        self.sim
            .status_events()
            .into_iter()
            .map(|e| e.event_id)
            .filter(|id| !mirrored.contains(id))
            .collect()
    }

    /// The structure rows the mirror flags deleted that the account still has.
    pub async fn structure_flagged_but_existing(&self) -> Vec<String> {
        let ids = self.sim.structure_ids();
        let pool = self.db().await;
        let mut wrong = Vec::new();
        for (table, alive) in [
            ("pipelines", &ids.pipelines),
            ("users", &ids.users),
            ("custom_fields", &ids.custom_fields),
            ("loss_reasons", &ids.loss_reasons),
            ("tags", &ids.tags),
        ] {
            let flagged: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM {table} WHERE is_deleted = 1"
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            wrong.extend(
                flagged
                    .into_iter()
                    .filter(|id| alive.contains(id))
                    .map(|id| format!("{table} {id}")),
            );
        }
        for (table, parent, alive) in [
            ("statuses", "pipeline_id", &ids.statuses),
            ("custom_field_enums", "field_id", &ids.custom_field_enums),
        ] {
            let flagged: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {parent}, id FROM {table} WHERE is_deleted = 1"
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            wrong.extend(
                flagged
                    .into_iter()
                    .filter(|pair| alive.contains(pair))
                    .map(|(p, id)| format!("{table} {p}/{id}")),
            );
        }
        wrong
    }
}
