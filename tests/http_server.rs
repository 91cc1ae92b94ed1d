//! A real HTTP server (axum) for end-to-end tests of the http and graphql steps.
//!
//! Tests are synchronous and drive the CLI, so the server runs on its own thread with its
//! own tokio runtime, binds `127.0.0.1:0` and serves until the [`TestServer`] is dropped.
//! Every request is recorded (before its route runs, so failing ones too).
//!
//! Routes:
//!
//! - `ANY /echo`, `ANY /echo/{*rest}`: 200 JSON `{method, path, query, headers, body, json,
//!   form, content_type}` describing the request.
//! - `GET /status/{code}[?retry_after=S]`: that status with `{"status": code}`.
//! - `ANY /flaky/{key}?fail=N&status=503&retry_after=S`: the first N requests for the key
//!   (default 1) answer `status`, later ones 200 `{"ok": true, "attempt": k}`.
//! - `GET /toggle/{key}`: 503 while [`TestServer::set_failing`] says so, else 200.
//! - `GET /redirect/{n}[?to=URL]`: a chain of 302s down to `/redirect/0` (or to `URL`).
//! - `GET /bytes/{n}`, `GET /slow/{ms}`, `GET /json`, `GET /text`, `POST /xml`.
//! - `POST /oauth/token`, `GET /oauth/protected`: OAuth2 client credentials (`cli`/`s3cret`),
//!   or the JWT-bearer grant with an ES256 assertion (`aud` = `runbook-tests`) that
//!   `tests/fixtures/jwt/ec-public.pem` verifies.
//! - `GET /jwt/protected`: 200 with the claims of a `Bearer` JWT (`aud` = `test-api`) that
//!   `tests/fixtures/jwt/rsa-public.pem` verifies (RS*/PS*), or [`JWT_HMAC_SECRET`] (HS256),
//!   and `ttl` = `exp - iat`; else 401.
//! - `GET /auth/basic` (`user:pa55`), `GET /auth/bearer` (`abc123`), `GET /auth/apikey`
//!   (`X-API-Key: k-1` or `?api_key=k-1`).
//! - `POST /jobs?polls=N&outcome=done|failed|never&header=NAME|none&code=C`, `GET /jobs/{id}`:
//!   async jobs. The job's id comes in `X-Invocation-Id` (or header `NAME`, or in no header
//!   with `none`) and its poll URL in `Location`; the status is `C` (default 202).
//! - `/graphql`: the schema of [`crate::graphql_server`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_graphql_axum::GraphQL;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::graphql_server;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The raw query string (without `?`), empty when there is none.
    pub query: String,
    /// In arrival order, names lowercase; repeated headers appear once per value.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// Milliseconds between the server's start and this request.
    pub elapsed_ms: f64,
}

impl Recorded {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The last value of field `name` of a form (`application/x-www-form-urlencoded`) body,
    /// decoded.
    pub fn form_param(&self, name: &str) -> Option<String> {
        parse_urlencoded(&self.body_text())
            .into_iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The last value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        parse_urlencoded(&self.query)
            .into_iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }
}

