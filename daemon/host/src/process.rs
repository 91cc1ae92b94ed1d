//! The `process` capability: runs exactly one argv (no shell unless the argv names one),
//! streams its output line by line, keeps a capped copy, and kills its whole process group if
//! the call is abandoned (step timeout, cancel, daemon shutdown).
//!
//! A crash of the daemon must not leave a step's processes running either: the group's
//! leader gets SIGKILL when the daemon dies (Linux's parent-death signal), and the group is
//! reported to the engine as soon as it exists ([`SpawnHook`]), which records it with the step
//! so that recovery kills whatever of it is still alive ([`kill_leftover_group`]).

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::bindings::{ProcessOutput, ProcessSpec};
use super::secrets::{Encoding, SecretScope};
use super::{EventSink, PluginEvent, StreamKind};

/// Output kept per stream in the step's result; everything is still streamed as events.
pub const OUTPUT_CAP: usize = 256 * 1024;
/// Longest line kept; the rest of a longer line is dropped and it ends with ` [line cut]`.
const LINE_CAP: usize = 16 * 1024;
/// What is read from a process's pipe at once.
const READ_BUFFER: usize = 64 * 1024;
/// Lines sent as one event at most (a batch holds what was read at once).
const BATCH_BYTES: usize = 64 * 1024;
/// The daemon's variables a process inherits: what programs need to find each other and
/// behave (locale, time zone, temp dir). Anything else reaches a process only when the
/// approved plan names it, so the daemon's own environment never leaks into a step.
pub const INHERITED_ENV: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// Told of each process group a step starts, by its id and its leader's start time (clock
/// ticks since boot, as `/proc/PID/stat` says): the process call waits until it returns, so
/// that the group is on record before the process gets far.
pub type SpawnHook =
    std::sync::Arc<dyn Fn(u32, u64) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Runs `spec` to completion, with its secrets put in and masked in everything it prints.
pub async fn run(
    spec: &ProcessSpec,
    sink: &EventSink,
    secrets: &SecretScope,
    on_spawn: Option<&SpawnHook>,
) -> Result<ProcessOutput, String> {
    let spec = with_secrets(spec, secrets)?;
    // `collect` masks every line before it reaches `sink`.
    let mut output = spawn_and_wait(&spec, sink, secrets, on_spawn)
        .await
        .map_err(|err| secrets.mask(&err))?;
    output.stdout = secrets.mask(&output.stdout);
    output.stderr = secrets.mask(&output.stderr);
    Ok(output)
}

/// The spec as the process gets it: placeholders replaced by their secrets.
fn with_secrets(spec: &ProcessSpec, secrets: &SecretScope) -> Result<ProcessSpec, String> {
    let put = |text: &String| secrets.substitute(text, Encoding::Raw);
    Ok(ProcessSpec {
        argv: spec.argv.iter().map(put).collect::<Result<_, _>>()?,
        env: spec
            .env
            .iter()
            .map(|(name, value)| Ok((name.clone(), put(value)?)))
            .collect::<Result<_, String>>()?,
        cwd: spec.cwd.as_ref().map(put).transpose()?,
        stdin: spec.stdin.as_ref().map(put).transpose()?,
    })
}

async fn spawn_and_wait(
    spec: &ProcessSpec,
    sink: &EventSink,
    secrets: &SecretScope,
    on_spawn: Option<&SpawnHook>,
) -> Result<ProcessOutput, String> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| "the argv is empty".to_owned())?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(
            INHERITED_ENV
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (*name, value))),
        )
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own group, so that the whole tree can be killed, not only the direct child.
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let daemon = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec. It makes two system calls
    // (prctl, getppid), both async-signal-safe, and allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            use rustix::process::{Signal, getppid, set_parent_process_death_signal};
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // A daemon that died before the line above would never send the signal.
            if getppid().map(|parent| parent.as_raw_pid().unsigned_abs()) != Some(daemon) {
                return Err(std::io::Error::other("runbookd stopped while starting it"));
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot start `{program}`: {err}"))?;
    let group = GroupKiller(child.id());
    if let (Some(hook), Some(pid)) = (on_spawn, child.id()) {
        // The leader is ours until it is reaped, so its pid cannot be reused meanwhile.
        if let Some(started) = start_time(pid) {
            hook(pid, started).await;
        }
    }

    if let (Some(input), Some(mut stdin)) = (&spec.stdin, child.stdin.take()) {
        let input = input.clone().into_bytes();
        // Written concurrently so that a child that fills its stdout before reading stdin
        // cannot deadlock with us.
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
    }
    let stdout = child
        .stdout
        .take()
        .map(|out| collect(out, StreamKind::Stdout, sink.clone(), secrets.clone()));
    let stderr = child
        .stderr
        .take()
        .map(|err| collect(err, StreamKind::Stderr, sink.clone(), secrets.clone()));
    let (status, stdout, stderr) = tokio::join!(
        child.wait(),
        async {
            match stdout {
                Some(task) => task.await,
                None => Captured::default(),
            }
        },
        async {
            match stderr {
                Some(task) => task.await,
                None => Captured::default(),
            }
        },
    );
    let status = status.map_err(|err| format!("waiting for `{program}` failed: {err}"))?;
    group.disarm();
    use std::os::unix::process::ExitStatusExt as _;
    Ok(ProcessOutput {
        exit_code: status.code(),
        signal: status.signal(),
        truncated: stdout.truncated || stderr.truncated,
        stdout: stdout.text,
        stderr: stderr.text,
    })
}

