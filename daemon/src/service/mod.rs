//! gRPC handlers: decode a request, call the engine or the store, encode the answer. Errors
//! become statuses in `error.rs` only.

pub(crate) mod audit;
mod convert;
mod error;
mod plugins;
mod secrets;
mod watch;

use std::path::PathBuf;
use std::pin::Pin;

use runbook_protocol::v1 as pb;
use runbook_protocol::v1::runbook_server::Runbook as RunbookApi;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::engine::{Completion, Engine, Resolution, RetryRequest, Selection};
use crate::events::DaemonEvents;
use crate::store::{RunFilter, now_ms};
use crate::vault::Vault;

/// Runs listed when a request sets no limit, and the most a page may hold.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
/// The most bytes of a step output one GetStepOutput answer carries.
const OUTPUT_PAGE: usize = 1024 * 1024;
/// How long `GetRun` waits for a run's newest events to reach the disk.
const SETTLE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Facts about this daemon reported by `Status`.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    pub data_dir: PathBuf,
    pub runbooks_dir: PathBuf,
    pub plugins_dir: PathBuf,
    pub started_at: i64,
    pub shutdown_grace: std::time::Duration,
    /// Where the metrics listener listens, if it does.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The NATS side, with `[cluster]`.
    pub cluster: Option<crate::cluster::Cluster>,
    /// The `[retention]` policy, for a `PruneRuns` that names no rule.
    pub retention: crate::engine::RetentionPolicy,
}

/// The API implementation.
pub struct RunbookService {
    engine: Engine,
    vault: Vault,
    daemon_events: DaemonEvents,
    info: DaemonInfo,
    /// Cancelled by a `Shutdown` request: the whole daemon stops.
    shutdown: CancellationToken,
    /// Cancelled when serving stops (a shutdown, or a restart in place): open streams end
    /// then, as they would hold the server's graceful stop.
    serving_ends: CancellationToken,
    /// Grant changes one at a time: each reads, changes and stores a kind's grant.
    grant_changes: tokio::sync::Mutex<()>,
}

impl RunbookService {
    /// Loads the plugins directory again, as the watcher would, and checks the runbooks.
    async fn rescan_plugins(&self) {
        crate::watcher::rescan_plugins(&crate::watcher::Watched {
            runbooks_dir: self.info.runbooks_dir.clone(),
            plugins_dir: self.info.plugins_dir.clone(),
            catalog: self.engine.catalog().clone(),
            plugins: self.engine.plugins().clone(),
            events: self.daemon_events.clone(),
            store: self.engine.store().clone(),
        })
        .await;
    }

    /// Changes what `kind` is granted by `change` of its stored grant, durably, then loads the
    /// plugins directory again under the new grants; audited as `action`.
    async fn change_plugin_grant(
        &self,
        peer: &audit::Peer,
        action: &str,
        kind: &str,
        requested: Result<crate::plugins::PluginGrant, Status>,
        change: impl FnOnce(
            &crate::plugins::PluginGrant,
            &crate::plugins::PluginGrant,
        ) -> crate::plugins::PluginGrant,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let what = requested
            .as_ref()
            .map(plugins::describe)
            .unwrap_or_default();
        let answer = async {
            let requested = requested?;
            let _one_at_a_time = self.grant_changes.lock().await;
            let host = self.engine.plugins();
            let next = change(&host.grants().stored(kind), &requested);
            self.engine
                .store()
                .set_plugin_grant(kind, (!next.is_empty()).then_some(&next))
                .await?;
            host.grants().set_stored(kind, next);
            self.rescan_plugins().await;
            Ok(plugins::list(host))
        }
        .await;
        audit::record(
            self.engine.store(),
            peer,
            action,
            audit::Target::default(),
            |_, _| format!("plugin `{kind}`: {what}"),
            answer,
        )
        .await
        .map(Response::new)
    }

    /// Records a change to a secret, by its name, in the audit log, then answers it.
    async fn audited_secret<T>(
        &self,
        peer: &audit::Peer,
        action: &str,
        name: String,
        answer: Result<T, Status>,
    ) -> Result<T, Status> {
        let target = audit::Target {
            secret: name,
            ..Default::default()
        };
        audit::record(
            self.engine.store(),
            peer,
            action,
            target,
            |_, _| String::new(),
            answer,
        )
        .await
    }

