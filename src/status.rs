//! `--status`: what the mirror holds (leads, the account's structure, the
//! per-lead details, the stage history) and how the last runs went, read
//! from the database alone (no request is sent).

use crate::clock::{format_unix, unix_now};
use crate::config::Settings;
use crate::kommo::LEADS;
use crate::store::{Store, StoreError};
use crate::token::expiry_state;

/// Prints the state of the mirror to stdout.
pub async fn print(store: &Store, settings: &Settings) -> Result<(), StoreError> {
    let counts = store.lead_counts().await?;
    let state = store.sync_state().await?;
    let when = |t: Option<i64>| t.map_or_else(|| "never".to_string(), format_unix);
    println!("mirror:              {}", store.describe());
    println!(
        "leads:               {} alive, {} deleted, {} in all",
        counts.alive, counts.deleted, counts.total
    );
    println!("newest lead change:  {}", when(counts.newest_update));
    for entity in settings
        .sync
        .entities
        .iter()
        .filter(|e| !std::ptr::eq(*e, &LEADS))
    {
        let c = store.record_counts(entity).await?;
        println!(
            "{:<21}{} alive, {} deleted, {} in all",
            format!("{}:", entity.plural),
            c.alive,
            c.deleted,
            c.total
        );
    }
    for line in entity_lines(store).await? {
        println!("{line}");
    }
    for entity in settings.sync.entities.iter() {
        let cursor = store.entity_state(entity).await?.incremental_cursor;
        println!(
            "{:<21}{}",
            format!("{} cursor:", entity.plural),
            when(cursor)
        );
    }
    match state.full_cursor {
        Some(cursor) => println!(
            "full sync:           pass {} unfinished, started {}, reached {} (the next full sync resumes there)",
            state.full_pass,
            when(state.full_pass_started_at),
            format_unix(cursor)
        ),
        None => println!("full sync:           {} completed passes", state.full_pass),
    }
    let now = unix_now();
    let token = match settings.kommo.token.read() {
        Err(_) => "unknown (no token readable here)".to_string(),
        Ok(token) => {
            expiry_state(&token, now, settings.kommo.token_expiry_warning_days).describe(now)
        }
    };
    println!("token expiry:        {token}");
    println!("last runs:");
    let runs = store.recent_runs(10).await?;
    if runs.is_empty() {
        println!("  none yet");
    }
    for run in runs {
        println!(
            "  #{:<5} {:<11} {:<12} started {}  {} leads, {} requests{}{}",
            run.id,
            run.kind,
            run.status,
            format_unix(run.started_at),
            run.leads_upserted,
            run.requests,
            if run.leads_skipped > 0 {
                format!(", {} skipped", run.leads_skipped)
            } else {
                String::new()
            },
            run.error
                .map(|e| format!("\n         error: {e}"))
                .unwrap_or_default()
        );
        if let Some(alert) = run.alert {
            println!("         alert {alert}: {}", alert.what_to_do());
        }
    }
    Ok(())
}

/// One line per mirrored entity: the structure tables (rows listed in
/// Kommo, and those flagged deleted), the per-lead tables, the stage history.
async fn entity_lines(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut lines = Vec::new();
    for c in store.structure_counts().await? {
        let label = c.table.replace('_', " ");
        let deleted = if c.deleted > 0 {
            format!(", {} no longer in Kommo", c.deleted)
        } else {
            String::new()
        };
        lines.push(format!("{:<21}{}{deleted}", format!("{label}:"), c.alive));
    }
    for (table, rows) in store.lead_detail_counts().await? {
        lines.push(format!(
            "{:<21}{rows} rows",
            format!("{}:", table.replace('_', " "))
        ));
    }
    let cursor = store.stage_history_cursor().await?;
    lines.push(format!(
        "{:<21}{} stage changes, followed up to {}",
        "stage history:",
        store.stage_change_count().await?,
        cursor.map_or_else(|| "never".to_string(), format_unix)
    ));
    Ok(lines)
}
