//! The request body: exactly one of `json`, `form`, `text` and `base64`, with the content
//! type its kind implies unless `content_type` (or a `Content-Type` header) says otherwise.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use runbook_plugin_sdk::web::check::Checks;
use runbook_plugin_sdk::web::request::check_pairs;

use crate::config::HttpConfig;

/// An encoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// `json`, `form`, `text` or `base64`: what the plan shows.
    pub kind: &'static str,
    /// The bytes sent.
    pub bytes: Vec<u8>,
    /// The `Content-Type` sent, unless the step's headers set one.
    pub content_type: String,
}

/// The body of the step, if it has one; problems are recorded in `checks`.
pub fn build(config: &HttpConfig, checks: &mut Checks) -> Option<Body> {
    let given: Vec<&str> = [
        ("json", config.json.is_some()),
        ("form", config.form.is_some()),
        ("text", config.text.is_some()),
        ("base64", config.base64.is_some()),
    ]
    .into_iter()
    .filter_map(|(kind, set)| set.then_some(kind))
    .collect();
    if given.len() > 1 {
        checks.push(
            given[1],
            format!(
                "a step has one body; `{}` and `{}` are both set",
                given[0], given[1]
            ),
        );
        return None;
    }
    if let Some(content_type) = &config.content_type {
        if given.is_empty() {
            checks.push(
                "content_type",
                "there is no body to describe (set `json`, `form`, `text` or `base64`)",
            );
        } else if config
            .headers
            .keys()
            .any(|name| name.eq_ignore_ascii_case("content-type"))
        {
            checks.push(
                "content_type",
                "the headers set Content-Type too; keep one of them",
            );
        } else if !checks.deferred(content_type) && content_type.contains(['\r', '\n']) {
            checks.push("content_type", "cannot hold a line break");
        }
    }
    let (kind, bytes, default_type) = if let Some(json) = &config.json {
        (
            "json",
            serde_json::to_vec(json).unwrap_or_default(),
            "application/json",
        )
    } else if let Some(form) = &config.form {
        let pairs = check_pairs(checks, "form", form);
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        (
            "form",
            encoded.into_bytes(),
            "application/x-www-form-urlencoded",
        )
    } else if let Some(text) = &config.text {
        (
            "text",
            text.clone().into_bytes(),
            "text/plain; charset=utf-8",
        )
    } else if let Some(encoded) = &config.base64 {
        if checks.deferred(encoded) {
            return None;
        }
        // Long base64 is often wrapped over lines; the line breaks are not data.
        let compact: String = encoded
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        match STANDARD.decode(compact) {
            Ok(bytes) => ("base64", bytes, "application/octet-stream"),
            Err(err) => {
                checks.push("base64", format!("not valid base64: {err}"));
                return None;
            }
        }
    } else {
        return None;
    };
    Some(Body {
        kind,
        bytes,
        content_type: config
            .content_type
            .clone()
            .unwrap_or_else(|| default_type.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_plugin_sdk::web::check::{Phase, StepConfig};

    use super::*;

    fn body(json: &str) -> (Option<Body>, Vec<String>) {
        let config = HttpConfig::parse(json).unwrap();
        let mut checks = Checks::new(Phase::Run);
        let body = build(&config, &mut checks);
        let errors = checks
            .into_errors()
            .into_iter()
            .map(|err| format!("{}: {}", err.path, err.message))
            .collect();
        (body, errors)
    }

    #[test]
    fn each_kind_has_its_type() {
        let (json, _) = body(r#"{"json": [1, "a"]}"#);
        let json = json.unwrap();
        assert_eq!(
            (json.kind, json.bytes.as_slice()),
            ("json", &br#"[1,"a"]"#[..])
        );
        assert_eq!(json.content_type, "application/json");

        let (form, _) = body(r#"{"form": {"a": "x y", "n": 1, "secret": "__rb_secret.ab12.P__"}}"#);
        let form = form.unwrap();
        assert_eq!(form.bytes, b"a=x+y&n=1&secret=__rb_secret.ab12.P__");
        assert_eq!(form.content_type, "application/x-www-form-urlencoded");

        let (text, _) = body(r#"{"text": "<a/>", "content_type": "application/xml"}"#);
        let text = text.unwrap();
        assert_eq!(text.bytes, b"<a/>");
        assert_eq!(text.content_type, "application/xml");

        let (binary, _) = body(r#"{"base64": "AAEC\n/w=="}"#);
        let binary = binary.unwrap();
        assert_eq!(binary.bytes, [0, 1, 2, 255]);
        assert_eq!(binary.content_type, "application/octet-stream");

        let (null, _) = body(r#"{"json": null}"#);
        assert_eq!(null.unwrap().bytes, b"null");
        assert_eq!(body("{}"), (None, vec![]));
    }

    #[test]
    fn conflicts_and_bad_bodies_are_reported() {
        assert_eq!(
            body(r#"{"json": {}, "text": "x"}"#).1,
            ["text: a step has one body; `json` and `text` are both set"]
        );
        assert_eq!(
            body(r#"{"content_type": "text/csv"}"#).1,
            ["content_type: there is no body to describe (set `json`, `form`, `text` or `base64`)"]
        );
        assert_eq!(
            body(
                r#"{"text": "x", "content_type": "text/csv", "headers": {"content-type": "a/b"}}"#
            )
            .1,
            ["content_type: the headers set Content-Type too; keep one of them"]
        );
        let (_, errors) = body(r#"{"base64": "%%%"}"#);
        assert!(
            errors[0].starts_with("base64: not valid base64"),
            "{errors:?}"
        );
    }
}