    /// Records a decision about a run (and a step) in the audit log, then answers it.
    async fn audited(
        &self,
        peer: &audit::Peer,
        action: &str,
        run: &str,
        step: &str,
        answer: Result<pb::Run, Status>,
    ) -> Result<Response<pb::Run>, Status> {
        audit::record(
            self.engine.store(),
            peer,
            action,
            run_target(run, step),
            run_now,
            answer,
        )
        .await
        .map(Response::new)
    }

    pub fn new(
        engine: Engine,
        vault: Vault,
        daemon_events: DaemonEvents,
        info: DaemonInfo,
        shutdown: CancellationToken,
        serving_ends: CancellationToken,
    ) -> Self {
        Self {
            engine,
            vault,
            daemon_events,
            info,
            shutdown,
            serving_ends,
            grant_changes: tokio::sync::Mutex::new(()),
        }
    }

    fn run_message(&self, record: &crate::store::RunRecord) -> Result<pb::Run, Status> {
        Ok(convert::run(
            record,
            self.engine.store().last_seq(&record.id)?,
        ))
    }
}

/// Who made a request, for the audit trail of approvals and decisions. The server only
/// accepts peers with the daemon's own uid, so this names that user.
/// A target naming a run (and a step).
fn run_target(run: &str, step: &str) -> audit::Target {
    audit::Target {
        run: run.to_owned(),
        step: step.to_owned(),
        ..Default::default()
    }
}

