//! Benchmark of the release binary against the simulator on 127.0.0.1.
//!
//! Each run starts a fresh simulator (same seed, so the same account) in
//! this process, runs `kommo-sync --backfill` as a child process against it
//! and reports:
//!
//! - leads/s and seconds: wall time of the child process (start,
//!   migrations, sync, exit);
//! - requests/s: every HTTP request the simulator received during the run,
//!   divided by that wall time, and as a share of the limit; the most
//!   requests in any closed one-second window, and the 429s;
//!   "paced/s" counts the same requests between the first's arrival and the
//!   last's (what the pacer allows there is 6.67/s for a limit of 7);
//! - CPU: user + system seconds of the child alone (`wait4`'s rusage; the
//!   simulator runs in this process and is not counted), per 100,000 leads;
//! - peak RSS: the child's `VmHWM`, sampled every 20 ms.
//!
//! Without arguments it runs a default suite (`--quick` for a smaller one).
//! With arguments it runs one case, `--runs` times, and with `--vs BINARY`
//! alternates another build with this one, printing the medians and the
//! ratios. `--postgres URL` instead runs this build twice per run, its
//! mirror in SQLite and in a schema of that PostgreSQL database (dropped
//! before each run), and prints PostgreSQL / SQLite. `--incremental-after N`
//! changes N leads after the backfill and runs `--once`. See
//! benches/README.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use kommo_simulator::{Simulator, SimulatorConfig};

/// This build's binary.
const THIS: &str = env!("CARGO_BIN_EXE_kommo-sync");

/// What to run.
#[derive(Clone, Copy, Debug)]
struct Case {
    leads: usize,
    latency_ms: u64,
    rate: u32,
    windows: u32,
    incremental_after: Option<usize>,
    /// Leads given one `updated_at` second mid-history (else the
    /// simulator's bulk-import block of 600).
    crowded: Option<usize>,
    /// Contacts and companies in the account, mirrored too
    /// (`sync.entities` all three); `None`: leads alone, as before.
    people: Option<(usize, usize)>,
}

/// One process run against the simulator.
#[derive(Clone, Copy, Debug, Default)]
struct Measured {
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_kib: u64,
    requests: u64,
    lead_requests: u64,
    max_in_one_second: u64,
    responses_429: u64,
    /// Arrival of the first and last request, seconds after the start.
    first_request: f64,
    last_request: f64,
}

/// A backfill and, with `--incremental-after`, the `--once` after it.
#[derive(Clone, Copy, Debug)]
struct CaseRun {
    backfill: Measured,
    once: Option<Measured>,
}

struct Args {
    case: Case,
    runs: usize,
    vs: Option<PathBuf>,
    /// Compare this build's SQLite and PostgreSQL mirrors instead.
    postgres: Option<String>,
    quick: bool,
    /// Any case argument given: run that case instead of the suite.
    custom: bool,
    timeline: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench backfill -- [--quick] | [--leads N] [--latency-ms MS] [--rate N] \
         [--windows N] [--runs N] [--vs OTHER_BINARY] [--incremental-after N] [--crowded N] \
         [--contacts N --companies N] [--postgres URL] [--timeline]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        case: Case {
            leads: 100_000,
            latency_ms: 0,
            rate: 1000,
            windows: 4,
            incremental_after: None,
            crowded: None,
            people: None,
        },
        runs: 0,
        vs: None,
        postgres: None,
        quick: false,
        custom: false,
        timeline: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        let number = |v: String| {
            v.replace('_', "")
                .parse::<u64>()
                .unwrap_or_else(|_| usage())
        };
        match arg.as_str() {
            // `cargo bench` passes `--bench` to every bench target.
            "--bench" => {}
            "--quick" => args.quick = true,
            "--timeline" => args.timeline = true,
            "--leads" => args.case.leads = number(value()) as usize,
            "--latency-ms" => args.case.latency_ms = number(value()),
            "--rate" => args.case.rate = number(value()) as u32,
            "--windows" => args.case.windows = number(value()) as u32,
            "--runs" => args.runs = number(value()) as usize,
            "--incremental-after" => args.case.incremental_after = Some(number(value()) as usize),
            "--crowded" => args.case.crowded = Some(number(value()) as usize),
            "--contacts" => {
                let companies = args.case.people.map_or(0, |p| p.1);
                args.case.people = Some((number(value()) as usize, companies));
            }
            "--companies" => {
                let contacts = args.case.people.map_or(0, |p| p.0);
                args.case.people = Some((contacts, number(value()) as usize));
            }
            "--vs" => args.vs = Some(PathBuf::from(value())),
            "--postgres" => args.postgres = Some(value()),
            _ => usage(),
        }
        args.custom |= !matches!(arg.as_str(), "--bench" | "--quick" | "--timeline");
    }
    if args.runs == 0 {
        args.runs = if args.vs.is_some() || args.postgres.is_some() {
            3
        } else {
            1
        };
    }
    args
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

