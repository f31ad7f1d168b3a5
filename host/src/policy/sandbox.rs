//! The wasmtime engine every policy runs in, and the bounds on one decision.
//!
//! One engine per process (the pooling allocator reserves its slots once). Each decision gets a
//! fresh instance from the pool with fuel (the deterministic CPU bound) and an epoch deadline
//! (the wall-clock backstop for anything fuel does not meter) set before instantiation, so even a
//! start function is bounded. An epoch ticker thread runs only while decisions are in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};
use std::time::Duration;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};

/// Fuel for one decision. The default policy uses a few hundred to about two thousand.
pub const FUEL_PER_DECISION: u64 = 100_000;
/// Wall-clock bound on one decision, in epoch ticks of [`EPOCH_TICK`]. Fuel is the real CPU
/// bound (it stops an endless loop in ~0.15 ms); this backstop only has to catch what fuel does
/// not meter, and must not fire when a loaded machine deschedules a healthy decision.
pub const DEADLINE_TICKS: u64 = 100;
/// Epoch tick period.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Largest linear memory a policy may have.
pub const MAX_MEMORY_BYTES: usize = 16 << 20;
/// Largest wasm stack a policy may use.
pub const MAX_WASM_STACK: usize = 256 << 10;
/// Largest table a policy may have.
pub const MAX_TABLE_ELEMENTS: usize = 10_000;
/// Decisions that can run at once (pool slots); one more waits for nothing and faults.
pub const POOL_SLOTS: u32 = 256;

/// Per-store data: the resource limits wasmtime enforces on growth and instantiation.
pub struct StoreState {
    limits: StoreLimits,
}

/// The shared engine plus the epoch ticker.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    ticker: Arc<Ticker>,
}

struct Ticker {
    active: Arc<AtomicUsize>,
    thread: Thread,
}

/// Keeps the epoch ticker running while a decision is in flight.
pub struct Running<'a>(&'a Ticker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Sandbox {
    /// The process-wide sandbox.
    pub fn shared() -> Result<&'static Sandbox, String> {
        static SHARED: OnceLock<Result<Sandbox, String>> = OnceLock::new();
        SHARED
            .get_or_init(Sandbox::new)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn new() -> Result<Sandbox, String> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(POOL_SLOTS)
            .total_memories(POOL_SLOTS)
            .total_tables(POOL_SLOTS)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(MAX_MEMORY_BYTES)
            .table_elements(MAX_TABLE_ELEMENTS)
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(4 << 10);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| format!("wasmtime engine: {e}"))?;
        let active = Arc::new(AtomicUsize::new(0));
        let (ticking, watched) = (engine.clone(), Arc::clone(&active));
        let thread = thread::Builder::new()
            .name("eb-policy-epoch".into())
            .spawn(move || tick(&ticking, &watched))
            .map_err(|e| format!("epoch ticker thread: {e}"))?
            .thread()
            .clone();
        Ok(Sandbox {
            engine,
            ticker: Arc::new(Ticker { active, thread }),
        })
    }

    /// The engine modules are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A fresh store with fuel, epoch deadline and resource limits set.
    pub fn store(&self) -> Result<Store<StoreState>, wasmtime::Error> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(MAX_MEMORY_BYTES)
            .table_elements(MAX_TABLE_ELEMENTS)
            .instances(1)
            .memories(1)
            .tables(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, StoreState { limits });
        store.limiter(|state| &mut state.limits);
        store.set_fuel(FUEL_PER_DECISION)?;
        store.set_epoch_deadline(DEADLINE_TICKS);
        store.epoch_deadline_trap();
        Ok(store)
    }

    /// Marks a decision as running so the epoch advances until the guard drops.
    pub fn running(&self) -> Running<'_> {
        if self.ticker.active.fetch_add(1, Ordering::AcqRel) == 0 {
            self.ticker.thread.unpark();
        }
        Running(&self.ticker)
    }
}

/// Advances the epoch every tick while decisions run; parks while none do (an `unpark` that
/// comes before the `park` is kept, so a decision starting in between is not missed).
fn tick(engine: &Engine, active: &AtomicUsize) {
    loop {
        if active.load(Ordering::Acquire) > 0 {
            thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
        } else {
            thread::park();
        }
    }
}
