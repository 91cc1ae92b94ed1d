//! The command line: every flag and subcommand of `runbook`, parsed by clap. Values the client
//! can check alone (params, actions, statuses) are checked here, so mistakes exit 2 before any
//! daemon is contacted.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use runbook_protocol::v1::{ResolveAction, RunStatus};

/// Run operational runbooks from the terminal. With no subcommand, opens the terminal UI.
#[derive(Debug, Parser)]
#[command(name = "runbook", version, propagate_version = true)]
pub struct Cli {
    /// Flags every subcommand accepts.
    #[command(flatten)]
    pub global: Global,
    /// What to do; none opens the terminal UI.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags that every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/runbook/runbookd.sock]
    #[arg(long, env = "RUNBOOK_SOCKET", global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Do not start runbookd when no daemon answers on the socket
    #[arg(long, global = true)]
    pub no_autostart: bool,
    /// Data directory for a daemon this client starts
    #[arg(long, env = "RUNBOOK_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Runbooks directory for a daemon this client starts
    #[arg(long, env = "RUNBOOK_RUNBOOKS", global = true, value_name = "DIR")]
    pub runbooks: Option<PathBuf>,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the daemon's version, readiness (exit 1 when not ready), counters, store size,
    /// socket, directories and plugins
    Status,
    /// List the runbooks the daemon knows
    Ls,
    /// Check a runbook file without storing it
    Validate {
        /// The runbook file
        file: PathBuf,
    },
    /// List the versions of a runbook, oldest first
    Versions {
        /// The runbook's name
        name: String,
    },
    /// Show what changed between two versions of a runbook
    Diff {
        /// The runbook's name
        name: String,
        /// The version to diff from: a number (`3`), a content hash or a unique prefix of one
        from: String,
        /// The version to diff to, as above [default: the current version]
        to: Option<String>,
    },
    /// Make an earlier version of a runbook current again by writing it back to its file
    Rollback {
        /// The runbook's name
        name: String,
        /// The version to restore: a number (`3`), a content hash or a unique prefix of one
        // Not `version`: clap would take it for the `--version` flag every command has.
        #[arg(value_name = "VERSION")]
        target: String,
    },
    /// Start a run of a runbook
    Run(RunArgs),
    /// List runs, newest first
    Runs(RunsArgs),
    /// Show a run and its steps
    Show {
        /// Run id (or a unique prefix)
        run: String,
    },
    /// Print the output of a run's steps
    Logs {
        /// Run id (or a unique prefix)
        run: String,
        /// Only this step's output
        #[arg(long, value_name = "ID")]
        step: Option<String>,
        /// Keep printing until the run ends
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Follow a run live until it ends
    Watch {
        /// Run id (or a unique prefix)
        run: String,
    },
    /// Approve a step that waits for approval
    Approve {
        /// Run id (or a unique prefix)
        run: String,
        /// Step id
        step: String,
    },
    /// Mark an instruction step done, with the values it asks for; they become its output
    Confirm {
        /// Run id (or a unique prefix)
        run: String,
        /// Step id
        step: String,
        /// A value the step asks for (repeatable), typed and checked by the daemon
        #[arg(short = 'i', long = "input", value_name = "KEY=VALUE", value_parser = parse_param)]
        inputs: Vec<(String, String)>,
    },
    /// Refuse a step that waits for approval; it fails
    Deny {
        /// Run id (or a unique prefix)
        run: String,
        /// Step id
        step: String,
        /// Why, recorded with the step's failure
        #[arg(long, value_name = "R", default_value = "")]
        reason: String,
    },
    /// Decide what happens to an ambiguous step
    Resolve {
        /// Run id (or a unique prefix)
        run: String,
        /// Step id
        step: String,
        /// retry, skip or fail
        #[arg(value_parser = parse_resolve_action)]
        action: ResolveAction,
    },
    /// Cancel a run
    Cancel {
        /// Run id (or a unique prefix)
        run: String,
    },
    /// Pause a run: running steps finish, no step starts until it is resumed
    Pause {
        /// Run id (or a unique prefix)
        run: String,
    },
    /// Resume a paused run
    Resume {
        /// Run id (or a unique prefix)
        run: String,
    },
    /// Take a failed, cancelled or timed-out run back to running under the same id: completed
    /// steps keep their outputs, the others run again with a new attempt
    Retry {
        /// Run id (or a unique prefix)
        run: String,
        /// Also run this step and every step downstream of it again, completed or not (the
        /// only way to retry a completed run)
        #[arg(long, value_name = "STEP")]
        from: Option<String>,
        /// Move the run to the runbook's current version first; refused when a step that
        /// stays completed is defined differently there
        #[arg(long)]
        latest: bool,
        /// Follow the run until it ends; exit 0 if it completed, 1 otherwise
        #[arg(long)]
        wait: bool,
    },
    /// End a step that waits for an async invocation (completed unless --failed)
    Complete {
        /// Run id (or a unique prefix)
        run: String,
        /// Step id, or the invocation id the step waits for
        step: String,
        /// The step's output, as JSON (`-` reads it from stdin)
        #[arg(long, value_name = "JSON", conflicts_with = "failed")]
        output: Option<String>,
        /// Fail the step instead
        #[arg(long)]
        failed: bool,
        /// Why it failed (with --failed)
        #[arg(long, value_name = "R", default_value = "", requires = "failed")]
        reason: String,
    },
    /// Remove ended runs with all their records, by age or count (or the daemon's [retention])
    Prune {
        /// Remove runs that ended more than this long ago, e.g. "30d" or "12h"
        #[arg(long, value_name = "D", value_parser = parse_age)]
        older_than: Option<std::time::Duration>,
        /// Keep at most this many ended runs, newest first
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_runs: Option<u32>,
        /// List what would be removed; remove nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// The audit log: every request that changed something, or tried to, oldest first
    Audit {
        /// Only entries from the last D, e.g. "1h" or "7d"
        #[arg(long, value_name = "D", value_parser = parse_age)]
        since: Option<std::time::Duration>,
        /// Only this action: start, approve, confirm, deny, resolve, cancel, pause, resume, complete,
        /// save, rollback, secret_set, secret_rm, prune, prune_dry_run, shutdown
        #[arg(long, value_name = "A")]
        action: Option<String>,
        /// Only entries about this run (id or a unique prefix)
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        /// The newest N entries (at most 1000)
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
    },
    /// Targets steps have used: circuit breakers and rate limits
    Targets,
    /// Database connections and whether each answers (never their credentials)
    Connections,
    /// Remote agents the daemon knows on NATS: labels, version, last heartbeat, steps running
    Agents,
    /// Set, list and remove the secrets runbooks use as `{{ secrets.NAME }}`
    Secret {
        /// What to do with the secrets.
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Step plugins: write a new one (needs no daemon), install, list, grant, revoke, remove
    Plugin {
        /// What to do.
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Start, stop or inspect the background daemon
    Daemon {
        /// What to do with the daemon.
        #[command(subcommand)]
        command: DaemonCommand,
    },
}

/// `runbook run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The runbook's name
    pub name: String,
    /// A parameter, repeatable; typed by the daemon against the runbook's [params] (a `list` param takes a,b,c or a JSON list)
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Follow the run until it ends; exit 0 if it completed, 1 otherwise
    #[arg(long)]
    pub wait: bool,
    /// Plan every step and record its plan as its output; execute nothing, ask no approval
    #[arg(long)]
    pub dry_run: bool,
    /// Run only these steps (comma-separated or repeated); the others are skipped as "not
    /// selected"
    #[arg(long, value_name = "STEP,...", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Run this step and every step downstream of it
    #[arg(long, value_name = "STEP")]
    pub from: Option<String>,
    /// Run this step and every step it needs
    #[arg(long, value_name = "STEP")]
    pub to: Option<String>,
    /// Lend the outputs of this earlier run (of the same version) to selected steps that read
    /// steps left out
    #[arg(long, value_name = "RUN")]
    pub outputs_from: Option<String>,
}

/// `runbook runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this runbook
    #[arg(long, value_name = "N")]
    pub runbook: Option<String>,
    /// Only runs in this status
    #[arg(long, value_name = "S", value_parser = parse_run_status)]
    pub status: Option<RunStatus>,
    /// At most this many runs
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
}

/// `runbook daemon ...`.
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Start runbookd in the background unless one is running
    Start,
    /// Ask runbookd to shut down and wait until it has
    Stop,
    /// Show the daemon's status (never starts one)
    Status,
}

/// `plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Write a standalone crate for a new step kind, from the SDK's template: it builds for
    /// wasm32-wasip2 out of the box, and `cargo test` then passes in it (the step's own tests
    /// and the built component's in runbookd's host)
    New {
        /// The step kind runbooks will name in `uses` (lowercase letters, digits, `-`, `_`)
        kind: String,
        /// Where to write it; ./runbook-plugin-KIND by default. Must not exist, or be empty
        #[arg(long, value_name = "D")]
        dir: Option<PathBuf>,
        /// The SDK from a checkout of runbook: its plugin-sdk directory
        #[arg(
            long,
            value_name = "P",
            conflicts_with = "sdk_git",
            required_unless_present = "sdk_git"
        )]
        sdk_path: Option<PathBuf>,
        /// The SDK from runbook's git repository
        #[arg(long, value_name = "URL")]
        sdk_git: Option<String>,
        /// With --sdk-git: the revision (commit or tag) to use
        #[arg(long, value_name = "REV", requires = "sdk_git")]
        sdk_rev: Option<String>,
    },
    /// List the plugins: each step kind with its version, source, the host interfaces its
    /// component imports and its grants; and plugins-directory files that were refused, and why
    Ls,
    /// Grant a user plugin what its component imports (stored by the daemon, audited); a plugin
    /// refused for want of it loads at once
    Grant {
        /// The step kind, as its plugin's `describe` names it
        kind: String,
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// Take away grants given with `plugin grant` (the daemon config's stay); a plugin that
    /// no longer has what its component imports is unloaded
    Revoke {
        /// The step kind
        kind: String,
        #[command(flatten)]
        grant: GrantArgs,
        /// Take away everything `plugin grant` gave it
        #[arg(long)]
        all: bool,
    },
    /// Install a component (a `.wasm` built for wasm32-wasip2) into the daemon's plugins
    /// directory with the grants it needs: checked first, then put in place atomically and
    /// loaded at once. Replaces an earlier install of the same step kind
    Install {
        /// The component file
        file: PathBuf,
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// Remove a user plugin's file, and the grants given to it
    Rm {
        /// The step kind
        kind: String,
    },
}

/// What `plugin grant` gives and `plugin revoke` takes away.
#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// A host its `http` calls may reach: `name`, `name:port`, `*.domain` or `*` (repeatable)
    #[arg(long = "host", visible_alias = "allow-host", value_name = "H")]
    pub hosts: Vec<String>,
    /// A database connection its `sql` calls may use, by name (repeatable)
    #[arg(
        long = "connection",
        visible_alias = "allow-connection",
        value_name = "C"
    )]
    pub connections: Vec<String>,
    /// It may run processes (still only those its approved plan names)
    #[arg(long, visible_alias = "allow-process")]
    pub process: bool,
    /// It may have the daemon sign JSON Web Tokens with keys from the vault
    #[arg(long, visible_alias = "allow-jwt")]
    pub jwt: bool,
    /// Whether its steps wait for an approval (the daemon config's `[approvals]` entry for
    /// the kind wins); with `revoke`, either value takes the setting away
    #[arg(long, value_name = "required|auto", value_parser = ["required", "auto"])]
    pub approval: Option<String>,
}

