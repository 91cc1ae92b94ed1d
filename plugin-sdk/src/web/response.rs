//! A response as steps see it: headers as a map, the body decoded (JSON, text, or base64 for
//! bytes), and the standard output object later steps read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::runbook::plugin::http;

/// The value of a header (names compared case-insensitively), repeats joined with `, `.
pub fn header_value(headers: &[(String, String)], name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .iter()
        .filter(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Headers as a JSON object: lower-case names, repeats joined with `, `.
pub fn header_map(headers: &[(String, String)]) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match map.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                map.insert(name, Value::String(value.clone()));
            }
        }
    }
    map
}

/// Whether a `Content-Type` announces JSON: `application/json`, `text/json`, or any
/// `+json` type (`application/problem+json`, `application/graphql-response+json`).
pub fn is_json_media_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

/// The body as JSON when it is JSON: announced so by its content type, or, with no content
/// type at all, when it parses.
pub fn decode_json(headers: &[(String, String)], body: &[u8]) -> Option<Value> {
    let worth_trying = match header_value(headers, "content-type") {
        Some(content_type) if !content_type.trim().is_empty() => is_json_media_type(&content_type),
        _ => true,
    };
    if !worth_trying || body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// What expectations and captures look at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The status code.
    pub status: u16,
    /// The headers as received.
    pub headers: &'a [(String, String)],
    /// The body as text, when it is UTF-8.
    pub text: Option<&'a str>,
    /// The JSON that JSONPaths run against (the body, or a part of it such as GraphQL's
    /// `data`), when there is JSON.
    pub json: Option<&'a Value>,
    /// How long the request took.
    pub duration_ms: u64,
}

/// A response with its body decoded once.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body as JSON, when it is JSON (see [`decode_json`]).
    pub json: Option<Value>,
    /// The URL that answered, after redirects.
    pub url: String,
    /// How long the request took.
    pub duration_ms: u64,
}

impl From<http::Response> for Reply {
    fn from(response: http::Response) -> Self {
        let json = decode_json(&response.headers, &response.body);
        Self {
            status: response.status,
            headers: response.headers,
            body: response.body,
            json,
            url: response.url,
            duration_ms: response.duration_ms,
        }
    }
}

impl Reply {
    /// The body as text, when it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The value of a header, repeats joined.
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.headers, name)
    }

    /// The reply as expectations and captures see it, JSONPaths running on the body.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            status: self.status,
            headers: &self.headers,
            text: self.text(),
            json: self.json.as_ref(),
            duration_ms: self.duration_ms,
        }
    }

    /// The standard output of a web step: `status`, `headers`, `body` (JSON, text, or
    /// base64 with `body_base64: true`), `url`, `duration_ms` and `captures`.
    pub fn output(&self, captures: Map<String, Value>) -> Value {
        let mut output = Map::new();
        output.insert("status".into(), self.status.into());
        output.insert("headers".into(), Value::Object(header_map(&self.headers)));
        match (&self.json, self.text()) {
            (Some(json), _) => {
                output.insert("body".into(), json.clone());
            }
            (None, Some(text)) => {
                output.insert("body".into(), text.into());
            }
            (None, None) => {
                output.insert("body".into(), STANDARD.encode(&self.body).into());
                output.insert("body_base64".into(), true.into());
            }
        }
        output.insert("url".into(), self.url.clone().into());
        output.insert("duration_ms".into(), self.duration_ms.into());
        output.insert("captures".into(), Value::Object(captures));
        Value::Object(output)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::web::testing::response;

    #[test]
    fn headers_join_repeats_under_lower_case_names() {
        let headers = vec![
            ("Set-Cookie".to_owned(), "a=1".to_owned()),
            ("x-id".to_owned(), "7".to_owned()),
            ("set-cookie".to_owned(), "b=2".to_owned()),
        ];
        let map = header_map(&headers);
        assert_eq!(map["set-cookie"], "a=1, b=2");
        assert_eq!(header_value(&headers, "X-ID").as_deref(), Some("7"));
        assert_eq!(header_value(&headers, "missing"), None);
    }

    #[test]
    fn json_is_detected_by_type_or_by_parsing_when_untyped() {
        let typed = vec![(
            "content-type".to_owned(),
            "application/problem+json; charset=utf-8".to_owned(),
        )];
        assert_eq!(
            decode_json(&typed, br#"{"a":1}"#),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(decode_json(&[], b"[1, 2]"), Some(serde_json::json!([1, 2])));
        let text = vec![("content-type".to_owned(), "text/plain".to_owned())];
        assert_eq!(decode_json(&text, b"[1, 2]"), None);
        assert_eq!(decode_json(&typed, b"not json"), None);
        assert_eq!(decode_json(&typed, b""), None);
    }

    #[test]
    fn output_has_json_text_or_base64_bodies() {
        let json = Reply::from(response(
            200,
            &[("Content-Type", "application/json")],
            r#"{"v":"2"}"#,
        ));
        let output = json.output(Map::new());
        assert_eq!(output["status"], 200);
        assert_eq!(output["body"]["v"], "2");
        assert_eq!(output["headers"]["content-type"], "application/json");
        assert_eq!(output["duration_ms"], 7);
        assert_eq!(output["captures"], serde_json::json!({}));
        assert!(output.get("body_base64").is_none());

        let text = Reply::from(response(200, &[("content-type", "text/html")], "<p>hi</p>"));
        assert_eq!(text.output(Map::new())["body"], "<p>hi</p>");

        let mut bytes = response(200, &[("content-type", "application/octet-stream")], "");
        bytes.body = vec![0xff, 0x00, 0xfe];
        let output = Reply::from(bytes).output(Map::new());
        assert_eq!(output["body"], "/wD+");
        assert_eq!(output["body_base64"], true);
    }
}
