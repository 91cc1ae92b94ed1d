//! The daemon's side of remote agents: which agents are alive (a watch on the heartbeat
//! bucket), and running a `runs_on` step on one of them. The daemon renders the step, asks
//! for approvals and records everything as for a local step; only the plugin call travels:
//! the dispatch goes to the chosen agent's subject of the work queue, and its replies (lines,
//! logs, the end) come back in order on the dispatch's own subject.
//!
//! A step waits, saying why, while no live agent carries its labels, up to its timeout. An
//! agent that stops heartbeating mid-step loses it: an idempotent step is dispatched again
//! (same idempotency key) to another live agent, any other ends with the agent's silence as
//! its error.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, kv};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::agent::seal_secrets;
use super::fleet;
use super::wire::{self, AgentRecord, Call, Dispatch, RemoteEnd, Reply, ReplyEvent, SCHEMA};
use crate::plugins::{
    EventSink, Level, Outcome, PluginError, PluginEvent, PluginGrant, PluginHost, ProcessSpec,
    SecretScope, StepContext, StepError, StreamKind,
};
use crate::store::DispatchRecord;

/// Heartbeats an agent may miss before it counts as gone.
const MISSED_HEARTBEATS: u32 = 3;
/// The least time an agent counts as alive after a heartbeat, however fast it beats.
const MIN_LIVENESS: Duration = Duration::from_secs(3);
/// How often a waiting step looks at its agent's heartbeat (and for a live agent).
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long past a call's deadline setting its dispatch up may take before it is given up.
const SETUP_SLACK: Duration = Duration::from_secs(5);
/// How many times withdrawing a dispatch is tried, [`RETRY_SETUP`] apart.
const WITHDRAW_TRIES: u32 = 120;
/// The pause before watching the bucket again after an error.
const RETRY_SETUP: Duration = Duration::from_secs(1);

/// An agent as the daemon last heard of it.
#[derive(Debug, Clone)]
pub struct KnownAgent {
    pub record: AgentRecord,
    /// When its last heartbeat was written, by NATS's clock, as an instant of ours.
    pub seen: Instant,
}

impl KnownAgent {
    /// Whether it heartbeated recently enough to be given steps.
    pub fn live(&self) -> bool {
        self.seen.elapsed() < liveness(&self.record)
    }

    fn carries(&self, labels: &[String]) -> bool {
        labels
            .iter()
            .all(|label| self.record.labels.contains(label))
    }
}

fn liveness(record: &AgentRecord) -> Duration {
    (Duration::from_millis(record.heartbeat_ms) * MISSED_HEARTBEATS).max(MIN_LIVENESS)
}

/// Runs steps on agents.
#[derive(Clone)]
pub struct Dispatcher {
    client: async_nats::Client,
    /// Hashes of components known to be in the plugin bucket.
    uploaded: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    jetstream: jetstream::Context,
    agents: Arc<RwLock<BTreeMap<String, KnownAgent>>>,
}

/// One plugin call to run on an agent.
pub struct RemoteCall<'a> {
    /// The labels the agent must all carry.
    pub labels: &'a [String],
    pub kind: &'a str,
    pub ctx: StepContext,
    pub config: &'a str,
    pub call: Call,
    pub processes: Vec<ProcessSpec>,
    pub insecure_redirects: bool,
    pub timeout: Duration,
    pub scope: &'a SecretScope,
    pub sink: EventSink,
    /// Whether the step may run twice: then an agent lost mid-step is replaced.
    pub idempotent: bool,
    /// The user plugin the call needs, if its kind is not built in.
    pub plugin: Option<RemotePlugin>,
    /// Told of each dispatch made, so that it can be recorded with the step.
    pub on_dispatch: Option<DispatchHook>,
}

/// Records a dispatch with its step (durably) before the call goes on.
pub type DispatchHook =
    Arc<dyn Fn(DispatchRecord) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// A user plugin as the agents get it: its component (by hash, from its file) and grant.
#[derive(Debug, Clone)]
pub struct RemotePlugin {
    pub hash: String,
    pub file: std::path::PathBuf,
    pub grant: PluginGrant,
}

