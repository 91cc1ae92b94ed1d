//! Whole-runbook checks: duplicate ids, unknown or cyclic `needs`, unknown step kinds, each
//! plugin's own validation of its `with` table, and the variables templates read.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::limits::MAX_DIAGNOSTICS;
use super::locate::{Locator, Segment, parse_path};
use super::parse::{Parsed, Reporter, StepSpans};
use super::{Diagnostic, LoopItems, Runbook};
use crate::template;

/// A problem a plugin found in a step's `with` table.
#[derive(Debug, Clone)]
pub struct ConfigProblem {
    /// Dotted path inside `with`; empty for the table as a whole.
    pub path: String,
    pub message: String,
    /// 1-based line and column inside the string at `path` (an embedded query, say).
    pub position: Option<(u32, u32)>,
}

/// What checking a runbook needs to know about the plugins.
pub trait StepKinds {
    /// The step kinds that can be used, sorted.
    fn kinds(&self) -> Vec<String>;
    /// Asks the plugin of `kind` to validate a `with` table.
    fn validate(
        &self,
        kind: &str,
        config: &serde_json::Value,
    ) -> impl Future<Output = Result<Vec<ConfigProblem>, String>> + Send;
}

pub(super) async fn check(
    parsed: Parsed,
    kinds: &impl StepKinds,
) -> Result<Runbook, Vec<Diagnostic>> {
    let Parsed { runbook, spans } = parsed;
    let mut report = Reporter::new(&runbook.path, &runbook.source);

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, step) in runbook.steps.iter().enumerate() {
        if let Some(first) = seen.insert(&step.id, index) {
            let line = report.line_of(spans[first].id.start);
            report.error(
                spans[index].id.clone(),
                format!(
                    "duplicate step id `{}` (first used on line {line})",
                    step.id
                ),
            );
        }
    }
    check_needs(&runbook, &spans, &seen, &mut report);
    if report.diagnostics.is_empty() {
        check_cycles(&runbook, &spans, &seen, &mut report);
    }
    // Parses the source for spans inside `with` once, however many problems there are.
    let locator = Locator::new(&runbook.source);

    let available = kinds.kinds();
    for (index, step) in runbook.steps.iter().enumerate() {
        if report.is_full() {
            break;
        }
        if !available.contains(&step.uses) {
            report.error(
                spans[index].uses.clone(),
                format!(
                    "unknown step kind `{}`; available kinds: {}",
                    step.uses,
                    available.join(", ")
                ),
            );
            continue;
        }
        match kinds.validate(&step.uses, &step.with).await {
            Ok(problems) => {
                for problem in problems {
                    let value_span = locator.with_span(index, &parse_path(&problem.path));
                    let span = match (&value_span, problem.position) {
                        (Some(value), Some((line, column))) => {
                            inside_string(&runbook.source, value, line, column)
                                .unwrap_or_else(|| value.clone())
                        }
                        _ => value_span.unwrap_or_else(|| spans[index].with.clone()),
                    };
                    let field = if problem.path.is_empty() {
                        "with".to_owned()
                    } else {
                        format!("with.{}", problem.path)
                    };
                    report.error(
                        span,
                        format!("step `{}`: {field}: {}", step.id, problem.message),
                    );
                }
            }
            Err(err) => report.error(
                spans[index].uses.clone(),
                format!(
                    "the `{}` plugin failed to validate step `{}`: {err}",
                    step.uses, step.id
                ),
            ),
        }
    }

    if report.diagnostics.is_empty() {
        check_templates(&runbook, &spans, &locator, &mut report);
    }
    if report.diagnostics.is_empty() {
        Ok(runbook)
    } else {
        Err(report.diagnostics)
    }
}

fn check_needs(
    runbook: &Runbook,
    spans: &[StepSpans],
    ids: &HashMap<&str, usize>,
    report: &mut Reporter<'_>,
) {
    for (index, step) in runbook.steps.iter().enumerate() {
        for (need, span) in step.needs.iter().zip(&spans[index].needs) {
            // Each message below looks for a similar id among all steps: past the cap, that
            // would cost the square of the steps for nothing shown.
            if report.is_full() {
                return;
            }
            if need == &step.id {
                report.error(span.clone(), format!("step `{}` needs itself", step.id));
            } else if !ids.contains_key(need.as_str()) {
                report.error(
                    span.clone(),
                    format!(
                        "step `{}` needs `{need}`, which is not a step of this runbook{}",
                        step.id,
                        suggestion(need, ids.keys().copied())
                    ),
                );
            }
        }
    }
}

