//! End-to-end tests of the real `runbookd` and `runbook` binaries.
#![allow(clippy::unwrap_used)]

mod cli;
mod flow;
mod hostile;
mod recovery;
mod reload;
mod retry;
mod socket;
mod validate;
