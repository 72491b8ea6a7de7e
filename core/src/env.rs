//! The seam between Sluice's logic and the world: clock, network, disk, tasks and
//! randomness. Production implementations live at the edges (`storage::FileDisk`,
//! `net::TcpNetwork`, `net::runtime`); the simulator provides seeded, faulty ones. Code
//! in `core`, `storage` and `net` reaches the world only through these traits, so the
//! simulator can see and control every source of nondeterminism.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed, sendable future: the trait objects below return these.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Time as the node sees it. The simulator skews and jumps it per node.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since an arbitrary origin; never goes back.
    fn monotonic(&self) -> Duration;
    /// Wall-clock milliseconds since the Unix epoch, for record timestamps. May jump.
    fn wall_ms(&self) -> i64;
    /// A future that completes after `duration` of monotonic time.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
    /// Blocks the calling thread for `duration`: for blocking work only (the log
    /// cleaner's IO throttle), which runs off the async workers.
    fn sleep_blocking(&self, duration: Duration);
}

/// A bidirectional byte stream (a TCP connection or its simulated twin).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A boxed stream with the peer's address.
pub type Connection = (Box<dyn Stream>, String);

/// A bound listening socket.
pub trait Listener: Send + 'static {
    /// Waits for the next inbound connection.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>>;
    /// The address actually bound (useful with port 0).
    fn local_addr(&self) -> io::Result<String>;
}

/// Listening and connecting.
pub trait Network: Send + Sync + 'static {
    fn listen<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>>;
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Stream>>>;
}

/// An open file. Writes land in a volatile cache until [`DiskFile::sync`] returns;
/// only synced bytes are guaranteed to survive a crash.
pub trait DiskFile: Send + Sync + 'static {
    /// Current length, including unsynced bytes.
    fn size(&self) -> io::Result<u64>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Shrinks (or grows with zeros) the file to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every byte written so far durable (fdatasync). Blocking: call it through
    /// [`Tasks::blocking`] from async code.
    fn sync(&self) -> io::Result<()>;
}

/// A directory tree of files. Paths are relative to the disk's root.
pub trait Disk: Send + Sync + 'static {
    /// Opens a file, creating it (empty) when `create` is set and it does not exist.
    /// A created file's name is durable only after [`Disk::sync_dir`] of its directory.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries in a directory, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    /// Atomically replaces `to` with `from`; durable after `sync_dir` of the directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// Spawning tasks and running blocking work.
pub trait Tasks: Send + Sync + 'static {
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// Runs blocking work (an fsync) without stalling the async executor. The
    /// simulator runs it inline.
    fn blocking(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()>;
}

/// Randomness; seeded in the simulator.
pub trait Random: Send + Sync + 'static {
    fn next_u64(&self) -> u64;
}

/// splitmix64: advances `state` and returns the next value. Fast, well mixed, and not
/// for cryptography.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// [`Random`] from a seed (splitmix64): the simulator seeds it from the run's seed,
/// production from the OS.
pub struct SeededRandom(std::sync::Mutex<u64>);

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        SeededRandom(std::sync::Mutex::new(seed))
    }
}

impl Random for SeededRandom {
    fn next_u64(&self) -> u64 {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        splitmix64(&mut state)
    }
}

/// Everything nondeterministic a node may touch.
#[derive(Clone)]
pub struct Env {
    pub clock: Arc<dyn Clock>,
    pub net: Arc<dyn Network>,
    pub disk: Arc<dyn Disk>,
    pub tasks: Arc<dyn Tasks>,
    pub rng: Arc<dyn Random>,
}

impl Env {
    /// Runs a blocking closure through [`Tasks::blocking`] and returns its result.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let slot = Arc::new(std::sync::Mutex::new(None));
        let out = slot.clone();
        self.tasks
            .blocking(Box::new(move || {
                let value = work();
                if let Ok(mut guard) = out.lock() {
                    *guard = Some(value);
                }
            }))
            .await;
        let value = slot.lock().ok()?.take();
        value
    }

    /// Spawns a future on the environment's executor.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(Box::pin(task));
    }

    /// A random value in `0..bound` (bound > 0).
    pub fn random_below(&self, bound: u64) -> u64 {
        self.rng.next_u64() % bound.max(1)
    }
}
