//! The topic registry: a pure state machine of topics, their ids, partition counts and
//! configs. The broker persists it as a checkpoint and applies requests to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A topic as the registry knows it.
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
    "max.message.bytes",
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

/// Checks topic configs: known names, numbers where numbers are due.
pub fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    for (k, v) in configs {
        let numeric = !matches!(
            k.as_str(),
            "cleanup.policy"
                | "compression.type"
                | "message.timestamp.type"
                | "unclean.leader.election.enable"
        );
        if !SETTABLE_CONFIGS.contains(&k.as_str()) || (numeric && v.parse::<i64>().is_err()) {
            return Err(TopicError::InvalidConfig(k.clone()));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topics {
    topics: BTreeMap<String, Topic>,
}

impl Topics {
    pub fn get(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Topic)> {
        self.topics.iter()
    }

    pub fn by_id(&self, id: [u8; 16]) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.as_str())
    }

    /// Checks a creation without applying it.
    fn check_create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), TopicError> {
        validate_name(name)?;
        if self.topics.contains_key(name) {
            return Err(TopicError::Exists(name.to_string()));
        }
        if partitions < 1 {
            return Err(TopicError::InvalidPartitions(partitions));
        }
        if replication_factor != 1 && replication_factor != -1 {
            return Err(TopicError::InvalidReplicationFactor(replication_factor));
        }
        validate_configs(configs)
    }

    pub fn create(
        &mut self,
        name: &str,
        id: [u8; 16],
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> Result<&Topic, TopicError> {
        self.check_create(name, partitions, replication_factor, &configs)?;
        Ok(self.topics.entry(name.to_string()).or_insert(Topic {
            id,
            partitions,
            configs,
        }))
    }

    pub fn delete(&mut self, name: &str) -> Result<Topic, TopicError> {
        self.topics
            .remove(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))
    }

    /// Checks growing a topic to `count` partitions; returns the current count.
    fn check_partitions(&self, name: &str, count: i32) -> Result<i32, TopicError> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        if count <= topic.partitions {
            return Err(TopicError::PartitionsCannotShrink {
                topic: name.to_string(),
                current: topic.partitions,
                requested: count,
            });
        }
        Ok(topic.partitions)
    }

    pub fn set_partitions(&mut self, name: &str, count: i32) -> Result<i32, TopicError> {
        let old = self.check_partitions(name, count)?;
        if let Some(t) = self.topics.get_mut(name) {
            t.partitions = count;
        }
        Ok(old)
    }

    /// Encodes the registry for its checkpoint: one topic per line,
    /// `name id-hex partitions key=value...` with percent-escaped values.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (name, t) in &self.topics {
            out.push_str(name);
            out.push(' ');
            for b in t.id {
                out.push_str(&format!("{b:02x}"));
            }
            out.push_str(&format!(" {}", t.partitions));
            for (k, v) in &t.configs {
                out.push_str(&format!(" {}={}", escape(k), escape(v)));
            }
            out.push('\n');
        }
        out
    }

    pub fn decode(text: &str) -> Result<Topics, String> {
        let mut topics = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let bad = |what: &str| format!("topics checkpoint line {}: {what}", n + 1);
            let mut parts = line.split(' ');
            let name = parts
                .next()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad("no name"))?;
            let hex = parts.next().ok_or_else(|| bad("no id"))?;
            let mut id = [0u8; 16];
            if hex.len() != 32 {
                return Err(bad("bad id"));
            }
            for (i, b) in id.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad("bad id"))?;
            }
            let partitions = parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| bad("bad partition count"))?;
            let mut configs = BTreeMap::new();
            for kv in parts {
                let (k, v) = kv.split_once('=').ok_or_else(|| bad("bad config"))?;
                configs.insert(
                    unescape(k).map_err(|_| bad("bad escape"))?,
                    unescape(v).map_err(|_| bad("bad escape"))?,
                );
            }
            topics.insert(
                name.to_string(),
                Topic {
                    id,
                    partitions,
                    configs,
                },
            );
        }
        Ok(Topics { topics })
    }
}

fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
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

    #[test]
    fn create_grow_delete_and_checkpoint_round_trip() {
        let mut t = Topics::default();
        let cfg = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        t.create("a", [7; 16], 3, 1, cfg.clone()).unwrap();
        assert_eq!(
            t.create("a", [8; 16], 1, 1, BTreeMap::new()),
            Err(TopicError::Exists("a".into()))
        );
        assert!(matches!(
            t.create("b", [8; 16], 0, 1, BTreeMap::new()),
            Err(TopicError::InvalidPartitions(0))
        ));
        assert!(matches!(
            t.create("b", [8; 16], 1, 3, BTreeMap::new()),
            Err(TopicError::InvalidReplicationFactor(3))
        ));
        assert!(t.set_partitions("a", 2).is_err(), "shrinking must fail");
        assert_eq!(t.set_partitions("a", 5), Ok(3));
        t.create("c d", [9; 16], 1, 1, BTreeMap::new()).unwrap_err();
        t.create(
            "c",
            [9; 16],
            1,
            -1,
            BTreeMap::from([("cleanup.policy".into(), "a b=%".into())]),
        )
        .unwrap();
        let back = Topics::decode(&t.encode()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.get("a").unwrap().partitions, 5);
        assert_eq!(back.by_id([9; 16]), Some("c"));
        t.delete("a").unwrap();
        assert!(t.delete("a").is_err());
    }
}
