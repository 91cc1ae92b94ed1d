//! `logs RUN [--step ID] [--follow]`: the output lines of a run's steps, read from its events.

use std::io::Write;

use runbook_protocol::v1::{GetRunRequest, OutputStream, RunEvent, run_event::Kind};

use super::Ctx;
use super::follow::{Follower, Until};
use crate::error::EXIT_OK;
use crate::{format, json};

/// Prints the output recorded so far (everything up to the run's `last_seq` at the start), or
/// with `follow` everything until the run ends.
pub async fn logs(
    ctx: &Ctx,
    out: &mut dyn Write,
    run: &str,
    step: Option<&str>,
    follow: bool,
) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let run = client
        .get_run(GetRunRequest { id: run.to_owned() })
        .await?
        .into_inner();
    if let Some(step) = step
        && !run.steps.iter().any(|s| s.id == step)
    {
        let known: Vec<_> = run.steps.iter().map(|s| s.id.as_str()).collect();
        return Err(crate::error::Failure::Input(format!(
            "run {} has no step `{step}`; its steps are: {}",
            run.id,
            known.join(", ")
        ))
        .into());
    }
    let until = if follow {
        Until::RunEnds
    } else {
        Until::Seq(run.last_seq)
    };
    let json = ctx.json;
    let mut follower = Follower::new(&ctx.target, client, run.id);
    follower
        .follow(until, |event| write_output(out, event, step, json))
        .await?;
    Ok(EXIT_OK)
}

/// Writes one event if it is output of the wanted step. With one step chosen, lines are
/// printed bare and its stderr goes to our stderr, as if the step ran here; across steps each
/// line is prefixed with its step id.
fn write_output(
    out: &mut dyn Write,
    event: &RunEvent,
    step: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let Some(Kind::StepOutput(output)) = &event.kind else {
        return Ok(());
    };
    if step.is_some_and(|step| step != output.step_id) {
        return Ok(());
    }
    if json {
        for view in json::output(event) {
            writeln!(out, "{}", serde_json::to_string(&view)?)?;
        }
        return Ok(());
    }
    // One event may carry several lines of the same stream (the daemon batches them). Even a
    // bare line is escaped: a step's ESC or CR must not reach the terminal (`--json` keeps
    // the exact bytes).
    for line in output.line.split('\n') {
        let line = format::printable(line);
        match (step, output.stream()) {
            (Some(_), OutputStream::Stderr) => eprintln!("{line}"),
            (Some(_), _) => writeln!(out, "{line}")?,
            (None, OutputStream::Stderr) => writeln!(out, "{} ! {line}", output.step_id)?,
            (None, OutputStream::Log) => writeln!(out, "{} : {line}", output.step_id)?,
            (None, _) => writeln!(out, "{} | {line}", output.step_id)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_protocol::v1::StepOutput;

    fn output(step: &str, stream: OutputStream, line: &str) -> RunEvent {
        RunEvent {
            run_id: "R".into(),
            seq: 7,
            at: 1_709_618_828_900,
            kind: Some(Kind::StepOutput(StepOutput {
                step_id: step.into(),
                stream: stream as i32,
                line: line.into(),
            })),
        }
    }

    #[test]
    fn lines_are_prefixed_unless_one_step_is_chosen() {
        let mut out = Vec::new();
        write_output(
            &mut out,
            &output("a", OutputStream::Stdout, "one"),
            None,
            false,
        )
        .expect("writes");
        write_output(
            &mut out,
            &output("b", OutputStream::Stdout, "two"),
            Some("a"),
            false,
        )
        .expect("writes");
        write_output(
            &mut out,
            &output("a", OutputStream::Log, "three"),
            Some("a"),
            false,
        )
        .expect("writes");
        assert_eq!(String::from_utf8(out).expect("utf-8"), "a | one\nthree\n");
    }

    #[test]
    fn a_batch_of_lines_prints_line_by_line() {
        let mut out = Vec::new();
        let batch = output("a", OutputStream::Stdout, "one\ntwo");
        write_output(&mut out, &batch, None, false).expect("writes");
        write_output(&mut out, &batch, Some("a"), false).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "a | one\na | two\none\ntwo\n"
        );
    }

    #[test]
    fn control_characters_are_escaped_but_not_in_json() {
        let mut out = Vec::new();
        let line = output("a", OutputStream::Stdout, "x\u{1b}[2K\ry");
        write_output(&mut out, &line, None, false).expect("writes");
        write_output(&mut out, &line, Some("a"), false).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "a | x\\e[2K\\ry\nx\\e[2K\\ry\n"
        );
        let mut out = Vec::new();
        write_output(&mut out, &line, None, true).expect("writes");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
        assert_eq!(value["line"], "x\u{1b}[2K\ry");
    }

    #[test]
    fn a_batch_of_lines_is_one_json_object_per_line() {
        let mut out = Vec::new();
        let batch = output("a", OutputStream::Log, "info: one\ninfo: two");
        write_output(&mut out, &batch, None, true).expect("writes");
        let values: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("JSON objects");
        assert_eq!(
            values,
            [
                serde_json::json!({"seq": 7, "at": "2024-03-05T06:07:08.900Z", "step": "a", "stream": "log", "line": "info: one"}),
                serde_json::json!({"seq": 7, "at": "2024-03-05T06:07:08.900Z", "step": "a", "stream": "log", "line": "info: two"}),
            ]
        );
        assert_eq!(out.iter().filter(|&&byte| byte == b'\n').count(), 2);
    }

    #[test]
    fn json_lines_carry_the_stream() {
        let mut out = Vec::new();
        write_output(
            &mut out,
            &output("a", OutputStream::Stderr, "oops"),
            None,
            true,
        )
        .expect("writes");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
        assert_eq!(
            value,
            serde_json::json!({"seq": 7, "at": "2024-03-05T06:07:08.900Z", "step": "a", "stream": "stderr", "line": "oops"})
        );
    }
}
