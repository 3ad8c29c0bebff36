//! The store's unit tests on both databases: [`on_each_backend!`] runs each
//! named test as `sqlite::NAME`, its store a file in the test's directory,
//! and as `postgres::NAME`, its store a schema of its own in the server of
//! `KOMMO_SYNC_TEST_POSTGRES_URL` (dropped afterwards; without the variable
//! the PostgreSQL runs pass at once). A test opens its store with [`open`].

use std::sync::{Arc, Mutex};

use super::{Store, Target};

tokio::task_local! {
    /// The server of the PostgreSQL run, and the schemas it created.
    static POSTGRES: (String, Arc<Mutex<Vec<String>>>);
}

/// The test's store: a SQLite file in `dir`, or under [`on_postgres`] a new
/// schema.
pub(crate) async fn open(dir: &tempfile::TempDir) -> Store {
    match POSTGRES.try_with(|(url, schemas)| (url.clone(), schemas.clone())) {
        Err(_) => Store::open(&dir.path().join("m.sqlite")).await.unwrap(),
        Ok((url, schemas)) => {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let schema = format!(
                "unit_{}_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed),
                fastrand::u32(..)
            );
            schemas.lock().unwrap().push(schema.clone());
            Store::open_target(Target::Postgres {
                url: url.parse().unwrap(),
                schema,
            })
            .await
            .unwrap()
        }
    }
}

/// Drops the schemas of a PostgreSQL run, panicking or not.
struct DropSchemas(String, Arc<Mutex<Vec<String>>>);

impl Drop for DropSchemas {
    fn drop(&mut self) {
        let url = self.0.clone();
        let schemas = std::mem::take(&mut *self.1.lock().unwrap_or_else(|e| e.into_inner()));
        // Inside the test's runtime: a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use sqlx::{Connection, Executor};
                sqlx::any::install_default_drivers();
                if let Ok(mut connection) = sqlx::AnyConnection::connect(&url).await {
                    for schema in schemas {
                        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                        let _ = connection.execute(sqlx::AssertSqlSafe(drop)).await;
                    }
                    let _ = connection.close().await;
                }
            });
        })
        .join();
    }
}

/// Runs `test` with its stores in PostgreSQL, when
/// `KOMMO_SYNC_TEST_POSTGRES_URL` names a server.
pub(crate) async fn on_postgres(test: impl Future<Output = ()>) {
    let url = std::env::var("KOMMO_SYNC_TEST_POSTGRES_URL").unwrap_or_default();
    if url.is_empty() {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            use std::io::Write;
            // Straight to the terminal: the harness captures eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "note: the PostgreSQL runs of the store's tests were skipped: KOMMO_SYNC_TEST_POSTGRES_URL is not set"
            );
        });
        return;
    }
    let schemas = Arc::new(Mutex::new(Vec::new()));
    let _drop = DropSchemas(url.clone(), schemas.clone());
    POSTGRES.scope((url, schemas), test).await;
}

/// Each named `async fn` of the enclosing test module twice: on SQLite and
/// on PostgreSQL (see the module).
macro_rules! on_each_backend {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name().await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    crate::store::testing::on_postgres(super::$name()).await
                }
            )+
        }
    };
}
pub(crate) use on_each_backend;
