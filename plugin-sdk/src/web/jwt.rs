//! JWT auth: `auth = { type = "jwt", ... }` sends a token signed by the host for each request,
//! and [`Assertion`] is the signed token the OAuth2 JWT-bearer grant (RFC 7523) trades for an
//! access token. The key stays in the daemon's vault: the plugin passes its placeholder to the
//! host's `jwt.sign`, which sets `iat`, `exp` and `jti` and returns the token.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::check::{Checks, Phase, join_path};
use super::host::Host;
use super::request::is_token;
use crate::runbook::plugin::jwt::SignRequest;
use crate::runbook::plugin::types::StepError;

/// The algorithms the host signs with.
pub const ALGORITHMS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

/// A token's lifetime when `ttl` is not given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The longest `ttl` the host accepts.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The claims the host sets itself.
const HOST_CLAIMS: [&str; 3] = ["iat", "exp", "jti"];

/// What to sign: the key (a secret), the algorithm, the claims and the lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    /// `{{ secrets.NAME }}`: a PEM private key, or the shared secret for HS*.
    pub key: String,
    /// One of [`ALGORITHMS`].
    pub alg: String,
    /// The claims (`iss`, `sub`, `aud`, `scope`, ...); `iat`, `exp` and `jti` are the host's.
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// The token's lifetime, `"5m"` when not given.
    #[serde(default)]
    pub ttl: Option<String>,
    /// The `kid` header.
    #[serde(default)]
    pub key_id: Option<String>,
}

/// `auth = { type = "jwt", ... }`: the assertion's fields, and where the token goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuth {
    /// `{{ secrets.NAME }}`: a PEM private key, or the shared secret for HS*.
    pub key: String,
    /// One of [`ALGORITHMS`].
    pub alg: String,
    /// The claims; `iat`, `exp` and `jti` are the host's.
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// The token's lifetime, `"5m"` when not given.
    #[serde(default)]
    pub ttl: Option<String>,
    /// The `kid` header.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The header that carries the token.
    #[serde(default = "default_header")]
    pub header: String,
    /// What precedes the token in the header value; empty for the bare token.
    #[serde(default = "default_scheme")]
    pub scheme: String,
}

fn default_header() -> String {
    super::auth::AUTHORIZATION.into()
}

fn default_scheme() -> String {
    "Bearer".into()
}

impl JwtAuth {
    /// The token this auth signs, as an assertion.
    pub fn assertion(&self) -> Assertion {
        Assertion {
            key: self.key.clone(),
            alg: self.alg.clone(),
            claims: self.claims.clone(),
            ttl: self.ttl.clone(),
            key_id: self.key_id.clone(),
        }
    }

    /// The header value for `token`.
    pub fn header_value(&self, token: &str) -> String {
        if self.scheme.is_empty() {
            token.to_owned()
        } else {
            format!("{} {token}", self.scheme)
        }
    }

    /// Checks the assertion and the header name.
    pub fn check(&self, path: &str, checks: &mut Checks) {
        self.assertion().check(path, checks);
        if !is_token(&self.header) && !checks.deferred(&self.header) {
            checks.push(
                join_path(path, "header"),
                format!("`{}` is not a valid header name", self.header),
            );
        }
    }
}

impl Assertion {
    /// Checks what can be checked before the host signs: the key is written as a secret,
    /// the algorithm is one the host knows, the lifetime is a duration within bounds, and the
    /// claims leave the host's own alone. `path` is where the fields are (`auth` or
    /// `auth.assertion`).
    pub fn check(&self, path: &str, checks: &mut Checks) {
        if checks.phase() == Phase::Validate && !super::check::is_template(&self.key) {
            checks.push(
                join_path(path, "key"),
                "a signing key is read from the vault: write it as \"{{ secrets.NAME }}\"",
            );
        }
        if !ALGORITHMS.contains(&self.alg.as_str()) && !checks.deferred(&self.alg) {
            checks.push(
                join_path(path, "alg"),
                format!(
                    "unknown algorithm `{}`; use one of {}",
                    self.alg,
                    ALGORITHMS.join(", ")
                ),
            );
        }
        if let Err(message) = self.lifetime() {
            checks.push(join_path(path, "ttl"), message);
        }
        for claim in HOST_CLAIMS {
            if self.claims.contains_key(claim) {
                checks.push(
                    join_path(&join_path(path, "claims"), claim),
                    "set by the host when it signs (from the time and the ttl); remove it",
                );
            }
        }
    }

