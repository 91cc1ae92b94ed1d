//! The panel under the runbook list: why the selected runbook is invalid, and whether it runs.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Text};
use ratatui::widgets::{Paragraph, Wrap};
use runbook_protocol::v1::{Diagnostic, RunbookSummary};

use super::pane_block;
use crate::state::Health;
use crate::{format, theme};

/// The bottom title of a panel too small for all the problems.
const MORE: &str = " … more: runbook ls ";

/// Draws the problems of the invalid runbook `rb` into `area`.
pub fn render(frame: &mut Frame, area: Rect, rb: &RunbookSummary) {
    let title = format!(" {}: {} ", rb.name, problems(rb.diagnostics.len()));
    let health = Health::of(rb);
    let mut text = Text::from(Line::styled(runnable(health, rb), theme::health(health)));
    for diagnostic in &rb.diagnostics {
        text.push_line(Line::default());
        text.extend(lines(diagnostic));
    }
    // Wrapped rather than cut on the right, so that a long path keeps its line:column; without
    // trimming, so that the snippet's gutter and carets keep their indentation.
    let panel = Paragraph::new(text).wrap(Wrap { trim: false });
    let mut block = pane_block(title, false);
    let inner = block.inner(area);
    // Nothing scrolls here: when the problems are cut at the bottom, say where to read them all.
    if panel.line_count(inner.width) > usize::from(inner.height) {
        block = block.title_bottom(Line::styled(MORE, theme::dim()).right_aligned());
    }
    frame.render_widget(panel.block(block), area);
}

/// `1 problem`, `2 problems`.
fn problems(count: usize) -> String {
    match count {
        1 => "1 problem".to_owned(),
        n => format!("{n} problems"),
    }
}

/// What the STATE marker means for this runbook: can it still be run, and with which version?
fn runnable(health: Health, rb: &RunbookSummary) -> String {
    match health {
        Health::RunsLastGood => format!(
            "{}: new runs use the last good version {}",
            health.label(),
            format::short_hash(&rb.version)
        ),
        Health::Invalid => format!("{}: no valid version yet, so it cannot run", health.label()),
        Health::Valid => "valid".to_owned(),
    }
}

/// A diagnostic as the daemon rendered it (message, file:line:column, snippet), its message
/// line in bold; just the message when a daemon sent no rendering.
fn lines(diagnostic: &Diagnostic) -> Vec<Line<'static>> {
    let rendered = diagnostic.rendered.trim_end();
    let text = if rendered.is_empty() {
        diagnostic.message.as_str()
    } else {
        rendered
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            // A tab has no width in a terminal cell; one space keeps the carets under the
            // snippet, since the daemon counts a tab as one column.
            let line = line.replace('\t', " ");
            if i == 0 {
                Line::styled(line, theme::problem())
            } else {
                Line::raw(line)
            }
        })
        .collect()
}
