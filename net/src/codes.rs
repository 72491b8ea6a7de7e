//! Kafka error codes, and the one place where our errors become them.

use sluice_core::group::GroupError;
use sluice_core::producer::ProducerError;
use sluice_core::topics::TopicError;
use sluice_core::txn::TxnError;
use sluice_storage::batch::BatchError;
use sluice_storage::LogError;

pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const INVALID_TIMESTAMP: i16 = 32;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const POLICY_VIOLATION: i16 = 44;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const INVALID_TXN_STATE: i16 = 48;
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const PRODUCER_FENCED: i16 = 90;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
pub const OFFSET_NOT_AVAILABLE: i16 = 78;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
pub const INVALID_RECORD: i16 = 87;
pub const UNKNOWN_TOPIC_ID: i16 = 100;
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
pub const ELECTION_NOT_NEEDED: i16 = 84;
pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
pub const FENCED_MEMBER_EPOCH: i16 = 110;
pub const UNRELEASED_INSTANCE_ID: i16 = 111;
pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
pub const STALE_MEMBER_EPOCH: i16 = 113;
pub const INVALID_RECORD_STATE: i16 = 121;
pub const SHARE_SESSION_NOT_FOUND: i16 = 122;
pub const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
pub const SHARE_SESSION_LIMIT_REACHED: i16 = 133;

/// `authorized_operations` when the client did not ask for them.
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn log_error(e: &LogError) -> i16 {
    match e {
        LogError::Corrupt(
            BatchError::BadCount { .. }
            | BatchError::OffsetGap { .. }
            | BatchError::ControlProduced,
        ) => INVALID_RECORD,
        LogError::Corrupt(_) => CORRUPT_MESSAGE,
        LogError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        LogError::Storage(_) => KAFKA_STORAGE_ERROR,
        LogError::Truncated { .. } => NOT_LEADER_OR_FOLLOWER,
        LogError::Producer(ProducerError::OutOfOrder { .. }) => OUT_OF_ORDER_SEQUENCE_NUMBER,
        LogError::Producer(ProducerError::InvalidEpoch { .. }) => INVALID_PRODUCER_EPOCH,
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
        TopicError::InvalidConfig(_) | TopicError::Unsupported { .. } => INVALID_CONFIG,
    }
}

pub fn group_error(e: GroupError) -> i16 {
    match e {
        GroupError::UnknownMemberId => UNKNOWN_MEMBER_ID,
        GroupError::IllegalGeneration => ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => REBALANCE_IN_PROGRESS,
        GroupError::FencedInstanceId => FENCED_INSTANCE_ID,
        GroupError::InconsistentGroupProtocol => INCONSISTENT_GROUP_PROTOCOL,
        GroupError::InvalidSessionTimeout => INVALID_SESSION_TIMEOUT,
        GroupError::MemberIdRequired => MEMBER_ID_REQUIRED,
        GroupError::GroupMaxSizeReached => GROUP_MAX_SIZE_REACHED,
        GroupError::InvalidGroupId => INVALID_GROUP_ID,
        GroupError::GroupIdNotFound => GROUP_ID_NOT_FOUND,
        GroupError::NonEmptyGroup => NON_EMPTY_GROUP,
        GroupError::OffsetMetadataTooLarge => OFFSET_METADATA_TOO_LARGE,
        GroupError::GroupSubscribedToTopic => GROUP_SUBSCRIBED_TO_TOPIC,
        GroupError::FencedMemberEpoch => FENCED_MEMBER_EPOCH,
        GroupError::StaleMemberEpoch => STALE_MEMBER_EPOCH,
        GroupError::UnreleasedInstanceId => UNRELEASED_INSTANCE_ID,
        GroupError::UnsupportedAssignor => UNSUPPORTED_ASSIGNOR,
        GroupError::InvalidRequest => INVALID_REQUEST,
        GroupError::InvalidRegularExpression => INVALID_REGULAR_EXPRESSION,
    }
}

/// An offset commit's failure as Kafka reports it: storage trouble is retriable.
pub fn commit_error(e: &crate::groups::CommitError) -> i16 {
    match e {
        crate::groups::CommitError::Group(g) => group_error(*g),
        crate::groups::CommitError::Storage(_) => COORDINATOR_NOT_AVAILABLE,
    }
}

pub fn txn_error(e: TxnError) -> i16 {
    match e {
        TxnError::ConcurrentTransactions => CONCURRENT_TRANSACTIONS,
        TxnError::ProducerFenced => PRODUCER_FENCED,
        TxnError::InvalidProducerIdMapping => INVALID_PRODUCER_ID_MAPPING,
        TxnError::InvalidTxnState => INVALID_TXN_STATE,
        TxnError::InvalidTransactionTimeout => INVALID_TRANSACTION_TIMEOUT,
    }
}

/// The code of a coordinator's answer: its own error, or COORDINATOR_NOT_AVAILABLE
/// when it could not serve (the client retries).
pub fn coordinator_outcome<E>(
    outcome: Result<Result<(), E>, crate::internal::Unavailable>,
    code: impl FnOnce(E) -> i16,
) -> i16 {
    match outcome {
        Ok(Ok(())) => NONE,
        Ok(Err(e)) => code(e),
        Err(_) => COORDINATOR_NOT_AVAILABLE,
    }
}

/// A Kafka error code as Kafka's tools print it: its name and number, e.g.
/// `NOT_LEADER_OR_FOLLOWER (6)`.
pub fn describe(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        None => "NONE (0)".to_string(),
        Some(kafka_protocol::error::ResponseError::Unknown(_)) => format!("UNKNOWN ({code})"),
        Some(e) => {
            let mut name = String::new();
            for (i, c) in e.to_string().chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            format!("{name} ({code})")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_described_by_kafkas_names() {
        assert_eq!(super::describe(6), "NOT_LEADER_OR_FOLLOWER (6)");
        assert_eq!(super::describe(56), "KAFKA_STORAGE_ERROR (56)");
        assert_eq!(super::describe(40), "INVALID_CONFIG (40)");
        assert_eq!(super::describe(9999), "UNKNOWN (9999)");
    }
}
