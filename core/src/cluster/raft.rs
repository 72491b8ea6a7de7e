//! openraft's types for the metadata quorum, and its runtime over our `tokio` seam:
//! real tokio in production, madsim's deterministic executor, clock and seeded RNG in
//! the simulator. openraft's own `TokioRuntime` would reach real tokio and the
//! unseeded `thread_rng`, both of which escape the simulation.

use std::fmt;
use std::future::Future;
use std::io::Cursor;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend};

use super::metadata::{Applied, Command, MetadataError};

openraft::declare_raft_types!(
    /// The metadata quorum's types: commands in, outcomes out.
    pub MetadataRaft:
        D = Command,
        R = Result<Applied, MetadataError>,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = EnvRuntime,
);

/// The runtime: spawn, sleep and timeouts from our `tokio` (madsim's under `cfg(madsim)`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvRuntime;

/// A point in the runtime's monotonic time (madsim's virtual time in the simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuntimeInstant(tokio::time::Instant);

impl Add<Duration> for RuntimeInstant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        RuntimeInstant(self.0 + d)
    }
}
impl AddAssign<Duration> for RuntimeInstant {
    fn add_assign(&mut self, d: Duration) {
        self.0 += d;
    }
}
impl Sub<Duration> for RuntimeInstant {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        RuntimeInstant(self.0 - d)
    }
}
impl Sub<RuntimeInstant> for RuntimeInstant {
    type Output = Duration;
    fn sub(self, other: RuntimeInstant) -> Duration {
        self.0.saturating_duration_since(other.0)
    }
}
impl SubAssign<Duration> for RuntimeInstant {
    fn sub_assign(&mut self, d: Duration) {
        self.0 -= d;
    }
}
impl openraft::Instant for RuntimeInstant {
    fn now() -> Self {
        RuntimeInstant(tokio::time::Instant::now())
    }
}

/// A timeout as a named future (openraft names the type).
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// The future did not finish in time.
#[derive(Debug)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl<R, F: Future<Output = R>> Future for Timeout<F> {
    type Output = Result<R, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(r) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        self.sleep.as_mut().poll(cx).map(|()| Err(Elapsed))
    }
}

/// A sleep that is `Sync` (openraft requires it) by boxing the runtime's.
pub struct Sleep(Pin<Box<tokio::time::Sleep>>);

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

pub struct OneshotSender<T>(tokio::sync::oneshot::Sender<T>);

impl<T> fmt::Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneshotSender")
    }
}

impl<T: OptionalSend> openraft::async_runtime::AsyncOneshotSendExt<T> for OneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

/// The runtime's RNG: madsim's seeded one in the simulator.
#[cfg(madsim)]
pub type Rng = madsim::rand::GlobalRng;
#[cfg(not(madsim))]
pub type Rng = rand::rngs::ThreadRng;

impl AsyncRuntime for EnvRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = RuntimeInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = Rng;
    type OneshotSender<T: OptionalSend> = OneshotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Sleep(Box::pin(tokio::time::sleep(duration)))
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Sleep(Box::pin(tokio::time::sleep_until(deadline.0)))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            future: Box::pin(future),
            sleep: Box::pin(tokio::time::sleep(duration)),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            future: Box::pin(future),
            sleep: Box::pin(tokio::time::sleep_until(deadline.0)),
        }
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        #[cfg(madsim)]
        {
            madsim::rand::thread_rng()
        }
        #[cfg(not(madsim))]
        {
            rand::thread_rng()
        }
    }

    fn oneshot<T: OptionalSend>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (OneshotSender(tx), rx)
    }
}
