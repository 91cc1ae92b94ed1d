//! The built-in `graphql` step: one GraphQL query or mutation, POSTed as JSON through the
//! host's `http` capability. Targets, auth, expectations, captures and error classification
//! come from `runbook_plugin_sdk::web`, shared with the `http` step.

mod config;
mod document;
mod errors;
mod plan;
mod run;
mod schema;

use runbook_plugin_sdk::exports::runbook::plugin::step::Guest;
use runbook_plugin_sdk::runbook::plugin::types::{
    ConfigError, Descriptor, Outcome, StepContext, StepError, StepPlan,
};
use runbook_plugin_sdk::step_error;
use runbook_plugin_sdk::web::check::StepConfig;
use runbook_plugin_sdk::web::host::WasmHost;

use crate::config::GraphqlConfig;

struct Graphql;

impl Guest for Graphql {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "graphql".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Run a GraphQL query or mutation; check the response and capture from its data"
                    .into(),
            config_schema: schema::config_schema(),
            capabilities: vec!["http".into(), "cache".into(), "events".into(), "jwt".into()],
            // A mutation may change the world, and servers rarely deduplicate them.
            idempotent: false,
            needs_approval: false,
        }
    }

    fn validate(config: String) -> Result<(), Vec<ConfigError>> {
        GraphqlConfig::validate_config(&config)
    }

    fn plan(ctx: StepContext, config: String) -> Result<StepPlan, StepError> {
        let config = GraphqlConfig::parse(&config)?;
        let prepared = config.prepare(&ctx)?;
        Ok(plan::plan(&config, &prepared))
    }

    fn execute(ctx: StepContext, config: String, _inputs: String) -> Result<Outcome, StepError> {
        run::execute(&WasmHost, &ctx, &config)
    }

    fn resume(_ctx: StepContext, _config: String, _token: String) -> Result<Outcome, StepError> {
        Err(step_error(
            "graphql steps never wait, so they cannot be resumed",
        ))
    }
}

runbook_plugin_sdk::export_plugin!(Graphql);
