//! What every run shares about a target: its circuit breaker (consecutive failures open it,
//! steps then fail fast until the cooldown ends, then one probe decides) and its rate limit
//! (a GCRA limiter from governor for a token bucket; a log of the last permits' instants for
//! a sliding window, which governor does not offer). The state lives in memory: a restarted daemon starts with
//! closed circuits and full buckets, which is what a fresh process should assume.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::runbook::target::RateKind;
use crate::runbook::{BreakerPolicy, RateLimit, Target};
use crate::store::now_ms;

/// Targets are defined per runbook; two runbooks may name different endpoints `api`.
type Key = (String, String);

/// The daemon-wide table of target state.
#[derive(Clone, Default)]
pub struct TargetGates {
    inner: Arc<Mutex<BTreeMap<Key, Arc<Gate>>>>,
}

/// One target's shared state.
struct Gate {
    runbook: String,
    name: String,
    state: Mutex<GateState>,
    limiter: Mutex<Option<(RateLimit, Limiter)>>,
}

/// A target's rate limiter, of the kind its limit asks for.
#[derive(Clone)]
enum Limiter {
    Bucket(Arc<DefaultDirectRateLimiter>),
    Window(Arc<SlidingWindow>),
}

impl Limiter {
    fn new(limit: &RateLimit) -> Self {
        match limit.kind {
            RateKind::Bucket { count, per, burst } => {
                Self::Bucket(Arc::new(RateLimiter::direct(quota(count, per, burst))))
            }
            RateKind::Window { max, window } => Self::Window(Arc::new(SlidingWindow {
                max: max as usize,
                window,
                granted: Mutex::new(VecDeque::new()),
            })),
        }
    }

    /// Takes a permit now, or says how long until one may be there.
    fn try_take(&self) -> Result<(), Duration> {
        match self {
            Self::Bucket(limiter) => limiter.check().map_err(|not_until| {
                let clock = governor::clock::DefaultClock::default();
                not_until.wait_time_from(governor::clock::Clock::now(&clock))
            }),
            Self::Window(window) => window.try_take(Instant::now()),
        }
    }
}

/// At most `max` permits in any span of `window`: the instants of the permits still inside
/// the window, oldest first. Never more than `max` of them (bounded by the runbook's limit,
/// itself at most [`crate::runbook::target::MAX_WINDOW_REQUESTS`]).
struct SlidingWindow {
    max: usize,
    window: Duration,
    granted: Mutex<VecDeque<Instant>>,
}

impl SlidingWindow {
    fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut granted = lock(&self.granted);
        while granted
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.window)
        {
            granted.pop_front();
        }
        match granted.front() {
            Some(oldest) if granted.len() >= self.max => {
                // The next permit is there when the oldest one leaves the window.
                Err(self.window - now.saturating_duration_since(*oldest))
            }
            _ => {
                granted.push_back(now);
                Ok(())
            }
        }
    }
}

#[derive(Default)]
struct GateState {
    url: String,
    breaker: Option<BreakerPolicy>,
    consecutive_failures: u32,
    /// Unix ms until which the circuit is open; 0 when closed.
    open_until: i64,
    /// A probe is out after the cooldown; others fail fast until it returns.
    probing: bool,
    attempts: u64,
    rejected: u64,
}

/// The circuit's state as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

/// A target's state for `runbook targets`.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    pub runbook: String,
    pub name: String,
    pub url: String,
    pub circuit: Circuit,
    pub consecutive_failures: u32,
    pub failure_threshold: u32,
    pub open_until: i64,
    pub rate_limit: Option<RateLimit>,
    pub attempts: u64,
    pub rejected: u64,
}

/// Why an attempt may not go now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    pub message: String,
    /// When a probe may go.
    pub retry_after: Duration,
}

/// One admitted attempt against a target. Its verdict goes to the circuit breaker through
/// [`Admission::record`]; an admission dropped without one (the step was cancelled, timed
/// out, its plugin crashed, the engine returned early) releases the circuit's probe if it was
/// the probe, so that the next attempt may probe instead of failing fast forever.
#[must_use = "an attempt's verdict is recorded through its admission"]
pub struct Admission {
    gate: Option<Arc<Gate>>,
    probe: bool,
}

impl Admission {
    /// The admission of a step that calls no target.
    pub fn untargeted() -> Self {
        Self {
            gate: None,
            probe: false,
        }
    }

    /// Tells the target's circuit breaker how the attempt went.
    pub fn record(mut self, verdict: Verdict) {
        if let Some(gate) = self.gate.take() {
            gate.record(verdict);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take()
            && self.probe
        {
            lock(&gate.state).probing = false;
        }
    }
}

/// How an attempt against a target ended, for its breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target answered (a 4xx included: it is up).
    Healthy,
    /// The target failed (refused, timed out, 5xx).
    Unhealthy,
}

