//! The remote agents: each one's name, labels, version, how long ago it last heartbeat, the
//! steps it runs and whether it is live (given steps) or gone, as `runbook agents` lists them.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Text;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};

use super::{pane_block, placeholder};
use crate::state::State;
use crate::{format, theme};

/// Draws the agents screen into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let view = &state.agents;
    let agents = view.agents();
    let live = agents.iter().filter(|agent| agent.live).count();
    let title = if agents.is_empty() {
        " Agents (0) ".to_owned()
    } else {
        format!(" Agents ({}) · {live} live ", agents.len())
    };
    let block = pane_block(title, true);
    if let Some(error) = &view.error {
        let text = Text::styled(format!("Cannot list the agents: {error}"), theme::error());
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }
    // The same words as `runbook agents`, so that the CLI and the screen explain alike.
    let empty = match &view.listing {
        None => Some("Loading the agents …"),
        Some(listing) if !listing.cluster => {
            Some("no cluster: the daemon has no `[cluster]` in its config, so it has no agents")
        }
        Some(listing) if listing.agents.is_empty() => Some(
            "no agents yet: start one with `runbookd agent --nats URL --name NAME --labels LABELS`",
        ),
        Some(_) => None,
    };
    if let Some(empty) = empty {
        placeholder(frame, area, block, state, empty);
        return;
    }
    let rows = agents.iter().map(|agent| {
        let (health, style) = if agent.live {
            ("live", theme::dim())
        } else {
            ("gone", theme::warning())
        };
        Row::new(vec![
            Cell::from(format::printable(&agent.name).into_owned()),
            Cell::from(format::printable(&agent.labels.join(",")).into_owned()),
            Cell::from(format::printable(&agent.version).into_owned()),
            Cell::from(format::heartbeat(agent.heartbeat_age_ms)),
            Cell::from(agent.running.to_string()),
            Cell::from(health).style(style),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Fill(3),
            Constraint::Length(10),
            Constraint::Length(11),
            Constraint::Length(7),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new([
            "NAME",
            "LABELS",
            "VERSION",
            "HEARTBEAT",
            "RUNNING",
            "HEALTH",
        ])
        .style(theme::header()),
    )
    .block(block)
    .row_highlight_style(theme::selected())
    .highlight_symbol("› ");
    let mut table_state = TableState::new().with_selected(Some(view.selected));
    frame.render_stateful_widget(table, area, &mut table_state);
}
