//! Runs a step plugin's built component (`.wasm`) in tests, in the host runbookd runs it in
//! (`runbook-host`: the same wasmtime engine, limits and linker), with the capabilities the
//! test grants: the hosts its HTTP requests may reach (a server the test started), the
//! database connections it may use (a SQLite file, say), and whether it may run processes.
//!
//! The rules are the daemon's: a component that imports an interface the test did not grant
//! is refused at load, naming the interface; `execute` and `resume` run under a grant read
//! from the step's own plan (only the processes and the SQL it names), as approved plans do
//! in the daemon; every call gets a fresh instance with the daemon's default limits.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use runbook_plugin_test::{Capabilities, PluginUnderTest};
//!
//! let plugin = PluginUnderTest::load(
//!     "target/wasm32-wasip2/release/my_plugin.wasm",
//!     Capabilities::default().host("127.0.0.1"),
//! )
//! .await?;
//! let config = serde_json::json!({ "url": "http://127.0.0.1:8080/health" });
//! plugin.validate(&config).await?.expect("a valid config");
//! let called = plugin.execute(&config, &serde_json::json!({})).await?;
//! assert!(called.outcome.is_ok());
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
pub use runbook_host::{
    ConfigError, Descriptor, Effect, Limits, Outcome, Plan, PluginEvent, ProcessSpec, SqlSpec,
    StepContext, StepError, StreamKind, Waiting,
};
use runbook_host::{ConnectionUrl, Grant, Grants, PluginGrant, PluginHost, SecretScope, SqlGrant};

/// What the test grants the plugin: the daemon's `runbook plugin grant` flags.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Hosts its HTTP requests may reach: `name`, `name:port`, `*.domain` or `*`.
    pub hosts: Vec<String>,
    /// Database connections it may use, by name, with their URLs (`sqlite:///tmp/t.db`,
    /// `postgres://...`).
    pub connections: BTreeMap<String, String>,
    /// Whether it may run processes (still only those its plan names).
    pub process: bool,
    /// Whether it may have the host sign JSON Web Tokens.
    pub jwt: bool,
}

impl Capabilities {
    /// Also lets it reach `pattern` (`--host`).
    pub fn host(mut self, pattern: impl Into<String>) -> Self {
        self.hosts.push(pattern.into());
        self
    }

    /// Also lets it use connection `name` at `url` (`--connection`).
    pub fn connection(mut self, name: impl Into<String>, url: impl Into<String>) -> Self {
        self.connections.insert(name.into(), url.into());
        self
    }

    /// Also lets it run the processes its plans name (`--process`).
    pub fn process(mut self) -> Self {
        self.process = true;
        self
    }

    /// Also lets it have the host sign JSON Web Tokens (`--jwt`).
    pub fn jwt(mut self) -> Self {
        self.jwt = true;
        self
    }

    fn grant(&self) -> PluginGrant {
        PluginGrant {
            hosts: self.hosts.iter().cloned().collect(),
            connections: self.connections.keys().cloned().collect(),
            process: self.process,
            jwt: self.jwt,
            approval: None,
        }
    }
}

/// What one `execute` or `resume` call did.
#[derive(Debug)]
pub struct Called {
    /// What the step answered: done with an output, waiting, or failed.
    pub outcome: Result<Outcome, StepError>,
    /// The plan the call ran under (its grant).
    pub plan: Plan,
    /// Every line it printed (from processes) and logged, in order.
    pub events: Vec<PluginEvent>,
}

impl Called {
    /// The output of a step that completed, as JSON; `None` when it failed, waits, or its
    /// output is not JSON.
    pub fn output(&self) -> Option<serde_json::Value> {
        match &self.outcome {
            Ok(Outcome::Done(text)) => serde_json::from_str(text).ok(),
            _ => None,
        }
    }

    /// The messages it logged, in order.
    pub fn logs(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|event| match event {
                PluginEvent::Log { message, .. } => Some(message.as_str()),
                PluginEvent::Output { .. } => None,
            })
            .collect()
    }
}

/// One plugin loaded in a host of its own.
pub struct PluginUnderTest {
    host: PluginHost,
    kind: String,
    capabilities: Capabilities,
    /// Compiled components; removed with the plugin.
    _cache: tempfile::TempDir,
}

impl PluginUnderTest {
    /// Loads the component at `path`, granted `capabilities`, with the daemon's default
    /// limits. Refused as the daemon refuses it: an import it was not granted, a kind that is
    /// not a step kind, a WIT version the host does not support.
    pub async fn load(path: impl AsRef<Path>, capabilities: Capabilities) -> anyhow::Result<Self> {
        Self::load_with(path, capabilities, Limits::default()).await
    }

