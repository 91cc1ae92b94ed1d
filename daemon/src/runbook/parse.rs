//! TOML -> typed runbook: the file's limits, syntax, unknown keys, types, durations and
//! params. Checks that need the whole step graph or the plugins live in `check`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diagnostic::SourceMap;
use super::graph::StepGraph;
use super::limits::{
    MAX_DIAGNOSTICS, MAX_STEPS, MAX_TEMPLATE_BYTES, MAX_TEMPLATE_DEPTH, MAX_TOML_DEPTH,
};
use super::locate::{Locator, Segment, display_path};
use super::retry::{Backoff, DEFAULT_DELAY, DEFAULT_MAX_DELAY, RetryOn, RetryPolicy};
use super::target::{BreakerPolicy, RateLimit, Target};
use super::{
    Diagnostic, INSTRUCTION_KIND, Loop, LoopItems, Param, ParamType, Runbook, Step, content_hash,
};

/// Steps of one run that may execute at once unless the runbook says otherwise.
const DEFAULT_MAX_PARALLEL: usize = 4;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunbook {
    name: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    params: BTreeMap<Spanned<String>, RawParam>,
    max_parallel: Option<Spanned<i64>>,
    /// Settings every step has unless it sets its own.
    defaults: Option<RawDefaults>,
    /// Named endpoints with their own defaults and policies.
    #[serde(default)]
    targets: BTreeMap<Spanned<String>, RawTarget>,
    /// Database connections of this runbook's steps, by name.
    #[serde(default)]
    connections: BTreeMap<Spanned<String>, RawConnection>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Spanned<String>,
    #[serde(default)]
    headers: toml::Table,
    auth: Option<toml::Table>,
    timeout: Option<Spanned<String>>,
    retry: Option<RawRetry>,
    rate_limit: Option<Spanned<RawRateLimit>>,
    burst: Option<Spanned<i64>>,
    circuit_breaker: Option<RawBreaker>,
}

/// `rate_limit = "50/s"` or `rate_limit = { max = 100, window = "1m" }`.
enum RawRateLimit {
    Bucket(String),
    Window(RawWindow),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    max: Spanned<i64>,
    window: Spanned<String>,
}

