//! The short way to write a step: a typed config whose JSON Schema is generated from its Rust
//! type, the calls that differ from one step to the next, and defaults for the rest.
//! [`export_step!`](crate::export_step) makes the type the component's `step` export.
//!
//! What the defaults do: `describe` is built from the constants and the config's schema;
//! `validate` parses the config (an unknown field or a wrong type names its field) and adds
//! [`Step::check`]; `plan` is [`Step::summary`] with [`Step::effects`] (a note of the summary
//! unless said otherwise); `resume` refuses, as these steps never wait. A step that answers
//! `waiting` (an HTTP 202 polled later) implements the low-level
//! [`Guest`](crate::exports::runbook::plugin::step::Guest) instead.

use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::exports::runbook::plugin::step::Guest;
pub use crate::runbook::plugin::types::{
    ConfigError, Descriptor, Effect, Outcome, StepContext, StepError, StepPlan,
};

/// A step's inputs: `params`, and `steps.<id>` with the `status` and `output` of each step
/// its templates read.
pub type Inputs = serde_json::Value;

/// A step kind.
pub trait Step {
    /// The kind runbooks name in `uses`.
    const KIND: &'static str;
    /// One line for humans.
    const DESCRIPTION: &'static str;
    /// The host interfaces it calls: `events`, `process`, `http`, `cache`, `sql`, `jwt`. The
    /// daemon checks them at load against what the built component imports: every imported
    /// interface must be declared, and each of `http`, `sql`, `process` and `jwt` declared
    /// must be imported (and granted, for a plugin from the plugins directory).
    const CAPABILITIES: &'static [&'static str] = &["events"];
    /// Whether running a step twice is harmless: after a crash the daemon runs an interrupted
    /// step again only then, and marks it `ambiguous` otherwise.
    const IDEMPOTENT: bool = false;
    /// Whether its steps wait for a human's approval by default.
    const NEEDS_APPROVAL: bool = false;

    /// The step's `with` table. Fields that may hold a template (`{{ params.x }}`) should be
    /// strings: `validate` sees the template, not its value.
    type Config: DeserializeOwned + JsonSchema;

    /// Problems the types cannot say (an empty name, a bad combination), each naming its
    /// field with [`crate::config_error`]. Checked at `validate`, `plan` and `execute`.
    fn check(_config: &Self::Config) -> Vec<ConfigError> {
        Vec::new()
    }

    /// One line an approver reads: what the step will do.
    fn summary(config: &Self::Config) -> String;

    /// The side effects the plan names. The host grants only what a plan names: a step that
    /// runs a process or SQL lists it here ([`Effect::Process`], [`Effect::Sql`]).
    fn effects(config: &Self::Config) -> Vec<Effect> {
        vec![Effect::Note(Self::summary(config))]
    }

    /// Does the step's work; what it returns is the step's output.
    fn execute(
        ctx: &StepContext,
        config: Self::Config,
        inputs: &Inputs,
    ) -> Result<impl Serialize, StepError>;
}

/// The plugin crate's version, which [`export_step!`](crate::export_step) fills in.
#[doc(hidden)]
pub trait Version {
    /// `CARGO_PKG_VERSION` of the crate that exports the step.
    const VERSION: &'static str;
}

/// A [`Step`] as the WIT export; used through [`export_step!`](crate::export_step).
#[doc(hidden)]
pub struct Exported<T>(PhantomData<T>);

fn parse<T: Step>(config: &str) -> Result<T::Config, Vec<ConfigError>> {
    let parsed: T::Config = crate::parse_config(config).map_err(|err| vec![err])?;
    let problems = T::check(&parsed);
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}

/// The first problem as a step error (`name: must not be empty`).
fn first(mut problems: Vec<ConfigError>) -> StepError {
    problems
        .drain(..)
        .next()
        .map_or_else(|| crate::step_error("invalid config"), StepError::from)
}

impl<T: Step + Version> Guest for Exported<T> {
    fn describe() -> Descriptor {
        let schema = schemars::schema_for!(T::Config);
        Descriptor {
            kind: T::KIND.into(),
            version: T::VERSION.into(),
            description: T::DESCRIPTION.into(),
            config_schema: serde_json::to_string(&schema).unwrap_or_default(),
            capabilities: T::CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
            idempotent: T::IDEMPOTENT,
            needs_approval: T::NEEDS_APPROVAL,
        }
    }

    fn validate(config: String) -> Result<(), Vec<ConfigError>> {
        parse::<T>(&config).map(drop)
    }

    fn plan(_ctx: StepContext, config: String) -> Result<StepPlan, StepError> {
        let config = parse::<T>(&config).map_err(first)?;
        Ok(StepPlan {
            summary: T::summary(&config),
            effects: T::effects(&config),
        })
    }