    /// The lifetime: `ttl`, 5 minutes when not given.
    pub fn lifetime(&self) -> Result<Duration, String> {
        let Some(ttl) = &self.ttl else {
            return Ok(DEFAULT_TTL);
        };
        let duration = humantime::parse_duration(ttl)
            .map_err(|err| format!("invalid duration `{ttl}`: {err}"))?;
        if duration < Duration::from_secs(1) || duration > MAX_TTL {
            return Err("must be between 1s and 24h".into());
        }
        Ok(duration)
    }

    /// Asks the host for a fresh token.
    pub fn sign(&self, host: &impl Host) -> Result<String, StepError> {
        let ttl = self.lifetime().map_err(crate::step_error)?;
        let request = SignRequest {
            key: self.key.clone(),
            algorithm: self.alg.clone(),
            claims: Value::Object(self.claims.clone()).to_string(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            key_id: self.key_id.clone(),
        };
        host.sign_jwt(&request)
            .map_err(|reason| crate::step_error(format!("cannot sign the JWT: {reason}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::web::testing::FakeHost;

    fn jwt(json: &str) -> JwtAuth {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_are_a_bearer_token_of_five_minutes() {
        let auth = jwt(r#"{"key": "{{ secrets.k }}", "alg": "RS256", "claims": {"iss": "me"}}"#);
        assert_eq!(auth.header, "Authorization");
        assert_eq!(auth.header_value("t"), "Bearer t");
        assert_eq!(auth.assertion().lifetime().unwrap(), DEFAULT_TTL);
        let bare = jwt(r#"{"key": "k", "alg": "HS256", "header": "X-Token", "scheme": ""}"#);
        assert_eq!(bare.header_value("t"), "t");
    }

    #[test]
    fn checks_name_each_field() {
        let mut checks = Checks::new(Phase::Validate);
        jwt(
            r#"{"key": "literal", "alg": "RS255", "ttl": "2d", "header": "bad header",
                "claims": {"exp": 1, "sub": "x"}}"#,
        )
        .check("auth", &mut checks);
        let errors: Vec<(String, String)> = checks
            .into_errors()
            .into_iter()
            .map(|error| (error.path, error.message))
            .collect();
        let paths: Vec<&str> = errors.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "auth.key",
                "auth.alg",
                "auth.ttl",
                "auth.claims.exp",
                "auth.header"
            ],
            "{errors:?}"
        );
        assert!(
            errors[1]
                .1
                .starts_with("unknown algorithm `RS255`; use one of RS256")
        );
        assert_eq!(errors[2].1, "must be between 1s and 24h");

        let mut checks = Checks::new(Phase::Validate);
        jwt(r#"{"key": "{{ secrets.k }}", "alg": "ES256", "ttl": "1h"}"#)
            .check("auth", &mut checks);
        assert!(checks.is_ok());
    }

    #[test]
    fn signing_asks_the_host_with_the_claims_and_lifetime() {
        let host = FakeHost::new();
        let auth = jwt(
            r#"{"key": "__rb_secret.ab12cd34ef56.K__", "alg": "ES256", "ttl": "90s",
                "key_id": "k1", "claims": {"iss": "me", "aud": ["a", "b"]}}"#,
        );
        let token = auth.assertion().sign(&host).unwrap();
        let signed = host.signed.borrow();
        assert_eq!(signed.len(), 1);
        assert_eq!(signed[0].key, "__rb_secret.ab12cd34ef56.K__");
        assert_eq!(signed[0].algorithm, "ES256");
        assert_eq!(signed[0].ttl_ms, 90_000);
        assert_eq!(signed[0].key_id.as_deref(), Some("k1"));
        assert_eq!(
            serde_json::from_str::<Value>(&signed[0].claims).unwrap(),
            serde_json::json!({"iss": "me", "aud": ["a", "b"]})
        );
        assert_eq!(token, FakeHost::signed_token(&signed[0]));
    }
}
