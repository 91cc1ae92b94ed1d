//! End-to-end tests of the real `runbookd` and `runbook` binaries.
#![allow(clippy::unwrap_used)]

mod cli;
mod database;
mod flow;
mod graphql;
mod hostile;
mod http;
mod invocations;
mod load;
mod recovery;
mod reload;
mod resilience;
mod retry;
mod save;
mod secrets;
mod socket;
mod tui;
mod validate;