/// What a decision about a run left it as, for its audit entry.
fn run_now(run: &pb::Run, target: &mut audit::Target) -> String {
    target.run.clone_from(&run.id);
    target.runbook.clone_from(&run.runbook);
    format!("run is {}", run.status().label())
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::RunEvent, Status>> + Send>>;
type DaemonEventStream = Pin<Box<dyn Stream<Item = Result<pb::DaemonEvent, Status>> + Send>>;

#[tonic::async_trait]
impl RunbookApi for RunbookService {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let store_failure = self.engine.store().health();
        let gauges = self.engine.gauges();
        let counters = self.engine.metrics().summary();
        let counts = |list: Vec<(String, u64)>| {
            list.into_iter()
                .map(|(status, count)| pb::StatusCount { status, count })
                .collect()
        };
        Ok(Response::new(pb::StatusResponse {
            not_ready: crate::not_ready(self.engine.store()).unwrap_or_default(),
            counters: Some(pb::DaemonCounters {
                runs_started: counters.runs_started,
                runs_finished: counts(counters.runs_finished),
                steps_finished: counts(counters.steps_finished),
                step_attempts: counters.step_attempts,
                step_retries: counters.step_retries,
                step_timeouts: counters.step_timeouts,
                rate_limit_waits: counters.rate_limit_waits,
            }),
            store_bytes: self.engine.store().size_on_disk(),
            steps_in_flight: u32::try_from(gauges.steps_in_flight).unwrap_or(u32::MAX),
            approvals_waiting: u32::try_from(gauges.approvals_waiting).unwrap_or(u32::MAX),
            metrics_listen: self
                .info
                .metrics_listen
                .map(|addr| addr.to_string())
                .unwrap_or_default(),
            cluster: self
                .info
                .cluster
                .as_ref()
                .map(crate::cluster::Cluster::describe)
                .unwrap_or_default(),
            store_error: store_failure
                .as_ref()
                .map(|failure| failure.error.clone())
                .unwrap_or_default(),
            store_error_at: store_failure.map_or(0, |failure| failure.at),
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            protocol_version: runbook_protocol::PROTOCOL_VERSION,
            data_dir: self.info.data_dir.display().to_string(),
            runbooks_dir: self.info.runbooks_dir.display().to_string(),
            pid: std::process::id(),
            started_at: self.info.started_at,
            plugins: self.engine.plugins().kinds(),
            active_runs: u32::try_from(self.engine.active_runs()).unwrap_or(u32::MAX),
            quarantined: self
                .engine
                .quarantined()
                .map_err(|err| Status::internal(err.to_string()))?
                .into_iter()
                .map(|run| pb::QuarantinedRun {
                    run_id: run.run_id,
                    reason: run.reason,
                    quarantined_at: run.quarantined_at,
                })
                .collect(),
        }))
    }

    async fn shutdown(
        &self,
        request: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        let peer = audit::peer(&request);
        tracing::info!(by = %peer, "shutdown requested");
        let runs_in_flight = self.engine.runs_in_flight();
        let answer = pb::ShutdownResponse {
            runs_in_flight,
            grace_ms: i64::try_from(self.info.shutdown_grace.as_millis()).unwrap_or(i64::MAX),
        };
        // Recorded before the stop starts: the entry is durable when the daemon goes.
        let answer = audit::record(
            self.engine.store(),
            &peer,
            "shutdown",
            audit::Target::default(),
            |answer: &pb::ShutdownResponse, _| {
                format!("{} runs with steps running", answer.runs_in_flight.len())
            },
            Ok(answer),
        )
        .await?;
        self.shutdown.cancel();
        Ok(Response::new(answer))
    }

    async fn list_runbooks(
        &self,
        _: Request<pb::ListRunbooksRequest>,
    ) -> Result<Response<pb::ListRunbooksResponse>, Status> {
        let runbooks = self
            .engine
            .catalog()
            .list()
            .iter()
            .map(convert::summary)
            .collect();
        Ok(Response::new(pb::ListRunbooksResponse { runbooks }))
    }

    async fn get_runbook(
        &self,
        request: Request<pb::GetRunbookRequest>,
    ) -> Result<Response<pb::RunbookDetail>, Status> {
        let name = request.into_inner().name;
        let entry = self
            .engine
            .catalog()
            .get(&name)
            .ok_or_else(|| Status::not_found(format!("no runbook named `{name}`")))?;
        let mut detail = convert::detail(&entry, |step| self.engine.needs_approval(step));
        // A file that cannot be read now (just deleted, say) leaves both fields empty.
        if let Ok(source) = std::fs::read_to_string(&entry.path) {
            detail.file_hash = crate::runbook::content_hash(&source);
            detail.file_source = source;
        }
        Ok(Response::new(detail))
    }

    async fn save_runbook(
        &self,
        request: Request<pb::SaveRunbookRequest>,
    ) -> Result<Response<pb::SaveRunbookResponse>, Status> {
        let peer = audit::peer(&request);
        let actor = peer.to_string();
        let request = request.into_inner();
        let saved = self
            .engine
            .catalog()
            .save(
                &request.runbook,
                &request.source,
                &request.base_hash,
                &actor,
            )
            .await
            .map_err(Status::from);
        let target = audit::Target {
            runbook: request.runbook.clone(),
            ..Default::default()
        };
        let saved = audit::record(
            self.engine.store(),
            &peer,
            "save",
            target,
            |saved: &crate::catalog::Saved, _| match (&saved.version, saved.diagnostics.len()) {
                (Some(entry), _) => format!("version {} saved", entry.number),
                (None, 0) => "saved; the content was already a version".to_owned(),
                (None, problems) => format!("saved with {problems} problems: not a version"),
            },
            saved,
        )
        .await?;
        Ok(Response::new(pb::SaveRunbookResponse {
            valid: saved.diagnostics.is_empty(),
            diagnostics: saved.diagnostics.iter().map(convert::diagnostic).collect(),
            version: saved
                .version
                .map(|entry| convert::version(&entry, true, String::new())),
            file_hash: saved.file_hash,
        }))
    }

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        let name = request.into_inner().runbook;
        let history = self.engine.catalog().history(&name)?;
        let newest = history.last().map(|entry| entry.number);
        let versions = history
            .iter()
            .map(|entry| convert::version(entry, Some(entry.number) == newest, String::new()))
            .collect();
        Ok(Response::new(pb::ListVersionsResponse { versions }))
    }

    async fn get_version(
        &self,
        request: Request<pb::GetVersionRequest>,
    ) -> Result<Response<pb::RunbookVersion>, Status> {
        let request = request.into_inner();
        let catalog = self.engine.catalog();
        let (entry, source) = catalog.version(&request.runbook, &request.version)?;
        let newest = catalog.history(&request.runbook)?.last().map(|e| e.number);
        Ok(Response::new(convert::version(
            &entry,
            Some(entry.number) == newest,
            source,
        )))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RunbookVersion>, Status> {
        let peer = audit::peer(&request);
        let actor = peer.to_string();
        let request = request.into_inner();
        let entry = self
            .engine
            .catalog()
            .rollback(&request.runbook, &request.version, &actor)
            .await
            .map_err(Status::from);
        let target = audit::Target {
            runbook: request.runbook.clone(),
            ..Default::default()
        };
        let entry = audit::record(
            self.engine.store(),
            &peer,
            "rollback",
            target,
            |entry: &crate::store::HistoryEntry, _| {
                format!(
                    "to version {}: now version {}",
                    request.version, entry.number
                )
            },
            entry,
        )
        .await?;
        let (_, source) = self.engine.catalog().version(&entry.name, &entry.version)?;
        Ok(Response::new(convert::version(&entry, true, source)))
    }

    type WatchDaemonStream = DaemonEventStream;

    async fn watch_daemon(
        &self,
        _: Request<pb::WatchDaemonRequest>,
    ) -> Result<Response<Self::WatchDaemonStream>, Status> {
        let events = tokio_stream::wrappers::BroadcastStream::new(self.daemon_events.subscribe());
        // The stream ends with the daemon: an open stream would hold the graceful shutdown.
        let events =
            futures::StreamExt::take_until(events, self.serving_ends.clone().cancelled_owned());
        let stream = tokio_stream::StreamExt::filter_map(events, |received| match received {
            Ok((time, event)) => Some(Ok(convert::daemon_event(time, &event))),
            // A client this far behind re-reads the lists; the stream itself goes on.
            Err(lagged) => {
                tracing::warn!(error = %lagged, "a WatchDaemon client fell behind");
                None
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn validate_runbook(
        &self,
        request: Request<pb::ValidateRunbookRequest>,
    ) -> Result<Response<pb::ValidateRunbookResponse>, Status> {
        let request = request.into_inner();
        let path = if request.path.is_empty() {
            "runbook.toml".to_owned()
        } else {
            request.path
        };
        let response =
            match crate::runbook::load(&path, &request.source, self.engine.plugins()).await {
                Ok(runbook) => pb::ValidateRunbookResponse {
                    valid: true,
                    diagnostics: Vec::new(),
                    name: runbook.name,
                },
                Err(diagnostics) => pb::ValidateRunbookResponse {
                    valid: false,
                    diagnostics: diagnostics.iter().map(convert::diagnostic).collect(),
                    name: String::new(),
                },
            };
        Ok(Response::new(response))
    }

    async fn start_run(
        &self,
        request: Request<pb::StartRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let peer = audit::peer(&request);
        let request = request.into_inner();
        let nonempty = |text: &String| Some(text.clone()).filter(|text| !text.is_empty());
        let selection = Selection {
            only: request.only.clone(),
            from: nonempty(&request.from),
            to: nonempty(&request.to),
            outputs_from: nonempty(&request.outputs_from),
        };
        let run = self
            .engine
            .start_part(
                &request.runbook,
                &request.params,
                request.dry_run,
                &selection,
            )
            .await
            .map_err(Status::from);
        let target = audit::Target {
            runbook: request.runbook.clone(),
            ..Default::default()
        };
        let run = audit::record(
            self.engine.store(),
            &peer,
            "start",
            target,
            |run: &crate::store::RunRecord, target| {
                target.run.clone_from(&run.id);
                let params: Vec<&str> = run.params.keys().map(String::as_str).collect();
                let left_out = run.steps.iter().filter(|step| step.unselected).count();
                format!(
                    "{}{}params: {}",
                    if run.dry_run { "dry run; " } else { "" },
                    if left_out > 0 {
                        format!("{left_out} steps not selected; ")
                    } else {
                        String::new()
                    },
                    if params.is_empty() {
                        "none".to_owned()
                    } else {
                        params.join(", ")
                    }
                )
            },
            run,
        )
        .await?;
        Ok(Response::new(self.run_message(&run)?))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let store = self.engine.store();
        let id = store.resolve_run_id(&request.into_inner().id)?;
        // Answer only once the run's events are readable, so that a client that sees a state
        // can always read the events that led to it.
        let (run, last_seq) = store
            .settled_run(&id, SETTLE_PATIENCE)
            .await?
            .ok_or_else(|| Status::not_found(format!("no run matches `{id}`")))?;
        Ok(Response::new(convert::run(&run, last_seq)))
    }

    async fn get_step_output(
        &self,
        request: Request<pb::GetStepOutputRequest>,
    ) -> Result<Response<pb::StepOutputPage>, Status> {
        let request = request.into_inner();
        let store = self.engine.store();
        let id = store.resolve_run_id(&request.run_id)?;
        let (attempt, text) = store
            .step_output(
                &id,
                &request.step_id,
                request.step_index.map(|index| index as usize),
                request.attempt,
            )?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "step `{}` of run {id} has no output{}",
                    request.step_id,
                    request
                        .attempt
                        .map(|attempt| format!(" for attempt {attempt}"))
                        .unwrap_or_default()
                ))
            })?;
        let limit = match request.limit {
            0 => OUTPUT_PAGE,
            n => (n as usize).min(OUTPUT_PAGE),
        };
        let total = text.len();
        let offset = usize::try_from(request.offset)
            .unwrap_or(usize::MAX)
            .min(total);
        let end = offset.saturating_add(limit).min(total);
        Ok(Response::new(pb::StepOutputPage {
            attempt,
            total_bytes: total as u64,
            offset: offset as u64,
            data: text[offset..end].to_vec(),
        }))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let request = request.into_inner();
        let limit = match request.limit {
            0 => DEFAULT_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let status = pb::RunStatus::try_from(request.status).map_err(|_| {
            Status::invalid_argument(format!("unknown run status {}", request.status))
        })?;
        let filter = RunFilter {
            runbook: Some(request.runbook).filter(|name| !name.is_empty()),
            status: convert::run_status_from(status),
        };
        let after = Some(request.page_token.as_str()).filter(|token| !token.is_empty());
        let records = self.engine.store().list_runs(&filter, after, limit)?;
        let next_page_token = if records.len() == limit {
            records.last().map(|run| run.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let runs = records
            .iter()
            .map(|run| self.run_message(run))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListRunsResponse {
            runs,
            next_page_token,
        }))
    }

    type WatchRunStream = EventStream;

    async fn watch_run(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let request = request.into_inner();
        let id = self.engine.store().resolve_run_id(&request.id)?;
        let stream = watch::watch(
            self.engine.store().clone(),
            self.engine.bus().clone(),
            id,
            request.after_seq,
            self.serving_ends.clone(),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn approve(
        &self,
        request: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let peer = audit::peer(&request);
        let by = peer.to_string();
        let request = request.into_inner();
        let answer = async {
            let run = self
                .engine
                .approve(&request.run_id, &request.step_id, &by)
                .await?;
            tracing::info!(run = %run.id, step = %request.step_id, by = %by, "step approved");
            self.run_message(&run)
        }
        .await;
        self.audited(&peer, "approve", &request.run_id, &request.step_id, answer)
            .await
    }

    async fn confirm_step(
        &self,
        request: Request<pb::ConfirmStepRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let peer = audit::peer(&request);
        let by = peer.to_string();
        let request = request.into_inner();
        let answer = async {
            let run = self
                .engine
                .confirm(&request.run_id, &request.step_id, &request.inputs, &by)
                .await?;
            tracing::info!(run = %run.id, step = %request.step_id, by = %by, "step confirmed");
            self.run_message(&run)
        }
        .await;
        self.audited(&peer, "confirm", &request.run_id, &request.step_id, answer)
            .await
    }

    async fn deny(&self, request: Request<pb::DenyRequest>) -> Result<Response<pb::Run>, Status> {
        let peer = audit::peer(&request);
        let by = peer.to_string();
        let request = request.into_inner();
        let answer = async {
            let run = self
                .engine
                .deny(&request.run_id, &request.step_id, &request.reason, &by)
                .await?;
            tracing::info!(run = %run.id, step = %request.step_id, by = %by, "step denied");
            self.run_message(&run)
        }
        .await;
        self.audited(&peer, "deny", &request.run_id, &request.step_id, answer)
            .await
    }

    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let peer = audit::peer(&request);
        let by = peer.to_string();
        let request = request.into_inner();
        let answer = async {
            let resolution = match pb::ResolveAction::try_from(request.action) {
                Ok(pb::ResolveAction::Retry) => Resolution::Retry,
                Ok(pb::ResolveAction::Skip) => Resolution::Skip,
                Ok(pb::ResolveAction::Fail) => Resolution::Fail,
                _ => {
                    return Err(Status::invalid_argument(
                        "resolve needs an action: retry, skip or fail",
                    ));
                }
            };
            let run = self
                .engine
                .resolve(&request.run_id, &request.step_id, resolution, &by)
                .await?;
            tracing::info!(run = %run.id, step = %request.step_id, by = %by, action = ?resolution, "step resolved");
            self.run_message(&run)
        }
        .await;
        self.audited(&peer, "resolve", &request.run_id, &request.step_id, answer)
            .await
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let peer = audit::peer(&request);
        let id = request.into_inner().id;
        let answer = async {
            let run = self.engine.cancel(&id).await?;
            tracing::info!(run = %run.id, by = %peer, at = now_ms(), "run cancelled");
            self.run_message(&run)
        }
        .await;
        self.audited(&peer, "cancel", &id, "", answer).await
    }

    async fn pause_run(
        &self,
        request: Request<pb::PauseRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let peer = audit::peer(&request);
        let by = peer.to_string();
        let id = request.into_inner().id;
        let answer = async {
            let run = self.engine.pause(&id, &by).await?;
            tracing::info!(run = %run.id, by = %by, "run paused");
            self.run_message(&run)
        }
        .await;
        self.audited(&peer, "pause", &id, "", answer).await
    }

    async fn resume_run(
        &self,
        request: Request<pb::ResumeRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let peer = audit::peer(&request);
        let by = peer.to_string();
        let id = request.into_inner().id;
        let answer = async {
            let run = self.engine.resume(&id, &by).await?;
            tracing::info!(run = %run.id, by = %by, "run resumed");
            self.run_message(&run)
        }
        .await;
        self.audited(&peer, "resume", &id, "", answer).await
    }

    async fn retry_run(
        &self,
        request: Request<pb::RetryRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let peer = audit::peer(&request);
        let by = peer.to_string();
        let request = request.into_inner();
        let answer = async {
            let retry = RetryRequest {
                from: Some(request.from.clone()).filter(|from| !from.is_empty()),
                latest: request.latest,
            };
            let run = self.engine.retry_run(&request.id, &retry, &by).await?;
            self.run_message(&run)
        }
        .await;
        self.audited(&peer, "retry", &request.id, &request.from, answer)
            .await
    }

    async fn complete_step(
        &self,
        request: Request<pb::CompleteStepRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let peer = audit::peer(&request);
        let by = peer.to_string();
        let request = request.into_inner();
        let answer = async {
        let completion = match request.status() {
            pb::StepStatus::Completed => {
                let output = if request.output_json.trim().is_empty() {
                    None
                } else {
                    Some(serde_json::from_str(&request.output_json).map_err(|err| {
                        Status::invalid_argument(format!("output_json is not JSON: {err}"))
                    })?)
                };
                Completion::Completed(output)
            }
            pb::StepStatus::Failed => Completion::Failed(request.error.clone()),
            other => {
                return Err(Status::invalid_argument(format!(
                    "a step can be completed as completed or failed, not {}",
                    other.as_str_name()
                )));
            }
        };
        let run = self
            .engine
            .complete_step(&request.run_id, &request.step, completion, &by)
            .await?;
        tracing::info!(run = %run.id, step = %request.step, by = %by, "step completed from outside");
        self.run_message(&run)
        }
        .await;
        self.audited(&peer, "complete", &request.run_id, &request.step, answer)
            .await
    }

    async fn list_connections(
        &self,
        _request: Request<pb::ListConnectionsRequest>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let connections = self
            .engine
            .connections()
            .await
            .into_iter()
            .map(|status| pb::ConnectionState {
                name: status.name,
                defined_in: status.defined_in,
                database: status.database,
                location: status.location,
                checked: status.reachable.is_some(),
                reachable: matches!(status.reachable, Some(Ok(()))),
                error: match status.reachable {
                    Some(Err(err)) => err,
                    None => "its URL reads params: a run tries it".to_owned(),
                    Some(Ok(())) => String::new(),
                },
            })
            .collect();
        Ok(Response::new(pb::ListConnectionsResponse { connections }))
    }

    async fn list_targets(
        &self,
        _request: Request<pb::ListTargetsRequest>,
    ) -> Result<Response<pb::ListTargetsResponse>, Status> {
        let targets = self
            .engine
            .targets()
            .list()
            .iter()
            .map(convert::target)
            .collect();
        Ok(Response::new(pb::ListTargetsResponse { targets }))
    }

    async fn set_secret(
        &self,
        request: Request<pb::SetSecretRequest>,
    ) -> Result<Response<pb::SecretInfo>, Status> {
        let peer = audit::peer(&request);
        let request = request.into_inner();
        let name = request.name.clone();
        let answer = secrets::set(&self.vault, request, &peer.to_string()).await;
        self.audited_secret(&peer, "secret_set", name, answer).await
    }

    async fn list_secrets(
        &self,
        _request: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        secrets::list(&self.vault)
    }

    async fn remove_secret(
        &self,
        request: Request<pb::RemoveSecretRequest>,
    ) -> Result<Response<pb::RemoveSecretResponse>, Status> {
        let peer = audit::peer(&request);
        let request = request.into_inner();
        let name = request.name.clone();
        let answer = secrets::remove(&self.vault, request, &peer.to_string()).await;
        self.audited_secret(&peer, "secret_rm", name, answer).await
    }

    async fn list_agents(
        &self,
        _request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let Some(cluster) = &self.info.cluster else {
            return Ok(Response::new(pb::ListAgentsResponse::default()));
        };
        let mut agents: Vec<pb::Agent> = cluster
            .agents()
            .into_iter()
            .map(|agent| pb::Agent {
                live: agent.live(),
                heartbeat_age_ms: u64::try_from(agent.seen.elapsed().as_millis())
                    .unwrap_or(u64::MAX),
                name: agent.record.name,
                labels: agent.record.labels,
                version: agent.record.version,
                running: agent.record.running,
                started_at: agent.record.started_at,
            })
            .collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(pb::ListAgentsResponse {
            agents,
            cluster: true,
        }))
    }

    async fn list_plugins(
        &self,
        _request: Request<pb::ListPluginsRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        Ok(Response::new(plugins::list(self.engine.plugins())))
    }

    async fn grant_plugin(
        &self,
        request: Request<pb::GrantPluginRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let peer = audit::peer(&request);
        let request = request.into_inner();
        let requested = plugins::requested(self.engine.plugins(), &request.kind, request.grant);
        self.change_plugin_grant(
            &peer,
            "plugin_grant",
            &request.kind,
            requested,
            crate::plugins::PluginGrant::union,
        )
        .await
    }

    async fn revoke_plugin(
        &self,
        request: Request<pb::RevokePluginRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let peer = audit::peer(&request);
        let request = request.into_inner();
        let host = self.engine.plugins();
        let mut requested = plugins::requested(host, &request.kind, request.grant);
        if request.all {
            // Everything `grant` gave, named as such in the audit log.
            requested = requested.map(|_| host.grants().stored(&request.kind));
        }
        self.change_plugin_grant(
            &peer,
            "plugin_revoke",
            &request.kind,
            requested,
            crate::plugins::PluginGrant::without,
        )
        .await
    }

    async fn install_plugin(
        &self,
        request: Request<tonic::Streaming<pb::InstallPluginChunk>>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let peer = audit::peer(&request);
        let answer = async {
            let (bytes, grant) = plugins::receive(request.into_inner()).await?;
            let extra = plugins::grant_of(grant)?;
            let host = self.engine.plugins();
            let inspected = host
                .inspect(&bytes, &extra)
                .await
                .map_err(|err| Status::failed_precondition(format!("{err:#}")))?;
            let kind = inspected.kind;
            let target = self.info.plugins_dir.join(format!("{kind}.wasm"));
            if let Some(other) = host.file_of(&kind).filter(|other| *other != target) {
                return Err(Status::already_exists(format!(
                    "step kind `{kind}` is provided by {}; remove it first with `runbook plugin rm {kind}`",
                    other.display()
                )));
            }
            let _one_at_a_time = self.grant_changes.lock().await;
            // The grants first: the file is loaded under them the moment it is in place.
            let next = host.grants().stored(&kind).union(&extra);
            self.engine
                .store()
                .set_plugin_grant(&kind, (!next.is_empty()).then_some(&next))
                .await?;
            host.grants().set_stored(&kind, next);
            plugins::write_atomically(&target, &bytes).map_err(|err| {
                Status::internal(format!("cannot write {}: {err}", target.display()))
            })?;
            self.rescan_plugins().await;
            let detail = format!(
                "plugin `{kind}` installed as {} (sha256 {}), granted {}",
                target.display(),
                inspected.hash,
                plugins::describe(&extra)
            );
            Ok((plugins::list(host), detail))
        }
        .await;
        audit::record(
            self.engine.store(),
            &peer,
            "plugin_install",
            audit::Target::default(),
            |(_, detail), _| detail.clone(),
            answer,
        )
        .await
        .map(|(listed, _)| Response::new(listed))
    }

    async fn remove_plugin(
        &self,
        request: Request<pb::RemovePluginRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let peer = audit::peer(&request);
        let kind = request.into_inner().kind;
        let answer = async {
            let host = self.engine.plugins();
            plugins::user_kind(host, &kind)?;
            let path = host.file_of(&kind).ok_or_else(|| {
                Status::not_found(format!("no plugin file provides step kind `{kind}`"))
            })?;
            let _one_at_a_time = self.grant_changes.lock().await;
            std::fs::remove_file(&path).map_err(|err| {
                Status::internal(format!("cannot remove {}: {err}", path.display()))
            })?;
            host.unload_file(&path);
            // A later file of the same kind earns its grants again.
            self.engine
                .store()
                .set_plugin_grant::<crate::plugins::PluginGrant>(&kind, None)
                .await?;
            host.grants()
                .set_stored(&kind, crate::plugins::PluginGrant::default());
            self.rescan_plugins().await;
            Ok((plugins::list(host), path.display().to_string()))
        }
        .await;
        audit::record(
            self.engine.store(),
            &peer,
            "plugin_rm",
            audit::Target::default(),
            |(_, path), _| format!("plugin `{kind}` removed ({path}) with its grants"),
            answer,
        )
        .await
        .map(|(listed, _)| Response::new(listed))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let request = request.into_inner();
        let filter = crate::store::AuditFilter {
            since: (request.since > 0).then_some(request.since),
            action: Some(request.action).filter(|action| !action.is_empty()),
            run: Some(request.run_id).filter(|run| !run.is_empty()),
        };
        let limit = match request.limit {
            0 => 100,
            limit => limit.min(1000) as usize,
        };
        let entries = self
            .engine
            .store()
            .audit_log(&filter, limit)?
            .into_iter()
            .map(|entry| pb::AuditLogEntry {
                at: entry.at,
                uid: entry.uid,
                user: entry.user,
                action: entry.action,
                runbook: entry.runbook,
                run_id: entry.run,
                step: entry.step,
                secret: entry.secret,
                result: entry.result.as_str().to_owned(),
                detail: entry.detail,
            })
            .collect();
        Ok(Response::new(pb::ListAuditResponse { entries }))
    }

    async fn prune_runs(
        &self,
        request: Request<pb::PruneRunsRequest>,
    ) -> Result<Response<pb::PruneRunsResponse>, Status> {
        let peer = audit::peer(&request);
        let request = request.into_inner();
        let answer = self.prune(&peer, &request).await;
        let action = if request.dry_run {
            "prune_dry_run"
        } else {
            "prune"
        };
        audit::record(
            self.engine.store(),
            &peer,
            action,
            audit::Target::default(),
            |answer: &Response<pb::PruneRunsResponse>, _| {
                format!("{} ended runs", answer.get_ref().runs.len())
            },
            answer,
        )
        .await
    }
}

impl RunbookService {
    /// `PruneRuns` itself.
    async fn prune(
        &self,
        by: &audit::Peer,
        request: &pb::PruneRunsRequest,
    ) -> Result<Response<pb::PruneRunsResponse>, Status> {
        let policy = if request.older_than_ms.is_none() && request.max_runs.is_none() {
            self.info.retention
        } else {
            crate::engine::RetentionPolicy {
                max_age: request.older_than_ms.map(std::time::Duration::from_millis),
                max_runs: request.max_runs.map(|max| max as usize),
            }
        };
        if policy.is_empty() {
            return Err(Status::invalid_argument(
                "nothing to prune by: give --older-than or --max-runs, or set [retention] in the daemon config",
            ));
        }
        if policy.max_runs == Some(0) {
            return Err(Status::invalid_argument("max_runs must be at least 1"));
        }
        let store_bytes_before = self.engine.store().size_on_disk();
        let runs = self.engine.prune(policy, request.dry_run).await?;
        if !request.dry_run {
            tracing::info!(by = %by, runs = runs.len(), "runs pruned on request");
        }
        Ok(Response::new(pb::PruneRunsResponse {
            runs: runs
                .into_iter()
                .map(|run| pb::PrunedRun {
                    run_id: run.run_id,
                    runbook: run.runbook,
                    status: convert::run_status(run.status).into(),
                    finished_at: run.finished_at,
                })
                .collect(),
            dry_run: request.dry_run,
            store_bytes_before,
            store_bytes_after: self.engine.store().size_on_disk(),
        }))
    }
}
