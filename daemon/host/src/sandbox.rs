//! The limits every plugin call runs under: a memory cap (with the hit recorded, because the
//! guest only sees a failed allocation and traps with `unreachable`), a CPU budget counted in
//! epoch ticks that the guest spends running (not waiting in host calls), and the wall clock.

use std::time::Duration;

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

/// How often the epoch advances; the granularity of the CPU budget.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits applied to every call into a plugin.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory one plugin instance may grow to.
    pub memory_bytes: usize,
    /// Time the guest itself may compute during one call.
    pub cpu: Duration,
    /// Wall-clock limit of calls other than `execute` (whose limit is the step's timeout).
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            cpu: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// Per-call accounting kept in the store.
#[derive(Debug, Default)]
pub struct Meter {
    memory_cap: usize,
    memory_hit: bool,
    cpu_ticks: u64,
    cpu_budget_ticks: u64,
    cpu_hit: bool,
}

impl Meter {
    pub fn new(limits: &Limits) -> Self {
        let tick = EPOCH_TICK.as_millis().max(1);
        Self {
            memory_cap: limits.memory_bytes,
            cpu_budget_ticks: u64::try_from(limits.cpu.as_millis() / tick)
                .unwrap_or(u64::MAX)
                .max(1),
            ..Self::default()
        }
    }

    /// Which limit, if any, ended the call.
    pub fn limit_hit(&self) -> Option<LimitHit> {
        if self.memory_hit {
            Some(LimitHit::Memory(self.memory_cap))
        } else if self.cpu_hit {
            Some(LimitHit::Cpu)
        } else {
            None
        }
    }
}

/// A limit that stopped a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Memory(usize),
    Cpu,
}

impl ResourceLimiter for Meter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Something that owns a [`Meter`] inside a store's data.
pub trait Metered: Send + 'static {
    fn meter(&mut self) -> &mut Meter;
}

/// Installs the memory limiter and the CPU budget on a fresh store.
pub fn install<T: Metered>(store: &mut Store<T>) {
    store.limiter(|data| data.meter());
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let meter = ctx.data_mut().meter();
        meter.cpu_ticks += 1;
        if meter.cpu_ticks > meter.cpu_budget_ticks {
            meter.cpu_hit = true;
            return Err(wasmtime::Error::msg("cpu budget exhausted"));
        }
        // Yielding on every tick keeps a busy guest from starving the daemon's other tasks.
        Ok(UpdateDeadline::Yield(1))
    });
}
