//! A node's clock in the simulator: simulated monotonic time, and a wall clock that
//! the nemesis can skew and jump.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use sluice_core::env::{BoxFuture, Clock};

pub struct SimClock {
    origin: tokio::time::Instant,
    /// Milliseconds added to the simulated wall clock (skew and jumps).
    skew_ms: Arc<AtomicI64>,
}

impl SimClock {
    pub fn new(skew_ms: Arc<AtomicI64>) -> Self {
        SimClock {
            origin: tokio::time::Instant::now(),
            skew_ms,
        }
    }
}

impl Clock for SimClock {
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn wall_ms(&self) -> i64 {
        let now = madsim::time::TimeHandle::current()
            .now_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        now + self.skew_ms.load(Ordering::Relaxed)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
    /// The simulator runs blocking work inline on its one thread, where simulated
    /// time cannot pass; a real sleep would tie the run to real time. The simulated
    /// broker sets no IO throttle, so nothing waits here.
    fn sleep_blocking(&self, _duration: Duration) {}
}
