//! A run, live: its header, each step with a status symbol (spinning while it runs),
//! attempts, duration and why it waits, and the selected step's log or output JSON.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use runbook_protocol::v1::{Run, RunStatus};

use super::{clip, message, pane_block, spinner, step_symbol};
use crate::state::State;
use crate::state::launch::params_of;
use crate::state::run_view::{LogKind, RunView, WatchStatus, layout, output_lines, waiting_reason};
use crate::{format, theme};

/// Draws `view` into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State, view: &RunView) {
    let Some(run) = &view.run else {
        let text = match &view.error {
            Some(error) => Text::styled(
                format!("Cannot show run {}: {error}", view.run_id),
                theme::error(),
            ),
            None => Text::styled(format!("Loading run {} …", view.run_id), theme::dim()),
        };
        message(frame, area, format!(" Run {} ", view.run_id), text);
        return;
    };
    let parts = layout((area.width, area.height + 2), run.steps.len());
    let [header, steps, log] = Layout::vertical([
        Constraint::Length(parts.header_rows),
        Constraint::Length(parts.steps_rows),
        Constraint::Fill(1),
    ])
    .areas(area);
    render_header(frame, header, state, run);
    render_steps(frame, steps, state, view, run);
    render_log(frame, log, view);
}

/// Id, runbook, version, status and time; then the params, or the run's error.
fn render_header(frame: &mut Frame, area: Rect, state: &State, run: &Run) {
    let status = run.status();
    // Only a run that is making progress spins.
    let symbol = match status {
        RunStatus::Running | RunStatus::Pending => format!("{} ", spinner(state.now_ms)),
        _ => String::new(),
    };
    let took = format::elapsed(run.started_at, run.finished_at, state.now_ms);
    let first = Line::from(vec![
        Span::styled(format!(" Run {}", run.id), theme::header()),
        Span::raw(format!(
            " · {} @{} · ",
            run.runbook,
            format::short_hash(&run.version)
        )),
        Span::styled(
            format!("{symbol}{}", status.label()),
            theme::run_status(status),
        ),
        Span::raw(if took.is_empty() {
            String::new()
        } else {
            format!(" · {took}")
        }),
        Span::styled(
            if run.dry_run { " · dry run" } else { "" },
            theme::run_status(RunStatus::Waiting),
        ),
    ]);
    let second = if run.error.is_empty() {
        let params = params_of(&run.params_json);
        let text = if params.is_empty() {
            "no params".to_owned()
        } else {
            params
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        Line::styled(format!(" params: {text}"), theme::dim())
    } else {
        // A paused run's error says who paused it: not a failure.
        let style = if run.status() == RunStatus::Paused {
            theme::dim()
        } else {
            theme::error()
        };
        Line::styled(format!(" {}", run.error), style)
    };
    frame.render_widget(Paragraph::new(vec![first, second]), area);
}

/// How the view is fed: live, reconnecting (and when), or ended.
fn watch_label(view: &RunView, now_ms: i64) -> String {
    match &view.watch {
        WatchStatus::Connecting => "connecting …".to_owned(),
        WatchStatus::Live => "live".to_owned(),
        WatchStatus::Reconnecting { error, retry_at } => {
            let when = if *retry_at > now_ms {
                format!(" in {}", format::duration(retry_at - now_ms))
            } else {
                String::new()
            };
            format!("reconnecting{when}: {error}")
        }
        WatchStatus::Ended => "ended".to_owned(),
    }
}

/// One row per step.
fn render_steps(frame: &mut Frame, area: Rect, state: &State, view: &RunView, run: &Run) {
    // How the view is fed, where it cannot be cut off: it says whether what shows is live.
    let watch = watch_label(view, state.now_ms);
    let watch_style = match view.watch {
        WatchStatus::Reconnecting { .. } => theme::error(),
        _ => theme::dim(),
    };
    let block = pane_block(format!(" Steps ({}) ", run.steps.len()), true)
        .title_top(Line::styled(format!(" {watch} "), watch_style).right_aligned());
    let run_over = run.status().is_terminal();
    if run.steps.is_empty() {
        frame.render_widget(
            Paragraph::new(Text::styled("No step has started yet.", theme::dim())).block(block),
            area,
        );
        return;
    }
    let rows = run.steps.iter().map(|step| {
        let status = step.status();
        let style = theme::step_status(status);
        // Once the run is over nothing waits any more, whatever a step last said.
        let why = (!run_over)
            .then(|| waiting_reason(step, state.now_ms))
            .flatten();
        let why = why.or_else(|| {
            (!step.error.is_empty() && status.is_terminal()).then(|| step.error.clone())
        });
        Row::new(vec![
            Cell::from(step_symbol(status, state.now_ms)).style(style),
            Cell::from(step.id.clone()),
            Cell::from(step.uses.clone()).style(theme::dim()),
            Cell::from(status.label()).style(style),
            Cell::from(if step.attempts > 0 {
                step.attempts.to_string()
            } else {
                String::new()
            }),
            Cell::from(format::elapsed(
                step.started_at,
                step.finished_at,
                state.now_ms,
            )),
            Cell::from(why.unwrap_or_default()).style(if status.is_terminal() {
                theme::dim()
            } else {
                theme::log_event()
            }),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(3),
            Constraint::Length(7),
            Constraint::Fill(2),
        ],
    )
    .header(
        Row::new([
            "",
            "STEP",
            "USES",
            "STATUS",
            "TRY",
            "TOOK",
            "WAITING ON / ERROR",
        ])
        .style(theme::header()),
    )
    .block(block)
    .row_highlight_style(theme::selected())
    .highlight_symbol("› ");
    let mut table_state = TableState::new().with_selected(Some(view.selected));
    frame.render_stateful_widget(table, area, &mut table_state);
}

/// The selected step's log (or output JSON), scrolled, with search matches marked.
fn render_log(frame: &mut Frame, area: Rect, view: &RunView) {
    let Some(step) = view.step() else {
        frame.render_widget(pane_block(" Log ".to_owned(), false), area);
        return;
    };
    let lines: Vec<(LogKind, String)> = if view.show_output {
        output_lines(step)
            .into_iter()
            .map(|line| (LogKind::Stdout, line))
            .collect()
    } else {
        view.log()
            .map(|log| log.lines.iter().map(|l| (l.kind, l.text.clone())).collect())
            .unwrap_or_default()
    };
    let rows = usize::from(area.height.saturating_sub(2));
    let max_top = lines.len().saturating_sub(rows);
    let top = view.scroll.map_or(max_top, |top| top.min(max_top));
    let mut title = if view.show_output {
        format!(" Output: {} ", step.id)
    } else {
        format!(" Log: {} ", step.id)
    };
    match view.scroll {
        None => title.push_str("· following "),
        Some(_) if !lines.is_empty() => title.push_str(&format!(
            "· lines {}-{} of {} ",
            top + 1,
            (top + rows).min(lines.len()),
            lines.len()
        )),
        Some(_) => {}
    }
    if let Some(dropped) = view.log().map(|l| l.dropped).filter(|d| *d > 0)
        && !view.show_output
    {
        title.push_str(&format!("· {dropped} older lines dropped "));
    }
    let mut block = pane_block(
        clip(&title, usize::from(area.width.saturating_sub(4))),
        false,
    );
    if let Some(query) = &view.search {
        block = block.title_bottom(
            Line::styled(format!(" search: {query} (n/N) "), theme::dim()).right_aligned(),
        );
    }
    if lines.is_empty() {
        let empty = if view.show_output {
            "No output yet."
        } else {
            "No log lines yet."
        };
        frame.render_widget(
            Paragraph::new(Text::styled(empty, theme::dim())).block(block),
            area,
        );
        return;
    }
    let query = view.search.as_deref().map(str::to_lowercase);
    let text: Vec<Line<'static>> = lines
        .iter()
        .enumerate()
        .skip(top)
        .take(rows)
        .map(|(i, (kind, line))| {
            let base = match kind {
                LogKind::Stdout => Style::new(),
                LogKind::Stderr => theme::stderr(),
                LogKind::Log => theme::dim(),
                LogKind::Event => theme::log_event(),
            };
            let hit = query
                .as_deref()
                .is_some_and(|q| line.to_lowercase().contains(q));
            let style = if view.found == Some(i) {
                theme::search_match()
            } else if hit {
                base.patch(theme::selected())
            } else {
                base
            };
            Line::styled(line.clone(), style)
        })
        .collect();
    frame.render_widget(Paragraph::new(text).block(block), area);
}
