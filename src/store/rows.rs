//! Statements of many rows: a page's records or detail rows written a few
//! statements at a time, each `INSERT … VALUES (…), (…), …` with every value
//! bound, for both the records' upserts and their detail rows.

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, AssertSqlSafe, Transaction};

use super::StoreError;
use super::backend::Backend;

/// Rows per statement. SQLite keeps, while a statement runs, a copy of every
/// page it changes (the statement journal, in memory): with 250 leads a
/// statement, that copy grew with the account, as the leads of one page land
/// on more distinct B-tree pages (heaptrack, 100k leads: 15 MiB of SQLite's
/// peak; 64 rows: the heap's peak as at 25k). See docs/performance.md.
const ROWS_PER_STATEMENT: usize = 64;

/// How many of `remaining` rows the next statement takes: a full statement,
/// else the largest power of two, so that at most seven statement shapes are
/// ever compiled and kept prepared (one per count would fill sqlx's cache
/// with large programs).
fn next_chunk(remaining: usize) -> usize {
    if remaining >= ROWS_PER_STATEMENT {
        ROWS_PER_STATEMENT
    } else {
        1 << remaining.ilog2()
    }
}

/// Runs `sql(n)`, a statement of `n` rows, over `rows` a chunk at a time,
/// `bind_row` binding each row's values in the statement's order.
pub(super) async fn execute_in_chunks<T>(
    tx: &mut Transaction<'static, Any>,
    rows: &[T],
    sql: impl Fn(usize) -> String,
    mut bind_row: impl FnMut(&mut AnyArguments, &T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut rest = rows;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(next_chunk(rest.len()));
        rest = after;
        let mut args = AnyArguments::default();
        for row in chunk {
            bind_row(&mut args, row)?;
        }
        sqlx::query_with(AssertSqlSafe(sql(chunk.len())), args)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The parameters of row `row` (from 0) of a statement whose rows bind
/// `width` values each, comma-separated, every one used once and in order:
/// `mark(i, p)` writes value `i` of the row from its placeholder `p` (as is,
/// or cast).
///
/// SQLite gets plain `?`: a numbered `$n` is a named parameter there, and
/// sqlx looks each one's name up by its number, a scan of the statement's
/// names, so a statement of 64 rows × 21 values cost 1,344 scans of 1,344
/// names at every run (1.75x the CPU of a whole backfill). PostgreSQL needs
/// `$n`.
pub(super) fn row_params(
    backend: Backend,
    row: usize,
    width: usize,
    mark: impl Fn(usize, &str) -> String,
) -> String {
    let first = row * width + 1;
    let marks: Vec<String> = (0..width)
        .map(|i| match backend {
            Backend::Sqlite => mark(i, "?"),
            Backend::Postgres => mark(i, &format!("${}", first + i)),
        })
        .collect();
    marks.join(", ")
}

/// Adds one bound value.
pub(super) fn bind<'q, T>(args: &mut AnyArguments, value: T) -> Result<(), StoreError>
where
    T: sqlx::Encode<'q, Any> + sqlx::Type<Any>,
{
    args.add(value)
        .map_err(|e| StoreError::Sql(sqlx::Error::Encode(e)))
}
