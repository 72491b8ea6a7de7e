//! A broker's state: the cluster metadata as last applied, and one [`Replica`] (an
//! open [`PartitionLog`] with its leader, epoch and ISR) per partition assigned here.
//!
//! Topics live in the controller's metadata log: changes are written there first and
//! reach the logs on disk when the metadata is applied. At start, partition
//! directories the metadata does not assign here are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_core::cluster::metadata::{
    place_replicas, Applied, Command, ConfigResource, MetadataError, MetadataImage, PartitionState,
};
use sluice_core::cluster::throttle::Throttle;
use sluice_core::config::BrokerConfig;
use sluice_core::env::Env;
use sluice_core::group::GroupCoordinator;
use sluice_core::sim::{planted, Bug};
use sluice_core::topics::{ProducePolicy, Topic, TopicError};
use sluice_storage::{checkpoint, CleanConfig, LogConfig, LogError, PartitionLog};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::codes;
use crate::controller::{Controller, ControllerError};
use crate::groups::Groups;
use crate::internal::{OFFSETS_TOPIC, TXN_TOPIC};
use crate::replication::{self, IsrChange, Replica};
use crate::txns::Txns;

const META: &str = "meta.properties";
/// Producer ids reserved from the controller at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error(transparent)]
    Metadata(MetadataError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
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
    /// A config a client asked for that cannot be honoured (INVALID_CONFIG).
    #[error("{0}")]
    InvalidConfig(String),
}

impl From<MetadataError> for BrokerError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Topic(t) => BrokerError::Topic(t),
            other => BrokerError::Metadata(other),
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BrokerError {
    let context = context.into();
    move |source| BrokerError::Io { context, source }
}

struct State {
    /// The metadata as last applied here.
    image: Arc<MetadataImage>,
    /// The replicas this broker holds, with the id of the topic they belong to.
    replicas: BTreeMap<(String, i32), ([u8; 16], Arc<Replica>)>,
}

pub struct Broker {
    pub env: Env,
    pub config: BrokerConfig,
    /// The cluster id this node proposed (its `meta.properties`); the cluster's own is
    /// the first one proposed, in the metadata.
    local_cluster_id: String,
    /// The metadata quorum (this node is one of its voters).
    pub controller: Arc<Controller>,
    /// The group coordinator, over `__consumer_offsets`.
    pub groups: Groups,
    /// The transaction coordinator, over `__transaction_state`.
    pub txns: Txns,
    /// Share partitions and sessions of the partitions led here, and the share-group
    /// state store over `__share_group_state` (KIP-932).
    pub shares: crate::shares::Shares,
    state: Mutex<State>,
    /// (next producer id, end of the block reserved from the controller).
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Internal topics whose creation is under way.
    creating: Mutex<BTreeSet<String>>,
    /// Partitions a log cleaner is working on (each log has one cleaner at a time).
    cleaning: Mutex<BTreeSet<(String, i32)>>,
    /// Paces reassignment traffic: what this broker serves as leader, and fetches as
    /// follower, for replicas being added.
    throttles: Mutex<[Throttle; 2]>,
    stopped: watch::Receiver<bool>,
    /// The metadata log index this broker's view has reached (applied by
    /// `follow_metadata`).
    followed: watch::Sender<u64>,
    /// This broker, for tasks it spawns.
    this: std::sync::OnceLock<std::sync::Weak<Broker>>,
}

/// A cleaner's hold on one partition, given back when dropped (also when the pass's
/// future is dropped at shutdown).
struct CleanerClaim<'a> {
    set: &'a Mutex<BTreeSet<(String, i32)>>,
    partition: (String, i32),
}

impl<'a> CleanerClaim<'a> {
    fn take(set: &'a Mutex<BTreeSet<(String, i32)>>, partition: (String, i32)) -> Option<Self> {
        let fresh = set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition.clone());
        fresh.then_some(CleanerClaim { set, partition })
    }
}

impl Drop for CleanerClaim<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.partition);
    }
}

/// Which side of replication a throttle paces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationSide {
    Leader,
    Follower,
}