    /// [`PluginUnderTest::load`] with other limits (a smaller memory cap, a shorter call).
    pub async fn load_with(
        path: impl AsRef<Path>,
        capabilities: Capabilities,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the component {}", path.display()))?;
        let cache = tempfile::tempdir()?;
        let observe_call = Arc::new(|_: &str, _: &str, _: std::time::Duration| {});
        let host = PluginHost::new(
            limits,
            cache.path(),
            Default::default(),
            Grants::new(BTreeMap::new()),
            &[],
            observe_call,
        )
        .await?;
        let grant = capabilities.grant();
        let kind = host.inspect(&bytes, &grant).await?.kind;
        host.grants().set_stored(&kind, grant);
        host.load_file(path).await?;
        Ok(Self {
            host,
            kind,
            capabilities,
            _cache: cache,
        })
    }

    /// The step kind the component says it provides.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// What the component says about itself (`describe`).
    pub fn descriptor(&self) -> anyhow::Result<Descriptor> {
        Ok(self.host.descriptor(&self.kind)?.as_ref().clone())
    }

    /// `validate` of a `with` table.
    pub async fn validate(
        &self,
        config: &serde_json::Value,
    ) -> anyhow::Result<Result<(), Vec<ConfigError>>> {
        Ok(self.host.validate(&self.kind, &config.to_string()).await?)
    }

    /// `plan` of a `with` table, for attempt 1.
    pub async fn plan(
        &self,
        config: &serde_json::Value,
    ) -> anyhow::Result<Result<Plan, StepError>> {
        Ok(self
            .host
            .plan(&self.kind, context(1), &config.to_string())
            .await?)
    }

    /// `execute` of attempt 1: planned first, then run under what the plan names, as an
    /// approved step runs in the daemon. `inputs` is what the daemon passes as `inputs`
    /// (`{"params": ..., "steps": ...}`). A plan the step cannot make fails the call.
    pub async fn execute(
        &self,
        config: &serde_json::Value,
        inputs: &serde_json::Value,
    ) -> anyhow::Result<Called> {
        self.execute_attempt(config, inputs, 1).await
    }

    /// [`PluginUnderTest::execute`] of attempt `attempt` (a retry: a new idempotency key).
    pub async fn execute_attempt(
        &self,
        config: &serde_json::Value,
        inputs: &serde_json::Value,
        attempt: u32,
    ) -> anyhow::Result<Called> {
        let config = config.to_string();
        let plan = self.plan_for_call(&config, attempt).await?;
        let (grant, events) = self.grant(&plan)?;
        let outcome = self
            .host
            .execute(
                &self.kind,
                context(attempt),
                &config,
                &inputs.to_string(),
                grant,
                Limits::default().call_timeout,
            )
            .await?;
        Ok(called(outcome, plan, &events))
    }

    /// `resume` of a step that answered `waiting` with `token`, under the same grant as its
    /// `execute`.
    pub async fn resume(&self, config: &serde_json::Value, token: &str) -> anyhow::Result<Called> {
        let config = config.to_string();
        let plan = self.plan_for_call(&config, 1).await?;
        let (grant, events) = self.grant(&plan)?;
        let outcome = self
            .host
            .resume(
                &self.kind,
                context(1),
                &config,
                token,
                grant,
                Limits::default().call_timeout,
            )
            .await?;
        Ok(called(outcome, plan, &events))
    }

    async fn plan_for_call(&self, config: &str, attempt: u32) -> anyhow::Result<Plan> {
        match self.host.plan(&self.kind, context(attempt), config).await? {
            Ok(plan) => Ok(plan),
            Err(err) => anyhow::bail!("cannot plan: {}", err.message),
        }
    }

    /// The grant the daemon would give a call under `plan`, and where its events go.
    fn grant(&self, plan: &Plan) -> anyhow::Result<(Grant, Arc<Mutex<Vec<PluginEvent>>>)> {
        let sql = runbook_host::planned_sql(plan)
            .map(|spec| {
                let url = self
                    .capabilities
                    .connections
                    .get(&spec.connection)
                    .with_context(|| {
                        format!(
                            "the plan names connection `{}`, which the test did not grant",
                            spec.connection
                        )
                    })?;
                Ok(SqlGrant {
                    connection: spec.connection.clone(),
                    url: ConnectionUrl::Text(url.clone()),
                    statements: spec.statements.clone(),
                    // As an approved step: statements run as written.
                    read_only: false,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink_events = Arc::clone(&events);
        let grant = Grant {
            processes: runbook_host::planned_processes(plan),
            sql,
            sink: Arc::new(move |event| {
                sink_events
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(event);
            }),
            network: true,
            insecure_redirects: false,
            on_spawn: None,
            deadline: None,
            secrets: SecretScope::default(),
        };
        Ok((grant, events))
    }
}

fn called(
    outcome: Result<Outcome, StepError>,
    plan: Plan,
    events: &Mutex<Vec<PluginEvent>>,
) -> Called {
    Called {
        outcome,
        plan,
        events: std::mem::take(
            &mut *events
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ),
    }
}

/// The context of attempt `attempt` of a step `step` in run `test-run`.
fn context(attempt: u32) -> StepContext {
    StepContext {
        run_id: "test-run".into(),
        step_id: "step".into(),
        attempt,
        idempotency_key: format!("test-run:step:{attempt}"),
    }
}
