//! The production clock, task spawner and randomness, on tokio and the OS. The
//! simulator replaces all three.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::env::{BoxFuture, Clock, Env, Random, Tasks};
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

/// splitmix64 seeded from the OS-keyed hasher: fast, and not for cryptography.
pub struct OsRandom(AtomicU64);

impl Default for OsRandom {
    fn default() -> Self {
        OsRandom(AtomicU64::new(RandomState::new().hash_one(0u64)))
    }
}

impl Random for OsRandom {
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

/// The production environment: real TCP, real files under `data_dir`, tokio time.
pub fn production_env(data_dir: &str) -> Env {
    Env {
        clock: Arc::new(TokioClock::default()),
        net: Arc::new(TcpNetwork),
        disk: Arc::new(FileDisk::new(data_dir)),
        tasks: Arc::new(TokioTasks),
        rng: Arc::new(OsRandom::default()),
    }
}