fn partition_dir(topic: &str, partition: i32) -> PathBuf {
    PathBuf::from(format!("{topic}-{partition}"))
}

impl Broker {
    /// Opens the data directory (the `Disk`'s root): the cluster identity, and the log
    /// of every partition the metadata assigns to this broker, recovering each.
    /// Directories of partitions the metadata does not assign here are removed.
    pub fn open(
        env: Env,
        config: BrokerConfig,
        controller: Arc<Controller>,
        stopped: watch::Receiver<bool>,
    ) -> Result<Arc<Broker>, BrokerError> {
        let disk = env.disk.clone();
        let cluster_id = local_cluster_id(&env, config.node_id)?;
        let groups = Groups::new(env.clone(), GroupCoordinator::new(config.group_limits()));
        let txns = Txns::new(env.clone(), config.transaction_max_timeout_ms);
        let shares = crate::shares::Shares::new(env.clone(), &config);
        let image = controller.image();
        let index = controller.subscribe().borrow().index;
        let broker = Arc::new(Broker {
            env,
            config,
            local_cluster_id: cluster_id,
            controller,
            groups,
            txns,
            shares,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            state: Mutex::new(State {
                image: Arc::new(MetadataImage::default()),
                replicas: BTreeMap::new(),
            }),
            creating: Mutex::new(BTreeSet::new()),
            cleaning: Mutex::new(BTreeSet::new()),
            throttles: Mutex::new(Default::default()),
            stopped,
            followed: watch::channel(index).0,
            this: std::sync::OnceLock::new(),
        });
        let _ = broker.this.set(Arc::downgrade(&broker));
        broker.apply_image(image)?;
        // Directories of partitions not assigned here (deleted or moved away while
        // this broker was down, or cut short by a crash).
        let known: BTreeSet<String> = broker
            .lock()
            .replicas
            .keys()
            .map(|(t, p)| partition_dir(t, *p).display().to_string())
            .collect();
        for entry in disk.list(Path::new("")).map_err(io("list data dir"))? {
            let Some((_, p)) = entry.rsplit_once('-') else {
                continue;
            };
            if p.parse::<usize>().is_err() || known.contains(&entry) {
                continue;
            }
            warn!(dir = %entry, "removing partition directory of no partition assigned here");
            let _ = disk.remove_dir_all(Path::new(&entry));
        }
        broker
            .groups
            .sync_leadership(&broker)
            .map_err(|source| BrokerError::Log {
                topic: OFFSETS_TOPIC.into(),
                partition: -1,
                source,
            })?;
        broker
            .txns
            .sync_leadership(&broker)
            .map_err(|source| BrokerError::Log {
                topic: TXN_TOPIC.into(),
                partition: -1,
                source,
            })?;
        info!(cluster_id = %broker.cluster_id(), topics = broker.lock().image.topics.len(), "broker opened");
        Ok(broker)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster's id (until the metadata names one, the id this node proposes).
    pub fn cluster_id(&self) -> String {
        let named = self.lock().image.cluster_id.clone();
        if named.is_empty() {
            self.local_cluster_id.clone()
        } else {
            named
        }
    }

    /// Whether the node is shutting down.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Brings the local replicas in line with new metadata: opens the logs of
    /// partitions newly assigned here, removes those no longer assigned (or whose
    /// topic was deleted), and hands each replica its new leader, epoch and ISR. A
    /// follower of a new epoch starts a fetcher.
    pub fn apply_image(self: &Arc<Self>, image: Arc<MetadataImage>) -> Result<(), BrokerError> {
        let me = self.config.node_id;
        let now = self.env.clock.monotonic();
        let mut wanted: BTreeMap<(String, i32), ([u8; 16], &PartitionState)> = BTreeMap::new();
        for (name, t) in &image.topics {
            for (p, ps) in t.partitions.iter().enumerate() {
                if ps.replicas.contains(&me) {
                    wanted.insert((name.clone(), p as i32), (t.id, ps));
                }
            }
        }
        let mut followers = Vec::new();
        let mut first_error = None;
        {
            let mut st = self.lock();
            let gone: Vec<(String, i32)> = st
                .replicas
                .iter()
                .filter(|(k, (id, _))| wanted.get(*k).is_none_or(|(wid, _)| wid != id))
                .map(|(k, _)| k.clone())
                .collect();
            for key in gone {
                if let Some((_, replica)) = st.replicas.remove(&key) {
                    replica.close();
                    if let Err(e) = replica.log.delete() {
                        warn!(topic = %key.0, partition = key.1, error = %e, "could not remove partition files");
                    }
                    info!(topic = %key.0, partition = key.1, "replica removed");
                    sluice_core::sim_event!("broker-{me} {}-{}: replica removed", key.0, key.1);
                }
            }
            for ((name, p), (id, ps)) in &wanted {
                match st.replicas.get(&(name.clone(), *p)) {
                    Some((_, replica)) => {
                        if replica.update(ps, now) && ps.leader != me {
                            followers.push((replica.clone(), ps.leader_epoch));
                        }
                    }
                    None => match self.open_log(&image, name, *p) {
                        Ok(log) => {
                            let replica = Replica::new(name, *p, log, me, (*ps).clone(), now);
                            if ps.leader != me {
                                followers.push((replica.clone(), ps.leader_epoch));
                            }
                            st.replicas.insert((name.clone(), *p), (*id, replica));
                        }
                        Err(e) => {
                            warn!(topic = %name, partition = p, error = %e, "cannot open replica");
                            first_error.get_or_insert(e);
                        }
                    },
                }
            }
            st.image = image;
        }
        let _ = self.env.disk.sync_dir(Path::new(""));
        for (replica, epoch) in followers {
            self.env
                .spawn(replication::follow(self.clone(), replica, epoch));
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The replication throttle in force on `side`, in bytes/s (`None`: unthrottled).
    pub fn replication_rate(&self, side: ReplicationSide) -> Option<u64> {
        let name = match side {
            ReplicationSide::Leader => "leader.replication.throttled.rate",
            ReplicationSide::Follower => "follower.replication.throttled.rate",
        };
        self.lock()
            .image
            .broker_config(self.config.node_id, name)?
            .parse()
            .ok()
    }

    /// How long to hold back after moving `bytes` of a reassignment's catch-up, under
    /// the dynamic `leader.`/`follower.replication.throttled.rate` (unthrottled if unset).
    pub fn replication_delay(&self, side: ReplicationSide, bytes: usize) -> Duration {
        let Some(rate) = self.replication_rate(side) else {
            return Duration::ZERO;
        };
        let now = self.env.clock.monotonic();
        let mut throttles = self.throttles.lock().unwrap_or_else(|p| p.into_inner());
        throttles[side as usize].delay(now, bytes as u64, rate)
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

    fn open_log(
        &self,
        image: &MetadataImage,
        name: &str,
        p: i32,
    ) -> Result<Arc<PartitionLog>, BrokerError> {
        PartitionLog::open(
            self.env.clone(),
            &partition_dir(name, p),
            self.log_config(image.topic(name).as_ref()),
        )
        .map_err(|source| BrokerError::Log {
            topic: name.to_string(),
            partition: p,
            source,
        })
    }

    /// The metadata as last applied here.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.lock().image.clone()
    }

    pub fn topic(&self, name: &str) -> Option<Topic> {
        self.lock().image.topic(name)
    }

    pub fn topic_by_id(&self, id: [u8; 16]) -> Option<String> {
        self.lock().image.topic_by_id(id).map(str::to_owned)
    }

    /// All topics, by name.
    pub fn topics(&self) -> Vec<(String, Topic)> {
        self.lock()
            .image
            .topics
            .iter()
            .map(|(n, t)| (n.clone(), t.topic()))
            .collect()
    }

    /// The local log of a partition, if this broker holds a replica of it.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.replica(topic, partition).map(|r| r.log.clone())
    }

    /// The local replica of a partition.
    pub fn replica(&self, topic: &str, partition: i32) -> Option<Arc<Replica>> {
        self.lock()
            .replicas
            .get(&(topic.to_string(), partition))
            .map(|(_, r)| r.clone())
    }

    /// The replica to produce to or fetch from as a client: this broker must lead the
    /// partition (at `current_epoch`, if the client names one).
    pub fn leader_replica(
        &self,
        topic: &str,
        partition: i32,
        current_epoch: i32,
    ) -> Result<Arc<Replica>, i16> {
        let st = self.lock();
        if st.image.partition(topic, partition).is_none() {
            return Err(codes::UNKNOWN_TOPIC_OR_PARTITION);
        }
        let replica = st
            .replicas
            .get(&(topic.to_string(), partition))
            .map(|(_, r)| r.clone())
            .ok_or(codes::NOT_LEADER_OR_FOLLOWER)?;
        drop(st);
        replica.check_leader(current_epoch)?;
        Ok(replica)
    }

    /// Where a broker serves clients, as it registered.
    pub fn broker_address(&self, node: i32) -> Option<String> {
        let st = self.lock();
        let b = st.image.brokers.get(&node)?;
        Some(format!("{}:{}", b.registration.host, b.registration.port))
    }

    /// Asks the controller for an ISR change this broker decided as leader.
    pub async fn alter_isr(&self, replica: &Replica, change: IsrChange) {
        sluice_core::buggify_sleep!(self.env, 300);
        let command = Command::AlterIsr {
            topic: change.topic.clone(),
            partition: change.partition,
            leader: self.config.node_id,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            isr: change.isr.clone(),
        };
        loop {
            match self.controller.write(command.clone()).await {
                Ok(Ok(_)) => {
                    info!(topic = %change.topic, partition = change.partition, isr = ?change.isr, "ISR changed");
                    return;
                }
                // The partition changed meanwhile (a newer epoch or leader): the
                // metadata that says how is on its way, and it ends the pending change.
                // Until then the maximal ISR stays (Kafka waits for the metadata on
                // INVALID_UPDATE_VERSION and FENCED_LEADER_EPOCH the same way).
                Ok(Err(
                    e @ (MetadataError::StalePartitionEpoch { .. } | MetadataError::NotLeader(..)),
                )) => {
                    info!(topic = %change.topic, partition = change.partition, error = %e, "ISR change refused; awaiting metadata");
                    if planted(Bug::StaleIsrAnswerClears) {
                        replica.isr_change_failed(&change);
                    }
                    return;
                }
                Ok(Err(e)) => {
                    info!(topic = %change.topic, partition = change.partition, error = %e, "ISR change refused");
                    replica.isr_change_failed(&change);
                    return;
                }
                // Not known to be written: it may yet apply, so the pending change
                // stays and is asked again while it is still the one pending.
                Err(e) => {
                    warn!(topic = %change.topic, partition = change.partition, error = %e, "ISR change not written; asking again");
                    if !replica.is_pending(&change) || self.is_stopped() {
                        return;
                    }
                    self.env.clock.sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Every local replica.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        self.lock()
            .replicas
            .values()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Every local replica of a user topic (internal topics are the coordinators'
    /// to keep small) whose `cleanup.policy` includes `policy`, with a reader of the
    /// topic's configs that falls back on the broker's defaults.
    fn replicas_with_policy(&self, policy: &str) -> Vec<(String, Arc<Replica>, TopicSettings)> {
        let defaults = Arc::new(sluice_core::config::topic_config_defaults(&self.config));
        let st = self.lock();
        st.replicas
            .iter()
            // The coordinators' topics are compacted like any other (and never
            // expire by retention: their policy is compact only).
            .filter(|((name, _), _)| !name.starts_with("__") || crate::internal::is_internal(name))
            .filter_map(|((name, _), (_, replica))| {
                let configs = st.image.topic(name)?.configs.clone();
                let policy_set = configs.get("cleanup.policy").map(String::as_str);
                if !sluice_core::topics::policy_includes(policy_set, policy) {
                    return None;
                }
                let settings = TopicSettings {
                    configs,
                    defaults: Arc::clone(&defaults),
                };
                Some((name.clone(), replica.clone(), settings))
            })
            .collect()
    }

    /// Applies retention to every partition of every topic whose `cleanup.policy`
    /// includes `delete`.
    pub fn apply_retention(&self) {
        let now = self.env.clock.wall_ms();
        for (name, replica, topic) in self.replicas_with_policy("delete") {
            let ms = topic.get("retention.ms").unwrap_or(-1);
            let bytes = topic.get("retention.bytes").unwrap_or(-1);
            let p = replica.partition;
            match replica.log.apply_retention(now, ms, bytes) {
                Ok(0) => {}
                Ok(n) => {
                    info!(topic = %name, partition = p, segments = n, log_start = replica.log.log_start_offset(), "retention removed segments")
                }
                Err(e) => warn!(topic = %name, partition = p, error = %e, "retention failed"),
            }
        }
    }

    /// Whether `topic`'s `cleanup.policy` includes `delete` (its default).
    pub fn cleanup_policy_deletes(&self, topic: &str) -> bool {
        let policy = self.topic_config::<String>(topic, "cleanup.policy");
        sluice_core::topics::policy_includes(policy.as_deref(), "delete")
    }

    /// Compacts the dirtiest log that is due (one pass), as Kafka's log cleaner
    /// thread does: a compacted topic's log whose dirty ratio reached
    /// `min.cleanable.dirty.ratio`, whose oldest dirty record waited longer than
    /// `max.compaction.lag.ms`, or whose kept tombstones are due. Every replica
    /// cleans its own log. True if a pass ran.
    pub async fn clean_dirtiest_log(&self) -> bool {
        let now = self.env.clock.wall_ms();
        let mut dirtiest: Option<(f64, String, Arc<Replica>, CleanConfig)> = None;
        let busy = self
            .cleaning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, replica, topic) in self.replicas_with_policy("compact") {
            if busy.contains(&(name.clone(), replica.partition)) {
                continue;
            }
            let min_ratio: f64 = topic.get("min.cleanable.dirty.ratio").unwrap_or(0.5);
            let cfg = CleanConfig {
                now_ms: now,
                delete_retention_ms: topic.get("delete.retention.ms").unwrap_or(86_400_000),
                min_compaction_lag_ms: topic.get("min.compaction.lag.ms").unwrap_or(0),
                dedupe_buffer_bytes: usize::try_from(self.config.log_cleaner_dedupe_buffer_size)
                    .unwrap_or(usize::MAX),
                io_max_bytes_per_second: match self.config.log_cleaner_io_max_bytes_per_second {
                    u64::MAX => f64::INFINITY,
                    rate => rate as f64,
                },
            };
            let max_lag = topic.get("max.compaction.lag.ms").unwrap_or(i64::MAX);
            let d = replica.log.dirtiness(now, cfg.min_compaction_lag_ms);
            let tombstones = d
                .oldest_tombstone_ms
                .is_some_and(|t| now.saturating_sub(t) >= cfg.delete_retention_ms);
            let due =
                sluice_core::compaction::due(d.ratio(), min_ratio, d.oldest_dirty_ms, now, max_lag);
            if (due || tombstones) && dirtiest.as_ref().is_none_or(|(r, ..)| d.ratio() > *r) {
                dirtiest = Some((d.ratio(), name, replica, cfg));
            }
        }
        let Some((_, name, replica, cfg)) = dirtiest else {
            return false;
        };
        let p = replica.partition;
        let Some(_claim) = CleanerClaim::take(&self.cleaning, (name.clone(), p)) else {
            // Another cleaner took it since the look above.
            return false;
        };
        let log = replica.log.clone();
        let began = self.env.clock.monotonic();
        match self.env.blocking(move || log.clean(&cfg)).await {
            Some(Ok(Some(stats))) => {
                let ms = self.env.clock.monotonic().saturating_sub(began).as_millis() as u64;
                info!(topic = %name, partition = p, end = stats.end, removed = stats.records_removed,
                    mapped = stats.bytes_mapped, read = stats.bytes_read, written = stats.bytes_written, map_bytes = stats.map_bytes,
                    elapsed_ms = ms, "compacted");
                true
            }
            Some(Ok(None)) | None => false,
            Some(Err(e)) => {
                warn!(topic = %name, partition = p, error = %e, "compaction failed; trying again later");
                false
            }
        }
    }

    /// A compacted replica's dirty ratio as its cleaner sees it now (None for a topic
    /// that is not compacted).
    pub fn dirty_ratio(&self, replica: &Replica) -> Option<f64> {
        if !self.cleanup_policy_compacts(&replica.topic) {
            return None;
        }
        let lag = self
            .topic_config(&replica.topic, "min.compaction.lag.ms")
            .unwrap_or(0);
        Some(replica.log.dirtiness(self.env.clock.wall_ms(), lag).ratio())
    }

    /// Whether `topic`'s `cleanup.policy` includes `compact`.
    pub fn cleanup_policy_compacts(&self, topic: &str) -> bool {
        let policy = self.topic_config::<String>(topic, "cleanup.policy");
        sluice_core::topics::policy_includes(policy.as_deref(), "compact")
    }

    /// A topic config's value, read in place (this is on the produce path).
    fn topic_config<T: std::str::FromStr>(&self, topic: &str, key: &str) -> Option<T> {
        self.lock()
            .image
            .topics
            .get(topic)?
            .configs
            .get(key)?
            .parse()
            .ok()
    }

    /// What `topic`'s configs ask of each batch produced to it (None: no such topic).
    pub fn produce_policy(&self, topic: &str) -> Option<ProducePolicy> {
        let st = self.lock();
        let configs = &st.image.topics.get(topic)?.configs;
        Some(ProducePolicy::of(configs, self.config.message_max_bytes))
    }

    /// `min.insync.replicas` of a topic.
    pub fn min_insync_replicas(&self, topic: &str) -> i32 {
        self.topic_config(topic, "min.insync.replicas")
            .unwrap_or(self.config.min_insync_replicas)
    }

    /// Creates a topic through the controller (or only checks it, with
    /// `validate_only`), placing its replicas over the live brokers.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Topic, BrokerError> {
        self.create_topic_placed(
            name,
            partitions,
            replication_factor,
            configs,
            None,
            validate_only,
        )
        .await
        .map(|(topic, _)| topic)
    }

    /// Creates a topic with its replicas as `assigned` (partition by partition) or
    /// placed over the live brokers. Returns it with its replication factor.
    pub async fn create_topic_placed(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        assigned: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(Topic, i16), BrokerError> {
        sluice_core::topics::validate_name(name)?;
        sluice_core::topics::validate_configs(&configs)?;
        if partitions < 1 {
            return Err(TopicError::InvalidPartitions(partitions).into());
        }
        let image = self.image();
        if image.topics.contains_key(name) {
            return Err(TopicError::Exists(name.to_string()).into());
        }
        let replicas = match assigned {
            Some(replicas) => {
                if let Some(b) = replicas
                    .iter()
                    .flatten()
                    .find(|b| !image.brokers.contains_key(b))
                {
                    return Err(MetadataError::UnknownBroker(*b).into());
                }
                replicas
            }
            None => {
                let start = self.env.random_below(1 << 16) as usize;
                place_replicas(
                    &image.live_brokers(),
                    0,
                    partitions,
                    replication_factor,
                    start,
                )?
            }
        };
        let rf = replicas.first().map_or(0, Vec::len) as i16;
        let id = self.new_topic_id();
        let topic = Topic {
            id,
            partitions,
            configs: configs.clone(),
        };
        if validate_only {
            return Ok((topic, rf));
        }
        self.controller
            .write(Command::CreateTopic {
                name: name.to_string(),
                id,
                configs,
                replicas,
            })
            .await??;
        self.follow_up().await;
        info!(
            topic = name,
            partitions,
            replication_factor = rf,
            "topic created"
        );
        Ok((topic, rf))
    }

    /// A producer id never handed out before, from blocks the controller reserves.
    pub async fn new_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            match self
                .controller
                .write(Command::AllocateProducerIds {
                    count: PRODUCER_ID_BLOCK,
                })
                .await??
            {
                Applied::ProducerIds { first } => *ids = (first, first + PRODUCER_ID_BLOCK),
                other => {
                    return Err(BrokerError::Corrupt {
                        file: "metadata".into(),
                        why: format!("producer id allocation answered {other:?}"),
                    })
                }
            }
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

    /// Per partition of an internal topic, its log if this broker holds a replica of
    /// it; `None` if the topic does not exist.
    pub fn internal_logs(&self, name: &str) -> Option<Vec<Option<Arc<PartitionLog>>>> {
        let count = self.topic(name)?.partitions;
        Some((0..count).map(|p| self.partition(name, p)).collect())
    }

    /// The logs of an internal topic (`__consumer_offsets`, `__transaction_state`).
    /// On first use the topic is created (compacted, replication factor min(3,
    /// brokers), as Kafka does) in the background, and the caller is told to retry,
    /// as Kafka answers COORDINATOR_NOT_AVAILABLE meanwhile.
    pub fn internal_topic(
        &self,
        name: &str,
        partitions: i32,
        segment_bytes: u64,
    ) -> Result<Vec<Option<Arc<PartitionLog>>>, BrokerError> {
        if let Some(logs) = self.internal_logs(name) {
            return Ok(logs);
        }
        let Some(this) = self.this.get().and_then(std::sync::Weak::upgrade) else {
            return Err(TopicError::Unknown(name.into()).into());
        };
        if self.topic(name).is_none()
            && self
                .creating
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string())
        {
            let broker = this;
            let name = name.to_string();
            self.env.spawn(async move {
                let configs = BTreeMap::from([
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    ("segment.bytes".to_string(), segment_bytes.to_string()),
                ]);
                match broker
                    .create_topic(&name, partitions, -1, configs, false)
                    .await
                {
                    Ok(_) => info!(topic = %name, partitions, "created internal topic"),
                    Err(BrokerError::Topic(TopicError::Exists(_))) => {}
                    Err(e) => warn!(topic = %name, error = %e, "could not create internal topic"),
                }
                broker
                    .creating
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
            });
        }
        Err(TopicError::Unknown(name.into()).into())
    }

    /// Creates a topic with the broker defaults if auto-creation is enabled.
    pub async fn auto_create(&self, name: &str) -> Option<Result<Topic, BrokerError>> {
        if !self.config.auto_create_topics_enable {
            return None;
        }
        Some(
            match self
                .create_topic(
                    name,
                    self.config.num_partitions,
                    self.config.default_replication_factor,
                    BTreeMap::new(),
                    false,
                )
                .await
            {
                // Lost a race with another creator: that is fine.
                Err(BrokerError::Topic(TopicError::Exists(_))) => self
                    .topic(name)
                    .ok_or_else(|| TopicError::Unknown(name.into()).into()),
                other => other,
            },
        )
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        self.controller
            .write(Command::DeleteTopic {
                name: name.to_string(),
            })
            .await??;
        self.follow_up().await;
        info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assigned: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let image = self.image();
        let current = image
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?
            .partitions;
        if count <= current {
            return Err(TopicError::PartitionsCannotShrink {
                topic: name.to_string(),
                current,
                requested: count,
            }
            .into());
        }
        let rf = image
            .partition(name, 0)
            .map_or(1, |p| p.replicas.len() as i16);
        let replicas = match assigned {
            // Kafka's rules: one list per new partition, each of the topic's
            // replication factor, distinct registered brokers.
            Some(assigned) => {
                let invalid = |replicas: &[i32], why: String| {
                    MetadataError::InvalidAssignment(replicas.to_vec(), why)
                };
                if assigned.len() != (count - current) as usize {
                    return Err(invalid(
                        &[],
                        format!(
                            "{} assignments for {} new partitions",
                            assigned.len(),
                            count - current
                        ),
                    )
                    .into());
                }
                for replicas in &assigned {
                    let distinct: std::collections::BTreeSet<_> = replicas.iter().collect();
                    if replicas.len() != rf as usize || distinct.len() != replicas.len() {
                        return Err(invalid(
                            replicas,
                            format!("each new partition needs {rf} distinct brokers"),
                        )
                        .into());
                    }
                    if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
                        return Err(
                            invalid(replicas, format!("broker {b} is not registered")).into()
                        );
                    }
                }
                assigned
            }
            None => {
                let start = self.env.random_below(1 << 16) as usize;
                place_replicas(&image.live_brokers(), current, count - current, rf, start)?
            }
        };
        if validate_only {
            return Ok(());
        }
        self.controller
            .write(Command::CreatePartitions {
                name: name.to_string(),
                replicas,
            })
            .await??;
        self.follow_up().await;
        Ok(())
    }

    /// Starts (or with `None` cancels) moving a partition to `target` replicas.
    pub async fn reassign(
        &self,
        topic: &str,
        partition: i32,
        target: Option<Vec<i32>>,
    ) -> Result<(), BrokerError> {
        self.controller
            .write(Command::Reassign {
                topic: topic.to_string(),
                partition,
                target,
            })
            .await??;
        Ok(())
    }

    /// Notes that this broker's view now reflects the metadata log up to `index`.
    pub fn followed(&self, index: u64) {
        self.followed.send_if_modified(|at| {
            let newer = index > *at;
            *at = (*at).max(index);
            newer
        });
    }

    /// Waits until this broker's view holds everything its controller has applied,
    /// so an admin change it answers is visible through it at once (a topic created
    /// here can be produced to here).
    async fn follow_up(&self) {
        let target = self.controller.subscribe().borrow().index;
        let mut rx = self.followed.subscribe();
        while *rx.borrow_and_update() < target {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Changes dynamic configs; with `validate_only`, only checks the change would apply.
    pub async fn alter_configs(
        &self,
        command: Command,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        // What a client sets is checked strictly here, at the door; the state machine
        // checks only what every stored config passes.
        if let Command::AlterConfigs {
            resource: ConfigResource::Topic(_),
            set,
            ..
        } = &command
        {
            sluice_core::topics::validate_configs(set)?;
        }
        if let Command::AlterConfigs {
            resource: ConfigResource::Group(group),
            set,
            delete,
        } = &command
        {
            let mut configs = self
                .image()
                .group_configs
                .get(group)
                .cloned()
                .unwrap_or_default();
            configs.extend(set.clone());
            configs.retain(|k, _| !delete.contains(k));
            sluice_core::group::consumer::check_group_configs(
                &configs,
                &self.config.group_limits(),
            )
            .map_err(BrokerError::InvalidConfig)?;
        }
        if validate_only {
            (*self.image()).clone().apply(&command)?;
            return Ok(());
        }
        self.controller.write(command).await??;
        self.follow_up().await;
        Ok(())
    }
}

/// The cluster id in `meta.properties`, written with a fresh random one on first start.
pub fn local_cluster_id(env: &Env, node_id: i32) -> Result<String, BrokerError> {
    let disk = env.disk.as_ref();
    match checkpoint::read(disk, Path::new(META)).map_err(io("read meta.properties"))? {
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .find_map(|l| l.strip_prefix("cluster.id=").map(str::to_owned))
            .ok_or_else(|| BrokerError::Corrupt {
                file: META.into(),
                why: "no cluster.id".into(),
            }),
        None => {
            let id = random_cluster_id(env);
            let text = format!("version=1\ncluster.id={id}\nnode.id={node_id}\n");
            checkpoint::write_atomic(disk, Path::new(META), text.as_bytes())
                .map_err(io("write meta.properties"))?;
            Ok(id)
        }
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

/// A topic's configs as set, falling back on the broker's defaults.
struct TopicSettings {
    configs: BTreeMap<String, String>,
    defaults: Arc<BTreeMap<&'static str, String>>,
}

impl TopicSettings {
    fn get<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.configs
            .get(key)
            .or_else(|| self.defaults.get(key))?
            .parse()
            .ok()
    }
}
