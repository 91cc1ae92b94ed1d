//! A run watched live: its record, the output of each step, and where the log pane is
//! scrolled. Events are applied once each, in sequence order: an event whose sequence number
//! was already seen (a replay after a reconnect, a duplicate, a late one) is ignored.

use std::collections::{BTreeMap, VecDeque};

use runbook_protocol::v1::{
    OutputStream, Run, RunEvent, RunStatus, StepRun, StepStatus, run_event::Kind,
};

use crate::format;

/// How many lines of one step's output are kept; older ones are dropped (and counted).
pub const MAX_LINES_PER_STEP: usize = 5_000;

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// The step's standard output.
    Stdout,
    /// The step's standard error.
    Stderr,
    /// A message its plugin logged.
    Log,
    /// A change of the step (attempt started, retry, approval), written by the TUI.
    Event,
}

/// One line of a step's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The event it came from.
    pub seq: u64,
    /// When, in Unix milliseconds.
    pub at: i64,
    /// Where it came from.
    pub kind: LogKind,
    /// The text, without a line end.
    pub text: String,
}

/// The log of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepLog {
    /// The newest lines, oldest first.
    pub lines: VecDeque<LogLine>,
    /// How many older lines were dropped to bound memory.
    pub dropped: usize,
}

/// The state of the stream that feeds the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchStatus {
    /// Opening the stream.
    Connecting,
    /// Events arrive as they happen.
    Live,
    /// The stream broke; the next attempt resumes after the last event seen.
    Reconnecting {
        /// Why it broke.
        error: String,
        /// When the next attempt starts (Unix ms).
        retry_at: i64,
    },
    /// The run has ended and every event was received.
    Ended,
}

/// The run view.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    /// The run's full id.
    pub run_id: String,
    /// The run as last known: a daemon snapshot with the events after it applied.
    pub run: Option<Run>,
    /// The sequence number of the newest event applied; older ones are ignored.
    pub seq: u64,
    /// Each step's log, by step id.
    pub logs: BTreeMap<String, StepLog>,
    /// The selected step's index in `run.steps`.
    pub selected: usize,
    /// The first log line shown; `None` follows the newest lines.
    pub scroll: Option<usize>,
    /// Show the selected step's output JSON instead of its log.
    pub show_output: bool,
    /// The last log search, highlighted and repeated by `n` / `N`.
    pub search: Option<String>,
    /// The log line of the current search match.
    pub found: Option<usize>,
    /// The stream's state.
    pub watch: WatchStatus,
    /// Why the run cannot be shown (unknown id, say).
    pub error: Option<String>,
}

impl RunView {
    /// A view of `run_id` before anything was heard of it.
    pub fn new(run_id: impl Into<String>) -> Self {
        Self {
            run_id: run_id.into(),
            run: None,
            seq: 0,
            logs: BTreeMap::new(),
            selected: 0,
            scroll: None,
            show_output: false,
            search: None,
            found: None,
            watch: WatchStatus::Connecting,
            error: None,
        }
    }

    /// The selected step, if the run has steps.
    pub fn step(&self) -> Option<&StepRun> {
        self.run.as_ref()?.steps.get(self.selected)
    }

    /// The selected step's log, if it has one.
    pub fn log(&self) -> Option<&StepLog> {
        self.logs.get(&self.step()?.id)
    }

    /// The lines of the log pane: the selected step's log, or its output JSON.
    pub fn pane_len(&self) -> usize {
        match self.step() {
            Some(step) if self.show_output => output_lines(step).len(),
            _ => self.log().map_or(0, |log| log.lines.len()),
        }
    }

    /// Whether the run will still change.
    pub fn is_live(&self) -> bool {
        self.run
            .as_ref()
            .is_none_or(|run| !run.status().is_terminal())
    }

