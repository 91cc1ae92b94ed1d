//! Following a run's event stream: reconnects when the daemon goes away and resumes after the
//! last sequence number seen, so a follower never misses or repeats an event. Also renders
//! events as the lines `run --wait` and `watch` print, with control characters escaped.

use std::time::Duration;

use runbook_protocol::v1::{
    GetRunRequest, OutputStream, Run, RunEvent, StepStatus, WatchRunRequest, run_event::Kind,
};

use crate::daemon::{Client, Target};
use crate::error::is_disconnect;
use crate::format;

/// How long to wait for a daemon that went away mid-stream (a restart takes well under this).
const RECONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// When to stop following.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// When the run has ended and every one of its events has been seen.
    RunEnds,
    /// When the event with this sequence number (or a later one) has been seen.
    Seq(u64),
}

/// A run's event stream, followed across daemon restarts.
pub struct Follower<'a> {
    target: &'a Target,
    client: Client,
    run_id: String,
    last_seq: u64,
}

impl<'a> Follower<'a> {
    /// Follows the run `run_id` (a full id) from its first event.
    pub fn new(target: &'a Target, client: Client, run_id: String) -> Self {
        Self::after(target, client, run_id, 0)
    }

    /// Follows the run `run_id` from the event after `last_seq`.
    pub fn after(target: &'a Target, client: Client, run_id: String, last_seq: u64) -> Self {
        Self {
            target,
            client,
            run_id,
            last_seq,
        }
    }

    /// Feeds every new event to `on_event`, in order and once each, until `until`; returns the
    /// run as it is at the end.
    pub async fn follow(
        &mut self,
        until: Until,
        mut on_event: impl FnMut(&RunEvent) -> anyhow::Result<()>,
    ) -> anyhow::Result<Run> {
        loop {
            if let Until::Seq(target) = until
                && self.last_seq >= target
            {
                return self.get_run().await;
            }
            let request = WatchRunRequest {
                id: self.run_id.clone(),
                after_seq: self.last_seq,
            };
            let mut stream = match self.client.watch_run(request).await {
                Ok(response) => response.into_inner(),
                Err(status) if is_disconnect(&status) => {
                    self.reconnect().await?;
                    continue;
                }
                Err(status) => return Err(status.into()),
            };
            let broken = loop {
                match stream.message().await {
                    Ok(Some(event)) => {
                        // The daemon sends only later events; this guards against a replay
                        // overlapping what an earlier stream already delivered.
                        if event.seq <= self.last_seq {
                            continue;
                        }
                        self.last_seq = event.seq;
                        on_event(&event)?;
                        if let Until::Seq(target) = until
                            && event.seq >= target
                        {
                            return self.get_run().await;
                        }
                    }
                    Ok(None) => break false,
                    Err(status) if is_disconnect(&status) => break true,
                    Err(status) => return Err(status.into()),
                }
            };
            if broken {
                self.reconnect().await?;
                continue;
            }
            // The stream ended cleanly: the run has ended, or the daemon is shutting down.
            // Only the run's own record can tell which.
            match self.client.get_run(self.get_request()).await {
                Ok(run) => {
                    let run = run.into_inner();
                    if run.status().is_terminal() && self.last_seq >= run.last_seq {
                        return Ok(run);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) if is_disconnect(&status) => self.reconnect().await?,
                Err(status) => return Err(status.into()),
            }
        }
    }

    fn get_request(&self) -> GetRunRequest {
        GetRunRequest {
            id: self.run_id.clone(),
        }
    }

    async fn get_run(&mut self) -> anyhow::Result<Run> {
        loop {
            match self.client.get_run(self.get_request()).await {
                Ok(run) => return Ok(run.into_inner()),
                Err(status) if is_disconnect(&status) => self.reconnect().await?,
                Err(status) => return Err(status.into()),
            }
        }
    }

    async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.client = self.target.reconnect(RECONNECT_PATIENCE).await?;
        Ok(())
    }
}

