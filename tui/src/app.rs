//! The TUI's event loop: terminal events, daemon updates and ticks become Actions; each Action
//! updates the state, the Commands it returns go to background tasks, and the state is
//! redrawn. Owns the terminal: restores it on every exit, also on panic, and hands it to
//! `$EDITOR` and back.

use std::io::stdout;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
    EventStream, MouseEventKind,
};
use crossterm::execute;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::action::Action;
use crate::client::Executor;
use crate::command::Command;
use crate::daemon::Target;
use crate::error::EXIT_OK;
use crate::state::State;
use crate::{format, ui, update};

/// How often the clock advances: spinners turn and typing pauses are noticed at this pace.
const TICK: Duration = Duration::from_millis(100);
/// Lines the mouse wheel scrolls per notch.
const WHEEL_LINES: i16 = 3;
/// At most this many queued daemon Actions are applied between two frames, so that a flood
/// of events neither freezes the screen nor redraws it once per event.
const BATCH: usize = 512;

/// Opens the TUI on the daemon at `target` (starting one first when allowed) and runs it until
/// the user quits.
pub async fn run(target: Target) -> anyhow::Result<u8> {
    // Start the daemon before taking over the screen, so that a failure prints like any other
    // command's. Without autostart the screen opens anyway and shows why it cannot connect.
    if target.autostart {
        target.connect_or_start().await?;
    }
    // `try_init` also installs a panic hook that restores the terminal before the panic
    // message is printed; ours runs first and turns the mouse reporting off.
    let mut terminal = ratatui::try_init().context("opening the terminal UI")?;
    let restore_terminal = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = execute!(stdout(), DisableMouseCapture, DisableBracketedPaste);
        restore_terminal(info);
    }));
    // Restores the terminal however this function ends.
    let _restore = RestoreOnDrop;
    execute!(stdout(), EnableMouseCapture, EnableBracketedPaste)
        .context("enabling mouse scrolling")?;
    let (tx, rx) = mpsc::channel(1024);
    let executor = Executor::start(target.socket.clone(), tx.clone());
    let mut state = State::new(target.socket.display().to_string(), format::now_ms());
    if let Ok(size) = terminal.size() {
        state.size = (size.width, size.height);
    }
    event_loop(&mut terminal, state, executor, rx, tx).await?;
    Ok(EXIT_OK)
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut state: State,
    mut executor: Executor,
    mut daemon: mpsc::Receiver<Action>,
    tx: mpsc::Sender<Action>,
) -> anyhow::Result<()> {
    let mut events = Some(EventStream::new());
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        terminal
            .draw(|frame| ui::render(frame, &state))
            .context("drawing the screen")?;
        let action = tokio::select! {
            event = next_terminal_event(&mut events) => match event {
                Some(Ok(event)) => terminal_action(event),
                Some(Err(err)) => return Err(err).context("reading the terminal"),
                None => Some(Action::Quit),
            },
            Some(action) = daemon.recv() => Some(action),
            _ = ticks.tick() => Some(Action::Tick(format::now_ms())),
        };
        let mut commands = Vec::new();
        if let Some(action) = action {
            commands.extend(update::update(&mut state, action));
        }
        // Whatever else the daemon sent meanwhile is applied before the next frame.
        for _ in 0..BATCH {
            let Ok(action) = daemon.try_recv() else {
                break;
            };
            commands.extend(update::update(&mut state, action));
        }
        for command in commands {
            match command {
                Command::ExternalEdit { name, path } => {
                    let result = external_edit(terminal, &mut events, &path).await;
                    // Through the channel like any other outcome; it is read at once.
                    let _ = tx.send(Action::ExternalEditDone { name, result }).await;
                }
                command => executor.execute(command),
            }
        }
        if state.should_quit {
            return Ok(());
        }
    }
}

async fn next_terminal_event(events: &mut Option<EventStream>) -> Option<std::io::Result<Event>> {
    match events {
        Some(stream) => stream.next().await,
        // While `$EDITOR` has the terminal nothing is read from it.
        None => std::future::pending().await,
    }
}

/// The Action for a terminal event, if it means anything.
fn terminal_action(event: Event) -> Option<Action> {
    match event {
        Event::Key(key) => Some(Action::Key(key)),
        Event::Paste(text) => Some(Action::Paste(text)),
        Event::Resize(columns, rows) => Some(Action::Resize(columns, rows)),
        Event::Mouse(mouse) => match mouse.kind {
            MouseEventKind::ScrollUp => Some(Action::Scroll(-WHEEL_LINES)),
            MouseEventKind::ScrollDown => Some(Action::Scroll(WHEEL_LINES)),
            _ => None,
        },
        Event::FocusGained | Event::FocusLost => None,
    }
}

/// Hands the terminal to `$VISUAL` / `$EDITOR` (else `vi`) on `path` and takes it back when
/// the editor exits.
async fn external_edit(
    terminal: &mut ratatui::DefaultTerminal,
    events: &mut Option<EventStream>,
    path: &str,
) -> Result<(), String> {
    // Dropping the stream stops its reader thread, which would otherwise steal the editor's
    // keys.
    *events = None;
    leave_terminal();
    let editor = std::env::var("VISUAL")
        .ok()
        .or_else(|| std::env::var("EDITOR").ok())
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned());
    // `EDITOR="code --wait"` is common: the first word is the program, the rest arguments.
    let mut words = editor.split_whitespace();
    let program = words.next().unwrap_or("vi");
    let status = tokio::process::Command::new(program)
        .args(words)
        .arg(path)
        .status()
        .await;
    let entered = enter_terminal(terminal);
    *events = Some(EventStream::new());
    entered?;
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("`{editor}` exited with {status}")),
        Err(err) => Err(format!("cannot run `{editor}`: {err}; set $EDITOR")),
    }
}

fn leave_terminal() {
    let _ = execute!(stdout(), DisableMouseCapture, DisableBracketedPaste);
    ratatui::restore();
}

fn enter_terminal(terminal: &mut ratatui::DefaultTerminal) -> Result<(), String> {
    crossterm::terminal::enable_raw_mode()
        .map_err(|e| format!("cannot take the terminal back: {e}"))?;
    execute!(
        stdout(),
        crossterm::terminal::EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    )
    .map_err(|e| format!("cannot take the terminal back: {e}"))?;
    // The editor drew over everything: the next frame must be drawn whole. `resize` clears
    // and forgets the last frame without `clear`'s cursor-position query, which a terminal
    // may not answer in time right after another program let go of it.
    let redraw = |e: std::io::Error| format!("cannot redraw the terminal: {e}");
    let size = terminal.size().map_err(redraw)?;
    terminal
        .resize(ratatui::layout::Rect::new(0, 0, size.width, size.height))
        .map_err(redraw)
}

/// Turns the mouse reporting off, leaves raw mode and the alternate screen when dropped.
struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        leave_terminal();
    }
}
