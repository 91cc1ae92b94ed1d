//! Drawing the TUI: a pure function of [`State`]; nothing here changes state or does I/O.

mod bars;
mod diagnostics;
mod runbooks;
mod runs;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Block, BorderType, Borders};

use crate::state::{Pane, State};
use crate::theme;

/// Draws the whole first screen: status bar, runbooks (and the problems of the selected one when
/// it is invalid) | recent runs, key hints.
pub fn render(frame: &mut Frame, state: &State) {
    let [status, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(body);
    bars::status(frame, status, state);
    render_left(frame, left, state);
    runs::render(frame, right, state);
    bars::footer(frame, footer);
}

/// The runbook list, with the diagnostics panel below it when the selected runbook is invalid.
fn render_left(frame: &mut Frame, area: Rect, state: &State) {
    let Some(invalid) = state.current_runbook().filter(|rb| !rb.valid) else {
        runbooks::render(frame, area, state);
        return;
    };
    // The list needs a row per runbook plus its header and borders; the diagnostics, with
    // their snippets, are longer, so the list gets no more than half.
    let rows = u16::try_from(state.runbooks.len()).unwrap_or(u16::MAX);
    let list_height = rows.saturating_add(3).min(area.height / 2);
    let [list, problems] =
        Layout::vertical([Constraint::Length(list_height), Constraint::Fill(1)]).areas(area);
    runbooks::render(frame, list, state);
    diagnostics::render(frame, problems, invalid);
}

/// The frame of a pane, highlighted when it has the focus.
fn pane_block(title: String, focused: bool) -> Block<'static> {
    Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(if focused {
            theme::focused_border()
        } else {
            theme::border()
        })
        .title(title)
}

fn has_focus(state: &State, pane: Pane) -> bool {
    state.focus == pane
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Connection;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use runbook_protocol::v1::{Diagnostic, Run, RunStatus, RunbookSummary};

    const NOW: i64 = 1_709_618_828_000;

    fn draw(state: &State) -> String {
        draw_at(state, 100, 16)
    }

    fn draw_at(state: &State, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal.draw(|frame| render(frame, state)).expect("draws");
        terminal.backend().to_string()
    }

    /// A diagnostic as the daemon renders it: message, location, snippet.
    fn diagnostic(rendered: &str) -> Diagnostic {
        Diagnostic {
            message: rendered.lines().next().unwrap_or_default().into(),
            rendered: rendered.into(),
            ..Default::default()
        }
    }

    fn connected() -> Connection {
        Connection::Connected {
            daemon_version: "0.1.0".into(),
            active_runs: 2,
        }
    }

    fn run(id: &str, runbook: &str, status: RunStatus, started_ago_s: i64) -> Run {
        let started_at = NOW - started_ago_s * 1000;
        Run {
            id: id.into(),
            runbook: runbook.into(),
            status: status as i32,
            created_at: started_at,
            started_at,
            finished_at: if status.is_terminal() {
                started_at + 4_200
            } else {
                0
            },
            ..Default::default()
        }
    }

    fn populated() -> State {
        let mut state = State::new("/run/user/1000/runbook/runbookd.sock", NOW);
        state.connection = connected();
        state.runbooks = vec![
            RunbookSummary {
                name: "backup-db".into(),
                step_count: 2,
                valid: true,
                ..Default::default()
            },
            // Never valid: it cannot run.
            RunbookSummary {
                name: "broken".into(),
                step_count: 0,
                valid: false,
                diagnostics: vec![
                    diagnostic(
                        "error: unknown field `neds`, expected one of `id`, `uses`, `with`, \
                         `needs`, `if`, `timeout`, `approval`, `description`\n \
                         --> /home/ops/runbooks/broken.toml:5:1\n  |\n5 | neds = [\"fetch\"]\n  \
                         | ^^^^\n",
                    ),
                    diagnostic(
                        "error: step `deploy` needs `buidl`, which is not a step of this \
                         runbook; did you mean `build`?\n \
                         --> /home/ops/runbooks/broken.toml:9:10\n  |\n9 | needs = \
                         [\"buidl\"]\n  |          ^^^^^^^\n",
                    ),
                ],
                ..Default::default()
            },
            // Saved invalid after a good version, which still runs.
            RunbookSummary {
                name: "deploy-api".into(),
                version: "3f2a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8".into(),
                step_count: 5,
                valid: false,
                diagnostics: vec![diagnostic(
                    "error: invalid duration `five minutes`: expected number at 0 (write it \
                     like \"30s\", \"5m\" or \"1h 30m\")\n  \
                     --> /home/ops/runbooks/deploy-api.toml:12:11\n   |\n12 | timeout = \
                     \"five minutes\"\n   |           ^^^^^^^^^^^^^^\n",
                )],
                ..Default::default()
            },
        ];
        state.runs = vec![
            run(
                "01JQ5RUNNING00000000000000",
                "deploy-api",
                RunStatus::Running,
                5,
            ),
            run(
                "01JQ5WAITING00000000000000",
                "deploy-api",
                RunStatus::Waiting,
                90,
            ),
            run(
                "01JQ5FAILED000000000000000",
                "backup-db",
                RunStatus::Failed,
                4_000,
            ),
            run(
                "01JQ5DONE00000000000000000",
                "backup-db",
                RunStatus::Completed,
                90_000,
            ),
            run(
                "01JQ5CANCELLED000000000000",
                "deploy-api",
                RunStatus::Cancelled,
                200_000,
            ),
        ];
        state
    }

    #[test]
    fn empty() {
        let mut state = State::new("/tmp/runbookd.sock", NOW);
        state.connection = Connection::Connected {
            daemon_version: "0.1.0".into(),
            active_runs: 0,
        };
        insta::assert_snapshot!(draw(&state));
    }

    #[test]
    fn runbooks_and_runs() {
        insta::assert_snapshot!(draw(&populated()));
    }

    #[test]
    fn runs_pane_focused() {
        let mut state = populated();
        state.focus = Pane::Runs;
        state.selected_run = 2;
        insta::assert_snapshot!(draw(&state));
    }

    #[test]
    fn invalid_runbook_that_cannot_run() {
        let mut state = populated();
        state.selected_runbook = 1;
        insta::assert_snapshot!(draw(&state));
    }

    #[test]
    fn invalid_runbook_that_runs_its_last_good_version() {
        let mut state = populated();
        state.selected_runbook = 2;
        insta::assert_snapshot!(draw(&state));
    }

    #[test]
    fn invalid_runbook_that_cannot_run_80x24() {
        let mut state = populated();
        state.selected_runbook = 1;
        insta::assert_snapshot!(draw_at(&state, 80, 24));
    }

    #[test]
    fn invalid_runbook_that_runs_its_last_good_version_80x24() {
        let mut state = populated();
        state.selected_runbook = 2;
        insta::assert_snapshot!(draw_at(&state, 80, 24));
    }

    #[test]
    fn disconnected() {
        let mut state = State::new("/tmp/runbookd.sock", NOW);
        state.connection = Connection::Disconnected(
            "transport error: No such file or directory (os error 2)".into(),
        );
        insta::assert_snapshot!(draw(&state));
    }
}
