//! One step attempt's output on its way to the store: lines are grouped into batches (one
//! stored event each, not one per line), and the attempt's stored output is bounded by a byte
//! budget that keeps its start and its end and replaces the middle with one "omitted" line.
//!
//! A chatty step (`yes`) would otherwise write millions of events and fill the disk; watchers
//! would also have to replay every one of them.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::plugins::{EventSink, Level, PluginEvent, StreamKind};
use crate::store::OutputStream;

/// Largest batch, in bytes of text. Big enough that `yes` costs one event per ~32,000 lines,
/// small enough that one event stays far below tonic's 4 MiB message limit and a page of
/// replayed events stays small.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Longest a line waits in a batch before the batch is stored: below the lag a person watching
/// a step notices, and it caps a steady trickle of lines at 20 events a second.
pub const BATCH_AGE: Duration = Duration::from_millis(50);

/// Default budget of one attempt's stored output. 8 MiB keeps more than any reader scrolls
/// through, while a thousand runaway attempts still fit in 8 GiB rather than filling the disk.
pub const OUTPUT_BUDGET: u64 = 8 * 1024 * 1024;

/// Smallest batch limit honoured: below it nearly every line would be cut.
const MIN_BATCH_BYTES: usize = 1024;

/// Marks a line that was cut to fit a batch or the tail.
const LINE_CUT: &str = " [line cut]";

/// Size the tail's storage grows by. Not a limit on output: chunks only keep the tail from
/// costing an allocation per line.
const TAIL_CHUNK: usize = 64 * 1024;

/// Stores one batch: the stream and its lines joined with '\n'. Called with the batcher's lock
/// held, so never concurrently and always in order; it must not block for long.
pub type EmitBatch = Arc<dyn Fn(OutputStream, String) + Send + Sync>;

/// The limits of one batcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Largest batch, in bytes of text (at least 1 KiB); see [`BATCH_BYTES`].
    pub batch_bytes: usize,
    /// Longest a line waits before its batch is stored; see [`BATCH_AGE`].
    pub batch_age: Duration,
    /// Bytes of output (each line counted with its line end) stored for the attempt: the
    /// first half as it comes, and at the end the last half; see [`OUTPUT_BUDGET`].
    pub budget: u64,
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            batch_bytes: BATCH_BYTES,
            batch_age: BATCH_AGE,
            budget: OUTPUT_BUDGET,
        }
    }
}

impl OutputLimits {
    /// The default batching with another output budget (the daemon's
    /// `[limits] step_output_bytes`).
    pub fn with_budget(budget: u64) -> Self {
        Self {
            budget,
            ..Self::default()
        }
    }
}

/// What became of an attempt's output, as `finish` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputSummary {
    /// Whether lines were left out because the output exceeded its budget.
    pub truncated: bool,
    /// Bytes left out (each line counted with its line end).
    pub omitted_bytes: u64,
    /// Lines left out.
    pub omitted_lines: u64,
    /// Bytes of the step's own output that were stored (the "omitted" note not included).
    pub stored_bytes: u64,
}

/// Batches and bounds the output of one step attempt. Lines come in from any thread through
/// [`OutputBatcher::sink`] or [`OutputBatcher::push`]; batches go out through the `emit`
/// callback given to [`OutputBatcher::new`], in the order their lines came in.
///
/// A batch is emitted when the next line would make it larger than the batch limit, when the
/// stream changes, when its oldest line is older than the age limit (a background task sees
/// to quiet steps), and at [`OutputBatcher::finish`]. Memory stays within the budget plus a
/// batch: once half the budget has been emitted, lines are only kept in a tail of the last
/// half, oldest dropped first, until `finish` stores it after one "omitted" line.
pub struct OutputBatcher {
    shared: Arc<Shared>,
}

impl OutputBatcher {
    /// A batcher that stores through `emit`. Its ticker runs on the current tokio runtime,
    /// from the first line on; created outside one, a stale batch waits for the next line or
    /// for `finish`.
    pub fn new(emit: EmitBatch, limits: OutputLimits) -> Self {
        Self {
            shared: Arc::new(Shared::new(emit, limits)),
        }
    }

