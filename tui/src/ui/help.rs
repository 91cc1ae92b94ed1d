//! The help overlay: every key of every screen, the current screen's first, from the keymap
//! itself so that it cannot drift from what the keys do.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::{centered, pane_block};
use crate::keymap::{self, Binding, Context};
use crate::state::State;
use crate::{theme, update};

/// Every line of help, the screen in `first` first.
pub fn lines(first: Context) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let mut section = |title: &str, rows: Vec<(&'static str, &'static str)>| {
        if !lines.is_empty() {
            lines.push(Line::default());
        }
        lines.push(Line::styled(title.to_owned(), theme::header()));
        for (keys, what) in rows {
            lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<15} "), theme::key()),
                Span::raw(what),
            ]));
        }
    };
    let rows = |bindings: &'static [Binding]| -> Vec<(&'static str, &'static str)> {
        bindings.iter().map(|b| (b.label, b.help)).collect()
    };
    let mut contexts = vec![first];
    contexts.extend(Context::ALL.iter().copied().filter(|c| *c != first));
    for context in contexts {
        let mut own = rows(context.bindings());
        if context == Context::Editor {
            own.extend(keymap::EDITOR_NOTES.iter().copied());
        }
        section(context.title(), own);
    }
    section("Everywhere", rows(keymap::GLOBAL));
    section(
        "In the editor and the launch form (letters are text there)",
        rows(keymap::GLOBAL_TEXT),
    );
    section("Prompts", keymap::PROMPT_NOTES.to_vec());
    lines
}

/// Draws help over the screen, scrolled by `scroll` lines.
pub fn render(frame: &mut Frame, area: Rect, state: &State, scroll: u16) {
    let lines = lines(update::context(state));
    let area = centered(area, 90, area.height.saturating_sub(2));
    let block = pane_block(" Keys · ↑↓ scroll · Esc closes ".to_owned(), true);
    let inner = block.inner(area);
    let help = Paragraph::new(lines).wrap(Wrap { trim: false });
    // Long lines wrap: count the rows they take, so that the end can be scrolled to.
    let total = u16::try_from(help.line_count(inner.width)).unwrap_or(u16::MAX);
    let scroll = scroll.min(total.saturating_sub(inner.height));
    frame.render_widget(Clear, area);
    frame.render_widget(help.block(block).scroll((scroll, 0)), area);
}
