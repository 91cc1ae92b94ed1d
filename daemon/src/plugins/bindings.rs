//! Host-side bindings of the plugin contract in `plugin-sdk/wit` (the one source of truth).

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "step-plugin",
    imports: {
        "runbook:plugin/process.run": async,
        "runbook:plugin/http.send": async,
        "runbook:plugin/sql.query": async,
        "runbook:plugin/sql.execute": async,
        default: trappable,
    },
    exports: { default: async },
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});

pub use exports::runbook::plugin::step::{
    Descriptor, Outcome, StepContext, StepError, StepPlan as Plan,
};
pub use runbook::plugin::events::Level;
pub use runbook::plugin::http;
pub use runbook::plugin::process::ProcessOutput;
pub use runbook::plugin::sql;
pub use runbook::plugin::types::{ConfigError, Effect, ProcessSpec, SqlSpec, Waiting};