    /// The plugin event sink that feeds this batcher (for a call's `Grant`). Events that
    /// arrive after `finish` are dropped.
    pub fn sink(&self) -> EventSink {
        let shared = Arc::clone(&self.shared);
        Arc::new(move |event| {
            let (stream, line) = line_of(event);
            shared.push(stream, &line);
        })
    }

    /// Takes one line (a text with '\n' in it counts as several). Dropped after `finish`.
    /// The engine feeds lines through [`OutputBatcher::sink`]; tests call this directly.
    #[cfg(test)]
    pub fn push(&self, stream: OutputStream, line: &str) {
        self.shared.push(stream, line);
    }

    /// Emits what is left (the "omitted" line and the kept tail, if the budget was exceeded),
    /// stops the ticker, and says what became of the output. Call it once the plugin call has
    /// returned and before the attempt's result is recorded, so that the output precedes the
    /// result in the run's events. Later calls emit nothing and return the same summary;
    /// dropping the batcher calls it.
    pub fn finish(&self) -> OutputSummary {
        self.shared.stop_ticker();
        self.shared.finish()
    }
}

impl Drop for OutputBatcher {
    fn drop(&mut self) {
        // A cancelled call still stores what its step printed, and the ticker stops.
        self.finish();
    }
}

/// The stream and text an event is stored as; a log message reads "{level}: {message}".
pub fn line_of(event: PluginEvent) -> (OutputStream, String) {
    match event {
        PluginEvent::Output {
            stream: StreamKind::Stdout,
            line,
        } => (OutputStream::Stdout, line),
        PluginEvent::Output {
            stream: StreamKind::Stderr,
            line,
        } => (OutputStream::Stderr, line),
        PluginEvent::Log { level, message } => (
            OutputStream::Log,
            format!("{}: {message}", level_label(level)),
        ),
    }
}