#[derive(Default)]
struct Captured {
    text: String,
    truncated: bool,
}

/// Reads one stream line by line. A line longer than [`LINE_CAP`] is cut, and the rest of it
/// is read and dropped, so that no line is ever held whole in memory; the line is masked
/// before it is cut (it is read that far past the cap that a secret starting before the cut
/// is whole), so that no prefix of a secret survives the cut.
async fn collect(
    stream: impl AsyncRead + Unpin,
    kind: StreamKind,
    sink: EventSink,
    secrets: SecretScope,
) -> Captured {
    use tokio::io::AsyncReadExt as _;
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream);
    let mut captured = Captured::default();
    let mut line = Vec::new();
    // Lines read but not yet sent, joined by '\n': one event for all that a chatty process
    // printed at once, while a quiet one's lines go out one by one as they come.
    let mut batch = String::new();
    let longest = secrets.longest_masked();
    let masks = longest > 0;
    let read_cap = LINE_CAP + longest + 1;
    loop {
        line.clear();
        match (&mut reader)
            .take(read_cap as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let whole = line.ends_with(b"\n") || line.len() < read_cap;
        if !whole && skip_rest_of_line(&mut reader).await.is_err() {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        // Most steps are given no secret: their lines need no masking.
        let text = if masks {
            std::borrow::Cow::Owned(secrets.mask(&text))
        } else {
            text
        };
        let mut shown = text.trim_end_matches(['\n', '\r']);
        let cut = shown.len() > LINE_CAP || !whole;
        if cut {
            // A line read only up to the window may end in part of a secret that masking could
            // not recognise, and masking earlier ones shortened the text: the last `longest`
            // bytes are never shown.
            let keep = if whole {
                LINE_CAP
            } else {
                LINE_CAP.min(shown.len().saturating_sub(longest))
            };
            shown = &shown[..shown.floor_char_boundary(keep)];
        }
        // The kept copy has whole lines as they came (masked); a line that was cut, as shown.
        let kept_len = if whole { text.len() } else { shown.len() + 12 };
        if captured.text.len() + kept_len > OUTPUT_CAP {
            captured.truncated = true;
        } else if whole {
            captured.text.push_str(&text);
        } else {
            captured.text.push_str(shown);
            captured.text.push_str(" [line cut]\n");
        }
        if !batch.is_empty() {
            batch.push('\n');
        }
        batch.push_str(shown);
        if cut {
            batch.push_str(" [line cut]");
        }
        // What is buffered is sent at once unless a whole line follows it there: a line still
        // being written must not hold back the ones before it.
        if !reader.buffer().contains(&b'\n') || batch.len() >= BATCH_BYTES {
            send(&sink, kind, &mut batch);
        }
    }
    if !batch.is_empty() {
        send(&sink, kind, &mut batch);
    }
    captured
}

/// Sends the lines in `batch` as one event and empties it.
fn send(sink: &EventSink, stream: StreamKind, batch: &mut String) {
    sink(PluginEvent::Output {
        stream,
        line: std::mem::take(batch),
    });
}

/// Reads and drops the rest of a line that was cut, up to its newline or the end.
async fn skip_rest_of_line(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> std::io::Result<()> {
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|&byte| byte == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(());
            }
            None => {
                let len = buffer.len();
                reader.consume(len);
            }
        }
    }
}

/// The start time of process `pid` in clock ticks since boot, and its process group, from
/// `/proc/PID/stat`; `None` when it is gone.
fn stat(pid: u32) -> Option<(u64, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): the group is field 5, the start time field 22.
    let group = fields.get(2)?.parse().ok()?;
    let started = fields.get(19)?.parse().ok()?;
    Some((started, group))
}

fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(started, _)| started)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`); empty when it cannot be read.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// Kills what is left of a step's process group after a crash: every process in group
/// `pgid` that started no earlier than its leader did (`started`), in the same boot
/// (`recorded_boot`). A group id cannot be reused while any member of the group lives, so
/// such a process belongs to the step's group unless the whole group died and its id was
/// handed out again since, which needs the system's process ids to wrap around in between.
/// Returns how many processes were killed.
pub fn kill_leftover_group(pgid: u32, started: u64, recorded_boot: &str) -> usize {
    // After a reboot nothing of the group is left, and start times count from zero again.
    if recorded_boot.is_empty() || recorded_boot != boot_id() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((their_start, group)) = stat(pid) else {
            continue;
        };
        if group != pgid || their_start < started {
            continue;
        }
        let target = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(target) = target
            && rustix::process::kill_process(target, rustix::process::Signal::KILL).is_ok()
        {
            killed += 1;
        }
    }
    killed
}

/// Kills the child's process group when dropped before the child was reaped.
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok()) else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}
