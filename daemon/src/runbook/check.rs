//! Whole-runbook checks: duplicate ids, unknown or cyclic `needs`, unknown step kinds, each
//! plugin's own validation of its `with` table, and the variables templates read.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::locate::{Locator, Segment, parse_path};
use super::parse::{Parsed, Reporter, StepSpans};
use super::{Diagnostic, Runbook};
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
    let mut report = Reporter {
        file: &runbook.path,
        source: &runbook.source,
        diagnostics: Vec::new(),
    };

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, step) in runbook.steps.iter().enumerate() {
        if let Some(first) = seen.insert(&step.id, index) {
            let line =
                Diagnostic::at(&runbook.path, &runbook.source, spans[first].id.clone(), "").line;
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

/// Every template in `with` and every `if` may read only declared params, steps this step
/// (transitively) needs, and the run itself.
fn check_templates(
    runbook: &Runbook,
    spans: &[StepSpans],
    locator: &Locator<'_>,
    report: &mut Reporter<'_>,
) {
    let params: HashSet<&str> = runbook.params.iter().map(|p| p.name.as_str()).collect();
    let mut upstream = Upstream::new(runbook);
    for (index, step) in runbook.steps.iter().enumerate() {
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
                    let problems = check_variables(&vars, index, &params, &mut upstream, runbook);
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
        if let (Some(condition), Some(span)) = (&step.condition, &spans[index].condition) {
            match template::expression_variables(condition) {
                Ok(vars) => {
                    for problem in check_variables(&vars, index, &params, &mut upstream, runbook) {
                        report.error(span.clone(), problem);
                    }
                }
                Err(err) => report.error(
                    span.clone(),
                    format!("step `{}`: invalid `if` expression: {err}", step.id),
                ),
            }
        }
    }
}

/// What is wrong with the variables one template of step `index` reads, as messages.
fn check_variables(
    vars: &BTreeSet<String>,
    index: usize,
    params: &HashSet<&str>,
    upstream: &mut Upstream<'_>,
    runbook: &Runbook,
) -> Vec<String> {
    let step_id = runbook.steps[index].id.as_str();
    let mut problems = Vec::new();
    for var in vars {
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
            ("targets", Some(target)) if runbook.target(target).is_none() => Some(format!(
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

/// Answers "does this step transitively need that one" one question at a time, walking up
/// `needs` from the step and stopping as soon as it meets the other: reading a direct need,
/// the usual case, costs one look, where a set of every step's ancestors would cost the
/// square of a long chain. The visited marks are reused across questions (a new generation
/// per question) so that each costs only the steps it visits.
struct Upstream<'a> {
    runbook: &'a Runbook,
    visited: Vec<u32>,
    generation: u32,
    stack: Vec<usize>,
}

impl<'a> Upstream<'a> {
    fn new(runbook: &'a Runbook) -> Self {
        Self {
            runbook,
            visited: vec![0; runbook.steps.len()],
            generation: 0,
            stack: Vec::new(),
        }
    }

    /// Whether step `from` needs step `target`, directly or through other steps.
    fn needs(&mut self, from: usize, target: usize) -> bool {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Marks of four billion questions ago would read as marks of this one.
            self.visited.fill(0);
            self.generation = 1;
        }
        self.stack.clear();
        self.stack.push(from);
        while let Some(node) = self.stack.pop() {
            for need in &self.runbook.steps[node].needs {
                let Some(next) = self.runbook.step_index(need) else {
                    continue;
                };
                if next == target {
                    return true;
                }
                if self.visited[next] != self.generation {
                    self.visited[next] = self.generation;
                    self.stack.push(next);
                }
            }
        }
        false
    }
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

fn collect_templates(
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
