//! The text machinery of the in-TUI runbook editor: a line buffer with undo/redo and search,
//! and TOML highlighting. No screen and no daemon here: `state::editor` holds an editing
//! session and `ui::editor` draws it.

pub mod buffer;
pub mod highlight;

pub use buffer::{Buffer, Pos};
