//! The editor: line numbers, TOML highlighting, search matches, a marker at each line the
//! daemon found a problem on, and the problems listed under the text.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{clip, pane_block};
use crate::editor::highlight::highlight;
use crate::state::editor::{DIAGNOSTIC_LINES, Validity};
use crate::state::{EditorState, State};
use crate::theme;

/// Draws `editor` into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State, editor: &EditorState) {
    // The layout of the whole terminal, applied to the area the screen really got.
    let layout = editor.layout((area.width, area.height + 2));
    let [text_area, problems] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(layout.diagnostic_rows),
    ])
    .areas(area);
    // The file name is enough here: the runbook's screen shows the full path.
    let file = std::path::Path::new(&editor.path)
        .file_name()
        .map_or(editor.path.clone(), |f| f.to_string_lossy().into_owned());
    let mut title = format!(" Edit {} · {file} ", editor.runbook);
    if editor.dirty() {
        title.push_str("● modified ");
    }
    let verdict = verdict(editor);
    let room = usize::from(area.width).saturating_sub(verdict.width() + 4);
    let block = pane_block(clip(&title, room), true).title_top(verdict.right_aligned());
    let inner = block.inner(text_area);
    frame.render_widget(block, text_area);

    let rows = usize::from(inner.height);
    let cols = usize::from(inner.width.saturating_sub(layout.gutter));
    let cursor = editor.buffer.cursor();
    // The remembered scroll, moved just enough to show the cursor should the sizes disagree.
    let top = editor
        .scroll_top
        .min(cursor.row)
        .max((cursor.row + 1).saturating_sub(rows));
    let left = editor
        .scroll_left
        .min(cursor.col)
        .max((cursor.col + 1).saturating_sub(cols));
    let lines = editor.buffer.lines();
    let end = (top + rows).min(lines.len());
    let pieces = highlight(lines, top..end);
    let number_width = usize::from(layout.gutter - 2);
    let mut text = Vec::with_capacity(rows);
    for (offset, pieces) in pieces.iter().enumerate() {
        let row = top + offset;
        let problem = editor.diagnostics_at(row).next().is_some();
        let mut spans = vec![
            Span::styled(
                format!("{:>number_width$}", row + 1),
                if problem {
                    theme::gutter_problem()
                } else {
                    theme::gutter()
                },
            ),
            Span::styled(if problem { "●" } else { " " }, theme::gutter_problem()),
            Span::raw(" "),
        ];
        spans.extend(line_spans(editor, row, pieces, left, cols));
        text.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(text), inner);
    if state.prompt.is_none() && state.help.is_none() {
        let x = inner.x + layout.gutter + u16::try_from(cursor.col - left).unwrap_or(0);
        let y = inner.y + u16::try_from(cursor.row - top).unwrap_or(0);
        if x < inner.right() && y < inner.bottom() {
            frame.set_cursor_position(Position::new(x, y));
        }
    }
    if layout.diagnostic_rows > 0 {
        render_problems(frame, problems, editor);
    }
}

/// The visible part (columns `left..left + cols`) of line `row`, highlighted, with search
/// matches standing out.
fn line_spans(
    editor: &EditorState,
    row: usize,
    pieces: &[(std::ops::Range<usize>, crate::editor::highlight::Token)],
    left: usize,
    cols: usize,
) -> Vec<Span<'static>> {
    let chars: Vec<char> = editor.buffer.lines()[row].chars().collect();
    let mut styles = vec![Style::new(); chars.len()];
    for (range, token) in pieces {
        for style in &mut styles[range.clone()] {
            *style = theme::token(*token);
        }
    }
    if let Some(query) = &editor.search {
        let width = query.chars().count();
        for start in editor.buffer.matches_in_line(query, row) {
            for style in styles.iter_mut().skip(start).take(width) {
                *style = theme::search_match();
            }
        }
    }
    let end = (left + cols).min(chars.len());
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut run = String::new();
    let mut run_style = Style::new();
    for i in left.min(end)..end {
        // A tab has no width in a terminal cell: show it as one space, as the daemon counts it.
        let c = if chars[i] == '\t' { ' ' } else { chars[i] };
        if styles[i] != run_style && !run.is_empty() {
            spans.push(Span::styled(std::mem::take(&mut run), run_style));
        }
        run_style = styles[i];
        run.push(c);
    }
    if !run.is_empty() {
        spans.push(Span::styled(run, run_style));
    }
    spans
}

/// What the daemon last said about the text, for the title.
fn verdict(editor: &EditorState) -> Line<'static> {
    let (text, style) = if editor.saving {
        ("saving …".to_owned(), theme::dim())
    } else if editor.conflict {
        (
            "changed on disk: Ctrl-S overwrites".to_owned(),
            theme::error(),
        )
    } else if editor.validate_due.is_some() {
        ("…".to_owned(), theme::dim())
    } else {
        match &editor.validity {
            Validity::Unknown => ("…".to_owned(), theme::dim()),
            Validity::Checking => ("checking …".to_owned(), theme::dim()),
            Validity::Valid => ("✓ valid".to_owned(), theme::info()),
            Validity::Invalid => {
                let n = editor.diagnostics.len();
                (
                    format!("✗ {n} problem{}", if n == 1 { "" } else { "s" }),
                    theme::error(),
                )
            }
            Validity::Failed(error) => (format!("cannot check: {error}"), theme::error()),
        }
    };
    Line::styled(format!(" {text} "), style)
}

/// The problems, one line each, under the text.
fn render_problems(frame: &mut Frame, area: Rect, editor: &EditorState) {
    let mut diagnostics: Vec<_> = editor.diagnostics.iter().collect();
    diagnostics.sort_by_key(|d| (d.line, d.column));
    let lines: Vec<Line<'static>> = diagnostics
        .iter()
        .take(DIAGNOSTIC_LINES)
        .map(|d| {
            let at = if d.line == 0 {
                "-".to_owned()
            } else {
                format!("{}:{}", d.line, d.column)
            };
            Line::from(vec![
                Span::styled(format!("{at:>7} "), theme::gutter_problem()),
                Span::raw(d.message.lines().next().unwrap_or_default().to_owned()),
            ])
        })
        .collect();
    let mut block = pane_block(format!(" Problems ({}) ", diagnostics.len()), false);
    if diagnostics.len() > DIAGNOSTIC_LINES {
        block = block.title_bottom(
            Line::styled(
                format!(
                    " {} more, marked ● in the margin ",
                    diagnostics.len() - DIAGNOSTIC_LINES
                ),
                theme::dim(),
            )
            .right_aligned(),
        );
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
