//! Wall-clock time as Kommo counts it: Unix seconds, and their display.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2026-11-28 12:00:00 UTC` for Unix seconds (or the number itself when out of range).
pub fn format_unix(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0).map_or_else(
        || seconds.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_dates() {
        assert_eq!(super::format_unix(0), "1970-01-01 00:00:00 UTC");
    }
}
