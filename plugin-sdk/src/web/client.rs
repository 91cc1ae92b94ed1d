//! Sending a request through the host with its auth applied (OAuth2 tokens from the cache,
//! renewed once when the API refuses a cached one), and transport errors classified for
//! retries.

use super::auth::{AUTHORIZATION, Auth};
use super::host::Host;
use super::oauth2::{self, TokenSource};
use super::request::HttpRequest;
use super::response::Reply;
use crate::runbook::plugin::events::Level;
use crate::runbook::plugin::http;
use crate::runbook::plugin::types::StepError;
use crate::{step_error, transient_error};

/// Sends `request` with `auth` applied and decodes the answer.
///
/// With OAuth2, a 401 to a request that carried a cached token drops that token, fetches a
/// new one and sends the request once more: the token may have been revoked early. A 401
/// with a token just fetched is returned as it is.
pub fn send(
    host: &impl Host,
    request: &HttpRequest,
    auth: Option<&Auth>,
) -> Result<Reply, StepError> {
    let oauth = match auth {
        Some(Auth::OAuth2(oauth)) => oauth,
        Some(Auth::Jwt(jwt)) => {
            // A fresh token per request: it lives minutes, and the host signs it in well
            // under a millisecond for HS*/ES*, about one for RS*.
            let token = jwt.assertion().sign(host)?;
            let mut request = request.clone();
            request
                .headers
                .set(jwt.header.clone(), jwt.header_value(&token));
            return send_plain(host, &request);
        }
        Some(other) => {
            let mut request = request.clone();
            other.apply_static(&mut request).map_err(step_error)?;
            return send_plain(host, &request);
        }
        None => return send_plain(host, request),
    };
    let (token, source) = oauth2::token(host, oauth, request.timeout)?;
    let reply = send_plain(host, &with_bearer(request, &token))?;
    if reply.status != 401 || source == TokenSource::Fetched {
        return Ok(reply);
    }
    host.log(
        Level::Info,
        "the API refused the cached OAuth2 token (401); fetching a new one",
    );
    oauth2::forget(host, oauth);
    let token = oauth2::fetch(host, oauth, request.timeout)?;
    send_plain(host, &with_bearer(request, &token))
}

/// Sends `request` as it is.
pub fn send_plain(host: &impl Host, request: &HttpRequest) -> Result<Reply, StepError> {
    host.send(&request.to_wit())
        .map(Reply::from)
        .map_err(|err| transport_error(request, &err))
}

fn with_bearer(request: &HttpRequest, token: &str) -> HttpRequest {
    let mut request = request.clone();
    request
        .headers
        .set(AUTHORIZATION, format!("Bearer {token}"));
    request
}

