//! Frame times of the TUI's app loop under a flood of run events (issue 6, acceptance 5).
//!
//! Builds a [`State`] with the run view open on a running run of five steps, then for
//! [`SECONDS`] seconds offers it 10,000 `RunEvent`s a second (mostly `StepOutput` lines into
//! the selected step's log, which therefore scrolls in follow mode, about 1 in 100 a
//! `StepStatus` change; sequence numbers increase) plus a `Tick` every 100 ms, and drives them
//! the way `app::event_loop` does:
//!
//! 1. draw the screen;
//! 2. wait for one Action (a tick if one is due, else the next daemon event);
//! 3. apply it with `update`, then apply whatever else the daemon has queued, at most
//!    `BATCH` (512) more, with `update` each;
//! 4. back to 1.
//!
//! A *frame* is 3 followed by the next 1: the update batch plus the draw that shows it, drawn
//! with ratatui's `TestBackend` at 120x40 through `ui::render` (a real terminal also writes
//! the changed cells to the tty, which this leaves out). The daemon is simulated in the same
//! thread: event `i` becomes available at `i / 10_000` s after the start, and at most 1,024
//! wait at a time, as in the loop's bounded channel (a producer that finds it full falls
//! behind and catches up as fast as room appears, so a slow loop shows as fewer events/s).
//!
//! Prints p50, p99 and max frame time, the batch sizes, the event-to-screen latency (from an
//! event being available to the end of the draw that shows it), the events/s achieved and
//! whether p99 is under the 16 ms goal. Run it with:
//!
//! ```text
//! cargo bench -p runbook-tui --bench frame_times
//! ```

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use runbook_protocol::v1::run_event::Kind;
use runbook_protocol::v1::{
    OutputStream, Run, RunEvent, RunStatus, StepOutput, StepRun, StepStatus, StepStatusChanged,
};
use runbook_tui::action::Action;
use runbook_tui::state::run_view::WatchStatus;
use runbook_tui::state::{Connection, DaemonView, RunView, Screen, State};
use runbook_tui::{ui, update};

/// How long events are fed.
const SECONDS: u64 = 5;
/// Events offered per second.
const RATE: u64 = 10_000;
/// The terminal size.
const SIZE: (u16, u16) = (120, 40);
/// The app loop's bound on daemon Actions applied between two frames (`app::BATCH`).
const BATCH: usize = 512;
/// The app loop's daemon channel capacity.
const CHANNEL: u64 = 1024;
/// The app loop's tick period.
const TICK: Duration = Duration::from_millis(100);
/// The frame-time goal.
const GOAL: Duration = Duration::from_millis(16);
/// The clock the state starts at (Unix ms); ticks advance it with the real elapsed time.
const START_MS: i64 = 1_709_618_828_000;
const RUN_ID: &str = "01JQ5BENCH0000000000000000";
const STEPS: [&str; 5] = ["checkout", "build", "test", "package", "deploy"];
/// The step whose output floods (and which the log pane shows).
const LOUD: usize = 1;

