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
    #[error("config '{name}={value}' is not supported: {why}")]
    Unsupported {
        name: String,
        value: String,
        why: String,
    },
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

/// How Sluice treats one of Kafka 4's topic configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Honoured as Kafka documents it.
    Enforced,
    /// Sluice syncs every write before acknowledging it, so any `flush.*` bound is met.
    AlwaysMet,
    /// Only Kafka's default is accepted; any other value is refused for the reason given.
    DefaultOnly(&'static str, &'static str),
}

const TIERED: &str = "tiered storage is not served";
const THROTTLES: &str = "replication throttles are not served";
const LEVELS: &str = "Sluice compresses at each codec's default level";

/// Every topic config of Kafka 4 (and `message.timestamp.difference.max.ms` and
/// `message.downconversion.enable`, which 3.x tools still send), and how Sluice treats
/// it. A name not here is refused.
pub const TOPIC_CONFIGS: &[(&str, Support)] = &[
    ("cleanup.policy", Support::Enforced),
    ("compression.gzip.level", Support::DefaultOnly("-1", LEVELS)),
    ("compression.lz4.level", Support::DefaultOnly("9", LEVELS)),
    ("compression.type", Support::Enforced),
    ("compression.zstd.level", Support::DefaultOnly("3", LEVELS)),
    ("delete.retention.ms", Support::Enforced),
    (
        "file.delete.delay.ms",
        Support::DefaultOnly("60000", "Sluice deletes a segment's files at once"),
    ),
    ("flush.messages", Support::AlwaysMet),
    ("flush.ms", Support::AlwaysMet),
    (
        "follower.replication.throttled.replicas",
        Support::DefaultOnly("", THROTTLES),
    ),
    ("index.interval.bytes", Support::Enforced),
    (
        "leader.replication.throttled.replicas",
        Support::DefaultOnly("", THROTTLES),
    ),
    ("local.retention.bytes", Support::DefaultOnly("-2", TIERED)),
    ("local.retention.ms", Support::DefaultOnly("-2", TIERED)),
    ("max.compaction.lag.ms", Support::Enforced),
    ("max.message.bytes", Support::Enforced),
    ("message.timestamp.after.max.ms", Support::Enforced),
    ("message.timestamp.before.max.ms", Support::Enforced),
    ("message.timestamp.difference.max.ms", Support::Enforced),
    ("message.timestamp.type", Support::Enforced),
    (
        "message.downconversion.enable",
        Support::DefaultOnly("true", "Sluice serves v2 record batches to every client"),
    ),
    ("min.cleanable.dirty.ratio", Support::Enforced),
    ("min.compaction.lag.ms", Support::Enforced),
    ("min.insync.replicas", Support::Enforced),
    (
        "preallocate",
        Support::DefaultOnly("false", "Sluice does not preallocate segments"),
    ),
    (
        "remote.log.copy.disable",
        Support::DefaultOnly("false", TIERED),
    ),
    (
        "remote.log.delete.on.disable",
        Support::DefaultOnly("false", TIERED),
    ),
    (
        "remote.storage.enable",
        Support::DefaultOnly("false", TIERED),
    ),
    ("retention.bytes", Support::Enforced),
    ("retention.ms", Support::Enforced),
    ("segment.bytes", Support::Enforced),
    (
        "segment.index.bytes",
        Support::DefaultOnly("10485760", "Sluice's offset index grows with its segment"),
    ),
    (
        "segment.jitter.ms",
        Support::DefaultOnly("0", "Sluice rolls segments at segment.ms exactly"),
    ),
    ("segment.ms", Support::Enforced),
    (
        "unclean.leader.election.enable",
        Support::DefaultOnly("false", "Sluice never elects a replica outside the ISR"),
    ),
];

/// Whether a topic config is a list (comma-separated values), which
/// IncrementalAlterConfigs may APPEND to and SUBTRACT from (KIP-339).
pub fn is_list(name: &str) -> bool {
    matches!(
        name,
        "cleanup.policy"
            | "leader.replication.throttled.replicas"
            | "follower.replication.throttled.replicas"
    )
}

/// How Sluice treats topic config `name` (None: not a topic config).
pub fn support(name: &str) -> Option<Support> {
    TOPIC_CONFIGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
}

/// Whether a topic's `cleanup.policy` (None: the default, `delete`) includes
/// `which` (`delete` or `compact`).
pub fn policy_includes(policy: Option<&str>, which: &str) -> bool {
    policy
        .unwrap_or("delete")
        .split(',')
        .any(|p| p.trim() == which)
}

