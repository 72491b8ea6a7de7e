//! What the log-engine tests share.

use std::sync::Arc;

use sluice_core::env::{Env, SeededRandom};
use sluice_net::runtime::TokioClock;
use sluice_sim::env::InlineTasks;
use sluice_sim::SimDisk;

/// A real clock and network, the simulated disk, tasks run inline, seeded randomness.
pub fn env(disk: &SimDisk, seed: u64) -> Env {
    Env {
        clock: Arc::new(TokioClock::default()),
        net: Arc::new(sluice_net::tcp::TcpNetwork),
        disk: Arc::new(disk.clone()),
        tasks: Arc::new(InlineTasks),
        rng: Arc::new(SeededRandom::new(seed)),
    }
}