    /// Takes a snapshot of the run from the daemon, unless the view already knows a newer
    /// state (events after the snapshot was taken arrived first).
    pub fn apply_snapshot(&mut self, run: Run) -> bool {
        if self
            .run
            .as_ref()
            .is_some_and(|known| known.last_seq > run.last_seq)
        {
            return false;
        }
        self.run = Some(run);
        true
    }

    /// Applies one event; false (and nothing changes) when its sequence number was seen.
    pub fn apply_event(&mut self, event: &RunEvent) -> bool {
        if event.run_id != self.run_id || event.seq <= self.seq {
            return false;
        }
        self.seq = event.seq;
        let Some(kind) = &event.kind else {
            return true;
        };
        if let Some((step_id, kind, texts)) = log_lines(kind) {
            for text in texts {
                self.push_line(
                    step_id,
                    LogLine {
                        seq: event.seq,
                        at: event.at,
                        kind,
                        text,
                    },
                );
            }
        }
        // The snapshot may already include this event (it was taken after it happened).
        if let Some(run) = &mut self.run
            && event.seq > run.last_seq
        {
            apply_to_run(run, event.at, kind);
            run.last_seq = event.seq;
        }
        true
    }

    fn push_line(&mut self, step_id: &str, line: LogLine) {
        let log = self.logs.entry(step_id.to_owned()).or_default();
        log.lines.push_back(line);
        if log.lines.len() > MAX_LINES_PER_STEP {
            log.lines.pop_front();
            log.dropped += 1;
            // Keep the same lines on screen while the oldest ones go.
            let selected = self
                .run
                .as_ref()
                .and_then(|run| run.steps.get(self.selected))
                .is_some_and(|step| step.id == step_id);
            if selected && let Some(top) = &mut self.scroll {
                *top = top.saturating_sub(1);
            }
        }
    }
}

/// The log lines an event adds to a step's log, if any: (step, kind, texts).
fn log_lines(kind: &Kind) -> Option<(&str, LogKind, Vec<String>)> {
    match kind {
        Kind::StepOutput(output) => {
            let kind = match output.stream() {
                OutputStream::Stderr => LogKind::Stderr,
                OutputStream::Log => LogKind::Log,
                OutputStream::Stdout | OutputStream::Unspecified => LogKind::Stdout,
            };
            // One event may carry several lines of the same stream (the daemon batches them).
            let lines = output.line.split('\n').map(str::to_owned).collect();
            Some((&output.step_id, kind, lines))
        }
        Kind::StepStatus(change) => {
            let status = change.status();
            // Pending and waiting say nothing new: a retry or an approval request has its own
            // line, and an async wait is logged by the daemon with its invocation.
            if matches!(status, StepStatus::Pending | StepStatus::Waiting)
                && change.error.is_empty()
            {
                return None;
            }
            let mut text = match status {
                StepStatus::Running => format!("── attempt {} started", change.attempt.max(1)),
                other => format!("── {}", other.label()),
            };
            if !change.error.is_empty() {
                text.push_str(&format!(": {}", change.error));
            }
            Some((&change.step_id, LogKind::Event, vec![text]))
        }
        Kind::StepRetrying(retry) => {
            let delay = format::duration(i64::try_from(retry.delay_ms).unwrap_or(i64::MAX));
            Some((
                &retry.step_id,
                LogKind::Event,
                vec![format!(
                    "── attempt {} failed: {}; retrying in {delay}",
                    retry.attempt, retry.error
                )],
            ))
        }
        Kind::ApprovalRequested(request) => Some((
            &request.step_id,
            LogKind::Event,
            vec!["── waiting for approval".to_owned()],
        )),
        Kind::InstanceStatus(change) => {
            let mut text = format!(
                "── {}[{}] {}",
                change.step_id,
                change.index,
                change.status().label()
            );
            if !change.error.is_empty() {
                text.push_str(&format!(": {}", change.error));
            }
            Some((&change.step_id, LogKind::Event, vec![text]))
        }
        // The daemon's log line in the step's output says it already; a retry is the run's.
        Kind::RunStatus(_) | Kind::StepPermitWait(_) | Kind::RunRetried(_) => None,
    }
}

