//! What a user plugin may do, read from the component itself: the host interfaces it imports
//! are checked at load against what its `describe` declares and what the operator granted
//! (in the daemon config's `[plugins.KIND]` or with `runbook plugin grant`). A plugin that
//! imports an interface it was not granted is refused before any step can call it; built-in
//! plugins keep their documented defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// The package every host interface belongs to (its version is the contract's).
const PACKAGE: &str = "runbook:plugin/";

/// A host interface a plugin may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Interface {
    Events,
    Cache,
    Http,
    Sql,
    Process,
    Jwt,
}

impl Interface {
    const ALL: [Self; 6] = [
        Self::Events,
        Self::Cache,
        Self::Http,
        Self::Sql,
        Self::Process,
        Self::Jwt,
    ];

    /// Its name in `capabilities` and in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Cache => "cache",
            Self::Http => "http",
            Self::Sql => "sql",
            Self::Process => "process",
            Self::Jwt => "jwt",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|interface| interface.name() == name)
    }

    /// The interface an import names (`runbook:plugin/http@0.1.0`), if it is one of ours;
    /// `types` and WASI are not capabilities.
    fn of_import(import: &str) -> Option<Self> {
        let rest = import.strip_prefix(PACKAGE)?;
        let name = rest.split_once('@').map_or(rest, |(name, _)| name);
        Self::from_name(name)
    }

    /// Whether using it needs the operator's grant: logging and the plugin's own cache
    /// reach nothing outside the daemon.
    fn needs_grant(self) -> bool {
        !matches!(self, Self::Events | Self::Cache)
    }

    /// The `runbook plugin grant` options that grant it.
    fn grant_hint(self) -> &'static str {
        match self {
            Self::Http => "--host HOST",
            Self::Sql => "--connection NAME",
            Self::Process => "--process",
            Self::Jwt => "--jwt",
            Self::Events | Self::Cache => "",
        }
    }
}

/// Whether a user plugin's steps wait for a human, as `runbook plugin grant --approval` set
/// it (the daemon config's `[approvals]` entry for the kind, when there is one, wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    Required,
    Auto,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Auto => "auto",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "required" => Some(Self::Required),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }
}

/// What one step kind's plugin is granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginGrant {
    /// Hosts its `http` calls may reach (`name`, `name:port`, `*.domain` or `*`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub hosts: BTreeSet<String>,
    /// Database connections its `sql` calls may use, by name.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub connections: BTreeSet<String>,
    /// It may run processes (still only those its approved plan names).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub process: bool,
    /// It may have the host sign JSON Web Tokens with keys from the vault.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jwt: bool,
    /// Whether its steps wait for an approval; `None`: its plugin's own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

impl PluginGrant {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Everything either grants.
    pub fn union(&self, other: &Self) -> Self {
        Self {
            hosts: self.hosts.union(&other.hosts).cloned().collect(),
            connections: self
                .connections
                .union(&other.connections)
                .cloned()
                .collect(),
            process: self.process || other.process,
            jwt: self.jwt || other.jwt,
            // The newer word on approvals replaces the older.
            approval: other.approval.or(self.approval),
        }
    }

    /// What is left once `other`'s grants are taken away.
    pub fn without(&self, other: &Self) -> Self {
        Self {
            hosts: self.hosts.difference(&other.hosts).cloned().collect(),
            connections: self
                .connections
                .difference(&other.connections)
                .cloned()
                .collect(),
            process: self.process && !other.process,
            jwt: self.jwt && !other.jwt,
            approval: self.approval.filter(|_| other.approval.is_none()),
        }
    }

    fn grants(&self, interface: Interface) -> bool {
        match interface {
            Interface::Events | Interface::Cache => true,
            Interface::Http => !self.hosts.is_empty(),
            Interface::Sql => !self.connections.is_empty(),
            Interface::Process => self.process,
            Interface::Jwt => self.jwt,
        }
    }
}

/// The grants of every user plugin: the daemon config's (fixed while it runs) and those
/// given with `runbook plugin grant` (stored by the daemon). A plugin has both.
#[derive(Clone, Default)]
pub struct Grants {
    config: Arc<BTreeMap<String, PluginGrant>>,
    stored: Arc<RwLock<BTreeMap<String, PluginGrant>>>,
}

impl Grants {
    pub fn new(config: BTreeMap<String, PluginGrant>) -> Self {
        Self {
            config: Arc::new(config),
            stored: Arc::default(),
        }
    }

    /// Replaces what `runbook plugin grant` gave `kind` (an empty grant removes it).
    pub fn set_stored(&self, kind: &str, grant: PluginGrant) {
        let mut stored = self
            .stored
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if grant.is_empty() {
            stored.remove(kind);
        } else {
            stored.insert(kind.to_owned(), grant);
        }
    }

