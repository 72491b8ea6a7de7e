//! The log engine over the `Disk` seam: segmented partition logs of Kafka v2 record
//! batches stored as received, with indexes, recovery and group-commit fsync.

pub mod batch;
pub mod checkpoint;
pub mod compaction;
pub mod file_disk;
pub mod log;
pub mod raft_store;
pub mod segment;

pub use log::{
    Appended, CleanConfig, CleanStats, Dirtiness, LogConfig, LogError, PartitionLog, Read,
};