/// Brings `run` up to date with one event that happened at `at`.
fn apply_to_run(run: &mut Run, at: i64, kind: &Kind) {
    match kind {
        Kind::RunStatus(change) => {
            let status = change.status();
            run.status = status as i32;
            // Each status change carries the run's error as it is now: a resumed run has none.
            run.error = change.error.clone();
            if status == RunStatus::Running && run.started_at == 0 {
                run.started_at = at;
            }
            if status.is_terminal() {
                run.finished_at = at;
            }
        }
        Kind::StepStatus(change) => {
            let step = step_mut(run, &change.step_id);
            let status = change.status();
            step.status = status as i32;
            step.attempts = step.attempts.max(change.attempt);
            step.error = change.error.clone();
            if !change.output_json.is_empty() {
                step.output_json = change.output_json.clone();
            }
            step.output_omitted = change.output_omitted;
            if status == StepStatus::Running {
                if step.started_at == 0 {
                    step.started_at = at;
                }
                step.finished_at = 0;
                step.retry_at = 0;
            }
            // A rate-limit wait comes after its attempt's start: any change ends it.
            step.permit_wait = None;
            if status != StepStatus::Waiting {
                step.invocation_id.clear();
                step.resume_at = 0;
            }
            if status.is_terminal() {
                step.finished_at = at;
            }
        }
        Kind::StepRetrying(retry) => {
            let step = step_mut(run, &retry.step_id);
            step.attempts = step.attempts.max(retry.attempt);
            step.error = retry.error.clone();
            step.retry_at = at.saturating_add(i64::try_from(retry.delay_ms).unwrap_or(i64::MAX));
        }
        Kind::ApprovalRequested(request) => {
            let step = step_mut(run, &request.step_id);
            step.status = StepStatus::Waiting as i32;
            step.approval = request.approval.clone();
        }
        Kind::StepPermitWait(held) => {
            step_mut(run, &held.step_id).permit_wait = held.wait.clone();
        }
        Kind::RunRetried(retry) => {
            run.finished_at = 0;
            for id in &retry.steps {
                // A reopened step's earlier attempts are history: its next one starts afresh.
                let step = step_mut(run, id);
                step.output_json.clear();
                step.output_omitted = false;
                step.error.clear();
                step.finished_at = 0;
                step.retry_at = 0;
            }
            run.retries.push(retry.clone());
        }
        Kind::InstanceStatus(change) => {
            let step = step_mut(run, &change.step_id);
            let index = usize::try_from(change.index).unwrap_or(usize::MAX);
            // An event about an instance the view has not seen (the run was read before the
            // loop recorded its items) adds it, its item unknown.
            if index < MAX_INSTANCES_SHOWN && step.instances.len() <= index {
                step.instances.resize_with(index + 1, Default::default);
            }
            if let Some(instance) = step.instances.get_mut(index) {
                instance.status = change.status;
                instance.attempts = change.attempts;
                instance.error = change.error.clone();
                if change.status() == StepStatus::Running {
                    instance.started_at = at;
                    instance.finished_at = 0;
                } else if change.status().is_terminal() {
                    instance.finished_at = at;
                }
            }
        }
        Kind::StepOutput(_) => {}
    }
}

/// The most instances of one loop step the view keeps (the daemon allows no more than
/// its `[limits] loop_items`, 100 by default).
const MAX_INSTANCES_SHOWN: usize = 10_000;

fn step_mut<'a>(run: &'a mut Run, id: &str) -> &'a mut StepRun {
    match run.steps.iter().position(|s| s.id == id) {
        Some(i) => &mut run.steps[i],
        None => {
            run.steps.push(StepRun {
                id: id.to_owned(),
                ..Default::default()
            });
            let last = run.steps.len() - 1;
            &mut run.steps[last]
        }
    }
}

