//! Sluice's domain: the `Env` seam and the pure state machines the broker runs.

pub mod cluster;
pub mod compaction;
pub mod config;
pub mod env;
pub mod group;
pub mod producer;
pub mod share;
pub mod sim;
pub mod topics;
pub mod txn;