/// The label of a plugin's log level, as shown before the message.
fn level_label(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// What the batcher's handle, its sinks and its ticker share.
struct Shared {
    state: Mutex<State>,
    config: Config,
    /// Wakes the ticker when a batch starts (it then sleeps until the batch is stale).
    wake: Notify,
    /// The task that emits stale batches, started with the first batch: most step attempts
    /// print nothing and need none.
    ticker: Mutex<Ticker>,
}

/// Where the ticker of an attempt's output is in its life.
enum Ticker {
    /// Not needed yet; it will run on this runtime (none outside a tokio runtime, where a
    /// stale batch waits for the next line or for `finish`).
    Idle(Option<tokio::runtime::Handle>),
    Running(AbortHandle),
    Stopped,
}

/// The limits in the form the batcher uses them.
struct Config {
    emit: EmitBatch,
    batch_bytes: usize,
    batch_age: Duration,
    /// Longest line kept whole: it must fit a batch and the tail.
    line_cap: usize,
    tail_cap: u64,
}

impl Shared {
    fn new(emit: EmitBatch, limits: OutputLimits) -> Self {
        let batch_bytes = limits.batch_bytes.max(MIN_BATCH_BYTES);
        let head = limits.budget / 2;
        let tail_cap = limits.budget - head;
        let line_cap = usize::try_from(tail_cap).map_or(batch_bytes, |tail| tail.min(batch_bytes));
        Self {
            state: Mutex::new(State {
                batch: None,
                head_left: head,
                head_bytes: 0,
                tail: None,
                summary: None,
            }),
            config: Config {
                emit,
                batch_bytes,
                batch_age: limits.batch_age,
                line_cap,
                tail_cap,
            },
            wake: Notify::new(),
            ticker: Mutex::new(Ticker::Idle(tokio::runtime::Handle::try_current().ok())),
        }
    }

    fn ticker(&self) -> MutexGuard<'_, Ticker> {
        // Every critical section leaves a whole value behind.
        self.ticker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the ticker if it has not run yet.
    fn start_ticker(self: &Arc<Self>) {
        let mut ticker = self.ticker();
        if let Ticker::Idle(Some(runtime)) = &*ticker {
            *ticker = Ticker::Running(runtime.spawn(tick(Arc::clone(self))).abort_handle());
        }
    }

    fn stop_ticker(&self) {
        if let Ticker::Running(task) = std::mem::replace(&mut *self.ticker(), Ticker::Stopped) {
            task.abort();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking emit leaves the state consistent (the batch was taken before the call).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(self: &Arc<Self>, stream: OutputStream, text: &str) {
        let now = Instant::now();
        let started = {
            let mut state = self.lock();
            if state.summary.is_some() {
                tracing::debug!("output after its step attempt finished is dropped");
                return;
            }
            let mut started = false;
            for line in text.split('\n') {
                started |= state.take(&self.config, stream, line, now);
            }
            started
        };
        if started {
            self.start_ticker();
            self.wake.notify_one();
        }
    }

    /// Emits the batch if its oldest line is older than the age limit at `now`.
    fn flush_stale(&self, now: Instant) {
        let mut state = self.lock();
        if state.is_stale(&self.config, now) {
            state.flush(&self.config);
        }
    }

    fn finish(&self) -> OutputSummary {
        let mut state = self.lock();
        if let Some(summary) = state.summary {
            return summary;
        }
        state.flush(&self.config);
        let mut summary = OutputSummary {
            stored_bytes: state.head_bytes,
            ..OutputSummary::default()
        };
        if let Some(tail) = state.tail.take() {
            summary.truncated = tail.omitted_lines > 0;
            summary.omitted_bytes = tail.omitted_bytes;
            summary.omitted_lines = tail.omitted_lines;
            summary.stored_bytes += tail.bytes;
            if summary.truncated {
                (self.config.emit)(
                    OutputStream::Log,
                    omitted_note(tail.omitted_bytes, tail.omitted_lines, tail.cap),
                );
            }
            let now = Instant::now();
            for (stream, line) in tail.lines() {
                state.batch(&self.config, stream, line, now);
            }
            state.flush(&self.config);
        }
        state.summary = Some(summary);
        summary
    }
}

/// Emits stale batches until the batcher finishes (which aborts this task). It sleeps until
/// the current batch's age limit rather than polling, so an idle step costs no wake-ups.
async fn tick(shared: Arc<Shared>) {
    loop {
        let deadline = {
            let state = shared.lock();
            if state.summary.is_some() {
                return;
            }
            state
                .batch
                .as_ref()
                .and_then(|batch| batch.stale_at(&shared.config))
        };
        match deadline {
            None => shared.wake.notified().await,
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => shared.flush_stale(Instant::now()),
                    // The batch went out and another began: its deadline is later.
                    () = shared.wake.notified() => {}
                }
            }
        }
    }
}

struct State {
    batch: Option<Batch>,
    /// Bytes the head may still emit.
    head_left: u64,
    /// Bytes the head has taken.
    head_bytes: u64,
    /// Once a line did not fit the head, it and every later line go here.
    tail: Option<Tail>,
    /// Set by `finish`; lines that come later are dropped.
    summary: Option<OutputSummary>,
}

struct Batch {
    stream: OutputStream,
    text: String,
    /// When its oldest line came in.
    started: Instant,
}

impl Batch {
    /// When the batch is due; never for an age limit beyond the clock's range.
    fn stale_at(&self, config: &Config) -> Option<Instant> {
        self.started.checked_add(config.batch_age)
    }
}

impl State {
    /// Takes one line (without '\n') into the head's batch or into the tail; true when it
    /// started a batch.
    fn take(&mut self, config: &Config, stream: OutputStream, line: &str, now: Instant) -> bool {
        let line = cut(line, config.line_cap);
        let cost = line_cost(&line);
        if self.tail.is_none() && cost <= self.head_left {
            self.head_left -= cost;
            self.head_bytes += cost;
            return self.batch(config, stream, &line, now);
        }
        // The head stays closed once a line missed it, so that what is omitted is one
        // stretch in the middle, not scattered lines.
        self.tail
            .get_or_insert_with(|| Tail::new(config.tail_cap))
            .push(stream, &line);
        false
    }

    /// Adds a line to the batch, emitting the batch first when the line does not belong in
    /// it; true when it started a batch.
    fn batch(&mut self, config: &Config, stream: OutputStream, line: &str, now: Instant) -> bool {
        let belongs = self.batch.as_ref().is_none_or(|batch| {
            batch.stream == stream && batch.text.len() + 1 + line.len() <= config.batch_bytes
        });
        // A stale batch is emitted here too, in case the ticker is held up by a busy runtime.
        if !belongs || self.is_stale(config, now) {
            self.flush(config);
        }
        let started = match &mut self.batch {
            Some(batch) => {
                batch.text.push('\n');
                batch.text.push_str(line);
                false
            }
            None => {
                self.batch = Some(Batch {
                    stream,
                    text: line.to_owned(),
                    started: now,
                });
                true
            }
        };
        if self
            .batch
            .as_ref()
            .is_some_and(|batch| batch.text.len() >= config.batch_bytes)
        {
            self.flush(config);
        }
        started
    }

    fn is_stale(&self, config: &Config, now: Instant) -> bool {
        self.batch
            .as_ref()
            .and_then(|batch| batch.stale_at(config))
            .is_some_and(|stale_at| now >= stale_at)
    }

    fn flush(&mut self, config: &Config) {
        if let Some(batch) = self.batch.take() {
            (config.emit)(batch.stream, batch.text);
        }
    }
}

/// The last lines of an output that exceeded its head, at most `cap` bytes of them. Lines are
/// kept as records (a stream tag, the text, '\n') in large chunks, so that a step printing
/// millions of one-character lines costs no allocation per line.
struct Tail {
    chunks: VecDeque<String>,
    /// Where the oldest kept record starts in the first chunk.
    start: usize,
    /// Bytes of the kept lines (each counted with its line end).
    bytes: u64,
    cap: u64,
    omitted_bytes: u64,
    omitted_lines: u64,
}

impl Tail {
    fn new(cap: u64) -> Self {
        Self {
            chunks: VecDeque::new(),
            start: 0,
            bytes: 0,
            cap,
            omitted_bytes: 0,
            omitted_lines: 0,
        }
    }

    fn push(&mut self, stream: OutputStream, line: &str) {
        let record = line.len() + 2;
        if self
            .chunks
            .back()
            .is_none_or(|chunk| chunk.len() + record > TAIL_CHUNK)
        {
            self.chunks
                .push_back(String::with_capacity(TAIL_CHUNK.max(record)));
        }
        let Some(chunk) = self.chunks.back_mut() else {
            return; // unreachable: a chunk was just made sure of
        };
        chunk.push(stream_tag(stream));
        chunk.push_str(line);
        chunk.push('\n');
        self.bytes += line_cost(line);
        while self.bytes > self.cap && self.drop_oldest() {}
    }

    /// Drops the oldest kept line; false when none is left.
    fn drop_oldest(&mut self) -> bool {
        let Some(front) = self.chunks.front() else {
            return false;
        };
        let rest = &front[self.start..];
        let record = rest.find('\n').map_or(rest.len(), |end| end + 1);
        // A record's cost is its length without the tag (the '\n' is the line end).
        let cost = u64::try_from(record.saturating_sub(1)).unwrap_or(u64::MAX);
        self.bytes = self.bytes.saturating_sub(cost);
        self.omitted_bytes += cost;
        self.omitted_lines += 1;
        self.start += record;
        if self.start >= front.len() {
            self.chunks.pop_front();
            self.start = 0;
        }
        true
    }

    /// The kept lines, oldest first.
    fn lines(&self) -> impl Iterator<Item = (OutputStream, &str)> {
        self.chunks
            .iter()
            .enumerate()
            .flat_map(move |(index, chunk)| {
                let kept = if index == 0 {
                    &chunk[self.start..]
                } else {
                    chunk.as_str()
                };
                kept.split_terminator('\n')
            })
            .map(|record| {
                // Every record starts with its one-byte ASCII tag.
                let (tag, line) = record.split_at(1);
                (tag_stream(tag), line)
            })
    }
}

fn stream_tag(stream: OutputStream) -> char {
    match stream {
        OutputStream::Stdout => 'o',
        OutputStream::Stderr => 'e',
        OutputStream::Log => 'l',
    }
}

fn tag_stream(tag: &str) -> OutputStream {
    match tag {
        "e" => OutputStream::Stderr,
        "l" => OutputStream::Log,
        _ => OutputStream::Stdout,
    }
}

/// What a line costs of the budget: its bytes and its line end.
fn line_cost(line: &str) -> u64 {
    u64::try_from(line.len()).map_or(u64::MAX, |len| len.saturating_add(1))
}

/// The line, cut (and marked) so that it and its line end fit in `cap` bytes.
fn cut(line: &str, cap: usize) -> Cow<'_, str> {
    if line.len() < cap {
        return Cow::Borrowed(line);
    }
    let end = line.floor_char_boundary(cap.saturating_sub(1 + LINE_CUT.len()));
    Cow::Owned(format!("{}{LINE_CUT}", &line[..end]))
}

