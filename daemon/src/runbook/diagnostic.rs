//! A problem in a runbook file, located by byte span and rendered with file:line:column and a
//! snippet of the offending line.

use std::cell::OnceCell;
use std::fmt::Write as _;
use std::ops::Range;

/// Lines longer than this (in characters) are shown cut to a window around the problem: a
/// hostile file can put megabytes on one line, and every diagnostic would carry them whole.
const MAX_SNIPPET_CHARS: usize = 200;

/// Characters of a long line shown before the problem's column; the rest of the window
/// follows it.
const SNIPPET_CONTEXT_BEFORE: usize = 60;

/// One problem in a runbook's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// 1-based; 0 when the problem has no location.
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    pub message: String,
    /// `message` with its location and a snippet, ready to print.
    pub rendered: String,
}

impl Diagnostic {
    /// A diagnostic pointing at `span` of `source`. Finding the line costs a scan of the
    /// source up to the span: a checker that reports many problems uses a [`SourceMap`].
    pub fn at(file: &str, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        SourceMap::new(source).diagnostic(file, span, message)
    }

    /// A diagnostic pointing at byte `offset` of a file that may not be valid UTF-8 (or not
    /// past `offset`): its line is shown with invalid bytes replaced.
    pub fn at_byte(file: &str, bytes: &[u8], offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(bytes.len());
        let line_start = bytes[..offset]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line_end = bytes[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| offset + i);
        let line_no = bytes[..line_start].iter().filter(|&&b| b == b'\n').count() + 1;
        // Counts characters where the bytes are UTF-8 (every byte that does not continue a
        // character starts one); an invalid byte counts as one character, as it is shown.
        let column = bytes[line_start..offset]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count()
            + 1;
        let before = String::from_utf8_lossy(&bytes[line_start..offset]);
        let after = String::from_utf8_lossy(&bytes[offset..line_end]);
        let text = format!("{before}{}", after.trim_end_matches('\r'));
        let column_in_text = before.chars().count() + 1;
        render(
            file,
            line_no,
            column,
            &text,
            column_in_text,
            1,
            message.into(),
        )
    }

    /// A diagnostic about the file as a whole (unreadable, say).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let rendered = format!("error: {message}\n --> {file}\n");
        Self {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message,
            rendered,
        }
    }
}

/// A source with its line starts found once, so that any number of diagnostics cost
/// a binary search each instead of a scan of the file.
pub struct SourceMap<'a> {
    source: &'a str,
    line_starts: OnceCell<Vec<usize>>,
}

impl<'a> SourceMap<'a> {
    /// A map of `source`; lines are found on first use.
    pub fn new(source: &'a str) -> Self {
        Self {
            source,
            line_starts: OnceCell::new(),
        }
    }

    /// The 1-based line of byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.source.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        // The number of lines starting at or before `offset`; line 1 always does.
        starts.partition_point(|&start| start <= offset).max(1)
    }

    /// A diagnostic pointing at `span`.
    pub fn diagnostic(
        &self,
        file: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let source = self.source;
        let start = source.floor_char_boundary(span.start);
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line_no = self.line_of(start);
        let column = source[line_start..start].chars().count() + 1;
        let text = source[line_start..line_end].trim_end_matches('\r');
        // Underline the span on its first line only; at least one caret so it is visible.
        let end = source.floor_char_boundary(span.end.clamp(start, line_start + text.len()));
        let width = source[start..end].chars().count().max(1);
        render(file, line_no, column, text, column, width, message.into())
    }
}