/// Waits for the child `pid` and returns its exit status and rusage (its
/// own CPU time, all threads, not its parent's).
fn wait4(pid: u32) -> (i32, libc::rusage) {
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our child, not waited for by anyone else; the
        // pointers are valid for the call.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            return (status, usage);
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "wait4: {e}");
    }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Runs `binary` with `args` (and the token in the environment) to its end;
/// measures its wall time, CPU and peak RSS, and what the simulator saw.
async fn run_child(binary: &Path, args: &[&str], sim: &Simulator, token: &str) -> Measured {
    let before = sim.stats();
    let started = Instant::now();
    // `BENCH_WRAP="heaptrack -o /tmp/ht"` runs the child under a profiler
    // (its figures then include the profiler's cost).
    let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut command = match words.next() {
        Some(wrapper) => {
            let mut command = std::process::Command::new(wrapper);
            command.args(words).arg(binary);
            command
        }
        None => std::process::Command::new(binary),
    };
    let child = command
        .args(args)
        .env("KOMMO_TOKEN", token)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let pid = child.id();
    // The child is reaped by wait4, not through `child`.
    drop(child);
    let mut waited = tokio::task::spawn_blocking(move || wait4(pid));
    let mut peak = 0;
    let (status, usage) = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        tokio::select! {
            done = &mut waited => break done.expect("wait4"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let seconds_taken = started.elapsed().as_secs_f64();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} {args:?} failed (wait status {status})",
        binary.display()
    );
    let after = sim.stats();
    let log = sim.request_log();
    let since = |at: Instant| at.saturating_duration_since(started).as_secs_f64();
    let arrivals: Vec<f64> = log
        .iter()
        .filter(|r| r.at >= started)
        .map(|r| since(r.at))
        .collect();
    Measured {
        seconds: seconds_taken,
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_kib: peak,
        requests: after.requests - before.requests,
        lead_requests: after.lead_requests - before.lead_requests,
        max_in_one_second: after.max_requests_in_any_second,
        responses_429: after.responses_429 - before.responses_429,
        first_request: arrivals.first().copied().unwrap_or(0.0),
        last_request: arrivals.last().copied().unwrap_or(0.0),
    }
}