/// The selected step's output as the output pane shows it: its JSON pretty-printed, then its
/// error, if any.
pub fn output_lines(step: &StepRun) -> Vec<String> {
    let mut lines = Vec::new();
    if !step.output_json.is_empty() {
        let pretty = serde_json::from_str::<serde_json::Value>(&step.output_json)
            .ok()
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .unwrap_or_else(|| step.output_json.clone());
        lines.extend(pretty.lines().map(str::to_owned));
    } else if step.output_omitted {
        // Too large to carry in the run's summary: the CLI reads it page by page.
        lines.push(format!(
            "(output of {} bytes, too large to show here: runbook show RUN --json)",
            step.output_bytes
        ));
    }
    if !step.error.is_empty() {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        lines.extend(step.error.lines().map(|line| format!("error: {line}")));
    }
    lines
}

/// How the run view divides the screen. `ui::run_view` draws with it and `update` pages with
/// it, so that both agree on what is visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLayout {
    /// Rows of the run's header (id, runbook, status; params, error).
    pub header_rows: u16,
    /// Rows of the steps table, borders and column header included.
    pub steps_rows: u16,
    /// Rows of text in the log pane.
    pub log_rows: u16,
}

/// The layout for a run of `steps` steps on a terminal of `size` (columns, rows).
pub fn layout(size: (u16, u16), steps: usize) -> RunLayout {
    // The status bar and the footer take a row each.
    let body = size.1.saturating_sub(2);
    let header_rows = 2.min(body);
    let rest = body - header_rows;
    let wanted = u16::try_from(steps.max(1))
        .unwrap_or(u16::MAX)
        .saturating_add(3);
    // The steps table takes what it needs up to half of the rest; the log gets the others.
    let steps_rows = wanted.min(rest / 2).max(4.min(rest));
    RunLayout {
        header_rows,
        steps_rows,
        log_rows: rest.saturating_sub(steps_rows).saturating_sub(2).max(1),
    }
}

/// Why a step is not making progress right now, in a few words; `None` when it is.
pub fn waiting_reason(step: &StepRun, now_ms: i64) -> Option<String> {
    let status = step.status();
    if let Some(approval) = &step.approval
        && approval.decided_at == 0
        && status == StepStatus::Waiting
    {
        return Some(if approval.instruction {
            "to do by hand (a / d)".to_owned()
        } else {
            "approval (a / d)".to_owned()
        });
    }
    if step.retry_at > 0 && !status.is_terminal() && status != StepStatus::Running {
        let left = step.retry_at - now_ms;
        return Some(if left > 0 {
            format!("retry in {}", format::duration(left))
        } else {
            "retry due".to_owned()
        });
    }
    // The built-in `wait` step looks again at its deadline: the countdown is the step.
    if status == StepStatus::Waiting && step.uses == "wait" && step.resume_at > 0 {
        let left = step.resume_at - now_ms;
        return Some(if left > 0 {
            format!("wait ends in {}", format::duration(left))
        } else {
            "wait ending".to_owned()
        });
    }
    if status == StepStatus::Waiting && (!step.invocation_id.is_empty() || step.resume_at > 0) {
        let what = if step.invocation_id.is_empty() {
            "async call".to_owned()
        } else {
            format!("async {}", step.invocation_id)
        };
        let left = step.resume_at - now_ms;
        return Some(if step.resume_at > 0 && left > 0 {
            format!("{what}, check in {}", format::duration(left))
        } else {
            format!("{what}, checking")
        });
    }
    // The record stays until the attempt ends: once the permit is due, the call is what
    // the step is doing.
    if status == StepStatus::Running
        && let Some(wait) = &step.permit_wait
        && wait.until > now_ms
    {
        // The limit last: a narrow column cuts it, not the time left.
        return Some(format!(
            "rate limit `{}`: {} ({})",
            wait.target,
            format::duration(wait.until - now_ms),
            wait.limit,
        ));
    }
    if status == StepStatus::Running && !step.instances.is_empty() {
        return Some(loop_progress(step));
    }
    match status {
        StepStatus::Ambiguous => Some("ambiguous: see `runbook resolve`".to_owned()),
        StepStatus::Paused => Some("paused".to_owned()),
        StepStatus::Waiting => Some("waiting".to_owned()),
        _ => None,
    }
}

