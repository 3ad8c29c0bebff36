//! The HTTP side of the metrics endpoint: an axum server on `metrics.listen`
//! that answers `GET /metrics` and `GET /healthz`, started by the daemon and
//! stopped when it stops. It has no authentication, so it belongs on a
//! loopback address; another address draws a warning at start.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Health, Metrics, exposition};

/// A running metrics server.
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `listen` and serves `metrics` there until [`MetricsServer::stop`].
    /// `Err` says why the address cannot be used, and what to do.
    pub async fn start(listen: SocketAddr, metrics: Metrics) -> Result<MetricsServer, String> {
        if !listen.ip().is_loopback() {
            tracing::warn!(
                listen = %listen,
                "the metrics endpoint on {listen} is unauthenticated and may be reachable from \
                 other machines; keep metrics.listen on a loopback address (127.0.0.1:9187) unless \
                 a firewall or a reverse proxy guards it"
            );
        }
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            format!(
                "cannot serve metrics on {listen} (metrics.listen): {e}; choose a free port on an \
                 address of this machine, or remove metrics.listen"
            )
        })?;
        let local_addr = listener.local_addr().unwrap_or(listen);
        let app = Router::new()
            .route("/metrics", get(scrape))
            .route("/healthz", get(healthz))
            .with_state(metrics);
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "the metrics endpoint stopped");
            }
        });
        tracing::info!(listen = %local_addr, "serving /metrics and /healthz on http://{local_addr}");
        Ok(MetricsServer {
            local_addr,
            stop,
            task,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for the requests in flight, at
    /// most [`STOP_WAIT`]: a client that holds a connection open must not
    /// keep the daemon from exiting.
    pub async fn stop(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// How long a stop waits for the metrics requests in flight.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

async fn scrape(State(metrics): State<Metrics>) -> Response {
    match metrics.render().await {
        Ok(text) => ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            let message = format!(
                "cannot read the mirror for the metrics: {e}; check that the database file \
                 (database.path) is readable and the disk is healthy"
            );
            tracing::warn!("{message}");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n")).into_response()
        }
    }
}

async fn healthz(State(metrics): State<Metrics>) -> Response {
    match metrics.health() {
        Health::Healthy => (StatusCode::OK, "ok\n").into_response(),
        Health::Unhealthy(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response()
        }
    }
}
