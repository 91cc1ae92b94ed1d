//! The daemon's metrics: counters and histograms kept as things happen (transitions, plugin
//! calls, gRPC requests, publications), gauges read at scrape time (active runs, steps in
//! flight, approvals waiting, circuits, store size). One registry, written out in the
//! OpenMetrics text format by `prometheus-client`; the same figures feed `runbook status`.
//!
//! Labels are bounded: runbook names, step kinds, target names and gRPC methods are sets the
//! operator controls (the catalog, the plugins, the API), statuses are enums; no run id, step
//! id or free text ever becomes a label.

pub mod classic;
pub mod grpc;
pub mod http;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::engine::status_label;
use crate::store::{Changes, EventKind, RunRecord, StepStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunbookLabels {
    runbook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunEndLabels {
    runbook: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepEndLabels {
    kind: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    runbook: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCallLabels {
    kind: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// What the gauges show, read from the engine and the store when metrics are asked for.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub active_runs: u64,
    pub steps_in_flight: u64,
    pub approvals_waiting: u64,
    pub store_bytes: u64,
    /// Per target (runbook, target): 0 closed, 1 half-open, 2 open.
    pub circuits: Vec<(String, String, i64)>,
}

/// The counters as `runbook status` shows them, without Prometheus.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub runs_started: u64,
    /// Ended runs by final status.
    pub runs_finished: Vec<(String, u64)>,
    /// Ended step attempts by final status.
    pub steps_finished: Vec<(String, u64)>,
    pub step_attempts: u64,
    pub step_retries: u64,
    pub step_timeouts: u64,
    pub rate_limit_waits: u64,
}

/// A cloneable handle to the daemon's metrics.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    runs_started: Family<RunbookLabels, Counter>,
    runs_finished: Family<RunEndLabels, Counter>,
    steps: Family<StepEndLabels, Counter>,
    step_duration: Family<StepEndLabels, Histogram>,
    attempts: Family<KindLabels, Counter>,
    retries: Family<KindLabels, Counter>,
    timeouts: Family<KindLabels, Counter>,
    approvals_waiting: Gauge,
    approval_wait: Histogram,
    circuit_state: Family<TargetLabels, Gauge>,
    rate_limit_waits: Family<TargetLabels, Counter>,
    rate_limit_wait_seconds: Family<TargetLabels, Counter<f64>>,
    active_runs: Gauge,
    steps_in_flight: Gauge,
    plugin_calls: Family<PluginCallLabels, Histogram>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_duration: Family<MethodLabels, Histogram>,
    store_bytes: Gauge,
    publish_lag: Histogram,
    /// The counters without their labels, for [`Metrics::summary`].
    totals: std::sync::Mutex<Summary>,
}

/// Step attempts: 5 ms to about 22 minutes.
fn step_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 4.0, 10))
}

