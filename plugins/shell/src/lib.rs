//! The built-in `shell` step: runs an argv directly, or a script with `/bin/sh -c`, through
//! the host's `process` capability. Template values reach a script only through `env`.

use std::collections::BTreeMap;

use runbook_plugin_sdk::exports::runbook::plugin::step::Guest;
use runbook_plugin_sdk::runbook::plugin::process::{self, ProcessOutput};
use runbook_plugin_sdk::runbook::plugin::types::{
    ConfigError, Descriptor, Effect, Outcome, ProcessSpec, StepContext, StepError, StepPlan,
};
use runbook_plugin_sdk::{config_error, parse_config, step_error, transient_error};
use serde::Deserialize;

/// The `with` table of a shell step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShellConfig {
    /// Run this argv directly: no shell parses it.
    command: Option<Vec<String>>,
    /// Run this text with `/bin/sh -c`; values come in through `env`.
    script: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    stdin: Option<String>,
    /// Exit codes that count as success.
    #[serde(default = "default_expect_exit")]
    expect_exit: Vec<i32>,
}

fn default_expect_exit() -> Vec<i32> {
    vec![0]
}

const CONFIG_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "command": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
    "script": { "type": "string" },
    "env": { "type": "object", "additionalProperties": { "type": "string" } },
    "cwd": { "type": "string" },
    "stdin": { "type": "string" },
    "expect_exit": { "type": "array", "items": { "type": "integer" } }
  },
  "oneOf": [ { "required": ["command"] }, { "required": ["script"] } ],
  "additionalProperties": false
}"#;

impl ShellConfig {
    fn parse(config: &str) -> Result<Self, ConfigError> {
        let parsed: Self = parse_config(config)?;
        match (&parsed.command, &parsed.script) {
            (Some(_), Some(_)) => Err(config_error(
                "",
                "set either `command` (an argv) or `script`, not both",
            )),
            (None, None) => Err(config_error(
                "",
                "missing `command` (an argv array) or `script`",
            )),
            (Some(argv), None) if argv.is_empty() => Err(config_error(
                "command",
                "must name a program: the argv is empty",
            )),
            _ => Ok(parsed),
        }
    }

    fn process_spec(&self) -> ProcessSpec {
        let argv = match (&self.command, &self.script) {
            (Some(argv), _) => argv.clone(),
            (None, Some(script)) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
            // `parse` guarantees one of the two.
            (None, None) => Vec::new(),
        };
        ProcessSpec {
            argv,
            env: self.env.clone().into_iter().collect(),
            cwd: self.cwd.clone(),
            stdin: self.stdin.clone(),
        }
    }
}

fn summarize(spec: &ProcessSpec) -> String {
    let mut line = format!("run {}", quote_argv(&spec.argv));
    if !spec.env.is_empty() {
        let names: Vec<&str> = spec.env.iter().map(|(name, _)| name.as_str()).collect();
        line.push_str(&format!(" with env {}", names.join(", ")));
    }
    if let Some(cwd) = &spec.cwd {
        line.push_str(&format!(" in {cwd}"));
    }
    line
}

/// Quotes each argument the way a POSIX shell would read it back, so an operator sees exactly
/// where one argument ends.
fn quote_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn output_json(output: &ProcessOutput) -> String {
    serde_json::json!({
        "exit_code": output.exit_code,
        "signal": output.signal,
        "stdout": output.stdout,
        "stderr": output.stderr,
        "truncated": output.truncated,
    })
    .to_string()
}

struct Shell;

impl Guest for Shell {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "shell".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Run a command (an argv) or a /bin/sh script".into(),
            config_schema: CONFIG_SCHEMA.into(),
            capabilities: vec!["process".into(), "events".into()],
            idempotent: false,
            needs_approval: true,
        }
    }

    fn validate(config: String) -> Result<(), Vec<ConfigError>> {
        ShellConfig::parse(&config)
            .map(|_| ())
            .map_err(|err| vec![err])
    }

    fn plan(_ctx: StepContext, config: String) -> Result<StepPlan, StepError> {
        let spec = ShellConfig::parse(&config)?.process_spec();
        Ok(StepPlan {
            summary: summarize(&spec),
            effects: vec![Effect::Process(spec)],
        })
    }

    fn execute(_ctx: StepContext, config: String, _inputs: String) -> Result<Outcome, StepError> {
        let config = ShellConfig::parse(&config)?;
        let output = process::run(&config.process_spec()).map_err(step_error)?;
        let json = output_json(&output);
        match output.exit_code {
            Some(code) if config.expect_exit.contains(&code) => Ok(Outcome::Done(json)),
            // A shell cannot tell a flaky command from a broken one: an unexpected exit is
            // worth another attempt when the step's retry policy asks for one.
            Some(code) => Err(transient_error(
                format!(
                    "exit code {code} is not one of expect_exit {:?}",
                    config.expect_exit
                ),
                Some(json),
            )),
            None => Err(transient_error(
                format!(
                    "killed by signal {}",
                    output.signal.map_or("?".into(), |s| s.to_string())
                ),
                Some(json),
            )),
        }
    }

    fn resume(_ctx: StepContext, _config: String, _token: String) -> Result<Outcome, StepError> {
        Err(step_error(
            "shell steps never wait, so they cannot be resumed",
        ))
    }
}

runbook_plugin_sdk::export_plugin!(Shell);
