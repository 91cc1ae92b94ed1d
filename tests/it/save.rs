//! Saving a runbook through the daemon (`SaveRunbook`), as the TUI's editor does: the file is
//! replaced on disk, a valid content becomes a new version, an invalid one keeps the last good
//! version running, and a save over someone else's edit is refused.

use runbook_e2e::{Daemon, block_on};
use runbook_protocol::v1::{GetRunbookRequest, ListVersionsRequest, SaveRunbookRequest};

const FIRST: &str = r#"description = "first"

[[steps]]
id = "hello"
uses = "shell"
with = { command = ["echo", "one"] }
"#;

const AUTO: &str = "[approvals]\nshell = \"auto\"\n";

#[test]
fn a_save_writes_the_file_and_adds_a_version_or_reports_its_problems() {
    let daemon = Daemon::start(&[("greet.toml", FIRST)], AUTO);
    let file = daemon.runbooks.join("greet.toml");
    block_on(async {
        let mut client = daemon.client().await;
        let detail = client
            .get_runbook(GetRunbookRequest {
                name: "greet".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(detail.file_source, FIRST);

        let second = FIRST.replace("\"one\"", "\"two\"");
        let saved = client
            .save_runbook(SaveRunbookRequest {
                runbook: "greet".into(),
                source: second.clone(),
                base_hash: detail.file_hash.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(saved.valid, "{saved:?}");
        let version = saved.version.expect("a valid new content is a new version");
        assert_eq!(version.number, 2);
        assert!(version.cause.starts_with("saved by "), "{}", version.cause);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), second);

        // A save based on the first content would overwrite the second: refused.
        let stale = client
            .save_runbook(SaveRunbookRequest {
                runbook: "greet".into(),
                source: FIRST.replace("\"one\"", "\"three\""),
                base_hash: detail.file_hash.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");
        assert!(stale.message().contains("changed on disk"), "{stale:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), second);

        // An invalid content is written (the author's work is not lost) and reported at its
        // line and column; the runbook keeps running version 2.
        let broken = second.replace("uses = \"shell\"", "uses = \"shell\"\nneds = []");
        let saved = client
            .save_runbook(SaveRunbookRequest {
                runbook: "greet".into(),
                source: broken.clone(),
                base_hash: saved.file_hash.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!saved.valid);
        assert!(saved.version.is_none());
        let problem = &saved.diagnostics[0];
        assert_eq!((problem.line, problem.column), (6, 1), "{problem:?}");
        assert!(problem.message.contains("neds"), "{problem:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), broken);
        let versions = client
            .list_versions(ListVersionsRequest {
                runbook: "greet".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .versions;
        assert_eq!(versions.len(), 2);
        let detail = client
            .get_runbook(GetRunbookRequest {
                name: "greet".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(detail.source, second, "runs still start with version 2");
        assert_eq!(
            detail.file_source, broken,
            "the editor sees the file as saved"
        );
    });
    let run = daemon.run_to_end("greet", &[]);
    assert_eq!(run["steps"][0]["output"]["stdout"], "two\n");
}

#[test]
fn an_unknown_runbook_cannot_be_saved() {
    let daemon = Daemon::start(&[("greet.toml", FIRST)], AUTO);
    block_on(async {
        let mut client = daemon.client().await;
        let missing = client
            .save_runbook(SaveRunbookRequest {
                runbook: "nope".into(),
                source: FIRST.into(),
                base_hash: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    });
    assert!(!daemon.runbooks.join("nope.toml").exists());
}

#[test]
fn a_save_too_large_is_reported_at_the_limit_and_adds_no_version() {
    let daemon = Daemon::start(&[("greet.toml", FIRST)], AUTO);
    block_on(async {
        let mut client = daemon.client().await;
        // Valid but for its size: 10 MB of comment after the first version.
        let huge = format!("{FIRST}# {}\n", "x".repeat(10 << 20));
        let saved = client
            .save_runbook(SaveRunbookRequest {
                runbook: "greet".into(),
                source: huge,
                base_hash: String::new(),
            })
            .await
            .expect("an answer, not a transport error")
            .into_inner();
        assert!(!saved.valid);
        assert!(saved.version.is_none());
        let problem = &saved.diagnostics[0];
        assert!(
            problem.message.starts_with("the file is too large"),
            "{problem:?}"
        );
        // Where the limit is crossed: inside the comment on line 7.
        assert_eq!(problem.line, 7, "{problem:?}");
        assert!(problem.rendered.len() < 1_000, "{}", problem.rendered.len());
        let versions = client
            .list_versions(ListVersionsRequest {
                runbook: "greet".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .versions;
        assert_eq!(versions.len(), 1, "the first version stays the newest");
    });
}
