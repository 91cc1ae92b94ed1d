//! One runbook: its steps as a tree (each after what it needs, with kind and condition), its
//! params, its versions, and its problems when the file is invalid.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};
use runbook_protocol::v1::{ParamSpec, RunbookDetail, RunbookVersion};

use super::{diagnostics, message, pane_block, text_block};
use crate::state::launch::raw_value;
use crate::state::runbooks::step_tree;
use crate::state::{DetailState, Health, State};
use crate::{format, theme};

/// Draws the screen of `detail` into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State, detail: &DetailState) {
    let Some(loaded) = &detail.detail else {
        let text = match &detail.error {
            Some(error) => Text::styled(
                format!("Cannot load {}: {error}", detail.name),
                theme::error(),
            ),
            None => Text::styled(format!("Loading {} …", detail.name), theme::dim()),
        };
        message(frame, area, format!(" {} ", detail.name), text);
        return;
    };
    let summary = loaded.summary.clone().unwrap_or_default();
    let info_rows = 2 + u16::from(detail.error.is_some());
    // The step tree gets the full width, since its rows carry needs and conditions; params
    // and versions share the row below; an invalid file's problems come last.
    let steps_rows = u16::try_from(loaded.steps.len().max(1))
        .unwrap_or(u16::MAX)
        .saturating_add(3)
        .min(area.height.saturating_sub(info_rows) / 2);
    let problems_rows = if summary.valid {
        0
    } else {
        area.height.saturating_sub(info_rows + steps_rows) / 2
    };
    let [info, steps, side, problems] = Layout::vertical([
        Constraint::Length(info_rows),
        Constraint::Length(steps_rows),
        Constraint::Fill(1),
        Constraint::Length(problems_rows),
    ])
    .areas(area);
    let [params, versions] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(side);
    render_info(frame, info, detail, loaded);
    render_steps(frame, steps, loaded, detail.selected);
    render_params(frame, params, &loaded.params);
    render_versions(frame, versions, state, detail.versions.as_deref());
    if problems_rows > 0 {
        diagnostics::render(frame, problems, &summary);
    }
}

/// Name, description, file and health.
fn render_info(frame: &mut Frame, area: Rect, detail: &DetailState, loaded: &RunbookDetail) {
    let summary = loaded.summary.clone().unwrap_or_default();
    let health = Health::of(&summary);
    let mut first = vec![Span::styled(summary.name.clone(), theme::header())];
    if !summary.description.is_empty() {
        first.push(Span::raw(format!(" · {}", summary.description)));
    }
    let version = if summary.version.is_empty() {
        "no valid version".to_owned()
    } else {
        format!(
            "runs start with version {}",
            format::short_hash(&summary.version)
        )
    };
    let mut lines = vec![
        Line::from(first),
        Line::from(vec![
            Span::styled(health.label(), theme::health(health)),
            Span::styled(format!(" · {version} · {}", summary.path), theme::dim()),
        ]),
    ];
    if let Some(error) = &detail.error {
        lines.push(Line::styled(error.clone(), theme::error()));
    }
    frame.render_widget(
        Paragraph::new(lines),
        area.inner(ratatui::layout::Margin::new(1, 0)),
    );
}

/// The step tree: each step after the steps it needs, indented one level deeper.
fn render_steps(frame: &mut Frame, area: Rect, loaded: &RunbookDetail, selected: usize) {
    let tree = step_tree(&loaded.steps);
    let block = pane_block(format!(" Steps ({}) ", tree.len()), true);
    if tree.is_empty() {
        frame.render_widget(
            Paragraph::new(Text::styled("No steps.", theme::dim())).block(block),
            area,
        );
        return;
    }
    let rows = tree.iter().map(|row| {
        let indent = if row.depth == 0 {
            String::new()
        } else {
            format!("{}└ ", "  ".repeat(row.depth - 1))
        };
        let mut details = Vec::new();
        if row.step.needs.len() > 1 || (row.depth > 0 && !row.step.needs.is_empty()) {
            details.push(format!("needs {}", row.step.needs.join(", ")));
        }
        if !row.step.condition.is_empty() {
            details.push(format!("if {}", row.step.condition));
        }
        if row.step.approval {
            details.push("⚑ approval".to_owned());
        }
        Row::new(vec![
            Cell::from(format!("{indent}{}", row.step.id)),
            Cell::from(row.step.uses.clone()).style(theme::dim()),
            Cell::from(details.join(" · ")),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Length(8),
            Constraint::Fill(3),
        ],
    )
    .header(Row::new(["STEP", "USES", "NEEDS · IF"]).style(theme::header()))
    .block(block)
    .row_highlight_style(theme::selected())
    .highlight_symbol("› ");
    let mut table_state = TableState::new().with_selected(Some(selected));
    frame.render_stateful_widget(table, area, &mut table_state);
}

/// Each param with its type, default and allowed values.
fn render_params(frame: &mut Frame, area: Rect, params: &[ParamSpec]) {
    let block = text_block(format!(" Params ({}) ", params.len()), false);
    let mut text = Text::default();
    if params.is_empty() {
        text.push_line(Line::styled("No params.", theme::dim()));
    }
    for param in params {
        let mut first = vec![
            Span::styled(param.name.clone(), theme::header()),
            Span::styled(format!(" {}", param.r#type), theme::dim()),
        ];
        if param.required {
            first.push(Span::styled(" required", theme::error()));
        }
        if !param.default_json.is_empty() {
            first.push(Span::raw(format!(" = {}", param.default_json)));
        }
        text.push_line(Line::from(first));
        let mut second = Vec::new();
        if !param.allowed_json.is_empty() {
            let allowed: Vec<String> = param.allowed_json.iter().map(|v| raw_value(v)).collect();
            second.push(format!("one of {}", allowed.join(", ")));
        }
        if !param.description.is_empty() {
            second.push(param.description.clone());
        }
        if !second.is_empty() {
            text.push_line(Line::styled(
                format!("  {}", second.join(" · ")),
                theme::dim(),
            ));
        }
    }
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: false }).block(block),
        area,
    );
}

/// The versions, newest first.
fn render_versions(
    frame: &mut Frame,
    area: Rect,
    state: &State,
    versions: Option<&[RunbookVersion]>,
) {
    let Some(versions) = versions else {
        let block = pane_block(" Versions ".to_owned(), false);
        frame.render_widget(
            Paragraph::new(Text::styled("Loading …", theme::dim())).block(block),
            area,
        );
        return;
    };
    let block = pane_block(format!(" Versions ({}) ", versions.len()), false);
    let rows = versions.iter().rev().map(|v| {
        let number = if v.current {
            format!("{}*", v.number)
        } else {
            v.number.to_string()
        };
        Row::new(vec![
            Cell::from(number),
            Cell::from(format::short_hash(&v.version)),
            Cell::from(format::ago(v.created_at, state.now_ms)),
            Cell::from(v.cause.clone()).style(theme::dim()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(["#", "VERSION", "SAVED", "CAUSE"]).style(theme::header()))
    .block(block);
    frame.render_widget(table, area);
}
