//! OAuth2 client credentials and the JWT-bearer grant (RFC 7523, an assertion signed by the
//! host): the token request, and the token kept in the host's cache so that many steps (and
//! runs) ask the token endpoint once per token lifetime.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::host::Host;
use super::jwt::Assertion;
use super::request::HttpRequest;
use super::response::{Reply, header_value};
use super::status::response_error;
use crate::runbook::plugin::events::Level;
use crate::runbook::plugin::types::StepError;

/// `auth = { type = "oauth2", .. }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    /// The token endpoint.
    pub token_url: String,
    /// Which grant: client credentials unless said.
    #[serde(default)]
    pub grant: Grant,
    /// The client id (required for client credentials; sent with a JWT bearer grant when
    /// given).
    #[serde(default)]
    pub client_id: String,
    /// The client secret (usually `{{ secrets.NAME }}`; as `client_id`).
    #[serde(default)]
    pub client_secret: String,
    /// The JWT the host signs for the JWT-bearer grant.
    #[serde(default)]
    pub assertion: Option<Assertion>,
    /// Space-separated scopes to ask for.
    #[serde(default)]
    pub scope: Option<String>,
    /// The audience to ask for (Auth0 and others).
    #[serde(default)]
    pub audience: Option<String>,
    /// How the client authenticates to the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// The OAuth2 grant a token is asked with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// `client_credentials`: the client id and secret.
    #[default]
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523): a JWT signed by the host
    /// (a Google service account, say).
    JwtBearer,
}

/// The `grant_type` of the JWT-bearer grant.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How the client id and secret reach the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// As `client_id` and `client_secret` form fields (`client_secret_post`).
    #[default]
    Body,
    /// As HTTP Basic credentials (`client_secret_basic`).
    Basic,
}

/// Lifetime assumed when the token response has no `expires_in`.
pub const DEFAULT_LIFETIME_SECS: u64 = 300;

/// Longest safety margin: a token is dropped from the cache this long before it expires, so
/// that no request leaves with a token about to lapse.
pub const MAX_MARGIN_SECS: u64 = 60;

/// The cache key of a client's token: a hash of token URL, client id, scope and audience,
/// and for a JWT bearer grant the assertion's key (its placeholder, which names the secret)
/// and claims (which name the identity). Hashed so that the key is short and stable; the
/// secret is not part of it (the client id already names the client).
pub fn cache_key(oauth: &OAuth2) -> String {
    let (key, claims) = oauth.assertion.as_ref().map_or_else(
        || (String::new(), String::new()),
        |assertion| {
            (
                assertion.key.clone(),
                Value::Object(assertion.claims.clone()).to_string(),
            )
        },
    );
    let parts = [
        oauth.token_url.as_str(),
        oauth.client_id.as_str(),
        oauth.scope.as_deref().unwrap_or(""),
        oauth.audience.as_deref().unwrap_or(""),
        key.as_str(),
        claims.as_str(),
    ];
    // Two SipHash runs with different prefixes make a 128-bit key: collisions between
    // clients are not a concern. The hash only has to be stable within one build of the
    // plugin, as the cache lives in the daemon's memory.
    let mut high = DefaultHasher::new();
    let mut low = DefaultHasher::new();
    "runbook-oauth2-a".hash(&mut high);
    "runbook-oauth2-b".hash(&mut low);
    for part in parts {
        // `str::hash` writes a terminator, so ("ab", "c") and ("a", "bc") differ.
        part.hash(&mut high);
        part.hash(&mut low);
    }
    format!("oauth2:{:016x}{:016x}", high.finish(), low.finish())
}

/// How long to cache a token that lives `expires_in` seconds (300 when not said): its
/// lifetime less a margin of a fifth of it, at most a minute. 0 means do not cache.
pub fn cache_ttl_ms(expires_in: Option<u64>) -> u64 {
    let lifetime = expires_in.unwrap_or(DEFAULT_LIFETIME_SECS);
    let margin = (lifetime / 5).min(MAX_MARGIN_SECS);
    lifetime.saturating_sub(margin).saturating_mul(1000)
}

/// The token request: a form POST of the grant; `assertion` is the signed JWT of a JWT
/// bearer grant.
pub fn token_request(
    oauth: &OAuth2,
    assertion: Option<&str>,
    timeout: Option<Duration>,
) -> HttpRequest {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    let mut request = HttpRequest::new("POST", oauth.token_url.clone());
    match (oauth.grant, assertion) {
        (Grant::JwtBearer, Some(assertion)) => {
            form.append_pair("grant_type", JWT_BEARER_GRANT);
            form.append_pair("assertion", assertion);
        }
        _ => {
            form.append_pair("grant_type", "client_credentials");
        }
    }
    // A JWT bearer grant authenticates by its assertion; a client id given beside it is sent
    // too (RFC 7523 allows client authentication alongside).
    if oauth.grant == Grant::ClientCredentials || !oauth.client_id.is_empty() {
        match oauth.client_auth {
            ClientAuth::Body => {
                form.append_pair("client_id", &oauth.client_id);
                if oauth.grant == Grant::ClientCredentials || !oauth.client_secret.is_empty() {
                    form.append_pair("client_secret", &oauth.client_secret);
                }
            }
            ClientAuth::Basic => {
                request.basic_auth = Some((oauth.client_id.clone(), oauth.client_secret.clone()));
            }
        }
    }
    if let Some(scope) = &oauth.scope {
        form.append_pair("scope", scope);
    }
    if let Some(audience) = &oauth.audience {
        form.append_pair("audience", audience);
    }
    request
        .headers
        .set("Content-Type", "application/x-www-form-urlencoded");
    request.headers.set("Accept", "application/json");
    request.body = Some(form.finish().into_bytes());
    request.timeout = timeout;
    request
}