/// Builds the diagnostic: `column` is where the problem is on the line, `column_in_text`
/// where it is in `text` as shown (they differ only where bytes were replaced).
fn render(
    file: &str,
    line_no: usize,
    column: usize,
    text: &str,
    column_in_text: usize,
    width: usize,
    message: String,
) -> Diagnostic {
    let (shown, caret_at, width) = snippet(text, column_in_text, width);
    let gutter = " ".repeat(line_no.to_string().len());
    let mut rendered = String::new();
    let _ = writeln!(rendered, "error: {message}");
    let _ = writeln!(rendered, "{gutter}--> {file}:{line_no}:{column}");
    let _ = writeln!(rendered, "{gutter} |");
    let _ = writeln!(rendered, "{line_no} | {shown}");
    let _ = writeln!(
        rendered,
        "{gutter} | {}{}",
        " ".repeat(caret_at - 1),
        "^".repeat(width)
    );
    Diagnostic {
        file: file.to_owned(),
        line: u32::try_from(line_no).unwrap_or(u32::MAX),
        column: u32::try_from(column).unwrap_or(u32::MAX),
        message,
        rendered,
    }
}

/// The part of `line` to show, where its caret starts (1-based) and how wide it is: the whole
/// line when it is short, else a window around `column` marked with `...` where it was cut.
fn snippet(line: &str, column: usize, width: usize) -> (String, usize, usize) {
    let length = line.chars().count();
    if length <= MAX_SNIPPET_CHARS {
        return (line.to_owned(), column, width);
    }
    let first = column
        .saturating_sub(1)
        .saturating_sub(SNIPPET_CONTEXT_BEFORE);
    let shown: String = line.chars().skip(first).take(MAX_SNIPPET_CHARS).collect();
    let cut_before = first > 0;
    let cut_after = first + MAX_SNIPPET_CHARS < length;
    let mut text = String::new();
    if cut_before {
        text.push_str("...");
    }
    text.push_str(&shown);
    if cut_after {
        text.push_str("...");
    }
    let caret_at = column - first + if cut_before { 3 } else { 0 };
    // `column - first` is at most SNIPPET_CONTEXT_BEFORE + 1: the caret is inside the window.
    let width = width.min(MAX_SNIPPET_CHARS + 1 - (column - first));
    (text, caret_at, width.max(1))
}

/// Renders several diagnostics the way `runbook validate` prints them.
pub fn render_all(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| d.rendered.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let source = "name = \"x\"\nneeds = [\"buidl\"]\n";
        let start = source.find("\"buidl\"").expect("in source");
        let d = Diagnostic::at("f.toml", source, start..start + 7, "unknown step");
        assert_eq!((d.line, d.column), (2, 10));
        assert_eq!(
            d.rendered,
            "error: unknown step\n --> f.toml:2:10\n  |\n2 | needs = [\"buidl\"]\n  |          ^^^^^^^\n"
        );
    }

    #[test]
    fn a_bad_byte_is_shown_at_its_line_and_column() {
        let bytes = b"a = 1\nb = \"\xc3\xa9\xff\"\n";
        let d = Diagnostic::at_byte("f.toml", bytes, 13, "not UTF-8");
        assert_eq!((d.line, d.column), (2, 7));
        assert_eq!(
            d.rendered,
            "error: not UTF-8\n --> f.toml:2:7\n  |\n2 | b = \"\u{e9}\u{fffd}\"\n  |       ^\n"
        );
    }

    #[test]
    fn a_long_line_is_cut_around_the_problem() {
        let source = format!("x = \"{}\" y\n", "a".repeat(10_000));
        let start = source.find(" y").expect("in source") + 1;
        let d = Diagnostic::at("f.toml", &source, start..start + 1, "here");
        assert_eq!((d.line, d.column), (1, 10_008));
        let shown = d.rendered.lines().nth(3).expect("snippet line");
        let caret = d.rendered.lines().nth(4).expect("caret line");
        assert!(shown.len() < 300, "{shown}");
        assert!(shown.starts_with("1 | ...aaa"), "{shown}");
        // The caret is under the `y`.
        let at = caret.find('^').expect("a caret");
        assert_eq!(&shown[at..=at], "y");
    }

    #[test]
    fn lines_come_from_the_map() {
        let map = SourceMap::new("a\nbb\n\nc");
        let lines: Vec<usize> = (0..7).map(|offset| map.line_of(offset)).collect();
        assert_eq!(lines, [1, 1, 2, 2, 2, 3, 4]);
    }
}
