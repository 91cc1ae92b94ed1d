//! End-to-end tests: the daemon (in the test process, or its real binary where the process is
//! the point) driven through the real `runbook` binary, the TUI and the gRPC API; and the
//! golden diagnostics of the runbook loader with the real plugins (`golden`).
#![allow(clippy::unwrap_used)]

mod agents;
mod audit;
mod cli;
mod clients;
mod completion_queue;
mod convert;
mod database;
mod disk;
mod escape;
mod flow;
mod golden;
mod graphql;
mod hostile;
mod http;
mod http_xml;
mod instruction;
mod invocations;
mod jwt;
mod load;
mod loops;
mod notify;
mod operations;
mod plugin_grants;
mod plugin_harness;
mod plugin_kit;
mod pressure;
mod python_plugin;
mod recovery;
mod reload;
mod resilience;
mod retention;
mod retry;
mod run_control;

mod sandbox;
mod save;
mod secrets;
mod socket;
mod trust;
mod tui;
mod validate;
