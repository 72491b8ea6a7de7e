//! Deterministic pieces of a simulated `Env`: inline blocking work. (Seeded
//! randomness is `sluice_core::env::SeededRandom`.)

use sluice_core::env::{BoxFuture, Tasks};

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
