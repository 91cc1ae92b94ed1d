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
    ] {
        assert_eq!(step_status(&run, id), "completed", "{id}: {run:#}");
    }
    assert_eq!(step_status(&run, "wrong"), "failed");
    assert!(
        error_of(&run, "wrong").contains("401"),
        "{}",
        error_of(&run, "wrong")
    );
    assert_eq!(
        server.count("/oauth/token"),
        1,
        "the token is fetched once and reused"
    );
    assert_eq!(server.count("/oauth/protected"), 3);
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
    let status = step_status(&run, "step_timeout");
    assert!(
        status == "timed_out" || status == "failed",
        "the step's own deadline bounds the request: {run:#}"
    );
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
    let daemon = Daemon::start(&[("http.toml", &runbook)], "");
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
    for entry in walk(&daemon.data_dir) {
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