/// Plugin calls: 100 µs to about 26 s.
fn plugin_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// gRPC requests, to their response's headers: 500 µs to about 33 s.
fn grpc_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 4.0, 9))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("runbook");
        let inner = Inner {
            runs_started: Family::default(),
            runs_finished: Family::default(),
            steps: Family::default(),
            step_duration: Family::new_with_constructor(step_buckets),
            attempts: Family::default(),
            retries: Family::default(),
            timeouts: Family::default(),
            approvals_waiting: Gauge::default(),
            // One second to about 4.5 hours.
            approval_wait: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            circuit_state: Family::default(),
            rate_limit_waits: Family::default(),
            rate_limit_wait_seconds: Family::default(),
            active_runs: Gauge::default(),
            steps_in_flight: Gauge::default(),
            plugin_calls: Family::new_with_constructor(plugin_buckets),
            grpc_requests: Family::default(),
            grpc_duration: Family::new_with_constructor(grpc_buckets),
            store_bytes: Gauge::default(),
            // One millisecond to about 4 seconds.
            publish_lag: Histogram::new(exponential_buckets(0.001, 2.0, 13)),
            registry: Registry::default(),
            totals: std::sync::Mutex::default(),
        };
        let r = &mut registry;
        r.register(
            "runs_started",
            "Runs started, by runbook",
            inner.runs_started.clone(),
        );
        r.register(
            "runs_finished",
            "Runs that ended, by runbook and final status",
            inner.runs_finished.clone(),
        );
        r.register(
            "steps",
            "Steps that reached a final status, by step kind and status (completed, failed, timed_out, cancelled, skipped, ambiguous)",
            inner.steps.clone(),
        );
        r.register_with_unit(
            "step_duration",
            "Duration of the last attempt of steps that ended, from its start to its end, by step kind and status",
            Unit::Seconds,
            inner.step_duration.clone(),
        );
        r.register(
            "step_attempts",
            "Step attempts started, by step kind",
            inner.attempts.clone(),
        );
        r.register(
            "step_retries",
            "Failed step attempts that the step's retry policy tries again, by step kind",
            inner.retries.clone(),
        );
        r.register(
            "step_timeouts",
            "Step attempts that ran out of time, by step kind",
            inner.timeouts.clone(),
        );
        r.register(
            "approvals_waiting",
            "Steps waiting for an operator's approval",
            inner.approvals_waiting.clone(),
        );
        r.register_with_unit(
            "approval_wait",
            "Time from an approval request to the operator's decision",
            Unit::Seconds,
            inner.approval_wait.clone(),
        );
        r.register(
            "target_circuit_state",
            "Circuit breaker of each target steps used: 0 closed, 1 half-open, 2 open",
            inner.circuit_state.clone(),
        );
        r.register(
            "rate_limit_waits",
            "Step attempts that waited for a rate-limit permit of their target",
            inner.rate_limit_waits.clone(),
        );
        r.register_with_unit(
            "rate_limit_wait",
            "Time step attempts were told to wait for rate-limit permits, by target",
            Unit::Seconds,
            inner.rate_limit_wait_seconds.clone(),
        );
        r.register(
            "active_runs",
            "Runs with work in progress in this daemon",
            inner.active_runs.clone(),
        );
        r.register(
            "steps_in_flight",
            "Steps running now",
            inner.steps_in_flight.clone(),
        );
        r.register_with_unit(
            "plugin_call_duration",
            "Duration of plugin calls, by step kind and function (describe, validate, plan, execute, resume)",
            Unit::Seconds,
            inner.plugin_calls.clone(),
        );
        r.register(
            "grpc_requests",
            "gRPC requests answered, by method and status code",
            inner.grpc_requests.clone(),
        );
        r.register_with_unit(
            "grpc_request_duration",
            "Time from a gRPC request to its response's headers (for a stream: to its start), by method",
            Unit::Seconds,
            inner.grpc_duration.clone(),
        );
        r.register_with_unit(
            "store_size",
            "Size of the store's files on disk",
            Unit::Bytes,
            inner.store_bytes.clone(),
        );
        r.register_with_unit(
            "event_publish_lag",
            "Time from a run's events being stored to their publication to watchers (after the flush that makes them durable)",
            Unit::Seconds,
            inner.publish_lag.clone(),
        );
        Self {
            inner: Arc::new(Inner { registry, ..inner }),
        }
    }

    /// Counts what a committed transition of `run` says: runs started and ended, attempts
    /// started, retried and ended (with their duration), rate-limit waits. `changes` names
    /// the step records the transition changed: an event's step is among them.
    pub fn observe_transition(&self, run: &RunRecord, changes: &Changes, events: &[EventKind]) {
        let m = &self.inner;
        let step_of = |id: &str| {
            changes
                .steps
                .iter()
                .filter_map(|&position| run.steps.get(position))
                .find(|step| step.id == id)
        };
        for event in events {
            match event {
                EventKind::RunStatus { status, .. } if status.is_terminal() => {
                    count(&mut lock(&m.totals).runs_finished, &status_label(*status));
                    m.runs_finished
                        .get_or_create(&RunEndLabels {
                            runbook: run.runbook.clone(),
                            status: status_label(*status),
                        })
                        .inc();
                }
                EventKind::StepStatus {
                    step_id, status, ..
                } => {
                    let Some(step) = step_of(step_id) else {
                        continue;
                    };
                    let kind = KindLabels {
                        kind: step.uses.clone(),
                    };
                    match status {
                        StepStatus::Running => {
                            lock(&m.totals).step_attempts += 1;
                            m.attempts.get_or_create(&kind).inc();
                        }
                        status if status.is_terminal() || *status == StepStatus::Ambiguous => {
                            let labels = StepEndLabels {
                                kind: step.uses.clone(),
                                status: status_label(*status).to_owned(),
                            };
                            m.steps.get_or_create(&labels).inc();
                            count(&mut lock(&m.totals).steps_finished, &labels.status);
                            if step.started_at > 0 && step.finished_at >= step.started_at {
                                let ms = step.finished_at - step.started_at;
                                m.step_duration
                                    .get_or_create(&labels)
                                    .observe(ms as f64 / 1000.0);
                            }
                            if *status == StepStatus::TimedOut {
                                lock(&m.totals).step_timeouts += 1;
                                m.timeouts.get_or_create(&kind).inc();
                            }
                        }
                        _ => {}
                    }
                }
                EventKind::StepRetrying { step_id, .. } => {
                    if let Some(step) = step_of(step_id) {
                        lock(&m.totals).step_retries += 1;
                        m.retries
                            .get_or_create(&KindLabels {
                                kind: step.uses.clone(),
                            })
                            .inc();
                    }
                }
                EventKind::StepPermitWait { wait, .. } => {
                    let labels = TargetLabels {
                        runbook: run.runbook.clone(),
                        target: wait.target.clone(),
                    };
                    lock(&m.totals).rate_limit_waits += 1;
                    m.rate_limit_waits.get_or_create(&labels).inc();
                    let waited_ms = (wait.until - crate::store::now_ms()).max(0);
                    m.rate_limit_wait_seconds
                        .get_or_create(&labels)
                        .inc_by(waited_ms as f64 / 1000.0);
                }
                _ => {}
            }
        }
    }

    /// Counts a run that was created (its first transition is its creation).
    pub fn run_started(&self, runbook: &str) {
        lock(&self.inner.totals).runs_started += 1;
        self.inner
            .runs_started
            .get_or_create(&RunbookLabels {
                runbook: runbook.to_owned(),
            })
            .inc();
    }

    /// Records how long an approval waited for its decision.
    pub fn approval_decided(&self, waited: Duration) {
        self.inner.approval_wait.observe(waited.as_secs_f64());
    }

    /// Records one plugin call.
    pub fn plugin_call(&self, kind: &str, function: &str, took: Duration) {
        self.inner
            .plugin_calls
            .get_or_create(&PluginCallLabels {
                kind: kind.to_owned(),
                function: function.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records one gRPC request's end (its code) and, separately, its time to headers.
    pub fn grpc_ended(&self, method: &str, code: &str) {
        self.inner
            .grpc_requests
            .get_or_create(&GrpcLabels {
                method: method.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    pub fn grpc_answered(&self, method: &str, took: Duration) {
        self.inner
            .grpc_duration
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records how long stored events waited to be published.
    pub fn published(&self, lag: Duration) {
        self.inner.publish_lag.observe(lag.as_secs_f64());
    }

    /// The registry in the OpenMetrics text format, gauges set from `snapshot`.
    pub fn encode(&self, snapshot: &Snapshot) -> String {
        let m = &self.inner;
        m.active_runs.set(gauge(snapshot.active_runs));
        m.steps_in_flight.set(gauge(snapshot.steps_in_flight));
        m.approvals_waiting.set(gauge(snapshot.approvals_waiting));
        m.store_bytes.set(gauge(snapshot.store_bytes));
        // Targets come and go with the runbooks that name them.
        m.circuit_state.clear();
        for (runbook, target, state) in &snapshot.circuits {
            m.circuit_state
                .get_or_create(&TargetLabels {
                    runbook: runbook.clone(),
                    target: target.clone(),
                })
                .set(*state);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &m.registry);
        text
    }

    /// The counters, summed over their labels, for `runbook status`.
    pub fn summary(&self) -> Summary {
        lock(&self.inner.totals).clone()
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Adds one to the count of `key` in a short sorted list.
fn count(list: &mut Vec<(String, u64)>, key: &str) {
    match list.binary_search_by(|(name, _)| name.as_str().cmp(key)) {
        Ok(found) => list[found].1 += 1,
        Err(at) => list.insert(at, (key.to_owned(), 1)),
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
