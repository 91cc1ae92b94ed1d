//! The `expect` table: what a response must look like (status, headers, JSON values, XPath
//! results over an XML body, body text, duration), and a message per failed expectation saying
//! what was expected and what came.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json_path::JsonPath;

use super::check::{Checks, join_path};
use super::response::{Subject, header_value};
use super::status::{StatusMatch, check_status_expectation, describe_statuses, response_error};
use super::xpath::{self, Found, Kind, LazyDocument, XPath};
use crate::runbook::plugin::types::StepError;

/// The `expect` table as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// A code, a class such as `"2xx"`, or a list of them. Without it, a status of 400 or
    /// more fails the step.
    #[serde(default)]
    pub status: Option<Value>,
    /// Header name (any case) to the exact value expected.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSONPath to what the value(s) it selects must satisfy.
    #[serde(default)]
    pub json: BTreeMap<String, JsonExpect>,
    /// XPath 1.0 expression over the body as XML to the value its result must equal, or to
    /// the long form.
    #[serde(default)]
    pub xpath: BTreeMap<String, XPathExpect>,
    /// Text the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// The longest the request may take, as a duration string.
    #[serde(default)]
    pub max_duration: Option<String>,
}

/// What the value selected by one JSONPath must satisfy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonExpect {
    /// The value must equal this (several selected values: the array of them).
    #[serde(default, deserialize_with = "present")]
    pub equals: Option<Value>,
    /// Whether the path must select something (`true`) or nothing (`false`).
    #[serde(default)]
    pub exists: Option<bool>,
    /// Every selected value (strings as they are, others as JSON text) must match this regex.
    #[serde(default)]
    pub matches: Option<String>,
}

/// What the result of one XPath expression must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub enum XPathExpect {
    /// `"<expr>" = <value>`: the result must equal the value (see [`XPathTable::equals`]).
    Equals(Value),
    /// `"<expr>" = { equals, exists, matches }`.
    Table(XPathTable),
}

/// The long form of an XPath expectation, as for JSON.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XPathTable {
    /// The result must equal this, compared as its type: a number by value (a node's text
    /// read as a number), a string as text, a boolean with a boolean or the text
    /// `true`/`false`; an array item by item with the selected nodes in document order.
    #[serde(default, deserialize_with = "present")]
    pub equals: Option<Value>,
    /// Whether the expression must select a node (`true`) or none (`false`); for expressions
    /// that select nodes.
    #[serde(default)]
    pub exists: Option<bool>,
    /// Every selected node's text (a computed result as text) must match this regex.
    #[serde(default)]
    pub matches: Option<String>,
}

impl<'de> Deserialize<'de> for XPathExpect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExpectVisitor;

        impl<'de> Visitor<'de> for ExpectVisitor {
            type Value = XPathExpect;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "the value the result must equal, or a table with `equals`, `exists` or `matches`",
                )
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<XPathExpect, E> {
                Ok(XPathExpect::Equals(value.into()))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<XPathExpect, E> {
                Ok(XPathExpect::Equals(value.into()))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<XPathExpect, E> {
                Ok(XPathExpect::Equals(value.into()))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<XPathExpect, E> {
                Ok(XPathExpect::Equals(value.into()))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<XPathExpect, E> {
                Ok(XPathExpect::Equals(value.into()))
            }

            fn visit_unit<E: de::Error>(self) -> Result<XPathExpect, E> {
                Ok(XPathExpect::Equals(Value::Null))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<XPathExpect, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(XPathExpect::Equals)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<XPathExpect, A::Error> {
                XPathTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(XPathExpect::Table)
            }
        }

        deserializer.deserialize_any(ExpectVisitor)
    }
}

/// Keeps an explicit `null` as `Some(Value::Null)`: `equals = null` is an expectation.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// [`Expect`] with its paths, regexes and durations compiled.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    status: Option<Vec<StatusMatch>>,
    headers: Vec<(String, String)>,
    json: Vec<JsonCheck>,
    xpath: Vec<XPathCheck>,
    body_contains: Option<String>,
    max_duration: Option<Duration>,
}

#[derive(Debug, Clone)]
struct JsonCheck {
    text: String,
    path: JsonPath,
    equals: Option<Value>,
    exists: Option<bool>,
    matches: Option<Regex>,
}

#[derive(Debug, Clone)]
struct XPathCheck {
    xpath: XPath,
    equals: Option<Value>,
    exists: Option<bool>,
    matches: Option<Regex>,
}

/// One failed expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What was expected and what came, e.g. `expected status 200, got 503`.
    pub message: String,
    /// Whether it is about the status: a failed status on a 5xx, 429 or 408 is worth
    /// another attempt, other failures are not.
    pub is_status: bool,
}