impl<'de> Deserialize<'de> for RawRateLimit {
    /// By hand rather than `untagged`, so that a mistake inside the table (an unknown key, a
    /// string for `max`) keeps its own message and position.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawRateLimit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a rate like "50/s" or a table like { max = 100, window = "1m" }"#)
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawRateLimit, E> {
                Ok(RawRateLimit::Bucket(text.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawRateLimit, A::Error> {
                RawWindow::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawRateLimit::Window)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    /// Usually a template reading a secret: `{{ secrets.orders_url }}`.
    url: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failures: Spanned<i64>,
    cooldown: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    timeout: Option<Spanned<String>>,
    retry: Option<RawRetry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Spanned<i64>,
    backoff: Option<Backoff>,
    delay: Option<Spanned<String>>,
    max_delay: Option<Spanned<String>>,
    jitter: Option<bool>,
    on: Option<Spanned<Vec<RetryOn>>>,
    #[serde(rename = "if")]
    condition: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(rename = "type")]
    kind: Spanned<ParamType>,
    default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    required: bool,
    allowed: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    id: Spanned<String>,
    uses: Spanned<String>,
    with: Option<Spanned<toml::Table>>,
    #[serde(default)]
    needs: Vec<Spanned<String>>,
    #[serde(rename = "if")]
    condition: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    retry: Option<RawRetry>,
    approval: Option<bool>,
    #[serde(default)]
    allow_insecure_redirects: bool,
    #[serde(default)]
    description: String,
    /// What an operator types when confirming an `instruction` step, declared like `[params]`.
    #[serde(default)]
    inputs: BTreeMap<Spanned<String>, RawParam>,
    /// Runs the step once per item: a template that evaluates to a list, or a list.
    for_each: Option<Spanned<toml::Value>>,
    /// Instances of a loop step that run at once.
    max_parallel: Option<Spanned<i64>>,
    /// Whether a loop's first failed instance cancels the others.
    fail_fast: Option<Spanned<bool>>,
    /// How an async step learns that its invocation ended.
    wait: Option<RawWait>,
    /// The label (or labels, all of them) of the agent that runs the step.
    runs_on: Option<Spanned<RawLabels>>,
}

/// `runs_on = "label"` or `runs_on = ["a", "b"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawLabels {
    One(String),
    All(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWait {
    /// The JetStream stream its completion message arrives on.
    queue: Spanned<String>,
}

/// A runbook parsed from TOML, with the spans `check` needs to point at its problems.
pub(super) struct Parsed {
    pub runbook: Runbook,
    pub spans: Vec<StepSpans>,
}

/// Where each part of a step is in the source.
pub(super) struct StepSpans {
    pub id: std::ops::Range<usize>,
    pub uses: std::ops::Range<usize>,
    pub with: std::ops::Range<usize>,
    pub needs: Vec<std::ops::Range<usize>>,
    pub condition: Option<std::ops::Range<usize>>,
    pub for_each: Option<std::ops::Range<usize>>,
}

/// Collects diagnostics for one file, at most [`MAX_DIAGNOSTICS`] of them and then one that
/// says more were left out.
pub(super) struct Reporter<'a> {
    pub file: &'a str,
    map: SourceMap<'a>,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'a> Reporter<'a> {
    pub fn new(file: &'a str, source: &'a str) -> Self {
        Self {
            file,
            map: SourceMap::new(source),
            diagnostics: Vec::new(),
        }
    }

    pub fn error(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let message = match self.diagnostics.len() {
            count if count < MAX_DIAGNOSTICS => message.into(),
            MAX_DIAGNOSTICS => format!(
                "too many problems: only the first {MAX_DIAGNOSTICS} are shown; this is the \
                 next one (fix those and validate again)"
            ),
            _ => return,
        };
        self.diagnostics
            .push(self.map.diagnostic(self.file, span, message));
    }

    /// Whether further problems would be left out: checks that cost something per problem
    /// stop here, so that a file with a problem on every line costs no more than one with a
    /// hundred.
    pub fn is_full(&self) -> bool {
        self.diagnostics.len() > MAX_DIAGNOSTICS
    }

    /// The 1-based line of byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.map.line_of(offset)
    }
}

pub(super) fn parse(file: &str, source: &str) -> Result<Parsed, Vec<Diagnostic>> {
    // Before the source is parsed: `toml`'s parser recurses once per level of nesting, and
    // everything after it costs time in proportion to the file.
    if let Some(too_large) = super::limits::too_large(file, source.as_bytes()) {
        return Err(vec![too_large]);
    }
    if let Some(span) = super::nesting::toml_too_deep(source, MAX_TOML_DEPTH) {
        return Err(vec![Diagnostic::at(file, source, span, too_deep_toml())]);
    }
    let raw: RawRunbook = toml::from_str(source).map_err(|err| {
        let (span, message) = toml_error(source, &err);
        vec![Diagnostic::at(file, source, span, message)]
    })?;
    let mut report = Reporter::new(file, source);
    // Spans inside `with`, `headers` and `auth` need the source parsed again, once, and only
    // when something there is reported.
    let locator = Locator::new(source);
    if let Some(extra) = raw.steps.get(MAX_STEPS) {
        report.error(
            extra.span(),
            format!(
                "too many steps: a runbook may have at most {MAX_STEPS}, and this is step {} of {}",
                MAX_STEPS + 1,
                raw.steps.len()
            ),
        );
        return Err(report.diagnostics);
    }

    let name = match &raw.name {
        Some(name) => {
            if !is_valid_name(name.get_ref()) {
                report.error(
                    name.span(),
                    format!(
                        "runbook name `{}` must be letters, digits, `-` and `_`",
                        name.get_ref()
                    ),
                );
            }
            name.get_ref().clone()
        }
        None => Path::new(file)
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };

    let max_parallel = match &raw.max_parallel {
        Some(value) if *value.get_ref() < 1 => {
            report.error(value.span(), "max_parallel must be at least 1");
            DEFAULT_MAX_PARALLEL
        }
        Some(value) => usize::try_from(*value.get_ref()).unwrap_or(DEFAULT_MAX_PARALLEL),
        None => DEFAULT_MAX_PARALLEL,
    };

    let params = in_written_order(&raw.params)
        .map(|(name, param)| parse_param(&mut report, name, param, "param", "params."))
        .collect();

    if raw.steps.is_empty() {
        report.error(0..0, "a runbook needs at least one [[steps]] table");
    }
    let targets: Vec<Target> = raw
        .targets
        .iter()
        .map(|(name, target)| {
            let parsed = parse_target(&mut report, name, target);
            check_target_templates(&mut report, &locator, &parsed, target);
            parsed
        })
        .collect();
    let connections = raw
        .connections
        .iter()
        .map(|(name, connection)| {
            if !is_valid_step_id(name.get_ref()) {
                report.error(
                    name.span(),
                    format!(
                        "connection name `{}` must be letters, digits and `_`",
                        name.get_ref()
                    ),
                );
            }
            let url = connection.url.get_ref();
            if crate::template::is_template(url)
                && let Some(problem) = template_problem(url, Kind::Template)
            {
                report.error(
                    connection.url.span(),
                    format!("connection `{}`: url: {problem}", name.get_ref()),
                );
            }
            super::Connection {
                name: name.get_ref().clone(),
                url: connection.url.get_ref().clone(),
            }
        })
        .collect();
    let defaults = StepDefaults {
        timeout: raw
            .defaults
            .as_ref()
            .and_then(|d| d.timeout.as_ref())
            .and_then(|timeout| parse_duration(&mut report, timeout, "timeout")),
        retry: raw
            .defaults
            .as_ref()
            .and_then(|d| d.retry.as_ref())
            .and_then(|retry| parse_retry(&mut report, retry)),
    };
    let known = KnownTargets::new(&targets);
    let (mut steps, spans): (Vec<Step>, _) = raw
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let (parsed, spans) = parse_step(&mut report, &locator, step, index, &defaults, &known);
            check_step_templates(&mut report, &locator, &parsed, &spans, index);
            (parsed, spans)
        })
        .unzip();

    if !report.diagnostics.is_empty() {
        return Err(report.diagnostics);
    }
    // Lists what each step's templates read, parsing them: only now that every template is
    // known to be within the limits.
    let graph = StepGraph::link(&mut steps);
    Ok(Parsed {
        runbook: Runbook {
            name,
            description: raw.description,
            path: file.to_owned(),
            source: source.to_owned(),
            version: content_hash(source),
            params,
            steps,
            targets,
            connections,
            max_parallel,
            graph,
        },
        spans,
    })
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Step ids appear in templates as `steps.<id>`, so they must be identifiers there too.
fn is_valid_step_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Declared values in the order they are written: the order a form asks for them in.
fn in_written_order(
    declared: &BTreeMap<Spanned<String>, RawParam>,
) -> impl Iterator<Item = (&Spanned<String>, &RawParam)> {
    let mut entries: Vec<_> = declared.iter().collect();
    entries.sort_by_key(|(name, _)| name.span().start);
    entries.into_iter()
}

