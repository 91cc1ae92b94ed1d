//! End-to-end tests: the daemon (in the test process, or its real binary where the process is
//! the point) driven through the real `runbook` binary, the TUI and the gRPC API.
#![allow(clippy::unwrap_used)]

mod cli;
mod convert;
mod database;
mod escape;
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
mod sandbox;
mod save;
mod secrets;
mod socket;
mod trust;
mod tui;
mod validate;