    /// What `runbook plugin grant` gave `kind`.
    pub fn stored(&self, kind: &str) -> PluginGrant {
        self.stored
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kind)
            .cloned()
            .unwrap_or_default()
    }

    /// What the daemon config gives `kind`.
    pub fn configured(&self, kind: &str) -> PluginGrant {
        self.config.get(kind).cloned().unwrap_or_default()
    }

    /// Everything `kind` is granted.
    pub fn of(&self, kind: &str) -> PluginGrant {
        self.configured(kind).union(&self.stored(kind))
    }
}

/// The host interfaces a component imports, by name (`runbook:plugin/process@0.1.0`).
pub fn imports(
    component: &wasmtime::component::Component,
    engine: &wasmtime::Engine,
) -> Vec<String> {
    let mut names: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    names.sort();
    names
}

/// The versions of the `runbook:plugin` package this daemon runs components of.
pub const SUPPORTED_CONTRACTS: &[&str] = &["0.1.0"];

/// The version of the `runbook:plugin` package a component was built against, read from its
/// `step` export; refused, naming both versions, when this daemon does not support it.
pub fn contract_version(
    component: &wasmtime::component::Component,
    engine: &wasmtime::Engine,
) -> anyhow::Result<String> {
    let export = format!("{PACKAGE}step@");
    let supported = SUPPORTED_CONTRACTS
        .iter()
        .map(|version| format!("`runbook:plugin@{version}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let component_type = component.component_type();
    let Some(version) = component_type
        .exports(engine)
        .find_map(|(name, _)| name.strip_prefix(&export).map(str::to_owned))
    else {
        anyhow::bail!(
            "the component does not export `{PACKAGE}step`: it is not a step plugin (this daemon runs {supported})"
        );
    };
    if !SUPPORTED_CONTRACTS.contains(&version.as_str()) {
        anyhow::bail!(
            "the component is built against `runbook:plugin@{version}`; this daemon runs {supported}"
        );
    }
    Ok(version)
}

/// Checks a user plugin's imports against its declared `capabilities` and its grant. The
/// first problem found, worded for the operator who must act on it.
pub fn check(
    kind: &str,
    imports: &[String],
    capabilities: &[String],
    grant: &PluginGrant,
) -> Result<(), String> {
    let imported: BTreeSet<Interface> = imports
        .iter()
        .filter_map(|name| Interface::of_import(name))
        .collect();
    let mut declared = BTreeSet::new();
    for capability in capabilities {
        let Some(interface) = Interface::from_name(capability) else {
            return Err(format!(
                "its `capabilities` name `{capability}`, which is not a host interface (known: {})",
                Interface::ALL.map(Interface::name).join(", ")
            ));
        };
        declared.insert(interface);
    }
    for &interface in &imported {
        if !declared.contains(&interface) {
            return Err(format!(
                "it imports `{PACKAGE}{}` but its `capabilities` do not declare `{}`",
                interface.name(),
                interface.name()
            ));
        }
    }
    // A declared interface that needs a grant must be used: an operator is never asked to
    // grant what the plugin cannot do.
    for &interface in &declared {
        if interface.needs_grant() && !imported.contains(&interface) {
            return Err(format!(
                "its `capabilities` declare `{}` but it does not import `{PACKAGE}{}`",
                interface.name(),
                interface.name()
            ));
        }
    }
    let missing: Vec<Interface> = imported
        .into_iter()
        .filter(|&interface| !grant.grants(interface))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = missing
        .iter()
        .map(|interface| format!("`{PACKAGE}{}`", interface.name()))
        .collect();
    let options: Vec<&str> = missing
        .iter()
        .map(|interface| interface.grant_hint())
        .collect();
    let them = if missing.len() == 1 { "it" } else { "them" };
    Err(format!(
        "it imports {}, which it is not granted; grant {them} with `runbook plugin grant {kind} {}`",
        names.join(" and "),
        options.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn an_ungranted_import_is_refused_with_the_command_that_grants_it() {
        let imports = names(&["runbook:plugin/process@0.1.0", "runbook:plugin/types@0.1.0"]);
        let err = check(
            "deploy",
            &imports,
            &names(&["process"]),
            &PluginGrant::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "it imports `runbook:plugin/process`, which it is not granted; grant it with `runbook plugin grant deploy --process`"
        );
        let granted = PluginGrant {
            process: true,
            ..PluginGrant::default()
        };
        assert_eq!(
            check("deploy", &imports, &names(&["process"]), &granted),
            Ok(())
        );
    }

    #[test]
    fn each_interface_is_granted_by_its_own_grant() {
        let cases = [
            ("http", "--host HOST"),
            ("sql", "--connection NAME"),
            ("process", "--process"),
            ("jwt", "--jwt"),
        ];
        for (interface, hint) in cases {
            let imports = names(&[&format!("runbook:plugin/{interface}@0.1.0")]);
            let err =
                check("k", &imports, &names(&[interface]), &PluginGrant::default()).unwrap_err();
            assert!(
                err.ends_with(&format!("`runbook plugin grant k {hint}`")),
                "{err}"
            );
        }
        let all = PluginGrant {
            hosts: ["api.example.com".to_owned()].into(),
            connections: ["main".to_owned()].into(),
            process: true,
            jwt: true,
            approval: None,
        };
        let every = names(&[
            "runbook:plugin/http@0.1.0",
            "runbook:plugin/sql@0.1.0",
            "runbook:plugin/process@0.1.0",
            "runbook:plugin/jwt@0.1.0",
            "runbook:plugin/events@0.1.0",
            "runbook:plugin/cache@0.1.0",
            "wasi:cli/environment@0.2.0",
        ]);
        let declared = names(&["http", "sql", "process", "jwt", "events", "cache"]);
        assert_eq!(check("k", &every, &declared, &all), Ok(()));
    }

    #[test]
    fn every_missing_grant_is_named_at_once() {
        let imports = names(&["runbook:plugin/sql@0.1.0", "runbook:plugin/process@0.1.0"]);
        let err = check(
            "rogue",
            &imports,
            &names(&["process", "sql"]),
            &PluginGrant::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "it imports `runbook:plugin/sql` and `runbook:plugin/process`, which it is not granted; grant them with `runbook plugin grant rogue --connection NAME --process`"
        );
    }

    #[test]
    fn logging_and_the_cache_need_no_grant() {
        let imports = names(&["runbook:plugin/events@0.1.0", "runbook:plugin/cache@0.1.0"]);
        let declared = names(&["events", "cache"]);
        assert_eq!(
            check("k", &imports, &declared, &PluginGrant::default()),
            Ok(())
        );
        // Declaring that it may log without logging yet is fine.
        assert_eq!(
            check("k", &[], &names(&["events"]), &PluginGrant::default()),
            Ok(())
        );
    }

    #[test]
    fn capabilities_must_match_the_imports() {
        let grant = PluginGrant {
            process: true,
            ..PluginGrant::default()
        };
        let hidden = check(
            "k",
            &names(&["runbook:plugin/process@0.1.0"]),
            &names(&["events"]),
            &grant,
        )
        .unwrap_err();
        assert_eq!(
            hidden,
            "it imports `runbook:plugin/process` but its `capabilities` do not declare `process`"
        );
        let unused = check("k", &[], &names(&["process"]), &grant).unwrap_err();
        assert_eq!(
            unused,
            "its `capabilities` declare `process` but it does not import `runbook:plugin/process`"
        );
        let unknown = check("k", &[], &names(&["network"]), &grant).unwrap_err();
        assert!(
            unknown.starts_with("its `capabilities` name `network`"),
            "{unknown}"
        );
    }

    fn component(wat: &str) -> (wasmtime::component::Component, wasmtime::Engine) {
        let engine = wasmtime::Engine::default();
        let bytes = wat::parse_str(wat).unwrap();
        let component = wasmtime::component::Component::new(&engine, bytes).unwrap();
        (component, engine)
    }

    #[test]
    fn a_component_built_against_another_contract_is_refused_naming_both_versions() {
        let (newer, engine) = component(
            r#"(component (instance $step) (export "runbook:plugin/step@0.2.0" (instance $step)))"#,
        );
        let err = contract_version(&newer, &engine).unwrap_err().to_string();
        assert_eq!(
            err,
            "the component is built against `runbook:plugin@0.2.0`; this daemon runs `runbook:plugin@0.1.0`"
        );
        let (current, engine) = component(
            r#"(component (instance $step) (export "runbook:plugin/step@0.1.0" (instance $step)))"#,
        );
        assert_eq!(contract_version(&current, &engine).unwrap(), "0.1.0");
        let (other, engine) = component("(component)");
        let err = contract_version(&other, &engine).unwrap_err().to_string();
        assert!(err.contains("it is not a step plugin"), "{err}");
    }

    #[test]
    fn the_newer_approval_replaces_the_older_and_revoking_any_approval_drops_it() {
        let auto = PluginGrant {
            approval: Some(Approval::Auto),
            ..PluginGrant::default()
        };
        let required = PluginGrant {
            approval: Some(Approval::Required),
            ..PluginGrant::default()
        };
        assert_eq!(auto.union(&required).approval, Some(Approval::Required));
        assert_eq!(
            auto.union(&PluginGrant::default()).approval,
            Some(Approval::Auto)
        );
        assert_eq!(auto.without(&required).approval, None);
        assert!(auto.without(&required).is_empty());
    }

    #[test]
    fn grants_add_up_and_are_taken_away() {
        let config = PluginGrant {
            hosts: ["a".to_owned()].into(),
            ..PluginGrant::default()
        };
        let grants = Grants::new([("k".to_owned(), config)].into());
        grants.set_stored(
            "k",
            PluginGrant {
                hosts: ["b".to_owned()].into(),
                process: true,
                ..PluginGrant::default()
            },
        );
        let all = grants.of("k");
        assert_eq!(all.hosts, ["a".to_owned(), "b".to_owned()].into());
        assert!(all.process);
        let less = grants.stored("k").without(&PluginGrant {
            process: true,
            ..PluginGrant::default()
        });
        grants.set_stored("k", less);
        assert!(!grants.of("k").process);
        grants.set_stored("k", PluginGrant::default());
        assert_eq!(grants.of("k").hosts, ["a".to_owned()].into());
    }
}