/// The log line that stands for the output left out.
fn omitted_note(bytes: u64, lines: u64, kept: u64) -> String {
    let bytes = plural(bytes, "byte");
    let lines = plural(lines, "line");
    format!(
        "warn: … {bytes} ({lines}) of output omitted; an attempt keeps its first and last {} …",
        size(kept)
    )
}

fn plural(count: u64, unit: &str) -> String {
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

/// A byte count as people write limits: "4 MiB", "32 KiB", else in bytes.
fn size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    const KIB: u64 = 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        plural(bytes, "byte")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    type Emitted = Arc<Mutex<Vec<(OutputStream, String)>>>;

    /// An emit that records every batch and fails the test if two calls overlap.
    fn recorder() -> (EmitBatch, Emitted) {
        let emitted: Emitted = Arc::default();
        let busy = Arc::new(AtomicBool::new(false));
        let sink = Arc::clone(&emitted);
        let emit: EmitBatch = Arc::new(move |stream, text| {
            assert!(
                !busy.swap(true, Ordering::SeqCst),
                "emit called concurrently"
            );
            sink.lock().expect("lock").push((stream, text));
            busy.store(false, Ordering::SeqCst);
        });
        (emit, emitted)
    }

    /// The default limits with an age limit no test outlasts, for tests that look at where
    /// batches end: a descheduled test thread must not make a batch stale.
    fn ageless() -> OutputLimits {
        OutputLimits {
            batch_age: Duration::from_secs(3600),
            ..OutputLimits::default()
        }
    }

    fn taken(emitted: &Emitted) -> Vec<(OutputStream, String)> {
        emitted.lock().expect("lock").clone()
    }

    /// Every emitted line, in order, with its stream.
    fn lines(batches: &[(OutputStream, String)]) -> Vec<(OutputStream, String)> {
        batches
            .iter()
            .flat_map(|(stream, text)| text.split('\n').map(|line| (*stream, line.to_owned())))
            .collect()
    }

    #[tokio::test]
    async fn a_full_batch_is_emitted_at_its_size_limit() {
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, ageless());
        let line = "x".repeat(99);
        for _ in 0..10_000 {
            batcher.push(OutputStream::Stdout, &line);
        }
        // No await yet: the ticker has not run, so only the size limit emitted these.
        let before_finish = taken(&emitted).len();
        assert!(before_finish >= 15, "{before_finish} batches");
        batcher.finish();
        let batches = taken(&emitted);
        for (index, (_, text)) in batches.iter().enumerate() {
            assert!(text.len() <= BATCH_BYTES, "batch {index}: {}", text.len());
            if index + 1 < batches.len() {
                assert!(
                    text.len() > BATCH_BYTES - 100,
                    "batch {index}: {}",
                    text.len()
                );
            }
        }
        assert_eq!(lines(&batches).len(), 10_000);
        assert!(lines(&batches).iter().all(|(_, text)| *text == line));
    }

    #[tokio::test]
    async fn a_stream_change_ends_the_batch() {
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, ageless());
        batcher.push(OutputStream::Stdout, "a");
        batcher.push(OutputStream::Stdout, "b");
        batcher.push(OutputStream::Stderr, "c");
        batcher.push(OutputStream::Stdout, "d");
        let sink = batcher.sink();
        sink(PluginEvent::Log {
            level: Level::Warn,
            message: "e\nf".into(),
        });
        let summary = batcher.finish();
        assert_eq!(
            taken(&emitted),
            [
                (OutputStream::Stdout, "a\nb".to_owned()),
                (OutputStream::Stderr, "c".to_owned()),
                (OutputStream::Stdout, "d".to_owned()),
                (OutputStream::Log, "warn: e\nf".to_owned()),
            ]
        );
        assert_eq!(
            summary,
            OutputSummary {
                truncated: false,
                omitted_bytes: 0,
                omitted_lines: 0,
                stored_bytes: 2 + 2 + 2 + 2 + 8 + 2,
            }
        );
    }

    #[tokio::test]
    async fn a_batch_is_emitted_once_its_oldest_line_is_stale() {
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, OutputLimits::default());
        let before = Instant::now();
        batcher.push(OutputStream::Stdout, "first");
        let after = Instant::now();
        // The current-thread runtime cannot run the ticker until this test awaits.
        batcher
            .shared
            .flush_stale(before + BATCH_AGE - Duration::from_millis(1));
        assert!(taken(&emitted).is_empty());
        batcher.shared.flush_stale(after + BATCH_AGE);
        assert_eq!(
            taken(&emitted),
            [(OutputStream::Stdout, "first".to_owned())]
        );
    }

    #[tokio::test]
    async fn a_line_after_a_stale_batch_emits_it_even_without_the_ticker() {
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, OutputLimits::default());
        batcher.push(OutputStream::Stdout, "first");
        // Blocking the only runtime thread keeps the ticker from running.
        std::thread::sleep(BATCH_AGE + Duration::from_millis(10));
        batcher.push(OutputStream::Stdout, "second");
        assert_eq!(
            taken(&emitted),
            [(OutputStream::Stdout, "first".to_owned())]
        );
        batcher.finish();
        assert_eq!(taken(&emitted).len(), 2);
    }

    #[tokio::test]
    async fn the_ticker_emits_the_last_line_of_a_quiet_step() {
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, OutputLimits::default());
        batcher.push(OutputStream::Stderr, "last words");
        // Generous: the assertion is that it happens without another line or `finish`.
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while taken(&emitted).is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "the ticker never emitted the batch");
        assert_eq!(
            taken(&emitted),
            [(OutputStream::Stderr, "last words".to_owned())]
        );
        // A second batch after the first went out is emitted as well.
        batcher.push(OutputStream::Stdout, "more");
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while taken(&emitted).len() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "the ticker never emitted the second batch");
        batcher.finish();
        assert_eq!(taken(&emitted).len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_from_several_threads_keep_each_senders_order() {
        const THREADS: usize = 4;
        const LINES: usize = 20_000;
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, OutputLimits::default());
        let senders: Vec<_> = (0..THREADS)
            .map(|thread| {
                let sink = batcher.sink();
                std::thread::spawn(move || {
                    let stream = if thread.is_multiple_of(2) {
                        StreamKind::Stdout
                    } else {
                        StreamKind::Stderr
                    };
                    for index in 0..LINES {
                        sink(PluginEvent::Output {
                            stream,
                            line: format!("{thread} {index}"),
                        });
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.join().expect("sender thread");
        }
        batcher.finish();
        let mut next = [0usize; THREADS];
        let all = lines(&taken(&emitted));
        assert_eq!(all.len(), THREADS * LINES);
        for (stream, line) in all {
            let (thread, index) = line.split_once(' ').expect("thread and index");
            let thread: usize = thread.parse().expect("thread");
            let index: usize = index.parse().expect("index");
            assert_eq!(index, next[thread], "line {line} out of order");
            let expected = if thread.is_multiple_of(2) {
                OutputStream::Stdout
            } else {
                OutputStream::Stderr
            };
            assert_eq!(stream, expected, "line {line}");
            next[thread] += 1;
        }
    }

    #[tokio::test]
    async fn over_budget_output_keeps_its_start_and_end() {
        const BUDGET: u64 = 64 * 1024;
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, OutputLimits::with_budget(BUDGET));
        let fed: Vec<String> = (0..300_000)
            .map(|i| format!("{i:08} {}", "x".repeat(i % 50)))
            .collect();
        let fed_bytes: u64 = fed.iter().map(|line| line_cost(line)).sum();
        assert!(fed_bytes > 10_000_000, "{fed_bytes}");
        for line in &fed {
            batcher.push(OutputStream::Stdout, line);
        }
        let summary = batcher.finish();

        // What should be kept, worked out independently: the lines that fit the first half
        // of the budget, and the longest run of last lines that fits the second half.
        let mut head = 0;
        let mut used = 0;
        while used + line_cost(&fed[head]) <= BUDGET / 2 {
            used += line_cost(&fed[head]);
            head += 1;
        }
        let mut tail_start = fed.len();
        let mut tail_used = 0;
        while tail_used + line_cost(&fed[tail_start - 1]) <= BUDGET / 2 {
            tail_used += line_cost(&fed[tail_start - 1]);
            tail_start -= 1;
        }
        let omitted_lines = u64::try_from(tail_start - head).expect("fits");
        let omitted_bytes = fed_bytes - used - tail_used;
        assert_eq!(
            summary,
            OutputSummary {
                truncated: true,
                omitted_bytes,
                omitted_lines,
                stored_bytes: used + tail_used,
            }
        );
        assert!(summary.stored_bytes <= BUDGET);

        let all = lines(&taken(&emitted));
        let note = omitted_note(omitted_bytes, omitted_lines, BUDGET / 2);
        assert!(
            note.starts_with(&format!(
                "warn: … {omitted_bytes} bytes ({omitted_lines} lines)"
            )),
            "{note}"
        );
        let mut expected: Vec<(OutputStream, String)> = fed[..head]
            .iter()
            .map(|line| (OutputStream::Stdout, line.clone()))
            .collect();
        expected.push((OutputStream::Log, note));
        expected.extend(
            fed[tail_start..]
                .iter()
                .map(|line| (OutputStream::Stdout, line.clone())),
        );
        assert_eq!(all.len(), expected.len());
        assert!(
            all == expected,
            "kept lines differ from the head and the tail"
        );
        assert_eq!(all.last().map(|(_, line)| line), fed.last());
    }

    #[tokio::test]
    async fn the_tail_costs_no_more_than_its_share_of_the_budget() {
        let (emit, _emitted) = recorder();
        let batcher = OutputBatcher::new(emit, OutputLimits::with_budget(1024 * 1024));
        // `yes`: the smallest lines cost the most bookkeeping per byte.
        for _ in 0..2_000_000 {
            batcher.push(OutputStream::Stdout, "y");
        }
        let state = batcher.shared.lock();
        let tail = state.tail.as_ref().expect("the head is full");
        let held: usize = tail.chunks.iter().map(String::capacity).sum();
        // Two bytes of budget per line, three held (tag, text, '\n'), plus partly used chunks.
        assert_eq!(tail.bytes, 512 * 1024);
        assert!(
            held <= 512 * 1024 * 3 / 2 + 3 * TAIL_CHUNK,
            "{held} bytes held"
        );
    }

    #[tokio::test]
    async fn output_within_the_budget_is_kept_whole() {
        const BUDGET: u64 = 64 * 1024;
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, OutputLimits::with_budget(BUDGET));
        // 60 KiB: more than the head, less than the whole budget.
        let fed: Vec<String> = (0..6_000).map(|i| format!("{i:09}")).collect();
        for (index, line) in fed.iter().enumerate() {
            let stream = if index % 1000 == 999 {
                OutputStream::Stderr
            } else {
                OutputStream::Stdout
            };
            batcher.push(stream, line);
        }
        let summary = batcher.finish();
        assert!(!summary.truncated);
        assert_eq!(summary.omitted_lines, 0);
        assert_eq!(summary.stored_bytes, 60_000);
        let all = lines(&taken(&emitted));
        assert_eq!(
            all.iter().map(|(_, line)| line).collect::<Vec<_>>(),
            fed.iter().collect::<Vec<_>>()
        );
        assert_eq!(all[999].0, OutputStream::Stderr);
        assert_eq!(all[5999].0, OutputStream::Stderr);
        assert_eq!(all[5998].0, OutputStream::Stdout);
    }

    #[tokio::test]
    async fn a_line_too_long_for_a_batch_is_cut() {
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, ageless());
        batcher.push(OutputStream::Stdout, "short");
        batcher.push(OutputStream::Stdout, &"é".repeat(BATCH_BYTES));
        batcher.finish();
        let batches = taken(&emitted);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].1, "short");
        assert!(batches[1].1.len() < BATCH_BYTES);
        assert!(
            batches[1].1.ends_with("é [line cut]"),
            "{}",
            &batches[1].1[..20]
        );
    }

    #[tokio::test]
    async fn finish_is_idempotent_and_later_lines_are_dropped() {
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(
            emit,
            OutputLimits {
                budget: 100,
                ..ageless()
            },
        );
        for index in 0..100 {
            batcher.push(OutputStream::Stdout, &format!("{index:03}"));
        }
        let first = batcher.finish();
        let count = taken(&emitted).len();
        batcher.push(OutputStream::Stdout, "late");
        batcher.sink()(PluginEvent::Output {
            stream: StreamKind::Stdout,
            line: "later".into(),
        });
        assert_eq!(batcher.finish(), first);
        assert_eq!(taken(&emitted).len(), count);
        assert!(first.truncated);
        assert_eq!(
            taken(&emitted)[1],
            (
                OutputStream::Log,
                "warn: … 304 bytes (76 lines) of output omitted; an attempt keeps its first and last 50 bytes …"
                    .to_owned()
            )
        );
    }

    #[tokio::test]
    async fn dropping_the_batcher_emits_what_is_left() {
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, OutputLimits::default());
        let sink = batcher.sink();
        sink(PluginEvent::Log {
            level: Level::Info,
            message: "cancelled mid-way".into(),
        });
        drop(batcher);
        assert_eq!(
            taken(&emitted),
            [(OutputStream::Log, "info: cancelled mid-way".to_owned())]
        );
        // The sink outlives the batcher without storing anything more.
        sink(PluginEvent::Log {
            level: Level::Info,
            message: "too late".into(),
        });
        assert_eq!(taken(&emitted).len(), 1);
    }

    #[tokio::test]
    async fn an_age_limit_beyond_the_clock_means_never_stale() {
        let (emit, emitted) = recorder();
        let limits = OutputLimits {
            batch_age: Duration::MAX,
            ..OutputLimits::default()
        };
        let batcher = OutputBatcher::new(emit, limits);
        batcher.push(OutputStream::Stdout, "one");
        tokio::task::yield_now().await;
        batcher.push(OutputStream::Stdout, "two");
        batcher.shared.flush_stale(Instant::now());
        assert!(taken(&emitted).is_empty());
        batcher.finish();
        assert_eq!(
            taken(&emitted),
            [(OutputStream::Stdout, "one\ntwo".to_owned())]
        );
    }

    #[tokio::test]
    async fn the_ticker_starts_with_the_first_line_and_stops_at_finish() {
        let (emit, _emitted) = recorder();
        let batcher = OutputBatcher::new(emit, OutputLimits::default());
        assert!(matches!(*batcher.shared.ticker(), Ticker::Idle(Some(_))));
        batcher.push(OutputStream::Stdout, "a line");
        assert!(matches!(*batcher.shared.ticker(), Ticker::Running(_)));
        batcher.finish();
        assert!(matches!(*batcher.shared.ticker(), Ticker::Stopped));
        batcher.push(OutputStream::Stdout, "too late");
        assert!(matches!(*batcher.shared.ticker(), Ticker::Stopped));
    }

    #[test]
    fn without_a_runtime_finish_still_emits() {
        let (emit, emitted) = recorder();
        let batcher = OutputBatcher::new(emit, OutputLimits::default());
        batcher.push(OutputStream::Stdout, "no runtime");
        assert!(matches!(*batcher.shared.ticker(), Ticker::Idle(None)));
        batcher.finish();
        assert_eq!(taken(&emitted).len(), 1);
    }
}
