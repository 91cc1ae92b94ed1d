//! The WebAssembly plugin host: one wasmtime engine with the pooling allocator, the linker,
//! the registry of loaded step kinds, and bounded calls into them (a fresh instance per call,
//! a memory cap, a CPU budget and a wall clock). A misbehaving plugin fails its call, never
//! its caller.
//!
//! Its own crate so that everything that runs plugins runs them the same way: the daemon,
//! and `runbook-plugin-test`, which runs a plugin's built component in tests. The client
//! never links it (nor wasmtime).

mod bindings;
mod cache;
mod grants;
mod host;
mod http;
mod jwt;
mod kv;
mod planned;
mod process;
mod sandbox;
mod secrets;
pub mod sql;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

pub use bindings::{
    ConfigError, Descriptor, Effect, Level, Outcome, Plan, ProcessSpec, SqlSpec, StepContext,
    StepError, Waiting,
};
pub use grants::{Approval, Grants, PluginGrant};
pub use host::Grant;
pub use http::{DEFAULT_MAX_RESPONSE_BYTES, HostAllowlist, HttpSettings};
pub use planned::{host_judges_writes, planned_processes, planned_sql};
pub use process::{SpawnHook, boot_id, kill_leftover_group};
pub use sandbox::{LimitHit, Limits};
pub use secrets::{GivenSecrets, MASK, SecretScope, SecretSource};
pub use sql::{ConnectionUrl, SqlGrant};

use bindings::{StepPlugin, StepPluginPre};
use host::{CallServices, HostState};

/// Plugins built into the caller, by name: loaded by [`PluginHost::new`] as built-ins.
pub type Builtins = &'static [(&'static str, &'static [u8])];

/// Told of every call into a plugin once it ends: its kind, its function (`execute`, ...) and
/// how long it took (the daemon's metrics).
pub type CallObserver = Arc<dyn Fn(&str, &str, Duration) + Send + Sync>;

/// `execute` and `resume` calls that may be in flight at once; further steps wait for a slot
/// (at most until their deadline).
const MAX_STEP_CALLS: u32 = 256;
/// `describe`, `validate` and `plan` calls that may be in flight at once. They have slots of
/// their own so that steps running for hours never hold up a save, a reload or an approval.
const MAX_QUICK_CALLS: u32 = 32;
/// Instances the pooling allocator holds room for: every slot of both kinds.
const MAX_CONCURRENT_INSTANCES: u32 = MAX_STEP_CALLS + MAX_QUICK_CALLS;

/// Linear memory a reused instance slot keeps resident (reset in place, not returned to the
/// kernel): what the built-in plugins touch in one call, with room to spare.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;
/// The same for an instance's tables.
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;

/// The longest step kind a plugin may describe itself as.
pub const MAX_KIND_LEN: usize = 64;

/// Whether `kind` is a step kind: 1 to [`MAX_KIND_LEN`] lowercase letters, digits, `-` and
/// `_`. What a plugin calls itself names files and shows in terminals, so it is checked.
pub fn is_step_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Which stream an output line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// Something a plugin call produced for watchers while it ran.
#[derive(Debug, Clone)]
pub enum PluginEvent {
    Output { stream: StreamKind, line: String },
    Log { level: Level, message: String },
}

/// Receives a call's events as they happen.
pub type EventSink = Arc<dyn Fn(PluginEvent) + Send + Sync>;

/// Why a plugin call failed (as opposed to the step reporting a failure).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("unknown step kind `{0}`")]
    UnknownKind(String),
    #[error("plugin `{kind}` exceeded its memory limit of {} MiB", limit >> 20)]
    MemoryLimit { kind: String, limit: usize },
    #[error("plugin `{kind}` exceeded its CPU budget of {budget:?}")]
    CpuLimit { kind: String, budget: Duration },
    #[error("plugin `{kind}` did not return within {timeout:?}")]
    Timeout { kind: String, timeout: Duration },
    #[error("plugin `{kind}` crashed: {message}")]
    Trap { kind: String, message: String },
}

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    File(PathBuf),
}

