//! Paces replication traffic to a byte rate (Kafka's `leader.replication.throttled.rate`
//! and `follower.replication.throttled.rate`), so a reassignment's catch-up leaves
//! bandwidth to clients.

use std::time::Duration;

/// Each transfer reserves its share of time after the ones before it; the caller waits
/// until that share has passed. Idle time is not saved up as a burst.
#[derive(Debug, Default)]
pub struct Throttle {
    free_at: Duration,
}

impl Throttle {
    /// How long to wait after moving `bytes` at `now` to stay within `rate` bytes/s.
    pub fn delay(&mut self, now: Duration, bytes: u64, rate: u64) -> Duration {
        if rate == 0 || bytes == 0 {
            return Duration::ZERO;
        }
        let start = self.free_at.max(now);
        self.free_at = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
        self.free_at - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_are_paced_to_the_rate_and_idle_time_is_no_credit() {
        let mut t = Throttle::default();
        let s = Duration::from_secs;
        assert_eq!(t.delay(s(10), 1000, 1000), s(1));
        // A second transfer right away queues behind the first.
        assert_eq!(t.delay(s(10), 500, 1000), Duration::from_millis(1500));
        // After a long idle spell, a transfer waits its own share only.
        assert_eq!(t.delay(s(100), 2000, 1000), s(2));
        assert_eq!(t.delay(s(100), 0, 1000), Duration::ZERO);
    }
}
