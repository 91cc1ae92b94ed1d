//! The approvals queue: every step waiting for a decision, and the exact plan of the selected
//! one (argv, env names, cwd, SQL, notes) with the runbook version it belongs to.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};

use super::bars::short;
use super::{pane_block, placeholder, text_block};
use crate::state::State;
use crate::state::approvals::{Effect, Pending, input_line, pending, plan, quote_argv};
use crate::{format, theme};

/// Draws the queue into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let queue = pending(&state.waiting);
    let block = pane_block(format!(" Approvals ({}) ", queue.len()), true);
    if queue.is_empty() {
        placeholder(
            frame,
            area,
            block,
            state,
            "Nothing waits for approval. Steps that need one show up here as they ask.",
        );
        return;
    }
    let rows = u16::try_from(queue.len()).unwrap_or(u16::MAX);
    let list_height = rows.saturating_add(3).min(area.height / 3).max(4);
    let [list, detail] =
        Layout::vertical([Constraint::Length(list_height), Constraint::Fill(1)]).areas(area);
    let table = Table::new(
        queue.iter().map(|p| {
            Row::new(vec![
                Cell::from(short(&p.run.id)),
                Cell::from(p.run.runbook.clone()),
                Cell::from(p.step.id.clone()),
                Cell::from(p.step.uses.clone()),
                Cell::from(format::ago(p.approval.requested_at, state.now_ms)),
            ])
        }),
        [
            Constraint::Length(12),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(["RUN", "RUNBOOK", "STEP", "USES", "ASKED"]).style(theme::header()))
    .block(block)
    .row_highlight_style(theme::selected())
    .highlight_symbol("› ");
    let selected = state.approvals.selected.min(queue.len() - 1);
    let mut table_state = TableState::new().with_selected(Some(selected));
    frame.render_stateful_widget(table, list, &mut table_state);
    render_plan(frame, detail, &queue[selected]);
}

/// The plan of one request, as exactly as the daemon describes it.
fn render_plan(frame: &mut Frame, area: Rect, request: &Pending<'_>) {
    let title = format!(
        " Plan: {} / {} · version {} ",
        request.run.runbook,
        request.step.id,
        format::short_hash(&request.run.version)
    );
    let mut text = Text::default();
    let field = |label: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{label:<9}"), theme::dim()),
            Span::raw(value),
        ])
    };
    text.push_line(field("run", request.run.id.clone()));
    text.push_line(field("version", request.run.version.clone()));
    text.push_line(Line::default());
    if request.approval.instruction {
        render_instruction(frame, area, request, text);
        return;
    }
    for line in request.approval.summary.lines() {
        text.push_line(Line::styled(line.to_owned(), theme::problem()));
    }
    if let Some(plan) = plan(request.approval) {
        for effect in &plan.effects {
            text.push_line(Line::default());
            text.extend(effect_lines(effect));
        }
    }
    text.push_line(Line::default());
    text.push_line(Line::styled(
        "a approves this exact plan · d denies it with a reason",
        theme::dim(),
    ));
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(text_block(title, false)),
        area,
    );
}

/// An instruction to carry out by hand: its text, rendered, and the values confirming it asks
/// for.
fn render_instruction(frame: &mut Frame, area: Rect, request: &Pending<'_>, mut text: Text<'_>) {
    let title = format!(
        " By hand: {} / {} · version {} ",
        request.run.runbook,
        request.step.id,
        format::short_hash(&request.run.version)
    );
    if let Some(plan) = plan(request.approval) {
        for effect in &plan.effects {
            if let Effect::Note(markdown) = effect {
                text.extend(super::markdown::render(markdown));
            }
        }
    }
    if !request.approval.inputs.is_empty() {
        text.push_line(Line::default());
        for input in &request.approval.inputs {
            text.push_line(Line::styled(
                format::printable(&input_line(input)).into_owned(),
                theme::dim(),
            ));
        }
    }
    text.push_line(Line::default());
    text.push_line(Line::styled(
        if request.approval.inputs.is_empty() {
            "a confirms it done · d denies it with a reason"
        } else {
            "a confirms it done (asks for the values above) · d denies it with a reason"
        },
        theme::dim(),
    ));
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(text_block(title, false)),
        area,
    );
}

/// The lines of one side effect: a label column, then the values in full.
fn effect_lines(effect: &Effect) -> Vec<Line<'static>> {
    let field = |label: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("  {label:<10}"), theme::dim()),
            Span::raw(value),
        ])
    };
    match effect {
        Effect::Process {
            argv,
            env,
            cwd,
            stdin_bytes,
            stdin,
            ..
        } => {
            let mut lines = vec![
                Line::styled("process", theme::header()),
                field("argv", quote_argv(argv)),
            ];
            if env.iter().any(|(_, value)| value.is_some()) {
                // What the process gets is what is approved: every value, one per line.
                for (index, (name, value)) in env.iter().enumerate() {
                    let label = if index == 0 { "env" } else { "" };
                    let shown = match value {
                        Some(value) => format!("{name}={}", format::printable(value)),
                        None => name.clone(),
                    };
                    lines.push(field(label, shown));
                }
            } else if !env.is_empty() {
                let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
                lines.push(field("env", names.join(", ")));
            }
            if let Some(cwd) = cwd {
                lines.push(field("cwd", cwd.clone()));
            }
            match (stdin, stdin_bytes) {
                (Some(text), bytes) => {
                    let total = bytes.unwrap_or(text.len() as u64);
                    let shown = if total > text.len() as u64 {
                        format!("{total} bytes, the first {} shown:", text.len())
                    } else {
                        format!("{total} bytes:")
                    };
                    lines.push(field("stdin", shown));
                    lines.extend(
                        text.lines()
                            .map(|line| field("", format::printable(line).into_owned())),
                    );
                }
                (None, Some(bytes)) => lines.push(field("stdin", format!("{bytes} bytes"))),
                (None, None) => {}
            }
            lines
        }
        Effect::Sql {
            connection,
            statements,
            writes,
        } => {
            let mut lines = vec![Line::styled(
                format!(
                    "sql on `{connection}`{}",
                    if *writes { " (writes)" } else { " (reads)" }
                ),
                theme::header(),
            )];
            for statement in statements {
                lines.extend(statement.lines().map(|l| field("", l.to_owned())));
            }
            lines
        }
        Effect::Note(note) => note
            .lines()
            .enumerate()
            .map(|(i, line)| field(if i == 0 { "note" } else { "" }, line.to_owned()))
            .collect(),
        Effect::Other(json) => vec![field("effect", json.clone())],
    }
}
