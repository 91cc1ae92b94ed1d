//! An outgoing request as a step builds it (method, URL, headers, body), before auth is
//! applied, and the `with` pieces that shape it: methods, header tables, query tables and
//! the idempotency key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use url::Url;

use super::check::{Checks, join_path};
use crate::runbook::plugin::http;
use crate::runbook::plugin::types::StepContext;

/// The header that carries the step's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Redirects followed unless a step says otherwise.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// Request headers in order, with names compared case-insensitively: setting a name again
/// replaces its value, which is how layered defaults (target, then step) override.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing any header of that name (in any case).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.position(&name) {
            Some(index) => {
                self.0[index] = (name.clone(), value);
                let mut seen = false;
                self.0.retain(|(existing, _)| {
                    if !existing.eq_ignore_ascii_case(&name) {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => self.0.push((name, value)),
        }
    }

    /// Sets every header of `other`, overriding these.
    pub fn extend_override<'a>(
        &mut self,
        other: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) {
        for (name, value) in other {
            self.set(name.clone(), value.clone());
        }
    }

    /// The value of `name`, in any case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).map(|index| self.0[index].1.as_str())
    }

    /// Whether a header `name` is set, in any case.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Removes `name`, in any case.
    pub fn remove(&mut self, name: &str) {
        self.0
            .retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
    }

    /// The names, as written, in order: what a plan shows (values may be secrets).
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|(existing, _)| existing.eq_ignore_ascii_case(name))
    }
}

impl From<Headers> for Vec<(String, String)> {
    fn from(headers: Headers) -> Self {
        headers.0
    }
}

/// A request ready for the host's `http.send`, before auth: see
/// [`client::send`](super::client::send).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// The method, upper case.
    pub method: String,
    /// The absolute URL, query included.
    pub url: String,
    /// The headers to send.
    pub headers: Headers,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// User and password for Basic auth, encoded by the host after secret substitution.
    pub basic_auth: Option<(String, String)>,
    /// The bound for this request alone.
    pub timeout: Option<Duration>,
    /// Redirects to follow; 0 returns a 3xx as it is.
    pub max_redirects: u32,
}

impl HttpRequest {
    /// A request without headers or body that follows the default number of redirects.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Headers::new(),
            body: None,
            basic_auth: None,
            timeout: None,
            max_redirects: DEFAULT_MAX_REDIRECTS,
        }
    }

    /// Appends URL-encoded query parameters to the URL, after any it has.
    pub fn add_query(&mut self, pairs: &[(String, String)]) -> Result<(), String> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut url =
            Url::parse(&self.url).map_err(|err| format!("invalid URL `{}`: {err}", self.url))?;
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in pairs {
                query.append_pair(name, value);
            }
        }
        self.url = url.into();
        Ok(())
    }

    /// The request as the host's `http` interface takes it.
    pub fn to_wit(&self) -> http::Request {
        http::Request {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone().into(),
            body: self.body.clone(),
            basic_auth: self.basic_auth.clone(),
            timeout_ms: self
                .timeout
                .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            max_redirects: self.max_redirects,
        }
    }

    /// `METHOD URL`, for plans and messages.
    pub fn request_line(&self) -> String {
        format!("{} {}", self.method, self.url)
    }
}

/// Whether `value` is an RFC 9110 token: what methods and header names are made of.
pub fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a method (any token; written in any case, sent upper case, as servers expect).
pub fn check_method(checks: &mut Checks, path: &str, value: &str) -> Option<String> {
    if checks.deferred(value) {
        return None;
    }
    let method = value.trim();
    if is_token(method) {
        Some(method.to_ascii_uppercase())
    } else {
        checks.push(path, format!("`{value}` is not a valid HTTP method"));
        None
    }
}

/// Checks a header table (names are tokens, values hold no line breaks) and returns it as
/// [`Headers`], templates included as they are.
pub fn check_headers(checks: &mut Checks, path: &str, table: &BTreeMap<String, String>) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in table {
        let field = join_path(path, name);
        if !is_token(name) {
            checks.push(field, format!("`{name}` is not a valid header name"));
            continue;
        }
        if !checks.deferred(value) && (value.contains('\r') || value.contains('\n')) {
            checks.push(field, "a header value cannot hold a line break");
            continue;
        }
        headers.set(name.clone(), value.clone());
    }
    headers
}

/// Turns a table of query (or form) values into name/value pairs: strings, numbers and
/// booleans as text, an array as the name repeated for each item.
pub fn check_pairs(
    checks: &mut Checks,
    path: &str,
    table: &BTreeMap<String, Value>,
) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (name, value) in table {
        let field = join_path(path, name);
        match value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    match scalar_text(item) {
                        Some(text) => pairs.push((name.clone(), text)),
                        None => checks.push(
                            format!("{field}[{index}]"),
                            "must be a string, a number or a boolean",
                        ),
                    }
                }
            }
            other => match scalar_text(other) {
                Some(text) => pairs.push((name.clone(), text)),
                None => checks.push(
                    field,
                    "must be a string, a number, a boolean or an array of them",
                ),
            },
        }
    }
    pairs
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A step's `idempotency_key`: absent or `true` sends `<run-id>-<step-id>`, `false` sends
/// none, a string sends that string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IdempotencyKey {
    /// `<run-id>-<step-id>`: the same for every attempt of the step, across retries and
    /// daemon restarts, so that the far side can deduplicate them.
    #[default]
    Step,
    /// No key.
    Off,
    /// This key.
    Custom(String),
}