impl RemotePlugin {
    /// What agents need of `kind` in `plugins`; `None` for a built-in kind, which every
    /// agent has.
    pub fn of(plugins: &PluginHost, kind: &str) -> Option<Self> {
        let grant = plugins.user_grant(kind)?;
        Some(Self {
            hash: plugins.hash_of(kind)?,
            file: plugins.file_of(kind)?,
            grant,
        })
    }
}

/// How a remote call ended: answered as a local call would be, or unknown.
pub enum RemoteAnswer {
    Answered(Result<Result<Outcome, StepError>, PluginError>),
    /// Its agent fell silent mid-step and the step may not run twice: whether it ran is
    /// unknown.
    Unknown(String),
}

impl RemoteAnswer {
    /// The answer of a call that may run twice, which is never unknown (it is dispatched
    /// again instead).
    pub fn answered(self, kind: &str) -> Result<Result<Outcome, StepError>, PluginError> {
        match self {
            Self::Answered(answer) => answer,
            Self::Unknown(message) => Err(PluginError::Trap {
                kind: kind.to_owned(),
                message,
            }),
        }
    }
}

/// How one dispatch ended.
enum Dispatched {
    Ended(RemoteEnd),
    /// The agent stopped heartbeating before it said how the step ended.
    Lost(String),
}

impl Dispatcher {
    /// Starts watching the heartbeat bucket until `stopping`.
    pub fn start(client: async_nats::Client, stopping: CancellationToken) -> Self {
        let dispatcher = Self {
            jetstream: jetstream::new(client.clone()),
            client,
            uploaded: Arc::default(),
            agents: Arc::default(),
        };
        tokio::spawn(dispatcher.clone().watch(stopping));
        dispatcher
    }

    /// Every agent heard of, by name.
    pub fn agents(&self) -> Vec<KnownAgent> {
        self.agents
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    async fn watch(self, stopping: CancellationToken) {
        loop {
            let result = tokio::select! {
                result = self.follow_bucket() => result,
                () = stopping.cancelled() => return,
            };
            if let Err(err) = result {
                tracing::warn!(error = %format!("{err:#}"), "agent registry: watching again");
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY_SETUP) => {}
                () = stopping.cancelled() => return,
            }
        }
    }

    async fn follow_bucket(&self) -> anyhow::Result<()> {
        let bucket = fleet::agents_bucket(&self.jetstream).await?;
        let mut entries = bucket.watch_with_history(">").await?;
        while let Some(entry) = entries.next().await {
            let entry = entry?;
            let mut agents = self
                .agents
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if entry.operation != kv::Operation::Put {
                agents.remove(&entry.key);
                continue;
            }
            match wire::parse::<AgentRecord>(&entry.value) {
                // An entry speaks for the key it is under, and no other.
                Ok(record) if record.name == entry.key => {
                    let created_ms = entry.created.unix_timestamp_nanos() / 1_000_000;
                    let age_ms = i128::from(crate::store::now_ms()) - created_ms;
                    let age = Duration::from_millis(u64::try_from(age_ms).unwrap_or(0));
                    let seen = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                    agents.insert(entry.key.clone(), KnownAgent { record, seen });
                }
                Ok(record) => {
                    tracing::warn!(key = %entry.key, name = %record.name, "agent registry: an entry names another agent; ignored");
                }
                Err(why) => {
                    tracing::warn!(key = %entry.key, reason = %why, "agent registry: unreadable entry ignored");
                }
            }
        }
        Ok(())
    }

    /// The live agent carrying every label that runs the fewest steps.
    fn pick(&self, labels: &[String]) -> Option<KnownAgent> {
        self.agents()
            .into_iter()
            .filter(|agent| agent.live() && agent.carries(labels))
            .min_by_key(|agent| (agent.record.running, agent.record.name.clone()))
    }

    fn still_live(&self, name: &str) -> bool {
        self.agents
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .is_some_and(KnownAgent::live)
    }

    /// Runs `call` on a live agent carrying its labels, waiting for one up to the call's
    /// timeout; answers as a local plugin call would.
    pub async fn execute(&self, call: RemoteCall<'_>) -> RemoteAnswer {
        match self.run(&call).await {
            Ok(answer) => RemoteAnswer::Answered(answer),
            Err(why) => RemoteAnswer::Unknown(why),
        }
    }

