//! Host-side bindings of the plugin contract in `plugin-sdk/wit` (the one source of truth).

wasmtime::component::bindgen!({
    path: "../../plugin-sdk/wit",
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
pub use runbook::plugin::jwt;
pub use runbook::plugin::process::ProcessOutput;
pub use runbook::plugin::sql;
pub use runbook::plugin::types::{ConfigError, Effect, ProcessSpec, SqlSpec, Waiting};

impl Descriptor {
    /// Whether calls of this plugin can be granted anything only a plan names (processes to
    /// run, SQL to send). A plugin that claims neither capability gets no such grant, so its
    /// steps need no plan unless a human is to see one.
    pub fn grants_come_from_plans(&self) -> bool {
        self.capabilities
            .iter()
            .any(|capability| capability == "process" || capability == "sql")
    }
}

impl Plan {
    /// The plan of a step that is not shown to anyone and needs no grant from it.
    pub fn unplanned() -> Self {
        Self {
            summary: String::new(),
            effects: Vec::new(),
        }
    }
}
