//! `versions`, `diff` and `rollback`: a runbook's history of valid contents, what changed
//! between two of them, and going back to an earlier one.

use std::io::Write;

use runbook_protocol::v1::{
    GetVersionRequest, ListVersionsRequest, RollbackRequest, RunbookVersion,
};

use super::Ctx;
use super::table::Table;
use crate::daemon::Client;
use crate::error::EXIT_OK;
use crate::{format, json};

/// `versions NAME`: a table of the runbook's versions, oldest first as the daemon lists them.
pub async fn list(ctx: &Ctx, out: &mut dyn Write, name: &str) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let versions = client
        .list_versions(ListVersionsRequest {
            runbook: name.to_owned(),
        })
        .await?
        .into_inner()
        .versions;
    if ctx.json {
        let view: Vec<_> = versions.iter().map(json::version).collect();
        writeln!(out, "{}", json::to_string(&view)?)?;
    } else {
        write_versions(out, &versions)?;
    }
    Ok(EXIT_OK)
}

fn write_versions(out: &mut dyn Write, versions: &[RunbookVersion]) -> std::io::Result<()> {
    // The marker goes last, under no title, so that only the current row ends in a word and
    // the CAUSE column stays readable without a mostly empty column in the middle.
    let mut table = Table::new(&["#", "VERSION", "SAVED", "CAUSE", ""]);
    for v in versions {
        table.row(vec![
            v.number.to_string(),
            format::short_hash(&v.version),
            format::timestamp(v.created_at),
            v.cause.clone(),
            if v.current { "current" } else { "" }.to_owned(),
        ]);
    }
    table.write(out)
}

/// `diff NAME FROM [TO]`: a unified diff of the sources, TO being the current version when
/// omitted. Exits 0 whether or not they differ, like `git diff`: it is a report, not a test.
pub async fn diff(
    ctx: &Ctx,
    out: &mut dyn Write,
    name: &str,
    from: &str,
    to: Option<&str>,
) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let from = get(&mut client, name, from).await?;
    // An empty version asks the daemon for the current one.
    let to = get(&mut client, name, to.unwrap_or_default()).await?;
    let text = unified_diff(&from, &to);
    if ctx.json {
        writeln!(out, "{}", json::to_string(&json::diff(&from, &to, &text))?)?;
    } else {
        // Identical sources print nothing, so `runbook diff ... | wc -l` says whether they differ.
        write!(out, "{text}")?;
    }
    Ok(EXIT_OK)
}

/// The unified diff from `from`'s source to `to`'s, with three lines of context; empty when the
/// sources are the same.
fn unified_diff(from: &RunbookVersion, to: &RunbookVersion) -> String {
    similar::TextDiff::from_lines(&from.source, &to.source)
        .unified_diff()
        .context_radius(3)
        .header(&label(from), &label(to))
        .to_string()
}

/// How a diff header names a version: `deploy #3 (0123456789ab)`.
fn label(v: &RunbookVersion) -> String {
    format!(
        "{} #{} ({})",
        v.runbook,
        v.number,
        format::short_hash(&v.version)
    )
}

/// `rollback NAME VERSION`: the daemon writes the version's content back to the runbook's file,
/// which makes a new, current version.
pub async fn rollback(
    ctx: &Ctx,
    out: &mut dyn Write,
    name: &str,
    version: &str,
) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    // Resolved first so the message can name the version restored by its number (which a hash
    // prefix does not tell), and rolled back to by that number: a hash may belong to several
    // versions once a rollback has recreated an old content, a number only ever to one.
    let target = get(&mut client, name, version).await?;
    let now = client
        .rollback(RollbackRequest {
            runbook: name.to_owned(),
            version: target.number.to_string(),
        })
        .await?
        .into_inner();
    if ctx.json {
        writeln!(out, "{}", json::to_string(&json::version(&now))?)?;
    } else {
        writeln!(out, "{}", rolled_back(&target, &now))?;
    }
    Ok(EXIT_OK)
}

/// `rolled back deploy to #1: now #4 (0123456789ab)`.
fn rolled_back(target: &RunbookVersion, now: &RunbookVersion) -> String {
    format!(
        "rolled back {} to #{}: now #{} ({})",
        now.runbook,
        target.number,
        now.number,
        format::short_hash(&now.version)
    )
}

/// One version of `name`, with its source; `version` as `GetVersionRequest` takes it.
async fn get(client: &mut Client, name: &str, version: &str) -> anyhow::Result<RunbookVersion> {
    Ok(client
        .get_version(GetVersionRequest {
            runbook: name.to_owned(),
            version: version.to_owned(),
        })
        .await?
        .into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-05T06:07:08Z
    const T: i64 = 1_709_618_828_000;

    fn version(number: u32, hash: &str, cause: &str, source: &str) -> RunbookVersion {
        RunbookVersion {
            runbook: "deploy".into(),
            number,
            version: hash.into(),
            created_at: T + i64::from(number) * 60_000,
            path: "/rb/deploy.toml".into(),
            cause: cause.into(),
            source: source.into(),
            current: false,
        }
    }

    #[test]
    fn versions_are_a_table_marking_the_current_one() {
        let mut current = version(3, "2222222222222222aa", "rollback to 1 by ana", "");
        current.current = true;
        let versions = [
            version(1, "0000000000000000ff", "file", ""),
            version(2, "1111111111111111ee", "file", ""),
            current,
        ];
        let mut out = Vec::new();
        write_versions(&mut out, &versions).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "#  VERSION       SAVED                CAUSE\n\
             1  000000000000  2024-03-05 06:08:08  file\n\
             2  111111111111  2024-03-05 06:09:08  file\n\
             3  222222222222  2024-03-05 06:10:08  rollback to 1 by ana  current\n"
        );
    }

    #[test]
    fn diffs_are_unified_with_versions_in_the_headers() {
        let old = version(
            1,
            "0123456789abcdef",
            "file",
            "name = \"deploy\"\n\n[[steps]]\nid = \"build\"\nuses = \"shell\"\nrun = \"make\"\n",
        );
        let new = version(
            3,
            "fedcba9876543210",
            "file",
            "name = \"deploy\"\n\n[[steps]]\nid = \"build\"\nuses = \"shell\"\nrun = \"make all\"\n",
        );
        assert_eq!(
            unified_diff(&old, &new),
            "--- deploy #1 (0123456789ab)\n\
             +++ deploy #3 (fedcba987654)\n\
             @@ -3,4 +3,4 @@\n\
             \x20[[steps]]\n\
             \x20id = \"build\"\n\
             \x20uses = \"shell\"\n\
             -run = \"make\"\n\
             +run = \"make all\"\n"
        );
    }

    #[test]
    fn identical_sources_diff_to_nothing() {
        let a = version(1, "0123456789abcdef", "file", "name = \"deploy\"\n");
        let b = version(
            4,
            "0123456789abcdef",
            "rollback to 1 by ana",
            "name = \"deploy\"\n",
        );
        assert_eq!(unified_diff(&a, &b), "");
    }

    #[test]
    fn rollback_names_the_restored_and_the_new_version() {
        let target = version(1, "0123456789abcdef", "file", "");
        let now = version(4, "0123456789abcdef", "rollback to 1 by ana", "");
        assert_eq!(
            rolled_back(&target, &now),
            "rolled back deploy to #1: now #4 (0123456789ab)"
        );
    }
}