/// A running test server; dropping it stops the server and closes every connection.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Binds `127.0.0.1:0` and serves on a background thread until dropped.
    pub fn start() -> Self {
        // Binding here, on the caller's thread, makes the port known (and a bind failure
        // a panic in the test itself) before `start` returns.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("test server: cannot bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("test server: cannot make the listener non-blocking");
        let addr = listener
            .local_addr()
            .expect("test server: the listener has no local address");
        let shared = Arc::new(Shared::new());
        let app = router(Arc::clone(&shared));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("test-http-{}", addr.port()))
            .spawn(move || serve(listener, app, stopped))
            .expect("test server: cannot spawn its thread");
        Self {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// The requests whose path starts with `path_prefix`, in arrival order.
    pub fn requests_to(&self, path_prefix: &str) -> Vec<Recorded> {
        lock(&self.shared.requests)
            .iter()
            .filter(|request| request.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    /// How many requests went to paths starting with `path_prefix`.
    pub fn count(&self, path_prefix: &str) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|request| request.path.starts_with(path_prefix))
            .count()
    }

    /// Makes `/toggle/{key}` answer 503 (`true`) or 200 (`false`).
    pub fn set_failing(&self, key: &str, failing: bool) {
        let mut state = lock(&self.shared.state);
        if failing {
            state.failing.insert(key.to_owned());
        } else {
            state.failing.remove(key);
        }
    }

    /// Forgets the recorded requests only; route state (jobs, tokens, ...) stays.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Forgets the recorded requests and all route state: flaky counters, toggles, issued
    /// tokens, jobs, and GraphQL users (back to the seeded two). Token and job numbers keep
    /// counting, so an id from before the reset never names something created after it.
    pub fn reset(&self) {
        lock(&self.shared.requests).clear();
        {
            let mut state = lock(&self.shared.state);
            state.flaky.clear();
            state.failing.clear();
            state.tokens.clear();
            state.jobs.clear();
        }
        self.shared.users.reset();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server thread may already be gone (it only ends on this signal, or on
            // an accept error it has reported); either way there is nothing to undo.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server thread: serves until `stopped` fires, then drops the runtime, which cancels
/// in-flight requests (a `/slow` one must not hold up a test's teardown).
fn serve(listener: std::net::TcpListener, app: Router, stopped: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test server: cannot build a tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .expect("test server: cannot register the listener with tokio");
        tokio::select! {
            result = axum::serve(listener, app).into_future() => {
                if let Err(error) = result {
                    eprintln!("test server stopped: {error}");
                }
            }
            _ = stopped => {}
        }
    });
}

/// State shared by the handlers and the [`TestServer`] handle.
struct Shared {
    started: Instant,
    requests: Mutex<Vec<Recorded>>,
    state: Mutex<RouteState>,
    users: graphql_server::Users,
}

impl Shared {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            requests: Mutex::default(),
            state: Mutex::default(),
            users: graphql_server::Users::new(),
        }
    }
}

#[derive(Default)]
struct RouteState {
    /// Requests seen per `/flaky/{key}`.
    flaky: HashMap<String, u32>,
    /// `/toggle/{key}` keys that answer 503.
    failing: HashSet<String>,
    /// Access tokens `/oauth/protected` accepts.
    tokens: HashSet<String>,
    tokens_issued: u64,
    jobs: HashMap<String, Job>,
    jobs_created: u64,
}

struct Job {
    /// How many polls answer "running" before the outcome shows.
    polls: u32,
    outcome: Outcome,
    polled: u32,
}

#[derive(Clone, Copy)]
enum Outcome {
    Done,
    Failed,
    Never,
}

/// Locks `mutex` even if a handler panicked while holding it: the data is test bookkeeping,
/// and one failed handler should not turn every later request into a panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn router(shared: Arc<Shared>) -> Router {
    let schema = graphql_server::schema(shared.users.clone());
    Router::new()
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/status/{code}", get(status))
        .route("/flaky/{key}", any(flaky))
        .route("/toggle/{key}", get(toggle))
        .route("/redirect/{n}", get(redirect))
        .route("/bytes/{n}", get(bytes))
        .route("/slow/{ms}", get(slow))
        .route("/json", get(json_document))
        .route("/text", get(text))
        .route("/xml", post(xml))
        .route("/oauth/token", post(oauth_token))
        .route("/oauth/protected", get(oauth_protected))
        .route("/jwt/protected", get(jwt_protected))
        .route("/auth/basic", get(auth_basic))
        .route("/auth/bearer", get(auth_bearer))
        .route("/auth/apikey", get(auth_apikey))
        .route("/jobs", post(create_job))
        .route("/jobs/{id}", get(poll_job))
        .route_service("/graphql", GraphQL::new(schema))
        .fallback(not_found)
        // `layer` (unlike `route_layer`) also wraps 404s and 405s, so those are recorded too.
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), record))
        // Size-limit tests send large bodies; the recorder has already read them anyway.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

/// Records the request, then hands it on with its body restored.
async fn record(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(error) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("cannot read the body: {error}")}),
            );
        }
    };
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), lossy(value)))
            .collect(),
        body: body.to_vec(),
        at,
        elapsed_ms: at.duration_since(shared.started).as_secs_f64() * 1000.0,
    };
    lock(&shared.requests).push(recorded);
    next.run(Request::from_parts(parts, Body::from(body))).await
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn lossy(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// Adds `Retry-After: value` when `value` is given; a value that cannot be a header is a
/// mistake in the test, reported as a 400 rather than silently dropped.
fn with_retry_after(mut response: Response, value: Option<&str>) -> Response {
    if let Some(value) = value {
        match HeaderValue::from_str(value) {
            Ok(value) => {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Err(_) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "retry_after is not a valid header value"}),
                );
            }
        }
    }
    response
}

