//! The daemon's plugins: the plugin host (`runbook-host`, re-exported here) with the built-in
//! plugins this binary embeds, its calls timed in the daemon's metrics, and how the runbook
//! loader asks it to check a step's `with`.

use std::sync::Arc;

pub use runbook_host::*;

/// The built-in plugins, compiled for wasm32-wasip2 by the build script.
pub const BUILTIN_PLUGINS: Builtins = &[
    (
        "shell",
        include_bytes!(concat!(
            env!("RUNBOOKD_GUEST_DIR"),
            "/runbook_plugin_shell.wasm"
        )),
    ),
    (
        "http",
        include_bytes!(concat!(
            env!("RUNBOOKD_GUEST_DIR"),
            "/runbook_plugin_http.wasm"
        )),
    ),
    (
        "graphql",
        include_bytes!(concat!(
            env!("RUNBOOKD_GUEST_DIR"),
            "/runbook_plugin_graphql.wasm"
        )),
    ),
    (
        "database",
        include_bytes!(concat!(
            env!("RUNBOOKD_GUEST_DIR"),
            "/runbook_plugin_database.wasm"
        )),
    ),
    (
        "wait",
        include_bytes!(concat!(
            env!("RUNBOOKD_GUEST_DIR"),
            "/runbook_plugin_wait.wasm"
        )),
    ),
    (
        "instruction",
        include_bytes!(concat!(
            env!("RUNBOOKD_GUEST_DIR"),
            "/runbook_plugin_instruction.wasm"
        )),
    ),
];

/// Times every plugin call in the daemon's metrics.
pub fn call_metrics(metrics: crate::metrics::Metrics) -> CallObserver {
    Arc::new(move |kind, function, took| metrics.plugin_call(kind, function, took))
}

impl crate::runbook::StepKinds for PluginHost {
    fn kinds(&self) -> Vec<String> {
        PluginHost::kinds(self)
    }

    async fn validate(
        &self,
        kind: &str,
        config: &serde_json::Value,
    ) -> Result<Vec<crate::runbook::ConfigProblem>, String> {
        match PluginHost::validate(self, kind, &config.to_string()).await {
            Ok(Ok(())) => Ok(Vec::new()),
            Ok(Err(errors)) => Ok(errors
                .into_iter()
                .map(|err| crate::runbook::ConfigProblem {
                    path: err.path,
                    message: err.message,
                    position: err.position.map(|at| (at.line, at.column)),
                })
                .collect()),
            Err(err) => Err(err.to_string()),
        }
    }
}
