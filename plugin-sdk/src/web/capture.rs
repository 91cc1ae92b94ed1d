//! The `capture` table: values taken from a response (JSONPath, XPath over an XML body, header,
//! regex over the body, status) into the step's output, where later steps read
//! `steps.<id>.output.captures.<name>`.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use serde_json_path::JsonPath;

use super::check::{Checks, join_path};
use super::response::{Subject, header_value};
use super::xpath::{self, LazyDocument, XPath};

/// The `capture` table as written: name to what to capture.
pub type Captures = BTreeMap<String, CaptureSpec>;

/// One capture as written: a JSONPath string, or a table.
#[derive(Debug, Clone, PartialEq)]
pub enum CaptureSpec {
    /// `name = "$.path"`.
    Path(String),
    /// `name = { json = .. }`, `{ xpath = .. }`, `{ header = .. }`, `{ regex = .., group = .. }`,
    /// `{ status = true }`.
    Table(CaptureTable),
}

/// The long form of a capture: exactly one of `json`, `xpath`, `header`, `regex`, `status`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureTable {
    /// A JSONPath over the JSON.
    #[serde(default)]
    pub json: Option<String>,
    /// An XPath 1.0 expression over the body as XML (see [`xpath`](super::xpath)): one node's
    /// string value, several as an array, or the number, string or boolean it computes.
    #[serde(default)]
    pub xpath: Option<String>,
    /// A response header (any case); repeats joined with `, `.
    #[serde(default)]
    pub header: Option<String>,
    /// A regex over the body text.
    #[serde(default)]
    pub regex: Option<String>,
    /// The regex group to take: a number or a name. Default: 1 when the regex has a group,
    /// else the whole match.
    #[serde(default)]
    pub group: Option<GroupRef>,
    /// `true`: the status code.
    #[serde(default)]
    pub status: Option<bool>,
}

/// A regex group by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum GroupRef {
    /// By number; 0 is the whole match.
    Index(usize),
    /// By name, `(?<name>..)`.
    Name(String),
}

impl<'de> Deserialize<'de> for CaptureSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;

        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = CaptureSpec;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a JSONPath string or a table with `json`, `xpath`, `header`, `regex` or `status`",
                )
            }

            fn visit_str<E: de::Error>(self, path: &str) -> Result<CaptureSpec, E> {
                Ok(CaptureSpec::Path(path.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CaptureSpec, A::Error> {
                CaptureTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(CaptureSpec::Table)
            }
        }

        deserializer.deserialize_any(SpecVisitor)
    }
}

/// The captures of a step, compiled.
#[derive(Debug, Clone, Default)]
pub struct CaptureSet {
    items: Vec<(String, Capture)>,
}

#[derive(Debug, Clone)]
enum Capture {
    Json { text: String, path: JsonPath },
    XPath(XPath),
    Header(String),
    Regex { regex: Regex, group: GroupRef },
    Status,
}

/// Checks and compiles the `capture` table found at `path`.
pub fn compile_captures(captures: &Captures, path: &str, checks: &mut Checks) -> CaptureSet {
    let mut items = Vec::new();
    for (name, spec) in captures {
        let field = join_path(path, name);
        if name.trim().is_empty() {
            checks.push(&field, "a capture needs a name");
            continue;
        }
        if let Some(capture) = compile_one(spec, &field, checks) {
            items.push((name.clone(), capture));
        }
    }
    CaptureSet { items }
}

