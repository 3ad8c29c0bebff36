//! `--demo`: the whole program on a simulated account, with nothing to set up.
//! It starts the simulator on 127.0.0.1, backfills `./kommo-demo.sqlite`,
//! changes some leads, syncs the changes, reconciles deletions, and prints what
//! the mirror holds, a sample of a named query (open leads per manager) and
//! queries to try next.

use std::num::NonZeroU32;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::attempt::AttemptOutcome;
use crate::clock::unix_now;
use crate::config::validate::parse_base_url;
use crate::exit;
use crate::kommo::ClientOptions;
use crate::kommo::{COMPANIES, CONTACTS, EntitySet};
use crate::service::{ServiceSpec, SyncService};
use crate::store::{RunKind, Store, Target};
use crate::sync::SyncOptions;
use crate::token::{TokenSource, fake_jwt};
use kommo_simulator::{RecordKind, Simulator, SimulatorConfig};

/// The demo's database file, in the current directory.
pub const DEMO_DATABASE: &str = "kommo-demo.sqlite";

/// Runs the demo and returns the exit status.
pub async fn run() -> u8 {
    match demo().await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("kommo-sync --demo: {message}");
            exit::FAILED
        }
    }
}

async fn demo() -> Result<u8, String> {
    let token = fake_jwt(unix_now() + 365 * 86_400);
    let simulator = Simulator::start(SimulatorConfig {
        leads: 5_000,
        contacts: 3_000,
        companies: 1_000,
        tie_block: 600,
        token: token.expose().to_string(),
        ..SimulatorConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start the simulator on 127.0.0.1: {e}"))?;
    let path = Path::new(DEMO_DATABASE);
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{DEMO_DATABASE}{suffix}"));
    }
    let service = SyncService::build(ServiceSpec {
        base_url: parse_base_url(&simulator.base_url()).map_err(|e| e.to_string())?,
        client: ClientOptions {
            requests_per_second: NonZeroU32::new(7).expect("not zero"),
            ..ClientOptions::default()
        },
        database: Target::Sqlite {
            path: path.to_path_buf(),
            max_size_mib: None,
        },
        sync: SyncOptions {
            page_size: 250,
            overlap_seconds: 300,
            parallel_windows: 4,
            entities: EntitySet::ALL,
            structure_refresh_minutes: 60,
        },
        token: TokenSource::fixed(token),
        token_expiry_warning_days: 14,
        with_metrics: false,
    })
    .await
    .map_err(|e| e.to_string())?;
    let store = service.store().clone();
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(crate::signals::cancel_on_signal(cancel.clone()));

    println!(
        "Simulated Kommo account on {} with {} leads (600 of them share one updated_at second), {} contacts and {} companies.",
        simulator.base_url(),
        simulator.alive_ids().len(),
        simulator.alive_ids_of(RecordKind::Contact).len(),
        simulator.alive_ids_of(RecordKind::Company).len()
    );
    println!(
        "\n1. Backfill (--backfill): every lead, contact and company, by keyset on updated_at, at most 7 requests per second…"
    );
    let outcome = service.attempt(RunKind::Full, &cancel).await;
    report_step(&outcome)?;

    let ids = simulator.alive_ids();
    for id in ids.iter().step_by(97).take(40) {
        simulator.update_lead(*id);
    }
    let added: Vec<i64> = (0..10).map(|_| simulator.add_lead()).collect();
    for id in ids.iter().skip(13).step_by(501).take(5) {
        simulator.delete_lead(*id);
    }
    let contacts = simulator.alive_ids_of(RecordKind::Contact);
    for id in contacts.iter().step_by(151).take(20) {
        simulator.update_record(RecordKind::Contact, *id);
    }
    for id in contacts.iter().skip(7).step_by(997).take(3) {
        simulator.delete_record(RecordKind::Contact, *id);
    }
    println!(
        "\n2. In Kommo: 40 leads changed, 10 added, 5 deleted; 20 contacts changed, 3 deleted. Incremental sync (--once)…"
    );
    let outcome = service.attempt(RunKind::Incremental, &cancel).await;
    report_step(&outcome)?;

    println!("\n3. Full sync with deletion reconciliation (the daemon's nightly run)…");
    let outcome = service.attempt(RunKind::Full, &cancel).await;
    report_step(&outcome)?;
    signals.abort();

    let counts = store.lead_counts().await.map_err(|e| e.to_string())?;
    let stats = simulator.stats();
    let mut exact = true;
    for kind in RecordKind::ALL {
        exact &= mirror_matches(&store, &simulator, kind).await?;
    }
    println!(
        "\nThe mirror {} holds {} leads: {} alive, {} marked deleted (rows are never removed).",
        path.display(),
        counts.total,
        counts.alive,
        counts.deleted
    );
    for entity in [&CONTACTS, &COMPANIES] {
        let c = store
            .record_counts(entity)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "It holds {} {}: {} alive, {} marked deleted.",
            c.total, entity.plural, c.alive, c.deleted
        );
    }
    println!(
        "Alive leads, contacts and companies equal to the simulated account: {}",
        if exact {
            "yes, every one"
        } else {
            "NO (please report this)"
        }
    );
    println!(
        "The simulator saw {} requests, at most {} in any one second, {} answered 429.",
        stats.requests, stats.max_requests_in_any_second, stats.responses_429
    );
    println!("New leads mirrored: {}", added.len());
    print_open_leads_per_manager(&store).await?;
    print_open_leads_with_people(&store).await?;
    println!(
        "\nTry it (more in docs/queries.sql):\n  sqlite3 -header -column {DEMO_DATABASE} \"SELECT pipeline_name, status_name, COUNT(*) AS leads, SUM(price) AS value FROM leads_named WHERE outcome = 'open' GROUP BY pipeline_id, status_id ORDER BY leads DESC LIMIT 5;\""
    );
    println!(
        "  sqlite3 -header -column {DEMO_DATABASE} \"SELECT status_name, COUNT(*) AS stays, ROUND(AVG(seconds) / 86400.0, 1) AS avg_days FROM lead_stage_durations WHERE left_at IS NOT NULL GROUP BY pipeline_id, status_id;\""
    );
    println!(
        "  sqlite3 {DEMO_DATABASE} \"SELECT id, kind, status, leads_upserted, requests FROM sync_runs;\""
    );
    store.close().await;
    simulator.shutdown();
    Ok(if exact { exit::OK } else { exit::FAILED })
}

