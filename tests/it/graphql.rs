//! GraphQL steps against a real GraphQL server (async-graphql) started by the test: a query
//! with variables, a mutation whose result a later query reads, an `errors` response failing
//! its step with each message and path, and a capture from `data`.

use runbook_e2e::http_server::TestServer;
use runbook_e2e::{Daemon, step, step_status};

#[test]
fn queries_mutations_errors_and_captures() {
    let server = TestServer::start();
    let runbook = r#"
[targets.gql]
url = "{url}"
headers = { X-Client = "runbook" }

[[steps]]
id = "hello"
uses = "graphql"
with.endpoint = "{url}/graphql"
with.query = 'query Hello($name: String!) { hello(name: $name) }'
with.variables = { name = "{{ run.runbook }}" }
with.capture = { greeting = "$.hello" }

[[steps]]
id = "create"
uses = "graphql"
with.target = "gql"
with.path = "/graphql"
with.query = '''
mutation Create($name: String!) {
  createUser(name: $name) { id name email }
}
'''
with.variables = { name = "linus" }
with.operation_name = "Create"
with.capture = { id = "$.createUser.id" }

[[steps]]
id = "read"
uses = "graphql"
needs = ["create"]
with.endpoint = "{url}/graphql"
with.query = 'query Read($id: ID!) { user(id: $id) { name email } }'
with.variables = { id = "{{ steps.create.output.captures.id }}" }
with.capture = { email = "$.user.email" }

[[steps]]
id = "forbidden"
uses = "graphql"
with.endpoint = "{url}/graphql"
with.query = '{ hello(name: "x") secret }'

[[steps]]
id = "tolerated"
uses = "graphql"
with.endpoint = "{url}/graphql"
with.query = '{ hello(name: "x") secret }'
with.allow_errors = true
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("graph.toml", &runbook)], "");
    let run = daemon.run_to_end("graph", &[]);

    assert_eq!(step_status(&run, "hello"), "completed", "{run:#}");
    let hello = &step(&run, "hello")["output"];
    assert_eq!(hello["data"]["hello"], "hello graph");
    assert_eq!(hello["captures"]["greeting"], "hello graph");

    assert_eq!(step_status(&run, "create"), "completed", "{run:#}");
    assert_eq!(step(&run, "create")["output"]["captures"]["id"], "3");
    let create = &server
        .requests_to("/graphql")
        .into_iter()
        .find(|r| r.body_text().contains("createUser"))
        .unwrap();
    assert_eq!(
        create.header("x-client"),
        Some("runbook"),
        "target headers are sent"
    );
    let body = create.body_json().unwrap();
    assert_eq!(body["operationName"], "Create");
    assert_eq!(body["variables"]["name"], "linus");

    assert_eq!(step_status(&run, "read"), "completed", "{run:#}");
    assert_eq!(
        step(&run, "read")["output"]["captures"]["email"],
        "linus@example.com",
        "the mutation's result is visible to a later query"
    );

    assert_eq!(step_status(&run, "forbidden"), "failed");
    let error = step(&run, "forbidden")["error"].as_str().unwrap();
    assert!(
        error.contains("not authorized") && error.contains("secret"),
        "each error's message and path: {error}"
    );
    assert_eq!(step_status(&run, "tolerated"), "completed", "{run:#}");
    assert_eq!(
        step(&run, "tolerated")["output"]["data"]["hello"],
        "hello x"
    );
    assert_eq!(
        step(&run, "tolerated")["output"]["errors"][0]["message"],
        "not authorized"
    );
}

#[test]
fn a_query_syntax_error_is_reported_at_its_line_and_column_in_the_file() {
    let daemon = Daemon::start(&[], "");
    let root = runbook_e2e::workspace_root();
    let output = daemon
        .cli_command(&["validate", "runbooks/invalid/graphql-syntax.toml"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // `name(` opens on line 10 of the file; the parser stops at the `}` on line 11.
    assert!(
        stderr.contains("runbooks/invalid/graphql-syntax.toml:11:3"),
        "{stderr}"
    );
}
