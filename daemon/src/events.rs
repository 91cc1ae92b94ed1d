//! The daemon's event bus: signals that a run's stored events are on disk fan out to every
//! watcher, which reads the events themselves from the store. Signals are sent only after the
//! store has flushed the events, so no watcher ever sees an event that a crash could take back.
//!
//! Nothing on the way from a step to a watcher holds event bodies in an unbounded queue:
//! - the publisher keeps one number per run with unpublished events (coalescing), not the
//!   events, so a chatty step never makes it grow (its producers are synchronous callbacks
//!   under a run's or a batcher's lock, so they cannot wait; they do not need to);
//! - the bus carries a run id and a sequence number per signal, [`SIGNALS`] of them;
//! - each watcher reads the store a page at a time and waits for its client (see
//!   `service/watch.rs`), so a slow watcher slows only itself and costs at most a few pages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{broadcast, mpsc};

use crate::store::{EventRecord, Store};

/// How many daemon events a slow `WatchDaemon` client may fall behind before it is told to
/// re-read the lists.
const CAPACITY: usize = 4096;

/// How many durability signals a slow watcher may fall behind before it re-reads its run from
/// the store (which it then does at once). A signal is a run id and a number, so the bus costs
/// well under a megabyte whatever the steps print; a watcher that lags loses nothing, as the
/// store has every event.
const SIGNALS: usize = 1024;

/// The shortest time between two flushes the publisher asks for. Events that arrive within
/// it share one flush: a run of short steps then costs a flush per window instead of a flush
/// per step (each flush writes whole pages, syncs the file and wakes sled's writer threads),
/// at the price of events reaching watchers up to this much later; 10 ms is below what a
/// person watching can tell. A first event after a quiet spell is flushed at
/// once. Flushes that guard a side effect or an operator's request do not wait for this.
const PUBLISH_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

/// Run `run_id`'s events up to `seq` are on disk and readable from the store.
#[derive(Debug, Clone)]
pub struct Durable {
    pub run_id: Arc<str>,
    pub seq: u64,
}

/// A cloneable handle to the bus.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Durable>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(SIGNALS).0,
        }
    }
}

impl EventBus {
    /// Tells current subscribers that a run's events up to `seq` are durable (none listening
    /// is fine).
    pub fn publish(&self, run_id: &str, seq: u64) {
        let _ = self.sender.send(Durable {
            run_id: run_id.into(),
            seq,
        });
    }

    /// Receives every signal sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Durable> {
        self.sender.subscribe()
    }
}

/// The newest stored sequence number of each run whose events wait for a flush, and since
/// when the oldest of them waits.
type Pending = Arc<Mutex<Waiting>>;

#[derive(Default)]
struct Waiting {
    marks: HashMap<String, u64>,
    since: Option<std::time::Instant>,
}

/// Publishes events only once they are on disk. Events stored while a flush runs share the
/// next one (group commit), so a chatty step costs one flush per window, not per line.
///
/// Bounded by coalescing, not by waiting: what waits for a flush is one number per run (the
/// newest stored sequence number), so a step printing without pause changes a number instead
/// of queueing batches. The wake-up channel holds one wake-up.
#[derive(Clone)]
pub struct DurablePublisher {
    pending: Pending,
    wake: mpsc::Sender<()>,
}

impl DurablePublisher {
    /// Starts the publishing task on the current runtime; it ends, after a last flush, once
    /// every handle is gone.
    pub fn spawn(store: Store, bus: EventBus, metrics: crate::metrics::Metrics) -> Self {
        let pending = Pending::default();
        // One wake-up is enough: the task takes everything pending when it wakes.
        let (wake, mut woken) = mpsc::channel::<()>(1);
        let queued = Arc::clone(&pending);
        tokio::spawn(async move {
            let mut last_flush = tokio::time::Instant::now();
            loop {
                let open = woken.recv().await.is_some();
                if open {
                    tokio::time::sleep_until(last_flush + PUBLISH_WINDOW).await;
                    last_flush = tokio::time::Instant::now();
                }
                let waiting = std::mem::take(&mut *lock(&queued));
                if !waiting.marks.is_empty()
                    && publish_durable(&store, &bus, waiting.marks).await
                    && let Some(since) = waiting.since
                {
                    metrics.published(since.elapsed());
                }
                if !open {
                    return;
                }
            }
        });
        Self { pending, wake }
    }

