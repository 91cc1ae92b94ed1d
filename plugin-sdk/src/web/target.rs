//! Where a request goes: an absolute `url`, or a named `target` (resolved by the daemon to a
//! base URL with default headers, auth and timeout) plus a relative `path`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use url::Url;

use super::auth::Auth;
use super::check::{Checks, Phase};

/// A runbook target as the daemon hands it to `plan`, `execute` and `resume`.
///
/// Keys other than these (the daemon's own policies, such as a rate limit) are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Target {
    /// The target's name in the runbook (`[targets.<name>]`).
    #[serde(default)]
    pub name: String,
    /// The base URL that a step's `path` is joined to.
    pub url: String,
    /// Default headers; a step's own headers override them by name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Default auth; a step's own `auth` replaces it.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Default per-request timeout (a duration string); a step's own `timeout` wins.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// A step's `target`: a name while the runbook is validated, the daemon's resolved target
/// once templates are rendered.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetRef {
    /// Only the name, as written in the runbook.
    Name(String),
    /// Resolved by the daemon.
    Resolved(Target),
}

impl TargetRef {
    /// The target's name.
    pub fn name(&self) -> &str {
        match self {
            TargetRef::Name(name) => name,
            TargetRef::Resolved(target) => &target.name,
        }
    }

    /// The resolved target; a bare name at run time means the daemon did not know it.
    pub fn resolved(&self) -> Result<&Target, String> {
        match self {
            TargetRef::Resolved(target) => Ok(target),
            TargetRef::Name(name) => Err(format!("target `{name}` was not resolved by the daemon")),
        }
    }
}

impl<'de> Deserialize<'de> for TargetRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;

        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = TargetRef;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a target name")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<TargetRef, E> {
                Ok(TargetRef::Name(name.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TargetRef, A::Error> {
                Target::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(TargetRef::Resolved)
            }
        }

        deserializer.deserialize_any(TargetVisitor)
    }
}

/// The destination fields of a step, by the names it uses for them (`url` for http,
/// `endpoint` for GraphQL).
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// Name of the absolute-URL field, for messages: `"url"` or `"endpoint"`.
    pub url_field: &'a str,
    /// The absolute URL, when given.
    pub url: Option<&'a str>,
    /// The target, when given.
    pub target: Option<&'a TargetRef>,
    /// The path relative to the target.
    pub path: Option<&'a str>,
}

impl<'a> Destination<'a> {
    /// Checks that exactly one of the URL and `target` is set, that `path` goes with
    /// `target`, and that URLs are absolute http(s) URLs once rendered; at run time returns
    /// the effective URL and the resolved target.
    pub fn resolve(&self, checks: &mut Checks) -> Option<(String, Option<&'a Target>)> {
        let url_field = self.url_field;
        match (self.url, self.target) {
            (Some(_), Some(_)) => {
                checks.push(
                    "",
                    format!("set either `{url_field}` or `target` (with `path`), not both"),
                );
                None
            }
            (None, None) => {
                checks.push(
                    "",
                    format!("missing `{url_field}` (an absolute URL) or `target` (a named target)"),
                );
                None
            }
            (Some(url), None) => {
                if self.path.is_some() {
                    checks.push(
                        "path",
                        format!("`path` is relative to `target`; with `{url_field}` put the path in the URL"),
                    );
                    return None;
                }
                let url = check_url(checks, url_field, url)?;
                Some((url, None))
            }
            (None, Some(target)) => {
                let path = self.path.unwrap_or("");
                if !checks.deferred(path) && is_absolute(path) {
                    checks.push(
                        "path",
                        format!(
                            "`{path}` is an absolute URL; `path` is relative to the target (use `{url_field}` instead of `target`)"
                        ),
                    );
                    return None;
                }
                if checks.phase() == Phase::Validate {
                    if target.name().trim().is_empty() {
                        checks.push("target", "must name a target");
                    }
                    return None;
                }
                let resolved = match target.resolved() {
                    Ok(resolved) => resolved,
                    Err(message) => {
                        // The message names the field already; a path would repeat it.
                        checks.push("", message);
                        return None;
                    }
                };
                let joined = join_url(&resolved.url, path);
                let url = check_url(checks, "target", &joined)?;
                Some((url, Some(resolved)))
            }
        }
    }
}

/// Checks that `value` is an absolute http or https URL (unless it is a deferred template)
/// and returns it as written: it may hold secret placeholders the host fills in.
fn check_url(checks: &mut Checks, field: &str, value: &str) -> Option<String> {
    if checks.deferred(value) {
        return None;
    }
    match parse_http_url(value) {
        Ok(_) => Some(value.trim().to_owned()),
        Err(message) => {
            checks.push(field, message);
            None
        }
    }
}

/// Parses an absolute http(s) URL, with messages for authors.
pub fn parse_http_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value.trim()).map_err(|err| format!("invalid URL `{value}`: {err}"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        "http" | "https" => Err(format!("invalid URL `{value}`: it names no host")),
        _ => Err(format!("`{value}` must start with http:// or https://")),
    }
}

fn is_absolute(path: &str) -> bool {
    let lower = path.trim_start().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("//")
}

