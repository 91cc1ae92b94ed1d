//! What a plugin instance sees of the daemon: an empty WASI context (std needs one; it grants
//! nothing), and the `events`, `process`, `http`, `cache`, `sql` and `jwt` capabilities bound
//! to one call.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, Level, ProcessOutput, ProcessSpec};
use super::http::{CallScope, HostAllowlist, HttpClient};
use super::kv::KvCache;
use super::sandbox::{Meter, Metered};
use super::secrets::SecretScope;
use super::sql::{SqlCall, SqlGrant, SqlPools};
use super::{EventSink, PluginEvent};

/// The data of one plugin call's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    meter: Meter,
    grant: Grant,
    services: CallServices,
}

/// The daemon's shared services as one call of one plugin may use them.
pub struct CallServices {
    /// The calling plugin's step kind: the scope of its cache entries.
    pub kind: String,
    pub http: Arc<HttpClient>,
    /// The hosts this call may reach (none unless the grant allows the network).
    pub allow: HostAllowlist,
    pub kv: Arc<KvCache>,
    pub sql: Arc<SqlPools>,
}

/// What one call may do.
#[derive(Clone)]
pub struct Grant {
    /// Exactly the processes the (approved) plan named; each is used up when it runs.
    pub processes: Vec<ProcessSpec>,
    /// The connections and statements the (approved) plan named.
    pub sql: Vec<SqlGrant>,
    pub sink: EventSink,
    /// Whether the call may make HTTP requests (to the hosts its plugin may reach).
    pub network: bool,
    /// Whether its requests may follow a redirect from https to http.
    pub insecure_redirects: bool,
    /// Told of every process group the call starts, so that it can be recorded.
    pub on_spawn: Option<super::process::SpawnHook>,
    /// When the step's time is up: no request outlives it.
    pub deadline: Option<tokio::time::Instant>,
    pub secrets: SecretScope,
}

impl Grant {
    /// A grant for calls that must not touch the world (`describe`, `validate`, `plan`).
    pub fn none() -> Self {
        Self {
            processes: Vec::new(),
            sql: Vec::new(),
            sink: Arc::new(|_| {}),
            network: false,
            insecure_redirects: false,
            on_spawn: None,
            deadline: None,
            secrets: SecretScope::default(),
        }
    }
}

impl HostState {
    pub fn new(meter: Meter, grant: Grant, services: CallServices) -> Self {
        Self {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            meter,
            grant,
            services,
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
        let message = self.grant.secrets.mask(&message);
        (self.grant.sink)(PluginEvent::Log { level, message });
        Ok(())
    }

    fn progress(&mut self, fraction: f32, message: String) -> wasmtime::Result<()> {
        let percent = (fraction.clamp(0.0, 1.0) * 100.0).round();
        let message = self.grant.secrets.mask(&message);
        (self.grant.sink)(PluginEvent::Log {
            level: Level::Info,
            message: format!("{percent}% {message}"),
        });
        Ok(())
    }
}

impl bindings::runbook::plugin::http::Host for HostState {
    async fn send(
        &mut self,
        request: bindings::http::Request,
    ) -> Result<bindings::http::Response, bindings::http::Error> {
        let scope = CallScope {
            allow: &self.services.allow,
            secrets: &self.grant.secrets,
            deadline: self.grant.deadline,
            kind: &self.services.kind,
            insecure_redirects: self.grant.insecure_redirects,
        };
        self.services.http.send(&scope, request).await
    }
}

impl HostState {
    fn sql_call(&self) -> SqlCall<'_> {
        SqlCall {
            grants: &self.grant.sql,
            secrets: &self.grant.secrets,
            deadline: self.grant.deadline,
        }
    }
}

impl bindings::runbook::plugin::sql::Host for HostState {
    async fn query(
        &mut self,
        connection: String,
        statement: bindings::sql::Statement,
        max_rows: u32,
    ) -> Result<bindings::sql::Rows, bindings::sql::Error> {
        let sql = self.services.sql.clone();
        let call = self.sql_call();
        let mut rows = sql.query(&call, &connection, statement, max_rows).await?;
        rows.rows_json = self.grant.secrets.mask(&rows.rows_json);
        Ok(rows)
    }

    async fn execute(
        &mut self,
        connection: String,
        statements: Vec<bindings::sql::Statement>,
    ) -> Result<Vec<u64>, bindings::sql::Error> {
        let sql = self.services.sql.clone();
        let call = self.sql_call();
        sql.execute(&call, &connection, statements).await
    }
}

impl bindings::runbook::plugin::cache::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.services.kv.get(&self.services.kind, &key))
    }

    fn set(&mut self, key: String, value: String, ttl_ms: u64) -> wasmtime::Result<()> {
        self.services.kv.set(
            &self.services.kind,
            &key,
            value,
            Duration::from_millis(ttl_ms),
        );
        Ok(())
    }
}

impl bindings::runbook::plugin::jwt::Host for HostState {
    fn sign(
        &mut self,
        request: bindings::runbook::plugin::jwt::SignRequest,
    ) -> wasmtime::Result<Result<String, String>> {
        Ok(super::jwt::sign(
            &self.grant.secrets,
            &request,
            std::time::SystemTime::now(),
        ))
    }
}

impl bindings::runbook::plugin::process::Host for HostState {
    async fn run(&mut self, spec: ProcessSpec) -> Result<ProcessOutput, String> {
        // Each process the plan named runs once: an approved argv is not a licence to run it
        // again and again within the attempt.
        let Some(position) = self.grant.processes.iter().position(|named| *named == spec) else {
            return Err(format!(
                "refused to run {:?}: it is not a process named in the step's approved plan, or it already ran in this attempt",
                spec.argv
            ));
        };
        self.grant.processes.swap_remove(position);
        super::process::run(
            &spec,
            &self.grant.sink,
            &self.grant.secrets,
            self.grant.on_spawn.as_ref(),
        )
        .await
    }
}
