//! `WatchRun`: a run's stored events after a sequence number, then live ones, without gaps or
//! duplicates, ending once the run has ended.

use runbook_protocol::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::convert;
use crate::events::EventBus;
use crate::store::{EventKind, EventRecord, Store};

/// Events buffered per watcher before the sender waits for the client. An output event holds
/// up to 64 KiB of lines, so a watcher whose client does not read holds at most about 2 MiB
/// here plus a page read from the store ([`PAGE`]); the step it watches never waits for it.
const BUFFER: usize = 32;

/// Events read from the store at a time.
const PAGE: usize = 32;

pub fn watch(
    store: Store,
    bus: EventBus,
    run_id: String,
    after_seq: u64,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<pb::RunEvent, Status>> + Send {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        tokio::select! {
            result = forward(&store, &bus, &run_id, after_seq, &tx) => {
                if let Err(status) = result {
                    let _ = tx.send(Err(status)).await;
                }
            }
            () = shutdown.cancelled() => {}
        }
    });
    ReceiverStream::new(rx)
}

type Sender = mpsc::Sender<Result<pb::RunEvent, Status>>;

/// Sends events in order; returns when the run has ended or the client went away.
async fn forward(
    store: &Store,
    bus: &EventBus,
    run_id: &str,
    after_seq: u64,
    tx: &Sender,
) -> Result<(), Status> {
    // Subscribe before reading the backlog: an event stored in between is then either in
    // the backlog or on the channel, and duplicates are dropped by sequence number.
    let mut live = bus.subscribe();
    let mut last = after_seq;
    if catch_up(store, run_id, &mut last, tx).await? {
        return Ok(());
    }
    // A run's record is written before its events are durable: an ended run is read once
    // every event written for it is on disk, so that its last events are not cut off.
    if store
        .settled_run(run_id, super::SETTLE_PATIENCE)
        .await?
        .is_some_and(|(run, _)| run.status.is_terminal())
    {
        // It ended: send whatever was stored after the first read, then stop.
        catch_up(store, run_id, &mut last, tx).await?;
        return Ok(());
    }
    loop {
        // A client that left is noticed at once, not at the next event: a run that waits
        // for days must not keep a watcher of nobody.
        let signal = tokio::select! {
            signal = live.recv() => signal,
            () = tx.closed() => return Ok(()),
        };
        match signal {
            // The signal only says what is durable now; the events come from the store.
            Ok(durable) if *durable.run_id == *run_id && durable.seq > last => {
                if catch_up(store, run_id, &mut last, tx).await? {
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if catch_up(store, run_id, &mut last, tx).await? {
                    return Ok(());
                }
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

/// Sends stored events after `last`; returns true when the stream is over (the run ended or
/// the client left).
async fn catch_up(
    store: &Store,
    run_id: &str,
    last: &mut u64,
    tx: &Sender,
) -> Result<bool, Status> {
    // The run's end is its last event: an earlier end was undone by a retry in place, and
    // what followed it is sent too.
    let mut ended = false;
    loop {
        let page = store.events_page(run_id, *last, PAGE)?;
        if page.is_empty() {
            return Ok(ended);
        }
        for event in page {
            *last = event.seq;
            ended = ends_run(&event);
            if tx.send(Ok(convert::event(&event))).await.is_err() {
                return Ok(true);
            }
        }
    }
}

fn ends_run(event: &EventRecord) -> bool {
    matches!(&event.kind, EventKind::RunStatus { status, .. } if status.is_terminal())
}
