//! Write runbook step plugins in Rust: the guest bindings of the WIT contract in `wit/`, and
//! helpers for the JSON that crosses it.
//!
//! A plugin implements [`step::Step`] (a typed config, a summary, `execute`) and registers it
//! with [`export_step!`], or implements the low-level [`exports::runbook::plugin::step::Guest`]
//! (all five calls, for steps that wait) and registers it with [`export_plugin!`]; build it
//! with `cargo build --target wasm32-wasip2`. See `docs/plugin-guide.md` in the repository for
//! a walk-through.
//!
//! With the `web` feature, the `web` module adds what steps that speak HTTP share: targets, auth
//! (OAuth2 included), sending through the host's `http` interface, expectations, captures and
//! the classification of failures for retries. `docs/http-steps.md` describes the built-in
//! `http` and `graphql` steps made from it.
#![deny(missing_docs)]

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "step-plugin",
        pub_export_macro: true,
        export_macro_name: "export_plugin_to_wasm",
        default_bindings_module: "runbook_plugin_sdk",
    });
}

pub use bindings::*;

pub mod step;

#[cfg(feature = "web")]
pub mod web;

/// Registers a type implementing [`exports::runbook::plugin::step::Guest`] as the plugin's
/// `step` export: `runbook_plugin_sdk::export_plugin!(MyPlugin);`.
///
/// The export exists only in the WebAssembly build; on the host the crate still compiles, so
/// a plugin's own logic can be unit-tested with a plain `cargo test`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ident) => {
        #[cfg(target_family = "wasm")]
        $crate::export_plugin_to_wasm!($plugin);

        /// The exports, named so that a host build sees the plugin's code as used.
        #[cfg(not(target_family = "wasm"))]
        #[doc(hidden)]
        pub fn __runbook_plugin_exports() -> [usize; 5] {
            use $crate::exports::runbook::plugin::step::Guest as _;
            [
                <$plugin>::describe as usize,
                <$plugin>::validate as usize,
                <$plugin>::plan as usize,
                <$plugin>::execute as usize,
                <$plugin>::resume as usize,
            ]
        }
    };
}

/// The WIT package version this SDK implements; the daemon accepts plugins built for it.
pub const WIT_VERSION: &str = "0.1.0";

use runbook::plugin::types::{ConfigError, StepError};
use serde::de::DeserializeOwned;

/// Decodes a step's `with` table into the plugin's own config type.
///
/// The error names the offending field (`command`, `env.HOME`, ...) in `path`, so the host
/// can point at that field in the author's TOML; serde's position in the JSON text is
/// dropped, as authors never see that JSON.
pub fn parse_config<T: DeserializeOwned>(config: &str) -> Result<T, ConfigError> {
    // Tracking the path costs on every field; it is only needed for the error, so a table
    // that decodes is decoded without it, and one that does not is decoded again with it.
    if let Ok(decoded) = serde_json::from_str(config) {
        return Ok(decoded);
    }
    let mut json = serde_json::Deserializer::from_str(config);
    serde_path_to_error::deserialize(&mut json).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        let message = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_owned(),
            None => message,
        };
        ConfigError {
            // serde_path_to_error writes `.` for the root.
            path: if path == "." { String::new() } else { path },
            message,
            position: None,
        }
    })
}

/// A [`ConfigError`] about one field of the `with` table.
pub fn config_error(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
        position: None,
    }
}

/// A permanent [`StepError`] carrying only a message: trying again would fail the same way.
pub fn step_error(message: impl Into<String>) -> StepError {
    StepError {
        message: message.into(),
        output: None,
        transient: false,
        retry_after_ms: None,
    }
}

/// A [`StepError`] that another attempt may not meet (a refused connection, a timeout): the
/// step's retry policy decides whether there is one.
pub fn transient_error(message: impl Into<String>, output: Option<String>) -> StepError {
    StepError {
        message: message.into(),
        output,
        transient: true,
        retry_after_ms: None,
    }
}

impl From<ConfigError> for StepError {
    fn from(err: ConfigError) -> Self {
        let message = if err.path.is_empty() {
            err.message
        } else {
            format!("{}: {}", err.path, err.message)
        };
        step_error(message)
    }
}

/// Logs a message to the run's event stream.
pub fn log(level: runbook::plugin::events::Level, message: &str) {
    runbook::plugin::events::log(level, message);
}
