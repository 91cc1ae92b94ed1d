//! Entry point of `runbook`: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    runbook_tui::cli::main(runbook_tui::cli::Cli::parse())
}