/// One retry of a run in a line: who, from where, what runs again.
pub fn retry_summary(retry: &runbook_protocol::v1::RunRetry) -> String {
    let mut line = format!("retried by {}", format::printable(&retry.by));
    if !retry.from.is_empty() {
        line.push_str(&format!(" from `{}`", format::printable(&retry.from)));
    }
    if !retry.previous_version.is_empty() {
        line.push_str(" on the runbook's current version");
    }
    line.push_str(&format!(
        "; running again: {}",
        format::printable(&retry.steps.join(", "))
    ));
    line
}

/// The lines `run --wait` and `watch` print for one event (none for events they skip).
pub fn event_lines(run_id: &str, event: &RunEvent) -> Vec<String> {
    let at = format::clock(event.at);
    let Some(kind) = &event.kind else {
        return Vec::new();
    };
    match kind {
        Kind::RunStatus(change) => {
            let mut line = format!("[{at}] run {run_id}: {}", change.status().label());
            if !change.error.is_empty() {
                line.push_str(&format!(": {}", format::printable_lines(&change.error)));
            }
            vec![line]
        }
        Kind::StepStatus(change) => {
            let status = change.status();
            let mut line = format!("[{at}] step {}: {}", change.step_id, status.label());
            if change.attempt > 0 && matches!(status, StepStatus::Running | StepStatus::Failed) {
                line.push_str(&format!(" (attempt {})", change.attempt));
            }
            if !change.error.is_empty() {
                line.push_str(&format!(": {}", format::printable_lines(&change.error)));
            }
            vec![line]
        }
        Kind::StepRetrying(retry) => {
            let delay = format::duration(i64::try_from(retry.delay_ms).unwrap_or(i64::MAX));
            let mut line = format!(
                "[{at}] step {}: attempt {} failed",
                retry.step_id, retry.attempt
            );
            if !retry.error.is_empty() {
                line.push_str(&format!(": {}", format::printable_lines(&retry.error)));
            }
            line.push_str(&format!("; retrying in {delay}"));
            vec![line]
        }
        // The step's own log line (`: waiting 1s for a rate-limit permit ...`) says it.
        Kind::StepPermitWait(_) => Vec::new(),
        Kind::RunRetried(retry) => vec![format!("[{at}] run {run_id}: {}", retry_summary(retry))],
        Kind::InstanceStatus(change) => {
            let mut line = format!(
                "[{at}] step {}[{}]: {}",
                change.step_id,
                change.index,
                change.status().label()
            );
            if !change.error.is_empty() {
                line.push_str(&format!(": {}", format::printable_lines(&change.error)));
            }
            vec![line]
        }
        Kind::StepOutput(output) => {
            let marker = match output.stream() {
                OutputStream::Stderr => '!',
                OutputStream::Log => ':',
                OutputStream::Stdout | OutputStream::Unspecified => '|',
            };
            // One event may carry several lines of the same stream (the daemon batches them).
            output
                .line
                .split('\n')
                .map(|line| format!("{} {marker} {}", output.step_id, format::printable(line)))
                .collect()
        }
        Kind::ApprovalRequested(request) => {
            let instruction = request.approval.as_ref().is_some_and(|a| a.instruction);
            let mut lines = vec![format!(
                "[{at}] step {}: {}",
                request.step_id,
                if instruction {
                    "waiting for an operator to do this by hand and confirm it:"
                } else {
                    "waiting for approval to:"
                }
            )];
            if let Some(approval) = &request.approval {
                // The approver decides from these lines: nothing in them may redraw the terminal,
                // and escaping before splitting shows even a CR that ends a line.
                let summary = format::printable_lines(&approval.summary);
                lines.extend(summary.lines().map(|l| format!("    {l}")));
                lines.extend(
                    crate::state::approvals::plan_details(approval)
                        .iter()
                        .map(|detail| format!("    {}", format::printable(detail))),
                );
            }
            let decide = request.approval.as_ref().map_or_else(
                || format!("runbook approve {run_id} {}", request.step_id),
                |approval| {
                    crate::state::approvals::decide_command(run_id, &request.step_id, approval)
                },
            );
            lines.push(format!(
                "    {} with: {decide}   (or: runbook deny {run_id} {} --reason ...)",
                if instruction { "confirm" } else { "approve" },
                request.step_id
            ));
            lines
        }
    }
}