/// One declared value (a runbook's param, an instruction step's input); `noun` names it in
/// messages and `read_as` is how templates read it, the name left out (`params.`).
fn parse_param(
    report: &mut Reporter<'_>,
    name: &Spanned<String>,
    raw: &RawParam,
    noun: &str,
    read_as: &str,
) -> Param {
    let kind = *raw.kind.get_ref();
    if !is_valid_step_id(name.get_ref()) {
        report.error(
            name.span(),
            format!(
                "{noun} name `{}` must be letters, digits and `_` (it is read as `{read_as}{0}`)",
                name.get_ref()
            ),
        );
    }
    let mut allowed = Vec::new();
    if let Some(values) = &raw.allowed {
        for value in values.get_ref() {
            let json = toml_to_json(value.get_ref());
            if !kind.accepts(&json) {
                report.error(
                    value.span(),
                    format!(
                        "allowed value {json} of {noun} `{}` is not {}",
                        name.get_ref(),
                        kind.with_article()
                    ),
                );
            }
            allowed.push(json);
        }
        if allowed.is_empty() {
            report.error(values.span(), "`allowed` must list at least one value");
        }
    }
    let default = raw.default.as_ref().map(|value| {
        let json = toml_to_json(value.get_ref());
        if !kind.accepts(&json) {
            report.error(
                value.span(),
                format!(
                    "default {json} of {noun} `{}` is not {}",
                    name.get_ref(),
                    kind.with_article()
                ),
            );
        } else if !allowed.is_empty() && !allowed.contains(&json) {
            report.error(
                value.span(),
                format!(
                    "default {json} of {noun} `{}` is not one of the allowed values {}",
                    name.get_ref(),
                    serde_json::Value::Array(allowed.clone())
                ),
            );
        }
        json
    });
    Param {
        name: name.get_ref().clone(),
        kind,
        default,
        required: raw.required,
        allowed,
        description: raw.description.clone(),
    }
}