impl TargetGates {
    /// Lets one attempt of a step against `target` of `runbook` go, or refuses it because the
    /// circuit is open. `url` is the target's rendered base URL.
    pub fn admit(
        &self,
        runbook: &str,
        target: &Target,
        url: &str,
    ) -> Result<Admission, CircuitOpen> {
        let gate = self.gate(runbook, target);
        let mut state = lock(&gate.state);
        state.url = url.to_owned();
        state.breaker = target.circuit_breaker;
        state.attempts += 1;
        let admitted = |probe| Admission {
            gate: Some(gate.clone()),
            probe,
        };
        let Some(policy) = state.breaker else {
            return Ok(admitted(false));
        };
        let now = now_ms();
        if state.open_until == 0 {
            return Ok(admitted(false));
        }
        if now < state.open_until || state.probing {
            state.rejected += 1;
            let wait = if now < state.open_until {
                Duration::from_millis(u64::try_from(state.open_until - now).unwrap_or(0))
            } else {
                // The probe decides soon; look again after a fraction of the cooldown.
                policy.cooldown / 4
            };
            return Err(CircuitOpen {
                message: format!(
                    "circuit open for target `{}` after {} consecutive failures; {}",
                    target.name,
                    state.consecutive_failures,
                    if state.probing {
                        "a probe is deciding whether it closes".to_owned()
                    } else {
                        format!(
                            "the next probe may go in {}",
                            humantime::format_duration(round_to_ms(wait))
                        )
                    }
                ),
                retry_after: wait,
            });
        }
        // The cooldown is over: this attempt is the probe.
        state.probing = true;
        Ok(admitted(true))
    }

    /// Takes a rate-limit permit of `target` if one is there (or it has no limit): `None`.
    /// Otherwise the wait for the next one, which the caller records before it waits.
    pub fn permit(&self, runbook: &str, target: &Target) -> Option<PermitWaiter> {
        let limit = target.rate_limit.as_ref()?;
        let gate = self.gate(runbook, target);
        let limiter = {
            let mut slot = lock(&gate.limiter);
            match &*slot {
                Some((current, limiter)) if current == limit => limiter.clone(),
                _ => {
                    let limiter = Limiter::new(limit);
                    *slot = Some((limit.clone(), limiter.clone()));
                    limiter
                }
            }
        };
        let wait = limiter.try_take().err()?;
        Some(PermitWaiter { wait, limiter })
    }

    /// Every target steps have used since the daemon started.
    pub fn list(&self) -> Vec<TargetStatus> {
        let gates: Vec<Arc<Gate>> = lock(&self.inner).values().cloned().collect();
        let now = now_ms();
        gates
            .iter()
            .map(|gate| {
                let state = lock(&gate.state);
                let circuit = if state.open_until == 0 {
                    Circuit::Closed
                } else if now < state.open_until {
                    Circuit::Open
                } else {
                    Circuit::HalfOpen
                };
                TargetStatus {
                    runbook: gate.runbook.clone(),
                    name: gate.name.clone(),
                    url: state.url.clone(),
                    circuit,
                    consecutive_failures: state.consecutive_failures,
                    failure_threshold: state.breaker.map_or(0, |policy| policy.failures),
                    open_until: state.open_until,
                    rate_limit: lock(&gate.limiter).as_ref().map(|(limit, _)| limit.clone()),
                    attempts: state.attempts,
                    rejected: state.rejected,
                }
            })
            .collect()
    }

    fn gate(&self, runbook: &str, target: &Target) -> Arc<Gate> {
        lock(&self.inner)
            .entry((runbook.to_owned(), target.name.clone()))
            .or_insert_with(|| {
                Arc::new(Gate {
                    runbook: runbook.to_owned(),
                    name: target.name.clone(),
                    state: Mutex::new(GateState::default()),
                    limiter: Mutex::new(None),
                })
            })
            .clone()
    }
}

impl Gate {
    /// Records how an admitted attempt ended.
    fn record(&self, verdict: Verdict) {
        let mut state = lock(&self.state);
        let Some(policy) = state.breaker else {
            return;
        };
        state.probing = false;
        match verdict {
            Verdict::Healthy => {
                state.consecutive_failures = 0;
                state.open_until = 0;
            }
            Verdict::Unhealthy => {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                if state.consecutive_failures >= policy.failures {
                    let cooldown = i64::try_from(policy.cooldown.as_millis()).unwrap_or(i64::MAX);
                    state.open_until = now_ms().saturating_add(cooldown);
                    tracing::warn!(
                        runbook = %self.runbook,
                        target = %self.name,
                        failures = state.consecutive_failures,
                        "circuit opened"
                    );
                }
            }
        }
    }
}