/// Joins a target's base URL and a step's path the way people mean it, not as RFC 3986
/// reference resolution (which would drop the base's last segment without a trailing slash):
/// exactly one `/` between them, and the query strings of both kept.
///
/// `join_url("http://h/api", "/v1/users?x=1")` is `http://h/api/v1/users?x=1`.
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim();
    let base = base.split_once('#').map_or(base, |(before, _)| before);
    let (base_path, base_query) = split_query(base);
    let (rel_path, rel_query) = split_query(path.trim());
    let mut url = if rel_path.is_empty() {
        base_path.to_owned()
    } else {
        format!(
            "{}/{}",
            base_path.trim_end_matches('/'),
            rel_path.trim_start_matches('/')
        )
    };
    let queries: Vec<&str> = [base_query, rel_query]
        .into_iter()
        .flatten()
        .filter(|query| !query.is_empty())
        .collect();
    if !queries.is_empty() {
        url.push('?');
        url.push_str(&queries.join("&"));
    }
    url
}

fn split_query(url: &str) -> (&str, Option<&str>) {
    match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn join_keeps_one_slash_and_both_queries() {
        assert_eq!(join_url("http://h:8080", "/orders"), "http://h:8080/orders");
        assert_eq!(join_url("http://h:8080/", "orders"), "http://h:8080/orders");
        assert_eq!(join_url("http://h/api/", "/v1/x"), "http://h/api/v1/x");
        assert_eq!(join_url("http://h/api", "v1/x"), "http://h/api/v1/x");
        assert_eq!(join_url("http://h/api", ""), "http://h/api");
        assert_eq!(
            join_url("http://h/api?v=1", "x?y=2"),
            "http://h/api/x?v=1&y=2"
        );
        assert_eq!(join_url("http://h/api", "?y=2"), "http://h/api?y=2");
        assert_eq!(join_url("http://h/api#frag", "x"), "http://h/api/x");
    }

    #[test]
    fn target_is_a_name_or_an_object() {
        let name: TargetRef = serde_json::from_str(r#""api""#).unwrap();
        assert_eq!(name, TargetRef::Name("api".into()));
        assert_eq!(
            name.resolved().unwrap_err(),
            "target `api` was not resolved by the daemon"
        );
        let resolved: TargetRef = serde_json::from_str(
            r#"{"name": "api", "url": "http://127.0.0.1:8080", "headers": {"X-A": "1"},
                "timeout": "5s", "rate_limit": "50/s"}"#,
        )
        .unwrap();
        let target = resolved.resolved().unwrap();
        assert_eq!(target.url, "http://127.0.0.1:8080");
        assert_eq!(target.headers["X-A"], "1");
        assert_eq!(target.timeout.as_deref(), Some("5s"));
    }

    fn destination<'a>(
        url: Option<&'a str>,
        target: Option<&'a TargetRef>,
        path: Option<&'a str>,
    ) -> Destination<'a> {
        Destination {
            url_field: "url",
            url,
            target,
            path,
        }
    }

    #[test]
    fn url_and_target_are_exclusive_and_one_is_required() {
        let target = TargetRef::Name("api".into());
        let mut checks = Checks::new(Phase::Validate);
        destination(Some("http://h"), Some(&target), None).resolve(&mut checks);
        destination(None, None, None).resolve(&mut checks);
        destination(Some("http://h"), None, Some("/x")).resolve(&mut checks);
        destination(Some("ftp://h"), None, None).resolve(&mut checks);
        destination(None, Some(&target), Some("http://other/x")).resolve(&mut checks);
        let messages: Vec<String> = checks
            .into_errors()
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        assert_eq!(
            messages,
            [
                ": set either `url` or `target` (with `path`), not both",
                ": missing `url` (an absolute URL) or `target` (a named target)",
                "path: `path` is relative to `target`; with `url` put the path in the URL",
                "url: `ftp://h` must start with http:// or https://",
                "path: `http://other/x` is an absolute URL; `path` is relative to the target (use `url` instead of `target`)",
            ]
        );
    }

    #[test]
    fn templates_wait_for_rendering() {
        let mut checks = Checks::new(Phase::Validate);
        assert_eq!(
            destination(Some("{{ targets.api.url }}/x"), None, None).resolve(&mut checks),
            None
        );
        assert!(checks.is_ok());
    }

    #[test]
    fn run_time_resolution_joins_the_target() {
        let target = TargetRef::Resolved(Target {
            name: "api".into(),
            url: "http://127.0.0.1:8080/".into(),
            headers: BTreeMap::new(),
            auth: None,
            timeout: None,
        });
        let mut checks = Checks::new(Phase::Run);
        let (url, resolved) = destination(None, Some(&target), Some("/orders"))
            .resolve(&mut checks)
            .unwrap();
        assert_eq!(url, "http://127.0.0.1:8080/orders");
        assert_eq!(resolved.unwrap().name, "api");

        let unresolved = TargetRef::Name("api".into());
        let mut checks = Checks::new(Phase::Run);
        assert!(
            destination(None, Some(&unresolved), None)
                .resolve(&mut checks)
                .is_none()
        );
        let errors = checks.into_errors();
        assert_eq!(errors[0].path, "");
        assert_eq!(
            errors[0].message,
            "target `api` was not resolved by the daemon"
        );
    }
}
