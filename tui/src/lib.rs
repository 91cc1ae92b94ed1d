//! The `runbook` client: a scriptable CLI and a terminal UI, both talking to `runbookd` over its
//! Unix socket. `main.rs` only parses arguments; everything else lives here so tests can reach it.

pub mod action;
pub mod app;
pub mod cli;
pub mod client;
pub mod command;
pub mod daemon;
pub mod editor;
pub mod error;
pub mod format;
pub mod json;
pub mod keymap;
pub mod state;
pub mod theme;
pub mod ui;
pub mod update;
