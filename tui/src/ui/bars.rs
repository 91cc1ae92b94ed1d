//! The status bar (tabs, daemon connection, approvals badge) and the footer (prompt, message
//! or the keys of the screen).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::keymap;
use crate::state::{Connection, PromptKind, Screen, State, Then};
use crate::{format, theme, update};

/// The top line: where you are, whom we talk to (or why we cannot), and how many steps wait
/// for approval.
pub fn status(frame: &mut Frame, area: Rect, state: &State) {
    let style = match &state.connection {
        Connection::Connecting => theme::status_pending(),
        Connection::Connected(daemon) if daemon.not_ready.is_empty() => theme::status_ok(),
        Connection::Connected(_) | Connection::Disconnected(_) => theme::status_error(),
    };
    let count = state.approval_count();
    let badge = if count > 0 {
        format!(
            " ⚑ {count} approval{} (A) ",
            if count == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    let badge_width = Span::raw(&badge).width() as u16;
    let [left, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(badge_width)]).areas(area);

    let mut spans = Vec::new();
    let root = state.stack.first().unwrap_or(&Screen::Runbooks);
    for (tab, name) in [
        (Screen::Runbooks, "Runbooks"),
        (Screen::Runs, "Runs"),
        (Screen::Approvals, "Approvals"),
    ] {
        // Brackets as well as the style: the current tab must show on any terminal.
        if *root == tab {
            spans.push(Span::styled(format!("[{name}]"), theme::tab_active()));
        } else {
            spans.push(Span::raw(format!(" {name} ")));
        }
    }
    spans.push(Span::raw(" │ "));
    spans.push(Span::raw(match &state.connection {
        Connection::Connecting => format!("connecting to {} …", state.socket),
        // Not ready first: the daemon refuses work, and a long line is cut on the right.
        Connection::Connected(daemon) if !daemon.not_ready.is_empty() => format!(
            "⚠ runbookd {} is not ready: {} · {} active",
            daemon.version, daemon.not_ready, daemon.active_runs
        ),
        Connection::Connected(daemon) => {
            // The counters go in as far as they fit whole: a cut figure misleads.
            let room = usize::from(left.width)
                .saturating_sub(spans.iter().map(Span::width).sum::<usize>());
            let mut line = format!(
                "● runbookd {} · {} active",
                daemon.version, daemon.active_runs
            );
            for extra in [
                format!(
                    " · {} step{} running",
                    daemon.steps_in_flight,
                    if daemon.steps_in_flight == 1 { "" } else { "s" }
                ),
                format!(" · store {}", format::bytes(daemon.store_bytes)),
            ] {
                if Span::raw(&line).width() + Span::raw(&extra).width() > room {
                    break;
                }
                line.push_str(&extra);
            }
            line
        }
        // The error first: it is what the user needs, and a long line is cut on the right.
        Connection::Disconnected(error) => {
            let retry = if state.retry_at > state.now_ms {
                format!(
                    "retrying in {}",
                    format::duration(state.retry_at - state.now_ms)
                )
            } else {
                "retrying".to_owned()
            };
            format!("✖ cannot reach runbookd: {error} · {retry}")
        }
    }));
    frame.render_widget(Paragraph::new(Line::from(spans)).style(style), left);
    if count > 0 {
        frame.render_widget(Paragraph::new(badge).style(theme::badge()), right);
    }
}

/// The bottom line: the open prompt, else the latest message, else the keys of the screen.
pub fn footer(frame: &mut Frame, area: Rect, state: &State) {
    if let Some(prompt) = &state.prompt {
        let label = match &prompt.kind {
            PromptKind::FilterRunbooks => "filter: ".to_owned(),
            PromptKind::SearchLog | PromptKind::SearchEditor => "search: ".to_owned(),
            PromptKind::Deny { run_id, step_id } => {
                format!("deny step {step_id} of run {}, because: ", short(run_id))
            }
            PromptKind::ConfirmCancel { run_id } => {
                let line = format!(" cancel run {run_id}? y/n ");
                frame.render_widget(Paragraph::new(line).style(theme::badge()), area);
                return;
            }
            PromptKind::Rollback { runbook } => {
                format!("roll {runbook} back to version (Enter, Esc to keep it): ")
            }
            PromptKind::Resolve { run_id, step_id } => {
                let line = format!(
                    " step {step_id} of run {} was interrupted: r retry · s skip · f fail · Esc later ",
                    short(run_id)
                );
                frame.render_widget(Paragraph::new(line).style(theme::badge()), area);
                return;
            }
            PromptKind::ConfirmRetry { run_id } => {
                let line = format!(
                    " retry run {run_id} in place (failed steps run again, completed ones keep their outputs)? y/n "
                );
                frame.render_widget(Paragraph::new(line).style(theme::badge()), area);
                return;
            }
        };
        let line = Line::from(vec![
            Span::styled(format!(" {label}"), theme::key()),
            Span::raw(prompt.input.text().to_owned()),
        ]);
        let before_cursor: String = prompt
            .input
            .text()
            .chars()
            .take(prompt.input.cursor())
            .collect();
        let x = 1 + Span::raw(label).width() + Span::raw(before_cursor).width();
        frame.render_widget(Paragraph::new(line), area);
        if state.help.is_none() {
            let x = area.x + u16::try_from(x).unwrap_or(u16::MAX).min(area.width - 1);
            frame.set_cursor_position(Position::new(x, area.y));
        }
        return;
    }
    if let Some(notice) = state.notice.as_ref().filter(|n| n.until_ms > state.now_ms) {
        let style = if notice.error {
            theme::error()
        } else {
            theme::info()
        };
        frame.render_widget(
            Paragraph::new(format!(" {}", notice.text)).style(style),
            area,
        );
        return;
    }
    if let Some(pending) = &state.pending {
        let what = match pending.then {
            Then::Edit => "editor",
            Then::Launch => "launch form",
        };
        let text = format!(" loading {} for the {what} …", pending.runbook);
        frame.render_widget(Paragraph::new(text).style(theme::dim()), area);
        return;
    }
    let mut spans = vec![Span::raw(" ")];
    let mut hints = keymap::hints(update::context(state));
    if state.stack.len() == 1 {
        // Tab only switches between the top-level screens.
        let at = hints.len().saturating_sub(2);
        hints.insert(at, ("Tab", "tabs"));
    }
    for (key, what) in hints {
        // The first key is enough here; help lists them all.
        let key = key.split(' ').next().unwrap_or(key);
        spans.push(Span::styled(key, theme::key()));
        spans.push(Span::styled(format!(" {what}  "), theme::dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(Style::new()), area);
}

/// The first characters of a run id: enough to tell runs apart in a line.
pub fn short(id: &str) -> String {
    id.chars().take(12).collect()
}