/// `count` per `per` at a steady pace, `burst` at once after a quiet spell.
fn quota(count: u32, per: Duration, burst: u32) -> Quota {
    let interval = (per / count.max(1)).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(interval)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

fn round_to_ms(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A step's wait for a rate-limit permit that was not there at once.
pub struct PermitWaiter {
    /// How long until the next permit, as the limiter saw it when asked.
    pub wait: Duration,
    limiter: Limiter,
}

impl PermitWaiter {
    /// Waits until the permit is there, and takes it. Other steps may take the permit this
    /// one waited for: it then waits for the next.
    pub async fn ready(self) {
        let mut wait = self.wait;
        loop {
            tokio::time::sleep(wait).await;
            match self.limiter.try_take() {
                Ok(()) => return,
                Err(next) => wait = next,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(failures: u32, cooldown_ms: u64) -> Target {
        Target {
            name: "api".into(),
            url: "http://127.0.0.1:1".into(),
            headers: serde_json::json!({}),
            auth: None,
            timeout: None,
            retry: None,
            rate_limit: None,
            circuit_breaker: Some(BreakerPolicy {
                failures,
                cooldown: Duration::from_millis(cooldown_ms),
            }),
        }
    }

    #[test]
    fn opens_after_the_threshold_and_a_probe_closes_it() {
        let gates = TargetGates::default();
        let api = target(2, 50);
        for _ in 0..2 {
            let admission = gates.admit("rb", &api, &api.url).expect("closed");
            admission.record(Verdict::Unhealthy);
        }
        let open = gates.admit("rb", &api, &api.url).err().expect("open");
        assert!(open.message.contains("circuit open"), "{}", open.message);
        assert_eq!(gates.list()[0].circuit, Circuit::Open);
        std::thread::sleep(Duration::from_millis(60));
        let probe = gates.admit("rb", &api, &api.url).expect("the probe goes");
        assert!(
            gates.admit("rb", &api, &api.url).is_err(),
            "one probe at a time"
        );
        probe.record(Verdict::Healthy);
        drop(gates.admit("rb", &api, &api.url).expect("closed again"));
        assert_eq!(gates.list()[0].circuit, Circuit::Closed);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let gates = TargetGates::default();
        let api = target(1, 30);
        let first = gates.admit("rb", &api, &api.url).expect("closed");
        first.record(Verdict::Unhealthy);
        std::thread::sleep(Duration::from_millis(40));
        let probe = gates.admit("rb", &api, &api.url).expect("probe");
        probe.record(Verdict::Unhealthy);
        assert!(gates.admit("rb", &api, &api.url).is_err());
    }

    #[test]
    fn a_probe_that_never_reports_is_released() {
        let gates = TargetGates::default();
        let api = target(1, 30);
        let first = gates.admit("rb", &api, &api.url).expect("closed");
        first.record(Verdict::Unhealthy);
        std::thread::sleep(Duration::from_millis(40));
        // Cancelled, timed out or crashed: the probe's admission is dropped unrecorded.
        drop(gates.admit("rb", &api, &api.url).expect("probe"));
        let next = gates.admit("rb", &api, &api.url);
        assert!(
            next.is_ok(),
            "the next attempt probes instead of failing fast"
        );
        assert_eq!(gates.list()[0].rejected, 0);
    }

    #[test]
    fn targets_of_different_runbooks_are_apart() {
        let gates = TargetGates::default();
        let api = target(1, 60_000);
        let first = gates.admit("a", &api, &api.url).expect("closed");
        first.record(Verdict::Unhealthy);
        assert!(gates.admit("a", &api, &api.url).is_err());
        assert!(gates.admit("b", &api, &api.url).is_ok());
    }

    #[test]
    fn a_sliding_window_counts_every_permit_inside_it() {
        let window = SlidingWindow {
            max: 3,
            window: Duration::from_secs(60),
            granted: Mutex::new(VecDeque::new()),
        };
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        // Three may go at once: a window, unlike a bucket, does not pace them.
        for ms in [0, 1, 2] {
            assert_eq!(window.try_take(at(ms)), Ok(()));
        }
        // The fourth waits until the first leaves the window, whenever it asks.
        assert_eq!(window.try_take(at(10)), Err(Duration::from_millis(59_990)));
        assert_eq!(window.try_take(at(30_000)), Err(Duration::from_secs(30)));
        assert_eq!(window.try_take(at(60_000)), Ok(()));
        // The second and third are still inside, with the one just taken.
        assert_eq!(window.try_take(at(60_000)), Err(Duration::from_millis(1)));
        assert_eq!(
            lock(&window.granted).len(),
            3,
            "never more than max remembered"
        );
        // Past them, both are forgotten.
        assert_eq!(window.try_take(at(60_002)), Ok(()));
        assert_eq!(lock(&window.granted).len(), 2);
    }

    #[tokio::test]
    async fn a_window_limit_admits_max_then_makes_the_next_wait() {
        let gates = TargetGates::default();
        let mut api = target(1, 1);
        api.circuit_breaker = None;
        api.rate_limit = Some(RateLimit::window(2, Duration::from_millis(200)).expect("valid"));
        assert!(gates.permit("rb", &api).is_none());
        assert!(gates.permit("rb", &api).is_none());
        let waiter = gates.permit("rb", &api).expect("the third waits");
        assert!(
            waiter.wait > Duration::from_millis(100),
            "{:?}",
            waiter.wait
        );
        let started = Instant::now();
        waiter.ready().await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        let listed = gates.list();
        assert_eq!(
            listed[0]
                .rate_limit
                .as_ref()
                .map(|limit| limit.text.as_str()),
            Some("2 per 200ms")
        );
    }
}