/// One backfill (and `--once` after changes) of `binary` against a fresh
/// simulator.
async fn run_case(
    binary: &Path,
    postgres: Option<&str>,
    case: Case,
    dir: &Path,
    timeline: bool,
) -> CaseRun {
    let token = kommo_sync::token::fake_jwt(kommo_sync::clock::unix_now() + 365 * 86_400);
    // Leads alone still link to the simulator's default contacts and
    // companies (which are then not listed).
    let defaults = SimulatorConfig::default();
    let (contacts, companies) = case
        .people
        .unwrap_or((defaults.contacts, defaults.companies));
    let sim = Simulator::start(SimulatorConfig {
        leads: case.leads,
        contacts,
        companies,
        tie_block: if case.crowded.is_some() { 0 } else { 600 },
        rate_limit_per_second: case.rate,
        token: token.expose().to_string(),
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator");
    if let Some(crowded) = case.crowded {
        sim.crowd_one_second(crowded).expect("a crowded second");
    }
    sim.set_latency(Duration::from_millis(case.latency_ms));
    let run = tempfile::tempdir_in(dir).expect("temp dir");
    let db = run.path().join("mirror.sqlite");
    let config = run.path().join("config.toml");
    // `sync.parallel_windows` is written only when it differs from its
    // default (4 in every build that has it), so builds from before the key
    // existed can be run with the default.
    let mut sync = String::new();
    if case.windows != 4 {
        sync.push_str(&format!("parallel_windows = {}\n", case.windows));
    }
    // Leads alone: builds whose default mirrors all three are told so;
    // builds from before `sync.entities` (which refuse the key) mirror
    // leads alone anyway.
    let entities = match case.people {
        Some(_) => "entities = [\"leads\", \"contacts\", \"companies\"]\n",
        None => "entities = [\"leads\"]\n",
    };
    let database = match postgres {
        None => format!("path = \"{}\"", db.display()),
        Some(url) => format!("url = \"{url}\"\nschema = \"{BENCH_SCHEMA}\""),
    };
    if let Some(url) = postgres {
        drop_bench_schema(url).await;
    }
    let write = |sync: &str| {
        let sync = if sync.is_empty() {
            String::new()
        } else {
            format!("[sync]\n{sync}")
        };
        std::fs::write(
            &config,
            format!(
                "[kommo]\nbase_url = \"{}\"\nrequests_per_second = {}\n[database]\n{database}\n{sync}",
                sim.base_url(),
                case.rate,
            ),
        )
        .unwrap();
    };
    write(&format!("{sync}{entities}"));
    if case.people.is_none() && !knows_entities(binary, &config) {
        write(&sync);
    }
    // The probe may have created the mirror: the backfill starts from none.
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let config = config.to_str().expect("utf-8 path");
    let backfill = run_child(
        binary,
        &["--config", config, "--backfill"],
        &sim,
        token.expose(),
    )
    .await;
    if timeline {
        print_timeline(&sim, backfill.seconds);
    }
    assert_mirror_exact(&db, postgres, &sim).await;
    let once = match case.incremental_after {
        None => None,
        Some(changes) => {
            // `changes` leads spread over the account, changed one by one.
            let ids = sim.alive_ids();
            let step = (ids.len() / changes.max(1)).max(1);
            for id in ids.iter().step_by(step).take(changes) {
                sim.update_lead(*id);
            }
            Some(
                run_child(
                    binary,
                    &["--config", config, "--once"],
                    &sim,
                    token.expose(),
                )
                .await,
            )
        }
    };
    sim.shutdown();
    CaseRun { backfill, once }
}

/// Whether `binary` accepts `sync.entities` in `config`: `--status` reads
/// the config before anything else and sends no request; a build that
/// does not know the key refuses it naming it (exit 2), any other answer
/// (the mirror not there yet is exit 2 too) means it was read.
fn knows_entities(binary: &Path, config: &Path) -> bool {
    let out = std::process::Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("--status")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    !(out.status.code() == Some(2) && String::from_utf8_lossy(&out.stderr).contains("entities"))
}

/// The schema of the PostgreSQL runs.
const BENCH_SCHEMA: &str = "kommo_sync_bench";

/// Drops the PostgreSQL runs' schema: each backfill starts from no mirror.
async fn drop_bench_schema(url: &str) {
    use sqlx::{Connection, Executor};
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("--postgres: {e}"));
    connection
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {BENCH_SCHEMA} CASCADE"
        )))
        .await
        .expect("drop the bench schema");
    let _ = connection.close().await;
}

/// Requests per second of the last run, from the simulator's log.
/// The mirror a backfill left holds every alive lead of the account at its
/// version, and no other alive lead: a backfill that lost leads is no
/// figure. Outside the measured run.
async fn assert_mirror_exact(db: &Path, postgres: Option<&str>, sim: &Simulator) {
    let alive = "SELECT id, updated_at FROM leads WHERE is_deleted = 0 ORDER BY id";
    let mirror: Vec<(i64, i64)> = match postgres {
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(db)
                .read_only(true);
            let pool = sqlx::SqlitePool::connect_with(options)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", db.display()));
            let rows = sqlx::query_as(alive).fetch_all(&pool).await;
            pool.close().await;
            rows
        }
        Some(url) => {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(url).await.expect(url);
            let select = format!(
                "SELECT id, updated_at FROM {BENCH_SCHEMA}.leads WHERE is_deleted = 0 ORDER BY id"
            );
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(select))
                .fetch_all(&mut connection)
                .await;
            let _ = connection.close().await;
            rows
        }
    }
    .expect("the mirror's leads");
    let mut account: Vec<(i64, i64)> = sim
        .alive_leads()
        .iter()
        .filter_map(|l| Some((l["id"].as_i64()?, l["updated_at"].as_i64()?)))
        .collect();
    account.sort_unstable();
    let missing = account
        .iter()
        .filter(|l| mirror.binary_search(l).is_err())
        .count();
    assert!(
        mirror == account,
        "the mirror is not exact: {} alive leads against the account's {}, {missing} of the account's missing or at another version",
        mirror.len(),
        account.len()
    );
}