struct LoadedPlugin {
    /// Shared: every step asks for it, and a config schema can be large.
    descriptor: Arc<Descriptor>,
    origin: Origin,
    pre: StepPluginPre<HostState>,
    /// The SHA-256 of the component file.
    hash: String,
    /// The interfaces the component imports, sorted.
    imports: Vec<String>,
    /// The version of the `runbook:plugin` package it was built against.
    wit_version: String,
}

/// A plugins-directory file that is not loaded, and why.
#[derive(Debug, Clone, Default)]
struct Refusal {
    /// The kind it describes itself as, when it got that far.
    kind: Option<String>,
    reason: String,
    hash: Option<String>,
    imports: Vec<String>,
}

/// One plugin as `runbook plugin ls` shows it: loaded, or a file that was refused.
#[derive(Debug, Clone)]
pub struct PluginListing {
    /// Empty for a refused file that never said.
    pub kind: String,
    pub version: String,
    pub origin: Origin,
    /// The SHA-256 of the component, when it could be read.
    pub hash: String,
    pub imports: Vec<String>,
    pub capabilities: Vec<String>,
    /// The version of the `runbook:plugin` package it was built against.
    pub wit_version: String,
    /// Set when the file is not loaded: why.
    pub refused: Option<String>,
}

/// A cloneable handle to the plugin host.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
    /// The step kinds this handle sees. The daemon's handle follows the plugins directory;
    /// a run's handle is a snapshot taken when it starts, so that it finishes with the
    /// plugins it started with.
    plugins: Arc<RwLock<BTreeMap<String, Arc<LoadedPlugin>>>>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    cache_dir: PathBuf,
    /// Slots of `execute` and `resume` calls.
    step_slots: tokio::sync::Semaphore,
    /// Slots of `describe`, `validate` and `plan` calls.
    quick_slots: tokio::sync::Semaphore,
    http_settings: HttpSettings,
    /// What each user plugin may do.
    grants: Grants,
    /// Plugins-directory files that are not loaded, and why.
    refused: RwLock<BTreeMap<PathBuf, Refusal>>,
    http: Arc<http::HttpClient>,
    kv: Arc<kv::KvCache>,
    sql: Arc<sql::SqlPools>,
    observe_call: CallObserver,
}

/// One call into a plugin.
enum Call {
    Describe,
    Validate(String),
    Plan(StepContext, String),
    Execute(StepContext, String, String),
    Resume(StepContext, String, String),
}

enum Reply {
    Describe(Descriptor),
    Validate(Result<(), Vec<ConfigError>>),
    Step(Result<Outcome, StepError>),
    Plan(Result<Plan, StepError>),
}

