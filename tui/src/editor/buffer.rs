//! The editor's text: lines, a cursor, editing with undo/redo, and search. Columns count
//! characters, not bytes, so that multi-byte text never splits a character.

/// A position in the buffer: 0-based line and character column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// The line.
    pub row: usize,
    /// The character within the line.
    pub col: usize,
}

impl Pos {
    /// The position at `row`, `col`.
    pub fn new(row: usize, col: usize) -> Self {
        Self { row, col }
    }
}

/// How many undo steps are kept; older ones are dropped.
const UNDO_LIMIT: usize = 500;
/// What Tab inserts: TOML files here are indented with spaces.
const INDENT: &str = "  ";

/// What the last edit was, so that typing a word undoes as one step rather than per letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EditKind {
    Insert,
    Delete,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    lines: Vec<String>,
    cursor: Pos,
}

/// A text being edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    lines: Vec<String>,
    cursor: Pos,
    /// The column vertical moves aim for, kept across short lines.
    goal_col: usize,
    undo: Vec<Snapshot>,
    redo: Vec<Snapshot>,
    last_edit: Option<EditKind>,
}

impl Default for Buffer {
    fn default() -> Self {
        Self::new("")
    }
}

impl Buffer {
    /// A buffer holding `text`, cursor at the start. Windows line ends become `\n`: a `\r`
    /// would otherwise show as a stray character at every line end.
    pub fn new(text: &str) -> Self {
        let lines = text
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line).to_owned())
            .collect();
        Self {
            lines,
            cursor: Pos::default(),
            goal_col: 0,
            undo: Vec::new(),
            redo: Vec::new(),
            last_edit: None,
        }
    }

    /// The whole text, lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Every line, without line ends.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The cursor.
    pub fn cursor(&self) -> Pos {
        self.cursor
    }

    fn line_len(&self, row: usize) -> usize {
        self.lines.get(row).map_or(0, |line| line.chars().count())
    }

    fn current(&self) -> &str {
        self.lines.get(self.cursor.row).map_or("", String::as_str)
    }

    /// Moves the cursor to `pos`, clamped into the text.
    pub fn set_cursor(&mut self, pos: Pos) {
        let row = pos.row.min(self.lines.len().saturating_sub(1));
        self.cursor = Pos::new(row, pos.col.min(self.line_len(row)));
        self.goal_col = self.cursor.col;
        self.last_edit = None;
    }

    // ---- movement -------------------------------------------------------------------------

    /// One character left, to the end of the previous line at a line start.
    pub fn left(&mut self) {
        let Pos { row, col } = self.cursor;
        let to = match (col, row) {
            (0, 0) => self.cursor,
            (0, _) => Pos::new(row - 1, self.line_len(row - 1)),
            _ => Pos::new(row, col - 1),
        };
        self.set_cursor(to);
    }

    /// One character right, to the start of the next line at a line end.
    pub fn right(&mut self) {
        let Pos { row, col } = self.cursor;
        let to = if col < self.line_len(row) {
            Pos::new(row, col + 1)
        } else if row + 1 < self.lines.len() {
            Pos::new(row + 1, 0)
        } else {
            self.cursor
        };
        self.set_cursor(to);
    }

    /// `n` lines up, keeping the goal column.
    pub fn up(&mut self, n: usize) {
        let row = self.cursor.row.saturating_sub(n);
        self.vertical(row);
    }

    /// `n` lines down, keeping the goal column.
    pub fn down(&mut self, n: usize) {
        let row = (self.cursor.row + n).min(self.lines.len().saturating_sub(1));
        self.vertical(row);
    }

    fn vertical(&mut self, row: usize) {
        self.cursor = Pos::new(row, self.goal_col.min(self.line_len(row)));
        self.last_edit = None;
    }

    /// To the first non-blank character of the line, or to column 0 when already there.
    pub fn home(&mut self) {
        let indent = self
            .current()
            .chars()
            .take_while(|c| c.is_whitespace())
            .count();
        let col = if self.cursor.col == indent { 0 } else { indent };
        self.set_cursor(Pos::new(self.cursor.row, col));
    }

    /// To the end of the line.
    pub fn end(&mut self) {
        self.set_cursor(Pos::new(self.cursor.row, self.line_len(self.cursor.row)));
    }

    /// To the start of the text.
    pub fn top(&mut self) {
        self.set_cursor(Pos::default());
    }

    /// To the end of the text.
    pub fn bottom(&mut self) {
        let row = self.lines.len().saturating_sub(1);
        self.set_cursor(Pos::new(row, self.line_len(row)));
    }

    /// To the start of the previous word.
    pub fn word_left(&mut self) {
        if self.cursor.col == 0 {
            self.left();
            return;
        }
        let chars: Vec<char> = self.current().chars().collect();
        let mut col = self.cursor.col;
        while col > 0 && !is_word(chars[col - 1]) {
            col -= 1;
        }
        while col > 0 && is_word(chars[col - 1]) {
            col -= 1;
        }
        self.set_cursor(Pos::new(self.cursor.row, col));
    }

    /// To the end of the next word.
    pub fn word_right(&mut self) {
        let chars: Vec<char> = self.current().chars().collect();
        if self.cursor.col >= chars.len() {
            self.right();
            return;
        }
        let mut col = self.cursor.col;
        while col < chars.len() && !is_word(chars[col]) {
            col += 1;
        }
        while col < chars.len() && is_word(chars[col]) {
            col += 1;
        }
        self.set_cursor(Pos::new(self.cursor.row, col));
    }

    // ---- editing --------------------------------------------------------------------------

    /// Remembers the text before an edit of `kind`; a run of edits of the same kind (typing,
    /// deleting) shares one undo step.
    fn checkpoint(&mut self, kind: EditKind) {
        if self.last_edit != Some(kind) || kind == EditKind::Other {
            self.undo.push(Snapshot {
                lines: self.lines.clone(),
                cursor: self.cursor,
            });
            if self.undo.len() > UNDO_LIMIT {
                self.undo.remove(0);
            }
        }
        self.redo.clear();
        self.last_edit = Some(kind);
    }

    /// Types `c` at the cursor.
    pub fn insert_char(&mut self, c: char) {
        // A word boundary starts a new undo step, so that undo takes back one word at a time.
        if c.is_whitespace() {
            self.last_edit = None;
        }
        self.checkpoint(EditKind::Insert);
        let Pos { row, col } = self.cursor;
        let at = byte_index(&self.lines[row], col);
        self.lines[row].insert(at, c);
        self.cursor.col += 1;
        self.goal_col = self.cursor.col;
    }

    /// Inserts `text` (a paste, say), which may span lines, as one undo step.
    pub fn insert_str(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.checkpoint(EditKind::Other);
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let Pos { row, col } = self.cursor;
        let at = byte_index(&self.lines[row], col);
        let tail = self.lines[row].split_off(at);
        let mut pieces = text.split('\n');
        // `split` always yields at least one piece.
        self.lines[row].push_str(pieces.next().unwrap_or_default());
        let mut last_row = row;
        for piece in pieces {
            last_row += 1;
            self.lines.insert(last_row, piece.to_owned());
        }
        let col = self.lines[last_row].chars().count();
        self.lines[last_row].push_str(&tail);
        self.cursor = Pos::new(last_row, col);
        self.goal_col = col;
        self.last_edit = None;
    }

    /// Splits the line at the cursor; the new line keeps the indentation of the old one.
    pub fn newline(&mut self) {
        self.checkpoint(EditKind::Other);
        let Pos { row, col } = self.cursor;
        let at = byte_index(&self.lines[row], col);
        let tail = self.lines[row].split_off(at);
        let indent: String = self.lines[row]
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        let col = indent.chars().count();
        self.lines.insert(row + 1, indent + &tail);
        self.cursor = Pos::new(row + 1, col);
        self.goal_col = col;
        self.last_edit = None;
    }

    /// Inserts spaces up to the next indentation stop.
    pub fn indent(&mut self) {
        self.checkpoint(EditKind::Other);
        let Pos { row, col } = self.cursor;
        let width = INDENT.len() - col % INDENT.len();
        let at = byte_index(&self.lines[row], col);
        self.lines[row].insert_str(at, &" ".repeat(width));
        self.cursor.col += width;
        self.goal_col = self.cursor.col;
        self.last_edit = None;
    }

    /// Deletes the character before the cursor, joining lines at a line start.
    pub fn backspace(&mut self) {
        let Pos { row, col } = self.cursor;
        if col == 0 && row == 0 {
            return;
        }
        self.checkpoint(EditKind::Delete);
        if col == 0 {
            let line = self.lines.remove(row);
            let prev = self.line_len(row - 1);
            self.lines[row - 1].push_str(&line);
            self.cursor = Pos::new(row - 1, prev);
        } else {
            let at = byte_index(&self.lines[row], col - 1);
            self.lines[row].remove(at);
            self.cursor.col -= 1;
        }
        self.goal_col = self.cursor.col;
    }

    /// Deletes the character under the cursor, joining lines at a line end.
    pub fn delete(&mut self) {
        let Pos { row, col } = self.cursor;
        let at_end = col >= self.line_len(row);
        if at_end && row + 1 >= self.lines.len() {
            return;
        }
        self.checkpoint(EditKind::Delete);
        if at_end {
            let next = self.lines.remove(row + 1);
            self.lines[row].push_str(&next);
        } else {
            let at = byte_index(&self.lines[row], col);
            self.lines[row].remove(at);
        }
    }

    /// Takes back the last edit; false when there is none.
    pub fn undo(&mut self) -> bool {
        let Some(snapshot) = self.undo.pop() else {
            return false;
        };
        self.redo.push(Snapshot {
            lines: std::mem::replace(&mut self.lines, snapshot.lines),
            cursor: self.cursor,
        });
        self.set_cursor(snapshot.cursor);
        true
    }

    /// Does again what undo took back; false when there is nothing.
    pub fn redo(&mut self) -> bool {
        let Some(snapshot) = self.redo.pop() else {
            return false;
        };
        self.undo.push(Snapshot {
            lines: std::mem::replace(&mut self.lines, snapshot.lines),
            cursor: self.cursor,
        });
        self.set_cursor(snapshot.cursor);
        true
    }

    /// Replaces the whole text (a reload from disk) as one undoable step.
    pub fn replace_all(&mut self, text: &str) {
        self.checkpoint(EditKind::Other);
        let cursor = self.cursor;
        let fresh = Self::new(text);
        self.lines = fresh.lines;
        self.set_cursor(cursor);
    }

    // ---- search ---------------------------------------------------------------------------

    /// The next match of `query` (ignoring ASCII case) after `from`, wrapping around the end.
    pub fn find_forward(&self, query: &str, from: Pos) -> Option<Pos> {
        let needle = fold(query);
        if needle.is_empty() {
            return None;
        }
        let count = self.lines.len();
        for step in 0..=count {
            let row = (from.row + step) % count;
            let hay = fold(&self.lines[row]);
            let start = if step == 0 { from.col + 1 } else { 0 };
            let found = find_chars(&hay, &needle, start);
            // On the wrap back to the first line, only matches before `from` are new.
            if let Some(col) = found
                && (step < count || col <= from.col)
            {
                return Some(Pos::new(row, col));
            }
        }
        None
    }

    /// The first match of `query` at or after `from`, wrapping around the end.
    pub fn find_from(&self, query: &str, from: Pos) -> Option<Pos> {
        if self.matches_in_line(query, from.row).contains(&from.col) {
            return Some(from);
        }
        self.find_forward(query, from)
    }

    /// The previous match of `query` before `from`, wrapping around the start.
    pub fn find_backward(&self, query: &str, from: Pos) -> Option<Pos> {
        let needle = fold(query);
        if needle.is_empty() {
            return None;
        }
        let count = self.lines.len();
        for step in 0..=count {
            let row = (from.row + count * 2 - step) % count;
            let hay = fold(&self.lines[row]);
            let found = all_matches(&hay, &needle)
                .into_iter()
                .filter(|col| step != 0 || *col < from.col)
                .rfind(|col| step != count || *col >= from.col);
            if let Some(col) = found {
                return Some(Pos::new(row, col));
            }
        }
        None
    }

    /// The columns where `query` starts in line `row`, for highlighting.
    pub fn matches_in_line(&self, query: &str, row: usize) -> Vec<usize> {
        let needle = fold(query);
        match self.lines.get(row) {
            Some(line) if !needle.is_empty() => all_matches(&fold(line), &needle),
            _ => Vec::new(),
        }
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// The byte offset of character `col` in `line` (its length past the end).
pub fn byte_index(line: &str, col: usize) -> usize {
    line.char_indices().nth(col).map_or(line.len(), |(i, _)| i)
}

/// Characters with ASCII letters lower-cased: one char per char, so columns stay valid.
fn fold(text: &str) -> Vec<char> {
    text.chars().map(|c| c.to_ascii_lowercase()).collect()
}

fn find_chars(hay: &[char], needle: &[char], start: usize) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    (start..=hay.len() - needle.len()).find(|&i| hay[i..i + needle.len()] == *needle)
}

