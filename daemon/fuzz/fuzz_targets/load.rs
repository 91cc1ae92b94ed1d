//! Feeds arbitrary bytes to the runbook loader, as the daemon reads a file from its runbooks
//! directory: checks of size and encoding, parsing, and every check that needs no plugin.
//! Nothing may panic or overflow the stack, and every rejection must name file:line:column.
//! Run with `cargo +nightly fuzz run load` from daemon/fuzz (docs/fuzzing.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use runbookd::runbook::{self, ConfigProblem, StepKinds};

/// Knows the built-in kinds and accepts any `with` table, as the in-suite fuzzer does: the
/// loader is under test, not the plugins.
struct AnyConfig;

impl StepKinds for AnyConfig {
    fn kinds(&self) -> Vec<String> {
        ["database", "graphql", "http", "shell"]
            .map(String::from)
            .to_vec()
    }

    async fn validate(
        &self,
        _kind: &str,
        _config: &serde_json::Value,
    ) -> Result<Vec<ConfigProblem>, String> {
        Ok(Vec::new())
    }
}

const FILE: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let loaded = futures::executor::block_on(runbook::load_bytes(FILE, data.to_vec(), &AnyConfig));
    if let Err(diagnostics) = loaded {
        assert!(!diagnostics.is_empty(), "rejected without a diagnostic");
        for diagnostic in diagnostics {
            let location = format!("{FILE}:{}:{}", diagnostic.line, diagnostic.column);
            assert!(
                diagnostic.line > 0
                    && diagnostic.column > 0
                    && diagnostic.rendered.contains(&location),
                "a diagnostic without file:line:column: {}",
                diagnostic.rendered
            );
        }
    }
    // A stored version is parsed again, without the checks, when a run resumes.
    if let Ok(source) = std::str::from_utf8(data) {
        let _ = runbook::parse_stored(FILE, source);
    }
});