/// What `[defaults]` gives every step that does not set its own.
struct StepDefaults {
    timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
}

/// A positive duration such as "30s" or "1h 30m"; `what` names the field in the message.
fn parse_duration(
    report: &mut Reporter<'_>,
    text: &Spanned<String>,
    what: &str,
) -> Option<Duration> {
    match humantime::parse_duration(text.get_ref()) {
        Ok(duration) if duration.is_zero() => {
            report.error(text.span(), format!("{what} must be longer than zero"));
            None
        }
        Ok(duration) => Some(duration),
        Err(err) => {
            report.error(
                text.span(),
                format!(
                    "invalid duration `{}`: {err} (write it like \"30s\", \"5m\" or \"1h 30m\")",
                    text.get_ref()
                ),
            );
            None
        }
    }
}

fn parse_retry(report: &mut Reporter<'_>, raw: &RawRetry) -> Option<RetryPolicy> {
    let attempts = match u32::try_from(*raw.attempts.get_ref()) {
        Ok(attempts) if attempts >= 1 => attempts,
        _ => {
            report.error(
                raw.attempts.span(),
                "retry.attempts counts every try, the first included: it must be at least 1",
            );
            1
        }
    };
    let delay = raw
        .delay
        .as_ref()
        .and_then(|delay| parse_duration(report, delay, "retry.delay"))
        .unwrap_or(DEFAULT_DELAY);
    let max_delay = raw
        .max_delay
        .as_ref()
        .and_then(|max| parse_duration(report, max, "retry.max_delay"))
        .unwrap_or(DEFAULT_MAX_DELAY.max(delay));
    if max_delay < delay
        && let Some(max) = &raw.max_delay
    {
        report.error(
            max.span(),
            "retry.max_delay must not be shorter than retry.delay",
        );
    }
    if let (Some(condition), Some(on)) = (&raw.condition, &raw.on) {
        report.error(
            on.span().start.min(condition.span().start)..on.span().end.max(condition.span().end),
            "retry.if decides which failures are tried again: give `if` or `on`, not both \
             (`class` in `if` is the failure's class)",
        );
    }
    if let Some(condition) = &raw.condition {
        check_retry_condition(report, condition);
    }
    Some(RetryPolicy {
        attempts,
        backoff: raw.backoff.unwrap_or(Backoff::Exponential),
        delay,
        max_delay,
        jitter: raw.jitter.unwrap_or(true),
        on: raw
            .on
            .as_ref()
            .map(|on| on.get_ref().clone())
            .unwrap_or_else(|| RetryPolicy::DEFAULT_ON.to_vec()),
        condition: raw.condition.as_ref().map(|c| c.get_ref().clone()),
    })
}

/// A retry policy's `if`: within the template limits, an expression MiniJinja compiles, and
/// reading only the failed attempt ([`super::retry::CONDITION_VARIABLES`]).
fn check_retry_condition(report: &mut Reporter<'_>, condition: &Spanned<String>) {
    let text = condition.get_ref();
    if let Some(problem) = template_problem(text, Kind::Expression) {
        report.error(condition.span(), format!("retry.if: {problem}"));
        return;
    }
    match crate::template::expression_variables(text) {
        Ok(vars) => {
            let allowed = super::retry::CONDITION_VARIABLES;
            let unknown: Vec<&str> = vars
                .iter()
                .filter_map(|var| var.split('.').next())
                .filter(|root| !allowed.contains(root))
                .collect();
            if let Some(root) = unknown.first() {
                report.error(
                    condition.span(),
                    format!(
                        "retry.if reads `{root}`, but it can read only the failed attempt: {}",
                        allowed.map(|name| format!("`{name}`")).join(", ")
                    ),
                );
            }
        }
        Err(err) => report.error(
            condition.span(),
            format!("retry.if: invalid expression: {err}"),
        ),
    }
}

