//! Kafka error codes, and the one place where our errors become them.

use sluice_core::topics::TopicError;
use sluice_storage::batch::BatchError;
use sluice_storage::LogError;

pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const INVALID_RECORD: i16 = 87;
pub const UNKNOWN_TOPIC_ID: i16 = 100;

/// `authorized_operations` when the client did not ask for them.
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn log_error(e: &LogError) -> i16 {
    match e {
        LogError::Corrupt(BatchError::BadCount { .. } | BatchError::OffsetGap { .. }) => {
            INVALID_RECORD
        }
        LogError::Corrupt(_) => CORRUPT_MESSAGE,
        LogError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        LogError::Storage(_) => KAFKA_STORAGE_ERROR,
    }
}

pub fn topic_error(e: &TopicError) -> i16 {
    match e {
        TopicError::Exists(_) => TOPIC_ALREADY_EXISTS,
        TopicError::Unknown(_) => UNKNOWN_TOPIC_OR_PARTITION,
        TopicError::InvalidName(..) => INVALID_TOPIC_EXCEPTION,
        TopicError::InvalidPartitions(_) | TopicError::PartitionsCannotShrink { .. } => {
            INVALID_PARTITIONS
        }
        TopicError::InvalidReplicationFactor(_) => INVALID_REPLICATION_FACTOR,
        TopicError::InvalidConfig(_) => INVALID_CONFIG,
    }
}
