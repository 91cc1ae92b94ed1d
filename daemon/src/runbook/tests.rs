//! Loading runbooks end to end with a stand-in for the plugins: the step index, what each step
//! reads, dependents, cycles, long chains, the limits of a file, and the golden diagnostics
//! that need no plugin.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use super::*;

/// Knows the built-in kinds and accepts any `with` table: the checks under test are the
/// runbook's own, not the plugins'.
pub(super) struct AnyConfig;

impl StepKinds for AnyConfig {
    fn kinds(&self) -> Vec<String> {
        [
            "database",
            "graphql",
            "http",
            "instruction",
            "shell",
            "wait",
        ]
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
/// plugin reports about its `with` table. `tests/it/golden.rs` loads every file with the real
/// plugins (and re-blesses them); these stay here so that the loader's own checks are covered
/// by its unit tests, without building or loading a plugin.
const GOLDEN_WITHOUT_PLUGINS: &[&str] = &[
    "bad-condition",
    "bad-duration",
    "bad-param-default",
    "bad-param-type",
    "bad-rate-limit",
    "bad-retry",
    "bad-step-id",
    "default-not-allowed",
    "deep-condition",
    "dependency-cycle",
    "duplicate-step-id",
    "loop-keys",
    "loop-templates",
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

/// A runbook of one shell step with this `if` and `with`.
fn one_step(condition: &str, with: &str) -> String {
    let condition = if condition.is_empty() {
        String::new()
    } else {
        format!("if = \"{condition}\"\n")
    };
    format!("[[steps]]\nid = \"a\"\nuses = \"shell\"\n{condition}with = {with}\n")
}

/// The one diagnostic loading `source` gives.
async fn only_problem(source: &str) -> Diagnostic {
    let diagnostics = load("test.toml", source, &AnyConfig).await.unwrap_err();
    assert_eq!(diagnostics.len(), 1, "{}", render_all(&diagnostics));
    diagnostics.into_iter().next().unwrap()
}

#[tokio::test]
async fn an_if_of_thousands_of_nots_is_refused_before_it_is_parsed() {
    // The file of the report: 5,000 `not`s, 20 KB. Its `if` used to overflow the stack of
    // whichever thread listed its variables: the daemon died on reload and on every start.
    // 16,000 keeps it within the length limit; past that, length refuses it first.
    for nots in [5_000, 16_000] {
        let source = one_step(
            &format!("{}true", "not ".repeat(nots)),
            "{ command = [\"true\"] }",
        );
        let problem = only_problem(&source).await;
        assert!(
            problem.message.starts_with(&format!(
                "step `a`: if: the expression nests too deeply: {nots} levels, and at most \
                 {} are allowed",
                limits::MAX_TEMPLATE_DEPTH
            )),
            "{}",
            problem.message
        );
        assert_eq!((problem.line, problem.column), (4, 6));
        // A stored version is parsed again when a run resumes after a restart: refused too.
        let stored = parse_stored("test.toml", &source).unwrap_err();
        assert_eq!(stored[0].message, problem.message);
    }
    let longer = one_step(
        &format!("{}true", "not ".repeat(50_000)),
        "{ command = [\"true\"] }",
    );
    let problem = only_problem(&longer).await;
    assert!(
        problem
            .message
            .starts_with("step `a`: if: the expression is too long: 200004 bytes"),
        "{}",
        problem.message
    );
    assert_eq!((problem.line, problem.column), (4, 6));
    // At the limit it loads.
    let at_limit = one_step(
        &format!("{}true", "not ".repeat(limits::MAX_TEMPLATE_DEPTH)),
        "{ command = [\"true\"] }",
    );
    load_ok(&at_limit).await;
}

#[tokio::test]
async fn deep_templates_in_with_targets_and_connections_are_refused_at_their_field() {
    // The filter chain of the report: 5,000 long.
    let filters = format!("{{{{ params.x{} }}}}", "|trim".repeat(5_000));
    let source = format!(
        "[params]\nx = {{ type = \"string\", default = \"x\" }}\n\n{}",
        one_step("", &format!("{{ command = [\"echo\", \"{filters}\"] }}"))
    );
    let problem = only_problem(&source).await;
    assert!(
        problem
            .message
            .starts_with("step `a`: with.command[1]: the template nests too deeply: 5001 levels"),
        "{}",
        problem.message
    );
    assert_eq!((problem.line, problem.column), (7, 29));

    let nested_ifs = format!(
        "{}x{}",
        "{% if a %}".repeat(1_000),
        "{% endif %}".repeat(1_000)
    );
    let elifs = format!("{{% if a %}}{}{{% endif %}}", "{% elif a %}x".repeat(1_000));
    let concatenation = format!("{{{{ secrets.t{} }}}}", " ~ 'x'".repeat(5_000));
    for (target, field) in [
        (
            format!("url = \"https://x/{nested_ifs}\""),
            "target `api`: url",
        ),
        (
            format!("headers = {{ X-A = \"{elifs}\" }}\nurl = \"https://x\""),
            "target `api`: headers.X-A",
        ),
        (
            format!("auth = {{ bearer = \"{concatenation}\" }}\nurl = \"https://x\""),
            "target `api`: auth.bearer",
        ),
    ] {
        let source = format!(
            "{}\n[targets.api]\n{target}\n",
            one_step("", "{ command = [\"true\"] }")
        );
        let problem = only_problem(&source).await;
        assert!(
            problem
                .message
                .starts_with(&format!("{field}: the template nests too deeply")),
            "{}",
            problem.message
        );
        assert_eq!(problem.line, 7, "{}", problem.rendered);
    }

    let source = format!(
        "{}\n[connections.db]\nurl = \"{concatenation}\"\n",
        one_step("", "{ command = [\"true\"] }")
    );
    let problem = only_problem(&source).await;
    assert!(
        problem
            .message
            .starts_with("connection `db`: url: the template nests too deeply"),
        "{}",
        problem.message
    );
    assert_eq!((problem.line, problem.column), (7, 7));
}

#[tokio::test]
async fn a_template_longer_than_the_limit_is_refused() {
    let long = format!(
        "{{{{ params.x }}}}{}",
        "y".repeat(limits::MAX_TEMPLATE_BYTES)
    );
    let source = format!(
        "[params]\nx = {{ type = \"string\", default = \"x\" }}\n\n{}",
        one_step("", &format!("{{ command = [\"echo\", \"{long}\"] }}"))
    );
    let problem = only_problem(&source).await;
    assert_eq!(
        problem.message,
        format!(
            "step `a`: with.command[1]: the template is too long: {} bytes, and at most {} are \
             allowed",
            long.len(),
            limits::MAX_TEMPLATE_BYTES
        )
    );
    // The same text without template syntax is used verbatim: only the file size limits it.
    load_ok(&source.replace("{{ params.x }}", "")).await;
}

/// `steps` steps as compact as a chain can be, each needing the one before (in file order,
/// or in reverse order when `reverse`).
fn compact_chain(steps: usize, reverse: bool) -> String {
    let mut blocks: Vec<String> = (0..steps)
        .map(|i| {
            let needs = if i == 0 {
                String::new()
            } else {
                format!("needs=[\"s{}\"]\n", i - 1)
            };
            format!("[[steps]]\nid=\"s{i}\"\nuses=\"shell\"\n{needs}")
        })
        .collect();
    if reverse {
        blocks.reverse();
    }
    blocks.concat()
}

#[tokio::test]
async fn more_steps_than_the_limit_are_refused_at_the_first_one_past_it() {
    for reverse in [false, true] {
        let source = compact_chain(50_000, reverse);
        assert!(source.len() < limits::MAX_FILE_BYTES);
        let problem = only_problem(&source).await;
        assert_eq!(
            problem.message,
            format!(
                "too many steps: a runbook may have at most {0}, and this is step {1} of 50000",
                limits::MAX_STEPS,
                limits::MAX_STEPS + 1
            )
        );
        let line = source
            .match_indices("[[steps]]")
            .nth(limits::MAX_STEPS)
            .map(|(offset, _)| source[..offset].matches('\n').count() + 1)
            .unwrap();
        assert_eq!((problem.line as usize, problem.column), (line, 1));
    }
    // Exactly the limit loads, in either order.
    load_ok(&compact_chain(limits::MAX_STEPS, false)).await;
    load_ok(&compact_chain(limits::MAX_STEPS, true)).await;
}

#[tokio::test]
async fn a_file_over_the_size_limit_is_refused_before_it_is_parsed() {
    // 10 MB in one comment: valid TOML, and a valid runbook but for its size.
    let source = format!(
        "{}# {}\n",
        one_step("", "{ command = [\"true\"] }"),
        "x".repeat(10 << 20)
    );
    let problem = only_problem(&source).await;
    assert!(
        problem.message.starts_with(&format!(
            "the file is too large: a runbook may be at most {} bytes",
            limits::MAX_FILE_BYTES
        )),
        "{}",
        problem.message
    );
    // It points where the limit is crossed, and shows only a little of that line.
    let column = limits::MAX_FILE_BYTES - source.find("# ").unwrap() + 1;
    assert_eq!((problem.line, problem.column as usize), (5, column));
    assert!(problem.rendered.len() < 1_000, "{}", problem.rendered.len());
    let bytes = load_bytes("test.toml", source.into_bytes(), &AnyConfig)
        .await
        .unwrap_err();
    assert_eq!(bytes[0].message, problem.message);
}

#[tokio::test]
async fn a_file_that_is_not_utf8_is_reported_at_its_first_bad_byte() {
    let mut bytes = one_step("", "{ command = [\"echo\", \"caf\u{e9}\"] }").into_bytes();
    let at = bytes
        .windows(2)
        .position(|w| w == "\u{e9}".as_bytes())
        .unwrap();
    // Latin-1 é: the byte a UTF-8 é starts with, alone.
    bytes.splice(at..at + 2, [0xe9]);
    let diagnostics = load_bytes("test.toml", bytes, &AnyConfig)
        .await
        .unwrap_err();
    assert_eq!(diagnostics.len(), 1);
    let problem = &diagnostics[0];
    assert_eq!(
        problem.message,
        "the file is not UTF-8: byte 0xe9 here is not part of a UTF-8 character"
    );
    assert_eq!((problem.line, problem.column), (4, 33));
    assert!(
        problem.rendered.contains("test.toml:4:33"),
        "{}",
        problem.rendered
    );
}

#[tokio::test]
async fn toml_nested_past_its_limits_is_reported_where_it_is() {
    let header = one_step("", "{ command = [\"true\"] }");
    let dotted = format!(
        "{header}\n[targets.api]\nurl = \"https://x\"\nheaders.{} = \"v\"\n",
        vec!["k"; 100].join(".")
    );
    let problem = only_problem(&dotted).await;
    assert_eq!(
        problem.message,
        format!(
            "a dotted key or table header has too many parts: at most {} are allowed",
            limits::MAX_TOML_DEPTH
        )
    );
    assert_eq!((problem.line, problem.column), (8, 1));

    let arrays = format!(
        "{header}description = {}1{}\n",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let problem = only_problem(&arrays).await;
    assert!(
        problem
            .message
            .starts_with("arrays and inline tables nest too deeply here"),
        "{}",
        problem.message
    );
    assert_eq!(problem.line, 5);

    // Braces where a key belongs drive `toml`'s own count of the nesting below zero, and
    // its parser then followed the nesting on the next line until the stack overflowed.
    let drifting = format!(
        "{header}neds = [\"fetch\"{}]\ndeep = {}1{}\n",
        "{{ x }}".repeat(10_000),
        "{ a = ".repeat(50_000),
        " }".repeat(50_000)
    );
    let problem = only_problem(&drifting).await;
    assert_eq!(
        problem.message,
        format!(
            "arrays and inline tables nest too deeply here: at most {} levels are allowed",
            limits::MAX_TOML_DEPTH
        )
    );
    assert_eq!(problem.line, 6);
}

#[tokio::test]
async fn a_file_with_a_problem_on_every_step_reports_only_the_first_hundred() {
    let mut source = String::new();
    for i in 0..limits::MAX_STEPS {
        writeln!(
            source,
            "[[steps]]\nid = \"s{i}\"\nuses = \"shell\"\nneeds = [\"missing{i}\"]"
        )
        .unwrap();
    }
    let diagnostics = load("test.toml", &source, &AnyConfig).await.unwrap_err();
    assert_eq!(diagnostics.len(), limits::MAX_DIAGNOSTICS + 1);
    assert!(
        diagnostics[0]
            .message
            .starts_with("step `s0` needs `missing0`")
    );
    let last = diagnostics.last().unwrap();
    assert!(
        last.message.starts_with(&format!(
            "too many problems: only the first {} are shown",
            limits::MAX_DIAGNOSTICS
        )),
        "{}",
        last.message
    );
    assert_eq!(last.line, 4 * limits::MAX_DIAGNOSTICS as u32 + 4);
}

#[tokio::test]
async fn reads_through_long_and_branching_needs_are_answered_for_every_step() {
    // 200 steps, each needing the one before: ancestors span several 64-bit words. The last
    // reads steps on both sides of each word boundary; an unrelated step reads into the chain.
    let mut source = chain(200, "");
    source.push_str(
        "[[steps]]\nid = \"last\"\nuses = \"shell\"\nneeds = [\"s199\"]\n\
         with = { command = [\"echo\", \"{{ steps.s0.status }}{{ steps.s63.status }}\
         {{ steps.s64.status }}{{ steps.s127.status }}{{ steps.s128.status }}\"] }\n\n\
         [[steps]]\nid = \"aside\"\nuses = \"shell\"\n\
         with = { command = [\"echo\", \"{{ steps.s100.status }}\"] }\n",
    );
    let diagnostics = load("test.toml", &source, &AnyConfig).await.unwrap_err();
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        ["step `aside`: reads `steps.s100` but does not depend on it; add `needs = [\"s100\"]`"]
    );

    // A diamond and a branch beside it: what is upstream through either side is readable,
    // the other branch is not.
    let diamond = r#"
[[steps]]
id = "a"
uses = "shell"

[[steps]]
id = "b"
uses = "shell"
needs = ["a"]

[[steps]]
id = "c"
uses = "shell"
needs = ["a"]

[[steps]]
id = "d"
uses = "shell"
needs = ["b"]
with = { command = ["echo", "{{ steps.a.status }}", "{{ steps.c.status }}"] }

[[steps]]
id = "e"
uses = "shell"
needs = ["d", "c"]
with = { command = ["echo", "{{ steps.a.status }}", "{{ steps.b.status }}", "{{ steps.c.status }}"] }
"#;
    let diagnostics = load("test.toml", diamond, &AnyConfig).await.unwrap_err();
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        ["step `d`: reads `steps.c` but does not depend on it; add `needs = [\"c\"]`"]
    );
}

/// A shell step whose retry policy is `retry`.
fn retrying(retry: &str) -> String {
    format!(
        "[[steps]]\nid = \"a\"\nuses = \"shell\"\nretry = {retry}\nwith = {{ command = [\"true\"] }}\n"
    )
}

#[tokio::test]
async fn a_retry_if_is_checked_at_load_with_its_place() {
    let runbook = load(
        "test.toml",
        &retrying(r#"{ attempts = 3, if = "output.status == 409 or class == 'timeout'" }"#),
        &AnyConfig,
    )
    .await
    .unwrap();
    let policy = runbook.steps[0].retry.as_ref().unwrap();
    assert_eq!(
        policy.condition.as_deref(),
        Some("output.status == 409 or class == 'timeout'")
    );

    let broken = only_problem(&retrying(r#"{ attempts = 3, if = "output.status ==" }"#)).await;
    assert!(
        broken.message.starts_with("retry.if: invalid expression:"),
        "{}",
        broken.message
    );
    assert_eq!((broken.line, broken.column), (4, 30));

    let elsewhere = only_problem(&retrying(r#"{ attempts = 3, if = "steps.b.output.ok" }"#)).await;
    assert_eq!(
        elsewhere.message,
        "retry.if reads `steps`, but it can read only the failed attempt: `output`, `error`, \
         `class`, `attempt`"
    );

    let both = only_problem(&retrying(
        r#"{ attempts = 3, on = ["any"], if = "attempt < 2" }"#,
    ))
    .await;
    assert!(
        both.message
            .starts_with("retry.if decides which failures are tried again"),
        "{}",
        both.message
    );
}

fn limited(rate_limit: &str) -> String {
    format!(
        "[targets.api]\nurl = \"https://x\"\n{rate_limit}\n\n[[steps]]\nid = \"a\"\nuses = \"shell\"\nwith = {{ command = [\"true\"] }}\n"
    )
}

#[tokio::test]
async fn a_sliding_window_limit_is_read_and_checked_where_it_is_written() {
    use crate::runbook::target::RateKind;
    let runbook = load(
        "test.toml",
        &limited(r#"rate_limit = { max = 100, window = "1m" }"#),
        &AnyConfig,
    )
    .await
    .unwrap();
    let limit = runbook.targets[0].rate_limit.clone().unwrap();
    assert_eq!(
        limit.kind,
        RateKind::Window {
            max: 100,
            window: std::time::Duration::from_secs(60)
        }
    );
    assert_eq!(limit.text, "100 per 1m");

    let zero = only_problem(&limited(r#"rate_limit = { max = 0, window = "1m" }"#)).await;
    assert_eq!(zero.message, "rate_limit.max must be between 1 and 100000");
    assert_eq!((zero.line, zero.column), (3, 22));
    let unknown = only_problem(&limited(r#"rate_limit = { max = 5, per = "1m" }"#)).await;
    assert!(
        unknown.message.contains("unknown field `per`"),
        "{}",
        unknown.message
    );
    assert_eq!(unknown.line, 3);
    let bad = only_problem(&limited(r#"rate_limit = { max = 5, window = "soon" }"#)).await;
    assert!(
        bad.message.starts_with("invalid duration `soon`"),
        "{}",
        bad.message
    );
    assert_eq!((bad.line, bad.column), (3, 34));
    let burst = only_problem(&limited(
        "rate_limit = { max = 5, window = \"1s\" }\nburst = 2",
    ))
    .await;
    assert!(
        burst.message.starts_with("a sliding window has no burst"),
        "{}",
        burst.message
    );
    assert_eq!(burst.line, 4);
    let neither = only_problem(&limited("rate_limit = 5")).await;
    assert!(
        neither.message.contains(r#"a rate like "50/s""#),
        "{}",
        neither.message
    );
}

#[tokio::test]
async fn params_and_an_instructions_inputs_keep_the_order_they_are_written_in() {
    let runbook = load_ok(
        r#"
[params]
zone = { type = "string", default = "a" }
app = { type = "string", default = "b" }
mode = { type = "string", default = "c" }

[[steps]]
id = "check"
uses = "instruction"
with = { text = "look" }

[steps.inputs]
ticket = { type = "string" }
count = { type = "integer" }
"#,
    )
    .await;
    let names = |params: &[Param]| params.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&runbook.params), ["zone", "app", "mode"]);
    assert_eq!(names(&runbook.steps[0].inputs), ["ticket", "count"]);
}

#[tokio::test]
async fn a_loop_reads_what_its_for_each_reads_and_nests_one_deeper_than_the_loop_it_reads() {
    let source = r#"
[[steps]]
id = "list"
uses = "shell"
with = { command = ["true"] }

[[steps]]
id = "first"
uses = "shell"
needs = ["list"]
for_each = "{{ steps.list.output.hosts }}"
max_parallel = 3
fail_fast = true
with = { command = ["echo", "{{ item }}", "{{ index }}"] }

[[steps]]
id = "second"
uses = "shell"
needs = ["first"]
for_each = "{{- steps.first.output -}}"
with = { command = ["echo", "{{ item.stdout }}"] }

[[steps]]
id = "literal"
uses = "shell"
for_each = ["a", 2, { name = "c" }]
with = { command = ["echo", "{{ item }}"] }
"#;
    let runbook = load("loops.toml", source, &AnyConfig).await.unwrap();
    let first = runbook.step("first").unwrap();
    assert_eq!(first.reads, ["list"]);
    assert_eq!(
        first.each,
        Some(Loop {
            items: LoopItems::Expression("steps.list.output.hosts".into()),
            max_parallel: 3,
            fail_fast: true,
            depth: 1,
        })
    );
    let second = runbook.step("second").unwrap();
    assert_eq!(second.reads, ["first"]);
    let second = second.each.as_ref().unwrap();
    assert_eq!(
        second.items,
        LoopItems::Expression("steps.first.output".into())
    );
    assert_eq!(
        (second.depth, second.max_parallel, second.fail_fast),
        (2, 1, false)
    );
    let literal = runbook.step("literal").unwrap().each.as_ref().unwrap();
    assert_eq!(
        literal.items,
        LoopItems::List(vec![
            serde_json::json!("a"),
            serde_json::json!(2),
            serde_json::json!({ "name": "c" }),
        ])
    );
    assert_eq!(literal.depth, 1);
    assert!(runbook.step("list").unwrap().each.is_none());
}

#[tokio::test]
async fn a_long_chain_of_loops_gets_its_depth_without_deep_recursion() {
    let steps = 5_000;
    let mut source = String::from(
        "[[steps]]\nid = \"s0\"\nuses = \"shell\"\nfor_each = [1]\nwith = { command = [\"true\"] }\n",
    );
    for i in 1..steps {
        let previous = i - 1;
        writeln!(
            source,
            "[[steps]]\nid = \"s{i}\"\nuses = \"shell\"\nneeds = [\"s{previous}\"]\n\
             for_each = \"{{{{ steps.s{previous}.output }}}}\"\nwith = {{ command = [\"true\"] }}"
        )
        .unwrap();
    }
    let runbook = load("chain.toml", &source, &AnyConfig).await.unwrap();
    let last = runbook.steps.last().unwrap().each.as_ref().unwrap();
    assert_eq!(last.depth, steps);
}

#[test]
fn a_list_param_is_typed_from_commas_or_json() {
    let cases = [
        ("a, b,c", Ok(serde_json::json!(["a", "b", "c"]))),
        ("web-1", Ok(serde_json::json!(["web-1"]))),
        ("", Ok(serde_json::json!([]))),
        (" a,,b ", Ok(serde_json::json!(["a", "b"]))),
        (r#"[1, {"x": 2}]"#, Ok(serde_json::json!([1, { "x": 2 }]))),
        ("[1, 2", Err("`[1, 2` is not a JSON list".to_owned())),
    ];
    for (text, expected) in cases {
        assert_eq!(ParamType::List.parse_text(text), expected, "{text}");
    }
    assert!(ParamType::List.accepts(&serde_json::json!([])));
    assert!(!ParamType::List.accepts(&serde_json::json!("a,b")));
}
