//! What a plugin instance sees of the daemon: an empty WASI context (std needs one; it grants
//! nothing), and the `events` and `process` capabilities bound to one call.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, Level, ProcessOutput, ProcessSpec};
use super::sandbox::{Meter, Metered};
use super::{EventSink, PluginEvent};

/// The data of one plugin call's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    meter: Meter,
    grant: Grant,
}

/// What one call may do.
#[derive(Clone)]
pub struct Grant {
    /// Exactly the processes the (approved) plan named.
    pub processes: Vec<ProcessSpec>,
    pub sink: EventSink,
}

impl Grant {
    /// A grant for calls that must not touch the world (`describe`, `validate`, `plan`).
    pub fn none() -> Self {
        Self {
            processes: Vec::new(),
            sink: std::sync::Arc::new(|_| {}),
        }
    }
}

impl HostState {
    pub fn new(meter: Meter, grant: Grant) -> Self {
        Self {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            meter,
            grant,
        }
    }

    pub fn meter_ref(&self) -> &Meter {
        &self.meter
    }
}

impl Metered for HostState {
    fn meter(&mut self) -> &mut Meter {
        &mut self.meter
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::runbook::plugin::types::Host for HostState {}

impl bindings::runbook::plugin::events::Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        (self.grant.sink)(PluginEvent::Log { level, message });
        Ok(())
    }

    fn progress(&mut self, fraction: f32, message: String) -> wasmtime::Result<()> {
        let percent = (fraction.clamp(0.0, 1.0) * 100.0).round();
        (self.grant.sink)(PluginEvent::Log {
            level: Level::Info,
            message: format!("{percent}% {message}"),
        });
        Ok(())
    }
}

impl bindings::runbook::plugin::process::Host for HostState {
    async fn run(&mut self, spec: ProcessSpec) -> Result<ProcessOutput, String> {
        if !self.grant.processes.contains(&spec) {
            return Err(format!(
                "refused to run {:?}: it is not a process named in the step's approved plan",
                spec.argv
            ));
        }
        super::process::run(&spec, &self.grant.sink).await
    }
}
