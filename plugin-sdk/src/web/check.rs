//! Checks of a `with` table beyond what serde decodes (templates, durations, JSONPaths,
//! regexes), collected so that `validate` reports every problem at once.

use std::time::Duration;

use regex::Regex;
use serde::de::DeserializeOwned;
use serde_json_path::JsonPath;

use crate::runbook::plugin::types::{ConfigError, StepContext, StepError};
use crate::{config_error, parse_config, step_error};

/// Whether a string is still a MiniJinja template (`{{ .. }}`, `{% .. %}` or `{# .. #}`), as
/// values are when `validate` sees them: such a value can only be checked once rendered.
pub fn is_template(value: &str) -> bool {
    value.contains("{{") || value.contains("{%") || value.contains("{#")
}

/// When a check runs: on the raw table (`validate`) or on the rendered one (`plan`,
/// `execute`, `resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Templates are not rendered yet: values holding one are skipped.
    Validate,
    /// Everything is rendered: every value is checked, `{{` included (a body may hold it).
    Run,
}

/// Collects [`ConfigError`]s while the parts of a config are checked and compiled.
#[derive(Debug)]
pub struct Checks {
    phase: Phase,
    errors: Vec<ConfigError>,
}

impl Checks {
    /// Checks for the given phase.
    pub fn new(phase: Phase) -> Self {
        Self {
            phase,
            errors: Vec::new(),
        }
    }

    /// Which phase these checks are for.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether `value` must wait for rendering: a template seen during `validate`.
    pub fn deferred(&self, value: &str) -> bool {
        self.phase == Phase::Validate && is_template(value)
    }

    /// Records a problem with the field at `path` (dotted, as in [`ConfigError::path`]).
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(config_error(path, message));
    }

    /// Records a problem found elsewhere.
    pub fn push_error(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// Whether no problem was recorded so far.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// A duration such as `"500ms"` or `"1h 30m"`; `None` when it is a deferred template or
    /// invalid (recorded).
    pub fn duration(&mut self, path: &str, value: &str) -> Option<Duration> {
        if self.deferred(value) {
            return None;
        }
        match parse_duration(value) {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.push(path, message);
                None
            }
        }
    }

    /// An RFC 9535 JSONPath; `None` when it is a deferred template or invalid (recorded).
    pub fn json_path(&mut self, path: &str, value: &str) -> Option<JsonPath> {
        if self.deferred(value) {
            return None;
        }
        match JsonPath::parse(value) {
            Ok(parsed) => Some(parsed),
            Err(err) => {
                self.push(
                    path,
                    format!(
                        "invalid JSONPath `{value}`: {} (at character {})",
                        err.message(),
                        err.position()
                    ),
                );
                None
            }
        }
    }

    /// A regular expression (Rust `regex` syntax); `None` when it is a deferred template or
    /// invalid (recorded).
    pub fn regex(&mut self, path: &str, value: &str) -> Option<Regex> {
        if self.deferred(value) {
            return None;
        }
        match Regex::new(value) {
            Ok(regex) => Some(regex),
            Err(err) => {
                // The error's Display is a multi-line drawing of the pattern; the last line
                // says what is wrong.
                let text = err.to_string();
                let reason = text
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                self.push(path, format!("invalid regex `{value}`: {reason}"));
                None
            }
        }
    }

    /// The recorded problems, if any.
    pub fn finish(self) -> Result<(), Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }

    /// The recorded problems.
    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}

/// A step's `with` table that checks its parts and builds what it becomes in one pass, so that
/// `validate` and run time cannot disagree about what is valid. Implement
/// [`build`](Self::build); `parse`, `validate` and `prepare` come with it.
pub trait StepConfig: DeserializeOwned {
    /// What the table becomes at run time (the request and how to judge its answer).
    type Prepared;

    /// The step's kind, as named in messages.
    const KIND: &'static str;

    /// Checks every part into `checks`; at run time (with a context) also assembles the
    /// result, which may be `None` only when a problem was recorded.
    fn build(&self, checks: &mut Checks, ctx: Option<&StepContext>) -> Option<Self::Prepared>;

    /// Decodes the JSON text of `with` (see [`parse_config_with_hints`]).
    fn parse(config: &str) -> Result<Self, ConfigError> {
        parse_config_with_hints(config)
    }

    /// Every problem found before rendering.
    fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut checks = Checks::new(Phase::Validate);
        self.build(&mut checks, None);
        checks.finish()
    }

    /// [`parse`](Self::parse), then [`validate`](Self::validate): what a step's own
    /// `validate` answers for the raw JSON text of `with`.
    fn validate_config(config: &str) -> Result<(), Vec<ConfigError>> {
        Self::parse(config).map_err(|err| vec![err])?.validate()
    }

    /// The result for this attempt, from the rendered table; problems become one permanent
    /// [`StepError`] (see [`config_step_error`]).
    fn prepare(&self, ctx: &StepContext) -> Result<Self::Prepared, StepError> {
        let mut checks = Checks::new(Phase::Run);
        let prepared = self.build(&mut checks, Some(ctx));
        checks.finish().map_err(config_step_error)?;
        // Without errors at run time every part is there; say so rather than panic if not.
        prepared.ok_or_else(|| {
            step_error(format!(
                "the {} step's config could not be prepared",
                Self::KIND
            ))
        })
    }
}

/// Parses a duration the way runbook files write them (`"500ms"`, `"30s"`, `"1h 30m"`);
/// zero is refused, as no timeout or interval of zero makes sense.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value.trim()) {
        Ok(duration) if duration.is_zero() => Err("must be longer than zero".into()),
        Ok(duration) => Ok(duration),
        Err(err) => Err(format!(
            "invalid duration `{value}`: {err} (write it like \"500ms\", \"30s\" or \"1h 30m\")"
        )),
    }
}

