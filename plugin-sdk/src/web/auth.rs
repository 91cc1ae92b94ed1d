//! The `auth` table of a step or target (bearer, basic, API key, a JWT signed by the host,
//! OAuth2 client credentials or JWT bearer), and how it is applied to a request. Values pass through unchanged: they may be secret
//! placeholders, which only the host replaces.

use serde::Deserialize;

use super::check::{Checks, join_path};
use super::jwt::JwtAuth;
use super::oauth2::{Grant, OAuth2};
use super::request::{Headers, HttpRequest, is_token};
use super::target::parse_http_url;

/// How a request authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token (usually `{{ secrets.NAME }}`).
        token: String,
    },
    /// HTTP Basic: the host encodes the pair after substituting secrets.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An API key in a header or a query parameter.
    ApiKey {
        /// Header or parameter name.
        #[serde(default = "default_api_key_name")]
        name: String,
        /// The key.
        value: String,
        /// Where the key goes.
        #[serde(default, rename = "in")]
        location: ApiKeyLocation,
    },
    /// A JWT signed by the host for each request, with a key from the vault. Boxed, like
    /// OAuth2, so that the common kinds stay small.
    Jwt(Box<JwtAuth>),
    /// OAuth2 client credentials or JWT bearer: a token from `token_url`, cached across steps.
    #[serde(rename = "oauth2")]
    OAuth2(Box<OAuth2>),
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    /// A request header.
    #[default]
    Header,
    /// A query parameter.
    Query,
}

fn default_api_key_name() -> String {
    "X-API-Key".into()
}

/// The header most auth kinds set.
pub const AUTHORIZATION: &str = "Authorization";

