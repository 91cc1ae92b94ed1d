//! A problem in a runbook file, located by byte span and rendered with file:line:column and a
//! snippet of the offending line.

use std::fmt::Write as _;
use std::ops::Range;

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
    /// A diagnostic pointing at `span` of `source`.
    pub fn at(file: &str, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let message = message.into();
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line_no = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let text = source[line_start..line_end].trim_end_matches('\r');
        // Underline the span on its first line only; at least one caret so it is visible.
        let end = span.end.clamp(start, line_end);
        let width = source[start..end].chars().count().max(1);

        let gutter = " ".repeat(line_no.to_string().len());
        let mut rendered = String::new();
        let _ = writeln!(rendered, "error: {message}");
        let _ = writeln!(rendered, "{gutter}--> {file}:{line_no}:{column}");
        let _ = writeln!(rendered, "{gutter} |");
        let _ = writeln!(rendered, "{line_no} | {text}");
        let _ = writeln!(
            rendered,
            "{gutter} | {}{}",
            " ".repeat(column - 1),
            "^".repeat(width)
        );
        Self {
            file: file.to_owned(),
            line: u32::try_from(line_no).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
            message,
            rendered,
        }
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
}
