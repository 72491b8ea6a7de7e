//! The production clock, task spawner and randomness, on tokio and the OS. The
//! simulator replaces all three.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::env::{BoxFuture, Clock, Env, SeededRandom, Tasks};
use sluice_storage::file_disk::FileDisk;

use crate::tcp::TcpNetwork;

pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn wall_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
    fn sleep_blocking(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

pub struct TokioTasks;

impl Tasks for TokioTasks {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
    fn blocking(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        let handle = tokio::task::spawn_blocking(work);
        Box::pin(async move {
            let _ = handle.await;
        })
    }
}

/// The production environment: real TCP, real files under `data_dir`, tokio time.
pub fn production_env(data_dir: &str) -> Env {
    Env {
        clock: Arc::new(TokioClock::default()),
        net: Arc::new(TcpNetwork),
        disk: Arc::new(FileDisk::new(data_dir)),
        tasks: Arc::new(TokioTasks),
        // Seeded from the OS-keyed hasher: topic and cluster ids need not be secret.
        rng: Arc::new(SeededRandom::new(RandomState::new().hash_one(0u64))),
    }
}
