//! The built-in `http` step: one HTTP request through the host's `http` capability, with
//! targets, auth (OAuth2 included), expectations, captures and async polling. The shared
//! pieces live in `runbook_plugin_sdk::web`; this crate holds what only this step has.

mod body;
mod config;
mod plan;
mod run;
mod schema;
mod wait;

use runbook_plugin_sdk::exports::runbook::plugin::step::Guest;
use runbook_plugin_sdk::runbook::plugin::types::{
    ConfigError, Descriptor, Outcome, StepContext, StepError, StepPlan,
};
use runbook_plugin_sdk::web::check::StepConfig;
use runbook_plugin_sdk::web::host::WasmHost;

use crate::config::HttpConfig;

struct Http;

impl Guest for Http {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "http".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Send an HTTP request; check the response and capture values from it"
                .into(),
            config_schema: schema::config_schema(),
            capabilities: vec!["http".into(), "cache".into(), "events".into(), "jwt".into()],
            // Every request carries an Idempotency-Key that is the same on every attempt.
            idempotent: true,
            needs_approval: false,
        }
    }

    fn validate(config: String) -> Result<(), Vec<ConfigError>> {
        HttpConfig::validate_config(&config)
    }

    fn plan(ctx: StepContext, config: String) -> Result<StepPlan, StepError> {
        let prepared = HttpConfig::parse(&config)?.prepare(&ctx)?;
        Ok(plan::plan(&prepared))
    }

    fn execute(ctx: StepContext, config: String, _inputs: String) -> Result<Outcome, StepError> {
        run::execute(&WasmHost, &ctx, &config)
    }

    fn resume(ctx: StepContext, config: String, token: String) -> Result<Outcome, StepError> {
        run::resume(&WasmHost, &ctx, &config, &token)
    }
}

runbook_plugin_sdk::export_plugin!(Http);