fn parse_target(report: &mut Reporter<'_>, name: &Spanned<String>, raw: &RawTarget) -> Target {
    if !is_valid_step_id(name.get_ref()) {
        report.error(
            name.span(),
            format!(
                "target name `{}` must be letters, digits and `_` (it is read as `targets.{0}`)",
                name.get_ref()
            ),
        );
    }
    let url = raw.url.get_ref();
    if !crate::template::is_template(url) && url::Url::parse(url).is_err() {
        report.error(
            raw.url.span(),
            format!(
                "target `{}`: `{url}` is not an absolute URL",
                name.get_ref()
            ),
        );
    }
    let rate_limit = raw
        .rate_limit
        .as_ref()
        .and_then(|limit| parse_rate_limit(report, limit, raw.burst.as_ref()));
    if let (Some(burst), None) = (&raw.burst, &raw.rate_limit) {
        report.error(burst.span(), "burst needs a rate_limit");
    }
    let circuit_breaker = raw.circuit_breaker.as_ref().and_then(|breaker| {
        let failures = match u32::try_from(*breaker.failures.get_ref()) {
            Ok(failures) if failures >= 1 => failures,
            _ => {
                report.error(
                    breaker.failures.span(),
                    "circuit_breaker.failures must be at least 1",
                );
                return None;
            }
        };
        let cooldown = parse_duration(report, &breaker.cooldown, "circuit_breaker.cooldown")?;
        Some(BreakerPolicy { failures, cooldown })
    });
    Target {
        name: name.get_ref().clone(),
        url: url.clone(),
        headers: toml_to_json(&toml::Value::Table(raw.headers.clone())),
        auth: raw
            .auth
            .as_ref()
            .map(|auth| toml_to_json(&toml::Value::Table(auth.clone()))),
        timeout: raw
            .timeout
            .as_ref()
            .and_then(|timeout| parse_duration(report, timeout, "timeout")),
        retry: raw
            .retry
            .as_ref()
            .and_then(|retry| parse_retry(report, retry)),
        rate_limit,
        circuit_breaker,
    }
}

fn parse_rate_limit(
    report: &mut Reporter<'_>,
    limit: &Spanned<RawRateLimit>,
    burst: Option<&Spanned<i64>>,
) -> Option<RateLimit> {
    match limit.get_ref() {
        RawRateLimit::Bucket(text) => {
            let burst = match burst {
                Some(burst) => match u32::try_from(*burst.get_ref()) {
                    Ok(burst) if burst >= 1 => Some(burst),
                    _ => {
                        report.error(burst.span(), "burst must be at least 1");
                        None
                    }
                },
                None => None,
            };
            RateLimit::parse(text, burst)
                .map_err(|err| report.error(limit.span(), err))
                .ok()
        }
        RawRateLimit::Window(window) => {
            if let Some(burst) = burst {
                report.error(
                    burst.span(),
                    "a sliding window has no burst: its `max` is how many may go at once",
                );
            }
            let max = u32::try_from(*window.max.get_ref()).unwrap_or(0);
            let duration = parse_duration(report, &window.window, "rate_limit.window")?;
            RateLimit::window(max, duration)
                .map_err(|err| {
                    let span = if err.starts_with("rate_limit.max") {
                        window.max.span()
                    } else {
                        window.window.span()
                    };
                    report.error(span, err);
                })
                .ok()
        }
    }
}

