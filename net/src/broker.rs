//! The single-node broker's state: the topic registry (persisted as an atomic
//! checkpoint) and one open [`PartitionLog`] per partition.
//!
//! Crash safety of topic changes: a new partition's directory is created and synced
//! before the checkpoint names it; a deleted topic leaves the checkpoint before its
//! directories go. At start, directories the checkpoint does not name are removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_core::config::BrokerConfig;
use sluice_core::env::Env;
use sluice_core::group::GroupCoordinator;
use sluice_core::topics::{Topic, TopicError, Topics};
use sluice_storage::{checkpoint, LogConfig, LogError, PartitionLog};
use thiserror::Error;
use tracing::{info, warn};

use crate::groups::Groups;
use crate::internal::{OFFSETS_TOPIC, TXN_TOPIC};
use crate::txns::Txns;

const TOPICS_CHECKPOINT: &str = "topics.checkpoint";
/// The end of the block of producer ids this broker has reserved.
const PRODUCER_IDS: &str = "producer-ids.checkpoint";
/// Producer ids reserved per checkpoint write.
const PRODUCER_ID_BLOCK: i64 = 1000;
const META: &str = "meta.properties";

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("partition {topic}-{partition}: {source}")]
    Log {
        topic: String,
        partition: i32,
        source: LogError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("corrupt {file}: {why}")]
    Corrupt { file: String, why: String },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BrokerError {
    let context = context.into();
    move |source| BrokerError::Io { context, source }
}

struct State {
    topics: Topics,
    /// Each topic's partition logs, by partition index.
    logs: BTreeMap<String, Vec<Arc<PartitionLog>>>,
}

pub struct Broker {
    pub env: Env,
    pub config: BrokerConfig,
    pub cluster_id: String,
    /// The group coordinator, over `__consumer_offsets`.
    pub groups: Groups,
    /// The transaction coordinator, over `__transaction_state`.
    pub txns: Txns,
    state: Mutex<State>,
    /// (next producer id, end of the reserved block).
    producer_ids: Mutex<(i64, i64)>,
}

fn partition_dir(topic: &str, partition: i32) -> PathBuf {
    PathBuf::from(format!("{topic}-{partition}"))
}

