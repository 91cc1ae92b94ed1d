//! HTTP status codes: matching them against `expect.status` (codes and classes such as
//! `"2xx"`), deciding which failures are worth another attempt, and `Retry-After`.

use std::fmt;
use std::time::SystemTime;

use serde_json::Value;

use super::check::Checks;
use super::response::header_value;
use crate::runbook::plugin::types::StepError;

/// One accepted status: a code, or a class (`"4xx"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// Exactly this code.
    Code(u16),
    /// Any code of this hundred: `Class(2)` is `2xx`.
    Class(u8),
}

impl StatusMatch {
    /// Parses `"200"` or `"2xx"` (any case of `x`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        if let Some(digit) = lower.strip_suffix("xx")
            && let Ok(class @ 1..=5) = digit.parse::<u8>()
        {
            return Ok(StatusMatch::Class(class));
        }
        match text.parse::<u16>() {
            Ok(code @ 100..=599) => Ok(StatusMatch::Code(code)),
            _ => Err(format!(
                "`{text}` is not a status: write a code such as 200 or a class such as \"2xx\""
            )),
        }
    }

    /// Whether `status` is accepted.
    pub fn matches(&self, status: u16) -> bool {
        match *self {
            StatusMatch::Code(code) => code == status,
            StatusMatch::Class(class) => status / 100 == u16::from(class),
        }
    }
}

impl fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            StatusMatch::Code(code) => write!(f, "{code}"),
            StatusMatch::Class(class) => write!(f, "{class}xx"),
        }
    }
}

/// Reads `expect.status`: a code, a class string, or a list of them. `None` for a template
/// seen by `validate` or an error (recorded).
pub fn check_status_expectation(
    checks: &mut Checks,
    path: &str,
    value: &Value,
) -> Option<Vec<StatusMatch>> {
    let items: Vec<&Value> = match value {
        Value::Array(items) if items.is_empty() => {
            checks.push(path, "must list at least one status");
            return None;
        }
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut matches = Vec::new();
    let mut ok = true;
    for item in items {
        let parsed = match item {
            Value::Number(number) => match number.as_u64() {
                Some(code) => StatusMatch::parse(&code.to_string()),
                None => Err(format!("`{number}` is not a status")),
            },
            Value::String(text) if checks.deferred(text) => {
                ok = false;
                continue;
            }
            Value::String(text) => StatusMatch::parse(text),
            _ => {
                Err("must be a code such as 200, a class such as \"2xx\", or a list of them".into())
            }
        };
        match parsed {
            Ok(status) => matches.push(status),
            Err(message) => {
                checks.push(path, message);
                ok = false;
            }
        }
    }
    ok.then_some(matches)
}

/// `200`, `200 or 201`, `200, 201 or 2xx`: the accepted statuses, for messages.
pub fn describe_statuses(statuses: &[StatusMatch]) -> String {
    let texts: Vec<String> = statuses.iter().map(ToString::to_string).collect();
    match texts.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Whether a response with this status may succeed when tried again: 408, 429 and 5xx.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// The wait a `Retry-After` header asks for, in milliseconds: delay-seconds or an HTTP
/// date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).unwrap_or_default();
    Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

/// The `Retry-After` of a response, in milliseconds.
pub fn retry_after_ms(headers: &[(String, String)], now: SystemTime) -> Option<u64> {
    header_value(headers, "retry-after").and_then(|value| parse_retry_after(&value, now))
}

/// A failed response as a [`StepError`]: transient (with any `Retry-After`) when the status
/// says another attempt may succeed, permanent otherwise.
pub fn response_error(
    status: u16,
    headers: &[(String, String)],
    now: SystemTime,
    message: String,
    output: Option<String>,
) -> StepError {
    let transient = is_retryable(status);
    StepError {
        message,
        output,
        transient,
        retry_after_ms: if transient {
            retry_after_ms(headers, now)
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::web::check::Phase;

    #[test]
    fn codes_and_classes_parse_and_match() {
        assert_eq!(StatusMatch::parse("200"), Ok(StatusMatch::Code(200)));
        assert_eq!(StatusMatch::parse("2xx"), Ok(StatusMatch::Class(2)));
        assert_eq!(StatusMatch::parse("5XX"), Ok(StatusMatch::Class(5)));
        assert!(StatusMatch::parse("7xx").is_err());
        assert!(StatusMatch::parse("99").is_err());
        assert!(StatusMatch::Class(2).matches(204));
        assert!(!StatusMatch::Class(2).matches(301));
        assert!(StatusMatch::Code(404).matches(404));
    }

    #[test]
    fn expectation_takes_a_code_a_class_or_a_list() {
        let mut checks = Checks::new(Phase::Run);
        let read = |checks: &mut Checks, json: &str| {
            check_status_expectation(
                checks,
                "expect.status",
                &serde_json::from_str(json).unwrap(),
            )
        };
        assert_eq!(read(&mut checks, "200"), Some(vec![StatusMatch::Code(200)]));
        assert_eq!(
            read(&mut checks, r#""2xx""#),
            Some(vec![StatusMatch::Class(2)])
        );
        assert_eq!(
            read(&mut checks, r#"[200, "304"]"#),
            Some(vec![StatusMatch::Code(200), StatusMatch::Code(304)])
        );
        assert!(checks.is_ok());
        assert_eq!(read(&mut checks, "[]"), None);
        assert_eq!(read(&mut checks, "true"), None);
        assert_eq!(read(&mut checks, "1000"), None);
        assert_eq!(checks.into_errors().len(), 3);

        let mut checks = Checks::new(Phase::Validate);
        assert_eq!(read(&mut checks, r#""{{ params.code }}""#), None);
        assert!(checks.is_ok());
    }

    #[test]
    fn statuses_read_naturally() {
        use StatusMatch::*;
        assert_eq!(describe_statuses(&[Code(200)]), "200");
        assert_eq!(describe_statuses(&[Code(200), Code(201)]), "200 or 201");
        assert_eq!(
            describe_statuses(&[Code(200), Code(201), Class(3)]),
            "200, 201 or 3xx"
        );
    }

    #[test]
    fn retryable_statuses() {
        for status in [408, 429, 500, 502, 503, 599] {
            assert!(is_retryable(status), "{status}");
        }
        for status in [200, 301, 400, 401, 404, 409, 422] {
            assert!(!is_retryable(status), "{status}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("120", now), Some(120_000));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(30_000));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(0));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn response_errors_are_classified() {
        let now = SystemTime::UNIX_EPOCH;
        let headers = vec![("retry-after".to_owned(), "3".to_owned())];
        let err = response_error(503, &headers, now, "m".into(), None);
        assert!(err.transient);
        assert_eq!(err.retry_after_ms, Some(3000));
        let err = response_error(404, &headers, now, "m".into(), None);
        assert!(!err.transient);
        assert_eq!(err.retry_after_ms, None);
    }
}