/// `secret ...`. Values are never arguments: they would land in the shell's history and in
/// every process listing.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret: the value is read from stdin, or prompted for without echo
    Set {
        /// Letters, digits and `_`, not starting with a digit
        #[arg(value_parser = super::secret::parse_name)]
        name: String,
    },
    /// List the secrets (never their values)
    Ls,
    /// Remove a secret
    Rm {
        /// The secret's name
        name: String,
    },
    /// Show who set or removed which secret, and when, oldest first
    Log,
}

/// `key=value`, split on the first `=` (values may contain `=`).
fn parse_age(raw: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(raw).map_err(|err| {
        format!("`{raw}` is not a duration ({err}); write it like \"30d\" or \"12h\"")
    })
}

fn parse_param(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some(("", _)) => Err("the key before `=` is empty".to_owned()),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err(format!("expected KEY=VALUE, got `{raw}`")),
    }
}

const RESOLVE_ACTIONS: [&str; 3] = ["retry", "skip", "fail"];

fn parse_resolve_action(raw: &str) -> Result<ResolveAction, String> {
    ResolveAction::from_label(raw).ok_or_else(|| {
        format!(
            "unknown action `{raw}`; expected one of: {}",
            RESOLVE_ACTIONS.join(", ")
        )
    })
}