/// A request that got no response, as a [`StepError`]: connection failures and timeouts may
/// pass on another attempt; a denied host, a malformed request, an oversized body or a
/// redirect loop will not.
pub fn transport_error(request: &HttpRequest, error: &http::Error) -> StepError {
    let line = request.request_line();
    match error {
        http::Error::Connect(reason) => {
            transient_error(format!("{line}: cannot connect: {reason}"), None)
        }
        http::Error::Timeout(reason) => {
            transient_error(format!("{line}: timed out: {reason}"), None)
        }
        http::Error::Denied(reason) => step_error(format!("{line}: denied: {reason}")),
        http::Error::TooLarge(reason) => {
            step_error(format!("{line}: the response is too large: {reason}"))
        }
        http::Error::Invalid(reason) => step_error(format!("{line}: invalid request: {reason}")),
        http::Error::TooManyRedirects(reason) => {
            step_error(format!("{line}: too many redirects: {reason}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::web::oauth2::{ClientAuth, OAuth2, cache_key};
    use crate::web::testing::FakeHost;

    fn oauth() -> Auth {
        Auth::OAuth2(Box::new(OAuth2 {
            token_url: "http://auth/token".into(),
            grant: crate::web::oauth2::Grant::ClientCredentials,
            client_id: "app".into(),
            client_secret: "s".into(),
            assertion: None,
            scope: None,
            audience: None,
            client_auth: ClientAuth::Body,
        }))
    }

    fn token_body(token: &str) -> String {
        format!(r#"{{"access_token": "{token}", "expires_in": 3600}}"#)
    }

    fn authorization(host: &FakeHost, n: usize) -> Option<String> {
        host.request(n)?
            .headers
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value)
    }

    #[test]
    fn oauth_fetches_then_reuses_the_token() {
        let host = FakeHost::new();
        host.respond(
            200,
            &[("content-type", "application/json")],
            &token_body("t1"),
        )
        .respond(200, &[], "a")
        .respond(200, &[], "b");
        let request = HttpRequest::new("GET", "http://api/x");
        assert_eq!(send(&host, &request, Some(&oauth())).unwrap().status, 200);
        assert_eq!(send(&host, &request, Some(&oauth())).unwrap().status, 200);
        assert_eq!(host.sent_count(), 3);
        assert_eq!(host.request(0).unwrap().url, "http://auth/token");
        assert_eq!(authorization(&host, 1).as_deref(), Some("Bearer t1"));
        assert_eq!(authorization(&host, 2).as_deref(), Some("Bearer t1"));
    }

    #[test]
    fn a_401_with_a_cached_token_renews_it_once() {
        let host = FakeHost::new();
        let Auth::OAuth2(config) = oauth() else {
            unreachable!()
        };
        host.cache_set(&cache_key(&config), "stale", 60_000);
        host.respond(401, &[], "")
            .respond(
                200,
                &[("content-type", "application/json")],
                &token_body("fresh"),
            )
            .respond(200, &[], "ok");
        let reply = send(
            &host,
            &HttpRequest::new("GET", "http://api/x"),
            Some(&oauth()),
        )
        .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(authorization(&host, 0).as_deref(), Some("Bearer stale"));
        assert_eq!(host.request(1).unwrap().url, "http://auth/token");
        assert_eq!(authorization(&host, 2).as_deref(), Some("Bearer fresh"));
        assert_eq!(
            host.cache_get(&cache_key(&config)).as_deref(),
            Some("fresh")
        );
    }

    #[test]
    fn a_401_with_a_fresh_token_is_returned() {
        let host = FakeHost::new();
        host.respond(
            200,
            &[("content-type", "application/json")],
            &token_body("t"),
        )
        .respond(401, &[], "no");
        let reply = send(
            &host,
            &HttpRequest::new("GET", "http://api/x"),
            Some(&oauth()),
        )
        .unwrap();
        assert_eq!(reply.status, 401);
        assert_eq!(host.sent_count(), 2);
    }

    #[test]
    fn static_auth_is_applied() {
        let host = FakeHost::new();
        host.respond(200, &[], "");
        let auth = Auth::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        send(&host, &HttpRequest::new("GET", "http://api/x"), Some(&auth)).unwrap();
        assert_eq!(
            host.request(0).unwrap().basic_auth,
            Some(("u".into(), "p".into()))
        );
    }

    #[test]
    fn transport_errors_are_classified() {
        let request = HttpRequest::new("GET", "http://api/x");
        let err = transport_error(&request, &http::Error::Connect("refused".into()));
        assert!(err.transient);
        assert_eq!(err.message, "GET http://api/x: cannot connect: refused");
        assert!(transport_error(&request, &http::Error::Timeout("5s".into())).transient);
        for error in [
            http::Error::Denied("evil.example".into()),
            http::Error::TooLarge("over 10 MiB".into()),
            http::Error::Invalid("bad header".into()),
            http::Error::TooManyRedirects("10".into()),
        ] {
            assert!(!transport_error(&request, &error).transient);
        }
    }

    #[test]
    fn jwt_auth_signs_a_fresh_token_for_each_request() {
        let host = FakeHost::new();
        host.respond(200, &[], "").respond(200, &[], "");
        let auth: Auth = serde_json::from_str(
            r#"{"type": "jwt", "key": "__rb_secret.ab12cd34ef56.K__", "alg": "HS256",
                "claims": {"iss": "runbook"}, "header": "X-Token", "scheme": "JWT"}"#,
        )
        .unwrap();
        let request = HttpRequest::new("GET", "http://api/x");
        for n in 0..2 {
            send(&host, &request, Some(&auth)).unwrap();
            let sent = host.request(n).unwrap();
            let token = sent
                .headers
                .iter()
                .find(|(name, _)| name == "X-Token")
                .map(|(_, value)| value.clone());
            assert_eq!(
                token,
                Some(format!(
                    "JWT {}",
                    FakeHost::signed_token(&host.signed.borrow()[n])
                ))
            );
        }
        assert_eq!(host.signed.borrow().len(), 2);
    }
}
