//! The `with` fields every web step shares (destination, headers, auth, timeout,
//! idempotency key), checked together and assembled into the base of its request.

use std::collections::BTreeMap;

use super::auth::{Auth, check_auth_headers, effective_auth};
use super::check::Checks;
use super::request::{Headers, HttpRequest, IDEMPOTENCY_HEADER, IdempotencyKey, check_headers};
use super::target::Destination;
use crate::runbook::plugin::types::StepContext;

/// The shared fields, borrowed from a step's own config type.
#[derive(Debug, Clone, Copy)]
pub struct RequestFields<'a> {
    /// Where the request goes (`url`/`endpoint`, or `target` + `path`).
    pub destination: Destination<'a>,
    /// The step's headers (they override the target's).
    pub headers: &'a BTreeMap<String, String>,
    /// The step's auth (it replaces the target's).
    pub auth: Option<&'a Auth>,
    /// The step's per-request timeout, as written.
    pub timeout: Option<&'a str>,
    /// The step's `idempotency_key`.
    pub idempotency_key: &'a IdempotencyKey,
}

/// The base of a step's request.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseRequest {
    /// Method and effective URL; headers: the target's, then the step's, then the
    /// idempotency key (unless the step's headers set one); the timeout (the step's, else
    /// the target's).
    pub request: HttpRequest,
    /// The auth to send with: the step's, else the target's (see [`effective_auth`]).
    pub auth: Option<Auth>,
}

impl RequestFields<'_> {
    /// Checks every shared field; at run time (with a context, and a method that passed
    /// its own check) returns the base request.
    pub fn build(
        &self,
        method: Option<String>,
        checks: &mut Checks,
        ctx: Option<&StepContext>,
    ) -> Option<BaseRequest> {
        let destination = self.destination.resolve(checks);
        let step_headers = check_headers(checks, "headers", self.headers);
        check_auth_headers(checks, self.auth, &step_headers, "headers");
        if let Some(auth) = self.auth {
            auth.check("auth", checks);
        }
        let timeout = self
            .timeout
            .and_then(|timeout| checks.duration("timeout", timeout));
        if let IdempotencyKey::Custom(key) = self.idempotency_key
            && (key.trim().is_empty() || key.contains(['\r', '\n']))
        {
            checks.push(
                "idempotency_key",
                "must be a one-line key, `true` or `false`",
            );
        }

        // The rest needs rendered values and the resolved target.
        let ctx = ctx?;
        let (url, target) = destination?;
        let method = method?;
        let target_auth = target.and_then(|target| target.auth.as_ref());
        if let Some(auth) = target_auth {
            auth.check("target.auth", checks);
        }
        let timeout = timeout.or_else(|| {
            let text = target?.timeout.as_deref()?;
            checks.duration("target.timeout", text)
        });
        let mut headers = Headers::new();
        if let Some(target) = target {
            headers.extend_override(&target.headers);
        }
        let auth = effective_auth(self.auth, target_auth, &step_headers).cloned();
        for (name, value) in step_headers.iter() {
            headers.set(name, value);
        }
        if let Some(key) = self.idempotency_key.value(ctx)
            && !headers.contains(IDEMPOTENCY_HEADER)
        {
            headers.set(IDEMPOTENCY_HEADER, key);
        }
        let mut request = HttpRequest::new(method, url);
        request.headers = headers;
        request.timeout = timeout;
        Some(BaseRequest { request, auth })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::web::check::Phase;
    use crate::web::target::{Target, TargetRef};
    use crate::web::testing::step_context;

    fn ctx() -> StepContext {
        step_context("R", "s", 3)
    }

    fn target() -> TargetRef {
        TargetRef::Resolved(Target {
            name: "api".into(),
            url: "http://api:8080/v1".into(),
            headers: BTreeMap::from([
                ("Accept".to_owned(), "text/plain".to_owned()),
                ("X-Env".to_owned(), "staging".to_owned()),
            ]),
            auth: Some(Auth::Bearer {
                token: "target".into(),
            }),
            timeout: Some("5s".into()),
        })
    }

    fn fields<'a>(
        target: &'a TargetRef,
        headers: &'a BTreeMap<String, String>,
        key: &'a IdempotencyKey,
    ) -> RequestFields<'a> {
        RequestFields {
            destination: Destination {
                url_field: "url",
                url: None,
                target: Some(target),
                path: Some("/orders"),
            },
            headers,
            auth: None,
            timeout: None,
            idempotency_key: key,
        }
    }

    #[test]
    fn target_defaults_then_step_values() {
        let target = target();
        let headers = BTreeMap::from([("accept".to_owned(), "application/json".to_owned())]);
        let key = IdempotencyKey::Step;
        let mut checks = Checks::new(Phase::Run);
        let base = fields(&target, &headers, &key)
            .build(Some("GET".into()), &mut checks, Some(&ctx()))
            .unwrap();
        assert!(checks.is_ok());
        assert_eq!(base.request.url, "http://api:8080/v1/orders");
        assert_eq!(
            base.request.headers.iter().collect::<Vec<_>>(),
            [
                ("accept", "application/json"),
                ("X-Env", "staging"),
                ("Idempotency-Key", "R-s")
            ]
        );
        assert_eq!(base.request.timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            base.auth,
            Some(Auth::Bearer {
                token: "target".into()
            })
        );
    }

    #[test]
    fn a_step_authorization_header_beats_the_target_auth() {
        let target = target();
        let headers = BTreeMap::from([("Authorization".to_owned(), "Token x".to_owned())]);
        let key = IdempotencyKey::Off;
        let mut checks = Checks::new(Phase::Run);
        let base = fields(&target, &headers, &key)
            .build(Some("GET".into()), &mut checks, Some(&ctx()))
            .unwrap();
        assert_eq!(base.auth, None);
        assert_eq!(base.request.headers.get("authorization"), Some("Token x"));
        assert!(!base.request.headers.contains("idempotency-key"));
    }

    #[test]
    fn validation_builds_nothing() {
        let target = TargetRef::Name("api".into());
        let headers = BTreeMap::new();
        let key = IdempotencyKey::Custom(" ".into());
        let mut checks = Checks::new(Phase::Validate);
        assert!(
            fields(&target, &headers, &key)
                .build(Some("GET".into()), &mut checks, None)
                .is_none()
        );
        assert_eq!(checks.into_errors()[0].path, "idempotency_key");
    }
}
