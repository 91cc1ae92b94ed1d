//! `runbook-plugin-test` runs built components in the daemon's host with the capabilities a
//! test grants: the built-in http, shell and database plugins (loaded as any third-party
//! component would be) against a real HTTP server, a real process and a real SQLite file,
//! and the test plugins for what a refusal and a broken call look like.

use runbook_e2e::http_server::TestServer;
use runbook_e2e::{block_on, test_plugin};
use runbook_plugin_test::{Capabilities, Outcome, PluginUnderTest};
use serde_json::json;

/// The component of built-in plugin `name`, as the daemon's build script built it.
fn builtin_component(name: &str) -> std::path::PathBuf {
    let probe = test_plugin("probe");
    probe
        .with_file_name(format!("runbook_plugin_{name}.wasm"))
        .to_path_buf()
}

#[test]
fn an_http_component_reaches_only_the_granted_host_and_waits_then_resumes() {
    let server = TestServer::start();
    let url = server.url();
    block_on(async {
        let plugin = PluginUnderTest::load(
            builtin_component("http"),
            // It imports `jwt` as well (for `auth = { jwt = ... }`).
            Capabilities::default().host("127.0.0.1").jwt(),
        )
        .await
        .unwrap();
        assert_eq!(plugin.kind(), "http");
        let config = json!({ "url": format!("{url}/json"), "capture": { "version": "$.version" } });
        plugin.validate(&config).await.unwrap().unwrap();
        let plan = plugin.plan(&config).await.unwrap().unwrap();
        assert!(plan.summary.contains("/json"), "{}", plan.summary);
        let called = plugin.execute(&config, &json!({})).await.unwrap();
        let output = called.output().unwrap_or_else(|| panic!("{called:?}"));
        assert_eq!(output["status"], 200, "{output:#}");
        assert_eq!(output["captures"]["version"], "1.2.3", "{output:#}");
        assert_eq!(server.count("/json"), 1);

        // A host the test did not grant is refused by the host, as in the daemon.
        let elsewhere = json!({ "url": "http://localhost:9/json" });
        let refused = plugin.execute(&elsewhere, &json!({})).await.unwrap();
        let error = refused.outcome.unwrap_err().message;
        assert!(error.contains("may not reach localhost"), "{error}");

        // An async job: `execute` answers waiting, `resume` polls until it is done.
        let job = json!({
            "method": "POST",
            "url": format!("{url}/jobs?polls=1&outcome=done"),
            "async": {
                "status_url": format!("{url}/jobs/{{{{ invocation_id }}}}"),
                "done_when": "$[?@.state == 'done']",
                "poll_every": "10ms",
            },
            "capture": { "value": "$.result.value" },
        });
        let started = plugin.execute(&job, &json!({})).await.unwrap();
        let Ok(Outcome::Waiting(waiting)) = started.outcome else {
            panic!("the job did not wait: {started:?}");
        };
        let mut token = waiting.resume_token;
        let done = loop {
            let polled = plugin.resume(&job, &token).await.unwrap();
            match polled.outcome {
                Ok(Outcome::Waiting(again)) => token = again.resume_token,
                Ok(Outcome::Done(_)) => break polled.output().unwrap(),
                Err(err) => panic!("the job failed: {}", err.message),
            }
        };
        assert_eq!(done["captures"]["value"], 42, "{done:#}");
        assert_eq!(server.count("/jobs/"), 2, "polled until done");
    });
}

#[test]
fn a_shell_component_runs_only_the_process_its_plan_names_when_granted() {
    block_on(async {
        let config = json!({ "command": ["echo", "hello from a process"] });
        // Not granted processes: refused at load, naming the interface and the grant.
        let refused = PluginUnderTest::load(builtin_component("shell"), Capabilities::default())
            .await
            .err()
            .expect("a component that imports `process` without the grant is refused");
        let message = format!("{refused:#}");
        assert!(
            message.contains("runbook:plugin/process") && message.contains("--process"),
            "{message}"
        );

        let plugin = PluginUnderTest::load(
            builtin_component("shell"),
            Capabilities::default().process(),
        )
        .await
        .unwrap();
        let called = plugin.execute(&config, &json!({})).await.unwrap();
        assert!(called.outcome.is_ok(), "{called:?}");
        assert!(
            called.plan.summary.contains("echo"),
            "the call ran under its plan: {}",
            called.plan.summary
        );
        let printed: Vec<&str> = called
            .events
            .iter()
            .filter_map(|event| match event {
                runbook_plugin_test::PluginEvent::Output { line, .. } => Some(line.as_str()),
                runbook_plugin_test::PluginEvent::Log { .. } => None,
            })
            .collect();
        assert!(
            printed
                .iter()
                .any(|line| line.contains("hello from a process")),
            "{printed:?}"
        );
    });
}

#[test]
fn a_database_component_uses_the_granted_sqlite_connection() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    block_on(async {
        let plugin = PluginUnderTest::load(
            builtin_component("database"),
            Capabilities::default().connection("lite", &url),
        )
        .await
        .unwrap();
        let create = json!({
            "connection": "lite",
            "execute": "create table notes (body text); insert into notes values ('kept')",
        });
        let created = plugin.execute(&create, &json!({})).await.unwrap();
        assert!(created.outcome.is_ok(), "{created:?}");
        let read = json!({ "connection": "lite", "query": "select body from notes" });
        let rows = plugin.execute(&read, &json!({})).await.unwrap();
        let output = rows.output().unwrap_or_else(|| panic!("{rows:?}"));
        assert_eq!(output["rows"][0]["body"], "kept", "{output:#}");

        // A connection the test did not grant cannot be used.
        let other = json!({ "connection": "other", "query": "select 1" });
        let refused = plugin.execute(&other, &json!({})).await.unwrap_err();
        assert!(
            format!("{refused:#}").contains("connection `other`"),
            "{refused:#}"
        );
    });
}

#[test]
fn a_step_trait_plugin_validates_plans_and_runs_and_a_trap_fails_only_its_call() {
    block_on(async {
        let greet = PluginUnderTest::load(test_plugin("greet"), Capabilities::default())
            .await
            .unwrap();
        let problems = greet
            .validate(&json!({ "name": "" }))
            .await
            .unwrap()
            .unwrap_err();
        assert!(!problems.is_empty());
        // What docs/plugin-guide.md's "Test the component" shows.
        let config = json!({ "name": "Ada" });
        greet.validate(&config).await.unwrap().unwrap();
        let plan = greet.plan(&config).await.unwrap().unwrap();
        assert_eq!(plan.summary, r#"say "hello, Ada""#);
        let called = greet.execute(&config, &json!({})).await.unwrap();
        assert_eq!(called.output(), Some(json!({ "greeting": "hello, Ada" })));

        let probe = PluginUnderTest::load(test_plugin("probe"), Capabilities::default())
            .await
            .unwrap();
        let trapped = probe.execute(&json!({ "mode": "trap" }), &json!({})).await;
        assert!(trapped.is_err(), "a trap fails the call");
        let resumed = probe.resume(&json!({ "mode": "noop" }), "t").await.unwrap();
        assert!(resumed.outcome.unwrap_err().message.contains("never wait"));
        // The host is still there after a trap.
        let fine = probe
            .execute(&json!({ "mode": "noop" }), &json!({}))
            .await
            .unwrap();
        assert_eq!(fine.output(), Some(json!({ "ok": true })));
    });
}
