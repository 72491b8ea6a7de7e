//! Topics as clients see them, and Kafka's rules for their names and configs. The
//! registry itself is the cluster metadata (`cluster::metadata`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A topic: its id, partition count and configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub id: [u8; 16],
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicError {
    #[error("topic '{0}' already exists")]
    Exists(String),
    #[error("topic '{0}' does not exist")]
    Unknown(String),
    #[error("invalid topic name '{0}': {1}")]
    InvalidName(String, String),
    #[error("invalid number of partitions {0}: must be at least 1")]
    InvalidPartitions(i32),
    #[error(
        "topic '{topic}' has {current} partitions; the count can only grow, {requested} requested"
    )]
    PartitionsCannotShrink {
        topic: String,
        current: i32,
        requested: i32,
    },
    #[error("replication factor {0} is invalid or larger than the available brokers")]
    InvalidReplicationFactor(i16),
    #[error("unknown or invalid config '{0}'")]
    InvalidConfig(String),
}

/// Kafka's rule for topic names: 1..=249 of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    let bad = |why: &str| Err(TopicError::InvalidName(name.to_string(), why.to_string()));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 249 {
        return bad("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Topic configs a user may set at creation.
pub const SETTABLE_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "message.timestamp.type",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
    "index.interval.bytes",
    "unclean.leader.election.enable",
];

/// Whether a topic's `cleanup.policy` (None: the default, `delete`) includes
/// `which` (`delete` or `compact`).
pub fn policy_includes(policy: Option<&str>, which: &str) -> bool {
    policy
        .unwrap_or("delete")
        .split(',')
        .any(|p| p.trim() == which)
}

/// Checks topic configs: known names, numbers where numbers are due.
pub fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    for (k, v) in configs {
        let numeric = !matches!(
            k.as_str(),
            "cleanup.policy"
                | "min.cleanable.dirty.ratio"
                | "compression.type"
                | "message.timestamp.type"
                | "unclean.leader.election.enable"
        );
        let valid = match k.as_str() {
            "min.cleanable.dirty.ratio" => v.parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r)),
            "cleanup.policy" => v
                .split(',')
                .all(|p| matches!(p.trim(), "delete" | "compact")),
            _ => !numeric || v.parse::<i64>().is_ok(),
        };
        if !SETTABLE_CONFIGS.contains(&k.as_str()) || !valid {
            return Err(TopicError::InvalidConfig(k.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        assert!(validate_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
