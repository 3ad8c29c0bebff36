//! kommo-sync keeps an exact, queryable SQLite mirror of every lead of a Kommo
//! (amoCRM) account, using a long-lived token.
//!
//! The binary (`main.rs`) only parses the command line and calls [`app::run`];
//! everything else lives here so tests drive it directly:
//!
//! - [`alert`]: the alerts an operator acts on, as one enum;
//! - [`config`]: layered settings, validated before anything runs;
//! - [`token`]: the token's sources, secrecy and JWT expiry;
//! - [`kommo`]: the HTTP client, its pacing and typed errors;
//! - [`store`]: the SQLite mirror, one transaction per page;
//! - [`sync`]: the keyset algorithm that keeps the mirror exact;
//! - [`service`]: the one composition root of a sync service;
//! - [`attempt`]: one recorded sync attempt with its alerts;
//! - [`daemon`]: the cron schedules, no overlap, systemd integration;
//! - [`metrics`]: the daemon's Prometheus metrics and health endpoint;
//!
//! The simulated Kommo account of `--demo` and the tests is a crate of its
//! own, `kommo-simulator` (crates/kommo-simulator).

pub mod alert;
pub mod app;
pub mod attempt;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod exit;
pub mod kommo;
pub mod metrics;
pub mod poison;
pub mod progress;
pub mod service;
pub mod signals;
pub mod status;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod token;
