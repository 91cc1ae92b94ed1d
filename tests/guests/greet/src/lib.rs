//! A `greet` step: says hello to someone.

use runbook_plugin_sdk::step::{ConfigError, Inputs, Step, StepContext, StepError};
use runbook_plugin_sdk::{config_error, export_step};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who to greet.
    name: String,
    /// Whether to shout it.
    #[serde(default)]
    shout: bool,
}

fn greeting(config: &Config) -> String {
    let hi = format!("hello, {}", config.name);
    if config.shout { hi.to_uppercase() } else { hi }
}

pub struct Greet;
impl Step for Greet {
    const KIND: &'static str = "greet";
    const DESCRIPTION: &'static str = "Say hello to someone";
    const IDEMPOTENT: bool = true;
    type Config = Config;

    fn check(config: &Config) -> Vec<ConfigError> {
        let empty = config.name.trim().is_empty();
        Vec::from_iter(empty.then(|| config_error("name", "must not be empty")))
    }

    fn summary(config: &Config) -> String {
        format!("say {:?}", greeting(config))
    }

    fn execute(_: &StepContext, config: Config, _: &Inputs) -> Result<impl Serialize, StepError> {
        let output = [("greeting", greeting(&config))];
        Ok(std::collections::BTreeMap::from(output))
    }
}

export_step!(Greet);