/// Depth-first search for a cycle; reports the first one found as `a -> b -> a`. The walk
/// keeps its own stack rather than recursing, so a long chain of needs cannot overflow the
/// thread's stack.
fn check_cycles(
    runbook: &Runbook,
    spans: &[StepSpans],
    ids: &HashMap<&str, usize>,
    report: &mut Reporter<'_>,
) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; runbook.steps.len()];
    // The steps from the walk's start to the one being visited (all `Active`), each with how
    // many of its needs have been followed so far.
    let mut path: Vec<(usize, usize)> = Vec::new();
    for start in 0..runbook.steps.len() {
        if marks[start] != Mark::New {
            continue;
        }
        marks[start] = Mark::Active;
        path.push((start, 0));
        let cycle = loop {
            let Some(top) = path.last_mut() else {
                break None;
            };
            let (node, followed) = *top;
            top.1 += 1;
            let Some(need) = runbook.steps[node].needs.get(followed) else {
                path.pop();
                marks[node] = Mark::Done;
                continue;
            };
            // Every need names a step: `check_needs` found no problem before this runs.
            let Some(&next) = ids.get(need.as_str()) else {
                continue;
            };
            match marks[next] {
                Mark::Active => {
                    let start = path.iter().position(|&(n, _)| n == next).unwrap_or(0);
                    let mut cycle: Vec<usize> = path[start..].iter().map(|&(n, _)| n).collect();
                    cycle.push(next);
                    break Some(cycle);
                }
                Mark::New => {
                    marks[next] = Mark::Active;
                    path.push((next, 0));
                }
                Mark::Done => {}
            }
        };
        if let Some(cycle) = cycle {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| runbook.steps[i].id.as_str())
                .collect();
            let first = cycle[0];
            let span = runbook.steps[first]
                .needs
                .iter()
                .position(|need| need == names[1])
                .map_or_else(
                    || spans[first].id.clone(),
                    |i| spans[first].needs[i].clone(),
                );
            report.error(span, format!("dependency cycle: {}", names.join(" -> ")));
            return;
        }
    }
}

/// Every template in `with`, every `if` and every `for_each` may read only declared params,
/// steps this step (transitively) needs, and the run itself; a loop step's `with` also its
/// `item` and `index`.
fn check_templates(
    runbook: &Runbook,
    spans: &[StepSpans],
    locator: &Locator<'_>,
    report: &mut Reporter<'_>,
) {
    let params: HashSet<&str> = runbook.params.iter().map(|p| p.name.as_str()).collect();
    let targets: HashSet<&str> = runbook.targets.iter().map(|t| t.name.as_str()).collect();
    let names = Names {
        params: &params,
        targets: &targets,
    };
    let mut upstream = Upstream::new(runbook);
    for (index, step) in runbook.steps.iter().enumerate() {
        if report.is_full() {
            return;
        }
        let mut texts = Vec::new();
        collect_templates(&step.with, &mut Vec::new(), &mut texts);
        for (path, text) in texts {
            let span = || {
                locator
                    .with_span(index, &path)
                    .unwrap_or_else(|| spans[index].with.clone())
            };
            match template::template_variables(&text) {
                Ok(vars) => {
                    let in_loop = step.each.is_some();
                    let problems =
                        check_variables(&vars, index, &names, &mut upstream, runbook, in_loop);
                    if !problems.is_empty() {
                        let span = span();
                        for problem in problems {
                            report.error(span.clone(), problem);
                        }
                    }
                }
                Err(err) => report.error(
                    span(),
                    format!("step `{}`: invalid template: {err}", step.id),
                ),
            }
        }
        let loop_expression = match step.each.as_ref().map(|each| &each.items) {
            Some(LoopItems::Expression(expression)) => Some(expression),
            _ => None,
        };
        let expressions = [
            (step.condition.as_ref(), &spans[index].condition, "`if`"),
            (loop_expression, &spans[index].for_each, "`for_each`"),
        ];
        for (expression, span, what) in expressions {
            let (Some(expression), Some(span)) = (expression, span) else {
                continue;
            };
            match template::expression_variables(expression) {
                Ok(vars) => {
                    let mut problems =
                        check_variables(&vars, index, &names, &mut upstream, runbook, false);
                    if what == "`for_each`" {
                        problems.extend(loop_reads_hidden(&step.id, &vars));
                    }
                    for problem in problems {
                        report.error(span.clone(), problem);
                    }
                }
                Err(err) => report.error(
                    span.clone(),
                    format!("step `{}`: invalid {what} expression: {err}", step.id),
                ),
            }
        }
    }
}