    /// `Err` says why the result is unknown.
    async fn run(
        &self,
        call: &RemoteCall<'_>,
    ) -> Result<Result<Result<Outcome, StepError>, PluginError>, String> {
        let deadline = tokio::time::Instant::now() + call.timeout;
        let timed_out = || PluginError::Timeout {
            kind: call.kind.to_owned(),
            timeout: call.timeout,
        };
        let mut said_waiting = false;
        loop {
            let Some(agent) = self.pick(call.labels) else {
                if !said_waiting {
                    said_waiting = true;
                    (call.sink)(PluginEvent::Log {
                        level: Level::Warn,
                        message: format!(
                            "no live agent with label {}; waiting for one",
                            call.labels.join(" and ")
                        ),
                    });
                }
                if tokio::time::Instant::now() + CHECK_EVERY > deadline {
                    return Ok(Err(timed_out()));
                }
                tokio::time::sleep(CHECK_EVERY).await;
                continue;
            };
            // The dispatch ends itself at the deadline; this bounds the talk with NATS
            // before it (an upload, a publish) when NATS does not answer.
            let Ok(dispatched) = tokio::time::timeout_at(
                deadline + SETUP_SLACK,
                self.dispatch(call, &agent.record, deadline),
            )
            .await
            else {
                return Ok(Err(timed_out()));
            };
            match dispatched {
                Ok(Dispatched::Ended(RemoteEnd::Answered { result })) => return Ok(Ok(result)),
                Ok(Dispatched::Ended(RemoteEnd::TimedOut)) => return Ok(Err(timed_out())),
                Ok(Dispatched::Ended(RemoteEnd::Interrupted)) if call.idempotent => {
                    (call.sink)(PluginEvent::Log {
                        level: Level::Warn,
                        message: format!(
                            "agent {} was restarted while it ran the step, which is idempotent, so it is dispatched again",
                            agent.record.name
                        ),
                    });
                }
                Ok(Dispatched::Ended(RemoteEnd::Interrupted)) => {
                    return Err(format!(
                        "agent {} was restarted while it ran the step",
                        agent.record.name
                    ));
                }
                // Only a withdrawn call ends so, and nobody waits for it any more.
                Ok(Dispatched::Ended(RemoteEnd::Cancelled)) => {
                    return Ok(Ok(Err(StepError {
                        message: format!("cancelled on agent {}", agent.record.name),
                        output: None,
                        transient: false,
                        retry_after_ms: None,
                    })));
                }
                Ok(Dispatched::Ended(RemoteEnd::Crashed { message })) => {
                    return Ok(Err(PluginError::Trap {
                        kind: call.kind.to_owned(),
                        message: format!("on agent {}: {message}", agent.record.name),
                    }));
                }
                Ok(Dispatched::Lost(why)) if call.idempotent => {
                    (call.sink)(PluginEvent::Log {
                        level: Level::Warn,
                        message: format!(
                            "{why}; the step is idempotent, so it is dispatched again"
                        ),
                    });
                }
                Ok(Dispatched::Lost(why)) => return Err(why),
                Err(err) => {
                    return Ok(Err(PluginError::Trap {
                        kind: call.kind.to_owned(),
                        message: format!("cannot dispatch to agent {}: {err:#}", agent.record.name),
                    }));
                }
            }
        }
    }

    /// Puts a user plugin's component in the plugin bucket unless it is there already.
    async fn upload(&self, plugin: &RemotePlugin) -> anyhow::Result<()> {
        let known = |uploaded: &Self| {
            uploaded
                .uploaded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(&plugin.hash)
        };
        if known(self) {
            return Ok(());
        }
        let bucket = fleet::plugins_bucket(&self.jetstream).await?;
        if bucket.info(&plugin.hash).await.is_err() {
            let bytes = tokio::fs::read(&plugin.file).await.map_err(|err| {
                anyhow::anyhow!("cannot read plugin {}: {err}", plugin.file.display())
            })?;
            let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if hash != plugin.hash {
                anyhow::bail!(
                    "plugin {} changed since this run took it up; start the run again to use the new one",
                    plugin.file.display()
                );
            }
            bucket
                .put(plugin.hash.as_str(), &mut bytes.as_slice())
                .await?;
        }
        self.uploaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(plugin.hash.clone());
        Ok(())
    }

