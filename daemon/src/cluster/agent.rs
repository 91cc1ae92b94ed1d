//! `runbookd agent`: a daemon without runbooks or a store that runs the steps dispatched to
//! it. It registers in the heartbeat bucket (name, labels, version, its age recipient),
//! takes steps from its subject of the dispatch queue, calls their plugins in its own plugin
//! host (the same wasmtime limits, and the grant is the approved plan the dispatch carries),
//! and replies with what they print and how they ended. The daemon that dispatched a step
//! records all of it; the agent keeps nothing but its identity.
//!
//! A dispatch is acknowledged once its end is published, and kept from being delivered again
//! while it runs; an agent that dies mid-step leaves it to the daemon, which sees the
//! heartbeats stop.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use base64::Engine as _;
use futures::StreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::wire::{
    self, AgentRecord, Call, Dispatch, OutputLine, RemoteEnd, Reply, ReplyEvent, SCHEMA,
};
use super::{ClusterConfig, fleet};
use crate::plugins::{
    GivenSecrets, Grant, Outcome, PluginError, PluginEvent, PluginHost, SecretScope, StepError,
    StreamKind,
};

/// How often an agent says it is alive unless told otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);
/// Steps an agent runs at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// How long JetStream waits for a word about a dispatch before giving it to the agent again;
/// a running step's agent says "still working" well within it.
/// It is also how soon an agent restarted mid-step is given that dispatch again, to report.
const ACK_WAIT: Duration = Duration::from_secs(10);
const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// The pause before setting the consumer up again after an error.
const RETRY_SETUP: Duration = Duration::from_secs(1);
/// Output lines waiting to be published; a step that prints faster than NATS takes loses
/// lines beyond these, and says how many.
const MAX_QUEUED_EVENTS: usize = 4096;
/// How long a reply is tried again while NATS does not take it, and how often.
const REPLY_PATIENCE: Duration = Duration::from_secs(60);
const REPLY_RETRY: Duration = Duration::from_millis(250);
/// The most output one reply carries.
const MAX_BATCH_BYTES: usize = 64 << 10;

/// Who the agent is.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub name: String,
    pub labels: Vec<String>,
    pub heartbeat: Duration,
    pub concurrency: usize,
}

impl AgentOptions {
    /// Checks the name and labels: each one subject token.
    pub fn check(&self) -> anyhow::Result<()> {
        if !wire::is_agent_name(&self.name) {
            anyhow::bail!(
                "--name: `{}` is not an agent name (1 to 64 letters, digits, `-` and `_`)",
                self.name
            );
        }
        if let Some(bad) = self.labels.iter().find(|label| !wire::is_agent_name(label)) {
            anyhow::bail!(
                "--labels: `{bad}` is not a label (1 to 64 letters, digits, `-` and `_`)"
            );
        }
        if self.heartbeat.is_zero() {
            anyhow::bail!("--heartbeat: must be longer than 0s");
        }
        if self.concurrency == 0 {
            anyhow::bail!("--concurrency: must be at least 1");
        }
        Ok(())
    }
}

struct Agent {
    options: AgentOptions,
    /// One empty file per dispatch being run, named by its id: what a restarted agent
    /// finds there was interrupted, and is reported instead of started again.
    journal: std::path::PathBuf,
    /// User plugins fetched from the plugin bucket, as `<hash>.wasm`.
    plugin_cache: std::path::PathBuf,
    /// One plugin fetched and loaded at a time.
    loading: tokio::sync::Mutex<()>,
    identity: age::x25519::Identity,
    plugins: PluginHost,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    running: AtomicU32,
    started_at: i64,
}