fn compile_one(spec: &CaptureSpec, field: &str, checks: &mut Checks) -> Option<Capture> {
    let table = match spec {
        CaptureSpec::Path(text) => {
            // No JSONPath starts with `/`, and every absolute XPath does: say which form to
            // write rather than where the JSONPath parser gave up.
            if text.trim_start().starts_with('/') && !checks.deferred(text) {
                checks.push(
                    field,
                    format!(
                        "`{text}` is not a JSONPath (they start with `$`); for XPath over an XML body write `{{ xpath = {text:?} }}`"
                    ),
                );
                return None;
            }
            let path = checks.json_path(field, text)?;
            return Some(Capture::Json {
                text: text.clone(),
                path,
            });
        }
        CaptureSpec::Table(table) => table,
    };
    let kinds = [
        table.json.is_some(),
        table.xpath.is_some(),
        table.header.is_some(),
        table.regex.is_some(),
        table.status.is_some(),
    ];
    if kinds.iter().filter(|set| **set).count() != 1 {
        checks.push(
            field,
            "set exactly one of `json`, `xpath`, `header`, `regex` and `status`",
        );
        return None;
    }
    if table.group.is_some() && table.regex.is_none() {
        checks.push(join_path(field, "group"), "`group` goes with `regex`");
        return None;
    }
    if let Some(text) = &table.json {
        let path = checks.json_path(&join_path(field, "json"), text)?;
        return Some(Capture::Json {
            text: text.clone(),
            path,
        });
    }
    if let Some(text) = &table.xpath {
        return xpath::check(checks, &join_path(field, "xpath"), text).map(Capture::XPath);
    }
    if let Some(header) = &table.header {
        if header.trim().is_empty() {
            checks.push(join_path(field, "header"), "must name a header");
            return None;
        }
        return Some(Capture::Header(header.clone()));
    }
    if let Some(pattern) = &table.regex {
        let regex = checks.regex(&join_path(field, "regex"), pattern)?;
        let group = check_group(
            &regex,
            table.group.as_ref(),
            &join_path(field, "group"),
            checks,
        )?;
        return Some(Capture::Regex { regex, group });
    }
    if table.status == Some(false) {
        checks.push(
            join_path(field, "status"),
            "write `status = true`, or remove the capture",
        );
        return None;
    }
    Some(Capture::Status)
}

fn check_group(
    regex: &Regex,
    group: Option<&GroupRef>,
    field: &str,
    checks: &mut Checks,
) -> Option<GroupRef> {
    // captures_len counts the whole match as group 0.
    let groups = regex.captures_len() - 1;
    match group {
        None => Some(GroupRef::Index(usize::from(groups > 0))),
        Some(GroupRef::Index(index)) if *index <= groups => Some(GroupRef::Index(*index)),
        Some(GroupRef::Index(index)) => {
            checks.push(
                field,
                format!("the regex has no group {index} (it has {groups})"),
            );
            None
        }
        Some(GroupRef::Name(name)) if regex.capture_names().flatten().any(|n| n == name) => {
            Some(GroupRef::Name(name.clone()))
        }
        Some(GroupRef::Name(name)) => {
            checks.push(field, format!("the regex has no group named `{name}`"));
            None
        }
    }
}

impl CaptureSet {
    /// Whether there is nothing to capture.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The captured values by name, or one message per capture that found nothing.
    pub fn evaluate(&self, subject: &Subject) -> Result<Map<String, Value>, Vec<String>> {
        let mut values = Map::new();
        let mut errors = Vec::new();
        // Parsed by the first XPath capture, if any, and shared by the others.
        let xml = LazyDocument::new(subject.text);
        for (name, capture) in &self.items {
            match capture.evaluate(subject, &xml) {
                Ok(value) => {
                    values.insert(name.clone(), value);
                }
                Err(reason) => errors.push(format!("capture `{name}`: {reason}")),
            }
        }
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(errors)
        }
    }
}

