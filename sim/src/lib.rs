//! The simulator: a simulated `Env` (a disk with a fault model, seeded randomness,
//! inline blocking work, a skewable clock) under which the real broker runs inside
//! madsim, a nemesis, workloads on the project's own Kafka client, and the seed runner.
//!
//! `disk` and `env` build everywhere (the storage crash proptest uses them); the rest
//! exists only in madsim builds: `RUSTFLAGS="--cfg madsim"`.

pub mod disk;
pub mod env;

#[cfg(madsim)]
pub mod clock;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod ctp;
#[cfg(madsim)]
pub mod group;
#[cfg(madsim)]
pub mod kip848;
#[cfg(madsim)]
pub mod kv;
#[cfg(madsim)]
pub mod links;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod share;
#[cfg(madsim)]
pub mod txn;

pub use disk::{Faults, SimDisk};
