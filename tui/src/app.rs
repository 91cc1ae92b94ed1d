//! The TUI's event loop: terminal events, daemon updates and ticks become Actions; each Action
//! updates the state, and the state is redrawn. Owns the terminal and restores it on every exit.

use std::time::Duration;

use anyhow::Context;
use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::action::Action;
use crate::daemon::Target;
use crate::error::EXIT_OK;
use crate::state::State;
use crate::{client, format, keymap, ui, update};

/// How often the clock (and so the "ago" columns) advances.
const TICK: Duration = Duration::from_millis(500);

/// Opens the TUI on the daemon at `target` (starting one first when allowed) and runs it until
/// the user quits.
pub async fn run(target: Target) -> anyhow::Result<u8> {
    // Start the daemon before taking over the screen, so that a failure prints like any other
    // command's. Without autostart the screen opens anyway and shows why it cannot connect.
    if target.autostart {
        target.connect_or_start().await?;
    }
    let mut terminal = ratatui::try_init().context("opening the terminal UI")?;
    // Restores the terminal however this function ends; `try_init` also installed a panic
    // hook that restores it before a panic message is printed.
    let _restore = RestoreOnDrop;
    let (tx, rx) = mpsc::channel(64);
    let poller = tokio::spawn(client::poll(target.socket.clone(), tx));
    let state = State::new(target.socket.display().to_string(), format::now_ms());
    let result = event_loop(&mut terminal, state, rx).await;
    poller.abort();
    result.map(|()| EXIT_OK)
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut state: State,
    mut daemon: mpsc::Receiver<Action>,
) -> anyhow::Result<()> {
    let mut events = EventStream::new();
    let mut ticks = tokio::time::interval(TICK);
    loop {
        terminal
            .draw(|frame| ui::render(frame, &state))
            .context("drawing the screen")?;
        let action = tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => keymap::action_for(key),
                // A resize (or anything else) only needs the redraw at the top of the loop.
                Some(Ok(_)) => None,
                Some(Err(err)) => return Err(err).context("reading the terminal"),
                None => Some(Action::Quit),
            },
            Some(action) = daemon.recv() => Some(action),
            _ = ticks.tick() => Some(Action::Tick(format::now_ms())),
        };
        if let Some(action) = action {
            update::update(&mut state, action);
        }
        if state.should_quit {
            return Ok(());
        }
    }
}

/// Leaves raw mode and the alternate screen when dropped.
struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        ratatui::restore();
    }
}