fn print_timeline(sim: &Simulator, seconds: f64) {
    let log = sim.request_log();
    let Some(first) = log.first().map(|r| r.at) else {
        return;
    };
    let mut buckets = vec![0u32; seconds.ceil() as usize + 1];
    for r in &log {
        let s = r.at.saturating_duration_since(first).as_secs_f64() as usize;
        if let Some(b) = buckets.get_mut(s) {
            *b += 1;
        }
    }
    let shown: Vec<String> = buckets.iter().map(u32::to_string).collect();
    println!(
        "    requests in each second from the first: {}",
        shown.join(" ")
    );
    let gaps: Vec<String> = log
        .windows(2)
        .map(|p| {
            (
                p[0].at.saturating_duration_since(first).as_secs_f64(),
                p[1].at.saturating_duration_since(p[0].at).as_millis(),
            )
        })
        .filter(|(_, gap)| *gap > 200)
        .map(|(at, gap)| format!("{at:.2}s+{gap}ms"))
        .collect();
    println!("    gaps over 200 ms between requests: {}", gaps.join(" "));
    if std::env::var_os("BENCH_TIMELINE_TAIL").is_some() {
        // The last requests, to see what a pass ends with.
        for r in log.iter().rev().take(12).rev() {
            let at = r.at.saturating_duration_since(first).as_secs_f64();
            let query = urlencoding_lite(&r.query);
            println!("      {at:6.2}s {} {} {query}", r.status, r.path);
        }
    }
}

