//! The built-in `database` step: SQL on one of the daemon's named connections through the
//! host's `sql` capability (a query's rows, an affected-row count, or several statements in
//! one transaction), with typed parameters, expectations and captures. The plan says whether
//! the SQL writes; the daemon judges the statements again itself before it decides on an
//! approval.

mod config;
mod expect;
mod param;
mod plan;
mod run;
mod schema;

use runbook_sql_classify as classify;

use runbook_plugin_sdk::exports::runbook::plugin::step::Guest;
use runbook_plugin_sdk::runbook::plugin::types::{
    ConfigError, Descriptor, Outcome, StepContext, StepError, StepPlan,
};
use runbook_plugin_sdk::step_error;
use runbook_plugin_sdk::web::check::StepConfig;

use crate::config::DatabaseConfig;
use crate::run::WasmSql;

struct Database;

impl Guest for Database {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "database".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Run SQL on a named connection; check the rows and capture values from them".into(),
            config_schema: schema::config_schema(),
            capabilities: vec!["sql".into(), "events".into()],
            // A write run twice is not harmless, and a crash cannot tell whether it committed.
            idempotent: false,
            // The daemon's `approvals.database_writes` policy decides from the plan's `writes`.
            needs_approval: false,
        }
    }

    fn validate(config: String) -> Result<(), Vec<ConfigError>> {
        DatabaseConfig::validate_config(&config)
    }

    fn plan(ctx: StepContext, config: String) -> Result<StepPlan, StepError> {
        let prepared = DatabaseConfig::parse(&config)?.prepare(&ctx)?;
        Ok(plan::plan(&prepared))
    }

    fn execute(ctx: StepContext, config: String, _inputs: String) -> Result<Outcome, StepError> {
        run::execute(&WasmSql, &ctx, &config)
    }

    fn resume(_ctx: StepContext, _config: String, _token: String) -> Result<Outcome, StepError> {
        Err(step_error(
            "database steps never wait, so they cannot be resumed",
        ))
    }
}

runbook_plugin_sdk::export_plugin!(Database);
