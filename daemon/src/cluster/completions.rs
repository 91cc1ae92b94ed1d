//! Queue-driven async completion: one durable JetStream consumer (`runbookd-completions`)
//! on the completions stream. A message names an invocation and how it ended; the step that
//! waits for that invocation on this stream (`wait = { queue = ... }`) ends with it, and the
//! message is acknowledged only once that is on disk, so a crash in between has JetStream
//! deliver it again. A message for an invocation no step waits for yet (the far end answered
//! before the step recorded its wait, or its run is still starting) is handed back to be
//! delivered again a second later, for `hold_unknown` after it was published; then it is
//! dropped and said in the log. Messages published while the daemon was down wait in the
//! stream.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt as _;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{ClusterConfig, Counts};
use crate::engine::{Completion, Engine, EngineError};

/// The largest completion message read; a larger one is dropped (NATS's own default payload
/// limit is 1 MiB as well).
pub const MAX_COMPLETION_BYTES: usize = 1 << 20;
/// The consumer's durable name: every daemon sharing a stream shares the work.
const DURABLE: &str = "runbookd-completions";
/// How long JetStream waits for an acknowledgement before delivering a message again.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// When a message for an unknown invocation comes again.
const RETRY_UNKNOWN: Duration = Duration::from_secs(1);
/// The pause before setting the stream and consumer up again after an error.
const RETRY_SETUP: Duration = Duration::from_secs(1);

/// A completion message, as JSON: `{"invocation_id": "...", "status": "completed" |
/// "failed", "output": ..., "error": "..."}`. Unknown fields are refused, so that a misspelt
/// one is said instead of ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionMessage {
    pub invocation_id: String,
    pub status: CompletionStatus,
    /// The step's output when it completed (any JSON value).
    #[serde(default)]
    pub output: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompletionStatus {
    Completed,
    Failed,
}

impl CompletionMessage {
    /// Reads one message's payload, within [`MAX_COMPLETION_BYTES`].
    pub fn parse(payload: &[u8]) -> Result<Self, String> {
        if payload.len() > MAX_COMPLETION_BYTES {
            return Err(format!(
                "{} bytes, more than the {MAX_COMPLETION_BYTES} a completion may have",
                payload.len()
            ));
        }
        let message: Self = serde_json::from_slice(payload).map_err(|err| err.to_string())?;
        if message.invocation_id.is_empty() {
            return Err("`invocation_id` is empty".into());
        }
        Ok(message)
    }

    fn completion(self) -> Completion {
        match self.status {
            CompletionStatus::Completed => Completion::Completed(self.output),
            CompletionStatus::Failed => {
                Completion::Failed(self.error.unwrap_or_else(|| {
                    "the invocation failed (its completion gave no error)".into()
                }))
            }
        }
    }
}

/// What became of one message.
enum Handled {
    /// Its step ended with it (or had already ended): acknowledge it.
    Done,
    /// No step waits for it yet: deliver it again later.
    Later,
    /// It can never end a step: drop it.
    Dropped(String),
}

pub(super) struct Consumer {
    pub(super) jetstream: jetstream::Context,
    pub(super) config: Arc<ClusterConfig>,
    pub(super) counts: Arc<Counts>,
    pub(super) engine: Engine,
}