impl IdempotencyKey {
    /// The header value to send, if any.
    pub fn value(&self, ctx: &StepContext) -> Option<String> {
        match self {
            IdempotencyKey::Step => Some(format!("{}-{}", ctx.run_id, ctx.step_id)),
            IdempotencyKey::Off => None,
            IdempotencyKey::Custom(key) => Some(key.clone()),
        }
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = IdempotencyKey;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean or a string")
            }

            fn visit_bool<E: de::Error>(self, on: bool) -> Result<IdempotencyKey, E> {
                Ok(if on {
                    IdempotencyKey::Step
                } else {
                    IdempotencyKey::Off
                })
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<IdempotencyKey, E> {
                Ok(IdempotencyKey::Custom(key.to_owned()))
            }
        }

        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::web::check::Phase;
    use crate::web::testing::step_context;

    fn ctx() -> StepContext {
        step_context("01RUN", "health", 2)
    }

    #[test]
    fn headers_override_case_insensitively_in_place() {
        let mut headers = Headers::new();
        headers.set("Accept", "text/plain");
        headers.set("X-Trace", "1");
        headers.set("accept", "application/json");
        assert_eq!(headers.names(), ["accept", "X-Trace"]);
        assert_eq!(headers.get("ACCEPT"), Some("application/json"));
        headers.remove("x-trace");
        assert!(!headers.contains("X-Trace"));
    }

    #[test]
    fn query_pairs_are_appended_encoded() {
        let mut request = HttpRequest::new("GET", "http://h/search?a=1");
        request
            .add_query(&[("q".into(), "a b&c".into()), ("n".into(), "2".into())])
            .unwrap();
        assert_eq!(request.url, "http://h/search?a=1&q=a+b%26c&n=2");
    }

    #[test]
    fn query_tables_accept_scalars_and_arrays() {
        let table: BTreeMap<String, Value> = serde_json::from_str(
            r#"{"b": true, "ids": [1, "x"], "n": 2.5, "s": "t", "bad": {"x": 1}}"#,
        )
        .unwrap();
        let mut checks = Checks::new(Phase::Run);
        let pairs = check_pairs(&mut checks, "query", &table);
        assert_eq!(
            pairs,
            [
                ("b".to_owned(), "true".to_owned()),
                ("ids".into(), "1".into()),
                ("ids".into(), "x".into()),
                ("n".into(), "2.5".into()),
                ("s".into(), "t".into()),
            ]
        );
        assert_eq!(checks.into_errors()[0].path, "query.bad");
    }

    #[test]
    fn methods_are_tokens_sent_upper_case() {
        let mut checks = Checks::new(Phase::Validate);
        assert_eq!(
            check_method(&mut checks, "method", "post").as_deref(),
            Some("POST")
        );
        assert_eq!(
            check_method(&mut checks, "method", "PURGE").as_deref(),
            Some("PURGE")
        );
        assert_eq!(check_method(&mut checks, "method", "{{ params.m }}"), None);
        assert!(checks.is_ok());
        assert_eq!(check_method(&mut checks, "method", "GET /x"), None);
        assert_eq!(
            checks.into_errors()[0].message,
            "`GET /x` is not a valid HTTP method"
        );
    }

    #[test]
    fn header_tables_refuse_bad_names_and_line_breaks() {
        let table = BTreeMap::from([
            ("Bad Name".to_owned(), "x".to_owned()),
            ("X-Ok".to_owned(), "1".to_owned()),
            ("X-Split".to_owned(), "a\r\nInjected: 1".to_owned()),
        ]);
        let mut checks = Checks::new(Phase::Run);
        let headers = check_headers(&mut checks, "headers", &table);
        assert_eq!(headers.names(), ["X-Ok"]);
        let paths: Vec<String> = checks.into_errors().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["headers.Bad Name", "headers.X-Split"]);
    }

    #[test]
    fn idempotency_key_defaults_to_run_and_step() {
        let parse = |json: &str| serde_json::from_str::<IdempotencyKey>(json).unwrap();
        assert_eq!(
            IdempotencyKey::default().value(&ctx()).as_deref(),
            Some("01RUN-health")
        );
        assert_eq!(parse("true").value(&ctx()).as_deref(), Some("01RUN-health"));
        assert_eq!(parse("false").value(&ctx()), None);
        assert_eq!(
            parse(r#""order-42""#).value(&ctx()).as_deref(),
            Some("order-42")
        );
        assert!(serde_json::from_str::<IdempotencyKey>("1").is_err());
    }

    #[test]
    fn wit_request_carries_everything() {
        let mut request = HttpRequest::new("POST", "http://h/x");
        request.headers.set("Content-Type", "application/json");
        request.body = Some(b"{}".to_vec());
        request.timeout = Some(Duration::from_secs(5));
        let wit = request.to_wit();
        assert_eq!(wit.timeout_ms, Some(5000));
        assert_eq!(wit.max_redirects, 10);
        assert_eq!(
            wit.headers,
            [("Content-Type".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(request.request_line(), "POST http://h/x");
    }
}