/// Runs the agent until `stopping`.
pub async fn run(
    config: ClusterConfig,
    options: AgentOptions,
    data_dir: &Path,
    plugins: PluginHost,
    stopping: CancellationToken,
) -> anyhow::Result<()> {
    options.check()?;
    let identity = load_identity(&data_dir.join("agent-identity.txt"))?;
    let journal = data_dir.join("agent-running");
    std::fs::create_dir_all(&journal)
        .with_context(|| format!("cannot create {}", journal.display()))?;
    let client = super::connect(&config, &format!("runbookd-agent/{}", options.name)).await?;
    let plugin_cache = data_dir.join("agent-plugins");
    std::fs::create_dir_all(&plugin_cache)
        .with_context(|| format!("cannot create {}", plugin_cache.display()))?;
    let agent = Arc::new(Agent {
        journal,
        plugin_cache,
        loading: tokio::sync::Mutex::new(()),
        identity,
        plugins,
        jetstream: jetstream::new(client.clone()),
        client,
        running: AtomicU32::new(0),
        started_at: crate::store::now_ms(),
        options,
    });
    tracing::info!(name = %agent.options.name, labels = ?agent.options.labels, "runbookd agent started");
    tokio::spawn(Arc::clone(&agent).heartbeat(stopping.clone()));
    loop {
        let result = tokio::select! {
            result = Arc::clone(&agent).consume() => result,
            () = stopping.cancelled() => break,
        };
        if let Err(err) = result {
            tracing::warn!(error = %format!("{err:#}"), "dispatch queue: setting up again");
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_SETUP) => {}
            () = stopping.cancelled() => break,
        }
    }
    // Gone at once from the daemon's view, rather than after missed heartbeats.
    if let Ok(bucket) = fleet::agents_bucket(&agent.jetstream).await {
        let _ = bucket.delete(&agent.options.name).await;
    }
    Ok(())
}

