//! What the daemon and its agents say to each other over JetStream, version 1: the agent's
//! registry entry, the step dispatched to it, and its replies. Everything is JSON; every
//! message carries `schema`, and a reader refuses a schema it does not know, and unknown
//! fields, rather than guess. The names of the streams, subjects and bucket live here too.
//!
//! - An agent's entry in the key-value bucket [`AGENTS_BUCKET`], under its name, written
//!   again every heartbeat: [`AgentRecord`].
//! - A step for an agent on the work-queue stream [`DISPATCH_STREAM`], subject
//!   `runbook.dispatch.<agent>`: [`Dispatch`].
//! - The agent's replies on the stream [`REPLIES_STREAM`], subject `runbook.reply.<dispatch
//!   id>`, in order: `started`, any number of `output` and `log`, then one `ended`: [`Reply`].

use serde::{Deserialize, Serialize};

use crate::plugins::{Level, Outcome, PluginGrant, ProcessSpec, StepContext, StepError};

/// The version of every message here.
pub const SCHEMA: u32 = 1;
/// The key-value bucket of agents' heartbeats.
pub const AGENTS_BUCKET: &str = "RUNBOOK_AGENTS";
/// The work-queue stream of dispatched steps.
pub const DISPATCH_STREAM: &str = "RUNBOOK_DISPATCH";
/// The stream of agents' replies.
pub const REPLIES_STREAM: &str = "RUNBOOK_REPLIES";
/// The object store of user plugins' components, each under its SHA-256 (hex).
pub const PLUGINS_BUCKET: &str = "RUNBOOK_PLUGINS";
/// The largest component an agent fetches.
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;
/// The largest message either side reads; a larger one is refused (NATS's own default
/// payload limit is 1 MiB as well).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// The longest agent name; names are one subject token.
const MAX_NAME: usize = 64;

/// The subject that carries steps for `agent`.
pub fn dispatch_subject(agent: &str) -> String {
    format!("runbook.dispatch.{agent}")
}

/// The subject of the replies to dispatch `id`.
pub fn reply_subject(id: &str) -> String {
    format!("runbook.reply.{id}")
}

/// The subject on which the daemon tells an agent to stop dispatch `id` (its run was
/// cancelled, or its deadline passed): core NATS, so only an agent connected then hears it.
pub fn cancel_subject(id: &str) -> String {
    format!("runbook.cancel.{id}")
}

/// Whether `name` may name an agent, or be one of its labels: 1 to 64 ASCII letters,
/// digits, `-` and `_` (one NATS subject token, and a key of the bucket).
pub fn is_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// An agent as it registers itself, every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRecord {
    pub schema: u32,
    pub name: String,
    pub labels: Vec<String>,
    /// The agent's `runbookd` version.
    pub version: String,
    /// The age recipient (`age1…`) the secrets of its steps are encrypted to.
    pub recipient: String,
    /// When it started, in ms since the epoch (its own clock).
    pub started_at: i64,
    /// The heartbeat interval it keeps, in ms: it counts as gone after missing several.
    pub heartbeat_ms: u64,
    /// The steps it is running now.
    pub running: u32,
}

/// One step call for an agent: the rendered, approved step, and nothing it may not use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    pub schema: u32,
    /// Unique per dispatch; the replies' subject is made of it.
    pub id: String,
    pub kind: String,
    pub ctx: StepContext,
    /// The step's `with`, rendered; secrets are placeholders.
    pub config: String,
    pub call: Call,
    /// Exactly the processes the approved plan named.
    pub processes: Vec<ProcessSpec>,
    pub insecure_redirects: bool,
    /// How long the call may take, in ms, from when the agent receives it.
    pub timeout_ms: u64,
    /// The secrets the step's templates name, as an age file encrypted to the agent's
    /// recipient, base64: `{"NAME": {"placeholder": "...", "value": "..."}}`.
    pub secrets: Option<String>,
    /// For a user plugin (not built in): its component, by hash in [`PLUGINS_BUCKET`], and
    /// what the daemon's operator granted it.
    pub plugin: Option<PluginRef>,
}

/// A user plugin's component, and its grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// SHA-256 of the component, hex.
    pub hash: String,
    pub grant: PluginGrant,
}

/// Which plugin function the agent calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Call {
    Execute { inputs: String },
    Resume { token: String },
}

/// One reply of an agent about a dispatch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub schema: u32,
    /// The agent that sends it.
    pub agent: String,
    pub event: ReplyEvent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReplyEvent {
    /// The agent took the step and calls its plugin.
    Started,
    /// Lines the step printed, in order.
    Output { lines: Vec<OutputLine> },
    /// A message of the plugin's for the operator.
    Log { level: Level, message: String },
    /// How the call ended; the last reply.
    Ended { end: RemoteEnd },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
}

/// How a remote plugin call ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RemoteEnd {
    /// The plugin answered.
    Answered { result: Result<Outcome, StepError> },
    /// The call did not return within its time.
    TimedOut,
    /// The plugin trapped, hit a limit, or the agent could not call it (an unknown kind).
    Crashed { message: String },
    /// The agent was restarted while it ran the step: whether it ran is unknown, and the
    /// agent does not start it again.
    Interrupted,
    /// The daemon withdrew the call (its run was cancelled) and the agent stopped it.
    Cancelled,
}

/// Reads one message of type `T`: within [`MAX_MESSAGE_BYTES`], of [`SCHEMA`].
pub fn parse<T: serde::de::DeserializeOwned + HasSchema>(payload: &[u8]) -> Result<T, String> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "{} bytes, more than the {MAX_MESSAGE_BYTES} a message may have",
            payload.len()
        ));
    }
    let message: T = serde_json::from_slice(payload).map_err(|err| err.to_string())?;
    match message.schema() {
        SCHEMA => Ok(message),
        other => Err(format!(
            "schema {other}, where this runbookd speaks schema {SCHEMA}"
        )),
    }
}

/// The messages that say their schema.
pub trait HasSchema {
    fn schema(&self) -> u32;
}

impl HasSchema for AgentRecord {
    fn schema(&self) -> u32 {
        self.schema
    }
}

impl HasSchema for Dispatch {
    fn schema(&self) -> u32 {
        self.schema
    }
}

impl HasSchema for Reply {
    fn schema(&self) -> u32 {
        self.schema
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_are_one_subject_token() {
        for good in ["db-1", "bastion_eu", "A", &"x".repeat(64)] {
            assert!(is_agent_name(good), "{good}");
        }
        for bad in ["", "a.b", "a b", "a*", "a>", "é", &"x".repeat(65)] {
            assert!(!is_agent_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_message_of_another_schema_or_with_unknown_fields_is_refused() {
        let record = AgentRecord {
            schema: SCHEMA,
            name: "a".into(),
            labels: vec!["db".into()],
            version: "1".into(),
            recipient: "age1x".into(),
            started_at: 1,
            heartbeat_ms: 1000,
            running: 0,
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(parse::<AgentRecord>(text.as_bytes()).unwrap(), record);
        let newer = text.replace("\"schema\":1", "\"schema\":2");
        assert!(
            parse::<AgentRecord>(newer.as_bytes())
                .unwrap_err()
                .contains("schema 2")
        );
        let extra = text.replace("\"schema\":1", "\"schema\":1,\"admin\":true");
        assert!(
            parse::<AgentRecord>(extra.as_bytes())
                .unwrap_err()
                .contains("admin")
        );
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(parse::<AgentRecord>(&huge).is_err());
    }
}
