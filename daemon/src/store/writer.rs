//! The store's one writer: a single thread that applies the writes of runs, steps, outputs
//! and events in the order they were made, and makes everything written durable. Callers
//! hand it encoded records and go on; they ask for a flush and wait for the first flush that
//! starts after they asked; requests that arrive while a flush runs share the next one (group
//! commit).
//!
//! Why the writes are handed off: inserting into sled costs a step more than anything else
//! the daemon does for it but the plugin call, and none of it needs to happen before the next
//! step starts: what must be on disk before a side effect is made so by a flush, which this
//! thread runs after every write handed to it before. Readers of run records first wait for
//! the writes handed off before them (see [`Shared::settle`]), so every reader sees every
//! write made before it, as when the caller wrote itself.
//!
//! Why one thread flushes: sled 0.34's `flush_async` deadlocks when called concurrently (sled
//! issue 1308), and its blocking `flush` must stay off the async workers. Sled's own periodic
//! flusher is turned off when the database is opened, so every flush of the process goes
//! through here; the thread also flushes on its own every [`IDLE_FLUSH`] when nobody asked
//! (a flush with nothing new to write costs next to nothing).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sled::Transactional;
use tokio::sync::oneshot;

use super::{StoreError, StoreHealth, guard};

/// How long written data may stay in memory when no caller asks for a flush: sled's own
/// default interval, which this thread replaces.
const IDLE_FLUSH: Duration = Duration::from_millis(500);

/// The most encoded bytes handed off and not yet applied; a writer that would go beyond
/// waits until the thread has caught up. A step's records are bounded by its output budget,
/// so this bounds the queue to this plus one step's records.
const MAX_PENDING_BYTES: usize = 32 << 20;

/// The most writes handed off and not yet applied (each a transition's few records).
const MAX_PENDING_WRITES: usize = 4096;

/// One encoded record to insert.
pub(super) type Entry = (Vec<u8>, Vec<u8>);

type Waiter = oneshot::Sender<Result<(), sled::Error>>;

/// The trees the thread writes: run headers, step records, outputs, events.
#[derive(Clone)]
pub(super) struct RunTrees {
    pub runs: sled::Tree,
    pub steps: sled::Tree,
    pub outputs: sled::Tree,
    pub events: sled::Tree,
}

/// One transition's records, in the order of [`RunTrees`]'s fields.
pub(super) struct Write {
    pub runs: Vec<Entry>,
    pub steps: Vec<Entry>,
    pub outputs: Vec<Entry>,
    pub events: Vec<Entry>,
}

impl Write {
    fn bytes(&self) -> usize {
        [&self.runs, &self.steps, &self.outputs, &self.events]
            .into_iter()
            .flatten()
            .map(|(key, value)| key.len() + value.len())
            .sum()
    }
}

enum Job {
    Write {
        ticket: u64,
        bytes: usize,
        write: Write,
    },
    Flush(Waiter),
}

/// What callers hand the thread, and whether it must wake for it.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Someone waits for the thread: a flush, a reader, a full queue, or the store closing.
    wanted: bool,
    closing: bool,
}

/// The queue and how far the thread has got with it: writes are numbered in the order they
/// are handed off, and applied in that order.
///
/// Handing a write off does not wake the thread: waking a sleeping thread costs a system
/// call and a context switch on each side, more than inserting the write itself. The thread
/// wakes when it is wanted (a flush, a reader waiting in [`Shared::settle`], a queue beyond
/// its bounds, closing) and otherwise every [`IDLE_FLUSH`]; as every transition publishes
/// events, and events are published after a flush within 10 ms, writes wait about that long.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when the thread is wanted.
    wanted: Condvar,
    issued: AtomicU64,
    applied: AtomicU64,
    pending_bytes: AtomicUsize,
    /// Guards waiting for `applied` to grow (the number itself is read without it).
    progress: Mutex<()>,
    caught_up: Condvar,
}

