//! `runbookd`: keeps runbooks and runs durable in sled, executes steps through WebAssembly
//! plugins, and serves the `runbook` client over gRPC on a private Unix socket.
//!
//! `main.rs` parses flags and calls [`run`]; tests bind the socket themselves and call
//! [`run_on`]. Both learn when the daemon is ready through the `ready` callback.

pub mod catalog;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod events;
pub mod metrics;
pub mod plugins;
pub mod reopen;
pub mod runbook;
pub mod server;
pub mod service;
pub mod store;
pub mod targets;
pub mod telemetry;
pub mod template;
pub mod uds_authority;
pub mod vault;
pub mod watcher;

use std::sync::Arc;

use anyhow::Context as _;
use runbook_protocol::v1::runbook_server::RunbookServer;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Why the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It was asked to (a signal, a `Shutdown` request).
    Stopped,
    /// Its database failed a write and the data directory takes writes again: the database
    /// must be opened afresh, which a new process does ([`reopen`]). `runbookd` executes itself
    /// again; a caller that cannot simply stops.
    Reopen,
}

/// Runs the daemon until `shutdown` is cancelled (a signal, or a `Shutdown` request) or its
/// database must be reopened; `ready` is called once it is open, as for [`run_on`].
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    ready: impl FnOnce(),
) -> anyhow::Result<Exit> {
    // The socket comes first: a second daemon must stop before it touches the database. The
    // lock is held until the daemon has stopped.
    let (listener, _lock) = server::bind(&config.socket).await?;
    run_on(listener, config, shutdown, ready).await
}

/// [`run`] on a listener the caller bound (with [`server::bind`]): clients can connect from
/// the moment it is bound, and are answered once the daemon is open. `ready` is called at
/// that moment (recovered runs resumed, about to serve): systemd's `READY=1`, a test's start.
pub async fn run_on(
    listener: tokio::net::UnixListener,
    config: Config,
    shutdown: CancellationToken,
    ready: impl FnOnce(),
) -> anyhow::Result<Exit> {
    let socket = server::SocketFile::of(&config.socket);
    let observed = Observed::default();
    // Ends the metrics listener with this function, whichever way it returns.
    let listening = CancellationToken::new();
    let _listening = listening.clone().drop_guard();
    let result = match start_metrics_listener(&config, observed, listening).await {
        Ok(observed) => match Daemon::open(config, shutdown, observed).await {
            Ok(daemon) => {
                ready();
                daemon.serve(listener).await
            }
            Err(err) => Err(err),
        },
        Err(err) => Err(err),
    };
    socket.remove();
    result
}