fn main() {
    let mut state = initial_state();
    let mut terminal = Terminal::new(TestBackend::new(SIZE.0, SIZE.1)).expect("test terminal");
    let draw = |terminal: &mut Terminal<TestBackend>, state: &State| {
        terminal
            .draw(|frame| ui::render(frame, state))
            .expect("draws");
    };

    let total = SECONDS * RATE;
    let period = Duration::from_nanos(1_000_000_000 / RATE);
    // When event `i` becomes available to the loop.
    let due = |start: Instant, i: u64| start + period * u32::try_from(i).expect("fits");
    let mut frames: Vec<Duration> = Vec::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut batches: Vec<usize> = Vec::new();
    let mut applied: u64 = 0;
    let mut ticks: u64 = 0;

    let start = Instant::now();
    let mut next_tick = start + TICK;
    // Step 1 of the loop: the first frame.
    draw(&mut terminal, &state);
    while applied < total {
        // Step 2: wait for an Action.
        let now = loop {
            let now = Instant::now();
            if now >= next_tick || now >= due(start, applied) {
                break now;
            }
            let wait = next_tick.min(due(start, applied)) - now;
            if wait > Duration::from_micros(500) {
                std::thread::sleep(wait - Duration::from_micros(200));
            } else {
                std::hint::spin_loop();
            }
        };
        let frame_start = now;
        // What the channel holds now: what is due, but no more than its capacity.
        let available = |at: Instant, applied: u64| {
            let due_by =
                (at.saturating_duration_since(start).as_nanos() / period.as_nanos()) as u64 + 1;
            due_by.min(total).min(applied + CHANNEL)
        };
        let oldest = applied;
        let mut batch = 0;
        // The first Action: a due tick wins (tokio::select! picks at random among the ready
        // branches; ticks are rare enough that the order matters little), else an event.
        let mut budget = BATCH;
        if now >= next_tick {
            next_tick += TICK;
            ticks += 1;
            let _ = update::update(&mut state, Action::Tick(clock(start, now)));
        } else {
            let _ = update::update(&mut state, Action::RunEvent(event(applied)));
            applied += 1;
            batch += 1;
        }
        // Step 3: the rest of the queue, up to BATCH, each checked with `try_recv`.
        while budget > 0 && applied < available(Instant::now(), applied) {
            let _ = update::update(&mut state, Action::RunEvent(event(applied)));
            applied += 1;
            batch += 1;
            budget -= 1;
        }
        // Step 1 again: the frame that shows the batch.
        draw(&mut terminal, &state);
        let end = Instant::now();
        frames.push(end - frame_start);
        batches.push(batch);
        if batch > 0 {
            latencies.push(end.saturating_duration_since(due(start, oldest)));
        }
    }
    let elapsed = start.elapsed();

    check_applied(&state, &terminal, total);
    report(Report {
        frames,
        latencies,
        batches,
        events: applied,
        ticks,
        elapsed,
    });
}

/// The Unix-ms clock of a tick at `now`.
fn clock(start: Instant, now: Instant) -> i64 {
    START_MS + i64::try_from((now - start).as_millis()).unwrap_or(i64::MAX)
}

/// The screen as an operator watching a busy run has it: connected, run view on top, live.
fn initial_state() -> State {
    let mut state = State::new("/run/user/1000/runbookd.sock", START_MS);
    state.size = SIZE;
    state.connection = Connection::Connected(DaemonView {
        version: "0.1.0".into(),
        active_runs: 1,
        steps_in_flight: 1,
        store_bytes: 48 << 20,
        not_ready: String::new(),
    });
    let steps = STEPS
        .iter()
        .enumerate()
        .map(|(i, id)| StepRun {
            id: (*id).into(),
            uses: "shell".into(),
            status: (if i == 0 {
                StepStatus::Completed
            } else if i <= LOUD + 1 {
                StepStatus::Running
            } else {
                StepStatus::Pending
            }) as i32,
            attempts: u32::from(i <= LOUD + 1),
            started_at: if i <= LOUD + 1 { START_MS - 5_000 } else { 0 },
            ..Default::default()
        })
        .collect();
    let run = Run {
        id: RUN_ID.into(),
        runbook: "release".into(),
        version: "3f2a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8".into(),
        status: RunStatus::Running as i32,
        created_at: START_MS - 6_000,
        started_at: START_MS - 6_000,
        params_json: r#"{"env":"staging","version":"1.4.2"}"#.into(),
        steps,
        ..Default::default()
    };
    let mut view = RunView::new(RUN_ID);
    view.run = Some(run);
    view.watch = WatchStatus::Live;
    view.selected = LOUD;
    state.stack.push(Screen::Run(Box::new(view)));
    state
}

/// Event `i` of the flood (sequence number `i + 1`): output lines, mostly of the selected
/// step, some on stderr or of the other running step, and a step status change every 100th.
fn event(i: u64) -> RunEvent {
    let seq = i + 1;
    let at = START_MS + i64::try_from(i / (RATE / 1000)).unwrap_or(0);
    let kind = if i % 100 == 99 {
        // The last steps go around Running → Failed → Running (a retry) and so on.
        let round = i / 100;
        let step = STEPS[LOUD + 1 + usize::try_from(round % 3).unwrap_or(0)];
        let (status, error) = if round.is_multiple_of(2) {
            (StepStatus::Running, String::new())
        } else {
            (StepStatus::Failed, format!("exit status {}", round % 7 + 1))
        };
        Kind::StepStatus(StepStatusChanged {
            step_id: step.into(),
            status: status as i32,
            attempt: u32::try_from(round / 2 + 1).unwrap_or(u32::MAX),
            error,
            ..Default::default()
        })
    } else {
        let (step, stream) = match i % 10 {
            7 => (STEPS[LOUD + 1], OutputStream::Stdout),
            8 => (STEPS[LOUD], OutputStream::Stderr),
            _ => (STEPS[LOUD], OutputStream::Stdout),
        };
        Kind::StepOutput(StepOutput {
            step_id: step.into(),
            stream: stream as i32,
            line: format!(
                "[{seq:>7}] Compiling crate-{} v0.{}.{} (/build/src/crates/crate-{}) in {}.{:03}s",
                i % 97,
                i % 13,
                i % 29,
                i % 97,
                i % 60,
                i % 1000
            ),
        })
    };
    RunEvent {
        run_id: RUN_ID.into(),
        seq,
        at,
        kind: Some(kind),
    }
}

