//! Deterministic pieces of a simulated `Env`: inline blocking work and seeded
//! randomness.

use std::sync::atomic::{AtomicU64, Ordering};

use sluice_core::env::{BoxFuture, Random, Tasks};

/// Spawns on the current runtime (madsim's under `cfg(madsim)`) and runs blocking
/// work inline, so no thread escapes the simulation.
pub struct InlineTasks;

impl Tasks for InlineTasks {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
    fn blocking(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        work();
        Box::pin(async {})
    }
}

/// splitmix64 from a seed.
pub struct SeededRandom(AtomicU64);

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        SeededRandom(AtomicU64::new(seed))
    }
}

impl Random for SeededRandom {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
