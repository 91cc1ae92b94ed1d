//! A plugin for testing the sandbox and measuring the engine: `uses = "probe"` with
//! `with = { mode = "noop" | "echo" | "reveal" | "spin" | "alloc" | "trap" }`.
//!
//! `reveal` plays a plugin that tries to exfiltrate what it was given: it returns its config
//! and inputs hex-encoded and reversed, forms the daemon's output masking cannot recognise,
//! so a value the guest received would show up in its output.

use runbook_plugin_sdk::exports::runbook::plugin::step::Guest;
use runbook_plugin_sdk::runbook::plugin::types::{
    ConfigError, Descriptor, Effect, Outcome, StepContext, StepError, StepPlan,
};
use runbook_plugin_sdk::{config_error, parse_config, step_error};
use serde::Deserialize;

#[derive(Deserialize)]
struct ProbeConfig {
    mode: String,
    #[serde(default)]
    value: serde_json::Value,
}

const MODES: [&str; 6] = ["noop", "echo", "reveal", "spin", "alloc", "trap"];

fn parse(config: &str) -> Result<ProbeConfig, ConfigError> {
    let parsed: ProbeConfig = parse_config(config)?;
    // At validation time a value may still be a template; it is checked again once rendered.
    let templated = parsed.mode.contains("{{");
    if !templated && !MODES.contains(&parsed.mode.as_str()) {
        return Err(config_error(
            "mode",
            format!("unknown mode `{}`; expected one of {MODES:?}", parsed.mode),
        ));
    }
    Ok(parsed)
}

/// Lower-case hex of `text`'s bytes.
fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

struct Probe;

impl Guest for Probe {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "probe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test plugin: noop, echo, reveal its inputs, spin forever, allocate forever, or trap".into(),
            config_schema: "{}".into(),
            capabilities: vec![],
            idempotent: true,
            needs_approval: false,
        }
    }

    fn validate(config: String) -> Result<(), Vec<ConfigError>> {
        parse(&config).map(|_| ()).map_err(|err| vec![err])
    }

    fn plan(_ctx: StepContext, config: String) -> Result<StepPlan, StepError> {
        let config = parse(&config)?;
        Ok(StepPlan {
            summary: format!("probe {}", config.mode),
            effects: vec![Effect::Note(config.mode)],
        })
    }

    fn execute(ctx: StepContext, config: String, inputs: String) -> Result<Outcome, StepError> {
        let raw = config;
        let config = parse(&raw)?;
        match config.mode.as_str() {
            "noop" => Ok(Outcome::Done(r#"{"ok":true}"#.into())),
            "echo" => Ok(Outcome::Done(
                serde_json::json!({ "value": config.value, "step": ctx.step_id }).to_string(),
            )),
            "reveal" => {
                let seen = format!("{raw}\n{inputs}");
                Ok(Outcome::Done(
                    serde_json::json!({
                        "value": config.value,
                        "seen_hex": hex(&seen),
                        "seen_reversed": seen.chars().rev().collect::<String>(),
                    })
                    .to_string(),
                ))
            }
            "spin" => {
                let mut counter: u64 = 0;
                loop {
                    // black_box keeps the optimiser from proving the loop has no effect.
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => panic!("probe asked to trap"),
        }
    }

    fn resume(_ctx: StepContext, _config: String, _token: String) -> Result<Outcome, StepError> {
        Err(step_error("probe steps never wait"))
    }
}

runbook_plugin_sdk::export_plugin!(Probe);
