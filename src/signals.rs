//! SIGTERM and SIGINT become one cancellation: the sync in flight stops after
//! its page. A second signal ends the process at once (every committed page
//! stays committed; the open transaction is rolled back by SQLite).

use tokio_util::sync::CancellationToken;

/// Waits for SIGTERM or SIGINT, cancels `cancel`, and exits on a second signal.
pub async fn cancel_on_signal(cancel: CancellationToken) {
    wait_for_signal().await;
    tracing::info!(
        "stop signal received; stopping after the page in flight (send it again to stop at once)"
    );
    cancel.cancel();
    wait_for_signal().await;
    tracing::warn!("second stop signal: exiting now");
    std::process::exit(i32::from(crate::exit::INTERRUPTED));
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