/// Guards against measuring a loop that drops events or draws nothing: the view must have
/// applied them all, and the last frame must show the flooded log.
fn check_applied(state: &State, terminal: &Terminal<TestBackend>, total: u64) {
    let Screen::Run(view) = state.screen() else {
        panic!("the run view is no longer on top");
    };
    assert_eq!(view.seq, total, "every event applied once, in order");
    assert!(
        view.logs
            .get(STEPS[LOUD])
            .is_some_and(|log| !log.lines.is_empty()),
        "the loud step has a log"
    );
    let screen = terminal.backend().to_string();
    assert!(
        screen.contains(&format!("Log: {}", STEPS[LOUD])),
        "the last frame shows the loud step's log:\n{screen}"
    );
}

struct Report {
    frames: Vec<Duration>,
    latencies: Vec<Duration>,
    batches: Vec<usize>,
    events: u64,
    ticks: u64,
    elapsed: Duration,
}

fn report(mut r: Report) {
    r.frames.sort_unstable();
    r.latencies.sort_unstable();
    r.batches.sort_unstable();
    let ms = |d: Duration| format!("{:>8.3} ms", d.as_secs_f64() * 1e3);
    let p99 = percentile(&r.frames, 99.0);
    let rate = r.events as f64 / r.elapsed.as_secs_f64();
    let mean_batch = r.batches.iter().sum::<usize>() as f64 / r.batches.len().max(1) as f64;
    println!(
        "frame_times: {} events offered at {RATE}/s for {SECONDS}s, {}x{} TestBackend, \
         run view following the log",
        SECONDS * RATE,
        SIZE.0,
        SIZE.1
    );
    println!();
    println!("{:<28}{:>14}", "metric", "value");
    println!("{}", "-".repeat(42));
    println!("{:<28}{:>14}", "frames", r.frames.len());
    println!(
        "{:<28}{:>14}",
        "frame time p50",
        ms(percentile(&r.frames, 50.0))
    );
    println!("{:<28}{:>14}", "frame time p99", ms(p99));
    println!("{:<28}{:>14}", "frame time max", ms(max(&r.frames)));
    println!("{:<28}{:>14.1}", "events per frame (mean)", mean_batch);
    println!(
        "{:<28}{:>14}",
        "events per frame (p99)",
        percentile(&r.batches, 99.0)
    );
    println!("{:<28}{:>14}", "events per frame (max)", max(&r.batches));
    println!(
        "{:<28}{:>14}",
        "event→screen p50",
        ms(percentile(&r.latencies, 50.0))
    );
    println!(
        "{:<28}{:>14}",
        "event→screen p99",
        ms(percentile(&r.latencies, 99.0))
    );
    println!("{:<28}{:>14}", "ticks", r.ticks);
    println!("{:<28}{:>14.0}", "events/s achieved", rate);
    println!(
        "{:<28}{:>14.1}",
        "frames/s",
        r.frames.len() as f64 / r.elapsed.as_secs_f64()
    );
    println!();
    println!(
        "goal p99 < {} ms: {}",
        GOAL.as_millis(),
        if p99 < GOAL { "MET" } else { "NOT MET" }
    );
}

/// The `p`th percentile (nearest rank) of sorted `values`.
fn percentile<T: Copy + Default>(values: &[T], p: f64) -> T {
    if values.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn max<T: Copy + Default>(values: &[T]) -> T {
    values.last().copied().unwrap_or_default()
}