    /// Publishes stored events once they are on disk. Never waits: see the type's comment.
    pub fn publish(&self, events: Vec<EventRecord>) {
        if events.is_empty() {
            return;
        }
        {
            let mut pending = lock(&self.pending);
            pending.since.get_or_insert_with(std::time::Instant::now);
            for event in &events {
                // Events of one run are stored in sequence order under the store's lock, and
                // published after they are stored: a flush that starts after the newest one
                // was stored covers all the earlier ones.
                let seq = pending.marks.entry(event.run_id.clone()).or_default();
                *seq = (*seq).max(event.seq);
            }
        }
        // Full means a wake-up is already due, and that round takes these too.
        let _ = self.wake.try_send(());
    }
}

/// Flushes, then marks the runs' events durable and signals watchers; false when the flush
/// failed.
async fn publish_durable(store: &Store, bus: &EventBus, marks: HashMap<String, u64>) -> bool {
    match store.flush().await {
        Ok(()) => {
            store.mark_durable_seqs(marks.iter().map(|(run, seq)| (run.as_str(), *seq)));
            for (run, seq) in &marks {
                bus.publish(run, *seq);
            }
            true
        }
        // Not on disk, so never shown: a restart may take these events back. The store has
        // logged why (once), and `status` says so.
        Err(err) => {
            tracing::debug!(error = %err, "events not published: the flush failed");
            false
        }
    }
}

/// Locks the pending map; a poisoned lock only means a publisher panicked between two
/// whole updates.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A change to what the daemon offers: runbook versions and plugins. Not stored: a client
/// that connects later reads the current state through the API instead.
#[derive(Debug, Clone)]
pub enum DaemonEvent {
    VersionAdded(crate::store::HistoryEntry),
    RunbookInvalid {
        name: String,
        path: String,
        diagnostics: Vec<crate::runbook::Diagnostic>,
    },
    RunbookRemoved {
        name: String,
        path: String,
    },
    PluginLoaded {
        kind: String,
        path: String,
    },
    PluginRejected {
        path: String,
        error: String,
    },
    PluginRemoved {
        kind: String,
        path: String,
    },
}

/// Fans [`DaemonEvent`]s out to every `WatchDaemon` stream.
#[derive(Clone)]
pub struct DaemonEvents {
    sender: broadcast::Sender<(i64, DaemonEvent)>,
}

impl Default for DaemonEvents {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl DaemonEvents {
    /// Sends `event`, stamped with the current time, to current subscribers.
    pub fn publish(&self, event: DaemonEvent) {
        tracing::debug!(?event, "daemon event");
        let _ = self.sender.send((crate::store::now_ms(), event));
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<(i64, DaemonEvent)> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Changes, EventKind, OutputStream};

    #[tokio::test]
    async fn a_flood_of_stored_events_waits_as_one_number_and_reaches_watchers_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let run = crate::store::tests::run("r1");
        let bus = EventBus::default();
        let mut signals = bus.subscribe();
        let publisher =
            DurablePublisher::spawn(store.clone(), bus, crate::metrics::Metrics::default());
        let first = store
            .commit(&run, &Changes::all(&run), vec![])
            .expect("commit");
        publisher.publish(first);
        for line in 0..1000 {
            let stored = store
                .append(
                    "r1",
                    vec![EventKind::StepOutput {
                        step_id: "a".into(),
                        stream: OutputStream::Stdout,
                        line: line.to_string(),
                    }],
                )
                .expect("append");
            publisher.publish(stored);
            // However fast they come, what waits is one number for the run.
            assert!(lock(&publisher.pending).marks.len() <= 1);
        }
        let mut seen = 0;
        while seen < 1000 {
            let signal = signals.recv().await.expect("signal");
            assert_eq!(&*signal.run_id, "r1");
            assert!(signal.seq > seen, "signals only move forward");
            seen = signal.seq;
        }
        let lines: Vec<String> = store
            .events_after("r1", 0)
            .expect("events")
            .into_iter()
            .map(|event| match event.kind {
                EventKind::StepOutput { line, .. } => line,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let expected: Vec<String> = (0..1000).map(|line| line.to_string()).collect();
        assert_eq!(
            lines, expected,
            "every event is readable, in order, once signalled"
        );
    }
}
