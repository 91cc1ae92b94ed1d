//! One editing session of a runbook file: the buffer, what the daemon last said about it
//! (diagnostics, saves), and the view's scroll position.

use runbook_protocol::v1::{Diagnostic, RunbookDetail};

use crate::editor::Buffer;

/// How long typing must pause before the text is sent to the daemon for validation.
pub const VALIDATE_AFTER_MS: i64 = 300;

/// What the daemon last said about the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validity {
    /// Not checked yet (or changed since and the check is pending).
    Unknown,
    /// A check is under way.
    Checking,
    /// Valid.
    Valid,
    /// Invalid: see the diagnostics.
    Invalid,
    /// The check itself failed (daemon gone, say).
    Failed(String),
}

/// An editing session of one runbook file.
#[derive(Debug, Clone, PartialEq)]
pub struct EditorState {
    /// The runbook's name.
    pub runbook: String,
    /// Its file, shown in the title and in diagnostics.
    pub path: String,
    /// The text.
    pub buffer: Buffer,
    /// The text as last loaded or saved: the buffer differs from it when there are unsaved
    /// changes.
    pub saved_text: String,
    /// The file's content hash when it was loaded or saved, sent with a save so that the
    /// daemon refuses it if someone else changed the file since.
    pub base_hash: String,
    /// The first line shown.
    pub scroll_top: usize,
    /// The first column shown, for lines wider than the screen.
    pub scroll_left: usize,
    /// Problems the daemon found in the text, in its last check.
    pub diagnostics: Vec<Diagnostic>,
    /// The outcome of the last check.
    pub validity: Validity,
    /// Bumped on every edit; a validation answer for an older generation is stale.
    pub generation: u64,
    /// When the text should be validated (after typing pauses), if it changed.
    pub validate_due: Option<i64>,
    /// A save is under way.
    pub saving: bool,
    /// The last save was refused because the file changed on disk: the next save overwrites.
    pub conflict: bool,
    /// Esc was pressed with unsaved changes: pressing it again discards them.
    pub confirm_discard: bool,
    /// The last search, highlighted and repeated by next/previous match.
    pub search: Option<String>,
    /// A reload from disk was asked for: the next detail of this runbook replaces the text
    /// even when it has unsaved changes.
    pub reload_requested: bool,
}

impl EditorState {
    /// A session on the file of `detail` as it is on disk now (which may be invalid).
    pub fn open(detail: &RunbookDetail, now_ms: i64) -> Self {
        let summary = detail.summary.clone().unwrap_or_default();
        // A daemon too old to send the file's source: the current version is the best guess.
        let text = if detail.file_hash.is_empty() {
            detail.source.clone()
        } else {
            detail.file_source.clone()
        };
        Self {
            runbook: summary.name,
            path: summary.path,
            buffer: Buffer::new(&text),
            saved_text: Buffer::new(&text).text(),
            base_hash: detail.file_hash.clone(),
            scroll_top: 0,
            scroll_left: 0,
            diagnostics: summary.diagnostics,
            validity: if summary.valid {
                Validity::Valid
            } else {
                Validity::Invalid
            },
            generation: 0,
            // Checked at once: the daemon's summary may describe another text than the file.
            validate_due: Some(now_ms),
            saving: false,
            conflict: false,
            confirm_discard: false,
            search: None,
            reload_requested: false,
        }
    }

    /// Whether the text differs from what was loaded or last saved.
    pub fn dirty(&self) -> bool {
        self.buffer.text() != self.saved_text
    }

    /// The diagnostics located on line `row` (0-based).
    pub fn diagnostics_at(&self, row: usize) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(move |d| d.line as usize == row + 1)
    }
}

/// How the editor screen is divided, on a terminal of a given size. `ui::editor` draws with
/// it and `update` scrolls with it, so that both agree on what is visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditorLayout {
    /// Rows of the diagnostics panel under the text (borders included); 0 when valid.
    pub diagnostic_rows: u16,
    /// Columns of the gutter: line number, diagnostic marker, space.
    pub gutter: u16,
    /// Columns of text shown.
    pub text_cols: u16,
    /// Rows of text shown.
    pub text_rows: u16,
}

/// At most this many diagnostics are listed under the text; the gutter marks them all.
pub const DIAGNOSTIC_LINES: usize = 3;

impl EditorState {
    /// The layout on a terminal of `size` (columns, rows).
    pub fn layout(&self, size: (u16, u16)) -> EditorLayout {
        // The status bar and the footer take a row each.
        let body = size.1.saturating_sub(2);
        let listed = self.diagnostics.len().min(DIAGNOSTIC_LINES) as u16;
        let diagnostic_rows = if listed == 0 {
            0
        } else {
            (listed + 2).min(body / 2)
        };
        let digits = self.buffer.lines().len().to_string().len() as u16;
        let gutter = digits.max(3) + 2;
        EditorLayout {
            diagnostic_rows,
            gutter,
            text_cols: size.0.saturating_sub(2 + gutter).max(1),
            text_rows: body.saturating_sub(diagnostic_rows + 2).max(1),
        }
    }

    /// Scrolls so that the cursor is on screen, moving as little as possible.
    pub fn scroll_to_cursor(&mut self, size: (u16, u16)) {
        let layout = self.layout(size);
        let rows = usize::from(layout.text_rows);
        let cols = usize::from(layout.text_cols);
        let cursor = self.buffer.cursor();
        if cursor.row < self.scroll_top {
            self.scroll_top = cursor.row;
        } else if cursor.row >= self.scroll_top + rows {
            self.scroll_top = cursor.row + 1 - rows;
        }
        if cursor.col < self.scroll_left {
            self.scroll_left = cursor.col;
        } else if cursor.col >= self.scroll_left + cols {
            self.scroll_left = cursor.col + 1 - cols;
        }
    }
}