async fn not_found(uri: Uri) -> Response {
    reply(
        StatusCode::NOT_FOUND,
        json!({"error": "no such route", "path": uri.path()}),
    )
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).map(lossy);
    let mut header_map = Map::new();
    for name in headers.keys() {
        // Repeated headers are joined the way HTTP allows folding them.
        let joined = headers
            .get_all(name)
            .iter()
            .map(lossy)
            .collect::<Vec<_>>()
            .join(", ");
        header_map.insert(name.as_str().to_owned(), Value::String(joined));
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    // Any body that parses as JSON shows up here, whatever its content type, so tests can
    // check what was sent even when the product labels it differently.
    let parsed_json = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let is_form = content_type.as_deref().is_some_and(|content_type| {
        content_type
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let form = if is_form {
        pairs_to_object(parse_urlencoded(&text))
    } else {
        Value::Null
    };
    reply(
        StatusCode::OK,
        json!({
            "method": method.as_str(),
            "path": uri.path(),
            "query": pairs_to_object(parse_urlencoded(uri.query().unwrap_or_default())),
            "headers": header_map,
            "body": text,
            "json": parsed_json,
            "form": form,
            "content_type": content_type,
        }),
    )
}

#[derive(Deserialize)]
struct RetryAfterParams {
    retry_after: Option<String>,
}

async fn status(Path(code): Path<u16>, Query(params): Query<RetryAfterParams>) -> Response {
    let Ok(status) = StatusCode::from_u16(code) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("{code} is not a status code")}),
        );
    };
    with_retry_after(
        reply(status, json!({"status": code})),
        params.retry_after.as_deref(),
    )
}

#[derive(Deserialize)]
struct FlakyParams {
    fail: Option<u32>,
    status: Option<u16>,
    retry_after: Option<String>,
}

async fn flaky(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    Query(params): Query<FlakyParams>,
) -> Response {
    let attempt = {
        let mut state = lock(&shared.state);
        let seen = state.flaky.entry(key).or_default();
        *seen += 1;
        *seen
    };
    if attempt > params.fail.unwrap_or(1) {
        return reply(StatusCode::OK, json!({"ok": true, "attempt": attempt}));
    }
    let Ok(status) = StatusCode::from_u16(params.status.unwrap_or(503)) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "status is not a status code"}),
        );
    };
    with_retry_after(
        reply(status, json!({"ok": false, "attempt": attempt})),
        params.retry_after.as_deref(),
    )
}

async fn toggle(State(shared): State<Arc<Shared>>, Path(key): Path<String>) -> Response {
    if lock(&shared.state).failing.contains(&key) {
        reply(StatusCode::SERVICE_UNAVAILABLE, json!({"ok": false}))
    } else {
        reply(StatusCode::OK, json!({"ok": true}))
    }
}

#[derive(Deserialize)]
struct RedirectParams {
    to: Option<String>,
}

async fn redirect(
    Path(n): Path<u32>,
    RawQuery(raw_query): RawQuery,
    Query(params): Query<RedirectParams>,
) -> Response {
    if n == 0 {
        return reply(StatusCode::OK, json!({"redirected": true}));
    }
    let location = match params.to {
        Some(to) if n == 1 => to,
        // The query rides along unchanged so `to` reaches the last hop.
        _ => match raw_query {
            Some(query) => format!("/redirect/{}?{query}", n - 1),
            None => format!("/redirect/{}", n - 1),
        },
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "to is not a valid header value"}),
        );
    };
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn bytes(Path(n): Path<usize>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        vec![b'x'; n],
    )
        .into_response()
}

async fn slow(Path(ms): Path<u64>) -> Response {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    reply(StatusCode::OK, json!({"slept_ms": ms}))
}

async fn json_document() -> Response {
    (
        [(HeaderName::from_static("x-request-id"), "req-42")],
        Json(json!({
            "version": "1.2.3",
            "items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            "nested": {"token": "abc"},
        })),
    )
        .into_response()
}

async fn text() -> Response {
    "hello version v42 end".into_response()
}

async fn xml(headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/xml"));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The credentials after `scheme ` in the `Authorization` header (scheme in any case).
fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, credentials) = value.trim().split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then_some(credentials.trim())
}

/// `user:password` from a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = authorization(headers, "Basic")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn unauthorized(challenge: &'static str, error: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        Json(json!({"error": error})),
    )
        .into_response()
}

