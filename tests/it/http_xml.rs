//! XPath over XML responses end to end: http steps post XML to the test server's `/xml`, which
//! echoes it back, and capture from it (an attribute, text, a count, a namespaced element)
//! for a later step, pass and fail `expect.xpath` with its message, and fail on a body that is
//! not XML; an invalid XPath in a runbook is refused at load with its line and column.

use std::time::{Duration, Instant};

use runbook_e2e::http_server::TestServer;
use runbook_e2e::{Daemon, PATIENCE, step, step_status};
use serde_json::Value;

fn error_of(run: &Value, id: &str) -> String {
    step(run, id)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn xpath_captures_feed_later_steps_and_xpath_expectations_explain_failures() {
    let server = TestServer::start();
    let runbook = r#"
[[steps]]
id = "order"
uses = "http"
with.method = "POST"
with.url = "{url}/xml"
with.content_type = "application/xml"
with.text = '''<?xml version="1.0" encoding="UTF-8"?>
<order id="o-42">
  <item sku="a">2</item>
  <item sku="b">3</item>
  <status>open</status>
</order>'''
with.capture = { id = { xpath = "/order/@id" }, status = { xpath = "//status" }, items = { xpath = "count(//item)" }, skus = { xpath = "//item/@sku" } }
with.expect = { status = 200, xpath = { "count(//error)" = 0, "/order/status" = "open", "sum(//item)" = 5, "//item/@sku" = { matches = "^[a-z]$" } } }

[[steps]]
id = "feed"
uses = "http"
with.method = "POST"
with.url = "{url}/xml"
with.content_type = "application/atom+xml"
with.text = '<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>first</title></entry></feed>'
with.capture = { title = { xpath = "//_:entry/_:title" } }

[[steps]]
id = "use"
uses = "http"
needs = ["order", "feed"]
with = { method = "POST", url = "{url}/echo/use", json = { id = "{{ steps.order.output.captures.id }}", items = "{{ steps.order.output.captures.items }}", title = "{{ steps.feed.output.captures.title }}" } }

[[steps]]
id = "errors"
uses = "http"
with.method = "POST"
with.url = "{url}/xml"
with.content_type = "text/xml"
with.text = "<result><error>disk full</error><error>quota</error></result>"
with.expect.xpath = { "count(//error)" = 0, "//error[1]" = { exists = false } }

[[steps]]
id = "not_xml"
uses = "http"
with.method = "POST"
with.url = "{url}/xml"
with.content_type = "application/json"
with.text = '{"error": "not xml"}'
with.capture = { id = { xpath = "/order/@id" } }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("xml.toml", &runbook)], "");
    let run = daemon.run_to_end("xml", &[]);

    assert_eq!(step_status(&run, "order"), "completed", "{run:#}");
    let captures = &step(&run, "order")["output"]["captures"];
    assert_eq!(captures["id"], "o-42", "an attribute: {captures:#}");
    assert_eq!(
        captures["status"], "open",
        "an element's text: {captures:#}"
    );
    assert_eq!(captures["items"], 2, "a count is a number: {captures:#}");
    assert_eq!(
        captures["skus"],
        serde_json::json!(["a", "b"]),
        "several nodes are an array: {captures:#}"
    );
    assert_eq!(
        step(&run, "feed")["output"]["captures"]["title"],
        "first",
        "`_` is the body's default namespace: {run:#}"
    );

    assert_eq!(step_status(&run, "use"), "completed", "{run:#}");
    let used = &server.requests_to("/echo/use")[0];
    assert_eq!(
        used.body_json(),
        Some(serde_json::json!({ "id": "o-42", "items": "2", "title": "first" }))
    );

    assert_eq!(step_status(&run, "errors"), "failed", "{run:#}");
    assert_eq!(
        error_of(&run, "errors"),
        "//error[1]: expected to match nothing, got \"disk full\"; count(//error): expected 0, got 2"
    );
    assert_eq!(
        step(&run, "errors")["output"]["status"],
        200,
        "the response is the failed step's output"
    );

    assert_eq!(step_status(&run, "not_xml"), "failed", "{run:#}");
    let error = error_of(&run, "not_xml");
    assert!(
        error.starts_with(
            "capture `id`: /order/@id: the response body is not well-formed XML: expected "
        ) && error.ends_with("(line 1, column 1)"),
        "{error}"
    );
    assert_eq!(run["status"], "failed");
}

/// `steps[0]` captures with an XPath the engine cannot parse; `steps[1]` expects with an
/// unknown function. Each problem is reported at its value.
const INVALID: &str = r#"[[steps]]
id = "read"
uses = "http"
with.url = "http://127.0.0.1:9/xml"
with.capture = { id = { xpath = "//order[" } }

[[steps]]
id = "check"
uses = "http"
with.url = "http://127.0.0.1:9/xml"
with.expect.xpath = { "cont(//error)" = 0 }
"#;

/// The 1-based line and column of the first `needle` in `INVALID`.
fn position_of(needle: &str) -> (u64, u64) {
    let (index, line) = INVALID
        .lines()
        .enumerate()
        .find(|(_, line)| line.contains(needle))
        .unwrap();
    let column = line.find(needle).unwrap();
    (index as u64 + 1, column as u64 + 1)
}

#[test]
fn an_invalid_xpath_is_refused_at_load_with_its_line_and_column() {
    let daemon = Daemon::start(&[("bad-xpath.toml", INVALID)], "");
    let capture_at = position_of("\"//order[\"");
    let expect_at = position_of("0 }");

    // The daemon loaded the file and refused it.
    let deadline = Instant::now() + PATIENCE;
    let entry = loop {
        let listed = daemon.json(&["ls"]);
        let found = listed.as_array().and_then(|runbooks| {
            runbooks
                .iter()
                .find(|rb| {
                    rb["path"]
                        .as_str()
                        .is_some_and(|path| path.ends_with("bad-xpath.toml"))
                })
                .cloned()
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "never listed: {listed:#}");
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(entry["valid"], false, "{entry:#}");
    let diagnostics: Vec<(String, u64, u64)> = entry["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["message"].as_str().unwrap().to_owned(),
                d["line"].as_u64().unwrap(),
                d["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        diagnostics,
        [
            (
                "step `read`: with.capture.id.xpath: invalid XPath `//order[`: empty predicate"
                    .to_owned(),
                capture_at.0,
                capture_at.1
            ),
            (
                "step `check`: with.expect.xpath.cont(//error): invalid XPath `cont(//error)`: unknown function `cont`"
                    .to_owned(),
                expect_at.0,
                expect_at.1
            ),
        ],
        "{entry:#}"
    );

    // `runbook validate` prints them as file:line:column and exits 2.
    let file = daemon.runbooks.join("bad-xpath.toml");
    let output = daemon.cli(&["validate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for (message, (line, column)) in [
        (
            "error: step `read`: with.capture.id.xpath: invalid XPath `//order[`: empty predicate",
            capture_at,
        ),
        (
            "error: step `check`: with.expect.xpath.cont(//error): invalid XPath `cont(//error)`: unknown function `cont`",
            expect_at,
        ),
    ] {
        assert!(stderr.contains(message), "{stderr}");
        assert!(
            stderr.contains(&format!("{}:{line}:{column}", file.display())),
            "{message} at {line}:{column}: {stderr}"
        );
    }
}
