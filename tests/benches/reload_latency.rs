//! Latency from saving a runbook file to its new version's event reaching a client of the
//! real daemon (`WatchDaemon` over the Unix socket). Goal: p95 under 200 ms.
//!
//! Run with `cargo build -p runbookd -p runbook-tui && cargo bench -p runbook-e2e --bench
//! reload_latency --profile dev` (the bench drives the binaries of that profile).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use runbook_e2e::{Daemon, block_on, save_by_rename};
use runbook_protocol::v1::WatchDaemonRequest;
use runbook_protocol::v1::daemon_event::Kind;

const SAVES: usize = 200;

fn runbook(n: usize) -> String {
    format!(
        "description = \"save {n}\"\n\n[[steps]]\nid = \"s\"\nuses = \"shell\"\nwith = {{ command = [\"true\"] }}\n"
    )
}

fn main() {
    let daemon = Daemon::start_process(&[("bench.toml", &runbook(0))], "");
    let path = daemon.runbooks.join("bench.toml");
    let mut latencies = block_on(async {
        let mut client = daemon.client().await;
        let mut stream = client
            .watch_daemon(WatchDaemonRequest {})
            .await
            .unwrap()
            .into_inner();
        let mut latencies = Vec::with_capacity(SAVES);
        for n in 1..=SAVES {
            let saved = Instant::now();
            save_by_rename(&path, &runbook(n));
            loop {
                let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .expect("a version event within 10 s")
                    .unwrap()
                    .unwrap();
                if let Some(Kind::VersionAdded(version)) = event.kind
                    && version.runbook == "bench"
                {
                    latencies.push(saved.elapsed());
                    break;
                }
            }
            // A pause between saves, as between an author's saves: each is its own burst.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies
    });
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!("save -> version event at a client, {SAVES} saves (debounce 50 ms)");
    println!("{:<8} {:>10}", "", "latency");
    for (label, value) in [
        ("min", latencies[0]),
        ("p50", at(0.50)),
        ("p95", at(0.95)),
        ("p99", at(0.99)),
        ("max", latencies[latencies.len() - 1]),
    ] {
        println!("{label:<8} {:>8.1}ms", value.as_secs_f64() * 1000.0);
    }
    let goal = Duration::from_millis(200);
    println!(
        "goal p95 < {}ms: {}",
        goal.as_millis(),
        if at(0.95) < goal { "met" } else { "missed" }
    );
}
