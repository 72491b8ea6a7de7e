//! The simulator: a simulated `Env` (disk with a fault model, seeded randomness,
//! inline blocking work) for running the real broker code deterministically.

pub mod disk;
pub mod env;

pub use disk::{Faults, SimDisk};