fn parse_step(
    report: &mut Reporter<'_>,
    locator: &Locator<'_>,
    raw: &Spanned<RawStep>,
    index: usize,
    defaults: &StepDefaults,
    targets: &KnownTargets<'_>,
) -> (Step, StepSpans) {
    let step = raw.get_ref();
    if !is_valid_step_id(step.id.get_ref()) {
        report.error(
            step.id.span(),
            format!(
                "step id `{}` must start with a letter or `_` and hold only letters, digits and `_` \
                 (it is read as `steps.{0}` in templates)",
                step.id.get_ref()
            ),
        );
    }
    let with = step.with.as_ref().map_or_else(
        || serde_json::Value::Object(serde_json::Map::new()),
        |table| toml_to_json(&toml::Value::Table(table.get_ref().clone())),
    );
    // A step against a target takes the target's timeout and retry unless it sets its own.
    let target = match with.get("target") {
        Some(serde_json::Value::String(name)) => {
            let found = targets.by_name.get(name.as_str()).copied();
            if found.is_none() && !report.is_full() {
                let span = locator
                    .with_span(index, &[Segment::Key("target".into())])
                    .unwrap_or_else(|| raw.span());
                report.error(
                    span,
                    if targets.by_name.is_empty() {
                        format!("unknown target `{name}`; define it in a [targets.{name}] table")
                    } else {
                        format!("unknown target `{name}`; defined targets: {}", targets.list)
                    },
                );
            }
            found
        }
        _ => None,
    };
    let timeout = match &step.timeout {
        Some(timeout) => parse_duration(report, timeout, "timeout"),
        None => target
            .and_then(|target| target.timeout)
            .or(defaults.timeout),
    };
    let retry = match &step.retry {
        Some(retry) => parse_retry(report, retry),
        None => target
            .and_then(|target| target.retry.clone())
            .or_else(|| defaults.retry.clone()),
    };
    let wait_queue = step.wait.as_ref().map(|wait| {
        if !crate::cluster::is_stream_name(wait.queue.get_ref()) {
            report.error(
                wait.queue.span(),
                format!(
                    "`{}` is not a JetStream stream name (letters, digits, `-` and `_`)",
                    wait.queue.get_ref()
                ),
            );
        }
        wait.queue.get_ref().clone()
    });
    let runs_on = step.runs_on.as_ref().map_or_else(Vec::new, |labels| {
        let list = match labels.get_ref() {
            RawLabels::One(label) => vec![label.clone()],
            RawLabels::All(list) => list.clone(),
        };
        if list.is_empty() {
            report.error(
                labels.span(),
                "`runs_on` names no label; give one (`runs_on = \"db\"`) or leave it out to run the step here",
            );
        }
        if let Some(bad) = list.iter().find(|label| !crate::cluster::is_agent_name(label)) {
            report.error(
                labels.span(),
                format!("`{bad}` is not an agent label (1 to 64 letters, digits, `-` and `_`)"),
            );
        }
        list
    });
    let read_as = format!("steps.{}.output.", step.id.get_ref());
    let inputs = in_written_order(&step.inputs)
        .map(|(name, input)| parse_param(report, name, input, "input", &read_as))
        .collect();
    if let Some((first, _)) = step.inputs.iter().next()
        && step.uses.get_ref() != INSTRUCTION_KIND
    {
        report.error(
            first.span(),
            format!(
                "`inputs` are what an operator types when confirming an `instruction` step; \
                 a `{}` step takes none (its plugin reads `with`)",
                step.uses.get_ref()
            ),
        );
    }
    let spans = StepSpans {
        id: step.id.span(),
        uses: step.uses.span(),
        with: step.with.as_ref().map_or(raw.span(), Spanned::span),
        needs: step.needs.iter().map(Spanned::span).collect(),
        condition: step.condition.as_ref().map(Spanned::span),
        for_each: step.for_each.as_ref().map(Spanned::span),
    };
    let each = parse_loop(report, step);
    let parsed = Step {
        id: step.id.get_ref().clone(),
        uses: step.uses.get_ref().clone(),
        with,
        needs: step
            .needs
            .iter()
            .map(|need| need.get_ref().clone())
            .collect(),
        condition: step.condition.as_ref().map(|c| c.get_ref().clone()),
        target: target.map(|target| target.name.clone()),
        timeout,
        retry,
        approval: step.approval,
        allow_insecure_redirects: step.allow_insecure_redirects,
        wait_queue,
        runs_on,
        description: step.description.clone(),
        inputs,
        each,
        // Needs every step's id: filled in once all are parsed.
        reads: Vec::new(),
    };
    (parsed, spans)
}