impl Broker {
    /// Opens the data directory (the `Disk`'s root): cluster identity, topics, and
    /// every partition log, recovering each.
    pub fn open(env: Env, config: BrokerConfig) -> Result<Arc<Broker>, BrokerError> {
        let disk = env.disk.clone();
        let cluster_id = match checkpoint::read(disk.as_ref(), Path::new(META))
            .map_err(io("read meta.properties"))?
        {
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .lines()
                .find_map(|l| l.strip_prefix("cluster.id=").map(str::to_owned))
                .ok_or_else(|| BrokerError::Corrupt {
                    file: META.into(),
                    why: "no cluster.id".into(),
                })?,
            None => {
                let id = random_cluster_id(&env);
                let text = format!("version=1\ncluster.id={id}\nnode.id={}\n", config.node_id);
                checkpoint::write_atomic(disk.as_ref(), Path::new(META), text.as_bytes())
                    .map_err(io("write meta.properties"))?;
                id
            }
        };
        let topics = match checkpoint::read(disk.as_ref(), Path::new(TOPICS_CHECKPOINT))
            .map_err(io("read topics checkpoint"))?
        {
            Some(bytes) => Topics::decode(&String::from_utf8_lossy(&bytes)).map_err(|why| {
                BrokerError::Corrupt {
                    file: TOPICS_CHECKPOINT.into(),
                    why,
                }
            })?,
            None => Topics::default(),
        };
        let groups = Groups::new(env.clone(), GroupCoordinator::new(config.group_limits()));
        let txns = Txns::new(env.clone(), config.transaction_max_timeout_ms);
        // Ids of a block reserved before a restart may have been handed out: skip it.
        let reserved = match checkpoint::read(disk.as_ref(), Path::new(PRODUCER_IDS))
            .map_err(io("read producer ids"))?
        {
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .trim()
                .parse::<i64>()
                .map_err(|_| BrokerError::Corrupt {
                    file: PRODUCER_IDS.into(),
                    why: "not a number".into(),
                })?,
            None => 0,
        };
        let broker = Broker {
            env,
            config,
            cluster_id,
            groups,
            txns,
            producer_ids: Mutex::new((reserved, reserved)),
            state: Mutex::new(State {
                topics,
                logs: BTreeMap::new(),
            }),
        };
        {
            let mut st = broker.lock();
            let wanted: Vec<(String, i32)> = st
                .topics
                .iter()
                .map(|(name, t)| (name.clone(), t.partitions))
                .collect();
            for (name, partitions) in wanted {
                let logs = broker.open_logs(&st.topics, &name, 0..partitions)?;
                st.logs.insert(name, logs);
            }
            // Directories of topics that were being created or deleted at a crash.
            for entry in disk.list(Path::new("")).map_err(io("list data dir"))? {
                let Some((topic, p)) = entry.rsplit_once('-') else {
                    continue;
                };
                let Ok(p) = p.parse::<usize>() else { continue };
                if st.logs.get(topic).is_none_or(|logs| p >= logs.len()) {
                    warn!(dir = %entry, "removing partition directory of no known topic");
                    let _ = disk.remove_dir_all(Path::new(&entry));
                }
            }
        }
        let offsets_logs = broker.lock().logs.get(OFFSETS_TOPIC).cloned();
        if let Some(logs) = offsets_logs {
            broker
                .groups
                .load(logs)
                .map_err(|source| BrokerError::Log {
                    topic: OFFSETS_TOPIC.into(),
                    partition: -1,
                    source,
                })?;
        }
        let txn_logs = broker.lock().logs.get(TXN_TOPIC).cloned();
        if let Some(logs) = txn_logs {
            broker.txns.load(logs).map_err(|source| BrokerError::Log {
                topic: TXN_TOPIC.into(),
                partition: -1,
                source,
            })?;
        }
        info!(cluster_id = %broker.cluster_id, topics = broker.lock().topics.iter().count(), "broker opened");
        Ok(Arc::new(broker))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log_config(&self, topic: Option<&Topic>) -> LogConfig {
        let get = |key: &str, default: u64| {
            topic
                .and_then(|t| t.configs.get(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        LogConfig {
            segment_bytes: get("segment.bytes", self.config.log_segment_bytes),
            segment_ms: get("segment.ms", self.config.log_roll_ms),
            index_interval_bytes: get("index.interval.bytes", self.config.log_index_interval_bytes),
        }
    }

    fn open_logs(
        &self,
        topics: &Topics,
        name: &str,
        partitions: std::ops::Range<i32>,
    ) -> Result<Vec<Arc<PartitionLog>>, BrokerError> {
        partitions.map(|p| self.open_log(topics, name, p)).collect()
    }

    fn open_log(
        &self,
        topics: &Topics,
        name: &str,
        p: i32,
    ) -> Result<Arc<PartitionLog>, BrokerError> {
        PartitionLog::open(
            self.env.clone(),
            &partition_dir(name, p),
            self.log_config(topics.get(name)),
        )
        .map_err(|source| BrokerError::Log {
            topic: name.to_string(),
            partition: p,
            source,
        })
    }

    fn save_topics(&self, topics: &Topics) -> Result<(), BrokerError> {
        checkpoint::write_atomic(
            self.env.disk.as_ref(),
            Path::new(TOPICS_CHECKPOINT),
            topics.encode().as_bytes(),
        )
        .map_err(io("write topics checkpoint"))
    }

    pub fn topic(&self, name: &str) -> Option<Topic> {
        self.lock().topics.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: [u8; 16]) -> Option<String> {
        self.lock().topics.by_id(id).map(str::to_owned)
    }

    /// All topics, by name.
    pub fn topics(&self) -> Vec<(String, Topic)> {
        self.lock()
            .topics
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        let index = usize::try_from(partition).ok()?;
        self.lock().logs.get(topic)?.get(index).cloned()
    }

    /// Applies retention to every partition of every topic whose `cleanup.policy`
    /// includes `delete` (internal topics are the coordinators' to keep small).
    pub fn apply_retention(&self) {
        let now = self.env.clock.wall_ms();
        let work: Vec<(String, i64, i64, Vec<Arc<PartitionLog>>)> = {
            let st = self.lock();
            st.topics
                .iter()
                .filter(|(name, _)| !name.starts_with("__"))
                .filter_map(|(name, t)| {
                    let get = |key: &str| t.configs.get(key).map(String::as_str);
                    if !get("cleanup.policy").unwrap_or("delete").contains("delete") {
                        return None;
                    }
                    let num = |key: &str, default: i64| {
                        get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
                    };
                    let ms = num("retention.ms", self.config.log_retention_ms);
                    let bytes = num("retention.bytes", self.config.log_retention_bytes);
                    Some((name.clone(), ms, bytes, st.logs.get(name)?.clone()))
                })
                .collect()
        };
        for (name, ms, bytes, logs) in work {
            for (p, log) in logs.iter().enumerate() {
                match log.apply_retention(now, ms, bytes) {
                    Ok(0) => {}
                    Ok(n) => {
                        info!(topic = %name, partition = p, segments = n, log_start = log.log_start_offset(), "retention removed segments")
                    }
                    Err(e) => warn!(topic = %name, partition = p, error = %e, "retention failed"),
                }
            }
        }
    }

    /// The largest batch a produce to `topic` may carry (`max.message.bytes`).
    pub fn max_message_bytes(&self, topic: &str) -> usize {
        self.lock()
            .topics
            .get(topic)
            .and_then(|t| t.configs.get("max.message.bytes"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.config.message_max_bytes)
    }

    /// Creates a topic (or only checks it, with `validate_only`).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Topic, BrokerError> {
        let mut st = self.lock();
        let mut next = st.topics.clone();
        let topic = next
            .create(
                name,
                self.new_topic_id(),
                partitions,
                replication_factor,
                configs,
            )?
            .clone();
        if !validate_only {
            self.install(&mut st, next, name, 0..partitions)?;
            info!(topic = name, partitions, "topic created");
        }
        Ok(topic)
    }

    /// A producer id never handed out before. Ids are reserved in blocks, the block's
    /// end made durable before any id of it is used.
    pub fn new_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.0 >= ids.1 {
            let end = ids.1 + PRODUCER_ID_BLOCK;
            checkpoint::write_atomic(
                self.env.disk.as_ref(),
                Path::new(PRODUCER_IDS),
                end.to_string().as_bytes(),
            )
            .map_err(io("write producer ids"))?;
            ids.1 = end;
        }
        ids.0 += 1;
        Ok(ids.0 - 1)
    }

    /// A random version-4 UUID, as Kafka's topic ids are.
    fn new_topic_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.env.rng.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.env.rng.next_u64().to_be_bytes());
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        id
    }

    /// Opens the logs of `name`'s `new` partitions, then persists `next` and makes it
    /// current. A crash in between leaves only directories that no checkpoint names,
    /// which are removed at start.
    fn install(
        &self,
        st: &mut State,
        next: Topics,
        name: &str,
        new: std::ops::Range<i32>,
    ) -> Result<(), BrokerError> {
        let opened = self.open_logs(&next, name, new)?;
        self.save_topics(&next)?;
        st.topics = next;
        st.logs.entry(name.to_string()).or_default().extend(opened);
        Ok(())
    }

    /// The logs of an internal topic (`__consumer_offsets`, `__transaction_state`),
    /// created with `partitions` and compaction on first use, as Kafka does.
    pub fn internal_topic(
        &self,
        name: &str,
        partitions: i32,
        segment_bytes: u64,
    ) -> Result<Vec<Arc<PartitionLog>>, BrokerError> {
        if self.topic(name).is_none() {
            let configs = BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("segment.bytes".to_string(), segment_bytes.to_string()),
            ]);
            match self.create_topic(name, partitions, 1, configs, false) {
                Ok(_) => info!(topic = name, partitions, "created internal topic"),
                Err(BrokerError::Topic(TopicError::Exists(_))) => {}
                Err(e) => return Err(e),
            }
        }
        let count = self.topic(name).map_or(0, |t| t.partitions);
        (0..count)
            .map(|p| {
                self.partition(name, p)
                    .ok_or_else(|| BrokerError::Topic(TopicError::Unknown(name.into())))
            })
            .collect()
    }

    /// Creates a topic with the broker defaults if auto-creation is enabled.
    pub fn auto_create(&self, name: &str) -> Option<Result<Topic, BrokerError>> {
        if !self.config.auto_create_topics_enable {
            return None;
        }
        Some(
            match self.create_topic(
                name,
                self.config.num_partitions,
                self.config.default_replication_factor,
                BTreeMap::new(),
                false,
            ) {
                // Lost a race with another creator: that is fine.
                Err(BrokerError::Topic(TopicError::Exists(_))) => self
                    .topic(name)
                    .ok_or_else(|| TopicError::Unknown(name.into()).into()),
                other => other,
            },
        )
    }

    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        let mut st = self.lock();
        let mut next = st.topics.clone();
        next.delete(name)?;
        self.save_topics(&next)?;
        st.topics = next;
        for (p, log) in st.logs.remove(name).unwrap_or_default().iter().enumerate() {
            if let Err(e) = log.delete() {
                warn!(topic = name, partition = p, error = %e, "could not remove partition files");
            }
        }
        let _ = self.env.disk.sync_dir(Path::new(""));
        info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let mut st = self.lock();
        let mut next = st.topics.clone();
        let old = next.set_partitions(name, count)?;
        if validate_only {
            return Ok(());
        }
        self.install(&mut st, next, name, old..count)
    }
}

/// A 22-character URL-safe base64 id, like Kafka's cluster ids.
fn random_cluster_id(env: &Env) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (a, b) = (env.rng.next_u64(), env.rng.next_u64());
    let bits = (u128::from(a) << 64) | u128::from(b);
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}
