//! The built-in `instruction` step: Markdown text (templated like any `with` value) that an
//! operator reads, carries out by hand and confirms as done. The daemon always holds such a
//! step for a human, as it holds a plan for approval (durably, across restarts); confirming it
//! may give the values the step declares in its `inputs`, which the daemon types and checks and
//! hands to `execute` as `confirmed`. Those values are the step's output.

use runbook_plugin_sdk::exports::runbook::plugin::step::Guest;
use runbook_plugin_sdk::runbook::plugin::types::{
    ConfigError, Descriptor, Effect, Outcome, StepContext, StepError, StepPlan,
};
use runbook_plugin_sdk::{config_error, parse_config, step_error};
use serde::Deserialize;

/// The longest text, rendered: an instruction is read on a terminal, not a manual.
const MAX_TEXT_BYTES: usize = 64 << 10;
/// The longest summary line, in characters.
const MAX_SUMMARY_CHARS: usize = 100;

/// The `with` table of an instruction step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstructionConfig {
    /// What the operator is to do, in Markdown.
    text: String,
}

const CONFIG_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "text": { "type": "string", "description": "What the operator is to do, in Markdown (templated; at most 64 KiB)" }
  },
  "required": ["text"],
  "additionalProperties": false
}"#;

impl InstructionConfig {
    fn parse(config: &str) -> Result<Self, ConfigError> {
        let parsed: Self = parse_config(config)?;
        if parsed.text.trim().is_empty() {
            return Err(config_error(
                "text",
                "the instruction is empty; write what the operator is to do",
            ));
        }
        if parsed.text.len() > MAX_TEXT_BYTES {
            return Err(config_error(
                "text",
                format!(
                    "the instruction is {} bytes, more than the limit of 64 KiB",
                    parsed.text.len()
                ),
            ));
        }
        Ok(parsed)
    }

    /// The first line of text, without Markdown's heading and emphasis marks, shortened.
    fn summary(&self) -> String {
        let line = self
            .text
            .lines()
            .map(|line| line.trim().trim_start_matches('#').trim())
            .find(|line| !line.is_empty())
            .unwrap_or_default()
            .replace(['*', '`'], "");
        let mut summary: String = line.chars().take(MAX_SUMMARY_CHARS).collect();
        if line.chars().count() > MAX_SUMMARY_CHARS {
            summary.push('…');
        }
        format!("by hand: {summary}")
    }
}

/// What `execute` is given: the run's params and steps, and what the operator confirmed.
#[derive(Deserialize)]
struct Inputs {
    confirmed: Option<serde_json::Map<String, serde_json::Value>>,
}

struct InstructionStep;

impl Guest for InstructionStep {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "instruction".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Instructions an operator carries out by hand and confirms, with typed inputs"
                    .into(),
            config_schema: CONFIG_SCHEMA.into(),
            capabilities: vec![],
            // Running it again only hands back what the operator confirmed.
            idempotent: true,
            needs_approval: true,
        }
    }

    fn validate(config: String) -> Result<(), Vec<ConfigError>> {
        InstructionConfig::parse(&config)
            .map(|_| ())
            .map_err(|err| vec![err])
    }

    fn plan(_ctx: StepContext, config: String) -> Result<StepPlan, StepError> {
        let parsed = InstructionConfig::parse(&config)?;
        Ok(StepPlan {
            summary: parsed.summary(),
            effects: vec![Effect::Note(parsed.text)],
        })
    }

    fn execute(_ctx: StepContext, config: String, inputs: String) -> Result<Outcome, StepError> {
        InstructionConfig::parse(&config)?;
        let inputs: Inputs = serde_json::from_str(&inputs)
            .map_err(|err| step_error(format!("invalid inputs from the daemon: {err}")))?;
        let confirmed = inputs
            .confirmed
            .ok_or_else(|| step_error("the instruction was not confirmed by an operator"))?;
        Ok(Outcome::Done(
            serde_json::Value::Object(confirmed).to_string(),
        ))
    }

    fn resume(_ctx: StepContext, _config: String, _token: String) -> Result<Outcome, StepError> {
        Err(step_error("an instruction step never waits to be resumed"))
    }
}

runbook_plugin_sdk::export_plugin!(InstructionStep);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_the_first_line_without_markdown_marks() {
        let config = InstructionConfig {
            text: "\n## Drain **node-3** in the `console`\n\nThen wait.".into(),
        };
        assert_eq!(config.summary(), "by hand: Drain node-3 in the console");
    }

    #[test]
    fn a_long_first_line_is_shortened() {
        let config = InstructionConfig {
            text: "x".repeat(300),
        };
        assert_eq!(config.summary().chars().count(), "by hand: ".len() + 101);
    }

    #[test]
    fn empty_and_oversized_texts_are_refused_naming_the_field() {
        let empty = InstructionConfig::parse(r#"{"text":"  \n"}"#).unwrap_err();
        assert_eq!(empty.path, "text");
        let big = serde_json::json!({ "text": "a".repeat(MAX_TEXT_BYTES + 1) }).to_string();
        let err = InstructionConfig::parse(&big).unwrap_err();
        assert!(err.message.contains("64 KiB"), "{}", err.message);
        let unknown = InstructionConfig::parse(r#"{"text":"x","txt":"y"}"#).unwrap_err();
        assert!(unknown.message.contains("txt"), "{}", unknown.message);
    }

    #[test]
    fn execute_hands_back_what_was_confirmed_and_refuses_without_it() {
        let ctx = || StepContext {
            run_id: "r".into(),
            step_id: "s".into(),
            attempt: 1,
            idempotency_key: String::new(),
        };
        let config = r#"{"text":"do it"}"#.to_owned();
        let outcome = InstructionStep::execute(
            ctx(),
            config.clone(),
            r#"{"params":{},"steps":{},"confirmed":{"ticket":"OPS-1","count":3}}"#.into(),
        )
        .unwrap();
        let Outcome::Done(output) = outcome else {
            panic!("not done")
        };
        let output: serde_json::Value = serde_json::from_str(&output).unwrap();
        assert_eq!(output, serde_json::json!({ "ticket": "OPS-1", "count": 3 }));
        let refused = InstructionStep::execute(ctx(), config, r#"{"params":{}}"#.into());
        assert!(refused.is_err());
    }
}