/// A sample of a named query: the open leads per manager (docs/queries.sql).
async fn print_open_leads_per_manager(store: &Store) -> Result<(), String> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT CASE WHEN responsible_user_id IS NULL THEN '(nobody)' \
         ELSE COALESCE(responsible_user_name, 'user ' || responsible_user_id) END, \
         COUNT(*), COALESCE(SUM(price), 0) FROM leads_named WHERE outcome = 'open' \
         GROUP BY responsible_user_id ORDER BY 2 DESC, responsible_user_id LIMIT 5",
    )
    .fetch_all(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    println!("\nOpen leads per manager (view leads_named, names from the mirrored users):");
    for (manager, leads, value) in rows {
        println!("  {manager:<24} {leads:>5} open leads, worth {value:>12}");
    }
    Ok(())
}

/// The largest open leads with their main contact's name and phone and
/// their company (view leads_with_people).
async fn print_open_leads_with_people(store: &Store) -> Result<(), String> {
    type Row = (
        i64,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, price, main_contact_name, main_contact_phone, company_name \
         FROM leads_with_people WHERE outcome = 'open' AND main_contact_id IS NOT NULL \
         ORDER BY price DESC, id LIMIT 5",
    )
    .fetch_all(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    println!("\nThe largest open leads and the people behind them (view leads_with_people):");
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for (id, name, price, contact, phone, company) in rows {
        println!(
            "  #{id:<9} {:<28} {:>10}  {:<24} {:<18} {}",
            or_dash(&name),
            price.unwrap_or(0),
            or_dash(&contact),
            or_dash(&phone),
            or_dash(&company)
        );
    }
    Ok(())
}

fn report_step(outcome: &AttemptOutcome) -> Result<(), String> {
    match (&outcome.report, &outcome.error) {
        (Some(r), _) => {
            println!(
                "   {} leads written, {} requests, {} marked deleted.",
                r.leads_upserted, r.requests, r.marked_deleted
            );
            Ok(())
        }
        (None, error) => Err(format!(
            "the sync ended {} (exit {}): {}",
            outcome.status,
            outcome.exit_status(),
            error.as_deref().unwrap_or("no detail")
        )),
    }
}

/// Whether every alive record of `kind` in the account is in the mirror,
/// equal to the JSON the API returns, and no other is alive in the mirror.
async fn mirror_matches(
    store: &Store,
    simulator: &Simulator,
    kind: RecordKind,
) -> Result<bool, String> {
    let table = match kind {
        RecordKind::Lead => "leads",
        RecordKind::Contact => "contacts",
        RecordKind::Company => "companies",
    };
    let sql = format!("SELECT id, raw FROM {table} WHERE is_deleted = 0 ORDER BY id");
    let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(store.pool())
        .await
        .map_err(|e| e.to_string())?;
    let expected = match kind {
        RecordKind::Lead => simulator.alive_leads(),
        other => simulator.alive_records(other),
    };
    if rows.len() != expected.len() {
        return Ok(false);
    }
    for ((id, raw), lead) in rows.iter().zip(&expected) {
        let raw: serde_json::Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        if Some(*id) != lead.get("id").and_then(serde_json::Value::as_i64) || &raw != lead {
            return Ok(false);
        }
    }
    Ok(true)
}