/// What the daemon tells the outside about itself: its metrics, and how far it is.
#[derive(Clone, Default)]
pub struct Observed {
    pub metrics: metrics::Metrics,
    pub health: metrics::http::Health,
    /// Where the metrics listener listens, once bound.
    pub listening_on: Option<std::net::SocketAddr>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` when the config asks for it, from before the
/// store opens (a starting daemon answers "not ready") until `stop`.
async fn start_metrics_listener(
    config: &Config,
    mut observed: Observed,
    stop: CancellationToken,
) -> anyhow::Result<Observed> {
    let Some(addr) = config.metrics_listen else {
        return Ok(observed);
    };
    let listener = metrics::http::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving metrics and health");
    observed.listening_on = Some(bound);
    tokio::spawn(metrics::http::serve(
        listener,
        observed.metrics.clone(),
        observed.health.clone(),
        stop,
    ));
    Ok(observed)
}

/// Why a daemon that is up cannot take work, if it cannot: its store refuses writes.
pub fn not_ready(store: &store::Store) -> Option<String> {
    store.health().map(|failure| {
        format!(
            "the store failed a write ({}); runbookd restarts by itself once it can write again",
            failure.error
        )
    })
}

/// The daemon as the metrics listener sees it once it is up.
struct UpView {
    engine: engine::Engine,
}

impl metrics::http::DaemonView for UpView {
    fn snapshot(&self) -> metrics::Snapshot {
        metrics::Snapshot {
            store_bytes: self.engine.store().size_on_disk(),
            ..self.engine.gauges()
        }
    }

    fn unready(&self) -> Option<String> {
        not_ready(self.engine.store())
    }
}

/// A daemon with its store open, its plugins and runbooks loaded and its interrupted runs
/// resumed: everything but answering on a socket.
pub struct Daemon {
    started_at: i64,
    data_dir: std::path::PathBuf,
    runbooks_dir: std::path::PathBuf,
    plugins_dir: std::path::PathBuf,
    store: store::Store,
    vault: vault::Vault,
    engine: engine::Engine,
    daemon_events: events::DaemonEvents,
    shutdown: CancellationToken,
    /// How long running steps get to end once a stop is asked for.
    shutdown_grace: std::time::Duration,
    observed: Observed,
    retention: engine::RetentionPolicy,
    audit_retention: std::time::Duration,
    cluster: Option<cluster::Cluster>,
}

impl Daemon {
    /// Opens the data directory and starts everything but the API. The watcher and the runs
    /// go on until `shutdown` is cancelled.
    pub async fn open(
        config: Config,
        shutdown: CancellationToken,
        observed: Observed,
    ) -> anyhow::Result<Self> {
        let started_at = store::now_ms();
        let health = &observed.health;
        health.starting("opening the store");
        config.create_data_dir()?;
        template::set_fuel(config.template_fuel);
        let store = store::Store::open(&config.data_dir.join("db")).with_context(|| {
            format!("cannot open the database in {}", config.data_dir.display())
        })?;
        // Before anything runs: a vault key others could read stops the daemon here. Logged
        // too, because a daemon that `runbook` started has no stderr to say why it stopped.
        let vault = vault::Vault::open(&store, &config.data_dir)
            .inspect_err(|err| tracing::error!("cannot start: {err}"))?;
        health.starting("loading plugins");
        let grants = plugins::Grants::new(config.plugin_grants.clone());
        for (kind, grant) in store
            .plugin_grants::<plugins::PluginGrant>()
            .context("cannot read the plugins' grants")?
        {
            grants.set_stored(&kind, grant);
        }
        let plugins = plugins::PluginHost::new(
            config.limits,
            &config.cache_dir,
            config.http.clone(),
            grants,
            plugins::BUILTIN_PLUGINS,
            plugins::call_metrics(observed.metrics.clone()),
        )
        .await?;
        for (path, err) in plugins.load_dir(&config.plugins_dir).await {
            tracing::error!(path = %path.display(), "plugin not loaded: {err:#}");
        }
        let daemon_events = events::DaemonEvents::default();
        let catalog = catalog::Catalog::new(
            &config.runbooks_dir,
            plugins.clone(),
            store.clone(),
            daemon_events.clone(),
        );
        // Watch before the first read, so that no save between the two is missed.
        watcher::spawn(
            watcher::Watched {
                runbooks_dir: config.runbooks_dir.clone(),
                plugins_dir: config.plugins_dir.clone(),
                catalog: catalog.clone(),
                plugins: plugins.clone(),
                events: daemon_events.clone(),
                store: store.clone(),
            },
            shutdown.clone(),
        )
        .context("cannot watch the runbooks and plugins directories")?;
        health.starting("loading runbooks");
        catalog.reconcile(true).await?;
        let engine = engine::Engine::new(
            store.clone(),
            plugins,
            catalog,
            events::EventBus::default(),
            config.policy.clone(),
            Some(Arc::new(vault.clone())),
            observed.metrics.clone(),
        );
        health.starting("resuming interrupted runs");
        let resumed = engine.recover().await?;
        // After recovery, so that completions find the steps that were waiting.
        let cluster = match config.cluster.clone() {
            Some(cluster) => {
                Some(cluster::Cluster::start(cluster, engine.clone(), shutdown.clone()).await?)
            }
            None => None,
        };
        tracing::info!(
            socket = %config.socket.display(),
            runbooks = %config.runbooks_dir.display(),
            resumed,
            "runbookd ready"
        );
        Ok(Self {
            started_at,
            data_dir: config.data_dir.clone(),
            runbooks_dir: config.runbooks_dir.clone(),
            plugins_dir: config.plugins_dir.clone(),
            store,
            vault,
            engine,
            daemon_events,
            shutdown,
            shutdown_grace: config.shutdown_grace,
            observed,
            retention: config.retention,
            audit_retention: config.audit_retention,
            cluster,
        })
    }

    /// Answers on `listener` until shutdown, then stops the runs and flushes the store; or,
    /// once a failed database can be written again, stops at once for a restart in place.
    pub async fn serve(self, listener: tokio::net::UnixListener) -> anyhow::Result<Exit> {
        let Self {
            started_at,
            data_dir,
            runbooks_dir,
            plugins_dir,
            store,
            vault,
            engine,
            daemon_events,
            shutdown,
            shutdown_grace,
            observed,
            retention,
            audit_retention,
            cluster,
        } = self;
        // Reflection in both versions clients speak: v1, and v1alpha (grpcio-reflection,
        // grpcurl before 1.9, several GUI clients).
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(runbook_protocol::v1::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("cannot build the reflection service")?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(runbook_protocol::v1::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("cannot build the reflection service")?;
        let probe_dir = data_dir.clone();
        let info = service::DaemonInfo {
            data_dir,
            runbooks_dir,
            plugins_dir,
            started_at,
            shutdown_grace,
            metrics_listen: observed.listening_on,
            cluster,
            retention,
        };
        // Serving stops when asked to, or when the store is to be reopened.
        let stop = shutdown.child_token();
        let reopen = tokio::spawn(reopen::when_writable(
            store.clone(),
            probe_dir,
            stop.clone(),
        ));
        let api = service::RunbookService::new(
            engine.clone(),
            vault,
            daemon_events,
            info,
            shutdown.clone(),
            stop.clone(),
        );
        tokio::spawn(
            engine
                .clone()
                .keep_pruning(retention, audit_retention, stop.clone()),
        );
        observed.health.up(Arc::new(UpView {
            engine: engine.clone(),
        }));
        let served = tonic::transport::Server::builder()
            .layer(metrics::grpc::RecordLayer::new(observed.metrics.clone()))
            .add_service(
                RunbookServer::new(api)
                    .max_decoding_message_size(runbook_protocol::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(runbook_protocol::MAX_MESSAGE_BYTES),
            )
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(
                futures::StreamExt::map(server::incoming(listener, store.clone()), |accepted| {
                    accepted.map(uds_authority::rewrite)
                }),
                stop.cancelled(),
            )
            .await
            .context("the gRPC server failed");
        stop.cancel();
        observed.health.stopping();
        if let Err(err) = served {
            // The runs still stop as in any stop (their steps get the grace, the crash-loop
            // record is cleared): a server that failed is not a crash of theirs.
            tracing::error!("{err:#}; stopping");
            engine.shutdown(shutdown_grace).await;
            return Err(err);
        }
        let reopening = reopen.await.unwrap_or(false) && !shutdown.is_cancelled();
        if reopening {
            // Nothing a step does from here on could be recorded: what is still running is
            // left to crash recovery, as after a kill, and the last flush would only fail.
            tracing::info!("stopping to reopen the database");
            engine.shutdown(std::time::Duration::ZERO).await;
            return Ok(Exit::Reopen);
        }
        tracing::info!("shutting down");
        engine.shutdown(shutdown_grace).await;
        store.flush().await?;
        Ok(Exit::Stopped)
    }
}
