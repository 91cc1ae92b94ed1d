//! The built-in `wait` step: waits for a duration (`duration = "10m"`) or until a moment
//! (`until = "2026-12-02T03:00:00Z"`). The deadline is fixed when the step starts and kept as
//! its resume token, which the daemon stores: a wait survives a restart and ends at the same
//! moment, not a full duration later. Cancelling the run ends it at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runbook_plugin_sdk::exports::runbook::plugin::step::Guest;
use runbook_plugin_sdk::runbook::plugin::types::{
    ConfigError, Descriptor, Effect, Outcome, StepContext, StepError, StepPlan, Waiting,
};
use runbook_plugin_sdk::{config_error, parse_config, step_error};
use serde::{Deserialize, Serialize};

/// The longest wait: a step that is to wait longer is better a schedule than a run.
const MAX_WAIT: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long the daemon may wait past the deadline for the step's last look before it calls
/// the wait timed out (a busy or restarting daemon looks late).
const LATE_GRACE: Duration = Duration::from_secs(300);

/// The `with` table of a wait step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitConfig {
    /// How long: `90s`, `10m`, `1h 30m`.
    duration: Option<String>,
    /// Until when: an RFC 3339 time, `2026-12-02T03:00:00Z`.
    until: Option<String>,
}

const CONFIG_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "duration": { "type": "string", "description": "How long to wait: 90s, 10m, 1h 30m (at most 30 days)" },
    "until": { "type": "string", "description": "Wait until this RFC 3339 time, 2026-12-02T03:00:00Z" }
  },
  "oneOf": [ { "required": ["duration"] }, { "required": ["until"] } ],
  "additionalProperties": false
}"#;

/// What the step waits for, parsed.
enum Wait {
    For(Duration),
    Until(SystemTime),
}

impl WaitConfig {
    fn parse(config: &str) -> Result<Self, ConfigError> {
        let parsed: Self = parse_config(config)?;
        match (&parsed.duration, &parsed.until) {
            (Some(_), Some(_)) => Err(config_error(
                "",
                "set either `duration` or `until`, not both",
            )),
            (None, None) => Err(config_error(
                "",
                "missing `duration` (how long, `10m`) or `until` (an RFC 3339 time)",
            )),
            _ => Ok(parsed),
        }
    }

    /// The wait, unless a field still holds a template (checked again once rendered).
    fn wait(&self) -> Result<Option<Wait>, ConfigError> {
        if let Some(text) = &self.duration {
            if text.contains("{{") {
                return Ok(None);
            }
            let duration = humantime::parse_duration(text.trim()).map_err(|err| {
                config_error(
                    "duration",
                    format!("`{text}` is not a duration ({err}); write `90s`, `10m` or `1h 30m`"),
                )
            })?;
            if duration > MAX_WAIT {
                return Err(config_error(
                    "duration",
                    format!("`{text}` is longer than the longest wait, 30 days"),
                ));
            }
            return Ok(Some(Wait::For(duration)));
        }
        let text = self.until.as_deref().unwrap_or_default();
        if text.contains("{{") {
            return Ok(None);
        }
        humantime::parse_rfc3339_weak(text.trim())
            .map(|at| Some(Wait::Until(at)))
            .map_err(|err| {
                config_error(
                    "until",
                    format!(
                        "`{text}` is not an RFC 3339 time ({err}); write `2026-12-02T03:00:00Z`"
                    ),
                )
            })
    }

    fn rendered(config: &str) -> Result<Wait, StepError> {
        Self::parse(config)?
            .wait()?
            .ok_or_else(|| step_error("the wait still holds a template after rendering"))
    }
}

/// The resume token: the deadline, in Unix milliseconds.
#[derive(Serialize, Deserialize)]
struct Token {
    until_ms: u64,
}

fn now_ms() -> u64 {
    millis(SystemTime::now())
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Done once the deadline has passed; otherwise waiting until it.
fn look(until_ms: u64) -> Result<Outcome, StepError> {
    let now = now_ms();
    if now >= until_ms {
        let output = serde_json::json!({ "until": rfc3339(until_ms), "late_ms": now - until_ms });
        return Ok(Outcome::Done(output.to_string()));
    }
    let left = until_ms - now;
    let token = serde_json::to_string(&Token { until_ms })
        .map_err(|err| step_error(format!("cannot write the resume token: {err}")))?;
    Ok(Outcome::Waiting(Waiting {
        resume_token: token,
        poll_after_ms: left,
        invocation_id: None,
        // Counted from the first `waiting`: the wait itself, and some grace for a late look.
        wait_timeout_ms: Some(
            left.saturating_add(u64::try_from(LATE_GRACE.as_millis()).unwrap_or(0)),
        ),
    }))
}

fn describe_wait(wait: &Wait) -> String {
    match wait {
        Wait::For(duration) => format!("wait {}", humantime::format_duration(*duration)),
        Wait::Until(at) => format!("wait until {}", humantime::format_rfc3339_seconds(*at)),
    }
}

struct WaitStep;

impl Guest for WaitStep {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "wait".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Wait for a duration or until a time, across daemon restarts".into(),
            config_schema: CONFIG_SCHEMA.into(),
            capabilities: vec![],
            idempotent: true,
            needs_approval: false,
        }
    }

    fn validate(config: String) -> Result<(), Vec<ConfigError>> {
        WaitConfig::parse(&config)
            .and_then(|parsed| parsed.wait().map(|_| ()))
            .map_err(|err| vec![err])
    }

    fn plan(_ctx: StepContext, config: String) -> Result<StepPlan, StepError> {
        let summary = describe_wait(&WaitConfig::rendered(&config)?);
        Ok(StepPlan {
            summary: summary.clone(),
            effects: vec![Effect::Note(summary)],
        })
    }

    fn execute(_ctx: StepContext, config: String, _inputs: String) -> Result<Outcome, StepError> {
        let until_ms = match WaitConfig::rendered(&config)? {
            Wait::For(duration) => {
                now_ms().saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
            }
            Wait::Until(at) => millis(at),
        };
        look(until_ms)
    }

    fn resume(_ctx: StepContext, _config: String, token: String) -> Result<Outcome, StepError> {
        let token: Token = serde_json::from_str(&token)
            .map_err(|err| step_error(format!("invalid resume token: {err}")))?;
        look(token.until_ms)
    }
}

runbook_plugin_sdk::export_plugin!(WaitStep);
