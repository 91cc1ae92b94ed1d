//! Back-pressure between a chatty step and a slow watcher: nothing on the way queues event
//! bodies for the watcher (the bus carries "durable up to" signals, the watcher reads the
//! store a page at a time and waits for its client), so the daemon's memory does not follow
//! the watcher's lag, the watcher still gets every event in order, and the daemon keeps
//! answering.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runbook_protocol::v1 as pb;

/// The daemon's peak resident memory so far, in KiB.
#[test]
fn a_slow_watcher_of_a_chatty_step_gets_every_event_in_order_and_the_daemon_stays_bounded() {
    // A budget this large stores 16 MiB of the output as it comes (256 events of 64 KiB) and
    // 16 MiB more at the end, so that the watcher has far more to read than it keeps up with.
    const BUDGET: u64 = 32 * 1024 * 1024;
    const PRINTED: u64 = 64 * 1024 * 1024;
    let (daemon, pid) = runbook_e2e::chatty_daemon(PRINTED, BUDGET);
    let idle = runbook_e2e::peak_rss_kib(pid);
    let run = daemon.start_run("chatty", &[]);

    // While the watcher lags, `status` keeps answering: the CLI gives up after 3 s.
    let watching = Arc::new(AtomicBool::new(true));
    let prober = {
        let watching = Arc::clone(&watching);
        let mut status = daemon.cli_command(&["status"]);
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            while watching.load(Ordering::Relaxed) {
                let started = Instant::now();
                let out = status.output().unwrap();
                assert!(out.status.success(), "status during the flood: {out:?}");
                slowest = slowest.max(started.elapsed());
                // Pacing only: each answer is awaited above.
                std::thread::sleep(Duration::from_millis(100));
            }
            slowest
        })
    };

    // Four clients that each take 10 ms per event fall far behind the step (it prints its
    // 64 MiB in a few seconds).
    let watch = || async {
        let mut client = daemon.client().await;
        let mut stream = client
            .watch_run(pb::WatchRunRequest {
                id: run.clone(),
                after_seq: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut kinds = Vec::new();
        while let Some(event) = stream.message().await.unwrap() {
            assert_eq!(
                event.seq,
                kinds.len() as u64 + 1,
                "the watcher's events have a gap or are out of order"
            );
            kinds.push(format!("{:?}", event.kind));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        kinds
    };
    let (slow, second, third, fourth) =
        runbook_e2e::block_on(async { tokio::join!(watch(), watch(), watch(), watch()) });
    let watched = [second, third, fourth];
    assert!(
        watched.iter().all(|other| *other == slow),
        "the watchers got different events"
    );
    watching.store(false, Ordering::Relaxed);
    let slowest = prober.join().unwrap();

    let shown = daemon.json(&["show", &run]);
    assert_eq!(shown["status"], "completed", "{shown:#}");
    // Read again at full speed: the slow watcher got exactly what is stored, in order.
    let stored = daemon.events(&run);
    assert_eq!(slow.len(), stored.len(), "the slow watcher missed events");
    assert!(
        slow == stored,
        "the slow watcher's events differ from the stored ones"
    );
    let outputs: Vec<&String> = slow
        .iter()
        .filter(|kind| kind.contains("StepOutput"))
        .collect();
    assert!(
        outputs.len() > 256,
        "only {} output events: the watcher had little to read",
        outputs.len()
    );
    assert!(outputs[0].contains("line: \"first"), "{}", outputs[0]);
    assert!(
        outputs[outputs.len() - 1].ends_with("\\nlast\" }))"),
        "{}",
        outputs[outputs.len() - 1]
    );

    // What the daemon holds grows with the output budget (the tail it keeps, what sled
    // buffers of what it writes: about 120 MiB here, the same with clients that keep up), not
    // with what the watchers have yet to read. Queues of event bodies would add that: a bus
    // of 4096 events kept for the slowest watcher (all 500 events of 64 KiB, 32 MiB) and
    // 256 events buffered per watcher (16 MiB each, 64 MiB for four).
    let peak = runbook_e2e::peak_rss_kib(pid);
    eprintln!(
        "idle peak {idle} KiB, peak {peak} KiB, {} events, slowest status {slowest:?}",
        slow.len()
    );
    assert!(
        peak.saturating_sub(idle) < 150 * 1024,
        "the daemon grew from {idle} KiB to {peak} KiB"
    );
}
