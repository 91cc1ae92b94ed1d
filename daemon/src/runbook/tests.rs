//! Loading runbooks end to end with a stand-in for the plugins: the step index, what each step
//! reads, dependents, cycles, long chains, and the golden diagnostics that need no plugin.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use super::*;

/// Knows the built-in kinds and accepts any `with` table: the checks under test are the
/// runbook's own, not the plugins'.
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

/// `steps` shell steps `s0`, `s1`, ..., each needing and reading the one before it; `s0`
/// needs `first_needs` (nothing when empty).
fn chain(steps: usize, first_needs: &str) -> String {
    let mut source = String::new();
    for i in 0..steps {
        source.push_str("[[steps]]\n");
        writeln!(source, "id = \"s{i}\"").unwrap();
        source.push_str("uses = \"shell\"\n");
        if i == 0 {
            if !first_needs.is_empty() {
                writeln!(source, "needs = [\"{first_needs}\"]").unwrap();
            }
            source.push_str("with = { command = [\"true\"] }\n\n");
        } else {
            let previous = i - 1;
            writeln!(source, "needs = [\"s{previous}\"]").unwrap();
            writeln!(
                source,
                "with = {{ command = [\"echo\", \"{{{{ steps.s{previous}.output.stdout }}}}\"] }}\n"
            )
            .unwrap();
        }
    }
    source
}

async fn load_ok(source: &str) -> Runbook {
    match load("test.toml", source, &AnyConfig).await {
        Ok(runbook) => runbook,
        Err(diagnostics) => panic!("{}", render_all(&diagnostics)),
    }
}

#[tokio::test]
async fn a_ten_thousand_step_chain_loads() {
    let source = chain(10_000, "");
    let runbook = load_ok(&source).await;
    assert_eq!(runbook.steps.len(), 10_000);
    assert_eq!(runbook.step_index("s0"), Some(0));
    assert_eq!(runbook.step_index("s9999"), Some(9999));
    assert_eq!(runbook.step_index("s10000"), None);
    assert_eq!(runbook.step("s4321").map(|s| s.id.as_str()), Some("s4321"));
    assert!(runbook.steps[0].reads.is_empty());
    for (index, step) in runbook.steps.iter().enumerate().skip(1) {
        assert_eq!(step.reads, [format!("s{}", index - 1)], "{}", step.id);
        assert_eq!(runbook.dependents(index - 1), [index]);
    }
    assert!(runbook.dependents(9999).is_empty());

    // A stored version is parsed again without the checks: it has the same index and reads.
    let stored = parse_stored("test.toml", &source).unwrap();
    assert_eq!(stored.step_index("s9999"), Some(9999));
    assert_eq!(stored.steps[9999].reads, ["s9998"]);
    assert_eq!(stored.dependents(0), [1]);
}

#[tokio::test]
async fn a_cycle_through_a_long_chain_is_reported() {
    let source = chain(10_000, "s9999");
    let diagnostics = load("test.toml", &source, &AnyConfig).await.unwrap_err();
    assert_eq!(diagnostics.len(), 1, "{}", render_all(&diagnostics));
    let mut expected = String::from("dependency cycle: s0");
    for i in (0..10_000).rev() {
        write!(expected, " -> s{i}").unwrap();
    }
    assert_eq!(diagnostics[0].message, expected);
    // It points at the need of the first step that closes the cycle.
    assert_eq!((diagnostics[0].line, diagnostics[0].column), (4, 10));
}

#[tokio::test]
async fn reads_lists_every_step_a_template_or_condition_reads() {
    let source = r#"
[[steps]]
id = "a"
uses = "shell"
with = { command = ["true"] }

[[steps]]
id = "b"
uses = "shell"
with = { command = ["true"] }

[[steps]]
id = "c"
uses = "shell"
with = { command = ["true"] }

[[steps]]
id = "d"
uses = "shell"
with = { command = ["true"] }

[[steps]]
id = "unread"
uses = "shell"
with = { command = ["true"] }

[[steps]]
id = "e"
uses = "shell"
needs = ["a", "b", "c", "d", "unread"]
if = "steps.d.status == 'succeeded'"

[steps.with]
command = ["echo", "{{ steps.b.output.stdout }}", "{{ steps.a.status }}"]
env = { FROM_A = "{{ steps.a.output.x }}" }
nested = [{ deeper = [["{{ steps.c.output.rows[0].n }} and {{ params.p }}"]] }]

[params]
p = { type = "string", default = "x" }
"#;
    let runbook = load_ok(source).await;
    let e = runbook.step("e").unwrap();
    assert_eq!(e.reads, ["a", "b", "c", "d"]);
    assert!(runbook.step("a").unwrap().reads.is_empty());
    assert_eq!(
        parse_stored("test.toml", source).unwrap().steps[5].reads,
        e.reads
    );
}