async fn oauth_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Parsed by hand, not with `Form`, so a client that forgets the content type still gets
    // an OAuth error body rather than axum's 415.
    let form = parse_urlencoded(&String::from_utf8_lossy(&body));
    let field = |name: &str| {
        form.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    match field("grant_type").as_deref() {
        Some("client_credentials") => {}
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let assertion = field("assertion").unwrap_or_default();
            let key = jsonwebtoken::DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes());
            return match key.and_then(|key| verify_jwt(&assertion, &key, "runbook-tests")) {
                Ok(claims) => issue_token(&shared, &claims["sub"]),
                Err(err) => reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "invalid_grant", "error_description": err.to_string()}),
                ),
            };
        }
        _ => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "unsupported_grant_type"}),
            );
        }
    }
    // RFC 6749 2.3.1: Basic auth is the preferred way; the form fields are the alternative.
    let (id, secret) = match basic_credentials(&headers) {
        Some((id, secret)) => (
            percent_decode(&id, false),
            Some(percent_decode(&secret, false)),
        ),
        None => (
            field("client_id").unwrap_or_default(),
            field("client_secret"),
        ),
    };
    if id != "cli" || secret.as_deref() != Some("s3cret") {
        return unauthorized("Basic realm=\"oauth\"", "invalid_client");
    }
    issue_token(&shared, &serde_json::Value::Null)
}

/// A new access token (`tok-N`), remembered for `/oauth/protected`, with the subject it was
/// issued to (when a JWT bearer grant named one) in the answer.
fn issue_token(shared: &Shared, subject: &serde_json::Value) -> Response {
    let token = {
        let mut state = lock(&shared.state);
        state.tokens_issued += 1;
        let token = format!("tok-{}", state.tokens_issued);
        state.tokens.insert(token.clone());
        token
    };
    let mut answer = json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600});
    if !subject.is_null() {
        answer["sub"] = subject.clone();
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response()
}

const RSA_PUBLIC: &str = include_str!("fixtures/jwt/rsa-public.pem");

/// The shared secret `/jwt/protected` verifies HS256 tokens with.
pub const JWT_HMAC_SECRET: &str = "a shared secret for HS256 tests only";
const EC_PUBLIC: &str = include_str!("fixtures/jwt/ec-public.pem");

/// The claims of `token` if `key` verifies it (its own algorithm, which the test keys fix)
/// and it is for `audience` and not expired.
fn verify_jwt(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    audience: &str,
) -> jsonwebtoken::errors::Result<serde_json::Value> {
    let algorithm = jsonwebtoken::decode_header(token)?.alg;
    let mut validation = jsonwebtoken::Validation::new(algorithm);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "aud"]);
    jsonwebtoken::decode::<serde_json::Value>(token, key, &validation).map(|data| data.claims)
}

async fn jwt_protected(headers: HeaderMap) -> Response {
    let Some(token) = authorization(&headers, "Bearer") else {
        return unauthorized("Bearer", "no token");
    };
    // The key follows the token's algorithm; each test key verifies only its own kind.
    let key = match jsonwebtoken::decode_header(token).map(|header| header.alg) {
        Ok(jsonwebtoken::Algorithm::HS256) => Ok(jsonwebtoken::DecodingKey::from_secret(
            JWT_HMAC_SECRET.as_bytes(),
        )),
        _ => jsonwebtoken::DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()),
    };
    match key.and_then(|key| verify_jwt(token, &key, "test-api")) {
        Ok(mut claims) => {
            let ttl = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
            claims["ttl"] = ttl.into();
            reply(StatusCode::OK, claims)
        }
        Err(err) => unauthorized("Bearer error=\"invalid_token\"", &err.to_string()),
    }
}

async fn oauth_protected(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match authorization(&headers, "Bearer") {
        Some(token) if lock(&shared.state).tokens.contains(token) => {
            reply(StatusCode::OK, json!({"ok": true, "token": token}))
        }
        _ => unauthorized("Bearer error=\"invalid_token\"", "invalid_token"),
    }
}

async fn auth_basic(headers: HeaderMap) -> Response {
    match basic_credentials(&headers) {
        Some((user, password)) if user == "user" && password == "pa55" => {
            reply(StatusCode::OK, json!({"user": user}))
        }
        _ => unauthorized("Basic realm=\"test\"", "unauthorized"),
    }
}

async fn auth_bearer(headers: HeaderMap) -> Response {
    if authorization(&headers, "Bearer") == Some("abc123") {
        reply(StatusCode::OK, json!({"ok": true}))
    } else {
        unauthorized("Bearer realm=\"test\"", "unauthorized")
    }
}

