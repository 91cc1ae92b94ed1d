//! Drawing the TUI: a pure function of [`State`]; nothing here changes state or does I/O.

mod bars;
mod runbooks;
mod runs;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::widgets::{Block, BorderType, Borders};

use crate::state::{Pane, State};
use crate::theme;

/// Draws the whole first screen: status bar, runbooks | recent runs, key hints.
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
    runbooks::render(frame, left, state);
    runs::render(frame, right, state);
    bars::footer(frame, footer);
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
        let mut terminal = Terminal::new(TestBackend::new(100, 16)).expect("test terminal");
        terminal.draw(|frame| render(frame, state)).expect("draws");
        terminal.backend().to_string()
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
            RunbookSummary {
                name: "broken".into(),
                step_count: 0,
                valid: false,
                diagnostics: vec![Diagnostic {
                    message: "unknown field `stepz`".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            RunbookSummary {
                name: "deploy-api".into(),
                step_count: 5,
                valid: true,
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
        state.selected_runbook = 1;
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
    fn disconnected() {
        let mut state = State::new("/tmp/runbookd.sock", NOW);
        state.connection = Connection::Disconnected(
            "transport error: No such file or directory (os error 2)".into(),
        );
        insta::assert_snapshot!(draw(&state));
    }
}