impl Consumer {
    /// Consumes until `stopping`, setting the stream and consumer up again after any error
    /// (NATS away, the stream deleted under it).
    pub(super) async fn run(self, stopping: CancellationToken) {
        loop {
            let result = tokio::select! {
                result = self.consume() => result,
                () = stopping.cancelled() => return,
            };
            if let Err(err) = result {
                tracing::warn!(stream = %self.config.completions_stream, error = %err, "completion queue: setting up again");
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY_SETUP) => {}
                () = stopping.cancelled() => return,
            }
        }
    }

    async fn consume(&self) -> anyhow::Result<()> {
        let name = &self.config.completions_stream;
        // An operator's own stream is used as it is; a missing one is made, with the
        // stream's name as its subject.
        let stream = self
            .jetstream
            .get_or_create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![name.clone()],
                ..Default::default()
            })
            .await?;
        let consumer = stream
            .get_or_create_consumer(
                DURABLE,
                pull::Config {
                    durable_name: Some(DURABLE.into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await?;
        tracing::info!(stream = %name, "completion queue: consuming");
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            let published = message
                .info()
                .ok()
                .map(|info| info.published.unix_timestamp());
            let ack = match self.handle(&message.payload, published).await {
                Handled::Done => {
                    self.counts.completed.fetch_add(1, Ordering::Relaxed);
                    message.double_ack().await
                }
                Handled::Later => message.ack_with(AckKind::Nak(Some(RETRY_UNKNOWN))).await,
                Handled::Dropped(why) => {
                    self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(stream = %name, reason = %why, "completion queue: message dropped");
                    message.ack_with(AckKind::Term).await
                }
            };
            // An acknowledgement lost with the connection only means a second delivery,
            // which finds the step already ended.
            if let Err(err) = ack {
                tracing::warn!(stream = %name, error = %err, "completion queue: acknowledgement not sent");
            }
        }
        Ok(())
    }

    async fn handle(&self, payload: &[u8], published: Option<i64>) -> Handled {
        let message = match CompletionMessage::parse(payload) {
            Ok(message) => message,
            Err(why) => return Handled::Dropped(format!("unreadable completion: {why}")),
        };
        let stream = &self.config.completions_stream;
        let invocation = message.invocation_id.clone();
        let Some(run_id) = self.engine.run_waiting_on(stream, &invocation) else {
            // Seconds since it was published, by JetStream's clock against ours.
            let now = crate::store::now_ms() / 1000;
            let age = published
                .map(|at| Duration::from_secs(u64::try_from(now - at).unwrap_or(0)))
                .unwrap_or_default();
            if age < self.config.hold_unknown {
                return Handled::Later;
            }
            return Handled::Dropped(format!(
                "no step waited for invocation {invocation} within {} of its completion",
                humantime::format_duration(self.config.hold_unknown)
            ));
        };
        let by = format!("queue {stream}");
        match self
            .engine
            .complete_step(&run_id, &invocation, message.completion(), &by)
            .await
        {
            Ok(_) => {
                tracing::info!(run = %run_id, invocation = %invocation, %stream, "step completed by its completion message");
                Handled::Done
            }
            // Ended meanwhile (timed out, cancelled, completed by hand): nothing to do.
            Err(EngineError::WrongState(why)) => {
                tracing::info!(run = %run_id, invocation = %invocation, reason = %why, "completion for a step that no longer waits");
                Handled::Done
            }
            // Not durable (the store refuses writes): JetStream keeps it for later.
            Err(err) => {
                tracing::warn!(run = %run_id, invocation = %invocation, error = %err, "completion not recorded; it comes again");
                Handled::Later
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_is_read_strictly_and_within_its_bound() {
        let message = CompletionMessage::parse(
            br#"{"invocation_id":"inv-1","status":"completed","output":{"rows":3}}"#,
        )
        .unwrap();
        assert_eq!(message.invocation_id, "inv-1");
        assert_eq!(message.status, CompletionStatus::Completed);
        assert!(matches!(
            message.completion(),
            Completion::Completed(Some(output)) if output["rows"] == 3
        ));
        let failed =
            CompletionMessage::parse(br#"{"invocation_id":"inv-2","status":"failed"}"#).unwrap();
        assert!(matches!(failed.completion(), Completion::Failed(why) if why.contains("no error")));
        for bad in [
            &br#"{"invocation_id":"inv","status":"done"}"#[..],
            br#"{"invocation_id":"","status":"completed"}"#,
            br#"{"invocation":"inv","status":"completed"}"#,
            br#"not json"#,
        ] {
            assert!(
                CompletionMessage::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = format!(
            r#"{{"invocation_id":"inv","status":"completed","output":"{}"}}"#,
            "x".repeat(MAX_COMPLETION_BYTES)
        );
        assert!(
            CompletionMessage::parse(huge.as_bytes())
                .unwrap_err()
                .contains("more than")
        );
    }
}