    fn execute(ctx: StepContext, config: String, inputs: String) -> Result<Outcome, StepError> {
        let config = parse::<T>(&config).map_err(first)?;
        // The daemon always sends a JSON object; anything else reads as no inputs.
        let inputs = serde_json::from_str(&inputs).unwrap_or(serde_json::Value::Null);
        let output = T::execute(&ctx, config, &inputs)?;
        serde_json::to_string(&output)
            .map(Outcome::Done)
            .map_err(|err| crate::step_error(format!("cannot encode the output: {err}")))
    }

    fn resume(_ctx: StepContext, _config: String, _token: String) -> Result<Outcome, StepError> {
        Err(crate::step_error(format!(
            "{} steps never wait, so they cannot be resumed",
            T::KIND
        )))
    }
}

/// Exports a [`Step`] as the component's `step` interface: `export_step!(MyStep);`, once, at
/// the crate root. As with [`export_plugin!`](crate::export_plugin), the crate still builds
/// for the host, so `cargo test` tests its logic.
#[macro_export]
macro_rules! export_step {
    ($step:ident) => {
        impl $crate::step::Version for $step {
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
        }

        type __RunbookStepExport = $crate::step::Exported<$step>;
        $crate::export_plugin!(__RunbookStepExport);
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Config {
        /// Who.
        name: String,
        #[serde(default)]
        times: u8,
    }

    struct Echo;

    impl Step for Echo {
        const KIND: &'static str = "echo";
        const DESCRIPTION: &'static str = "Say a name";
        const IDEMPOTENT: bool = true;
        type Config = Config;

        fn check(config: &Config) -> Vec<ConfigError> {
            if config.name.is_empty() {
                vec![crate::config_error("name", "must not be empty")]
            } else {
                Vec::new()
            }
        }

        fn summary(config: &Config) -> String {
            format!("say {}", config.name)
        }

        fn execute(
            ctx: &StepContext,
            config: Config,
            inputs: &serde_json::Value,
        ) -> Result<impl Serialize, StepError> {
            Ok(serde_json::json!({
                "said": config.name.repeat(usize::from(config.times.max(1))),
                "attempt": ctx.attempt,
                "who": inputs["params"]["who"],
            }))
        }
    }

    impl Version for Echo {
        const VERSION: &'static str = "1.2.3";
    }

    type Plugin = Exported<Echo>;

    fn ctx() -> StepContext {
        StepContext {
            run_id: "r".into(),
            step_id: "s".into(),
            attempt: 2,
            idempotency_key: "r:s:2".into(),
        }
    }

    #[test]
    fn describe_comes_from_the_constants_and_the_config_type() {
        let descriptor = Plugin::describe();
        assert_eq!(
            (descriptor.kind.as_str(), descriptor.version.as_str()),
            ("echo", "1.2.3")
        );
        assert_eq!(descriptor.capabilities, ["events"]);
        assert!(descriptor.idempotent && !descriptor.needs_approval);
        let schema: serde_json::Value = serde_json::from_str(&descriptor.config_schema).unwrap();
        assert_eq!(schema["properties"]["name"]["type"], "string");
        assert_eq!(schema["properties"]["name"]["description"], "Who.");
        assert_eq!(schema["required"], serde_json::json!(["name"]));
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn validate_names_the_field_from_parsing_or_from_check() {
        assert!(Plugin::validate(r#"{"name": "ada"}"#.into()).is_ok());
        let typo = Plugin::validate(r#"{"nme": "ada"}"#.into()).unwrap_err();
        assert!(
            typo[0].message.contains("unknown field `nme`"),
            "{:?}",
            typo
        );
        let wrong = Plugin::validate(r#"{"name": "a", "times": "x"}"#.into()).unwrap_err();
        assert_eq!(wrong[0].path, "times");
        let empty = Plugin::validate(r#"{"name": ""}"#.into()).unwrap_err();
        assert_eq!(
            (empty[0].path.as_str(), empty[0].message.as_str()),
            ("name", "must not be empty")
        );
    }

    #[test]
    fn plan_execute_and_resume_have_their_defaults() {
        let plan = Plugin::plan(ctx(), r#"{"name": "ada"}"#.into()).unwrap();
        assert_eq!(plan.summary, "say ada");
        assert!(matches!(&plan.effects[..], [Effect::Note(note)] if note == "say ada"));
        let Outcome::Done(output) = Plugin::execute(
            ctx(),
            r#"{"name": "ab", "times": 2}"#.into(),
            r#"{"params": {"who": "me"}}"#.into(),
        )
        .unwrap() else {
            panic!("done");
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&output).unwrap(),
            serde_json::json!({"said": "abab", "attempt": 2, "who": "me"})
        );
        let err = Plugin::execute(ctx(), r#"{"name": ""}"#.into(), "{}".into()).unwrap_err();
        assert_eq!(err.message, "name: must not be empty");
        let err = Plugin::resume(ctx(), "{}".into(), "t".into()).unwrap_err();
        assert_eq!(
            err.message,
            "echo steps never wait, so they cannot be resumed"
        );
    }
}
