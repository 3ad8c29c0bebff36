//! The exit statuses of the one-shot modes (see the README), in one place
//! for every module that ends the process or reports how it would end.

/// Done.
pub const OK: u8 = 0;
/// The sync failed (network, server, data, database); progress is kept.
pub const FAILED: u8 = 1;
/// Usage or configuration error, before any request.
pub const CONFIG: u8 = 2;
/// Kommo rejected the token (401), or it is expired.
pub const UNAUTHORIZED: u8 = 3;
/// Stopped by SIGINT or SIGTERM before finishing (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;
