//! The `http` capability: requests made for plugins by the daemon's one shared reqwest client
//! (pooled keep-alive connections, HTTP/1.1 and HTTP/2, rustls), so consecutive steps reuse
//! connections. Redirects are followed here, not by reqwest, so that every hop is checked
//! against the hosts the plugin may reach; bodies are capped while they stream in; secrets
//! are put in on the way out and masked on the way back.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;
use url::Url;

use super::bindings::http::{Error as HttpError, Request, Response};
use super::secrets::{Encoding, SecretScope};

/// Response bodies larger than this fail the call unless the daemon config says otherwise.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 10 << 20;

/// Which hosts outbound requests may reach, from the daemon config.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Hosts the built-in plugins may reach; `None`: any.
    pub builtin_hosts: Option<Vec<String>>,
    pub max_response_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            builtin_hosts: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// Host patterns one plugin call may reach: `example.com` (any port), `example.com:8443`,
/// `*.example.com` (subdomains), or `*` (anything).
#[derive(Debug, Clone, Default)]
pub struct HostAllowlist {
    /// `None`: any host.
    patterns: Option<Vec<String>>,
}

impl HostAllowlist {
    pub fn any() -> Self {
        Self { patterns: None }
    }

    pub fn only(patterns: Vec<String>) -> Self {
        Self {
            patterns: Some(patterns),
        }
    }

    /// Nothing at all (calls that must not touch the world).
    pub fn none() -> Self {
        Self::only(Vec::new())
    }

    pub fn allows(&self, url: &Url) -> bool {
        let Some(patterns) = &self.patterns else {
            return true;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default();
        patterns.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            if pattern == "*" {
                return true;
            }
            let (pattern_host, pattern_port) = match pattern.rsplit_once(':') {
                Some((name, port_text)) if port_text.chars().all(|c| c.is_ascii_digit()) => {
                    (name.to_owned(), port_text.parse::<u16>().ok())
                }
                _ => (pattern.clone(), None),
            };
            let host_matches = match pattern_host.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == pattern_host,
            };
            host_matches && pattern_port.is_none_or(|wanted| Some(wanted) == port)
        })
    }
}

/// The shared client.
pub struct HttpClient {
    client: reqwest::Client,
    max_response_bytes: usize,
}

/// What one call may do with the client.
pub struct CallScope<'a> {
    pub allow: &'a HostAllowlist,
    pub secrets: &'a SecretScope,
    /// The step's deadline; no request outlives it.
    pub deadline: Option<Instant>,
    /// The step kind, for messages.
    pub kind: &'a str,
    /// Whether a redirect from https to http may be followed (the step's
    /// `allow_insecure_redirects`).
    pub insecure_redirects: bool,
}

/// Headers a request keeps when a redirect leaves its origin: what describes the request,
/// never what authenticates it. Everything else the step, its target's `headers` or its
/// `auth` added (API keys in any header, cookies, bearer tokens) stays with the origin it
/// was written for.
const HEADERS_KEPT_ACROSS_ORIGINS: [HeaderName; 4] = [
    reqwest::header::ACCEPT,
    reqwest::header::ACCEPT_LANGUAGE,
    reqwest::header::CONTENT_TYPE,
    reqwest::header::USER_AGENT,
];