impl Shared {
    /// Queues a flush request and wakes the thread for it.
    fn request_flush(&self, waiter: Waiter) -> Result<(), StoreError> {
        let mut queue = guard(&self.queue);
        if queue.closing {
            return Err(closing());
        }
        queue.jobs.push(Job::Flush(waiter));
        self.wake(&mut queue);
        Ok(())
    }

    fn wake(&self, queue: &mut Queue) {
        if !queue.wanted {
            queue.wanted = true;
            self.wanted.notify_one();
        }
    }

    /// Records that writes up to `ticket` are applied (all of them, `u64::MAX`, when the
    /// thread ends: nothing is left to wait for).
    fn applied(&self, ticket: u64) {
        let _guard = guard(&self.progress);
        self.applied.store(ticket, Ordering::Release);
        self.caught_up.notify_all();
    }

    /// Waits until every write handed off before this call is applied: readers call it
    /// first, so that they see what was written before they read. Costs an atomic load when
    /// the thread has caught up.
    fn settle(&self) {
        let target = self.issued.load(Ordering::Acquire);
        if self.applied.load(Ordering::Acquire) >= target {
            return;
        }
        self.wake(&mut guard(&self.queue));
        let mut waiting = guard(&self.progress);
        while self.applied.load(Ordering::Acquire) < target {
            waiting = self
                .caught_up
                .wait(waiting)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// The handle to the writer thread; dropping it applies what is queued, flushes once more
/// and joins the thread.
pub(super) struct Writer {
    /// Writes are bounded by [`MAX_PENDING_BYTES`] and [`MAX_PENDING_WRITES`]; each flush
    /// request is one task waiting for its answer, so its callers bound those.
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    health: Arc<StoreHealth>,
}

impl Writer {
    /// Starts the thread for `db`; failed writes and flushes are recorded in `health`.
    pub(super) fn start(
        db: sled::Db,
        trees: RunTrees,
        health: Arc<StoreHealth>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let thread_health = Arc::clone(&health);
        let thread = std::thread::Builder::new()
            .name("runbookd-writer".into())
            .spawn(move || {
                let shared = thread_shared;
                // However the thread ends, nobody waits for it any more.
                let _done = Done(&shared);
                serve(&db, &trees, &shared, &thread_health);
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
            health,
        })
    }

    /// Hands one transition's records to the thread. Waits only when the thread is further
    /// behind than the queue's bounds allow.
    pub(super) fn write(&self, write: Write) -> Result<(), StoreError> {
        let shared = &self.shared;
        let bytes = write.bytes();
        let pending = shared.pending_bytes.load(Ordering::Acquire);
        let behind = shared
            .issued
            .load(Ordering::Acquire)
            .saturating_sub(shared.applied.load(Ordering::Acquire));
        if pending > MAX_PENDING_BYTES || behind > MAX_PENDING_WRITES as u64 {
            shared.settle();
        }
        let mut queue = guard(&shared.queue);
        if queue.closing {
            return Err(closing());
        }
        shared.pending_bytes.fetch_add(bytes, Ordering::AcqRel);
        // Numbered under the queue's lock, so that numbers follow the queue's order.
        let ticket = shared.issued.fetch_add(1, Ordering::AcqRel) + 1;
        queue.jobs.push(Job::Write {
            ticket,
            bytes,
            write,
        });
        Ok(())
    }

    /// Waits until every write handed off before this call is applied (not flushed).
    pub(super) fn settle(&self) {
        self.shared.settle();
    }

    /// Waits until everything written before this call is on disk.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let (waiter, done) = oneshot::channel();
        self.shared.request_flush(waiter)?;
        done.await
            .map_err(|_| StoreError::Flush("the writer stopped before flushing".into()))?
            .map_err(|err| self.health.refuse(err))
    }
}

fn closing() -> StoreError {
    StoreError::Flush("the store is closing".into())
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The thread applies what is queued, flushes one last time and ends.
        {
            let mut queue = guard(&self.shared.queue);
            queue.closing = true;
            self.shared.wake(&mut queue);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Marks every write applied when the thread ends, even by a panic, so no reader waits for
/// a thread that is gone.
struct Done<'a>(&'a Shared);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.applied(u64::MAX);
    }
}

fn serve(db: &sled::Db, trees: &RunTrees, shared: &Shared, health: &StoreHealth) {
    // The first write that failed: every later flush answers with it, so that whoever waits
    // for durability learns that something before it was not written.
    let mut failed: Option<sled::Error> = None;
    loop {
        let (jobs, idle, closing) = {
            let mut queue = guard(&shared.queue);
            let mut idle = false;
            if !queue.wanted && !queue.closing {
                let (woken, waited) = shared
                    .wanted
                    .wait_timeout(queue, IDLE_FLUSH)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                queue = woken;
                idle = waited.timed_out() && !queue.wanted;
            }
            queue.wanted = false;
            (std::mem::take(&mut queue.jobs), idle, queue.closing)
        };
        // Apply every write queued so far, in order, and answer every flush request among
        // them with one flush that starts after all of them (group commit).
        let mut waiters = Vec::new();
        for job in jobs {
            match job {
                Job::Write {
                    ticket,
                    bytes,
                    write,
                } => {
                    if let Err(err) = apply(trees, &write) {
                        health.refuse(err.clone());
                        failed.get_or_insert(err);
                    }
                    shared.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
                    shared.applied(ticket);
                }
                Job::Flush(waiter) => waiters.push(waiter),
            }
        }
        // A reader or a full queue wants the writes applied, not flushed.
        if waiters.is_empty() && !idle && !closing {
            continue;
        }
        // Once sled has failed, a flush fails at once with the same error, and recording it
        // again logs nothing (see `StoreHealth::refuse`).
        let result = match &failed {
            Some(err) => Err(err.clone()),
            None => db.flush().map(drop),
        };
        match &result {
            Err(err) if closing => {
                tracing::error!(error = %err, "cannot flush the database at close");
            }
            Err(err) => drop(health.refuse(err.clone())),
            Ok(()) => {}
        }
        for waiter in waiters {
            // A caller that gave up waiting is fine.
            let _ = waiter.send(result.clone());
        }
        // Nothing is queued after closing: writes and flushes are refused from then on.
        if closing {
            return;
        }
    }
}

/// Writes one transition: in one transaction when more than one run or step record changes,
/// else key by key in an order that a crash can only cut harmlessly.
fn apply(trees: &RunTrees, write: &Write) -> Result<(), sled::Error> {
    if write.runs.len() + write.steps.len() <= 1 {
        // A transition of one record (a step starting or ending, a run's status): written
        // key by key, in an order whose every prefix is harmless, instead of as a sled batch
        // or transaction, each of which makes sled write its log buffer out twice (4 disk
        // writes a step, where a step otherwise costs none). Sled recovers a prefix of its
        // log after a crash, so a torn write leaves at worst an output that no record names
        // yet, or a record whose trailing events are missing; those events were never
        // published, as events are published only once flushed.
        for (tree, entries) in [
            (&trees.outputs, &write.outputs),
            (&trees.steps, &write.steps),
            (&trees.runs, &write.runs),
            (&trees.events, &write.events),
        ] {
            for (key, value) in entries {
                tree.insert(key.as_slice(), value.as_slice())?;
            }
        }
        return Ok(());
    }
    // No I/O in here: sled may run the closure more than once.
    (&trees.runs, &trees.steps, &trees.outputs, &trees.events)
        .transaction(|(runs, steps, outputs, events)| {
            for (tree, entries) in [
                (runs, &write.runs),
                (steps, &write.steps),
                (outputs, &write.outputs),
                (events, &write.events),
            ] {
                for (key, value) in entries {
                    tree.insert(key.as_slice(), value.as_slice())?;
                }
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
        .map_err(|err| match err {
            sled::transaction::TransactionError::Storage(err) => err,
            sled::transaction::TransactionError::Abort(()) => {
                sled::Error::Unsupported("a run's transaction aborted".into())
            }
        })
}
