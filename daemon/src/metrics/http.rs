//! The optional HTTP listener of `[metrics] listen`: `/metrics` (OpenMetrics text),
//! `/healthz` (the process answers) and `/readyz` (the daemon can take work). It starts
//! before the store opens, so that a supervisor sees a starting daemon as not ready rather
//! than as gone.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::{Metrics, Snapshot};

/// The port of `listen = ":9464"` or `listen = "9464"`: Prometheus' registry of default ports
/// has none for runbookd; 9464 is the one OpenTelemetry's Prometheus exporters use.
pub const DEFAULT_PORT: u16 = 9464;

/// What the listener asks of a daemon that is up.
pub trait DaemonView: Send + Sync {
    /// The figures the gauges show.
    fn snapshot(&self) -> Snapshot;
    /// Why the daemon cannot take work although it is up (its store failed a write), if so.
    fn unready(&self) -> Option<String>;
}

/// How far the daemon is: what `/readyz` answers, and where `/metrics` reads its gauges.
#[derive(Clone)]
pub struct Health {
    phase: Arc<Mutex<Phase>>,
}

enum Phase {
    Starting(&'static str),
    Up(Arc<dyn DaemonView>),
    Stopping,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            phase: Arc::new(Mutex::new(Phase::Starting("starting"))),
        }
    }
}

impl Health {
    /// Says what the starting daemon is doing now.
    pub fn starting(&self, doing: &'static str) {
        *self.lock() = Phase::Starting(doing);
    }

    /// The daemon is open and serving.
    pub fn up(&self, view: Arc<dyn DaemonView>) {
        *self.lock() = Phase::Up(view);
    }

    /// The daemon is stopping: no new work.
    pub fn stopping(&self) {
        *self.lock() = Phase::Stopping;
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), String> {
        match &*self.lock() {
            Phase::Starting(doing) => Err(format!("starting: {doing}")),
            Phase::Stopping => Err("stopping".into()),
            Phase::Up(view) => view.unready().map_or(Ok(()), Err),
        }
    }

    fn snapshot(&self) -> Snapshot {
        match &*self.lock() {
            Phase::Up(view) => view.snapshot(),
            _ => Snapshot::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The address of `[metrics] listen`: `HOST:PORT`, or a port alone (`"9464"`, `":9464"`)
/// for loopback.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let port_only = text.strip_prefix(':').unwrap_or(text);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "`{text}` is not an address to listen on; write HOST:PORT (e.g. \"127.0.0.1:{DEFAULT_PORT}\") or a port"
        )
    })
}

/// Binds the listener; its failure stops the start, naming the setting.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the metrics listener is reachable from other hosts; it has no authentication");
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (`[metrics] listen` in the config)"))
}

#[derive(Clone)]
struct Served {
    metrics: Metrics,
    health: Health,
}

/// Serves the three endpoints until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    health: Health,
    stop: CancellationToken,
) {
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Served { metrics, health });
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %err, "the metrics listener failed");
    }
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), else the Prometheus text
/// format.
async fn scrape(State(served): State<Served>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    // Reading the gauges takes locks and a directory walk: off the async workers.
    let text = tokio::task::spawn_blocking(move || {
        let snapshot = served.health.snapshot();
        served.metrics.encode(&snapshot)
    })
    .await
    .unwrap_or_default();
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            super::classic::prometheus_text(&text),
        )
    }
}

async fn ready(State(served): State<Served>) -> impl IntoResponse {
    match served.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_listens_on_loopback_and_an_address_as_written() {
        assert_eq!(
            parse_listen("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_listen(":9100").unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:9464").unwrap(),
            "0.0.0.0:9464".parse().unwrap()
        );
        let err = parse_listen("localhost").unwrap_err();
        assert!(err.contains("HOST:PORT"), "{err}");
    }

    #[test]
    fn readiness_follows_the_phase_and_the_daemon_s_own_word() {
        struct Failing;
        impl DaemonView for Failing {
            fn snapshot(&self) -> Snapshot {
                Snapshot::default()
            }
            fn unready(&self) -> Option<String> {
                Some("the store failed a write".into())
            }
        }
        let health = Health::default();
        health.starting("loading runbooks");
        assert_eq!(
            health.readiness().unwrap_err(),
            "starting: loading runbooks"
        );
        health.up(Arc::new(Failing));
        assert_eq!(health.readiness().unwrap_err(), "the store failed a write");
        health.stopping();
        assert_eq!(health.readiness().unwrap_err(), "stopping");
    }
}
