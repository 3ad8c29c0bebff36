//! Which database holds the mirror, and the few pieces of SQL that differ
//! between SQLite and PostgreSQL.
//!
//! Every statement of the store is one text run on either through sqlx's
//! `Any` driver: parameters are written `$1`, `$2`… (both accept them),
//! upserts are `INSERT … ON CONFLICT`, counts are `COUNT(CASE …)`, and a
//! yes/no answer is `CASE WHEN … THEN 1 ELSE 0 END` read as an integer.
//! What cannot be one text is a method of [`Backend`] that returns the
//! fragment for its database: a list of ids bound as one JSON value, a JSON
//! value bound for a `json` column, the larger of two values.

use std::borrow::Cow;

use sqlx::AnyConnection;

/// The database behind a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend of an open connection.
    pub(super) fn of(connection: &AnyConnection) -> Backend {
        if connection.backend_name().eq_ignore_ascii_case("postgresql") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// `IN (…)` over the ids of a JSON array bound as parameter `param`
    /// (one bound value, whatever the number of ids).
    pub(super) fn in_ids(self, param: usize) -> String {
        format!("IN (SELECT value FROM {} AS ids)", self.ids(param))
    }

    /// A table of one column, `value`, holding the ids of a JSON array
    /// bound as parameter `param` (to be named with `AS`).
    pub(super) fn ids(self, param: usize) -> String {
        match self {
            Backend::Sqlite => format!("json_each(${param})"),
            Backend::Postgres => format!(
                "(SELECT value::bigint AS value FROM json_array_elements_text(${param}::json))"
            ),
        }
    }

    /// A table of two columns, `parent` and `id`, from a JSON array of
    /// `[parent, id]` pairs bound as parameter `param` (to be named with
    /// `AS`).
    pub(super) fn pairs(self, param: usize) -> String {
        match self {
            Backend::Sqlite => format!(
                "(SELECT json_extract(value, '$[0]') AS parent, json_extract(value, '$[1]') AS id \
                 FROM json_each(${param}))"
            ),
            Backend::Postgres => format!(
                "(SELECT (value ->> 0)::bigint AS parent, (value ->> 1)::bigint AS id \
                 FROM json_array_elements(${param}::json))"
            ),
        }
    }

    /// Parameter `param` as a value of a JSON column (`raw`,
    /// `custom_fields_values`): PostgreSQL's `json` keeps the text as
    /// received; SQLite keeps it as TEXT.
    pub(super) fn json(self, param: usize) -> String {
        self.json_of(&format!("${param}"))
    }

    /// The placeholder `placeholder` (`?`, `$3`) as a value of a JSON column.
    pub(super) fn json_of(self, placeholder: &str) -> String {
        match self {
            Backend::Sqlite => placeholder.to_string(),
            Backend::Postgres => format!("{placeholder}::json"),
        }
    }

    /// The larger of two non-NULL values.
    pub(super) fn greatest(self, a: &str, b: &str) -> String {
        match self {
            Backend::Sqlite => format!("MAX({a}, {b})"),
            Backend::Postgres => format!("GREATEST({a}, {b})"),
        }
    }

    /// `value` is an integer: SQLite columns may hold any type, PostgreSQL's
    /// are typed.
    pub(super) fn is_integer(self, value: &str) -> String {
        match self {
            Backend::Sqlite => format!("typeof({value}) = 'integer'"),
            Backend::Postgres => format!("{value} IS NOT NULL"),
        }
    }

    /// Text as this database can store it in a typed column: PostgreSQL's
    /// text cannot hold the NUL character, which is dropped there (`raw`
    /// keeps it, escaped, as received).
    pub(super) fn text(self, text: &str) -> Cow<'_, str> {
        match self {
            Backend::Postgres if text.contains('\0') => Cow::Owned(text.replace('\0', "")),
            _ => Cow::Borrowed(text),
        }
    }
}