impl PluginHost {
    /// Creates the engine and loads `builtins`, compiling them into `cache_dir` the first
    /// time.
    pub async fn new(
        limits: Limits,
        cache_dir: &Path,
        http_settings: HttpSettings,
        grants: Grants,
        builtins: Builtins,
        observe_call: CallObserver,
    ) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&limits))
            .map_err(|err| anyhow::anyhow!("{err:#}"))
            .context("cannot create the WebAssembly engine")?;
        start_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|err| anyhow::anyhow!("{err:#}"))?;
        StepPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|err| anyhow::anyhow!("{err:#}"))?;
        let host = Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                limits,
                cache_dir: cache_dir.to_owned(),
                step_slots: tokio::sync::Semaphore::new(MAX_STEP_CALLS as usize),
                quick_slots: tokio::sync::Semaphore::new(MAX_QUICK_CALLS as usize),
                http: Arc::new(
                    http::HttpClient::new(&http_settings)
                        .context("cannot create the HTTP client")?,
                ),
                http_settings,
                grants,
                refused: RwLock::default(),
                kv: Arc::default(),
                sql: Arc::default(),
                observe_call,
            }),
            plugins: Arc::default(),
        };
        cache::prepare_dir(cache_dir)?;
        // Compiled side by side: a cold cache costs the slowest plugin, not their sum.
        let loads = builtins.iter().map(|(name, bytes)| {
            let host = host.clone();
            async move {
                host.load(bytes, Origin::Builtin)
                    .await
                    .with_context(|| format!("cannot load the built-in `{name}` plugin"))
            }
        });
        for loaded in futures::future::join_all(loads).await {
            loaded?;
        }
        Ok(host)
    }

    /// Loads every `*.wasm` component in `dir` (a missing dir is fine). A broken component is
    /// reported and skipped; it never stops the others.
    pub async fn load_dir(&self, dir: &Path) -> Vec<(PathBuf, anyhow::Error)> {
        let mut failures = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return failures;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        paths.sort();
        for path in paths {
            if let Err(err) = self.load_file(&path).await {
                failures.push((path, err));
            }
        }
        failures
    }

    /// Loads (or reloads) the component in `path`. A broken one is reported and never
    /// registered: what that file provided before stays, unless it is refused for want of a
    /// grant (see [`PluginHost::load_checked`]).
    pub async fn load_file(&self, path: &Path) -> anyhow::Result<String> {
        let mut refusal = Refusal::default();
        let result = match std::fs::read(path) {
            Ok(bytes) => {
                self.load_checked(&bytes, Origin::File(path.to_owned()), &mut refusal)
                    .await
            }
            Err(err) => Err(anyhow::Error::from(err).context("cannot read the file")),
        };
        let mut refused = self.refused_mut();
        match &result {
            Ok(_) => {
                refused.remove(path);
            }
            Err(err) => {
                tracing::error!(path = %path.display(), error = %format!("{err:#}"), "plugin not loaded");
                refusal.reason = format!("{err:#}");
                refused.insert(path.to_owned(), refusal);
            }
        }
        result
    }

    /// Refuses a file that claims a built-in kind: checked before its grants, so that its
    /// author reads why it can never load rather than what to grant it.
    fn refuse_builtin_kind(&self, kind: &str) -> anyhow::Result<()> {
        match self.plugin(kind) {
            Ok(plugin) if plugin.origin == Origin::Builtin => Err(builtin_kind(kind)),
            _ => Ok(()),
        }
    }

    fn refused_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<PathBuf, Refusal>> {
        self.inner
            .refused
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Unregisters what the component in `path` provided; runs holding a snapshot keep it.
    /// Returns the kinds removed.
    pub fn unload_file(&self, path: &Path) -> Vec<String> {
        self.refused_mut().remove(path);
        let removed = self.unload_origin(&Origin::File(path.to_owned()));
        for kind in &removed {
            tracing::info!(kind = %kind, path = %path.display(), "plugin removed");
        }
        removed
    }

    /// A handle that keeps seeing today's plugins whatever later happens to the directory.
    pub fn snapshot(&self) -> Self {
        let current = self
            .plugins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Self {
            inner: self.inner.clone(),
            plugins: Arc::new(RwLock::new(current)),
        }
    }

    fn plugins_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<LoadedPlugin>>> {
        self.plugins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Validates, compiles (or loads from the cache) and registers one component.
    pub async fn load(&self, bytes: &[u8], origin: Origin) -> anyhow::Result<String> {
        let mut refusal = Refusal::default();
        self.load_checked(bytes, origin, &mut refusal).await
    }

    /// [`PluginHost::load`], noting in `refusal` what was learnt about the component before
    /// it was refused. A user plugin is checked against its grants: one that imports an
    /// interface it was not granted is refused, and no longer provides what it did.
    async fn load_checked(
        &self,
        bytes: &[u8],
        origin: Origin,
        refusal: &mut Refusal,
    ) -> anyhow::Result<String> {
        let (probe, descriptor) = self.examine(bytes, &origin, refusal).await?;
        let kind = descriptor.kind.clone();
        refusal.kind = Some(kind.clone());
        if origin != Origin::Builtin {
            self.refuse_builtin_kind(&kind)?;
        }
        if origin != Origin::Builtin
            && let Err(reason) = grants::check(
                &kind,
                &probe.imports,
                &descriptor.capabilities,
                &self.inner.grants.of(&kind),
            )
        {
            // Whatever this file provided under grants it no longer has goes too.
            let removed = self.unload_origin(&origin);
            if !removed.is_empty() {
                tracing::info!(kind = %kind, "plugin unloaded: {reason}");
            }
            anyhow::bail!("step kind `{kind}` is refused: {reason}");
        }
        let mut plugins = self.plugins_mut();
        // A file may replace its own earlier load, never another source's kind.
        match plugins.get(&kind).map(|existing| &existing.origin) {
            Some(Origin::Builtin) if origin != Origin::Builtin => {
                return Err(builtin_kind(&kind));
            }
            Some(Origin::File(other)) if origin != Origin::File(other.clone()) => {
                anyhow::bail!(
                    "step kind `{kind}` is already provided by {}",
                    other.display()
                );
            }
            _ => {}
        }
        if let Origin::File(_) = &origin {
            // A file rebuilt to provide another kind no longer provides its old one.
            plugins.retain(|other, plugin| other == &kind || plugin.origin != origin);
        }
        tracing::info!(kind = %kind, version = %descriptor.version, origin = ?origin, "plugin loaded");
        plugins.insert(
            kind.clone(),
            Arc::new(LoadedPlugin {
                descriptor: Arc::new(descriptor),
                origin,
                pre: probe.pre,
                hash: probe.hash,
                imports: probe.imports,
                wit_version: probe.wit_version,
            }),
        );
        Ok(kind)
    }

    /// Compiles (or loads from the cache) a component, checks the contract version it was
    /// built against, and asks it to describe itself; registers nothing.
    async fn examine(
        &self,
        bytes: &[u8],
        origin: &Origin,
        refusal: &mut Refusal,
    ) -> anyhow::Result<(LoadedPlugin, Descriptor)> {
        let engine = self.inner.engine.clone();
        let cache_dir = self.inner.cache_dir.clone();
        let owned = bytes.to_vec();
        // Compiling is CPU-heavy: keep it off the async workers.
        let (component, hash) =
            tokio::task::spawn_blocking(move || cache::load(&engine, &owned, &cache_dir))
                .await
                .context("the compile task panicked")??;
        let imports = grants::imports(&component, &self.inner.engine);
        refusal.hash = Some(hash.clone());
        refusal.imports.clone_from(&imports);
        let wit_version = grants::contract_version(&component, &self.inner.engine)?;
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|err| anyhow::anyhow!("{err:#}"))
            .context("the component imports something the daemon does not provide")?;
        let pre = StepPluginPre::new(instance_pre)
            .map_err(|err| anyhow::anyhow!("{err:#}"))
            .with_context(|| {
                format!("the component does not export `runbook:plugin/step@{wit_version}`")
            })?;
        let probe = LoadedPlugin {
            descriptor: Arc::new(placeholder_descriptor()),
            origin: origin.clone(),
            pre,
            hash,
            imports,
            wit_version,
        };
        let Reply::Describe(descriptor) = self
            .invoke(
                &probe,
                Call::Describe,
                Grant::none(),
                self.inner.limits.call_timeout,
            )
            .await?
        else {
            unreachable!("describe replies with a descriptor");
        };
        if !is_step_kind(&descriptor.kind) {
            anyhow::bail!(
                "its describe names the step kind {:?}, which is not one (1 to {MAX_KIND_LEN} lowercase letters, digits, `-` and `_`)",
                descriptor
                    .kind
                    .chars()
                    .take(MAX_KIND_LEN + 1)
                    .collect::<String>()
            );
        }
        Ok((probe, descriptor))
    }

    /// What a component would provide, checked as a load from the plugins directory checks
    /// it (with `extra` granted on top of what its kind has), without registering it.
    pub async fn inspect(
        &self,
        bytes: &[u8],
        extra: &PluginGrant,
    ) -> anyhow::Result<PluginListing> {
        let origin = Origin::File(PathBuf::new());
        let (probe, descriptor) = self
            .examine(bytes, &origin, &mut Refusal::default())
            .await?;
        let kind = descriptor.kind.clone();
        self.refuse_builtin_kind(&kind)?;
        let granted = self.inner.grants.of(&kind).union(extra);
        grants::check(&kind, &probe.imports, &descriptor.capabilities, &granted)
            .map_err(|reason| anyhow::anyhow!("step kind `{kind}` is refused: {reason}"))?;
        Ok(PluginListing {
            kind,
            version: descriptor.version.clone(),
            origin,
            hash: probe.hash,
            imports: probe.imports,
            capabilities: descriptor.capabilities,
            wit_version: probe.wit_version,
            refused: None,
        })
    }

    /// Unregisters every kind `origin` provides; returns them.
    fn unload_origin(&self, origin: &Origin) -> Vec<String> {
        let mut plugins = self.plugins_mut();
        let removed: Vec<String> = plugins
            .iter()
            .filter(|(_, plugin)| &plugin.origin == origin)
            .map(|(kind, _)| kind.clone())
            .collect();
        for kind in &removed {
            plugins.remove(kind);
        }
        removed
    }

    /// The SHA-256 (hex) of the component that provides `kind` to this handle.
    pub fn hash_of(&self, kind: &str) -> Option<String> {
        self.plugin(kind).ok().map(|plugin| plugin.hash.clone())
    }

    /// The plugins-directory file that provides `kind`, loaded or refused.
    pub fn file_of(&self, kind: &str) -> Option<PathBuf> {
        if let Ok(plugin) = self.plugin(kind) {
            return match &plugin.origin {
                Origin::File(path) => Some(path.clone()),
                Origin::Builtin => None,
            };
        }
        self.inner
            .refused
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(_, refusal)| refusal.kind.as_deref() == Some(kind))
            .map(|(path, _)| path.clone())
    }

    /// The grants of user plugins.
    pub fn grants(&self) -> &Grants {
        &self.inner.grants
    }

    /// What a user plugin of `kind` is granted; `None` for a built-in one, which keeps its
    /// documented defaults.
    pub fn user_grant(&self, kind: &str) -> Option<PluginGrant> {
        let plugin = self.plugin(kind).ok()?;
        (plugin.origin != Origin::Builtin).then(|| self.inner.grants.of(kind))
    }

    /// Every loaded plugin, by kind, then every refused file, by path.
    pub fn listing(&self) -> Vec<PluginListing> {
        let loaded: Vec<PluginListing> = self
            .plugins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|plugin| PluginListing {
                kind: plugin.descriptor.kind.clone(),
                version: plugin.descriptor.version.clone(),
                origin: plugin.origin.clone(),
                hash: plugin.hash.clone(),
                imports: plugin.imports.clone(),
                capabilities: plugin.descriptor.capabilities.clone(),
                wit_version: plugin.wit_version.clone(),
                refused: None,
            })
            .collect();
        let refused = self
            .inner
            .refused
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(path, refusal)| PluginListing {
                kind: refusal.kind.clone().unwrap_or_default(),
                version: String::new(),
                origin: Origin::File(path.clone()),
                hash: refusal.hash.clone().unwrap_or_default(),
                imports: refusal.imports.clone(),
                capabilities: Vec::new(),
                wit_version: String::new(),
                refused: Some(refusal.reason.clone()),
            })
            .collect::<Vec<_>>();
        loaded.into_iter().chain(refused).collect()
    }

    fn plugin(&self, kind: &str) -> Result<Arc<LoadedPlugin>, PluginError> {
        self.plugins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kind)
            .cloned()
            .ok_or_else(|| PluginError::UnknownKind(kind.to_owned()))
    }

    /// The step kinds that can be used, sorted.
    pub fn kinds(&self) -> Vec<String> {
        self.plugins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// What a plugin says about itself.
    pub fn descriptor(&self, kind: &str) -> Result<Arc<Descriptor>, PluginError> {
        Ok(Arc::clone(&self.plugin(kind)?.descriptor))
    }

    /// Asks a plugin to check a `with` table.
    pub async fn validate(
        &self,
        kind: &str,
        config: &str,
    ) -> Result<Result<(), Vec<ConfigError>>, PluginError> {
        let plugin = self.plugin(kind)?;
        match self
            .invoke(
                &plugin,
                Call::Validate(config.to_owned()),
                Grant::none(),
                self.inner.limits.call_timeout,
            )
            .await?
        {
            Reply::Validate(result) => Ok(result),
            _ => unreachable!("validate replies with a validation"),
        }
    }

    /// Asks a plugin what a step would do.
    pub async fn plan(
        &self,
        kind: &str,
        ctx: StepContext,
        config: &str,
    ) -> Result<Result<Plan, StepError>, PluginError> {
        let plugin = self.plugin(kind)?;
        match self
            .invoke(
                &plugin,
                Call::Plan(ctx, config.to_owned()),
                Grant::none(),
                self.inner.limits.call_timeout,
            )
            .await?
        {
            Reply::Plan(result) => Ok(result),
            _ => unreachable!("plan replies with a plan"),
        }
    }

    /// Runs a step. `grant` bounds what it may do; `timeout` is the step's wall clock.
    pub async fn execute(
        &self,
        kind: &str,
        ctx: StepContext,
        config: &str,
        inputs: &str,
        grant: Grant,
        timeout: Duration,
    ) -> Result<Result<Outcome, StepError>, PluginError> {
        let plugin = self.plugin(kind)?;
        let call = Call::Execute(ctx, config.to_owned(), inputs.to_owned());
        match self.invoke(&plugin, call, grant, timeout).await? {
            Reply::Step(result) => Ok(result),
            _ => unreachable!("execute replies with an outcome"),
        }
    }

    /// Continues a step that returned `waiting`.
    pub async fn resume(
        &self,
        kind: &str,
        ctx: StepContext,
        config: &str,
        token: &str,
        grant: Grant,
        timeout: Duration,
    ) -> Result<Result<Outcome, StepError>, PluginError> {
        let plugin = self.plugin(kind)?;
        let call = Call::Resume(ctx, config.to_owned(), token.to_owned());
        match self.invoke(&plugin, call, grant, timeout).await? {
            Reply::Step(result) => Ok(result),
            _ => unreachable!("resume replies with an outcome"),
        }
    }

    /// Tries a database connection once: the URL's database and location (never its
    /// credentials), and whether it answered within `timeout`.
    pub async fn probe_connection(
        &self,
        grant: &SqlGrant,
        secrets: &SecretScope,
        timeout: Duration,
    ) -> (String, String, Result<(), String>) {
        let call = sql::SqlCall {
            grants: std::slice::from_ref(grant),
            secrets,
            deadline: Some(tokio::time::Instant::now() + timeout),
        };
        let (database, location) = match sql::SqlPools::resolve_url(&call, grant) {
            Ok(url) => sql::describe_url(&url),
            Err(_) => (String::new(), String::new()),
        };
        let result = self.inner.sql.probe(&call, grant).await;
        (database, location, result.map_err(|err| secrets.mask(&err)))
    }

    /// The hosts a plugin may reach: built-in plugins any host unless the daemon config
    /// restricts them, a plugin from the plugins directory only the hosts it was granted.
    fn allowlist(&self, plugin: &LoadedPlugin) -> HostAllowlist {
        let settings = &self.inner.http_settings;
        match &plugin.origin {
            Origin::Builtin => settings
                .builtin_hosts
                .clone()
                .map_or_else(HostAllowlist::any, HostAllowlist::only),
            Origin::File(_) => HostAllowlist::only(
                self.inner
                    .grants
                    .of(&plugin.descriptor.kind)
                    .hosts
                    .into_iter()
                    .collect(),
            ),
        }
    }

    /// One bounded call on a fresh instance.
    async fn invoke(
        &self,
        plugin: &LoadedPlugin,
        call: Call,
        grant: Grant,
        timeout: Duration,
    ) -> Result<Reply, PluginError> {
        let kind = plugin.descriptor.kind.clone();
        let function = match call {
            Call::Describe => "describe",
            Call::Validate(_) => "validate",
            Call::Plan(..) => "plan",
            Call::Execute(..) => "execute",
            Call::Resume(..) => "resume",
        };
        let started = std::time::Instant::now();
        // Waiting for a slot counts against the call's time: a step whose deadline passes
        // while every slot is taken times out instead of waiting without end.
        let deadline = tokio::time::Instant::now() + timeout;
        let slots = match call {
            Call::Execute(..) | Call::Resume(..) => &self.inner.step_slots,
            Call::Describe | Call::Validate(_) | Call::Plan(..) => &self.inner.quick_slots,
        };
        // The semaphores are never closed, so acquiring only waits.
        let Ok(_slot) = tokio::time::timeout_at(deadline, slots.acquire()).await else {
            return Err(PluginError::Timeout { kind, timeout });
        };
        let limits = self.inner.limits;
        let services = CallServices {
            kind: kind.clone(),
            http: self.inner.http.clone(),
            allow: if grant.network {
                self.allowlist(plugin)
            } else {
                HostAllowlist::none()
            },
            kv: self.inner.kv.clone(),
            sql: self.inner.sql.clone(),
        };
        let mut store = Store::new(
            &self.inner.engine,
            HostState::new(sandbox::Meter::new(&limits), grant, services),
        );
        sandbox::install(&mut store);
        let run = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            let step = instance.runbook_plugin_step();
            Ok::<_, wasmtime::Error>(match call {
                Call::Describe => Reply::Describe(step.call_describe(&mut store).await?),
                Call::Validate(config) => {
                    Reply::Validate(step.call_validate(&mut store, &config).await?)
                }
                Call::Plan(ctx, config) => {
                    Reply::Plan(step.call_plan(&mut store, &ctx, &config).await?)
                }
                Call::Execute(ctx, config, inputs) => Reply::Step(
                    step.call_execute(&mut store, &ctx, &config, &inputs)
                        .await?,
                ),
                Call::Resume(ctx, config, token) => {
                    Reply::Step(step.call_resume(&mut store, &ctx, &config, &token).await?)
                }
            })
        };
        let result = tokio::time::timeout_at(deadline, run).await;
        (self.inner.observe_call)(&kind, function, started.elapsed());
        match result {
            Err(_) => Err(PluginError::Timeout { kind, timeout }),
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(err)) => Err(match store.data().meter_ref().limit_hit() {
                Some(LimitHit::Memory(limit)) => PluginError::MemoryLimit { kind, limit },
                Some(LimitHit::Cpu) => PluginError::CpuLimit {
                    kind,
                    budget: limits.cpu,
                },
                None => PluginError::Trap {
                    kind,
                    message: format!("{err:#}"),
                },
            }),
        }
    }
}