/// The query with its brackets decoded, for reading.
fn urlencoding_lite(query: &str) -> String {
    query.replace("%5B", "[").replace("%5D", "]")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn header() {
    println!(
        "{:>7} {:>8} {:>5} {:>5} {:>3} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>4} {:>7} {:>9} {:>7}",
        "build",
        "leads",
        "rtt",
        "limit",
        "win",
        "requests",
        "seconds",
        "leads/s",
        "req/s",
        "%limit",
        "lead/s",
        "paced/s",
        "max/1s",
        "429",
        "CPU s",
        "CPU/100k",
        "RSS MiB"
    );
}

fn row(build: &str, case: Case, m: &Measured) {
    let leads = case.leads as f64;
    let rate = m.requests as f64 / m.seconds;
    println!(
        "{:>7} {:>8} {:>3}ms {:>5} {:>3} {:>8} {:>8.2} {:>8.0} {:>8.2} {:>6.1}% {:>7.2} {:>7.2} {:>6} {:>4} {:>7.2} {:>9.2} {:>7.1}",
        build,
        case.leads,
        case.latency_ms,
        case.rate,
        case.windows,
        m.requests,
        m.seconds,
        leads / m.seconds,
        rate,
        rate / f64::from(case.rate) * 100.0,
        m.lead_requests as f64 / m.seconds,
        m.requests.saturating_sub(1) as f64 / (m.last_request - m.first_request),
        m.max_in_one_second,
        m.responses_429,
        m.cpu_seconds,
        m.cpu_seconds / leads * 100_000.0,
        mib(m.peak_rss_kib)
    );
}

fn once_row(build: &str, changes: usize, m: &Measured) {
    println!(
        "{:>7} --once after {changes} changes: {} lead requests ({} requests in all), {:.2} s, CPU {:.3} s, RSS {:.1} MiB, 429s {}",
        build,
        m.lead_requests,
        m.requests,
        m.seconds,
        m.cpu_seconds,
        mib(m.peak_rss_kib),
        m.responses_429
    );
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The median of each figure over runs (each figure on its own).
fn medians(runs: &[Measured]) -> Measured {
    let m = |f: fn(&Measured) -> f64| median(runs.iter().map(f).collect());
    Measured {
        seconds: m(|r| r.seconds),
        cpu_seconds: m(|r| r.cpu_seconds),
        peak_rss_kib: m(|r| r.peak_rss_kib as f64) as u64,
        requests: m(|r| r.requests as f64) as u64,
        lead_requests: m(|r| r.lead_requests as f64) as u64,
        max_in_one_second: m(|r| r.max_in_one_second as f64) as u64,
        responses_429: runs.iter().map(|r| r.responses_429).sum(),
        first_request: m(|r| r.first_request),
        last_request: m(|r| r.last_request),
    }
}

/// Runs one case `args.runs` times (alternating with `--vs`), prints every
/// run and, for several, the medians and ratios.
async fn run_custom(args: &Args, dir: &Path) {
    let this = PathBuf::from(THIS);
    // (name, binary, PostgreSQL URL); with two, the first is "other".
    let mut builds: Vec<(&str, &Path, Option<&str>)> = vec![("this", &this, None)];
    if let Some(other) = &args.vs {
        assert!(other.is_file(), "--vs {}: no such binary", other.display());
        println!("other = {}", other.display());
        builds.insert(0, ("other", other, None));
    }
    if let Some(url) = &args.postgres {
        builds = vec![("sqlite", &this, None), ("postgres", &this, Some(url))];
        println!("sqlite and postgres: this build, its mirror in each");
    }
    println!("this  = {THIS}");
    header();
    let mut results: Vec<Vec<CaseRun>> = vec![Vec::new(); builds.len()];
    for run in 0..args.runs {
        // Alternate which build goes first, so a drift of the machine's load
        // weighs on both alike.
        let mut order: Vec<usize> = (0..builds.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for b in order {
            let (name, binary, postgres) = builds[b];
            let r = run_case(binary, postgres, args.case, dir, args.timeline).await;
            row(name, args.case, &r.backfill);
            if args.timeline {
                println!(
                    "    first request at {:.2} s, last at {:.2} s, exit at {:.2} s",
                    r.backfill.first_request, r.backfill.last_request, r.backfill.seconds
                );
            }
            if let (Some(changes), Some(once)) = (args.case.incremental_after, &r.once) {
                once_row(name, changes, once);
            }
            results[b].push(r);
        }
    }
    if args.runs < 2 && builds.len() < 2 {
        return;
    }
    println!("median of {} runs:", args.runs);
    let med: Vec<Measured> = results
        .iter()
        .map(|rs| medians(&rs.iter().map(|r| r.backfill).collect::<Vec<_>>()))
        .collect();
    for (b, m) in med.iter().enumerate() {
        row(builds[b].0, args.case, m);
    }
    if builds.len() == 2 {
        let (other, this) = (&med[0], &med[1]);
        let ratio = |t: f64, o: f64| format!("{:.3} (other / this = {:.2})", t / o, o / t);
        println!("{} / {}:", builds[1].0, builds[0].0);
        println!(
            "  CPU per lead  {}",
            ratio(this.cpu_seconds, other.cpu_seconds)
        );
        println!("  wall time     {}", ratio(this.seconds, other.seconds));
        println!(
            "  peak RSS      {}",
            ratio(this.peak_rss_kib as f64, other.peak_rss_kib as f64)
        );
    }
}

/// The suite run without arguments.
async fn run_suite(quick: bool, dir: &Path) {
    let this = Path::new(THIS);
    let case = |leads, latency_ms, rate, windows| Case {
        leads,
        latency_ms,
        rate,
        windows,
        incremental_after: None,
        crowded: None,
        people: None,
    };
    let (sizes, limited, big): (&[usize], &[usize], usize) = if quick {
        (&[5_000, 20_000], &[3_000], 20_000)
    } else {
        (&[20_000, 100_000, 200_000], &[10_000, 20_000], 200_000)
    };

    println!("1. backfill with the limit lifted to 1000/s (kommo-sync's own cost):");
    header();
    let mut rss = Vec::new();
    for &leads in sizes {
        let mut c = case(leads, 0, 1000, 4);
        if leads == big {
            c.incremental_after = Some(100);
        }
        let r = run_case(this, None, c, dir, false).await;
        row("this", c, &r.backfill);
        if let Some(once) = &r.once {
            once_row("this", 100, once);
        }
        rss.push(r.backfill.peak_rss_kib);
    }
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        println!(
            "peak RSS at {} leads / at {} leads: {:.2}",
            sizes[sizes.len() - 1],
            sizes[0],
            *last as f64 / *first as f64
        );
    }

    println!("\n2. backfill at Kommo's limit of 7/s:");
    header();
    for &leads in limited {
        for (latency_ms, windows) in [(0, 1), (0, 4), (300, 1), (300, 4)] {
            let c = case(leads, latency_ms, 7, windows);
            let r = run_case(this, None, c, dir, false).await;
            row("this", c, &r.backfill);
        }
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir().expect("temp dir");
    if args.custom {
        run_custom(&args, dir.path()).await;
    } else {
        run_suite(args.quick, dir.path()).await;
    }
}