impl Auth {
    /// The kind as runbooks write it in `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Bearer { .. } => "bearer",
            Auth::Basic { .. } => "basic",
            Auth::ApiKey { .. } => "api_key",
            Auth::Jwt(_) => "jwt",
            Auth::OAuth2(_) => "oauth2",
        }
    }

    /// What an approver reads in a plan: the kind and where it goes, never a value.
    pub fn describe(&self) -> String {
        match self {
            Auth::Bearer { .. } => "bearer token".into(),
            Auth::Basic { .. } => "basic".into(),
            Auth::ApiKey {
                name,
                location: ApiKeyLocation::Header,
                ..
            } => format!("API key in header {name}"),
            Auth::ApiKey {
                name,
                location: ApiKeyLocation::Query,
                ..
            } => format!("API key in query parameter {name}"),
            Auth::Jwt(jwt) => format!(
                "JWT ({}) signed by the daemon in header {}",
                jwt.alg, jwt.header
            ),
            Auth::OAuth2(oauth) => match oauth.grant {
                Grant::ClientCredentials => {
                    format!("OAuth2 client credentials from {}", oauth.token_url)
                }
                Grant::JwtBearer => format!("OAuth2 JWT bearer grant from {}", oauth.token_url),
            },
        }
    }

    /// The header this auth sets, if it sets one: a step header of that name set by hand
    /// would compete with it.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            Auth::Bearer { .. } | Auth::Basic { .. } | Auth::OAuth2(_) => Some(AUTHORIZATION),
            Auth::Jwt(jwt) => Some(&jwt.header),
            Auth::ApiKey {
                name,
                location: ApiKeyLocation::Header,
                ..
            } => Some(name),
            Auth::ApiKey {
                location: ApiKeyLocation::Query,
                ..
            } => None,
        }
    }

    /// Checks the values that can be checked: names, URLs, emptiness.
    pub fn check(&self, path: &str, checks: &mut Checks) {
        let required = |checks: &mut Checks, field: &str, value: &str| {
            if value.trim().is_empty() {
                checks.push(join_path(path, field), "must not be empty");
            }
        };
        match self {
            Auth::Bearer { token } => required(checks, "token", token),
            Auth::Basic { username, .. } => required(checks, "username", username),
            Auth::ApiKey {
                name,
                value,
                location,
            } => {
                required(checks, "value", value);
                let valid = match location {
                    ApiKeyLocation::Header => is_token(name),
                    ApiKeyLocation::Query => !name.is_empty(),
                };
                if !valid && !checks.deferred(name) {
                    checks.push(
                        join_path(path, "name"),
                        format!("`{name}` is not a valid header or parameter name"),
                    );
                }
            }
            Auth::Jwt(jwt) => jwt.check(path, checks),
            Auth::OAuth2(oauth) => {
                match (oauth.grant, &oauth.assertion) {
                    (Grant::ClientCredentials, None) => {
                        required(checks, "client_id", &oauth.client_id);
                        required(checks, "client_secret", &oauth.client_secret);
                    }
                    (Grant::ClientCredentials, Some(_)) => checks.push(
                        join_path(path, "assertion"),
                        "an assertion is for grant = \"jwt_bearer\"",
                    ),
                    (Grant::JwtBearer, Some(assertion)) => {
                        assertion.check(&join_path(path, "assertion"), checks);
                    }
                    (Grant::JwtBearer, None) => checks.push(
                        join_path(path, "assertion"),
                        "grant = \"jwt_bearer\" needs an assertion = { key, alg, claims }",
                    ),
                }
                if !checks.deferred(&oauth.token_url)
                    && let Err(message) = parse_http_url(&oauth.token_url)
                {
                    checks.push(join_path(path, "token_url"), message);
                }
            }
        }
    }

    /// Applies every kind but JWT and OAuth2 (which need the host: see
    /// [`client::send`](super::client::send)) to `request`.
    pub fn apply_static(&self, request: &mut HttpRequest) -> Result<(), String> {
        match self {
            Auth::Bearer { token } => request
                .headers
                .set(AUTHORIZATION, format!("Bearer {token}")),
            Auth::Basic { username, password } => {
                // The host builds the header once the secrets are in: base64 of a
                // placeholder would hide it from substitution.
                request.headers.remove(AUTHORIZATION);
                request.basic_auth = Some((username.clone(), password.clone()));
            }
            Auth::ApiKey {
                name,
                value,
                location: ApiKeyLocation::Header,
            } => request.headers.set(name.clone(), value.clone()),
            Auth::ApiKey {
                name,
                value,
                location: ApiKeyLocation::Query,
            } => request.add_query(&[(name.clone(), value.clone())])?,
            Auth::Jwt(_) | Auth::OAuth2(_) => {}
        }
        Ok(())
    }
}

/// The auth a request uses: the step's own, else the target's unless the step sets the
/// header that auth would set (a step's explicit header is more specific than a target's
/// default).
pub fn effective_auth<'a>(
    step: Option<&'a Auth>,
    target: Option<&'a Auth>,
    step_headers: &Headers,
) -> Option<&'a Auth> {
    if step.is_some() {
        return step;
    }
    target.filter(|auth| {
        auth.header_name()
            .is_none_or(|name| !step_headers.contains(name))
    })
}

