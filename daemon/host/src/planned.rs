//! What an `execute` call may do, read from its plan: the plan is the grant. The daemon and
//! the test harness (`runbook-plugin-test`) both build a call's grant from these, so a plugin
//! under test is held to what the daemon holds it to.

use crate::{Effect, Plan, ProcessSpec, SqlSpec};

/// The processes a plan names: the only ones a call under it may run, each once.
pub fn planned_processes(plan: &Plan) -> Vec<ProcessSpec> {
    plan.effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Process(spec) => Some(spec.clone()),
            Effect::Sql(_) | Effect::Note(_) => None,
        })
        .collect()
}

/// The SQL a plan names, connection by connection.
pub fn planned_sql(plan: &Plan) -> impl Iterator<Item = &SqlSpec> {
    plan.effects.iter().filter_map(|effect| match effect {
        Effect::Sql(spec) => Some(spec),
        Effect::Process(_) | Effect::Note(_) => None,
    })
}

/// Whether the host judges any of an SQL effect's statements to write, whatever the plugin's
/// own `writes` flag says (which can only add to it). Statements it judges read-only run in a
/// transaction the database keeps read-only unless a human approved them.
pub fn host_judges_writes(spec: &SqlSpec) -> bool {
    spec.statements
        .iter()
        .any(|statement| runbook_sql_classify::writes(statement))
}