#[derive(Deserialize)]
struct ApiKeyParams {
    api_key: Option<String>,
}

async fn auth_apikey(headers: HeaderMap, Query(params): Query<ApiKeyParams>) -> Response {
    let in_header = headers
        .get("x-api-key")
        .is_some_and(|value| value.as_bytes() == b"k-1");
    if in_header || params.api_key.as_deref() == Some("k-1") {
        reply(StatusCode::OK, json!({"ok": true}))
    } else {
        reply(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}))
    }
}

#[derive(Deserialize)]
struct JobParams {
    polls: Option<u32>,
    outcome: Option<String>,
    /// The header that carries the job's id; `none` for no header.
    header: Option<String>,
    code: Option<u16>,
}

async fn create_job(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<JobParams>,
) -> Response {
    let outcome = match params.outcome.as_deref().unwrap_or("done") {
        "done" => Outcome::Done,
        "failed" => Outcome::Failed,
        "never" => Outcome::Never,
        other => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("outcome {other:?} is not done, failed or never")}),
            );
        }
    };
    let Ok(status) = StatusCode::from_u16(params.code.unwrap_or(202)) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "code is not a status code"}),
        );
    };
    let id_header = match params.header.as_deref() {
        None => Some(HeaderName::from_static("x-invocation-id")),
        Some("none") => None,
        Some(name) => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "header is not a header name"}),
                );
            }
        },
    };
    let id = {
        let mut state = lock(&shared.state);
        state.jobs_created += 1;
        let id = format!("job-{}", state.jobs_created);
        state.jobs.insert(
            id.clone(),
            Job {
                polls: params.polls.unwrap_or(0),
                outcome,
                polled: 0,
            },
        );
        id
    };
    let mut response = (
        status,
        [(header::LOCATION, format!("/jobs/{id}"))],
        Json(json!({"id": id})),
    )
        .into_response();
    if let Some(name) = id_header {
        let value = HeaderValue::from_str(&id).expect("a job id (`job-N`) is a header value");
        response.headers_mut().insert(name, value);
    }
    response
}

async fn poll_job(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let (polled, polls, outcome) = {
        let mut state = lock(&shared.state);
        let Some(job) = state.jobs.get_mut(&id) else {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"error": "no such job", "id": id}),
            );
        };
        job.polled += 1;
        (job.polled, job.polls, job.outcome)
    };
    let body = match outcome {
        _ if polled <= polls => json!({"id": id, "state": "running"}),
        Outcome::Never => json!({"id": id, "state": "running"}),
        Outcome::Done => json!({"id": id, "state": "done", "result": {"value": 42}}),
        Outcome::Failed => json!({"id": id, "state": "failed", "error": "disk full"}),
    };
    reply(StatusCode::OK, body)
}

/// `application/x-www-form-urlencoded` pairs (also query strings), decoded, in order.
fn parse_urlencoded(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}