/// The params and targets a runbook declares, looked up by name for every variable read.
struct Names<'a> {
    params: &'a HashSet<&'a str>,
    targets: &'a HashSet<&'a str>,
}

/// What is wrong with the variables one template of step `index` reads, as messages.
/// `item` and `index` are set only in the `with` of a loop step (`in_loop`).
fn check_variables(
    vars: &BTreeSet<String>,
    index: usize,
    names: &Names<'_>,
    upstream: &mut Upstream<'_>,
    runbook: &Runbook,
    in_loop: bool,
) -> Vec<String> {
    let Names { params, targets } = *names;
    let step_id = runbook.steps[index].id.as_str();
    let mut problems = Vec::new();
    for var in vars {
        // The reporter keeps no more than this many; each costs a look at every step.
        if problems.len() > MAX_DIAGNOSTICS {
            break;
        }
        let mut parts = var.split('.');
        let root = parts.next().unwrap_or_default();
        let name = parts.next();
        let problem = match (root, name) {
            ("params", Some(param)) if !params.contains(param) => Some(format!(
                "unknown param `{param}`{}",
                suggestion(param, params.iter().copied())
            )),
            ("steps", Some(other)) => match runbook.step_index(other) {
                None => Some(format!(
                    "unknown step `{other}`{}",
                    suggestion(other, runbook.steps.iter().map(|s| s.id.as_str()))
                )),
                Some(_) if other == step_id => {
                    Some(format!("step `{step_id}` cannot read its own result"))
                }
                Some(read) if !upstream.needs(index, read) => Some(format!(
                    "reads `steps.{other}` but does not depend on it; add `needs = [\"{other}\"]`"
                )),
                Some(_) => None,
            },
            ("targets", Some(target)) if !targets.contains(target) => Some(format!(
                "unknown target `{target}`{}",
                suggestion(target, runbook.targets.iter().map(|t| t.name.as_str()))
            )),
            ("secrets", None) => Some("name the secret: `secrets.NAME`".to_owned()),
            // A step's context holds only the steps it names, so `steps[name]` or a loop
            // over `steps` would find nothing at run time.
            ("steps", None) => Some(
                "name each step it reads as `steps.ID` (a template sees only the steps it \
                 names, not `steps` as a whole)"
                    .to_owned(),
            ),
            // Secrets live in the daemon's vault: a run checks they exist when it starts.
            ("params" | "run" | "secrets" | "targets", _) => None,
            // Filled in by the http plugin once an async invocation has an id.
            ("invocation_id", None) => None,
            ("item" | "index", _) if in_loop => None,
            ("item" | "index", _) => Some(format!(
                "`{root}` is set only in the `with` of a step with `for_each` (once per item)"
            )),
            _ => Some(format!(
                "unknown variable `{root}`; templates can read `params`, `steps`, `run`, \
                 `secrets` and `targets`"
            )),
        };
        if let Some(problem) = problem {
            problems.push(format!("step `{step_id}`: {problem}"));
        }
    }
    problems
}

/// What a loop's `for_each` may not read: its items are stored with the run and shown to
/// operators, so never `secrets`; and `targets` are a `with` table's.
fn loop_reads_hidden(step_id: &str, vars: &BTreeSet<String>) -> Vec<String> {
    let roots: BTreeSet<&str> = vars
        .iter()
        .filter_map(|var| var.split('.').next())
        .filter(|root| matches!(*root, "secrets" | "targets"))
        .collect();
    roots
        .into_iter()
        .map(|root| {
            format!(
                "step `{step_id}`: `for_each` cannot read `{root}`: a loop's items are stored \
                 with the run and shown to operators; read {root} in `with` instead"
            )
        })
        .collect()
}