/// The codec attribute (0-4) of a `compression.type`; None for `producer` (batches
/// keep the codec they came with) and for a name that is not a codec.
pub fn codec(compression_type: &str) -> Option<i16> {
    match compression_type {
        "uncompressed" => Some(0),
        "gzip" => Some(1),
        "snappy" => Some(2),
        "lz4" => Some(3),
        "zstd" => Some(4),
        _ => None,
    }
}

/// Whether a value is well formed for `name` (the checks stored configs always
/// passed: numbers where numbers are due, the policy's and the enums' words).
fn well_formed(name: &str, value: &str) -> bool {
    match name {
        "min.cleanable.dirty.ratio" => value.parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r)),
        "cleanup.policy" => value
            .split(',')
            .all(|p| matches!(p.trim(), "delete" | "compact")),
        "compression.type" => value == "producer" || codec(value).is_some(),
        "message.timestamp.type" => matches!(value, "CreateTime" | "LogAppendTime"),
        "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.difference.max.ms" => value.parse::<i64>().is_ok_and(|v| v >= 0),
        "unclean.leader.election.enable"
        | "preallocate"
        | "remote.storage.enable"
        | "remote.log.copy.disable"
        | "remote.log.delete.on.disable"
        | "message.downconversion.enable" => matches!(value, "true" | "false"),
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => true,
        _ => value.parse::<i64>().is_ok(),
    }
}