impl Expect {
    /// Checks and compiles the table found at `path` (`"expect"`).
    pub fn compile(&self, path: &str, checks: &mut Checks) -> Expectations {
        let status = self.status.as_ref().and_then(|status| {
            check_status_expectation(checks, &join_path(path, "status"), status)
        });
        let mut json = Vec::new();
        for (text, expect) in &self.json {
            let field = join_path(&join_path(path, "json"), text);
            let compiled_path = checks.json_path(&field, text);
            if expect.equals.is_none() && expect.exists.is_none() && expect.matches.is_none() {
                checks.push(&field, "set `equals`, `exists` or `matches`");
                continue;
            }
            if expect.exists == Some(false) && (expect.equals.is_some() || expect.matches.is_some())
            {
                checks.push(
                    &field,
                    "`exists = false` cannot go with `equals` or `matches`",
                );
                continue;
            }
            let matches = match &expect.matches {
                Some(pattern) => match checks.regex(&join_path(&field, "matches"), pattern) {
                    Some(regex) => Some(regex),
                    None => continue,
                },
                None => None,
            };
            if let Some(path) = compiled_path {
                json.push(JsonCheck {
                    text: text.clone(),
                    path,
                    equals: expect.equals.clone(),
                    exists: expect.exists,
                    matches,
                });
            }
        }
        let xpath = self
            .xpath
            .iter()
            .filter_map(|(text, expect)| {
                compile_xpath(
                    text,
                    expect,
                    &join_path(&join_path(path, "xpath"), text),
                    checks,
                )
            })
            .collect();
        let max_duration = self
            .max_duration
            .as_deref()
            .and_then(|text| checks.duration(&join_path(path, "max_duration"), text));
        Expectations {
            status,
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            json,
            xpath,
            body_contains: self.body_contains.clone(),
            max_duration,
        }
    }
}

/// Checks one `expect.xpath` entry found at `field`.
fn compile_xpath(
    text: &str,
    expect: &XPathExpect,
    field: &str,
    checks: &mut Checks,
) -> Option<XPathCheck> {
    let compiled = xpath::check(checks, field, text);
    let (table, equals_field) = match expect {
        XPathExpect::Equals(value) => (
            XPathTable {
                equals: Some(value.clone()),
                ..XPathTable::default()
            },
            field.to_owned(),
        ),
        XPathExpect::Table(table) => (table.clone(), join_path(field, "equals")),
    };
    if table.equals.is_none() && table.exists.is_none() && table.matches.is_none() {
        checks.push(field, "set `equals`, `exists` or `matches`");
        return None;
    }
    if table.exists == Some(false) && (table.equals.is_some() || table.matches.is_some()) {
        checks.push(
            field,
            "`exists = false` cannot go with `equals` or `matches`",
        );
        return None;
    }
    if let Some(Err(message)) = table.equals.as_ref().map(xpath::check_expected) {
        checks.push(equals_field, message);
        return None;
    }
    let matches = match &table.matches {
        Some(pattern) => Some(checks.regex(&join_path(field, "matches"), pattern)?),
        None => None,
    };
    let compiled = compiled?;
    if table.exists.is_some() && compiled.kind() != Kind::Nodes {
        let kind = match compiled.kind() {
            Kind::Number => "a number",
            Kind::String => "a string",
            _ => "a boolean",
        };
        checks.push(
            join_path(field, "exists"),
            format!("`exists` is for expressions that select nodes; this one computes {kind}: compare it with `equals`"),
        );
        return None;
    }
    Some(XPathCheck {
        xpath: compiled,
        equals: table.equals,
        exists: table.exists,
        matches,
    })
}

impl Expectations {
    /// Whether `expect.status` was given (it replaces the default: below 400).
    pub fn has_status(&self) -> bool {
        self.status.is_some()
    }