/// Why a file may not provide `kind`.
fn builtin_kind(kind: &str) -> anyhow::Error {
    anyhow::anyhow!("step kind `{kind}` is built in and cannot be replaced")
}

fn placeholder_descriptor() -> Descriptor {
    Descriptor {
        kind: "(loading)".into(),
        version: String::new(),
        description: String::new(),
        config_schema: String::new(),
        capabilities: Vec::new(),
        idempotent: false,
        needs_approval: true,
    }
}

fn engine_config(limits: &Limits) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
        .total_core_instances(MAX_CONCURRENT_INSTANCES * 8)
        .total_memories(MAX_CONCURRENT_INSTANCES * 2)
        .total_tables(MAX_CONCURRENT_INSTANCES * 4)
        .total_stacks(MAX_CONCURRENT_INSTANCES)
        // The limiter enforces the configured cap (and says so); the pool only needs room.
        .max_memory_size(limits.memory_bytes.saturating_mul(2))
        // Returning a slot's memory to the kernel flushes every core's TLB; doing it for
        // several slots at once costs one flush instead of one a call.
        .decommit_batch_size(32)
        // A step's instance is thrown away after one call, so resetting its slot is on every
        // step's path. Pages it dirtied are reset in place (found with Linux's PAGEMAP_SCAN
        // where the kernel has it, 6.7 and later) instead of being handed back to the kernel
        // and faulted in, zeroed, by the next call: that was a fifth of a no-op step's time.
        // Only slots that were used keep pages, at most this much each.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
        .pagemap_scan(wasmtime::Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every tick for as long as the engine lives.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(sandbox::EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(|err| tracing::error!(error = %err, "cannot start the epoch ticker"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_kind_is_a_short_lowercase_name_and_never_a_path() {
        for kind in [
            "http",
            "ping-pong",
            "word_count",
            "k8s",
            &"a".repeat(MAX_KIND_LEN),
        ] {
            assert!(is_step_kind(kind), "{kind}");
        }
        for kind in [
            "",
            "../evil",
            "a/b",
            "Shell",
            "with space",
            "bell\u{7}",
            &"a".repeat(MAX_KIND_LEN + 1),
        ] {
            assert!(!is_step_kind(kind), "{kind:?}");
        }
    }
}
