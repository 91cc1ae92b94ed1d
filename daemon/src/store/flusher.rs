//! The one flusher: a single thread that makes sled's writes durable. Callers ask for a flush
//! and wait for the first flush that starts after they asked; requests that arrive while a
//! flush runs share the next one (group commit).
//!
//! Why one thread: sled 0.34's `flush_async` deadlocks when called concurrently (sled issue
//! 1308), and its blocking `flush` must stay off the async workers. Sled's own periodic
//! flusher is turned off when the database is opened, so every flush of the process goes
//! through here; the thread also flushes on its own every [`IDLE_FLUSH`] when nobody asked
//! (a flush with nothing new to write costs next to nothing).

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{StoreError, StoreHealth};

/// How long written data may stay in memory when no caller asks for a flush: sled's own
/// default interval, which this thread replaces.
const IDLE_FLUSH: Duration = Duration::from_millis(500);

type Waiter = oneshot::Sender<Result<(), sled::Error>>;

/// The handle to the flusher thread; dropping it flushes once more and joins the thread.
pub(super) struct Flusher {
    /// Unbounded, and that is fine: each request is one task or thread waiting for its
    /// answer, so the callers bound it, and each request is a few bytes.
    requests: Option<mpsc::Sender<Waiter>>,
    thread: Option<JoinHandle<()>>,
    health: Arc<StoreHealth>,
}

impl Flusher {
    /// Starts the thread for `db`; failed flushes are recorded in `health`.
    pub(super) fn start(db: sled::Db, health: Arc<StoreHealth>) -> std::io::Result<Self> {
        let (requests, receiver) = mpsc::channel::<Waiter>();
        let thread_health = Arc::clone(&health);
        let thread = std::thread::Builder::new()
            .name("runbookd-flush".into())
            .spawn(move || serve(&db, &receiver, &thread_health))?;
        Ok(Self {
            requests: Some(requests),
            thread: Some(thread),
            health,
        })
    }

    /// Waits until everything written before this call is on disk.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let (waiter, done) = oneshot::channel();
        self.requests
            .as_ref()
            .ok_or_else(|| StoreError::Flush("the store is closing".into()))?
            .send(waiter)
            .map_err(|_| StoreError::Flush("the flusher has stopped".into()))?;
        done.await
            .map_err(|_| StoreError::Flush("the flusher stopped before flushing".into()))?
            .map_err(|err| self.health.refuse(err))
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Closing the channel makes the thread flush one last time and end.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(db: &sled::Db, receiver: &mpsc::Receiver<Waiter>, health: &StoreHealth) {
    loop {
        let first = match receiver.recv_timeout(IDLE_FLUSH) {
            Ok(waiter) => waiter,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Once sled has failed, a flush fails at once with the same error: recording it
                // again logs nothing (see `StoreHealth::refuse`).
                if let Err(err) = db.flush() {
                    health.refuse(err);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Err(err) = db.flush() {
                    tracing::error!(error = %err, "cannot flush the database at close");
                }
                return;
            }
        };
        let mut waiters = vec![first];
        waiters.extend(receiver.try_iter());
        let result = db.flush().map(drop);
        for waiter in waiters {
            // A caller that gave up waiting is fine.
            let _ = waiter.send(result.clone());
        }
    }
}
