//! The scriptable command line: parses nothing itself (see [`args`]), builds the runtime, runs
//! one subcommand and turns its outcome into an exit code.

mod agents;
mod args;
mod audit;
mod connections;
mod decide;
mod follow;
mod logs;
mod plugin;
mod plugin_grants;
mod prune;
mod runbooks;
mod runs;
mod secret;
mod status;
mod table;
mod targets;
mod versions;

use std::io::Write;
use std::process::ExitCode;

pub use args::{Cli, Command, DaemonCommand, Global, PluginCommand, SecretCommand};

use crate::daemon::Target;
use crate::error::{self, EXIT_FAILED};

/// What every subcommand needs: where the daemon is and how to print.
#[derive(Debug)]
pub struct Ctx {
    /// The daemon to talk to.
    pub target: Target,
    /// Print JSON instead of text.
    pub json: bool,
}

impl Ctx {
    fn new(global: &Global) -> anyhow::Result<Self> {
        let socket = match &global.socket {
            Some(socket) => socket.clone(),
            None => crate::daemon::default_socket(global.data_dir.as_deref())?,
        };
        Ok(Self {
            target: Target {
                socket,
                autostart: !global.no_autostart,
                data_dir: global.data_dir.clone(),
                runbooks: global.runbooks.clone(),
            },
            json: global.json,
        })
    }
}

/// Runs the parsed command line to completion and returns the process's exit code.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let outcome = runtime.block_on(run(cli));
    // Background tasks (the TUI's poller) must not keep the process alive.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let (code, message) = error::report(&err);
            // Errors quote what runs and files hold (a param, a step's error).
            if let Some(message) = message {
                eprintln!("error: {}", crate::format::printable_lines(&message));
            }
            ExitCode::from(code)
        }
    }
}

/// Runs one command line; the `Ok` value is the exit code of a command that ran to its end
/// (a run that failed ends with 1 without being an error of the client).
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let ctx = Ctx::new(&cli.global)?;
    let Some(command) = cli.command else {
        return crate::app::run(ctx.target).await;
    };
    let mut out = std::io::stdout().lock();
    let code = dispatch(&ctx, command, &mut out).await?;
    out.flush()?;
    Ok(code)
}

async fn dispatch(ctx: &Ctx, command: Command, out: &mut dyn Write) -> anyhow::Result<u8> {
    match command {
        Command::Status => status::status(ctx, out, false).await,
        Command::Daemon { command } => match command {
            DaemonCommand::Status => status::status(ctx, out, true).await,
            DaemonCommand::Start => status::start(ctx, out).await,
            DaemonCommand::Stop => status::stop(ctx, out).await,
        },
        Command::Ls => runbooks::ls(ctx, out).await,
        Command::Validate { file } => runbooks::validate(ctx, out, &file).await,
        Command::Versions { name } => versions::list(ctx, out, &name).await,
        Command::Diff { name, from, to } => {
            versions::diff(ctx, out, &name, &from, to.as_deref()).await
        }
        Command::Rollback { name, target } => versions::rollback(ctx, out, &name, &target).await,
        Command::Run(args) => runs::start(ctx, out, args).await,
        Command::Runs(args) => runs::list(ctx, out, args).await,
        Command::Show { run } => runs::show(ctx, out, &run).await,
        Command::Watch { run } => runs::watch(ctx, out, &run).await,
        Command::Logs { run, step, follow } => {
            logs::logs(ctx, out, &run, step.as_deref(), follow).await
        }
        Command::Approve { run, step } => decide::approve(ctx, out, run, step).await,
        Command::Confirm { run, step, inputs } => {
            decide::confirm_step(ctx, out, run, step, inputs).await
        }
        Command::Deny { run, step, reason } => decide::deny(ctx, out, run, step, reason).await,
        Command::Resolve { run, step, action } => {
            decide::resolve(ctx, out, run, step, action).await
        }
        Command::Cancel { run } => decide::cancel(ctx, out, run).await,
        Command::Pause { run } => decide::pause(ctx, out, run, true).await,
        Command::Resume { run } => decide::pause(ctx, out, run, false).await,
        Command::Retry {
            run,
            from,
            latest,
            wait,
        } => runs::retry(ctx, out, run, from, latest, wait).await,
        Command::Secret { command } => secret::secret(ctx, out, command).await,
        Command::Plugin {
            command:
                PluginCommand::New {
                    kind,
                    dir,
                    sdk_path,
                    sdk_git,
                    sdk_rev,
                },
        } => {
            let sdk = match (sdk_path, sdk_git) {
                (Some(path), _) => plugin::SdkSource::Path(path),
                (None, Some(url)) => plugin::SdkSource::Git { url, rev: sdk_rev },
                (None, None) => unreachable!("clap requires --sdk-path or --sdk-git"),
            };
            plugin::new(out, &kind, dir, sdk)
        }
        Command::Plugin {
            command: PluginCommand::Ls,
        } => plugin_grants::ls(ctx, out).await,
        Command::Plugin {
            command: PluginCommand::Grant { kind, grant },
        } => plugin_grants::grant(ctx, out, kind, grant).await,
        Command::Plugin {
            command: PluginCommand::Revoke { kind, grant, all },
        } => plugin_grants::revoke(ctx, out, kind, grant, all).await,
        Command::Plugin {
            command: PluginCommand::Install { file, grant },
        } => plugin_grants::install(ctx, out, &file, grant).await,
        Command::Plugin {
            command: PluginCommand::Rm { kind },
        } => plugin_grants::rm(ctx, out, kind).await,
        Command::Complete {
            run,
            step,
            output,
            failed,
            reason,
        } => decide::complete(ctx, out, run, step, output, failed.then_some(reason)).await,
        Command::Targets => targets::list(ctx, out).await,
        Command::Audit {
            since,
            action,
            run,
            limit,
        } => {
            let args = audit::AuditArgs {
                since,
                action,
                run,
                limit,
            };
            audit::audit(ctx, out, args).await
        }
        Command::Prune {
            older_than,
            max_runs,
            dry_run,
        } => {
            let args = prune::PruneArgs {
                older_than,
                max_runs,
                dry_run,
            };
            prune::prune(ctx, out, args).await
        }
        Command::Connections => connections::list(ctx, out).await,
        Command::Agents => agents::list(ctx, out).await,
    }
}
