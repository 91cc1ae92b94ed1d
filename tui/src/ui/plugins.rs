//! The plugins: each step kind with its version, contract version, source, the host
//! interfaces its component imports, its grants and whether it is loaded; below the table,
//! the selected plugin's full imports, grants and, for a refused file, why.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};
use runbook_protocol::v1::Plugin;

use super::{pane_block, placeholder};
use crate::state::State;
use crate::{format, theme};

/// Draws the plugins screen into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let view = &state.plugins;
    let count = view.plugins.as_ref().map_or(0, Vec::len);
    let block = pane_block(format!(" Plugins ({count}) "), true);
    if let Some(error) = &view.error {
        let text = Text::styled(format!("Cannot list the plugins: {error}"), theme::error());
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }
    let Some(plugins) = view.plugins.as_ref().filter(|plugins| !plugins.is_empty()) else {
        placeholder(frame, area, block, state, "Loading the plugins …");
        return;
    };
    let [list, detail] = Layout::vertical([Constraint::Fill(1), Constraint::Length(8)]).areas(area);
    let rows = plugins.iter().map(|plugin| {
        let (status, style) = if plugin.refused.is_empty() {
            ("loaded", theme::dim())
        } else {
            ("refused", theme::error())
        };
        Row::new(vec![
            Cell::from(if plugin.kind.is_empty() {
                "-".to_owned()
            } else {
                plugin.kind.clone()
            }),
            Cell::from(plugin.version.clone()),
            Cell::from(plugin.wit_version.clone()),
            Cell::from(source(plugin)),
            Cell::from(format::plugin_interfaces(plugin).join(",")),
            Cell::from(format::plugin_grants(plugin)),
            Cell::from(status).style(style),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Fill(4),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new([
            "KIND", "VERSION", "WIT", "SOURCE", "IMPORTS", "GRANTS", "STATUS",
        ])
        .style(theme::header()),
    )
    .block(block)
    .row_highlight_style(theme::selected())
    .highlight_symbol("› ");
    let mut table_state = TableState::new().with_selected(Some(view.selected));
    frame.render_stateful_widget(table, list, &mut table_state);
    if let Some(plugin) = plugins.get(view.selected) {
        render_detail(frame, detail, plugin);
    }
}

/// The selected plugin: what it imports and is granted, and why it is refused.
fn render_detail(frame: &mut Frame, area: Rect, plugin: &Plugin) {
    let field = |name: &'static str, value: String| {
        Line::from(vec![Span::styled(name, theme::dim()), Span::raw(value)])
    };
    let mut lines = vec![
        field("source  ", format::printable(&plugin.path).into_owned()),
        field("sha256  ", plugin.sha256.clone()),
        field("grants  ", format::plugin_grants(plugin)),
    ];
    if plugin.builtin {
        lines.remove(0);
    }
    lines.push(Line::from(vec![
        Span::styled("imports ", theme::dim()),
        Span::raw(if plugin.imports.is_empty() {
            "nothing".to_owned()
        } else {
            plugin.imports.join(" ")
        }),
    ]));
    if plugin.refused.is_empty() {
        if !plugin.builtin {
            lines.push(Line::styled(
                "grant or revoke with `runbook plugin grant|revoke KIND ...`",
                theme::dim(),
            ));
        }
    } else {
        lines.push(Line::styled(
            format::printable(&plugin.refused).into_owned(),
            theme::error(),
        ));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(pane_block(" Selected ".to_owned(), false)),
        area,
    );
}

/// Where it comes from: built in, or its file's name (the detail shows the whole path).
fn source(plugin: &Plugin) -> String {
    if plugin.builtin {
        return "built in".to_owned();
    }
    let name = std::path::Path::new(&plugin.path).file_name().map_or_else(
        || plugin.path.clone(),
        |name| name.to_string_lossy().into_owned(),
    );
    format::printable(&name).into_owned()
}
