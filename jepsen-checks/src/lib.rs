//! Histories of Kafka-style operations and the checkers that find anomalies in them.
//! Depends on no other crate of Sluice, so it checks histories from the simulator and
//! from real-process runs alike. One property per checker file, each citing its source.

pub mod checkers;
pub mod history;

pub use checkers::{check_all, Anomaly, Report};
pub use history::{Kind, Op, F};