/// Refuses a step that sets the same header through `auth` and through `headers`: one of
/// them would silently lose.
pub fn check_auth_headers(
    checks: &mut Checks,
    auth: Option<&Auth>,
    headers: &Headers,
    headers_path: &str,
) {
    let Some(name) = auth.and_then(Auth::header_name) else {
        return;
    };
    if let Some((written, _)) = headers
        .iter()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
    {
        checks.push(
            join_path(headers_path, written),
            format!("`auth` sets the {name} header too; keep one of them"),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::web::check::Phase;

    fn parse(json: &str) -> Result<Auth, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn every_kind_parses() {
        assert_eq!(
            parse(r#"{"type": "bearer", "token": "t"}"#).unwrap(),
            Auth::Bearer { token: "t".into() }
        );
        assert_eq!(
            parse(r#"{"type": "api_key", "value": "k"}"#).unwrap(),
            Auth::ApiKey {
                name: "X-API-Key".into(),
                value: "k".into(),
                location: ApiKeyLocation::Header
            }
        );
        let oauth = parse(
            r#"{"type": "oauth2", "token_url": "http://a/token", "client_id": "c",
                "client_secret": "s", "scope": "read"}"#,
        )
        .unwrap();
        assert_eq!(oauth.kind(), "oauth2");
        assert_eq!(
            oauth.describe(),
            "OAuth2 client credentials from http://a/token"
        );
    }

    #[test]
    fn unknown_kinds_and_fields_are_refused() {
        let err = parse(r#"{"type": "bearr", "token": "t"}"#).unwrap_err();
        assert!(err.contains("unknown variant `bearr`"), "{err}");
        let err = parse(r#"{"type": "bearer", "token": "t", "extra": 1}"#).unwrap_err();
        assert!(err.contains("unknown field `extra`"), "{err}");
        let err = parse(r#"{"type": "oauth2", "token_url": "u", "client_id": "c", "client_secret": "s", "scopes": "x"}"#)
            .unwrap_err();
        assert!(err.contains("unknown field `scopes`"), "{err}");
        let err = parse(r#"{"token": "t"}"#).unwrap_err();
        assert!(err.contains("missing field `type`"), "{err}");
    }

    #[test]
    fn static_kinds_apply_without_touching_values() {
        let secret = "__rb_secret.ab12cd34ef56.API__";
        let mut request = HttpRequest::new("GET", "http://h/x");
        Auth::Bearer {
            token: secret.into(),
        }
        .apply_static(&mut request)
        .unwrap();
        assert_eq!(
            request.headers.get("authorization"),
            Some(&*format!("Bearer {secret}"))
        );

        let mut request = HttpRequest::new("GET", "http://h/x");
        request.headers.set("Authorization", "from target");
        Auth::Basic {
            username: "u".into(),
            password: secret.into(),
        }
        .apply_static(&mut request)
        .unwrap();
        assert_eq!(request.basic_auth, Some(("u".into(), secret.into())));
        assert!(!request.headers.contains("authorization"));

        let mut request = HttpRequest::new("GET", "http://h/x");
        Auth::ApiKey {
            name: "api_key".into(),
            value: secret.into(),
            location: ApiKeyLocation::Query,
        }
        .apply_static(&mut request)
        .unwrap();
        assert_eq!(request.url, format!("http://h/x?api_key={secret}"));
    }

    #[test]
    fn step_auth_beats_target_auth_and_step_headers_beat_target_auth() {
        let step = Auth::Bearer { token: "s".into() };
        let target = Auth::Bearer { token: "t".into() };
        let mut headers = Headers::new();
        assert_eq!(
            effective_auth(Some(&step), Some(&target), &headers),
            Some(&step)
        );
        assert_eq!(effective_auth(None, Some(&target), &headers), Some(&target));
        headers.set("authorization", "Token x");
        assert_eq!(effective_auth(None, Some(&target), &headers), None);
    }

    #[test]
    fn auth_and_a_hand_written_header_conflict() {
        let mut headers = Headers::new();
        headers.set("Authorization", "Bearer x");
        let mut checks = Checks::new(Phase::Validate);
        check_auth_headers(
            &mut checks,
            Some(&Auth::Bearer { token: "t".into() }),
            &headers,
            "headers",
        );
        let errors = checks.into_errors();
        assert_eq!(errors[0].path, "headers.Authorization");
        assert_eq!(
            errors[0].message,
            "`auth` sets the Authorization header too; keep one of them"
        );
    }

    #[test]
    fn checks_name_the_field() {
        let mut checks = Checks::new(Phase::Validate);
        Auth::Bearer { token: " ".into() }.check("auth", &mut checks);
        parse(
            r#"{"type": "oauth2", "token_url": "ftp://x", "client_id": "c", "client_secret": "s"}"#,
        )
        .unwrap()
        .check("auth", &mut checks);
        Auth::ApiKey {
            name: "bad name".into(),
            value: "v".into(),
            location: ApiKeyLocation::Header,
        }
        .check("auth", &mut checks);
        let paths: Vec<String> = checks.into_errors().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["auth.token", "auth.token_url", "auth.name"]);
    }
}