impl Capture {
    fn evaluate(&self, subject: &Subject, xml: &LazyDocument) -> Result<Value, String> {
        match self {
            Capture::Json { text, path } => {
                let json = subject
                    .json
                    .ok_or_else(|| format!("{text}: the response body is not JSON"))?;
                match path.query(json).all().as_slice() {
                    [] => Err(format!("{text} matched nothing")),
                    [one] => Ok((*one).clone()),
                    many => Ok(Value::Array(
                        many.iter().map(|node| (*node).clone()).collect(),
                    )),
                }
            }
            Capture::XPath(xpath) => {
                let text = xpath.text();
                let document = xml.get().map_err(|reason| format!("{text}: {reason}"))?;
                let found = xpath
                    .evaluate(document)
                    .map_err(|reason| format!("{text}: {reason}"))?;
                found
                    .to_json()
                    .ok_or_else(|| format!("{text} matched nothing"))
            }
            Capture::Header(name) => header_value(subject.headers, name)
                .map(Value::String)
                .ok_or_else(|| format!("the response has no {name} header")),
            Capture::Regex { regex, group } => {
                let text = subject
                    .text
                    .ok_or_else(|| "the response body is not text".to_owned())?;
                let captures = regex
                    .captures(text)
                    .ok_or_else(|| format!("regex /{regex}/ matched nothing"))?;
                let found = match group {
                    GroupRef::Index(index) => captures.get(*index),
                    GroupRef::Name(name) => captures.name(name),
                };
                found
                    .map(|m| Value::String(m.as_str().to_owned()))
                    .ok_or_else(|| format!("regex /{regex}/ matched, but not its group"))
            }
            Capture::Status => Ok(subject.status.into()),
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

    fn compile(json: &str) -> CaptureSet {
        let captures: Captures = serde_json::from_str(json).unwrap();
        let mut checks = Checks::new(Phase::Run);
        let set = compile_captures(&captures, "capture", &mut checks);
        assert!(checks.is_ok(), "{:?}", checks.into_errors());
        set
    }

    fn reply() -> Reply {
        Reply::from(response(
            201,
            &[
                ("content-type", "application/json"),
                ("x-request-id", "r-1"),
            ],
            r#"{"version": "v12", "items": [{"id": 1}, {"id": 2}], "one": [{"id": 9}]}"#,
        ))
    }

    #[test]
    fn every_kind_captures() {
        let set = compile(
            r#"{"version": "$.version", "ids": "$.items[*].id", "only": "$.one[*].id",
                "request": {"header": "X-Request-Id"}, "number": {"regex": "v(\\d+)"},
                "whole": {"regex": "v\\d+"}, "named": {"regex": "v(?<n>\\d)", "group": "n"},
                "code": {"status": true}, "long": {"json": "$.items[0]"}}"#,
        );
        let values = set.evaluate(&reply().subject()).unwrap();
        assert_eq!(
            Value::Object(values),
            serde_json::json!({
                "version": "v12", "ids": [1, 2], "only": 9, "request": "r-1", "number": "12",
                "whole": "v12", "named": "1", "code": 201, "long": {"id": 1}
            })
        );
    }

    #[test]
    fn captures_that_find_nothing_say_so() {
        let set = compile(r#"{"x": "$.x", "h": {"header": "x-nope"}, "r": {"regex": "zzz(\\d)"}}"#);
        let errors = set.evaluate(&reply().subject()).unwrap_err();
        assert_eq!(
            errors,
            [
                "capture `h`: the response has no x-nope header",
                "capture `r`: regex /zzz(\\d)/ matched nothing",
                "capture `x`: $.x matched nothing",
            ]
        );
        let text = Reply::from(response(200, &[("content-type", "text/plain")], "hi"));
        let errors = compile(r#"{"x": "$.x"}"#)
            .evaluate(&text.subject())
            .unwrap_err();
        assert_eq!(errors, ["capture `x`: $.x: the response body is not JSON"]);
    }

    #[test]
    fn bad_captures_are_config_errors_at_their_path() {
        let captures: Captures = serde_json::from_str(
            r#"{"a": "$[", "b": {"header": "x", "status": true}, "c": {"regex": "(", "group": 1},
                "d": {"regex": "a(b)", "group": 2}, "e": {"status": false}, "f": {"json": "$.x", "group": 1},
                "g": {"json": "{{ params.path }}"}}"#,
        )
        .unwrap();
        let mut checks = Checks::new(Phase::Validate);
        compile_captures(&captures, "capture", &mut checks);
        let errors: Vec<String> = checks
            .into_errors()
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        assert_eq!(errors.len(), 6, "{errors:#?}");
        assert!(errors[0].starts_with("capture.a: invalid JSONPath"));
        assert_eq!(
            errors[1],
            "capture.b: set exactly one of `json`, `xpath`, `header`, `regex` and `status`"
        );
        assert!(errors[2].starts_with("capture.c.regex: invalid regex"));
        assert_eq!(
            errors[3],
            "capture.d.group: the regex has no group 2 (it has 1)"
        );
        assert_eq!(
            errors[4],
            "capture.e.status: write `status = true`, or remove the capture"
        );
        assert_eq!(errors[5], "capture.f.group: `group` goes with `regex`");
    }

    fn xml_reply(body: &str) -> Reply {
        Reply::from(response(200, &[("content-type", "application/xml")], body))
    }

    const ORDERS: &str = r#"<orders><order id="o-1"><total>12.50</total></order><order id="o-2"><total>7</total></order></orders>"#;

    #[test]
    fn xpath_captures_attributes_text_numbers_and_lists() {
        let set = compile(
            r#"{"first": {"xpath": "//order[1]/@id"}, "ids": {"xpath": "//order/@id"},
                "total": {"xpath": "//order[2]/total"}, "orders": {"xpath": "count(//order)"},
                "sum": {"xpath": "sum(//total)"}, "big": {"xpath": "sum(//total) > 10"},
                "label": {"xpath": "concat('#', //order[1]/@id)"}}"#,
        );
        let values = set.evaluate(&xml_reply(ORDERS).subject()).unwrap();
        assert_eq!(
            Value::Object(values),
            serde_json::json!({
                "first": "o-1", "ids": ["o-1", "o-2"], "total": "7", "orders": 2,
                "sum": 19.5, "big": true, "label": "#o-1"
            })
        );
    }

    #[test]
    fn xpath_captures_that_find_nothing_or_no_xml_say_so() {
        let set = compile(r#"{"a": {"xpath": "//missing/@id"}, "b": {"xpath": "//order/@id"}}"#);
        let errors = set
            .evaluate(&xml_reply("<orders></orders>").subject())
            .unwrap_err();
        assert_eq!(
            errors,
            [
                "capture `a`: //missing/@id matched nothing",
                "capture `b`: //order/@id matched nothing",
            ]
        );
        // A count of nothing is a number: it captures 0.
        let count = compile(r#"{"n": {"xpath": "count(//order)"}}"#);
        let values = count.evaluate(&xml_reply("<orders/>").subject()).unwrap();
        assert_eq!(values["n"], 0);

        let errors = set
            .evaluate(&xml_reply("<orders><order id='1'></orders>").subject())
            .unwrap_err();
        assert_eq!(
            errors,
            [
                "capture `a`: //missing/@id: the response body is not well-formed XML: mismatched element end name (line 1, column 25)",
                "capture `b`: //order/@id: the response body is not well-formed XML: mismatched element end name (line 1, column 25)",
            ]
        );
        let errors = set.evaluate(&reply().subject()).unwrap_err();
        assert!(
            errors[0].starts_with(
                "capture `a`: //missing/@id: the response body is not well-formed XML: expected "
            ),
            "{errors:?}"
        );
        let mut bytes = response(200, &[], "");
        bytes.body = vec![0xff, 0xfe];
        let errors = set.evaluate(&Reply::from(bytes).subject()).unwrap_err();
        assert_eq!(
            errors[0],
            "capture `a`: //missing/@id: the response body is not text"
        );
    }

    #[test]
    fn bad_xpath_captures_are_config_errors_at_their_path() {
        let captures: Captures = serde_json::from_str(
            r#"{"a": {"xpath": "//order["}, "b": {"xpath": "cont(//a)"}, "c": {"xpath": "//a", "json": "$.a"},
                "d": {"xpath": "//a", "group": 1}, "e": {"xpath": "{{ params.path }}"}, "f": {"xpath": ""},
                "g": "//order/@id"}"#,
        )
        .unwrap();
        let mut checks = Checks::new(Phase::Validate);
        compile_captures(&captures, "capture", &mut checks);
        let errors: Vec<String> = checks
            .into_errors()
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        assert_eq!(
            errors,
            [
                "capture.a.xpath: invalid XPath `//order[`: empty predicate",
                "capture.b.xpath: invalid XPath `cont(//a)`: unknown function `cont`",
                "capture.c: set exactly one of `json`, `xpath`, `header`, `regex` and `status`",
                "capture.d.group: `group` goes with `regex`",
                "capture.f.xpath: invalid XPath ``: the expression is empty",
                "capture.g: `//order/@id` is not a JSONPath (they start with `$`); for XPath over an XML body write `{ xpath = \"//order/@id\" }`",
            ]
        );
    }

    #[test]
    fn unknown_keys_in_the_long_form_are_refused() {
        let err = serde_json::from_str::<Captures>(r#"{"a": {"jsn": "$.x"}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `jsn`"), "{err}");
    }
}
