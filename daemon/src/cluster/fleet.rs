//! The JetStream objects the daemon and its agents share, made the same way by whichever
//! side comes first: the agents' heartbeat bucket, the work queue of dispatched steps, and
//! the stream of replies. Each has its limits here, so that NATS bounds what it keeps.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};

use super::wire::{
    AGENTS_BUCKET, DISPATCH_STREAM, MAX_MESSAGE_BYTES, PLUGINS_BUCKET, REPLIES_STREAM,
};

/// How long an agent's entry stays in the bucket after its last heartbeat: long enough to
/// list a dead agent as such, short enough that the bucket forgets agents long gone.
const AGENT_ENTRY_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a dispatched step waits in the queue for its agent, and a reply for its daemon.
const MESSAGE_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The most the replies stream keeps; the oldest go first.
const REPLIES_BYTES: i64 = 1 << 30;
/// The most the dispatch queue keeps; a full queue refuses a dispatch, which fails its step.
const DISPATCH_BYTES: i64 = 256 << 20;

/// The most the plugin bucket keeps; an upload that would go beyond is refused, which fails
/// its step.
const PLUGINS_BYTES: i64 = 1 << 30;

/// The object store of user plugins' components, by SHA-256.
pub async fn plugins_bucket(
    jetstream: &jetstream::Context,
) -> anyhow::Result<object_store::ObjectStore> {
    if let Ok(bucket) = jetstream.get_object_store(PLUGINS_BUCKET).await {
        return Ok(bucket);
    }
    Ok(jetstream
        .create_object_store(object_store::Config {
            bucket: PLUGINS_BUCKET.into(),
            max_bytes: PLUGINS_BYTES,
            ..Default::default()
        })
        .await?)
}

/// The heartbeat bucket.
pub async fn agents_bucket(jetstream: &jetstream::Context) -> anyhow::Result<kv::Store> {
    // The bucket's stream is made here as the key-value convention lays it out (ADR-8: the
    // same config `create_key_value` sends) rather than by `create_key_value`, which first
    // asks for the account's info in a shape nats-server 2.9 (Debian's) does not give.
    jetstream
        .get_or_create_stream(stream::Config {
            name: format!("KV_{AGENTS_BUCKET}"),
            subjects: vec![format!("$KV.{AGENTS_BUCKET}.>")],
            max_messages_per_subject: 1,
            max_age: AGENT_ENTRY_AGE,
            max_message_size: i32::try_from(MAX_MESSAGE_BYTES).unwrap_or(i32::MAX),
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: 1,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await?;
    Ok(jetstream.get_key_value(AGENTS_BUCKET).await?)
}

/// The work queue of dispatched steps: a message stays until its agent acknowledges it.
pub async fn dispatch_stream(jetstream: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    Ok(jetstream
        .get_or_create_stream(stream::Config {
            name: DISPATCH_STREAM.into(),
            subjects: vec!["runbook.dispatch.*".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_age: MESSAGE_AGE,
            max_bytes: DISPATCH_BYTES,
            max_message_size: i32::try_from(MAX_MESSAGE_BYTES).unwrap_or(i32::MAX),
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await?)
}

/// The agents' replies, kept on disk so that a NATS restart loses none.
pub async fn replies_stream(jetstream: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    Ok(jetstream
        .get_or_create_stream(stream::Config {
            name: REPLIES_STREAM.into(),
            subjects: vec!["runbook.reply.*".into()],
            max_age: MESSAGE_AGE,
            max_bytes: REPLIES_BYTES,
            max_message_size: i32::try_from(MAX_MESSAGE_BYTES).unwrap_or(i32::MAX),
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await?)
}
