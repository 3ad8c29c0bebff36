//! Progress of a one-shot sync on a terminal: leads so far, requests, their
//! rate against the limit, and the time elapsed, redrawn in place on stderr.
//! A first `--backfill` of a big account takes minutes; this says it is
//! moving. Nothing is drawn when stderr is not a terminal (journald, pipes,
//! files), so logs stay clean; on a terminal, log lines are written with the
//! line cleared (see [`crate::telemetry::set_progress_line`]).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::store::{RunKind, Store};

/// How often the figures are read from the mirror and redrawn.
const REFRESH: Duration = Duration::from_millis(250);

/// A progress line being redrawn; [`ProgressLine::finish`] clears it.
pub struct ProgressLine {
    bar: ProgressBar,
    task: JoinHandle<()>,
}

impl ProgressLine {
    /// Starts drawing the progress of the `kind` sync running on `store`,
    /// if stderr is a terminal. The figures are the run's counters, which
    /// the sync commits with every page.
    pub fn start(store: &Store, kind: RunKind, requests_per_second: u32) -> Option<ProgressLine> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(REFRESH);
        crate::telemetry::set_progress_line(Some(bar.clone()));
        let task = {
            let bar = bar.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(REFRESH).await;
                    let Ok(Some(counters)) = store.running_run_counters().await else {
                        continue;
                    };
                    let seconds = started.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!(
                        "{kind} sync: {} leads, {} requests ({:.1}/s of {requests_per_second}/s), {:.0} leads/s, {}:{:02} elapsed",
                        counters.leads_upserted,
                        counters.requests,
                        counters.requests as f64 / seconds,
                        counters.leads_upserted as f64 / seconds,
                        started.elapsed().as_secs() / 60,
                        started.elapsed().as_secs() % 60,
                    ));
                }
            })
        };
        Some(ProgressLine { bar, task })
    }

    /// Stops drawing and clears the line.
    pub fn finish(self) {
        self.task.abort();
        crate::telemetry::set_progress_line(None);
        self.bar.finish_and_clear();
    }
}