fn all_matches(hay: &[char], needle: &[char]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut start = 0;
    while let Some(col) = find_chars(hay, needle, start) {
        found.push(col);
        start = col + needle.len().max(1);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(buffer: &mut Buffer, text: &str) {
        for c in text.chars() {
            if c == '\n' {
                buffer.newline();
            } else {
                buffer.insert_char(c);
            }
        }
    }

    #[test]
    fn text_round_trips_with_its_final_newline() {
        let text = "name = \"x\"\n\n[[steps]]\n";
        assert_eq!(Buffer::new(text).text(), text);
        assert_eq!(Buffer::new("a\r\nb").text(), "a\nb");
    }

    #[test]
    fn editing_moves_the_cursor_and_keeps_indentation() {
        let mut buffer = Buffer::new("");
        typed(&mut buffer, "[x]\n  a = 1\nb");
        assert_eq!(buffer.text(), "[x]\n  a = 1\n  b");
        assert_eq!(buffer.cursor(), Pos::new(2, 3));
        buffer.home();
        assert_eq!(buffer.cursor().col, 2, "home goes to the first non-blank");
        buffer.home();
        assert_eq!(buffer.cursor().col, 0);
        buffer.backspace();
        assert_eq!(
            buffer.text(),
            "[x]\n  a = 1  b",
            "backspace at a line start joins"
        );
        buffer.end();
        buffer.delete();
        assert_eq!(
            buffer.lines().len(),
            2,
            "delete at the very end does nothing"
        );
    }

    #[test]
    fn vertical_moves_keep_the_goal_column() {
        let mut buffer = Buffer::new("long line\nab\nanother long");
        buffer.set_cursor(Pos::new(0, 7));
        buffer.down(1);
        assert_eq!(buffer.cursor(), Pos::new(1, 2));
        buffer.down(1);
        assert_eq!(buffer.cursor(), Pos::new(2, 7));
        buffer.up(10);
        assert_eq!(buffer.cursor(), Pos::new(0, 7));
    }

    #[test]
    fn undo_takes_back_a_word_at_a_time_and_redo_restores() {
        let mut buffer = Buffer::new("");
        typed(&mut buffer, "hello world");
        assert!(buffer.undo());
        assert_eq!(buffer.text(), "hello");
        assert!(buffer.undo());
        assert_eq!(buffer.text(), "");
        assert!(!buffer.undo());
        assert!(buffer.redo());
        assert!(buffer.redo());
        assert_eq!(buffer.text(), "hello world");
        assert!(!buffer.redo());
        buffer.backspace();
        buffer.backspace();
        assert!(buffer.undo(), "a run of deletes is one step");
        assert_eq!(buffer.text(), "hello world");
    }

    #[test]
    fn a_new_edit_drops_the_redo_history() {
        let mut buffer = Buffer::new("");
        typed(&mut buffer, "a");
        buffer.undo();
        typed(&mut buffer, "b");
        assert!(!buffer.redo());
        assert_eq!(buffer.text(), "b");
    }

    #[test]
    fn pasting_spans_lines_as_one_step() {
        let mut buffer = Buffer::new("ab");
        buffer.set_cursor(Pos::new(0, 1));
        buffer.insert_str("1\n2\n3");
        assert_eq!(buffer.text(), "a1\n2\n3b");
        assert_eq!(buffer.cursor(), Pos::new(2, 1));
        buffer.undo();
        assert_eq!(buffer.text(), "ab");
    }

    #[test]
    fn multibyte_text_is_edited_by_character() {
        let mut buffer = Buffer::new("héllo");
        buffer.set_cursor(Pos::new(0, 2));
        buffer.backspace();
        assert_eq!(buffer.text(), "hllo");
        buffer.insert_char('é');
        assert_eq!(buffer.text(), "héllo");
    }

    #[test]
    fn search_wraps_both_ways_and_ignores_case() {
        let buffer = Buffer::new("Step a\nother\nstep b");
        let first = buffer.find_forward("step", Pos::new(0, 0));
        assert_eq!(first, Some(Pos::new(2, 0)));
        let wrapped = buffer.find_forward("step", Pos::new(2, 0));
        assert_eq!(wrapped, Some(Pos::new(0, 0)));
        let back = buffer.find_backward("step", Pos::new(0, 0));
        assert_eq!(back, Some(Pos::new(2, 0)));
        assert_eq!(buffer.find_forward("nope", Pos::default()), None);
        assert_eq!(buffer.matches_in_line("e", 1), vec![3]);
    }

    #[test]
    fn words_are_skipped_whole() {
        let mut buffer = Buffer::new("uses = \"http\"");
        buffer.word_right();
        assert_eq!(buffer.cursor().col, 4);
        buffer.word_right();
        assert_eq!(buffer.cursor().col, 12);
        buffer.word_left();
        assert_eq!(buffer.cursor().col, 8);
    }
}