/// How far a running loop has come: `loop 2/5 done, 2 running, 1 failed`.
pub fn loop_progress(step: &StepRun) -> String {
    let count = |wanted: &[StepStatus]| {
        step.instances
            .iter()
            .filter(|instance| wanted.contains(&instance.status()))
            .count()
    };
    let mut text = format!(
        "loop {}/{} done",
        count(&[StepStatus::Completed]),
        step.instances.len()
    );
    for (label, wanted) in [
        ("running", &[StepStatus::Running][..]),
        (
            "failed",
            &[
                StepStatus::Failed,
                StepStatus::TimedOut,
                StepStatus::Cancelled,
            ][..],
        ),
    ] {
        let found = count(wanted);
        if found > 0 {
            text.push_str(&format!(", {found} {label}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_protocol::v1::{
        Approval, ApprovalRequested, Instance, InstanceStatusChanged, PermitWait, RunStatusChanged,
        StepOutput, StepPermitWait, StepRetrying, StepStatusChanged,
    };

    fn event(seq: u64, kind: Kind) -> RunEvent {
        RunEvent {
            run_id: "R".into(),
            seq,
            at: 1_000 * seq as i64,
            kind: Some(kind),
        }
    }

    fn output(seq: u64, line: &str) -> RunEvent {
        event(
            seq,
            Kind::StepOutput(StepOutput {
                step_id: "build".into(),
                stream: OutputStream::Stdout as i32,
                line: line.into(),
            }),
        )
    }

    fn texts(view: &RunView) -> Vec<String> {
        view.logs["build"]
            .lines
            .iter()
            .map(|l| l.text.clone())
            .collect()
    }

    #[test]
    fn duplicate_and_older_events_are_ignored() {
        let mut view = RunView::new("R");
        assert!(view.apply_event(&output(1, "one")));
        assert!(view.apply_event(&output(2, "two")));
        assert!(!view.apply_event(&output(2, "two again")), "a duplicate");
        assert!(!view.apply_event(&output(1, "one late")), "out of order");
        assert!(view.apply_event(&output(3, "three")));
        assert_eq!(texts(&view), ["one", "two", "three"]);
        assert_eq!(view.seq, 3);
        let mut other = output(4, "x");
        other.run_id = "OTHER".into();
        assert!(!view.apply_event(&other), "another run's event");
    }

    #[test]
    fn events_after_the_snapshot_update_the_run_and_older_ones_only_log() {
        let mut view = RunView::new("R");
        view.apply_snapshot(Run {
            id: "R".into(),
            status: RunStatus::Running as i32,
            last_seq: 2,
            steps: vec![StepRun {
                id: "build".into(),
                status: StepStatus::Running as i32,
                attempts: 1,
                ..Default::default()
            }],
            ..Default::default()
        });
        // Replayed from the start: these are already in the snapshot.
        view.apply_event(&event(
            1,
            Kind::StepStatus(StepStatusChanged {
                step_id: "build".into(),
                status: StepStatus::Pending as i32,
                ..Default::default()
            }),
        ));
        assert_eq!(view.step().map(StepRun::status), Some(StepStatus::Running));
        view.apply_event(&output(2, "compiling"));
        view.apply_event(&event(
            3,
            Kind::StepRetrying(StepRetrying {
                step_id: "build".into(),
                attempt: 1,
                delay_ms: 2_000,
                error: "exit 1".into(),
            }),
        ));
        let step = view.step().expect("a step");
        assert_eq!(step.retry_at, 5_000);
        assert_eq!(step.error, "exit 1");
        view.apply_event(&event(
            4,
            Kind::RunStatus(RunStatusChanged {
                status: RunStatus::Failed as i32,
                error: "build failed".into(),
            }),
        ));
        let run = view.run.as_ref().expect("a run");
        assert_eq!((run.status(), run.last_seq), (RunStatus::Failed, 4));
        assert!(!view.is_live());
        assert_eq!(
            texts(&view),
            ["compiling", "── attempt 1 failed: exit 1; retrying in 2.0s"]
        );
    }

    #[test]
    fn an_older_snapshot_does_not_undo_newer_events() {
        let mut view = RunView::new("R");
        let snapshot = |last_seq| Run {
            id: "R".into(),
            last_seq,
            ..Default::default()
        };
        assert!(view.apply_snapshot(snapshot(5)));
        assert!(!view.apply_snapshot(snapshot(4)));
        assert!(view.apply_snapshot(snapshot(5)));
    }

    #[test]
    fn a_rate_limit_wait_is_shown_until_the_step_moves_on() {
        let mut view = RunView::new("R");
        view.apply_snapshot(Run {
            id: "R".into(),
            steps: vec![StepRun {
                id: "call".into(),
                status: StepStatus::Running as i32,
                attempts: 1,
                ..Default::default()
            }],
            ..Default::default()
        });
        let wait = PermitWait {
            target: "api".into(),
            limit: "2/s".into(),
            until: 1_500,
        };
        view.apply_event(&event(
            1,
            Kind::StepPermitWait(StepPermitWait {
                step_id: "call".into(),
                wait: Some(wait.clone()),
            }),
        ));
        let step = &view.run.as_ref().expect("a snapshot").steps[0];
        assert_eq!(step.permit_wait, Some(wait));
        assert_eq!(
            waiting_reason(step, 1_000).as_deref(),
            Some("rate limit `api`: 500ms (2/s)")
        );
        view.apply_event(&event(
            2,
            Kind::StepStatus(StepStatusChanged {
                step_id: "call".into(),
                status: StepStatus::Completed as i32,
                attempt: 1,
                ..Default::default()
            }),
        ));
        assert_eq!(
            view.run.as_ref().expect("a snapshot").steps[0].permit_wait,
            None
        );
    }

    #[test]
    fn instance_events_update_the_loop_and_its_log() {
        let mut view = RunView::new("R");
        view.apply_snapshot(Run {
            id: "R".into(),
            steps: vec![StepRun {
                id: "roll".into(),
                status: StepStatus::Running as i32,
                attempts: 1,
                instances: vec![
                    Instance {
                        item: "\"a\"".into(),
                        ..Default::default()
                    },
                    Instance {
                        item: "\"b\"".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        });
        let instance = |seq, index, status: StepStatus, error: &str| {
            event(
                seq,
                Kind::InstanceStatus(InstanceStatusChanged {
                    step_id: "roll".into(),
                    index,
                    status: status as i32,
                    attempts: 1,
                    error: error.into(),
                }),
            )
        };
        view.apply_event(&instance(1, 0, StepStatus::Running, ""));
        view.apply_event(&instance(2, 1, StepStatus::Running, ""));
        view.apply_event(&instance(3, 0, StepStatus::Completed, ""));
        let step = &view.run.as_ref().expect("a snapshot").steps[0];
        assert_eq!(
            waiting_reason(step, 0).as_deref(),
            Some("loop 1/2 done, 1 running")
        );
        view.apply_event(&instance(4, 1, StepStatus::Failed, "exit 3"));
        // One the snapshot did not have yet is added.
        view.apply_event(&instance(5, 2, StepStatus::Running, ""));
        let step = &view.run.as_ref().expect("a snapshot").steps[0];
        assert_eq!(step.instances.len(), 3);
        assert_eq!(step.instances[1].item, "\"b\"");
        assert_eq!(
            waiting_reason(step, 0).as_deref(),
            Some("loop 1/3 done, 1 running, 1 failed")
        );
        let log: Vec<&str> = view.logs["roll"]
            .lines
            .iter()
            .map(|line| line.text.as_str())
            .collect();
        assert_eq!(
            log,
            [
                "── roll[0] running",
                "── roll[1] running",
                "── roll[0] completed",
                "── roll[1] failed: exit 3",
                "── roll[2] running",
            ]
        );
    }

    #[test]
    fn approval_requests_mark_the_step_waiting() {
        let mut view = RunView::new("R");
        view.apply_snapshot(Run {
            id: "R".into(),
            ..Default::default()
        });
        view.apply_event(&event(
            1,
            Kind::ApprovalRequested(ApprovalRequested {
                step_id: "migrate".into(),
                approval: Some(Approval {
                    summary: "run ./migrate.sh".into(),
                    ..Default::default()
                }),
            }),
        ));
        let step = view.step().expect("the step was added");
        assert_eq!(step.status(), StepStatus::Waiting);
        assert_eq!(waiting_reason(step, 0).as_deref(), Some("approval (a / d)"));
    }

    #[test]
    fn the_oldest_lines_are_dropped_past_the_limit() {
        let mut view = RunView::new("R");
        for seq in 1..=(MAX_LINES_PER_STEP as u64 + 2) {
            view.apply_event(&output(seq, "x"));
        }
        let log = &view.logs["build"];
        assert_eq!((log.lines.len(), log.dropped), (MAX_LINES_PER_STEP, 2));
    }

    #[test]
    fn a_batch_of_output_becomes_one_log_line_each() {
        let mut view = RunView::new("R");
        view.apply_event(&output(1, "one\n\nthree"));
        view.apply_event(&output(2, "four"));
        assert_eq!(texts(&view), ["one", "", "three", "four"]);
        let seqs: Vec<u64> = view.logs["build"].lines.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, [1, 1, 1, 2]);
    }

    #[test]
    fn a_batch_longer_than_the_limit_keeps_its_last_lines() {
        let mut view = RunView::new("R");
        let batch: Vec<String> = (0..MAX_LINES_PER_STEP + 3).map(|i| i.to_string()).collect();
        view.apply_event(&output(1, &batch.join("\n")));
        let log = &view.logs["build"];
        assert_eq!((log.lines.len(), log.dropped), (MAX_LINES_PER_STEP, 3));
        assert_eq!(log.lines.front().map(|l| l.text.as_str()), Some("3"));
        assert_eq!(
            log.lines.back().map(|l| l.text.as_str()),
            batch.last().map(String::as_str)
        );
    }

    #[test]
    fn reasons_for_waiting() {
        let now = 10_000;
        let retrying = StepRun {
            status: StepStatus::Pending as i32,
            retry_at: 12_500,
            ..Default::default()
        };
        assert_eq!(
            waiting_reason(&retrying, now).as_deref(),
            Some("retry in 2.5s")
        );
        let invoked = StepRun {
            status: StepStatus::Waiting as i32,
            invocation_id: "inv-7".into(),
            resume_at: 14_000,
            ..Default::default()
        };
        assert_eq!(
            waiting_reason(&invoked, now).as_deref(),
            Some("async inv-7, check in 4.0s")
        );
        let pausing = StepRun {
            status: StepStatus::Waiting as i32,
            uses: "wait".into(),
            resume_at: 70_000,
            ..Default::default()
        };
        assert_eq!(
            waiting_reason(&pausing, now).as_deref(),
            Some("wait ends in 1m 00s")
        );
        let mut limited = StepRun {
            status: StepStatus::Running as i32,
            ..Default::default()
        };
        assert_eq!(waiting_reason(&limited, now), None);
        limited.permit_wait = Some(PermitWait {
            target: "api".into(),
            limit: "50/s".into(),
            until: now + 1_000,
        });
        assert_eq!(
            waiting_reason(&limited, now).as_deref(),
            Some("rate limit `api`: 1.0s (50/s)")
        );
        // Once the permit is due, the step is making its call.
        assert_eq!(waiting_reason(&limited, now + 1_000), None);
    }
}