#[test]
fn reads_skips_unknown_steps_and_templates_that_do_not_parse() {
    // Unchecked on purpose: the checker rejects both, but parsing alone must not trip on them.
    let source = r#"
[[steps]]
id = "a"
uses = "shell"
with = { command = ["true"] }

[[steps]]
id = "b"
uses = "shell"
needs = ["a"]
if = "steps.nope.status == 'ok'"
with = { command = ["echo", "{{ steps.a.output", "{{ steps.a.status }} {{ steps.ghost.output }}"] }
"#;
    let runbook = parse_stored("test.toml", source).unwrap();
    assert_eq!(runbook.steps[1].reads, ["a"]);

    let broken = source.replace("{{ steps.a.status }}", "{{ params.x }}");
    let runbook = parse_stored("test.toml", &broken).unwrap();
    assert!(runbook.steps[1].reads.is_empty());
}

#[tokio::test]
async fn dependents_are_the_steps_that_need_each_step() {
    let source = r#"
[[steps]]
id = "a"
uses = "shell"
with = { command = ["true"] }

[[steps]]
id = "b"
uses = "shell"
needs = ["a"]
with = { command = ["true"] }

[[steps]]
id = "c"
uses = "shell"
needs = ["a", "a"]
with = { command = ["true"] }

[[steps]]
id = "d"
uses = "shell"
needs = ["c", "b"]
with = { command = ["true"] }
"#;
    let runbook = load_ok(source).await;
    assert_eq!(runbook.dependents(0), [1, 2]);
    assert_eq!(runbook.dependents(1), [3]);
    assert_eq!(runbook.dependents(2), [3]);
    assert!(runbook.dependents(3).is_empty());
    assert!(runbook.dependents(4).is_empty());
}

#[tokio::test]
async fn a_read_through_several_needs_is_a_dependency() {
    let source = r#"
[[steps]]
id = "a"
uses = "shell"
with = { command = ["true"] }

[[steps]]
id = "b"
uses = "shell"
needs = ["a"]
with = { command = ["true"] }

[[steps]]
id = "c"
uses = "shell"
needs = ["b"]
with = { command = ["echo", "{{ steps.a.output.stdout }}"] }

[[steps]]
id = "d"
uses = "shell"
if = "steps.b.status == 'succeeded'"
with = { command = ["echo", "{{ steps.c.output.stdout }}"] }
"#;
    let diagnostics = load("test.toml", source, &AnyConfig).await.unwrap_err();
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "step `d`: reads `steps.c` but does not depend on it; add `needs = [\"c\"]`",
            "step `d`: reads `steps.b` but does not depend on it; add `needs = [\"b\"]`",
        ]
    );
    load_ok(&source.replace("id = \"d\"", "id = \"d\"\nneeds = [\"c\"]")).await;
}

/// The golden files whose messages come from the runbook's own checks; the others hold what a
/// plugin reports about its `with` table.
const GOLDEN_WITHOUT_PLUGINS: &[&str] = &[
    "bad-condition",
    "bad-duration",
    "bad-param-default",
    "bad-param-type",
    "bad-rate-limit",
    "bad-retry",
    "bad-step-id",
    "default-not-allowed",
    "dependency-cycle",
    "duplicate-step-id",
    "reads-without-needs",
    "toml-syntax",
    "unknown-key",
    "unknown-kind",
    "unknown-needs",
    "unknown-param",
    "unknown-step-reference",
    "unknown-target",
];

#[tokio::test]
async fn golden_diagnostics_are_unchanged() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for name in GOLDEN_WITHOUT_PLUGINS {
        let file = format!("runbooks/invalid/{name}.toml");
        let source = std::fs::read_to_string(root.join(&file)).unwrap();
        let golden =
            std::fs::read_to_string(root.join(format!("runbooks/invalid/{name}.stderr"))).unwrap();
        let diagnostics = load(&file, &source, &AnyConfig).await.unwrap_err();
        // As `runbook validate` prints them.
        let printed: String = diagnostics
            .iter()
            .map(|d| format!("{}\n", d.rendered.trim_end()))
            .collect();
        assert_eq!(printed, golden, "{file}");
    }
}