/// Checks topic configs as a client asks for them: every name a Kafka topic config,
/// every value well formed, and only values Sluice honours (INVALID_CONFIG naming the
/// config and why otherwise).
pub fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    for (k, v) in configs {
        match support(k) {
            None => return Err(TopicError::InvalidConfig(k.clone())),
            Some(_) if !well_formed(k, v) => return Err(TopicError::InvalidConfig(k.clone())),
            Some(Support::DefaultOnly(default, why)) if v != default => {
                return Err(TopicError::Unsupported {
                    name: k.clone(),
                    value: v.clone(),
                    why: why.to_string(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The check the metadata state machine applies to stored configs: known names and
/// well-formed values. Looser than [`validate_configs`] so a metadata log written by
/// an older Sluice, which accepted some values now refused at the door, still replays.
pub fn check_stored_configs(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    match configs
        .iter()
        .find(|(k, v)| support(k).is_none() || !well_formed(k, v))
    {
        Some((k, _)) => Err(TopicError::InvalidConfig(k.clone())),
        None => Ok(()),
    }
}

/// What a topic's configs ask of each batch produced to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePolicy {
    /// `max.message.bytes`: the largest batch.
    pub max_batch_bytes: usize,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    /// `compression.type`: the codec batches are stored with (None: as produced).
    pub codec: Option<i16>,
    /// `message.timestamp.type=LogAppendTime`: batches carry the broker's time.
    pub log_append_time: bool,
    /// How far a CreateTime timestamp may lie behind the broker's clock
    /// (`message.timestamp.before.max.ms`).
    pub max_before_ms: i64,
    /// How far it may lie ahead (`message.timestamp.after.max.ms`, KIP-937).
    pub max_after_ms: i64,
}

/// Kafka 4's default for `message.timestamp.after.max.ms` (KIP-1030): one hour.
pub const DEFAULT_TIMESTAMP_AFTER_MAX_MS: i64 = 3_600_000;

impl ProducePolicy {
    /// The policy of a topic with `configs` (unset ones at Kafka's defaults);
    /// `max_batch_bytes` is the broker's `message.max.bytes`.
    pub fn of(configs: &BTreeMap<String, String>, max_batch_bytes: usize) -> Self {
        let get = |k: &str| configs.get(k).map(String::as_str);
        let ms = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
        // The 3.x bound applies to both sides unless a KIP-937 bound is set.
        let difference = ms("message.timestamp.difference.max.ms");
        ProducePolicy {
            max_batch_bytes: get("max.message.bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(max_batch_bytes),
            compacted: policy_includes(get("cleanup.policy"), "compact"),
            codec: get("compression.type").and_then(codec),
            log_append_time: get("message.timestamp.type") == Some("LogAppendTime"),
            max_before_ms: ms("message.timestamp.before.max.ms")
                .or(difference)
                .unwrap_or(i64::MAX),
            max_after_ms: ms("message.timestamp.after.max.ms")
                .or(difference)
                .unwrap_or(DEFAULT_TIMESTAMP_AFTER_MAX_MS),
        }
    }

    /// Whether a CreateTime `timestamp` is within the bounds around `now` (Kafka's
    /// LogValidator; LogAppendTime topics take the broker's time instead).
    pub fn timestamp_ok(&self, timestamp: i64, now: i64) -> bool {
        self.log_append_time
            || (timestamp >= now.saturating_sub(self.max_before_ms)
                && timestamp <= now.saturating_add(self.max_after_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_kafka_topic_config_is_enforced_or_refused_by_name() {
        let ok = configs(&[
            ("cleanup.policy", "compact,delete"),
            ("compression.type", "zstd"),
            ("message.timestamp.type", "LogAppendTime"),
            ("message.timestamp.after.max.ms", "0"),
            ("flush.messages", "1"),
            ("unclean.leader.election.enable", "false"),
            ("remote.storage.enable", "false"),
            ("leader.replication.throttled.replicas", ""),
        ]);
        assert_eq!(validate_configs(&ok), Ok(()));
        for (name, value) in [
            ("no.such.config", "1"),
            ("cleanup.policy", "bogus"),
            ("compression.type", "brotli"),
            ("message.timestamp.type", "Now"),
            ("message.timestamp.before.max.ms", "-1"),
            ("retention.ms", "soon"),
        ] {
            let e = validate_configs(&configs(&[(name, value)])).unwrap_err();
            assert_eq!(e, TopicError::InvalidConfig(name.into()), "{name}={value}");
        }
        // Values Sluice cannot honour are refused with the reason, never kept.
        for (name, value) in [
            ("unclean.leader.election.enable", "true"),
            ("remote.storage.enable", "true"),
            ("compression.zstd.level", "19"),
            ("segment.index.bytes", "4096"),
            ("follower.replication.throttled.replicas", "*"),
        ] {
            let e = validate_configs(&configs(&[(name, value)])).unwrap_err();
            assert!(
                matches!(&e, TopicError::Unsupported { name: n, .. } if n == name),
                "{name}={value}: {e}"
            );
            assert!(e.to_string().contains(name), "{e}");
            // A metadata log that stored such a value (an older Sluice took it)
            // still replays.
            assert_eq!(check_stored_configs(&configs(&[(name, value)])), Ok(()));
        }
        for (name, _) in TOPIC_CONFIGS {
            if let Some(Support::DefaultOnly(default, _)) = support(name) {
                assert_eq!(validate_configs(&configs(&[(name, default)])), Ok(()));
            }
        }
    }

    #[test]
    fn the_produce_policy_follows_kafkas_timestamp_bounds() {
        let now = 1_000_000_000;
        // Kafka 4's defaults (KIP-1030): any past, at most an hour ahead.
        let p = ProducePolicy::of(&BTreeMap::new(), 1 << 20);
        assert!(p.timestamp_ok(0, now) && p.timestamp_ok(now + 3_600_000, now));
        assert!(!p.timestamp_ok(now + 3_600_001, now));
        assert_eq!(
            (p.codec, p.log_append_time, p.compacted),
            (None, false, false)
        );
        // KIP-937's bounds, and the 3.x difference for both sides when they are unset.
        let p = ProducePolicy::of(
            &configs(&[
                ("message.timestamp.before.max.ms", "1000"),
                ("message.timestamp.difference.max.ms", "10"),
            ]),
            1 << 20,
        );
        assert!(p.timestamp_ok(now - 1000, now) && !p.timestamp_ok(now - 1001, now));
        assert!(p.timestamp_ok(now + 10, now) && !p.timestamp_ok(now + 11, now));
        // LogAppendTime: the producer's timestamp does not matter.
        let p = ProducePolicy::of(
            &configs(&[
                ("message.timestamp.type", "LogAppendTime"),
                ("message.timestamp.after.max.ms", "0"),
                ("compression.type", "lz4"),
                ("max.message.bytes", "5000"),
            ]),
            1 << 20,
        );
        assert!(p.timestamp_ok(now + 1_000_000, now));
        assert_eq!((p.codec, p.max_batch_bytes), (Some(3), 5000));
        let p = ProducePolicy::of(&configs(&[("compression.type", "producer")]), 1);
        assert_eq!(p.codec, None);
    }

    #[test]
    fn names_follow_kafka_rules() {
        assert!(validate_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
