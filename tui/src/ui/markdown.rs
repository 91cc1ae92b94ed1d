//! An instruction step's Markdown as styled terminal text. The text comes from a runbook,
//! through the daemon: control characters are made visible before it is parsed, so that
//! nothing in it can move the cursor or restyle the terminal.

use ratatui::text::{Line, Span, Text};

use crate::format;

/// `markdown` as lines to draw, owned (the screen is redrawn from state, not kept).
pub fn render(markdown: &str) -> Vec<Line<'static>> {
    let safe = format::printable_lines(markdown);
    let text: Text<'_> = tui_markdown::from_str(&safe);
    text.lines
        .into_iter()
        .map(|line| {
            let spans: Vec<Span<'static>> = line
                .spans
                .into_iter()
                .map(|span| Span::styled(span.content.into_owned(), span.style))
                .collect();
            Line::from(spans).style(line.style)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn headings_lists_and_code_keep_their_words_and_lose_their_marks() {
        let lines = render("# Drain node-3\n\n- open **the console**\n- run `drain`\n");
        let shown = plain(&lines).join("\n");
        assert!(shown.contains("Drain node-3"), "{shown}");
        assert!(shown.contains("the console"), "{shown}");
        assert!(!shown.contains("**"), "{shown}");
        assert!(shown.contains("drain"), "{shown}");
    }

    #[test]
    fn escape_sequences_in_the_text_are_shown_not_obeyed() {
        let shown = plain(&render("look \u{1b}[2J here")).join("\n");
        assert!(!shown.contains('\u{1b}'), "{shown:?}");
        assert!(shown.contains("here"), "{shown}");
    }
}