    /// Every expectation the subject fails; empty when it passes.
    pub fn evaluate(&self, subject: &Subject) -> Vec<Failure> {
        let mut failures = Vec::new();
        let mut fail = |message: String| {
            failures.push(Failure {
                message,
                is_status: false,
            })
        };
        for (name, expected) in &self.headers {
            match header_value(subject.headers, name) {
                Some(actual) if actual == *expected => {}
                Some(actual) => fail(format!(
                    "header {name}: expected {expected:?}, got {actual:?}"
                )),
                None => fail(format!(
                    "header {name}: expected {expected:?}, but the response has none"
                )),
            }
        }
        for check in &self.json {
            if let Some(message) = check.evaluate(subject.json) {
                fail(message);
            }
        }
        // Parsed by the first XPath expectation, if any, and shared by the others.
        let xml = LazyDocument::new(subject.text);
        for check in &self.xpath {
            if let Some(message) = check.evaluate(&xml) {
                fail(message);
            }
        }
        if let Some(needle) = &self.body_contains {
            match subject.text {
                Some(text) if text.contains(needle.as_str()) => {}
                Some(_) => fail(format!("expected the body to contain {needle:?}")),
                None => fail(format!(
                    "expected the body to contain {needle:?}, but it is not text"
                )),
            }
        }
        if let Some(max) = self.max_duration {
            let took = Duration::from_millis(subject.duration_ms);
            if took > max {
                fail(format!(
                    "expected a response within {}, took {}",
                    humantime::format_duration(max),
                    humantime::format_duration(took)
                ));
            }
        }
        if let Some(message) = self.status_failure(subject.status) {
            failures.insert(
                0,
                Failure {
                    message,
                    is_status: true,
                },
            );
        }
        failures
    }

    fn status_failure(&self, status: u16) -> Option<String> {
        match &self.status {
            Some(accepted) if accepted.iter().any(|m| m.matches(status)) => None,
            Some(accepted) => Some(format!(
                "expected status {}, got {status}",
                describe_statuses(accepted)
            )),
            None if status >= 400 => Some(format!("expected a status below 400, got {status}")),
            None => None,
        }
    }
}

impl JsonCheck {
    fn evaluate(&self, json: Option<&Value>) -> Option<String> {
        let path = &self.text;
        let Some(json) = json else {
            return Some(format!("{path}: the response body is not JSON"));
        };
        let nodes = self.path.query(json).all();
        match self.exists {
            Some(true) if nodes.is_empty() => {
                return Some(format!("{path}: expected to exist, matched nothing"));
            }
            Some(false) if !nodes.is_empty() => {
                return Some(format!(
                    "{path}: expected to match nothing, got {}",
                    selected(&nodes)
                ));
            }
            _ => {}
        }
        if let Some(expected) = &self.equals {
            if nodes.is_empty() {
                return Some(format!(
                    "{path}: expected {}, matched nothing",
                    short(expected)
                ));
            }
            let actual = selected(&nodes);
            if !json_equal(expected, &actual) {
                return Some(format!(
                    "{path}: expected {}, got {}",
                    short(expected),
                    short(&actual)
                ));
            }
        }
        if let Some(regex) = &self.matches {
            if nodes.is_empty() {
                return Some(format!(
                    "{path}: expected to match /{regex}/, matched nothing"
                ));
            }
            for node in nodes {
                let text = match node {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                if !regex.is_match(&text) {
                    return Some(format!(
                        "{path}: expected to match /{regex}/, got {}",
                        short(node)
                    ));
                }
            }
        }
        None
    }
}

impl XPathCheck {
    fn evaluate(&self, xml: &LazyDocument) -> Option<String> {
        let text = self.xpath.text();
        let found = match xml.get() {
            Ok(document) => self.xpath.evaluate(document),
            Err(reason) => Err(reason.to_owned()),
        };
        let found = match found {
            Ok(found) => found,
            Err(reason) => return Some(format!("{text}: {reason}")),
        };
        match self.exists {
            Some(true) if found.is_empty() => {
                return Some(format!("{text}: expected to exist, matched nothing"));
            }
            Some(false) if !found.is_empty() => {
                return Some(format!(
                    "{text}: expected to match nothing, got {}",
                    shown(&found)
                ));
            }
            _ => {}
        }
        if let Some(expected) = &self.equals
            && !found.equals(expected)
        {
            return Some(if found.is_empty() {
                format!("{text}: expected {}, matched nothing", short(expected))
            } else {
                format!(
                    "{text}: expected {}, got {}",
                    short(expected),
                    shown(&found)
                )
            });
        }
        if let Some(regex) = &self.matches {
            if found.is_empty() {
                return Some(format!(
                    "{text}: expected to match /{regex}/, matched nothing"
                ));
            }
            if let Some(miss) = found.texts().into_iter().find(|t| !regex.is_match(t)) {
                return Some(format!(
                    "{text}: expected to match /{regex}/, got {}",
                    short(&Value::String(miss))
                ));
            }
        }
        None
    }
}

/// An XPath result in a message: as JSON (`2`, `"o-1"`, `["a","b"]`), NaN and the
/// infinities as XPath writes them.
fn shown(found: &Found) -> String {
    match found {
        Found::Number(number) if !number.is_finite() => found.texts().concat(),
        _ => found
            .to_json()
            .map_or_else(|| "nothing".to_owned(), |value| short(&value)),
    }
}

/// One selected node as itself, several as an array: what `equals` compares with.
fn selected(nodes: &[&Value]) -> Value {
    match nodes {
        [one] => (*one).clone(),
        many => Value::Array(many.iter().map(|node| (*node).clone()).collect()),
    }
}

/// JSON equality where numbers compare by value: TOML's `1` equals a response's `1.0`.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, value)| y.get(key).is_some_and(|other| json_equal(value, other)))
        }
        _ => a == b,
    }
}