/// A token from the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What goes after `Bearer `.
    pub access_token: String,
    /// Its lifetime in seconds, if the endpoint said.
    pub expires_in: Option<u64>,
}

/// Reads the token endpoint's answer: a 2xx JSON object with `access_token`.
pub fn parse_token_response(
    token_url: &str,
    reply: &Reply,
    now: std::time::SystemTime,
) -> Result<Token, StepError> {
    let json = reply.json.as_ref();
    if !(200..300).contains(&reply.status) {
        let mut message = format!(
            "OAuth2 token request to {token_url} failed with status {}",
            reply.status
        );
        let error = json
            .and_then(|json| json.get("error"))
            .and_then(Value::as_str);
        let description = json
            .and_then(|json| json.get("error_description"))
            .and_then(Value::as_str);
        if let Some(error) = error {
            message.push_str(&format!(": {error}"));
        }
        if let Some(description) = description {
            message.push_str(&format!(" ({description})"));
        }
        return Err(response_error(
            reply.status,
            &reply.headers,
            now,
            message,
            None,
        ));
    }
    let access_token = json
        .and_then(|json| json.get("access_token"))
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            let kind = header_value(&reply.headers, "content-type")
                .unwrap_or_else(|| "no content type".into());
            crate::step_error(format!(
                "OAuth2 token response from {token_url} has no access_token ({kind})"
            ))
        })?;
    // Some servers send expires_in as a string.
    let expires_in = json
        .and_then(|json| json.get("expires_in"))
        .and_then(|value| match value {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        });
    Ok(Token {
        access_token: access_token.to_owned(),
        expires_in,
    })
}

/// Where a token came from: a cached token may have been revoked, a fresh one not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// From the host's cache.
    Cached,
    /// Just fetched from the token endpoint.
    Fetched,
}

/// A token for `oauth`: the cached one, else a new one from the endpoint (then cached).
pub fn token(
    host: &impl Host,
    oauth: &OAuth2,
    timeout: Option<Duration>,
) -> Result<(String, TokenSource), StepError> {
    if let Some(token) = host
        .cache_get(&cache_key(oauth))
        .filter(|token| !token.is_empty())
    {
        return Ok((token, TokenSource::Cached));
    }
    fetch(host, oauth, timeout).map(|token| (token, TokenSource::Fetched))
}

/// Fetches a new token and caches it.
pub fn fetch(
    host: &impl Host,
    oauth: &OAuth2,
    timeout: Option<Duration>,
) -> Result<String, StepError> {
    let assertion = match (&oauth.assertion, oauth.grant) {
        (Some(assertion), Grant::JwtBearer) => Some(assertion.sign(host)?),
        _ => None,
    };
    let request = token_request(oauth, assertion.as_deref(), timeout);
    let response = host
        .send(&request.to_wit())
        .map_err(|err| super::client::transport_error(&request, &err))?;
    let token = parse_token_response(&oauth.token_url, &Reply::from(response), host.now())?;
    let ttl = cache_ttl_ms(token.expires_in);
    if ttl > 0 {
        host.cache_set(&cache_key(oauth), &token.access_token, ttl);
    }
    host.log(
        Level::Info,
        &format!(
            "fetched an OAuth2 token from {} (cached for {}s)",
            oauth.token_url,
            ttl / 1000
        ),
    );
    Ok(token.access_token)
}