/// Percent-decodes `input`; `plus_is_space` for form encoding. Malformed escapes stay as
/// they are, the way lenient servers treat them.
fn percent_decode(input: &str, plus_is_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let escaped = if byte == b'%' {
            escaped_byte(bytes.get(index + 1..index + 3))
        } else {
            None
        };
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                index += 3;
            }
            None => {
                out.push(if plus_is_space && byte == b'+' {
                    b' '
                } else {
                    byte
                });
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte that two hex digits (the ones after a `%`) stand for.
fn escaped_byte(digits: Option<&[u8]>) -> Option<u8> {
    let digits = std::str::from_utf8(digits?).ok()?;
    // `from_str_radix` alone would accept a sign ("+f"), which is no escape.
    if !digits.bytes().all(|digit| digit.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(digits, 16).ok()
}

/// Pairs as a JSON object; a repeated key keeps its last value.
fn pairs_to_object(pairs: Vec<(String, String)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key, Value::String(value)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// A response as the raw client read it.
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&self.body)))
        }
    }

    /// One HTTP/1.1 request on a fresh connection (`Connection: close`, so the response
    /// ends where the stream does).
    fn send(
        server: &TestServer,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            server.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let split = raw
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .unwrap();
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let mut reply = Reply {
            status: status.parse().unwrap(),
            headers,
            body: raw[split + 4..].to_vec(),
        };
        if reply
            .header("transfer-encoding")
            .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
        {
            reply.body = dechunk(&reply.body);
        }
        reply
    }

    fn dechunk(mut raw: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = raw.windows(2).position(|window| window == b"\r\n").unwrap();
            let size = std::str::from_utf8(&raw[..line_end]).unwrap();
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                return body;
            }
            let start = line_end + 2;
            body.extend_from_slice(&raw[start..start + size]);
            raw = &raw[start + size + 2..];
        }
    }

    fn get(server: &TestServer, target: &str) -> Reply {
        send(server, "GET", target, &[], b"")
    }

    fn graphql(server: &TestServer, query: &str) -> Value {
        let body = json!({"query": query}).to_string();
        let reply = send(
            server,
            "POST",
            "/graphql",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(reply.status, 200);
        reply.json()
    }

    #[test]
    fn echo_describes_and_records_the_request() {
        let server = TestServer::start();
        assert!(server.url().starts_with("http://127.0.0.1:"));
        let reply = send(
            &server,
            "PUT",
            "/echo/a/b?x=1&y=two%20words",
            &[("Content-Type", "application/json"), ("X-Custom", "v")],
            br#"{"a": 1}"#,
        );
        assert_eq!(reply.status, 200);
        let echoed = reply.json();
        assert_eq!(echoed["method"], "PUT");
        assert_eq!(echoed["path"], "/echo/a/b");
        assert_eq!(echoed["query"], json!({"x": "1", "y": "two words"}));
        assert_eq!(echoed["headers"]["x-custom"], "v");
        assert_eq!(echoed["body"], r#"{"a": 1}"#);
        assert_eq!(echoed["json"], json!({"a": 1}));
        assert_eq!(echoed["form"], Value::Null);
        assert_eq!(echoed["content_type"], "application/json");

        let form = send(
            &server,
            "POST",
            "/echo",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"name=a+b&sym=%26%3D",
        )
        .json();
        assert_eq!(form["form"], json!({"name": "a b", "sym": "&="}));
        assert_eq!(form["json"], Value::Null);

        let recorded = server.requests();
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0].method, "PUT");
        assert_eq!(recorded[0].path, "/echo/a/b");
        assert_eq!(recorded[0].query, "x=1&y=two%20words");
        assert_eq!(recorded[0].query_param("y").as_deref(), Some("two words"));
        assert_eq!(recorded[0].header("X-CUSTOM"), Some("v"));
        assert_eq!(recorded[0].body_text(), r#"{"a": 1}"#);
        assert_eq!(recorded[0].body_json(), Some(json!({"a": 1})));
        assert!(recorded[0].at <= recorded[1].at);
        assert!(recorded[0].elapsed_ms >= 0.0);
        assert_eq!(server.count("/echo/a"), 1);
        assert_eq!(server.requests_to("/echo").len(), 2);

        // Unknown routes answer 404 and are still recorded.
        assert_eq!(get(&server, "/nowhere").status, 404);
        assert_eq!(server.count("/nowhere"), 1);
        server.clear_requests();
        assert!(server.requests().is_empty());
    }

    #[test]
    fn flaky_fails_then_succeeds_per_key() {
        let server = TestServer::start();
        let target = "/flaky/k?fail=2&status=429&retry_after=1";
        for attempt in 1..=2 {
            let reply = send(&server, "POST", target, &[], b"");
            assert_eq!(reply.status, 429);
            assert_eq!(reply.header("retry-after"), Some("1"));
            assert_eq!(reply.json()["attempt"], attempt);
        }
        let reply = send(&server, "POST", target, &[], b"");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json(), json!({"ok": true, "attempt": 3}));
        assert_eq!(server.count("/flaky/k"), 3);

        // Another key has its own count; the default is one 503.
        assert_eq!(get(&server, "/flaky/other").status, 503);
        assert_eq!(get(&server, "/flaky/other").status, 200);

        server.reset();
        assert_eq!(server.count("/flaky"), 0);
        assert_eq!(get(&server, "/flaky/other").status, 503);
    }

    #[test]
    fn redirects_count_down_to_zero_or_leave() {
        let server = TestServer::start();
        let done = get(&server, "/redirect/0");
        assert_eq!(done.status, 200);
        assert_eq!(done.json(), json!({"redirected": true}));

        let hop = get(&server, "/redirect/2");
        assert_eq!(hop.status, 302);
        assert_eq!(hop.header("location"), Some("/redirect/1"));

        let away = "http://localhost:1/elsewhere";
        let hop = get(&server, &format!("/redirect/2?to={away}"));
        assert_eq!(
            hop.header("location"),
            Some(&*format!("/redirect/1?to={away}"))
        );
        let last = get(&server, &format!("/redirect/1?to={away}"));
        assert_eq!(last.status, 302);
        assert_eq!(last.header("location"), Some(away));
    }

    #[test]
    fn jobs_run_then_finish_fail_or_never_end() {
        let server = TestServer::start();
        let created = send(&server, "POST", "/jobs?polls=2&outcome=done", &[], b"");
        assert_eq!(created.status, 202);
        assert_eq!(created.header("x-invocation-id"), Some("job-1"));
        assert_eq!(created.json(), json!({"id": "job-1"}));
        for _ in 0..2 {
            assert_eq!(
                get(&server, "/jobs/job-1").json(),
                json!({"id": "job-1", "state": "running"})
            );
        }
        assert_eq!(
            get(&server, "/jobs/job-1").json(),
            json!({"id": "job-1", "state": "done", "result": {"value": 42}})
        );

        let failed = send(&server, "POST", "/jobs?polls=0&outcome=failed", &[], b"");
        assert_eq!(failed.header("x-invocation-id"), Some("job-2"));
        assert_eq!(
            get(&server, "/jobs/job-2").json(),
            json!({"id": "job-2", "state": "failed", "error": "disk full"})
        );

        send(&server, "POST", "/jobs?outcome=never", &[], b"");
        for _ in 0..5 {
            assert_eq!(get(&server, "/jobs/job-3").json()["state"], "running");
        }

        let custom = send(&server, "POST", "/jobs?header=X-Job-Ref&code=200", &[], b"");
        assert_eq!(custom.status, 200);
        assert_eq!(custom.header("x-job-ref"), Some("job-4"));
        assert_eq!(custom.header("x-invocation-id"), None);
        let bare = send(&server, "POST", "/jobs?header=none", &[], b"");
        assert_eq!(bare.status, 202);
        assert_eq!(bare.header("x-invocation-id"), None);
        assert_eq!(bare.header("location"), Some("/jobs/job-5"));

        assert_eq!(get(&server, "/jobs/job-99").status, 404);
        assert_eq!(
            send(&server, "POST", "/jobs?outcome=maybe", &[], b"").status,
            400
        );
    }

    #[test]
    fn graphql_answers_queries_errors_and_mutations() {
        let server = TestServer::start();
        assert_eq!(
            graphql(&server, r#"{ hello(name: "bob") }"#),
            json!({"data": {"hello": "hello bob"}})
        );
        assert_eq!(
            graphql(&server, r#"{ user(id: "2") { id name email } }"#)["data"]["user"],
            json!({"id": "2", "name": "grace", "email": "grace@example.com"})
        );
        assert_eq!(
            graphql(&server, r#"{ user(id: "9") { id } }"#)["data"]["user"],
            Value::Null
        );

        let secret = graphql(&server, "{ secret }");
        assert_eq!(secret["data"]["secret"], Value::Null);
        assert_eq!(secret["errors"][0]["message"], "not authorized");
        assert_eq!(secret["errors"][0]["path"], json!(["secret"]));

        let created = graphql(
            &server,
            r#"mutation { createUser(name: "linus") { id name } }"#,
        );
        assert_eq!(
            created["data"]["createUser"],
            json!({"id": "3", "name": "linus"})
        );
        assert_eq!(
            graphql(&server, r#"{ user(id: "3") { name } }"#)["data"]["user"]["name"],
            "linus"
        );
        assert_eq!(server.count("/graphql"), 6);

        server.reset();
        assert_eq!(
            graphql(&server, r#"{ user(id: "3") { name } }"#)["data"]["user"],
            Value::Null
        );
    }

    #[test]
    fn oauth_issues_tokens_that_the_protected_route_accepts() {
        let server = TestServer::start();
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let issued = send(
            &server,
            "POST",
            "/oauth/token",
            &form,
            b"grant_type=client_credentials&client_id=cli&client_secret=s3cret",
        );
        assert_eq!(issued.status, 200);
        assert_eq!(
            issued.json(),
            json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600})
        );

        let wrong = send(
            &server,
            "POST",
            "/oauth/token",
            &form,
            b"grant_type=client_credentials&client_id=cli&client_secret=nope",
        );
        assert_eq!(wrong.status, 401);
        assert_eq!(wrong.json(), json!({"error": "invalid_client"}));

        // "cli:s3cret" in Basic auth works as well.
        let basic = send(
            &server,
            "POST",
            "/oauth/token",
            &[form[0], ("Authorization", "Basic Y2xpOnMzY3JldA==")],
            b"grant_type=client_credentials",
        );
        assert_eq!(basic.json()["access_token"], "tok-2");

        let protected = send(
            &server,
            "GET",
            "/oauth/protected",
            &[("Authorization", "Bearer tok-1")],
            b"",
        );
        assert_eq!(protected.status, 200);
        assert_eq!(protected.json(), json!({"ok": true, "token": "tok-1"}));
        let forged = send(
            &server,
            "GET",
            "/oauth/protected",
            &[("Authorization", "Bearer tok-9")],
            b"",
        );
        assert_eq!(forged.status, 401);
        assert_eq!(get(&server, "/oauth/protected").status, 401);

        // A reset revokes every token, and numbering goes on.
        server.reset();
        let revoked = send(
            &server,
            "GET",
            "/oauth/protected",
            &[("Authorization", "Bearer tok-1")],
            b"",
        );
        assert_eq!(revoked.status, 401);
        let next = send(
            &server,
            "POST",
            "/oauth/token",
            &form,
            b"grant_type=client_credentials&client_id=cli&client_secret=s3cret",
        );
        assert_eq!(next.json()["access_token"], "tok-3");
    }

    #[test]
    fn small_routes_behave_as_documented() {
        let server = TestServer::start();

        let teapot = get(&server, "/status/418?retry_after=7");
        assert_eq!(teapot.status, 418);
        assert_eq!(teapot.header("retry-after"), Some("7"));
        assert_eq!(teapot.json(), json!({"status": 418}));
        assert_eq!(get(&server, "/status/204").status, 204);

        assert_eq!(get(&server, "/toggle/t").status, 200);
        server.set_failing("t", true);
        assert_eq!(get(&server, "/toggle/t").status, 503);
        server.set_failing("t", false);
        assert_eq!(get(&server, "/toggle/t").json(), json!({"ok": true}));

        let bytes = get(&server, "/bytes/1000");
        assert_eq!(
            bytes.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(bytes.body, vec![b'x'; 1000]);

        let started = Instant::now();
        assert_eq!(get(&server, "/slow/50").json(), json!({"slept_ms": 50}));
        assert!(started.elapsed() >= Duration::from_millis(50));

        let document = get(&server, "/json");
        assert_eq!(document.header("x-request-id"), Some("req-42"));
        assert_eq!(document.json()["items"][1]["name"], "b");
        assert_eq!(document.json()["nested"]["token"], "abc");

        let text = get(&server, "/text");
        assert!(
            text.header("content-type")
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(text.body, b"hello version v42 end");

        let xml = send(
            &server,
            "POST",
            "/xml",
            &[("Content-Type", "text/xml")],
            b"<a>1</a>",
        );
        assert_eq!(xml.status, 200);
        assert_eq!(xml.header("content-type"), Some("text/xml"));
        assert_eq!(xml.body, b"<a>1</a>");

        let basic = |value: &str| {
            send(
                &server,
                "GET",
                "/auth/basic",
                &[("Authorization", value)],
                b"",
            )
        };
        // "user:pa55" and "user:wrong".
        let good = basic("Basic dXNlcjpwYTU1");
        assert_eq!(good.status, 200);
        assert_eq!(good.json(), json!({"user": "user"}));
        let bad = basic("Basic dXNlcjp3cm9uZw==");
        assert_eq!(bad.status, 401);
        assert!(bad.header("www-authenticate").unwrap().starts_with("Basic"));

        let bearer = |value: &str| {
            send(
                &server,
                "GET",
                "/auth/bearer",
                &[("Authorization", value)],
                b"",
            )
            .status
        };
        assert_eq!(bearer("Bearer abc123"), 200);
        assert_eq!(bearer("Bearer abc124"), 401);

        let keyed = send(&server, "GET", "/auth/apikey", &[("X-API-Key", "k-1")], b"");
        assert_eq!(keyed.status, 200);
        assert_eq!(get(&server, "/auth/apikey?api_key=k-1").status, 200);
        assert_eq!(get(&server, "/auth/apikey?api_key=k-2").status, 401);
        assert_eq!(get(&server, "/auth/apikey").status, 401);
    }

    #[test]
    fn dropping_the_server_closes_the_port_even_mid_request() {
        let server = TestServer::start();
        let addr = server.addr;
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /slow/60000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        // Wait until the request is in, so the drop has an in-flight request to cut off.
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.count("/slow") == 0 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(TcpStream::connect(addr).is_err());
    }
}
