//! A plugin that plays an attacker against the daemon's trust boundaries (`uses = "rogue"`):
//! it says its steps need no approval and that its SQL never writes, whatever it plans.
//!
//! - `with = { argv = [...], times = N }` plans the process `argv` once, then tries to run it
//!   `N` times;
//! - `with = { connection = "a", plan_connection = "b", statements = [...] }` plans the
//!   statements on `plan_connection` (default: `connection`) with `writes = false`, then
//!   executes them there.
//!
//! Its output says what each try got: `{"ran": [...], "refused": [...]}`.

use runbook_plugin_sdk::exports::runbook::plugin::step::Guest;
use runbook_plugin_sdk::runbook::plugin::types::{
    ConfigError, Descriptor, Effect, Outcome, ProcessSpec, SqlSpec, StepContext, StepError,
    StepPlan,
};
use runbook_plugin_sdk::runbook::plugin::{process, sql};
use runbook_plugin_sdk::{parse_config, step_error};
use serde::Deserialize;

#[derive(Deserialize)]
struct RogueConfig {
    #[serde(default)]
    argv: Vec<String>,
    #[serde(default = "once")]
    times: u32,
    connection: Option<String>,
    plan_connection: Option<String>,
    #[serde(default)]
    statements: Vec<String>,
}

fn once() -> u32 {
    1
}

impl RogueConfig {
    fn process(&self) -> ProcessSpec {
        ProcessSpec {
            argv: self.argv.clone(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
        }
    }

    /// The connection the plan names.
    fn planned_connection(&self) -> String {
        self.plan_connection
            .clone()
            .or_else(|| self.connection.clone())
            .unwrap_or_default()
    }
}

fn parse(config: &str) -> Result<RogueConfig, ConfigError> {
    parse_config(config)
}

struct Rogue;

impl Guest for Rogue {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "rogue".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test plugin: tries to get past approvals and grants".into(),
            config_schema: "{}".into(),
            capabilities: vec!["process".into(), "sql".into()],
            idempotent: true,
            // The lie under test: its processes and writes should need no human.
            needs_approval: false,
        }
    }

    fn validate(config: String) -> Result<(), Vec<ConfigError>> {
        parse(&config).map(|_| ()).map_err(|err| vec![err])
    }

    fn plan(_ctx: StepContext, config: String) -> Result<StepPlan, StepError> {
        let config = parse(&config)?;
        let mut effects = Vec::new();
        if !config.argv.is_empty() {
            effects.push(Effect::Process(config.process()));
        }
        if !config.statements.is_empty() {
            effects.push(Effect::Sql(SqlSpec {
                connection: config.planned_connection(),
                statements: config.statements.clone(),
                writes: false,
            }));
        }
        Ok(StepPlan {
            summary: "rogue: nothing to see here".into(),
            effects,
        })
    }

    fn execute(_ctx: StepContext, config: String, _inputs: String) -> Result<Outcome, StepError> {
        let config = parse(&config)?;
        let mut ran = Vec::new();
        let mut refused = Vec::new();
        if !config.argv.is_empty() {
            for _ in 0..config.times {
                match process::run(&config.process()) {
                    Ok(output) => ran.push(format!("exit {:?}", output.exit_code)),
                    Err(err) => refused.push(err),
                }
            }
        }
        if !config.statements.is_empty() {
            let statements: Vec<sql::Statement> = config
                .statements
                .iter()
                .map(|text| sql::Statement {
                    sql: text.clone(),
                    params: Vec::new(),
                })
                .collect();
            match sql::execute(&config.planned_connection(), &statements) {
                Ok(affected) => ran.push(format!("affected {affected:?}")),
                Err(err) => refused.push(format!("{err:?}")),
            }
        }
        if ran.is_empty() && refused.is_empty() {
            return Err(step_error("nothing to do: give `argv` or `statements`"));
        }
        Ok(Outcome::Done(
            serde_json::json!({ "ran": ran, "refused": refused }).to_string(),
        ))
    }

    fn resume(_ctx: StepContext, _config: String, _token: String) -> Result<Outcome, StepError> {
        Err(step_error("rogue steps never wait"))
    }
}

runbook_plugin_sdk::export_plugin!(Rogue);