/// Drops the cached token (a TTL of 0), after the API refused it.
pub fn forget(host: &impl Host, oauth: &OAuth2) {
    host.cache_set(&cache_key(oauth), "", 0);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::web::testing::{FakeHost, response};

    fn oauth() -> OAuth2 {
        OAuth2 {
            token_url: "http://auth/token".into(),
            grant: Grant::ClientCredentials,
            client_id: "app".into(),
            client_secret: "__rb_secret.ab12cd34ef56.CLIENT__".into(),
            assertion: None,
            scope: Some("read write".into()),
            audience: None,
            client_auth: ClientAuth::Body,
        }
    }

    #[test]
    fn cache_key_depends_on_client_and_scope_not_secret() {
        let base = cache_key(&oauth());
        assert!(
            base.starts_with("oauth2:") && base.len() == 7 + 32,
            "{base}"
        );
        assert!(!base.contains("CLIENT"));
        let mut other_secret = oauth();
        other_secret.client_secret = "x".into();
        assert_eq!(cache_key(&other_secret), base);
        let mut other_scope = oauth();
        other_scope.scope = Some("read".into());
        assert_ne!(cache_key(&other_scope), base);
        let mut other_audience = oauth();
        other_audience.audience = Some("api".into());
        assert_ne!(cache_key(&other_audience), base);
    }

    #[test]
    fn ttl_keeps_a_margin_and_defaults_to_five_minutes() {
        assert_eq!(cache_ttl_ms(Some(3600)), 3_540_000);
        assert_eq!(cache_ttl_ms(None), 240_000);
        assert_eq!(cache_ttl_ms(Some(100)), 80_000);
        assert_eq!(cache_ttl_ms(Some(0)), 0);
    }

    #[test]
    fn token_request_is_a_form_post_with_secrets_untouched() {
        let request = token_request(&oauth(), None, None);
        assert_eq!(request.method, "POST");
        assert_eq!(
            String::from_utf8(request.body.clone().unwrap()).unwrap(),
            "grant_type=client_credentials&client_id=app&client_secret=__rb_secret.ab12cd34ef56.CLIENT__&scope=read+write"
        );
        let mut basic = oauth();
        basic.client_auth = ClientAuth::Basic;
        let request = token_request(&basic, None, None);
        assert_eq!(
            request.basic_auth,
            Some(("app".into(), basic.client_secret.clone()))
        );
        assert!(
            !String::from_utf8(request.body.unwrap())
                .unwrap()
                .contains("client_secret")
        );
    }

    #[test]
    fn token_responses_are_read_or_explained() {
        let now = std::time::SystemTime::UNIX_EPOCH;
        let ok = Reply::from(response(
            200,
            &[("content-type", "application/json")],
            r#"{"access_token": "abc", "expires_in": "3600", "token_type": "bearer"}"#,
        ));
        assert_eq!(
            parse_token_response("u", &ok, now).unwrap(),
            Token {
                access_token: "abc".into(),
                expires_in: Some(3600)
            }
        );
        let denied = Reply::from(response(
            401,
            &[("content-type", "application/json")],
            r#"{"error": "invalid_client", "error_description": "bad secret"}"#,
        ));
        let err = parse_token_response("u", &denied, now).unwrap_err();
        assert_eq!(
            err.message,
            "OAuth2 token request to u failed with status 401: invalid_client (bad secret)"
        );
        assert!(!err.transient);
        let busy = Reply::from(response(503, &[], ""));
        assert!(parse_token_response("u", &busy, now).unwrap_err().transient);
        let empty = Reply::from(response(200, &[("content-type", "application/json")], "{}"));
        assert!(
            parse_token_response("u", &empty, now)
                .unwrap_err()
                .message
                .contains("no access_token")
        );
    }

    #[test]
    fn tokens_are_fetched_once_then_cached() {
        let host = FakeHost::new();
        host.respond(
            200,
            &[("content-type", "application/json")],
            r#"{"access_token": "t1", "expires_in": 3600}"#,
        );
        assert_eq!(
            token(&host, &oauth(), None).unwrap(),
            ("t1".into(), TokenSource::Fetched)
        );
        assert_eq!(
            token(&host, &oauth(), None).unwrap(),
            ("t1".into(), TokenSource::Cached)
        );
        assert_eq!(host.sent_count(), 1);
        assert_eq!(host.cache.borrow()[&cache_key(&oauth())].1, 3_540_000);
        forget(&host, &oauth());
        assert!(host.cache.borrow().is_empty());
    }

    fn jwt_bearer() -> OAuth2 {
        serde_json::from_str(
            r#"{"token_url": "http://auth/token", "grant": "jwt_bearer", "scope": "read",
                "assertion": {"key": "__rb_secret.ab12cd34ef56.SA__", "alg": "RS256",
                              "claims": {"iss": "sa@example", "aud": "http://auth/token"}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_jwt_bearer_grant_sends_the_signed_assertion_and_no_client_secret() {
        let host = FakeHost::new();
        host.respond(
            200,
            &[("content-type", "application/json")],
            r#"{"access_token": "t1", "expires_in": 3600}"#,
        );
        let oauth = jwt_bearer();
        assert_eq!(fetch(&host, &oauth, None).unwrap(), "t1");
        let signed = host.signed.borrow();
        assert_eq!(signed.len(), 1, "one assertion per token request");
        let body = String::from_utf8(host.request(0).unwrap().body.unwrap()).unwrap();
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            form,
            [
                ("grant_type".to_owned(), JWT_BEARER_GRANT.to_owned()),
                ("assertion".to_owned(), FakeHost::signed_token(&signed[0])),
                ("scope".to_owned(), "read".to_owned()),
            ]
        );
        assert_eq!(host.cache.borrow()[&cache_key(&oauth)].0, "t1");
    }

    #[test]
    fn jwt_bearer_tokens_are_cached_per_identity() {
        let base = jwt_bearer();
        let mut other = jwt_bearer();
        if let Some(assertion) = &mut other.assertion {
            assertion.claims.insert("sub".into(), "someone@else".into());
        }
        assert_ne!(cache_key(&base), cache_key(&other));
        assert_ne!(cache_key(&base), cache_key(&oauth()));
    }
}