impl HttpClient {
    pub fn new(settings: &HttpSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("runbookd/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            client,
            max_response_bytes: settings.max_response_bytes,
        })
    }

    /// Sends one request for a plugin, following redirects it allows.
    pub async fn send(
        &self,
        scope: &CallScope<'_>,
        request: Request,
    ) -> Result<Response, HttpError> {
        let secrets = scope.secrets;
        let started = Instant::now();
        let prepared = prepare(secrets, request)?;
        let mut method = prepared.method;
        let mut url = prepared.url;
        let mut headers = prepared.headers;
        let mut body = prepared.body;
        let mut redirects = 0;
        loop {
            if !scope.allow.allows(&url) {
                return Err(HttpError::Denied(format!(
                    "plugin `{kind}` may not reach {host}: it is not granted that host (`runbook plugin grant {kind} --host {host}`; for a built-in plugin, `[http] allowed_hosts` in the daemon config)",
                    kind = scope.kind,
                    host = host_label(&url)
                )));
            }
            let timeout = remaining(prepared.timeout, scope.deadline).ok_or_else(|| {
                HttpError::Timeout("the step's deadline passed before the request".into())
            })?;
            let mut builder = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .timeout(timeout);
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let response = builder
                .send()
                .await
                .map_err(|err| transport_error(secrets, &url, &err, timeout))?;
            let status = response.status();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            if status.is_redirection()
                && prepared.max_redirects > 0
                && let Some(location) = location
            {
                redirects += 1;
                if redirects > prepared.max_redirects {
                    return Err(HttpError::TooManyRedirects(format!(
                        "more than {} redirects, the last to {}",
                        prepared.max_redirects,
                        secrets.mask(&location)
                    )));
                }
                let next = redirect_target(&url, &location, scope.insecure_redirects, secrets)?;
                // As browsers do: 303 (and 301/302 after a POST) turn into a GET without a body.
                let to_get = status == reqwest::StatusCode::SEE_OTHER
                    || (method == reqwest::Method::POST && matches!(status.as_u16(), 301 | 302));
                if to_get {
                    method = reqwest::Method::GET;
                    body = None;
                    headers.remove(reqwest::header::CONTENT_TYPE);
                    headers.remove(reqwest::header::CONTENT_LENGTH);
                }
                headers = headers_for_redirect(headers, &url, &next);
                url = next;
                continue;
            }
            return self
                .read_response(response, secrets, &url, started, timeout)
                .await;
        }
    }

    async fn read_response(
        &self,
        mut response: reqwest::Response,
        secrets: &SecretScope,
        url: &Url,
        started: Instant,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let cap = self.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|length| length > cap as u64)
        {
            return Err(too_large(cap));
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    secrets.mask(&String::from_utf8_lossy(value.as_bytes())),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| transport_error(secrets, url, &err, timeout))?
        {
            if body.len() + chunk.len() > cap {
                return Err(too_large(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body: secrets.mask_bytes(body),
            url: secrets.mask(url.as_str()),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// Where a redirect from `current` to `location` goes, unless it may not be followed: a
/// redirect from https to http would send the rest of the exchange in clear text.
fn redirect_target(
    current: &Url,
    location: &str,
    insecure_ok: bool,
    secrets: &SecretScope,
) -> Result<Url, HttpError> {
    let next = current.join(location).map_err(|err| {
        HttpError::Invalid(format!(
            "redirect to an invalid URL `{}`: {err}",
            secrets.mask(location)
        ))
    })?;
    if current.scheme() == "https" && next.scheme() == "http" && !insecure_ok {
        return Err(HttpError::Denied(format!(
            "refused a redirect from https to http ({}); set `allow_insecure_redirects = true` on the step to follow it",
            secrets.mask(next.as_str())
        )));
    }
    Ok(next)
}

/// The headers a redirect from `current` to `next` carries: all of them within one origin;
/// across origins only [`HEADERS_KEPT_ACROSS_ORIGINS`], because credentials are for the
/// origin they were written for.
fn headers_for_redirect(headers: HeaderMap, current: &Url, next: &Url) -> HeaderMap {
    if next.origin() == current.origin() {
        return headers;
    }
    headers
        .iter()
        .filter(|(name, _)| HEADERS_KEPT_ACROSS_ORIGINS.contains(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// A request with its secrets in place, checked.
struct Prepared {
    method: reqwest::Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
    max_redirects: u32,
}

fn prepare(secrets: &SecretScope, request: Request) -> Result<Prepared, HttpError> {
    let secret_error = |err: String| HttpError::Invalid(err);
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| HttpError::Invalid(format!("invalid method `{}`", request.method)))?;
    let url_text = secrets
        .substitute(&request.url, Encoding::Url)
        .map_err(secret_error)?;
    let url = Url::parse(&url_text).map_err(|err| {
        HttpError::Invalid(format!(
            "invalid URL `{}`: {err}",
            secrets.mask_placeholders(&request.url)
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HttpError::Invalid(format!(
            "unsupported URL scheme `{}`; use http or https",
            url.scheme()
        )));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::Invalid(format!("invalid header name `{name}`")))?;
        let value = secrets
            .substitute(value, Encoding::Raw)
            .map_err(secret_error)?;
        let value = HeaderValue::from_str(&value).map_err(|_| {
            HttpError::Invalid(format!(
                "invalid value for header `{name}` (control characters or a line break)"
            ))
        })?;
        headers.append(name, value);
    }
    if let Some((user, password)) = &request.basic_auth {
        use base64::Engine as _;
        let holds_secret = [user, password]
            .iter()
            .any(|text| text.contains(super::secrets::PLACEHOLDER_PREFIX));
        let user = secrets
            .substitute(user, Encoding::Raw)
            .map_err(secret_error)?;
        let password = secrets
            .substitute(password, Encoding::Raw)
            .map_err(secret_error)?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        if holds_secret {
            // A server that echoes the header must not show the pair in another form.
            secrets.remember_derived(&token);
        }
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| HttpError::Invalid("invalid basic credentials".into()))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body_encoding = if content_type.contains("json") {
        Encoding::Json
    } else if content_type.contains("x-www-form-urlencoded") {
        Encoding::Url
    } else {
        Encoding::Raw
    };
    let body = request
        .body
        .map(|body| secrets.substitute_bytes(body, body_encoding))
        .transpose()
        .map_err(secret_error)?;
    Ok(Prepared {
        method,
        url,
        headers,
        body,
        timeout: request.timeout_ms.map(Duration::from_millis),
        max_redirects: request.max_redirects,
    })
}

/// The time a request may take: its own timeout, bounded by the step's deadline. `None` when
/// the deadline has passed.
fn remaining(own: Option<Duration>, deadline: Option<Instant>) -> Option<Duration> {
    let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
    if left.is_some_and(|left| left.is_zero()) {
        return None;
    }
    Some(match (own, left) {
        (Some(own), Some(left)) => own.min(left),
        (Some(own), None) => own,
        (None, Some(left)) => left,
        // Bounded anyway by the plugin call's wall clock.
        (None, None) => Duration::from_secs(3600),
    })
}

fn transport_error(
    secrets: &SecretScope,
    url: &Url,
    err: &reqwest::Error,
    timeout: Duration,
) -> HttpError {
    let target = secrets.mask(url.as_str());
    // reqwest's message repeats the URL, which may hold a secret: take the chain without it.
    let mut detail = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(cause) = source {
        if !detail.is_empty() {
            detail.push_str(": ");
        }
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    let detail = secrets.mask(&detail);
    if err.is_timeout() {
        HttpError::Timeout(format!(
            "{target}: no complete answer within {}",
            humantime::format_duration(timeout)
        ))
    } else if err.is_connect() {
        HttpError::Connect(format!("{target}: cannot connect: {detail}"))
    } else if err.is_builder() {
        HttpError::Invalid(format!("{target}: {detail}"))
    } else {
        HttpError::Connect(format!("{target}: {detail}"))
    }
}

fn too_large(cap: usize) -> HttpError {
    HttpError::TooLarge(format!(
        "the response body is larger than the daemon's cap of {} bytes (http.max_response_bytes)",
        cap
    ))
}

fn host_label(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => url.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URL")
    }

    #[test]
    fn a_redirect_from_https_to_http_is_refused_unless_the_step_allows_it() {
        let secrets = SecretScope::default();
        let from = url("https://api.example.com/start");
        let refused = redirect_target(&from, "http://api.example.com/next", false, &secrets)
            .expect_err("a downgrade is refused");
        assert!(
            matches!(&refused, HttpError::Denied(message) if message.contains("allow_insecure_redirects")),
            "{refused:?}"
        );
        assert!(redirect_target(&from, "http://api.example.com/next", true, &secrets).is_ok());
        assert!(redirect_target(&from, "/next", false, &secrets).is_ok());
        let plain = url("http://api.example.com/start");
        assert!(redirect_target(&plain, "http://other.example.com/", false, &secrets).is_ok());
    }

    #[test]
    fn a_redirect_to_another_origin_keeps_no_credential_header() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer t"),
            ("x-api-key", "k-1"),
            ("cookie", "session=1"),
            ("x-custom-token", "c"),
            ("accept", "application/json"),
            ("content-type", "application/json"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let from = url("https://api.example.com/a");
        let same = headers_for_redirect(headers.clone(), &from, &url("https://api.example.com/b"));
        assert_eq!(same.len(), 6, "within one origin every header goes along");
        for other in [
            "https://evil.example.com/b",
            "http://api.example.com/b",
            "https://api.example.com:8443/b",
        ] {
            let kept = headers_for_redirect(headers.clone(), &from, &url(other));
            let names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
            assert_eq!(names, ["accept", "content-type"], "to {other}");
        }
    }

    #[test]
    fn allowlist_patterns() {
        let allow = HostAllowlist::only(vec![
            "api.example.com".into(),
            "*.internal".into(),
            "127.0.0.1:8080".into(),
        ]);
        assert!(allow.allows(&url("https://api.example.com/x")));
        assert!(allow.allows(&url("http://API.example.com:9000/x")));
        assert!(allow.allows(&url("http://db.internal/x")));
        assert!(!allow.allows(&url("http://internal/x")));
        assert!(allow.allows(&url("http://127.0.0.1:8080/")));
        assert!(!allow.allows(&url("http://127.0.0.1:8081/")));
        assert!(!allow.allows(&url("http://evil.example.com/")));
        assert!(HostAllowlist::any().allows(&url("http://anything/")));
        assert!(!HostAllowlist::none().allows(&url("http://anything/")));
    }

    #[test]
    fn deadline_bounds_the_request() {
        let soon = Instant::now() + Duration::from_millis(500);
        let bounded = remaining(Some(Duration::from_secs(30)), Some(soon)).expect("time left");
        assert!(bounded <= Duration::from_millis(500));
        assert_eq!(
            remaining(Some(Duration::from_secs(1)), None),
            Some(Duration::from_secs(1))
        );
        assert_eq!(remaining(None, Some(Instant::now())), None);
    }
}