/// Every status a run can be listed by, as users type them.
const RUN_STATUSES: [RunStatus; 8] = [
    RunStatus::Pending,
    RunStatus::Running,
    RunStatus::Waiting,
    RunStatus::Paused,
    RunStatus::Completed,
    RunStatus::Failed,
    RunStatus::Cancelled,
    RunStatus::TimedOut,
];

fn parse_run_status(raw: &str) -> Result<RunStatus, String> {
    RunStatus::from_label(raw).ok_or_else(|| {
        let valid: Vec<_> = RUN_STATUSES.iter().map(|s| s.label()).collect();
        format!(
            "unknown status `{raw}`; expected one of: {}",
            valid.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn params_split_on_the_first_equals() {
        assert_eq!(parse_param("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_param("a="), Ok(("a".into(), String::new())));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=x").is_err());
    }

    #[test]
    fn statuses_and_actions_parse_from_labels() {
        assert_eq!(parse_run_status("timed_out"), Ok(RunStatus::TimedOut));
        let err = parse_run_status("bogus").expect_err("rejected");
        assert!(err.contains("timed_out"), "{err}");
        assert_eq!(parse_resolve_action("skip"), Ok(ResolveAction::Skip));
        assert!(
            parse_resolve_action("bogus")
                .expect_err("rejected")
                .contains("retry, skip, fail")
        );
        for status in RUN_STATUSES {
            assert_eq!(RunStatus::from_label(status.label()), Some(status));
        }
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["runbook", "runs", "--json", "--socket", "/tmp/s"])
            .expect("parses");
        assert!(cli.global.json);
        assert_eq!(cli.global.socket, Some(PathBuf::from("/tmp/s")));
    }

    #[test]
    fn diff_compares_with_the_current_version_by_default() {
        let cli = Cli::try_parse_from(["runbook", "diff", "deploy", "1"]).expect("parses");
        let Some(Command::Diff { name, from, to }) = cli.command else {
            panic!("not a diff: {:?}", cli.command);
        };
        assert_eq!((name.as_str(), from.as_str(), to), ("deploy", "1", None));
        assert!(Cli::try_parse_from(["runbook", "diff", "deploy"]).is_err());
        assert!(Cli::try_parse_from(["runbook", "rollback", "deploy"]).is_err());
        let cli = Cli::try_parse_from(["runbook", "rollback", "deploy", "ab12"]).expect("parses");
        assert!(
            matches!(&cli.command, Some(Command::Rollback { target, .. }) if target == "ab12"),
            "{:?}",
            cli.command
        );
    }
}