/// A step's `for_each`, `max_parallel` and `fail_fast`: the latter two only with the first.
fn parse_loop(report: &mut Reporter<'_>, step: &RawStep) -> Option<Loop> {
    let Some(for_each) = &step.for_each else {
        for (span, key) in [
            (
                step.max_parallel.as_ref().map(Spanned::span),
                "max_parallel",
            ),
            (step.fail_fast.as_ref().map(Spanned::span), "fail_fast"),
        ] {
            if let Some(span) = span {
                report.error(
                    span,
                    format!(
                        "`{key}` on a step applies to its loop's instances, and step `{}` has no \
                         `for_each` (the runbook's own `max_parallel` bounds its steps)",
                        step.id.get_ref()
                    ),
                );
            }
        }
        return None;
    };
    if step.uses.get_ref() == INSTRUCTION_KIND {
        report.error(
            for_each.span(),
            "an `instruction` step cannot loop: write one instruction that covers every item",
        );
    }
    let items = match for_each.get_ref() {
        toml::Value::Array(items) => LoopItems::List(items.iter().map(toml_to_json).collect()),
        toml::Value::String(text) => match loop_expression(text) {
            Some(expression) => LoopItems::Expression(expression.to_owned()),
            None => {
                report.error(
                    for_each.span(),
                    "for_each: write one template that evaluates to a list, such as \
                     \"{{ steps.list.output.hosts }}\" or \"{{ params.hosts }}\" (a `list` param), \
                     or a list",
                );
                LoopItems::List(Vec::new())
            }
        },
        other => {
            report.error(
                for_each.span(),
                format!(
                    "for_each: expected a list or a template such as \
                     \"{{{{ steps.list.output.hosts }}}}\", found {}",
                    other.type_str()
                ),
            );
            LoopItems::List(Vec::new())
        }
    };
    let max_parallel = match &step.max_parallel {
        Some(value) if *value.get_ref() < 1 => {
            report.error(value.span(), "max_parallel must be at least 1");
            1
        }
        Some(value) => usize::try_from(*value.get_ref()).unwrap_or(usize::MAX),
        None => 1,
    };
    Some(Loop {
        items,
        max_parallel,
        fail_fast: step.fail_fast.as_ref().is_some_and(|flag| *flag.get_ref()),
        // Needs the other steps: set once all are parsed.
        depth: 1,
    })
}

/// The expression of a `for_each` template: the text between `{{` and `}}` when that is all
/// there is.
fn loop_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner).trim();
    (!inner.is_empty() && !inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%"))
        .then_some(inner)
}

/// The targets of a runbook by name, for the steps that name one, and their names as a list
/// for messages (built once, not per step that names an unknown one).
struct KnownTargets<'a> {
    by_name: HashMap<&'a str, &'a Target>,
    list: String,
}

impl<'a> KnownTargets<'a> {
    /// The most names a message lists; a runbook may define thousands.
    const LISTED: usize = 20;