    /// Sends the call to `agent` and follows its replies to the end, or until it falls
    /// silent.
    async fn dispatch(
        &self,
        call: &RemoteCall<'_>,
        agent: &AgentRecord,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<Dispatched> {
        let secrets = call
            .scope
            .reveal_allowed()
            .map_err(|err| anyhow::anyhow!("cannot read the step's secrets: {err}"))?;
        let sealed = if secrets.is_empty() {
            None
        } else {
            Some(seal_secrets(&agent.recipient, &secrets).map_err(anyhow::Error::msg)?)
        };
        let id = ulid::Ulid::new().to_string();
        let dispatch = Dispatch {
            schema: SCHEMA,
            id: id.clone(),
            kind: call.kind.to_owned(),
            ctx: call.ctx.clone(),
            config: call.config.to_owned(),
            call: call.call.clone(),
            processes: call.processes.clone(),
            insecure_redirects: call.insecure_redirects,
            timeout_ms: u64::try_from(call.timeout.as_millis()).unwrap_or(u64::MAX),
            secrets: sealed,
            plugin: match &call.plugin {
                Some(plugin) => {
                    self.upload(plugin).await?;
                    Some(wire::PluginRef {
                        hash: plugin.hash.clone(),
                        grant: plugin.grant.clone(),
                    })
                }
                None => None,
            },
        };
        let replies = fleet::replies_stream(&self.jetstream).await?;
        fleet::dispatch_stream(&self.jetstream).await?;
        let queued = self
            .jetstream
            .publish(
                wire::dispatch_subject(&agent.name),
                serde_json::to_vec(&dispatch)?.into(),
            )
            .await?
            .await?;
        if let Some(record) = &call.on_dispatch {
            record(DispatchRecord {
                id: id.clone(),
                sequence: queued.sequence,
            })
            .await;
        }
        // Until the agent says how the call ended, leaving this function (a cancelled run, the
        // deadline, a lost agent) withdraws it.
        let mut withdraw = Withdraw {
            client: self.client.clone(),
            jetstream: self.jetstream.clone(),
            sequence: queued.sequence,
            id: id.clone(),
            armed: true,
        };
        (call.sink)(PluginEvent::Log {
            level: Level::Info,
            message: format!("dispatched to agent {}", agent.name),
        });
        let mut check = tokio::time::interval(CHECK_EVERY);
        // Heartbeats cannot arrive while the daemon itself is cut off from NATS: an agent is
        // judged only once the daemon has been connected for as long as it takes to hear one.
        let mut connected_since = Some(Instant::now());
        let judged_after = liveness(agent);
        // The replies are followed from the stream (which keeps them), from the one after
        // the last read: after a NATS restart the consumer is made again from there.
        let mut next_reply = 1;
        let mut messages = None;
        loop {
            if messages.is_none() {
                messages = match follow(&replies, &id, next_reply).await {
                    Ok(following) => Some(following),
                    Err(err) => {
                        tracing::debug!(dispatch = %id, error = %err, "following replies: trying again");
                        None
                    }
                };
            }
            let message = tokio::select! {
                message = next_message(&mut messages) => message,
                // Withdrawn (see `withdraw`): not left in the queue to run after its step
                // ended, and stopped on an agent that took it.
                () = tokio::time::sleep_until(deadline) => {
                    return Ok(Dispatched::Ended(RemoteEnd::TimedOut));
                }
                _ = check.tick() => {
                    if self.client.connection_state() != async_nats::connection::State::Connected {
                        connected_since = None;
                        messages = None;
                        continue;
                    }
                    let since = *connected_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= judged_after && !self.still_live(&agent.name) {
                        // Withdrawn: taken back from the queue, so that the agent, if it
                        // comes back, does not start a step that may run elsewhere by then.
                        // Gone already when the agent had it (and then its journal speaks).
                        return Ok(Dispatched::Lost(format!(
                            "agent {} stopped heartbeating before the step ended",
                            agent.name
                        )));
                    }
                    continue;
                }
            };
            let message = match message {
                Some(Ok(message)) => message,
                // NATS went away under the consumer: made again at the next tick.
                Some(Err(err)) => {
                    tracing::debug!(dispatch = %id, error = %err, "following replies: again");
                    messages = None;
                    continue;
                }
                None => {
                    messages = None;
                    continue;
                }
            };
            if let Ok(info) = message.info() {
                next_reply = info.stream_sequence + 1;
            }
            let reply = match wire::parse::<Reply>(&message.payload) {
                Ok(reply) if reply.agent == agent.name => reply,
                Ok(reply) => {
                    tracing::warn!(dispatch = %id, from = %reply.agent, "a reply from another agent than the step's ignored");
                    continue;
                }
                Err(why) => {
                    tracing::warn!(dispatch = %id, reason = %why, "unreadable reply ignored");
                    continue;
                }
            };
            match reply.event {
                ReplyEvent::Started => {}
                ReplyEvent::Output { lines } => {
                    for line in lines {
                        let stream = if line.stream == "stderr" {
                            StreamKind::Stderr
                        } else {
                            StreamKind::Stdout
                        };
                        (call.sink)(PluginEvent::Output {
                            stream,
                            line: call.scope.mask(&line.line),
                        });
                    }
                }
                ReplyEvent::Log { level, message } => (call.sink)(PluginEvent::Log {
                    level,
                    message: call.scope.mask(&message),
                }),
                ReplyEvent::Ended { end } => {
                    withdraw.armed = false;
                    return Ok(Dispatched::Ended(end));
                }
            }
        }
    }
}

type Replies = async_nats::jetstream::consumer::pull::Ordered;

/// An ordered consumer of dispatch `id`'s replies, from stream sequence `from` on.
async fn follow(
    replies: &async_nats::jetstream::stream::Stream,
    id: &str,
    from: u64,
) -> anyhow::Result<Replies> {
    Ok(replies
        .create_consumer(pull::OrderedConfig {
            filter_subject: wire::reply_subject(id),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await?
        .messages()
        .await?)
}

/// The next reply, or never while there is no consumer (the caller's tick makes one).
async fn next_message(
    messages: &mut Option<Replies>,
) -> Option<
    Result<async_nats::jetstream::Message, async_nats::jetstream::consumer::pull::OrderedError>,
> {
    match messages {
        Some(messages) => messages.next().await,
        None => std::future::pending().await,
    }
}

impl Dispatcher {
    /// Withdraws dispatches an interrupted attempt made (see [`Withdraw`]).
    pub fn withdraw(&self, dispatches: Vec<DispatchRecord>) {
        for dispatch in dispatches {
            tracing::info!(dispatch = %dispatch.id, "withdrawing the dispatch of an interrupted attempt");
            drop(Withdraw {
                client: self.client.clone(),
                jetstream: self.jetstream.clone(),
                sequence: dispatch.sequence,
                id: dispatch.id,
                armed: true,
            });
        }
    }
}

/// Withdraws a dispatch when dropped armed: deletes it from the queue (if no agent took it
/// yet) and tells its agent to stop it.
struct Withdraw {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    sequence: u64,
    id: String,
    armed: bool,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, jetstream, sequence) =
            (self.client.clone(), self.jetstream.clone(), self.sequence);
        let subject = wire::cancel_subject(&self.id);
        runtime.spawn(async move {
            // NATS may be away (a recovery runs before the connection is up): tried again
            // for a while. A dispatch an agent already took is gone, which is as good.
            for _ in 0..WITHDRAW_TRIES {
                if let Ok(queue) = fleet::dispatch_stream(&jetstream).await {
                    match queue.delete_message(sequence).await {
                        // Deleted, or JetStream answered that it is not there (taken).
                        Ok(_) => break,
                        Err(err)
                            if matches!(
                                err.kind(),
                                async_nats::jetstream::stream::DeleteMessageErrorKind::JetStream(_)
                            ) =>
                        {
                            break;
                        }
                        Err(_) => {}
                    }
                }
                tokio::time::sleep(RETRY_SETUP).await;
            }
            if client.publish(subject, bytes::Bytes::new()).await.is_ok() {
                let _ = client.flush().await;
            }
        });
    }
}
