//! `ls` and `validate`: the runbooks the daemon knows, and checking a file before saving it.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use runbook_protocol::v1::{ListRunbooksRequest, RunbookSummary, ValidateRunbookRequest};

use super::Ctx;
use super::table::Table;
use crate::error::{EXIT_INPUT, EXIT_OK, Failure};
use crate::{format, json};

/// `ls`: a table of runbooks, then the diagnostics of the invalid ones.
pub async fn ls(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let mut runbooks = client
        .list_runbooks(ListRunbooksRequest {})
        .await?
        .into_inner()
        .runbooks;
    runbooks.sort_by(|a, b| a.name.cmp(&b.name));
    if ctx.json {
        let view: Vec<_> = runbooks.iter().map(json::runbook).collect();
        writeln!(out, "{}", json::to_string(&view)?)?;
        return Ok(EXIT_OK);
    }
    write_list(out, &runbooks)?;
    Ok(EXIT_OK)
}

fn write_list(out: &mut dyn Write, runbooks: &[RunbookSummary]) -> std::io::Result<()> {
    let mut table = Table::new(&["NAME", "VERSION", "STEPS", "STATE", "DESCRIPTION"]);
    for rb in runbooks {
        table.row(vec![
            rb.name.clone(),
            format::short_hash(&rb.version),
            rb.step_count.to_string(),
            state(rb),
            rb.description.lines().next().unwrap_or_default().to_owned(),
        ]);
    }
    table.write(out)?;
    for rb in runbooks.iter().filter(|rb| !rb.valid) {
        writeln!(out)?;
        for diagnostic in &rb.diagnostics {
            let rendered = format::printable_lines(diagnostic.rendered.trim_end());
            writeln!(out, "{rendered}")?;
        }
    }
    Ok(())
}

/// The STATE cell: an invalid save keeps the last good version runnable, and users need to
/// know whether running the runbook still works (and which version would run) or cannot.
fn state(rb: &RunbookSummary) -> String {
    match (rb.valid, rb.version.is_empty()) {
        (true, _) => "ok".to_owned(),
        (false, true) => "invalid".to_owned(),
        (false, false) => format!("invalid (runs {})", format::short_hash(&rb.version)),
    }
}

/// `validate FILE`: the daemon checks the file's source as it would a runbook in its directory.
pub async fn validate(ctx: &Ctx, out: &mut dyn Write, file: &Path) -> anyhow::Result<u8> {
    // Read before connecting: an unreadable file is the user's mistake, daemon or not.
    let source = read_source(file)?;
    let mut client = ctx.target.client().await?;
    let result = client
        .validate_runbook(ValidateRunbookRequest {
            path: file.display().to_string(),
            source,
        })
        .await
        .context("validating")?
        .into_inner();
    if ctx.json {
        writeln!(out, "{}", json::to_string(&json::validation(&result))?)?;
    } else if result.valid {
        writeln!(out, "{}: ok", file.display())?;
    } else {
        for diagnostic in &result.diagnostics {
            // Diagnostics quote the file, which may hold any byte.
            eprintln!(
                "{}",
                format::printable_lines(diagnostic.rendered.trim_end())
            );
        }
    }
    Ok(if result.valid { EXIT_OK } else { EXIT_INPUT })
}

/// More than the daemon accepts of a runbook file (4 MiB): what is read of a file is at most
/// this, so that the daemon refuses a huge file with its own "too large" diagnostic instead of
/// the client sending a message larger than the API's limit.
const READ_AT_MOST: u64 = 4 * 1024 * 1024 + 1;

/// A runbook file's text; a file that is not UTF-8 is refused here, at the line and column of
/// its first bad byte, since only text can be sent to the daemon.
fn read_source(file: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let cannot_read =
        |err: std::io::Error| Failure::Input(format!("cannot read {}: {err}", file.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|opened| opened.take(READ_AT_MOST).read_to_end(&mut bytes))
        .map_err(cannot_read)?;
    String::from_utf8(bytes).or_else(|err| {
        let offset = err.utf8_error().valid_up_to();
        let bytes = err.as_bytes();
        if bytes.len() as u64 >= READ_AT_MOST {
            // Cut inside a character by the read limit: the daemon says the file is too large.
            return Ok(String::from_utf8_lossy(bytes).into_owned());
        }
        let before = &bytes[..offset];
        let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |at| at + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        Err(Failure::Input(format!(
            "error: the file is not UTF-8: byte 0x{:02x} here is not part of a UTF-8 character\n --> {}:{line}:{column}",
            bytes[offset],
            file.display()
        ))
        .into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_protocol::v1::Diagnostic;

    #[test]
    fn ls_lists_then_explains_invalid_runbooks() {
        let runbooks = vec![
            RunbookSummary {
                name: "deploy".into(),
                version: "0123456789abcdef".into(),
                valid: true,
                step_count: 3,
                description: "Roll out\nand verify".into(),
                ..Default::default()
            },
            RunbookSummary {
                name: "broken".into(),
                valid: false,
                diagnostics: vec![Diagnostic {
                    rendered: "broken.toml:3:1: unknown field `stepz`\n".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ];
        let mut out = Vec::new();
        write_list(&mut out, &runbooks).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "NAME    VERSION       STEPS  STATE    DESCRIPTION\n\
             deploy  0123456789ab  3      ok       Roll out\n\
             broken                0      invalid\n\
             \n\
             broken.toml:3:1: unknown field `stepz`\n"
        );
    }

    #[test]
    fn ls_shows_which_version_an_invalid_runbook_still_runs() {
        let runbooks = vec![
            RunbookSummary {
                name: "backup".into(),
                version: "fedcba9876543210".into(),
                valid: false,
                step_count: 2,
                description: "Nightly backup".into(),
                diagnostics: vec![Diagnostic {
                    rendered: "backup.toml:7:9: expected a string\n  |\n7 | uses = 3\n".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            RunbookSummary {
                name: "broken".into(),
                valid: false,
                diagnostics: vec![Diagnostic {
                    rendered: "broken.toml:1:1: expected a table\n".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ];
        let mut out = Vec::new();
        write_list(&mut out, &runbooks).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "NAME    VERSION       STEPS  STATE                        DESCRIPTION\n\
             backup  fedcba987654  2      invalid (runs fedcba987654)  Nightly backup\n\
             broken                0      invalid\n\
             \n\
             backup.toml:7:9: expected a string\n\
             \x20 |\n\
             7 | uses = 3\n\
             \n\
             broken.toml:1:1: expected a table\n"
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_at_its_first_bad_byte() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, b"[[steps]]\nid = \"a\xffb\"\n").expect("write");
        let err = read_source(&path).expect_err("not UTF-8").to_string();
        assert!(err.contains("not UTF-8") && err.contains("0xff"), "{err}");
        assert!(err.ends_with("bad.toml:2:8"), "{err}");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; 5 << 20]).expect("write");
        assert_eq!(
            read_source(&big).expect("read").len() as u64,
            READ_AT_MOST,
            "only as much as the daemon needs to refuse it"
        );
    }
}