/// `prefix.field`, or `field` alone at the root.
pub fn join_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Like [`parse_config`], and an unknown field is reported at its own path with the closest
/// known name (`unknown field `methd`; did you mean `method`?`) instead of serde's list of
/// every field.
pub fn parse_config_with_hints<T: DeserializeOwned>(config: &str) -> Result<T, ConfigError> {
    parse_config(config).map_err(hint_unknown_field)
}

/// Rewrites serde's ``unknown field `x`, expected one of `a`, `b` `` into a shorter message
/// with a suggestion, pointing at the unknown field itself.
fn hint_unknown_field(mut error: ConfigError) -> ConfigError {
    let Some(rest) = error.message.strip_prefix("unknown field `") else {
        return error;
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return error;
    };
    let known: Vec<&str> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| !name.is_empty())
        .collect();
    let field = field.to_owned();
    let message = match closest(&field, &known) {
        Some(best) => format!("unknown field `{field}`; did you mean `{best}`?"),
        None if known.is_empty() => format!("unknown field `{field}`"),
        None => format!(
            "unknown field `{field}`; known fields: {}",
            known.join(", ")
        ),
    };
    // serde_path_to_error already ends the path with the unknown field; older versions
    // stopped at its table.
    if error.path.rsplit('.').next() != Some(field.as_str()) {
        error.path = join_path(&error.path, &field);
    }
    error.message = message;
    error
}

/// The known name nearest to `word`, if it is near enough to be a likely typo.
fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    known
        .iter()
        .map(|name| (edit_distance(&word, &name.to_ascii_lowercase()), *name))
        .filter(|(distance, name)| *distance <= (name.len().max(word.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance over characters; names are short, so the quadratic table is fine.
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

/// One [`StepError`] for problems found in a rendered config: they are permanent, since the
/// same config fails the same way.
pub fn config_step_error(errors: Vec<ConfigError>) -> StepError {
    let messages: Vec<String> = errors
        .into_iter()
        .map(|err| {
            // Run-time errors have no diagnostic to carry the position: say it in words.
            let place = match (&err.position, err.path.is_empty()) {
                (Some(at), _) => format!(
                    "{} (line {}, column {}): ",
                    if err.path.is_empty() {
                        "with"
                    } else {
                        &err.path
                    },
                    at.line,
                    at.column
                ),
                (None, true) => String::new(),
                (None, false) => format!("{}: ", err.path),
            };
            format!("{place}{}", err.message)
        })
        .collect();
    step_error(messages.join("; "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        method: Option<String>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        status: Option<u16>,
        body_contains: Option<String>,
    }

    #[test]
    fn templates_are_recognised() {
        assert!(is_template("{{ params.x }}"));
        assert!(is_template("a {% if x %}b{% endif %}"));
        assert!(!is_template("plain { braces }"));
    }

    #[test]
    fn durations_parse_and_zero_is_refused() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Err("must be longer than zero".into()));
        let err = parse_duration("five minutes").unwrap_err();
        assert!(err.starts_with("invalid duration `five minutes`"), "{err}");
    }

    #[test]
    fn templates_are_deferred_only_while_validating() {
        let mut checks = Checks::new(Phase::Validate);
        assert_eq!(checks.duration("timeout", "{{ params.t }}"), None);
        assert!(checks.is_ok());
        let mut checks = Checks::new(Phase::Run);
        assert_eq!(checks.duration("timeout", "{{ params.t }}"), None);
        assert_eq!(checks.into_errors()[0].path, "timeout");
    }

    #[test]
    fn json_path_and_regex_errors_name_the_field() {
        let mut checks = Checks::new(Phase::Validate);
        assert!(checks.json_path("capture.version", "$.version").is_some());
        assert!(checks.json_path("capture.bad", "$[").is_none());
        assert!(checks.regex("capture.re.regex", "v(\\d+").is_none());
        let errors = checks.into_errors();
        assert_eq!(errors[0].path, "capture.bad");
        assert!(
            errors[0].message.starts_with("invalid JSONPath `$[`"),
            "{}",
            errors[0].message
        );
        assert_eq!(errors[1].path, "capture.re.regex");
        assert!(
            errors[1].message.contains("unclosed group"),
            "{}",
            errors[1].message
        );
    }

    #[test]
    fn unknown_fields_get_a_suggestion_at_their_own_path() {
        let err = parse_config_with_hints::<Sample>(r#"{"methd": "GET"}"#).unwrap_err();
        assert_eq!(err.path, "methd");
        assert_eq!(err.message, "unknown field `methd`; did you mean `method`?");

        let err = parse_config_with_hints::<Sample>(r#"{"inner": {"stauts": 200}}"#).unwrap_err();
        assert_eq!(err.path, "inner.stauts");
        assert_eq!(
            err.message,
            "unknown field `stauts`; did you mean `status`?"
        );

        let err = parse_config_with_hints::<Sample>(r#"{"zzz": 1}"#).unwrap_err();
        assert_eq!(
            err.message,
            "unknown field `zzz`; known fields: method, inner"
        );
    }

    #[test]
    fn other_errors_pass_through() {
        let err = parse_config_with_hints::<Sample>(r#"{"inner": {"status": "x"}}"#).unwrap_err();
        assert_eq!(err.path, "inner.status");
        assert!(err.message.starts_with("invalid type"), "{}", err.message);
    }

    #[test]
    fn config_errors_become_one_permanent_step_error() {
        let err = config_step_error(vec![
            config_error("url", "must start with http:// or https://"),
            config_error("", "set `url` or `target`"),
        ]);
        assert_eq!(
            err.message,
            "url: must start with http:// or https://; set `url` or `target`"
        );
        assert!(!err.transient);
    }
}
