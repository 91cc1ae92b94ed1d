//! HTTP steps end to end against a real HTTP server started by the test: methods and bodies,
//! every auth kind, captures feeding later steps, expectations, redirects, the size cap,
//! timeouts, targets and secrets.

use runbook_e2e::http_server::TestServer;
use runbook_e2e::{Daemon, step, step_status};
use serde_json::Value;

/// Runs `steps` (TOML `[[steps]]` tables, `{url}` replaced by the server's) as one runbook
/// and returns the finished run.
fn run_steps(server: &TestServer, config: &str, steps: &str) -> (Daemon, Value) {
    let runbook = steps.replace("{url}", &server.url());
    let daemon = Daemon::start(&[("http.toml", &runbook)], config);
    let run = daemon.run_to_end("http", &[]);
    (daemon, run)
}

fn error_of(run: &Value, id: &str) -> String {
    step(run, id)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn every_method_and_body_kind_reaches_the_server_as_written() {
    let server = TestServer::start();
    let (_daemon, run) = run_steps(
        &server,
        "",
        r#"
max_parallel = 1

[[steps]]
id = "get"
uses = "http"
with = { url = "{url}/echo/get", query = { q = "a b", n = 2 }, headers = { X-Trace = "t-1" } }

[[steps]]
id = "json"
uses = "http"
needs = ["get"]
with = { method = "POST", url = "{url}/echo/json", json = { name = "ada", tags = ["x", "y"] } }

[[steps]]
id = "form"
uses = "http"
needs = ["json"]
with = { method = "PUT", url = "{url}/echo/form", form = { a = "1", b = "two words" } }

[[steps]]
id = "text"
uses = "http"
needs = ["form"]
with = { method = "PATCH", url = "{url}/echo/text", text = "plain body" }

[[steps]]
id = "bytes"
uses = "http"
needs = ["text"]
with = { method = "POST", url = "{url}/echo/bytes", base64 = "AAEC/w==" }

[[steps]]
id = "xml"
uses = "http"
needs = ["bytes"]
with = { method = "POST", url = "{url}/xml", text = "<a><b>1</b></a>", content_type = "application/xml" }

[[steps]]
id = "delete"
uses = "http"
needs = ["xml"]
with = { method = "DELETE", url = "{url}/echo/item/7", idempotency_key = false }

[[steps]]
id = "head"
uses = "http"
needs = ["delete"]
with = { method = "HEAD", url = "{url}/echo/head" }

[[steps]]
id = "options"
uses = "http"
needs = ["head"]
with = { method = "OPTIONS", url = "{url}/echo/options" }

[[steps]]
id = "purge"
uses = "http"
needs = ["options"]
with = { method = "purge", url = "{url}/echo/purge" }
"#,
    );
    assert_eq!(run["status"], "completed", "{run:#}");
    let requests = server.requests();
    let by_path = |path: &str| {
        requests
            .iter()
            .find(|request| request.path == path)
            .unwrap_or_else(|| panic!("no request to {path}: {requests:#?}"))
    };

    let get = by_path("/echo/get");
    assert_eq!(get.method, "GET");
    assert_eq!(get.query_param("q").as_deref(), Some("a b"));
    assert_eq!(get.query_param("n").as_deref(), Some("2"));
    assert_eq!(get.header("x-trace"), Some("t-1"));
    let run_id = run["id"].as_str().unwrap();
    assert_eq!(
        get.header("idempotency-key"),
        Some(format!("{run_id}-get").as_str()),
        "every request carries the step's idempotency key"
    );
    assert_eq!(step(&run, "get")["output"]["status"], 200);
    assert_eq!(step(&run, "get")["output"]["body"]["query"]["q"], "a b");

    let json = by_path("/echo/json");
    assert_eq!(json.method, "POST");
    assert!(
        json.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "name": "ada", "tags": ["x", "y"] })
    );

    let form = by_path("/echo/form");
    assert_eq!(form.method, "PUT");
    assert_eq!(
        form.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(form.body_text(), "a=1&b=two+words");

    let text = by_path("/echo/text");
    assert_eq!(text.method, "PATCH");
    assert!(
        text.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(text.body_text(), "plain body");

    let bytes = by_path("/echo/bytes");
    assert_eq!(bytes.body, vec![0u8, 1, 2, 255]);
    assert_eq!(
        bytes.header("content-type"),
        Some("application/octet-stream")
    );

    let xml = by_path("/xml");
    assert_eq!(xml.header("content-type"), Some("application/xml"));
    assert_eq!(step(&run, "xml")["output"]["body"], "<a><b>1</b></a>");

    let delete = by_path("/echo/item/7");
    assert_eq!(delete.method, "DELETE");
    assert_eq!(
        delete.header("idempotency-key"),
        None,
        "turned off by the step"
    );

    let head = by_path("/echo/head");
    assert_eq!(head.method, "HEAD");
    let head_output = &step(&run, "head")["output"];
    assert_eq!(head_output["status"], 200, "{head_output:#}");
    assert_eq!(
        head_output["headers"]["content-type"], "application/json",
        "a HEAD answer keeps its headers: {head_output:#}"
    );
    assert_eq!(
        head_output["body"], "",
        "a HEAD answer has no body, whatever its type says: {head_output:#}"
    );

    let options = by_path("/echo/options");
    assert_eq!(options.method, "OPTIONS");
    assert_eq!(step(&run, "options")["output"]["body"]["method"], "OPTIONS");

    let purge = by_path("/echo/purge");
    assert_eq!(purge.method, "PURGE", "any method token, sent upper case");
    assert_eq!(
        requests.len(),
        10,
        "one request per step, no more: {requests:#?}"
    );
}

#[test]
fn each_auth_kind_and_one_oauth2_token_for_many_steps() {
    let server = TestServer::start();
    let (_daemon, run) = run_steps(
        &server,
        "",
        r#"
[targets.oauth]
url = "{url}"
auth = { type = "oauth2", token_url = "{url}/oauth/token", client_id = "cli", client_secret = "s3cret" }

[[steps]]
id = "bearer"
uses = "http"
with = { url = "{url}/auth/bearer", auth = { type = "bearer", token = "abc123" } }

[[steps]]
id = "basic"
uses = "http"
with = { url = "{url}/auth/basic", auth = { type = "basic", username = "user", password = "pa55" } }

[[steps]]
id = "key_header"
uses = "http"
with = { url = "{url}/auth/apikey", auth = { type = "api_key", name = "X-API-Key", value = "k-1" } }

[[steps]]
id = "key_query"
uses = "http"
with = { url = "{url}/auth/apikey", auth = { type = "api_key", name = "api_key", value = "k-1", in = "query" } }

[[steps]]
id = "oauth_1"
uses = "http"
with = { target = "oauth", path = "/oauth/protected" }

[[steps]]
id = "oauth_2"
uses = "http"
needs = ["oauth_1"]
with = { target = "oauth", path = "/oauth/protected" }

[[steps]]
id = "oauth_3"
uses = "http"
needs = ["oauth_2"]
with = { target = "oauth", path = "/oauth/protected" }

[[steps]]
id = "wrong"
uses = "http"
with = { url = "{url}/auth/bearer", auth = { type = "bearer", token = "nope" } }

# Step-level OAuth2: the same client as the target's shares its cached token...
[[steps]]
id = "oauth_step"
uses = "http"
needs = ["oauth_3"]
with = { url = "{url}/oauth/protected", auth = { type = "oauth2", token_url = "{url}/oauth/token", client_id = "cli", client_secret = "s3cret" } }

# ...another scope is another token, here asked for with Basic client credentials...
[[steps]]
id = "oauth_scoped"
uses = "http"
needs = ["oauth_step"]
with = { url = "{url}/oauth/protected", auth = { type = "oauth2", token_url = "{url}/oauth/token", client_id = "cli", client_secret = "s3cret", scope = "orders:write", client_auth = "basic" } }

[[steps]]
id = "oauth_scoped_again"
uses = "http"
needs = ["oauth_scoped"]
with = { url = "{url}/oauth/protected", auth = { type = "oauth2", token_url = "{url}/oauth/token", client_id = "cli", client_secret = "s3cret", scope = "orders:write", client_auth = "basic" } }

# ...and a step's auth replaces its target's.
[[steps]]
id = "oauth_refused"
uses = "http"
needs = ["oauth_scoped_again"]
with = { target = "oauth", path = "/oauth/protected", auth = { type = "oauth2", token_url = "{url}/oauth/token", client_id = "intruder", client_secret = "s3cret" } }
"#,
    );
    for id in [
        "bearer",
        "basic",
        "key_header",
        "key_query",
        "oauth_1",
        "oauth_2",
        "oauth_3",
        "oauth_step",
        "oauth_scoped",
        "oauth_scoped_again",
    ] {
        assert_eq!(step_status(&run, id), "completed", "{id}: {run:#}");
    }
    assert_eq!(step_status(&run, "wrong"), "failed");
    assert!(
        error_of(&run, "wrong").contains("401"),
        "{}",
        error_of(&run, "wrong")
    );
    let token_of = |id: &str| step(&run, id)["output"]["body"]["token"].clone();
    assert_eq!(token_of("oauth_1"), "tok-1");
    assert_eq!(token_of("oauth_3"), "tok-1");
    assert_eq!(
        token_of("oauth_step"),
        "tok-1",
        "a step-level client equal to the target's reuses its token"
    );
    assert_eq!(
        token_of("oauth_scoped"),
        "tok-2",
        "another scope, another token"
    );
    assert_eq!(token_of("oauth_scoped_again"), "tok-2");

    let token_requests = server.requests_to("/oauth/token");
    assert_eq!(
        token_requests.len(),
        3,
        "one token per client and scope, fetched once and reused, and the refused one: \
         {token_requests:#?}"
    );
    let target_fetch = &token_requests[0];
    assert_eq!(target_fetch.method, "POST");
    assert_eq!(
        target_fetch.form_param("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(target_fetch.form_param("client_id").as_deref(), Some("cli"));
    assert_eq!(
        target_fetch.form_param("client_secret").as_deref(),
        Some("s3cret"),
        "client credentials go in the form by default"
    );
    let scoped_fetch = &token_requests[1];
    assert_eq!(
        scoped_fetch.header("authorization"),
        Some("Basic Y2xpOnMzY3JldA=="),
        "client_auth = \"basic\" sends cli:s3cret as Basic credentials"
    );
    assert_eq!(scoped_fetch.form_param("client_secret"), None);
    assert_eq!(
        scoped_fetch.form_param("scope").as_deref(),
        Some("orders:write")
    );
    assert_eq!(
        token_requests[2].form_param("client_id").as_deref(),
        Some("intruder")
    );

    assert_eq!(step_status(&run, "oauth_refused"), "failed", "{run:#}");
    let error = error_of(&run, "oauth_refused");
    assert!(
        error.contains("OAuth2 token request") && error.contains("401"),
        "{error}"
    );
    assert_eq!(
        server.count("/oauth/protected"),
        6,
        "no request is sent without a token"
    );
}

#[test]
fn captures_feed_later_steps_and_expectations_explain_failures() {
    let server = TestServer::start();
    let (_daemon, run) = run_steps(
        &server,
        "",
        r#"
[[steps]]
id = "read"
uses = "http"
with.url = "{url}/json"
with.expect = { status = "2xx", headers = { X-Request-Id = "req-42" }, json = { "$.items[0].name" = { equals = "a" }, "$.nested.token" = { exists = true }, "$.version" = { matches = "^1\\." } }, body_contains = "items", max_duration = "10s" }
with.capture = { version = "$.version", second = "$.items[1].id", request = { header = "x-request-id" }, code = { status = true } }

[[steps]]
id = "text"
uses = "http"
with = { url = "{url}/text", capture = { number = { regex = "v(\\d+)", group = 1 } } }

[[steps]]
id = "use"
uses = "http"
needs = ["read", "text"]
with = { method = "POST", url = "{url}/echo/use", json = { version = "{{ steps.read.output.captures.version }}", number = "{{ steps.text.output.captures.number }}", request = "{{ steps.read.output.captures.request }}" } }

[[steps]]
id = "wrong_status"
uses = "http"
with = { url = "{url}/status/404", expect = { status = 200 } }

[[steps]]
id = "wrong_json"
uses = "http"
with = { url = "{url}/json", expect = { json = { "$.version" = { equals = "2.0.0" } } } }
"#,
    );
    assert_eq!(step_status(&run, "read"), "completed", "{run:#}");
    let captures = &step(&run, "read")["output"]["captures"];
    assert_eq!(captures["version"], "1.2.3");
    assert_eq!(captures["second"], 2);
    assert_eq!(captures["request"], "req-42");
    assert_eq!(captures["code"], 200);
    assert_eq!(step(&run, "text")["output"]["captures"]["number"], "42");

    let used = &server.requests_to("/echo/use")[0];
    let body: Value = serde_json::from_slice(&used.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "version": "1.2.3", "number": "42", "request": "req-42" })
    );

    assert_eq!(step_status(&run, "wrong_status"), "failed");
    let error = error_of(&run, "wrong_status");
    assert!(error.contains("expected status 200, got 404"), "{error}");
    assert_eq!(step(&run, "wrong_status")["output"]["status"], 404);
    let error = error_of(&run, "wrong_json");
    assert!(
        error.contains("$.version") && error.contains("2.0.0") && error.contains("1.2.3"),
        "{error}"
    );
}

#[test]
fn redirects_are_followed_to_a_limit_and_checked_against_the_allowed_hosts() {
    let server = TestServer::start();
    let other = TestServer::start();
    let steps = r#"
[[steps]]
id = "follow"
uses = "http"
with = { url = "{url}/redirect/3" }

[[steps]]
id = "limit"
uses = "http"
with = { url = "{url}/redirect/3", max_redirects = 2 }

[[steps]]
id = "unfollowed"
uses = "http"
with = { url = "{url}/redirect/1", follow_redirects = false, expect = { status = 302 } }

[[steps]]
id = "elsewhere"
uses = "http"
with = { url = "{url}/redirect/1?to={other}/echo/landed" }
"#
    .replace("{other}", &other.url());
    let port = server.url().rsplit(':').next().unwrap().to_owned();
    let config = format!("[http]\nallowed_hosts = [\"127.0.0.1:{port}\"]\n");
    let (_daemon, run) = run_steps(&server, &config, &steps);
    assert_eq!(step_status(&run, "follow"), "completed", "{run:#}");
    assert_eq!(step(&run, "follow")["output"]["body"]["redirected"], true);
    assert_eq!(step_status(&run, "limit"), "failed");
    assert!(error_of(&run, "limit").contains("redirects"), "{run:#}");
    assert_eq!(step_status(&run, "unfollowed"), "completed", "{run:#}");
    assert_eq!(step_status(&run, "elsewhere"), "failed");
    let error = error_of(&run, "elsewhere");
    assert!(error.contains("may not reach"), "{error}");
    assert_eq!(
        other.count("/echo/landed"),
        0,
        "a redirect to a host that is not allowed is never followed"
    );
}

#[test]
fn a_redirect_to_another_origin_carries_no_credentials() {
    let server = TestServer::start();
    let other = TestServer::start();
    let steps = r#"
[targets.api]
url = "{url}"
headers = { X-Target-Key = "t-1" }
auth = { type = "api_key", name = "X-API-Key", value = "k-1" }

[[steps]]
id = "away"
uses = "http"
with = { target = "api", path = "/redirect/1?to={other}/echo/landed", headers = { X-Step-Token = "s-1", Accept = "application/json" } }

[[steps]]
id = "bearer"
uses = "http"
with = { url = "{url}/redirect/1?to={other}/echo/bearer", auth = { type = "bearer", token = "abc123" } }
"#
    .replace("{other}", &other.url());
    let (_daemon, run) = run_steps(&server, "", &steps);
    assert_eq!(run["status"], "completed", "{run:#}");
    let landed = other.requests_to("/echo/");
    assert_eq!(landed.len(), 2, "both redirects were followed");
    for request in &landed {
        for credential in [
            "x-api-key",
            "x-target-key",
            "x-step-token",
            "authorization",
            "cookie",
        ] {
            assert_eq!(
                request.header(credential),
                None,
                "{credential} went to another origin on {}",
                request.path
            );
        }
    }
    let away = landed.iter().find(|r| r.path == "/echo/landed").unwrap();
    assert_eq!(away.header("accept"), Some("application/json"));
    let first = server.requests_to("/redirect/1");
    assert!(
        first
            .iter()
            .all(|r| r.header("x-api-key").is_some() || r.header("authorization").is_some()),
        "the origin itself got the credentials"
    );
}

#[test]
fn responses_over_the_cap_and_slow_answers_fail_the_step() {
    let server = TestServer::start();
    let (_daemon, run) = run_steps(
        &server,
        "[http]\nmax_response_bytes = 1000\n",
        r#"
[[steps]]
id = "small"
uses = "http"
with = { url = "{url}/bytes/1000" }

[[steps]]
id = "big"
uses = "http"
with = { url = "{url}/bytes/1001" }

[[steps]]
id = "slow"
uses = "http"
with = { url = "{url}/slow/3000", timeout = "200ms" }

[[steps]]
id = "step_timeout"
uses = "http"
timeout = "300ms"
with = { url = "{url}/slow/3000" }
"#,
    );
    assert_eq!(step_status(&run, "small"), "completed", "{run:#}");
    assert_eq!(step_status(&run, "big"), "failed");
    assert!(error_of(&run, "big").contains("1000 bytes"), "{run:#}");
    assert_eq!(step_status(&run, "slow"), "failed");
    assert!(error_of(&run, "slow").contains("200ms"), "{run:#}");
    assert_eq!(
        step_status(&run, "step_timeout"),
        "timed_out",
        "a step past its own timeout is timed_out (docs/runbook-format.md): {run:#}"
    );
    let error = error_of(&run, "step_timeout");
    assert!(error.starts_with("timed out after 300ms"), "{error}");
    let attempt = &step(&run, "step_timeout")["history"][0];
    let took = millis(&attempt["finished_at"]) - millis(&attempt["started_at"]);
    assert!(
        took < 2000,
        "the deadline cut the 3s request short, it took {took}ms: {attempt:#}"
    );
}

/// Unix milliseconds of a time as the CLI's JSON writes it (RFC 3339).
fn millis(value: &Value) -> i64 {
    let time = humantime::parse_rfc3339(value.as_str().unwrap()).unwrap();
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}

#[test]
fn secrets_are_sent_but_never_shown() {
    let server = TestServer::start();
    let runbook = r#"
[targets.api]
url = "{url}"
auth = { type = "bearer", token = "{{ secrets.api_token }}" }

[[steps]]
id = "auth"
uses = "http"
with = { target = "api", path = "/auth/bearer" }

[[steps]]
id = "echo"
uses = "http"
with = { method = "POST", url = "{url}/echo/secret", headers = { X-Token = "{{ secrets.api_token }}" }, json = { token = "{{ secrets.api_token }}" } }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start_process(&[("http.toml", &runbook)], "");
    let refused = daemon.cli(&["run", "http"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("api_token"),
        "a missing secret is named before the run starts"
    );
    let mut set = daemon
        .cli_command(&["secret", "set", "api_token"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut set.stdin.take().unwrap(), b"abc123\n").unwrap();
    assert!(set.wait().unwrap().success());

    let run = daemon.run_to_end("http", &[]);
    assert_eq!(run["status"], "completed", "{run:#}");
    let echoed = server.requests_to("/echo/secret");
    assert_eq!(
        echoed[0].header("x-token"),
        Some("abc123"),
        "the far side gets the value"
    );
    assert!(echoed[0].body_text().contains("\"abc123\""));

    let shown = daemon.cli(&["show", run["id"].as_str().unwrap(), "--json"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(!shown.contains("abc123"), "{shown}");
    assert!(shown.contains("***"), "the echoed value is masked: {shown}");
    let events = daemon.events(run["id"].as_str().unwrap()).join("\n");
    assert!(!events.contains("abc123"), "{events}");
    // Only a stopped daemon has flushed its database and logs.
    let stopped = daemon.cli(&["daemon", "stop"]);
    assert!(stopped.status.success());
    let files = walk(&daemon.data_dir);
    assert!(
        files
            .iter()
            .any(|file| file.starts_with(daemon.data_dir.join("db"))),
        "the scan reaches the database: {files:?}"
    );
    for entry in files {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(6).any(|window| window == b"abc123"),
            "{} holds the secret",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