/// The closing line of a followed run.
pub fn final_line(run: &Run) -> String {
    let status = run.status();
    let mut line = format!("run {} {}", run.id, status.label());
    let took = format::elapsed(run.started_at, run.finished_at, format::now_ms());
    if !took.is_empty() {
        line.push_str(&format!(" in {took}"));
    }
    if !run.error.is_empty() {
        line.push_str(&format!(": {}", format::printable_lines(&run.error)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_protocol::v1::{
        Approval, ApprovalRequested, RunStatus, RunStatusChanged, StepOutput, StepStatusChanged,
    };

    fn event(kind: Kind) -> RunEvent {
        RunEvent {
            run_id: "R1".into(),
            seq: 1,
            at: 1_709_618_828_900,
            kind: Some(kind),
        }
    }

    #[test]
    fn events_render_as_lines() {
        let running = event(Kind::StepStatus(StepStatusChanged {
            step_id: "build".into(),
            status: StepStatus::Running as i32,
            attempt: 1,
            ..Default::default()
        }));
        assert_eq!(
            event_lines("R1", &running),
            ["[06:07:08] step build: running (attempt 1)"]
        );
        let failed = event(Kind::StepStatus(StepStatusChanged {
            step_id: "build".into(),
            status: StepStatus::Failed as i32,
            attempt: 2,
            error: "exit status 1".into(),
            ..Default::default()
        }));
        assert_eq!(
            event_lines("R1", &failed),
            ["[06:07:08] step build: failed (attempt 2): exit status 1"]
        );
        let out = event(Kind::StepOutput(StepOutput {
            step_id: "build".into(),
            stream: OutputStream::Stderr as i32,
            line: "warning: x".into(),
        }));
        assert_eq!(event_lines("R1", &out), ["build ! warning: x"]);
        let batch = event(Kind::StepOutput(StepOutput {
            step_id: "build".into(),
            stream: OutputStream::Stdout as i32,
            line: "one\n\nthree".into(),
        }));
        assert_eq!(
            event_lines("R1", &batch),
            ["build | one", "build | ", "build | three"]
        );
        let run = event(Kind::RunStatus(RunStatusChanged {
            status: RunStatus::Completed as i32,
            error: String::new(),
        }));
        assert_eq!(event_lines("R1", &run), ["[06:07:08] run R1: completed"]);
    }

    #[test]
    fn approval_requests_show_the_summary_and_how_to_approve() {
        let request = event(Kind::ApprovalRequested(ApprovalRequested {
            step_id: "migrate".into(),
            approval: Some(Approval {
                summary: "run ./migrate.sh --env staging".into(),
                ..Default::default()
            }),
        }));
        let lines = event_lines("R1", &request);
        assert_eq!(
            lines[0],
            "[06:07:08] step migrate: waiting for approval to:"
        );
        assert_eq!(lines[1], "    run ./migrate.sh --env staging");
        assert!(
            lines[2].contains("runbook approve R1 migrate"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn control_characters_in_output_plans_and_errors_are_escaped() {
        let out = event(Kind::StepOutput(StepOutput {
            step_id: "say".into(),
            stream: OutputStream::Stdout as i32,
            line: "x\u{1b}[2K\rfake\nnext".into(),
        }));
        assert_eq!(
            event_lines("R1", &out),
            ["say | x\\e[2K\\rfake", "say | next"]
        );
        let request = event(Kind::ApprovalRequested(ApprovalRequested {
            step_id: "say".into(),
            approval: Some(Approval {
                summary: "run echo 'x\u{1b}[2K\r'\r\nand more".into(),
                ..Default::default()
            }),
        }));
        let lines = event_lines("R1", &request);
        assert_eq!(lines[1], "    run echo 'x\\e[2K\\r'\\r");
        assert_eq!(lines[2], "    and more");
        let failed = event(Kind::StepStatus(StepStatusChanged {
            step_id: "say".into(),
            status: StepStatus::Failed as i32,
            error: "bad \u{9b}2J".into(),
            ..Default::default()
        }));
        assert_eq!(
            event_lines("R1", &failed),
            ["[06:07:08] step say: failed: bad \\u{9b}2J"]
        );
    }
}