/// Answers "does this step transitively need that one". A direct need, the usual case, is a
/// binary search in the needed step's dependents. Anything else is answered from every
/// step's ancestors as a bitset, built on the first such question in one pass in dependency
/// order. A walk up `needs` per question, as this was, cost the square of a chain whose steps
/// each read its first step (16 s for 10,000 steps in a debug build); the bitsets cost steps²
/// bits (12.5 MB at `limits::MAX_STEPS`) and one pass over the needs.
struct Upstream<'a> {
    runbook: &'a Runbook,
    /// 64-bit words per step in `ancestors`.
    words: usize,
    /// Bit `i % 64` of word `step * words + i / 64`: whether `step` needs step `i`.
    ancestors: Option<Vec<u64>>,
}

impl<'a> Upstream<'a> {
    fn new(runbook: &'a Runbook) -> Self {
        Self {
            runbook,
            words: runbook.steps.len().div_ceil(64),
            ancestors: None,
        }
    }

    /// Whether step `from` needs step `target`, directly or through other steps.
    fn needs(&mut self, from: usize, target: usize) -> bool {
        if self.runbook.dependents(target).binary_search(&from).is_ok() {
            return true;
        }
        let (runbook, words) = (self.runbook, self.words);
        let ancestors = self
            .ancestors
            .get_or_insert_with(|| ancestors(runbook, words));
        ancestors
            .get(from * words + target / 64)
            .is_some_and(|word| word & (1 << (target % 64)) != 0)
    }
}

/// Every step's ancestors as bitsets (see [`Upstream`]), in one pass over the steps in
/// dependency order (Kahn's): a step's row is complete before it is merged into the rows of
/// the steps that need it. Steps in a cycle are never complete; there are none by the time
/// templates are checked.
fn ancestors(runbook: &Runbook, words: usize) -> Vec<u64> {
    let steps = runbook.steps.len();
    let mut rows = vec![0u64; steps * words];
    let mut waiting = vec![0usize; steps];
    for step in 0..steps {
        for &dependent in runbook.dependents(step) {
            waiting[dependent] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..steps).filter(|&step| waiting[step] == 0).collect();
    let mut row = vec![0u64; words];
    while let Some(step) = ready.pop() {
        row.copy_from_slice(&rows[step * words..(step + 1) * words]);
        row[step / 64] |= 1 << (step % 64);
        for &dependent in runbook.dependents(step) {
            for (into, from) in rows[dependent * words..(dependent + 1) * words]
                .iter_mut()
                .zip(&row)
            {
                *into |= from;
            }
            waiting[dependent] -= 1;
            if waiting[dependent] == 0 {
                ready.push(dependent);
            }
        }
    }
    rows
}

/// The span of one character at `line`:`column` (1-based) of the string literal at `value`
/// in `source`. Escapes in a basic string shift columns; literal and multi-line strings,
/// where long embedded documents live, map exactly.
fn inside_string(
    source: &str,
    value: &std::ops::Range<usize>,
    line: u32,
    column: u32,
) -> Option<std::ops::Range<usize>> {
    let literal = source.get(value.clone())?;
    let delimiter = ["\"\"\"", "'''", "\"", "'"]
        .into_iter()
        .find(|delimiter| literal.starts_with(delimiter))?;
    let mut start = value.start + delimiter.len();
    if delimiter.len() == 3 {
        // TOML trims a newline right after the opening delimiter.
        if source[start..].starts_with("\r\n") {
            start += 2;
        } else if source[start..].starts_with('\n') {
            start += 1;
        }
    }
    let mut offset = start;
    for _ in 1..line {
        offset += source.get(offset..value.end)?.find('\n')? + 1;
    }
    let rest = source.get(offset..value.end)?;
    let (index, ch) = rest
        .char_indices()
        .nth(usize::try_from(column.saturating_sub(1)).ok()?)?;
    Some(offset + index..offset + index + ch.len_utf8())
}

/// Every string in `value` that holds template syntax, with its path. Recursive: a `with`
/// value nests at most as deep as TOML lets it (see `limits::MAX_TOML_DEPTH`).
pub(super) fn collect_templates(
    value: &serde_json::Value,
    path: &mut Vec<Segment>,
    out: &mut Vec<(Vec<Segment>, String)>,
) {
    match value {
        serde_json::Value::String(text) if template::is_template(text) => {
            out.push((path.clone(), text.clone()));
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                collect_templates(item, path, out);
                path.pop();
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                path.push(Segment::Key(key.clone()));
                collect_templates(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `; did you mean `x`?` when a known name is one or two edits away.
fn suggestion<'a>(wrong: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|candidate| (edit_distance(wrong, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, candidate)| format!("; did you mean `{candidate}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}