    fn new(targets: &'a [Target]) -> Self {
        let mut list = targets
            .iter()
            .take(Self::LISTED)
            .map(|target| target.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if targets.len() > Self::LISTED {
            list.push_str(&format!(" and {} more", targets.len() - Self::LISTED));
        }
        Self {
            by_name: targets
                .iter()
                .map(|target| (target.name.as_str(), target))
                .collect(),
            list,
        }
    }
}

/// What a text is parsed as.
#[derive(Clone, Copy)]
enum Kind {
    /// A string that may hold `{{ }}`, `{% %}` and `{# #}`.
    Template,
    /// An `if`: one expression.
    Expression,
}

/// Why a template (or `if` expression) is refused before MiniJinja parses it: longer than
/// [`MAX_TEMPLATE_BYTES`], or nested deeper than [`MAX_TEMPLATE_DEPTH`]. MiniJinja's parser and
/// compiler recurse once per level, and the depth is the file's to choose.
fn template_problem(text: &str, kind: Kind) -> Option<String> {
    let noun = match kind {
        Kind::Template => "template",
        Kind::Expression => "expression",
    };
    if text.len() > MAX_TEMPLATE_BYTES {
        return Some(format!(
            "the {noun} is too long: {} bytes, and at most {MAX_TEMPLATE_BYTES} are allowed",
            text.len()
        ));
    }
    let depth = match kind {
        Kind::Template => super::nesting::template_depth(text),
        Kind::Expression => super::nesting::expression_depth(text),
    };
    (depth > MAX_TEMPLATE_DEPTH).then(|| {
        format!(
            "the {noun} nests too deeply: {depth} levels, and at most {MAX_TEMPLATE_DEPTH} are \
             allowed (each operator, filter, test, `.` or `[]` access, `not`, bracket and block \
             adds a level)"
        )
    })
}

/// The limits of every template in a step's `with` table and of its `if`.
fn check_step_templates(
    report: &mut Reporter<'_>,
    locator: &Locator<'_>,
    step: &Step,
    spans: &StepSpans,
    index: usize,
) {
    let mut texts = Vec::new();
    super::check::collect_templates(&step.with, &mut Vec::new(), &mut texts);
    for (path, text) in texts {
        if report.is_full() {
            return;
        }
        if let Some(problem) = template_problem(&text, Kind::Template) {
            let span = locator
                .with_span(index, &path)
                .unwrap_or_else(|| spans.with.clone());
            let field = display_path(&path);
            report.error(span, format!("step `{}`: with.{field}: {problem}", step.id));
        }
    }
    if let (Some(condition), Some(span)) = (&step.condition, &spans.condition)
        && let Some(problem) = template_problem(condition, Kind::Expression)
    {
        report.error(span.clone(), format!("step `{}`: if: {problem}", step.id));
    }
    if let (Some(LoopItems::Expression(expression)), Some(span)) =
        (step.each.as_ref().map(|each| &each.items), &spans.for_each)
        && let Some(problem) = template_problem(expression, Kind::Expression)
    {
        report.error(
            span.clone(),
            format!("step `{}`: for_each: {problem}", step.id),
        );
    }
}

/// The limits of every template in a target's `url`, `headers` and `auth`.
fn check_target_templates(
    report: &mut Reporter<'_>,
    locator: &Locator<'_>,
    target: &Target,
    raw: &RawTarget,
) {
    if crate::template::is_template(&target.url)
        && let Some(problem) = template_problem(&target.url, Kind::Template)
    {
        report.error(
            raw.url.span(),
            format!("target `{}`: url: {problem}", target.name),
        );
    }
    let place = [
        Segment::Key("targets".into()),
        Segment::Key(target.name.clone()),
    ];
    for (field, value) in [
        ("headers", Some(&target.headers)),
        ("auth", target.auth.as_ref()),
    ] {
        let Some(value) = value else {
            continue;
        };
        let mut texts = Vec::new();
        let mut path = vec![Segment::Key(field.to_owned())];
        super::check::collect_templates(value, &mut path, &mut texts);
        for (path, text) in texts {
            if let Some(problem) = template_problem(&text, Kind::Template) {
                let span = locator
                    .span(&place, &path)
                    .unwrap_or_else(|| raw.url.span());
                let field = display_path(&path);
                report.error(
                    span,
                    format!("target `{}`: {field}: {problem}", target.name),
                );
            }
        }
    }
}

/// The message for TOML nested past [`MAX_TOML_DEPTH`], whichever check finds it.
fn too_deep_toml() -> String {
    format!(
        "arrays and inline tables nest too deeply here: at most {MAX_TOML_DEPTH} levels are allowed"
    )
}

/// Where and what a TOML error is. The parser gives no span for a dotted key or table header
/// with too many parts; it is found here by its dots, as well as a line-based look can.
fn toml_error(source: &str, err: &toml::de::Error) -> (std::ops::Range<usize>, String) {
    let message = err.message().trim_end();
    let span = err.span();
    if message == "recursion limit" {
        // The first line with enough dots for such a key; its text, without indentation.
        let span = span.unwrap_or_else(|| {
            source
                .split_inclusive('\n')
                .scan(0, |offset, line| {
                    let start = *offset;
                    *offset += line.len();
                    Some((start, line))
                })
                .find(|(_, line)| line.matches('.').count() >= MAX_TOML_DEPTH)
                .map_or(0..0, |(start, line)| {
                    let indent = line.len() - line.trim_start().len();
                    start + indent..start + line.trim_end().len()
                })
        });
        return (
            span,
            format!(
                "a dotted key or table header has too many parts: at most {MAX_TOML_DEPTH} are \
                 allowed"
            ),
        );
    }
    if message.contains("max recursion depth") {
        return (span.unwrap_or(0..0), too_deep_toml());
    }
    (span.unwrap_or(0..0), message.to_owned())
}

/// TOML values as the JSON that plugins and templates see. Datetimes become strings.
pub(super) fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(toml_to_json).collect())
        }
        toml::Value::Table(table) => serde_json::Value::Object(
            table
                .iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}