impl Agent {
    /// Writes the agent's entry every heartbeat until `stopping`.
    async fn heartbeat(self: Arc<Self>, stopping: CancellationToken) {
        let mut bucket = None;
        let mut every = tokio::time::interval(self.options.heartbeat);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = stopping.cancelled() => return,
            }
            if bucket.is_none() {
                match fleet::agents_bucket(&self.jetstream).await {
                    Ok(made) => bucket = Some(made),
                    Err(err) => {
                        tracing::warn!(error = %format!("{err:#}"), "heartbeat bucket not reachable");
                        continue;
                    }
                }
            }
            let record = AgentRecord {
                schema: SCHEMA,
                name: self.options.name.clone(),
                labels: self.options.labels.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                recipient: self.identity.to_public().to_string(),
                started_at: self.started_at,
                heartbeat_ms: u64::try_from(self.options.heartbeat.as_millis()).unwrap_or(u64::MAX),
                running: self.running.load(Ordering::Relaxed),
            };
            let value = serde_json::to_vec(&record).unwrap_or_default();
            if let Some(store) = &bucket
                && let Err(err) = store.put(&self.options.name, value.into()).await
            {
                tracing::warn!(error = %err, "heartbeat not written");
            }
        }
    }

    /// Takes dispatches from the agent's subject, at most `concurrency` at once.
    async fn consume(self: Arc<Self>) -> anyhow::Result<()> {
        let stream = fleet::dispatch_stream(&self.jetstream).await?;
        fleet::replies_stream(&self.jetstream).await?;
        let durable = format!("agent-{}", self.options.name);
        let consumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: wire::dispatch_subject(&self.options.name),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: i64::try_from(self.options.concurrency).unwrap_or(1),
                    ..Default::default()
                },
            )
            .await?;
        let slots = Arc::new(tokio::sync::Semaphore::new(self.options.concurrency));
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            let slot = Arc::clone(&slots).acquire_owned().await?;
            let agent = Arc::clone(&self);
            tokio::spawn(async move {
                agent.handle(message).await;
                drop(slot);
            });
        }
        Ok(())
    }

    /// Runs one dispatch and replies; acknowledges it once its end is published.
    async fn handle(&self, message: jetstream::Message) {
        let dispatch = match wire::parse::<Dispatch>(&message.payload) {
            Ok(dispatch) => dispatch,
            Err(why) => {
                tracing::warn!(reason = %why, "unreadable dispatch dropped");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
        };
        let replies = Replies {
            jetstream: self.jetstream.clone(),
            subject: wire::reply_subject(&dispatch.id),
            agent: self.options.name.clone(),
        };
        // Ids are ULIDs: letters and digits, never a path.
        if !wire::is_agent_name(&dispatch.id) {
            tracing::warn!(id = %dispatch.id, "dispatch with an invalid id dropped");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
        let entry = self.journal.join(&dispatch.id);
        if entry.exists() {
            tracing::warn!(run = %dispatch.ctx.run_id, step = %dispatch.ctx.step_id, "a step interrupted by a restart is reported, not started again");
            replies
                .send(ReplyEvent::Ended {
                    end: RemoteEnd::Interrupted,
                })
                .await;
            if message.double_ack().await.is_ok() {
                let _ = std::fs::remove_file(&entry);
            }
            return;
        }
        // An fsync: off the async workers.
        let recorded = {
            let entry = entry.clone();
            tokio::task::spawn_blocking(move || write_synced(&entry))
                .await
                .unwrap_or_else(|err| Err(std::io::Error::other(err)))
        };
        if let Err(err) = recorded {
            // Without its entry a restart could run the step twice: better not at all.
            replies
                .send(ReplyEvent::Ended {
                    end: RemoteEnd::Crashed {
                        message: format!("the agent cannot record the step it starts: {err}"),
                    },
                })
                .await;
            let _ = message.double_ack().await;
            return;
        }
        self.running.fetch_add(1, Ordering::Relaxed);
        tracing::info!(run = %dispatch.ctx.run_id, step = %dispatch.ctx.step_id, kind = %dispatch.kind, "step started");
        replies.send(ReplyEvent::Started).await;
        // Listening before the call starts, so that a cancel sent as it starts is heard.
        let mut cancels = self
            .client
            .subscribe(wire::cancel_subject(&dispatch.id))
            .await
            .ok();
        let call = self.call(&dispatch, &replies);
        tokio::pin!(call);
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        progress.tick().await;
        let end = loop {
            tokio::select! {
                end = &mut call => break end,
                _ = progress.tick() => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
                // Dropping the call stops it: its processes are killed with it.
                Some(_) = next_cancel(&mut cancels) => {
                    tracing::info!(run = %dispatch.ctx.run_id, step = %dispatch.ctx.step_id, "step cancelled by the daemon");
                    break RemoteEnd::Cancelled;
                }
            }
        };
        drop(cancels);
        replies.send(ReplyEvent::Ended { end }).await;
        match message.double_ack().await {
            Ok(()) => {
                let _ = std::fs::remove_file(&entry);
            }
            Err(err) => {
                tracing::warn!(error = %err, "dispatch acknowledgement not confirmed");
            }
        }
        self.running.fetch_sub(1, Ordering::Relaxed);
    }

    /// Makes sure the user plugin a dispatch names is the one loaded for its kind, fetching
    /// its component from the plugin bucket (by hash, checked) when it is not cached, and
    /// gives it the grant the daemon's operator gave it.
    async fn ensure_plugin(&self, kind: &str, plugin: &wire::PluginRef) -> Result<(), String> {
        use sha2::Digest as _;
        use tokio::io::AsyncReadExt as _;
        let _one_at_a_time = self.loading.lock().await;
        self.plugins.grants().set_stored(kind, plugin.grant.clone());
        if self.plugins.hash_of(kind).as_deref() == Some(plugin.hash.as_str()) {
            return Ok(());
        }
        let hash = &plugin.hash;
        if hash.len() != 64 || !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(format!("`{hash}` is not a component hash"));
        }
        let sha256 = |bytes: &[u8]| hex::encode(sha2::Sha256::digest(bytes));
        let path = self.plugin_cache.join(format!("{hash}.wasm"));
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) if sha256(&bytes) == *hash => bytes,
            _ => {
                let bucket = fleet::plugins_bucket(&self.jetstream)
                    .await
                    .map_err(|err| format!("the plugin bucket is not reachable: {err:#}"))?;
                let object = bucket
                    .get(hash)
                    .await
                    .map_err(|err| format!("plugin {hash} is not in the plugin bucket: {err}"))?;
                let mut bytes = Vec::new();
                object
                    .take(u64::try_from(wire::MAX_PLUGIN_BYTES).unwrap_or(u64::MAX) + 1)
                    .read_to_end(&mut bytes)
                    .await
                    .map_err(|err| format!("cannot fetch plugin {hash}: {err}"))?;
                if bytes.len() > wire::MAX_PLUGIN_BYTES {
                    return Err(format!(
                        "plugin {hash} is larger than the {} MiB an agent fetches",
                        wire::MAX_PLUGIN_BYTES >> 20
                    ));
                }
                if sha256(&bytes) != *hash {
                    return Err(format!(
                        "the plugin bucket's {hash} does not have that hash"
                    ));
                }
                tokio::fs::write(&path, &bytes)
                    .await
                    .map_err(|err| format!("cannot cache plugin {hash}: {err}"))?;
                bytes
            }
        };
        let loaded = self
            .plugins
            .load(&bytes, crate::plugins::Origin::File(path))
            .await
            .map_err(|err| format!("plugin {hash} does not load here: {err:#}"))?;
        if loaded != kind {
            return Err(format!("plugin {hash} provides `{loaded}`, not `{kind}`"));
        }
        Ok(())
    }

    /// Calls the step's plugin under the dispatch's grant, forwarding what it prints.
    async fn call(&self, dispatch: &Dispatch, replies: &Replies) -> RemoteEnd {
        if let Some(plugin) = &dispatch.plugin
            && let Err(message) = self.ensure_plugin(&dispatch.kind, plugin).await
        {
            return RemoteEnd::Crashed { message };
        }
        let given = match &dispatch.secrets {
            Some(sealed) => match open_secrets(&self.identity, sealed) {
                Ok(given) => given,
                Err(why) => {
                    return RemoteEnd::Crashed {
                        message: format!("cannot read the step's secrets: {why}"),
                    };
                }
            },
            None => Vec::new(),
        };
        let allowed: BTreeSet<String> = given.iter().map(|(name, _, _)| name.clone()).collect();
        let scope = SecretScope::new(Some(Arc::new(GivenSecrets(given))), allowed);
        let (events, queued) = mpsc::channel(MAX_QUEUED_EVENTS);
        let lost = Arc::new(AtomicU32::new(0));
        let sink = {
            let lost = Arc::clone(&lost);
            Arc::new(move |event: PluginEvent| {
                if events.try_send(event).is_err() {
                    lost.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let forwarder = tokio::spawn(forward(queued, replies.clone(), scope.clone()));
        let timeout = Duration::from_millis(dispatch.timeout_ms);
        let grant = Grant {
            processes: dispatch.processes.clone(),
            sql: Vec::new(),
            sink,
            network: true,
            insecure_redirects: dispatch.insecure_redirects,
            on_spawn: None,
            deadline: Some(tokio::time::Instant::now() + timeout),
            secrets: scope.clone(),
        };
        let (kind, ctx, config) = (&dispatch.kind, dispatch.ctx.clone(), &dispatch.config);
        let result = match &dispatch.call {
            Call::Execute { inputs } => {
                self.plugins
                    .execute(kind, ctx, config, inputs, grant, timeout)
                    .await
            }
            Call::Resume { token } => {
                self.plugins
                    .resume(kind, ctx, config, token, grant, timeout)
                    .await
            }
        };
        // The grant, and with it the last sender, is gone: the forwarder ends once it has
        // published what was queued.
        let _ = forwarder.await;
        let lost = lost.load(Ordering::Relaxed);
        if lost > 0 {
            replies
                .send(ReplyEvent::Log {
                    level: crate::plugins::Level::Warn,
                    message: format!("{lost} output lines were dropped on the agent (printed faster than NATS took them)"),
                })
                .await;
        }
        match result {
            Ok(answer) => RemoteEnd::Answered {
                result: masked(answer, &scope),
            },
            Err(PluginError::Timeout { .. }) => RemoteEnd::TimedOut,
            Err(err) => RemoteEnd::Crashed {
                message: scope.mask(&err.to_string()),
            },
        }
    }
}

/// The next cancel of a dispatch; never when there is no subscription.
async fn next_cancel(cancels: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match cancels {
        Some(cancels) => cancels.next().await,
        None => std::future::pending().await,
    }
}

/// A plugin's answer with the secrets it was given masked: none travels back in clear.
fn masked(answer: Result<Outcome, StepError>, scope: &SecretScope) -> Result<Outcome, StepError> {
    match answer {
        Ok(Outcome::Done(output)) => Ok(Outcome::Done(scope.mask(&output))),
        Ok(waiting) => Ok(waiting),
        Err(err) => Err(StepError {
            message: scope.mask(&err.message),
            output: err.output.map(|output| scope.mask(&output)),
            ..err
        }),
    }
}

/// Publishes a call's events in order, output lines batched.
async fn forward(mut queued: mpsc::Receiver<PluginEvent>, replies: Replies, scope: SecretScope) {
    while let Some(first) = queued.recv().await {
        let mut next = Some(first);
        let mut lines = Vec::new();
        let mut bytes = 0;
        while let Some(event) = next.take() {
            match event {
                PluginEvent::Output { stream, line } => {
                    bytes += line.len();
                    lines.push(OutputLine {
                        stream: match stream {
                            StreamKind::Stdout => "stdout",
                            StreamKind::Stderr => "stderr",
                        }
                        .into(),
                        line: scope.mask(&line),
                    });
                }
                PluginEvent::Log { level, message } => {
                    flush_lines(&replies, &mut lines).await;
                    replies
                        .send(ReplyEvent::Log {
                            level,
                            message: scope.mask(&message),
                        })
                        .await;
                }
            }
            if bytes < MAX_BATCH_BYTES {
                next = queued.try_recv().ok();
            }
        }
        flush_lines(&replies, &mut lines).await;
    }
}

async fn flush_lines(replies: &Replies, lines: &mut Vec<OutputLine>) {
    if !lines.is_empty() {
        let lines = std::mem::take(lines);
        replies.send(ReplyEvent::Output { lines }).await;
    }
}

/// Where the replies to one dispatch go.
#[derive(Clone)]
struct Replies {
    jetstream: jetstream::Context,
    subject: String,
    agent: String,
}

impl Replies {
    /// Publishes one reply and waits for JetStream to have it, trying again while NATS is
    /// away (a restart, say) for up to [`REPLY_PATIENCE`]; then it is logged and dropped
    /// (the daemon sees the step's agent fall silent).
    async fn send(&self, event: ReplyEvent) {
        let reply = Reply {
            schema: SCHEMA,
            agent: self.agent.clone(),
            event,
        };
        let payload = bytes::Bytes::from(serde_json::to_vec(&reply).unwrap_or_default());
        let started = tokio::time::Instant::now();
        loop {
            let published = match self
                .jetstream
                .publish(self.subject.clone(), payload.clone())
                .await
            {
                Ok(ack) => ack.await.map(|_| ()).map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            };
            match published {
                Ok(()) => return,
                Err(err) if started.elapsed() >= REPLY_PATIENCE => {
                    tracing::warn!(subject = %self.subject, error = %err, "reply not published");
                    return;
                }
                Err(_) => tokio::time::sleep(REPLY_RETRY).await,
            }
        }
    }
}

/// Creates the empty file `path` and makes it durable with its directory entry.
fn write_synced(path: &Path) -> std::io::Result<()> {
    std::fs::File::create(path)?.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The agent's age identity, made on first start in a file only its owner may read.
fn load_identity(path: &Path) -> anyhow::Result<age::x25519::Identity> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    use std::str::FromStr as _;
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.mode() & 0o777;
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "the agent's identity {shown} may be read by others (mode {mode:o}); `chmod 600` it"
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the agent's identity {shown}"))?;
            age::x25519::Identity::from_str(text.trim()).map_err(|err| {
                anyhow::anyhow!("the agent's identity {shown} is not an age identity: {err}")
            })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let identity = age::x25519::Identity::generate();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create the agent's identity {shown}"))?;
            writeln!(file, "{}", identity.to_string().expose_secret())
                .with_context(|| format!("cannot write the agent's identity {shown}"))?;
            Ok(identity)
        }
        Err(err) => Err(anyhow::anyhow!(
            "cannot read the agent's identity {shown}: {err}"
        )),
    }
}

/// What [`seal_secrets`] sealed, decrypted: (name, placeholder, value).
fn open_secrets(
    identity: &age::x25519::Identity,
    sealed: &str,
) -> Result<Vec<(String, String, SecretString)>, String> {
    let ciphertext = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .map_err(|err| format!("not base64: {err}"))?;
    let plaintext = age::decrypt(identity, &ciphertext).map_err(|err| err.to_string())?;
    let map: std::collections::BTreeMap<String, SealedSecret> =
        serde_json::from_slice(&plaintext).map_err(|err| err.to_string())?;
    Ok(map
        .into_iter()
        .map(|(name, secret)| (name, secret.placeholder, SecretString::from(secret.value)))
        .collect())
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedSecret {
    placeholder: String,
    value: String,
}

/// The secrets of a step, encrypted to an agent's age `recipient`, base64: only that agent
/// can read them, and NATS never holds them in clear.
pub(crate) fn seal_secrets(
    recipient: &str,
    secrets: &[(String, String, SecretString)],
) -> Result<String, String> {
    use std::str::FromStr as _;
    let recipient = age::x25519::Recipient::from_str(recipient)
        .map_err(|err| format!("the agent's recipient is not an age recipient: {err}"))?;
    let map: std::collections::BTreeMap<&str, SealedSecret> = secrets
        .iter()
        .map(|(name, placeholder, value)| {
            (
                name.as_str(),
                SealedSecret {
                    placeholder: placeholder.clone(),
                    value: value.expose_secret().to_owned(),
                },
            )
        })
        .collect();
    let plaintext = serde_json::to_vec(&map).map_err(|err| err.to_string())?;
    let ciphertext = age::encrypt(&recipient, &plaintext).map_err(|err| err.to_string())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(ciphertext))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_sealed_to_an_agent_open_only_with_its_identity() {
        let agent = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let secrets = vec![(
            "token".to_owned(),
            "__rb_secret.x.token__".to_owned(),
            SecretString::from("s3cret"),
        )];
        let sealed = seal_secrets(&agent.to_public().to_string(), &secrets).unwrap();
        assert!(!sealed.contains("s3cret"));
        let opened = open_secrets(&agent, &sealed).unwrap();
        assert_eq!(opened[0].0, "token");
        assert_eq!(opened[0].1, "__rb_secret.x.token__");
        assert_eq!(opened[0].2.expose_secret(), "s3cret");
        assert!(open_secrets(&other, &sealed).is_err());
    }

    #[test]
    fn a_bad_name_or_label_is_refused() {
        let mut options = AgentOptions {
            name: "db-1".into(),
            labels: vec!["db".into()],
            heartbeat: DEFAULT_HEARTBEAT,
            concurrency: 1,
        };
        assert!(options.check().is_ok());
        options.labels.push("a.b".into());
        assert!(options.check().unwrap_err().to_string().contains("`a.b`"));
        options.labels.pop();
        options.name = "x y".into();
        assert!(options.check().unwrap_err().to_string().contains("--name"));
    }
}