/// Compact JSON, cut short: a message must stay readable when a body is large.
pub fn short(value: &Value) -> String {
    const LIMIT: usize = 200;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// All failures in one line.
pub fn describe_failures(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|failure| failure.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The step error for failed expectations: transient (with `Retry-After`) only when the
/// status failed and is one that another attempt may change (5xx, 429, 408).
pub fn failures_error(
    failures: &[Failure],
    subject: &Subject,
    now: SystemTime,
    output: Option<String>,
) -> StepError {
    let message = describe_failures(failures);
    if failures.iter().any(|failure| failure.is_status) {
        response_error(subject.status, subject.headers, now, message, output)
    } else {
        StepError {
            message,
            output,
            transient: false,
            retry_after_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::web::check::Phase;
    use crate::web::response::Reply;
    use crate::web::testing::response;

    fn compile(json: &str) -> Expectations {
        let expect: Expect = serde_json::from_str(json).unwrap();
        let mut checks = Checks::new(Phase::Run);
        let compiled = expect.compile("expect", &mut checks);
        assert!(checks.is_ok(), "{:?}", checks.into_errors());
        compiled
    }

    fn messages(expect: &Expectations, reply: &Reply) -> Vec<String> {
        expect
            .evaluate(&reply.subject())
            .into_iter()
            .map(|failure| failure.message)
            .collect()
    }

    fn json_reply(status: u16, body: &str) -> Reply {
        Reply::from(response(
            status,
            &[("content-type", "application/json")],
            body,
        ))
    }

    #[test]
    fn passing_expectations_give_no_failure() {
        let expect = compile(
            r#"{"status": [200, "3xx"], "headers": {"Content-Type": "application/json"},
                "json": {"$.version": {"equals": 2}, "$.name": {"matches": "^api-", "exists": true},
                         "$.gone": {"exists": false}},
                "body_contains": "api-", "max_duration": "1s"}"#,
        );
        let reply = json_reply(200, r#"{"version": 2.0, "name": "api-1"}"#);
        assert_eq!(messages(&expect, &reply), Vec::<String>::new());
    }

    #[test]
    fn every_failure_is_listed_with_what_came() {
        let expect = compile(
            r#"{"status": 200, "headers": {"X-Version": "2", "X-Missing": "a"},
                "json": {"$.version": {"equals": "2"}, "$.name": {"matches": "^api-"},
                         "$.absent": {"exists": true}, "$.version2": {"equals": 1}},
                "body_contains": "ready", "max_duration": "5ms"}"#,
        );
        let mut raw = response(
            503,
            &[("content-type", "application/json"), ("x-version", "1")],
            r#"{"version": "1", "name": "db-1"}"#,
        );
        raw.duration_ms = 812;
        let failures = expect.evaluate(&Reply::from(raw).subject());
        let messages: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "expected status 200, got 503",
                "header X-Missing: expected \"a\", but the response has none",
                "header X-Version: expected \"2\", got \"1\"",
                "$.absent: expected to exist, matched nothing",
                "$.name: expected to match /^api-/, got \"db-1\"",
                "$.version: expected \"2\", got \"1\"",
                "$.version2: expected 1, matched nothing",
                "expected the body to contain \"ready\"",
                "expected a response within 5ms, took 812ms",
            ]
        );
        assert!(failures[0].is_status);
        assert!(!failures[1].is_status);
    }

    #[test]
    fn without_a_status_expectation_4xx_and_5xx_fail() {
        let expect = Expectations::default();
        assert_eq!(
            messages(&expect, &json_reply(200, "{}")),
            Vec::<String>::new()
        );
        assert_eq!(
            messages(&expect, &json_reply(302, "{}")),
            Vec::<String>::new()
        );
        assert_eq!(
            messages(&expect, &json_reply(404, "{}")),
            ["expected a status below 400, got 404"]
        );
        let expect = compile(r#"{"status": "4xx"}"#);
        assert_eq!(
            messages(&expect, &json_reply(404, "{}")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn several_nodes_compare_as_an_array_and_non_json_is_said() {
        let expect = compile(r#"{"json": {"$.items[*].id": {"equals": [1, 2]}}}"#);
        assert!(
            messages(
                &expect,
                &json_reply(200, r#"{"items": [{"id": 1}, {"id": 2}]}"#)
            )
            .is_empty()
        );
        let text = Reply::from(response(200, &[("content-type", "text/plain")], "ok"));
        assert_eq!(
            messages(&expect, &text),
            ["$.items[*].id: the response body is not JSON"]
        );
    }

    #[test]
    fn bad_tables_are_config_errors_at_their_path() {
        let expect: Expect = serde_json::from_str(
            r#"{"status": "abc", "json": {"$[": {"exists": true}, "$.a": {}, "$.b": {"exists": false, "equals": 1},
                "$.c": {"matches": "("}}, "max_duration": "soon"}"#,
        )
        .unwrap();
        let mut checks = Checks::new(Phase::Validate);
        expect.compile("expect", &mut checks);
        let paths: Vec<String> = checks.into_errors().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "expect.status",
                "expect.json.$.a",
                "expect.json.$.b",
                "expect.json.$.c.matches",
                "expect.json.$[",
                "expect.max_duration"
            ]
        );
    }

    #[test]
    fn only_status_failures_on_retryable_statuses_are_transient() {
        let now = SystemTime::UNIX_EPOCH;
        let reply = Reply::from(response(503, &[("retry-after", "2")], ""));
        let status = Failure {
            message: "expected status 200, got 503".into(),
            is_status: true,
        };
        let other = Failure {
            message: "expected the body to contain \"x\"".into(),
            is_status: false,
        };
        let err = failures_error(
            &[status.clone(), other.clone()],
            &reply.subject(),
            now,
            None,
        );
        assert!(err.transient);
        assert_eq!(err.retry_after_ms, Some(2000));
        assert_eq!(
            err.message,
            "expected status 200, got 503; expected the body to contain \"x\""
        );
        let err = failures_error(&[other], &reply.subject(), now, None);
        assert!(!err.transient);
        let not_found = Reply::from(response(404, &[], ""));
        assert!(!failures_error(&[status], &not_found.subject(), now, None).transient);
    }

    fn xml_reply(status: u16, body: &str) -> Reply {
        Reply::from(response(status, &[("content-type", "text/xml")], body))
    }

    const ORDER: &str = r#"<order id="o-7" state="open"><item sku="a">2</item><item sku="b">3.0</item><total>5</total></order>"#;

    #[test]
    fn xpath_expectations_that_hold_give_no_failure() {
        let expect = compile(
            r#"{"xpath": {"count(//error)": 0, "count(//item)": 2, "/order/@id": "o-7", "//total": 5,
                          "//item/@sku": ["a", "b"], "//item": [2, 3], "sum(//item) = //total": true,
                          "string(/order/@state)": {"equals": "open", "matches": "^op"},
                          "//item[@sku='b']": {"exists": true}, "//error": {"exists": false},
                          "//item/@sku": {"matches": "^[a-z]$"}}}"#,
        );
        assert_eq!(
            messages(&expect, &xml_reply(200, ORDER)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn failed_xpath_expectations_say_what_came() {
        let expect = compile(
            r#"{"xpath": {"count(//item)": 0, "/order/@id": "o-8", "//item/@sku": "a",
                          "//missing": "x", "//item[@sku='c']": {"exists": true},
                          "//item": {"exists": false}, "//total": {"matches": "^[a-z]+$"},
                          "number(/order/@state)": 1, "count(//item) > 5": true}}"#,
        );
        assert_eq!(
            messages(&expect, &xml_reply(200, ORDER)),
            [
                "//item: expected to match nothing, got [\"2\",\"3.0\"]",
                "//item/@sku: expected \"a\", got [\"a\",\"b\"]",
                "//item[@sku='c']: expected to exist, matched nothing",
                "//missing: expected \"x\", matched nothing",
                "//total: expected to match /^[a-z]+$/, got \"5\"",
                "/order/@id: expected \"o-8\", got \"o-7\"",
                "count(//item): expected 0, got 2",
                "count(//item) > 5: expected true, got false",
                "number(/order/@state): expected 1, got NaN",
            ]
        );
    }

    #[test]
    fn xpath_expectations_on_a_body_that_is_not_xml_say_where() {
        let expect = compile(r#"{"status": 200, "xpath": {"count(//error)": 0}}"#);
        assert_eq!(
            messages(&expect, &xml_reply(200, "<errors>\n  <error>boom</errors>")),
            [
                "count(//error): the response body is not well-formed XML: mismatched element end name (line 2, column 16)"
            ]
        );
        let messages = messages(&expect, &json_reply(503, r#"{"error": "boom"}"#));
        assert_eq!(messages[0], "expected status 200, got 503");
        assert!(
            messages[1]
                .starts_with("count(//error): the response body is not well-formed XML: expected "),
            "{messages:?}"
        );
    }

    #[test]
    fn bad_xpath_expectations_are_config_errors_at_their_path() {
        let expect: Expect = serde_json::from_str(
            r#"{"xpath": {"//a[": 1, "nope(//a)": 1, "//b": {}, "//c": {"exists": false, "equals": 1},
                          "//d": {"matches": "("}, "//e": null, "//f": {"equals": {"x": 1}},
                          "count(//g)": {"exists": true}, "{{ params.x }}": 1}}"#,
        )
        .unwrap();
        let mut checks = Checks::new(Phase::Validate);
        expect.compile("expect", &mut checks);
        let errors: Vec<String> = checks
            .into_errors()
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        assert_eq!(
            errors,
            [
                "expect.xpath.//a[: invalid XPath `//a[`: empty predicate",
                "expect.xpath.//b: set `equals`, `exists` or `matches`",
                "expect.xpath.//c: `exists = false` cannot go with `equals` or `matches`",
                "expect.xpath.//d.matches: invalid regex `(`: unclosed group",
                "expect.xpath.//e: an XPath result is never null: to expect no node, write `exists = false`",
                "expect.xpath.//f.equals: expected a string, number, boolean or array",
                "expect.xpath.count(//g).exists: `exists` is for expressions that select nodes; this one computes a number: compare it with `equals`",
                "expect.xpath.nope(//a): invalid XPath `nope(//a)`: unknown function `nope`",
            ]
        );
    }

    #[test]
    fn xpath_expectation_tables_refuse_unknown_keys() {
        let err =
            serde_json::from_str::<Expect>(r#"{"xpath": {"//a": {"equal": 1}}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `equal`"), "{err}");
    }

    #[test]
    fn equals_null_is_an_expectation() {
        let expect = compile(r#"{"json": {"$.a": {"equals": null}}}"#);
        assert!(messages(&expect, &json_reply(200, r#"{"a": null}"#)).is_empty());
        assert_eq!(
            messages(&expect, &json_reply(200, r#"{"a": 1}"#)),
            ["$.a: expected null, got 1"]
        );
    }
}
