//! Benchmark of the release binary against the simulator on 127.0.0.1:
//!
//! - throughput and peak memory of `--backfill` when the rate limit is not
//!   the bottleneck (limit raised to 1000/s), for accounts of growing size,
//!   to show that memory stays flat whatever the account's size;
//! - how much of the real 7/s allowance a backfill uses, and that no
//!   one-second window ever holds more than 7 requests.
//!
//! Run: `cargo bench --bench backfill` (add `-- --quick` for smaller accounts).

use std::path::Path;
use std::time::{Duration, Instant};

use kommo_sync::simulator::{Simulator, SimulatorConfig};

struct Measured {
    seconds: f64,
    peak_rss_kib: u64,
    lead_requests: u64,
    max_in_one_second: u64,
    responses_429: u64,
}

/// The peak resident set of a running process, from /proc (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn backfill(leads: usize, rate: u32, latency_ms: u64, windows: u32, dir: &Path) -> Measured {
    let token = kommo_sync::token::fake_jwt(kommo_sync::clock::unix_now() + 365 * 86_400);
    let sim = Simulator::start(SimulatorConfig {
        leads,
        tie_block: 600,
        rate_limit_per_second: rate,
        token: token.expose().to_string(),
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator");
    sim.set_latency(Duration::from_millis(latency_ms));
    let name = format!("bench-{leads}-{rate}-{latency_ms}-{windows}");
    let db = dir.join(format!("{name}.sqlite"));
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[kommo]\nbase_url = \"{}\"\nrequests_per_second = {rate}\n[database]\npath = \"{}\"\n[sync]\nparallel_windows = {windows}\n",
            sim.base_url(),
            db.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kommo-sync"))
        .arg("--config")
        .arg(&config)
        .arg("--backfill")
        .env("KOMMO_TOKEN", token.expose())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("binary");
    let pid = child.id().expect("pid");
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        tokio::select! {
            status = child.wait() => break status.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "backfill failed");
    let stats = sim.stats();
    sim.shutdown();
    Measured {
        seconds,
        peak_rss_kib: peak,
        lead_requests: stats.lead_requests,
        max_in_one_second: stats.max_requests_in_any_second,
        responses_429: stats.responses_429,
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = tempfile::tempdir().expect("temp dir");
    let sizes: &[usize] = if quick {
        &[5_000, 20_000]
    } else {
        &[10_000, 50_000, 100_000]
    };

    println!(
        "backfill, rate limit lifted to 1000/s (measures kommo-sync itself; the simulator shares the machine):"
    );
    println!(
        "{:>9} {:>9} {:>11} {:>10} {:>14}",
        "leads", "requests", "seconds", "leads/s", "peak RSS MiB"
    );
    for &leads in sizes {
        let m = backfill(leads, 1000, 0, 4, dir.path()).await;
        println!(
            "{:>9} {:>9} {:>11.2} {:>10.0} {:>14.1}",
            leads,
            m.lead_requests,
            m.seconds,
            leads as f64 / m.seconds,
            m.peak_rss_kib as f64 / 1024.0
        );
    }

    let leads = if quick { 3_000 } else { 10_000 };
    println!("\nbackfill of {leads} leads at Kommo's limit of 7/s:");
    println!(
        "{:>11} {:>8} {:>9} {:>9} {:>11} {:>12} {:>8} {:>5}",
        "round trip", "windows", "requests", "seconds", "requests/s", "% of 7/s", "max/1s", "429s"
    );
    for (latency_ms, windows) in [(0, 1), (0, 4), (300, 1), (300, 4)] {
        let m = backfill(leads, 7, latency_ms, windows, dir.path()).await;
        let rate = m.lead_requests as f64 / m.seconds;
        println!(
            "{:>9}ms {:>8} {:>9} {:>9.2} {:>11.2} {:>11.0}% {:>8} {:>5}",
            latency_ms,
            windows,
            m.lead_requests,
            m.seconds,
            rate,
            rate / 7.0 * 100.0,
            m.max_in_one_second,
            m.responses_429
        );
    }
}
