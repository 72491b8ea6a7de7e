//! Broker settings, named and defaulted as Kafka's broker configs.

use std::collections::BTreeMap;

/// A client listener beside the first one: its name, the address it binds and the
/// address it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraListener {
    pub name: String,
    pub listen: String,
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Its security protocol is SSL: connections begin with a TLS handshake.
    pub tls: bool,
}

/// `ssl.client.auth`: whether SSL listeners ask clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

/// The TLS settings of SSL listeners (Kafka's `ssl.*` broker configs, PEM only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SslConfig {
    /// ssl.keystore.location: a PEM file with the certificate chain and private key.
    pub keystore_location: String,
    /// ssl.truststore.location: PEM CA certificates that client certificates must
    /// chain to.
    pub truststore_location: Option<String>,
    /// ssl.client.auth
    pub client_auth: ClientAuth,
}

/// A broker's configuration. Field names follow Kafka's (`num.partitions` is
/// `num_partitions`); the binary loads them from TOML and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// node.id
    pub node_id: i32,
    /// listeners: the address to bind (the first client listener; brokers replicate
    /// over it).
    pub listen: String,
    /// That listener's name (`PLAINTEXT` unless `listeners` names it otherwise).
    pub listener_name: String,
    /// The other client listeners of `listeners`, each bound and served.
    pub extra_listeners: Vec<ExtraListener>,
    /// The `ssl.*` settings, when a listener is SSL.
    pub ssl: Option<SslConfig>,
    /// advertised.listeners host and port, as clients must reach us.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// log.dirs (one).
    pub data_dir: String,
    /// num.partitions
    pub num_partitions: i32,
    /// auto.create.topics.enable
    pub auto_create_topics_enable: bool,
    /// message.max.bytes: the largest record batch a produce may carry.
    pub message_max_bytes: usize,
    /// socket.request.max.bytes: the largest request frame.
    pub socket_request_max_bytes: usize,
    /// log.segment.bytes
    pub log_segment_bytes: u64,
    /// log.roll.ms
    pub log_roll_ms: u64,
    /// log.index.interval.bytes
    pub log_index_interval_bytes: u64,
    /// default.replication.factor
    pub default_replication_factor: i16,
    /// Requests in flight per connection before the broker stops reading from it.
    pub connection_inflight_max: usize,
    /// connections.max.idle.ms: a connection with nothing read for this long and no
    /// request in flight is closed.
    pub connections_max_idle_ms: u64,
    /// queued.max.request.bytes: bytes of request frames being read or handled, over
    /// all connections, before the broker stops reading requests (-1: no bound).
    pub queued_max_request_bytes: i64,
    /// offsets.topic.num.partitions
    pub offsets_topic_num_partitions: i32,
    /// offsets.topic.segment.bytes
    pub offsets_topic_segment_bytes: u64,
    /// group.min.session.timeout.ms
    pub group_min_session_timeout_ms: i32,
    /// group.max.session.timeout.ms
    pub group_max_session_timeout_ms: i32,
    /// group.initial.rebalance.delay.ms
    pub group_initial_rebalance_delay_ms: i32,
    /// group.max.size
    pub group_max_size: i32,
    /// group.consumer.session.timeout.ms (KIP-848 groups)
    pub group_consumer_session_timeout_ms: i32,
    /// group.consumer.heartbeat.interval.ms (KIP-848 groups)
    pub group_consumer_heartbeat_interval_ms: i32,
    /// group.consumer.max.size (KIP-848 groups)
    pub group_consumer_max_size: i32,
    /// group.consumer.migration.policy (KIP-848 online upgrade / downgrade)
    pub group_consumer_migration_policy: crate::group::MigrationPolicy,
    /// group.share.session.timeout.ms (KIP-932 groups)
    pub group_share_session_timeout_ms: i32,
    /// group.share.heartbeat.interval.ms (KIP-932 groups)
    pub group_share_heartbeat_interval_ms: i32,
    /// group.share.max.size (members per share group)
    pub group_share_max_size: i32,
    /// group.share.record.lock.duration.ms (how long a delivered record stays acquired)
    pub group_share_record_lock_duration_ms: i32,
    /// group.share.delivery.count.limit (deliveries before a record is archived)
    pub group_share_delivery_count_limit: i32,
    /// group.share.partition.max.record.locks (in-flight records per share partition)
    pub group_share_partition_max_record_locks: i32,
    /// group.share.max.share.sessions (share sessions per broker)
    pub group_share_max_share_sessions: i32,
    /// share.coordinator.state.topic.num.partitions (partitions of __share_group_state)
    pub share_coordinator_state_topic_num_partitions: i32,
    /// offset.metadata.max.bytes
    pub offset_metadata_max_bytes: i32,
    /// offsets.retention.minutes
    pub offsets_retention_minutes: i64,
    /// log.cleaner.backoff.ms: how often the cleaner looks for a log to compact (and
    /// `__consumer_offsets` is cleaned).
    pub log_cleaner_backoff_ms: u64,
    /// log.cleaner.dedupe.buffer.size: the cleaner's offset map memory.
    pub log_cleaner_dedupe_buffer_size: u64,
    /// log.cleaner.enable: whether compacted topics are compacted.
    pub log_cleaner_enable: bool,
    /// log.cleaner.threads: cleaners working at once, each on another log.
    pub log_cleaner_threads: u32,
    /// log.cleaner.io.max.bytes.per.second: each cleaner's bytes read plus written
    /// per second (Kafka's default, u64::MAX here: no limit).
    pub log_cleaner_io_max_bytes_per_second: u64,
    /// log.retention.ms (-1: keep forever)
    pub log_retention_ms: i64,
    /// log.retention.bytes per partition (-1: no limit)
    pub log_retention_bytes: i64,
    /// log.retention.check.interval.ms
    pub log_retention_check_interval_ms: u64,
    /// transaction.state.log.num.partitions
    pub transaction_state_log_num_partitions: i32,
    /// transaction.state.log.segment.bytes
    pub transaction_state_log_segment_bytes: u64,
    /// transaction.max.timeout.ms
    pub transaction_max_timeout_ms: i32,
    /// controller.quorum.voters: `id@host:port,...`; empty for a single node that is
    /// its own quorum.
    pub controller_quorum_voters: String,
    /// broker.rack
    pub broker_rack: Option<String>,
    /// broker.session.timeout.ms: a broker silent this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// broker.heartbeat.interval.ms
    pub broker_heartbeat_interval_ms: u64,
    /// replica.lag.time.max.ms: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// replica.fetch.wait.max.ms: how long a follower's fetch waits for data.
    pub replica_fetch_wait_max_ms: u64,
    /// min.insync.replicas (topic default)
    pub min_insync_replicas: i32,
    /// auto.leader.rebalance.enable: move leadership back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// leader.imbalance.check.interval.seconds
    pub leader_imbalance_check_interval_seconds: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listen: "127.0.0.1:9092".into(),
            listener_name: "PLAINTEXT".into(),
            extra_listeners: Vec::new(),
            ssl: None,
            advertised_host: "localhost".into(),
            advertised_port: 9092,
            data_dir: "./data".into(),
            num_partitions: 1,
            auto_create_topics_enable: true,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: 104_857_600,
            log_segment_bytes: 1 << 30,
            log_roll_ms: 7 * 24 * 3600 * 1000,
            log_index_interval_bytes: 4096,
            default_replication_factor: 1,
            connection_inflight_max: 32,
            queued_max_request_bytes: 256 << 20,
            connections_max_idle_ms: 600_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 104_857_600,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_max_size: i32::MAX,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_max_size: i32::MAX,
            group_consumer_migration_policy: crate::group::MigrationPolicy::Bidirectional,
            group_share_session_timeout_ms: 45_000,
            group_share_heartbeat_interval_ms: 5_000,
            group_share_max_size: 200,
            group_share_record_lock_duration_ms: 30_000,
            group_share_delivery_count_limit: 5,
            group_share_partition_max_record_locks: 2_000,
            group_share_max_share_sessions: 2_000,
            share_coordinator_state_topic_num_partitions: 50,
            offset_metadata_max_bytes: 4096,
            offsets_retention_minutes: 10_080,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_dedupe_buffer_size: 128 << 20,
            log_cleaner_enable: true,
            log_cleaner_threads: 1,
            log_cleaner_io_max_bytes_per_second: u64::MAX,
            log_retention_ms: 7 * 24 * 3600 * 1000,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 300_000,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_segment_bytes: 104_857_600,
            transaction_max_timeout_ms: 900_000,
            controller_quorum_voters: String::new(),
            broker_rack: None,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            min_insync_replicas: 1,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
        }
    }
}

impl BrokerConfig {
    /// The group coordinator's limits.
    pub fn group_limits(&self) -> crate::group::GroupLimits {
        crate::group::GroupLimits {
            session_timeout_min_ms: self.group_min_session_timeout_ms,
            session_timeout_max_ms: self.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            group_size_max: usize::try_from(self.group_max_size).unwrap_or(0),
            offset_metadata_max_bytes: usize::try_from(self.offset_metadata_max_bytes).unwrap_or(0),
            offsets_retention_ms: self.offsets_retention_minutes.saturating_mul(60_000),
            consumer: crate::group::ConsumerLimits {
                session_timeout_ms: self.group_consumer_session_timeout_ms,
                heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
                max_size: usize::try_from(self.group_consumer_max_size).unwrap_or(0),
                migration_policy: self.group_consumer_migration_policy,
            },
            share: crate::group::share::ShareGroupLimits {
                session_timeout_ms: self.group_share_session_timeout_ms,
                heartbeat_interval_ms: self.group_share_heartbeat_interval_ms,
                max_size: usize::try_from(self.group_share_max_size).unwrap_or(0),
            },
        }
    }

    /// This configuration under Kafka's names, as DescribeConfigs reports it.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "advertised.listeners",
                std::iter::once(format!(
                    "{}://{}:{}",
                    self.listener_name, self.advertised_host, self.advertised_port
                ))
                .chain(
                    self.extra_listeners.iter().map(|l| {
                        format!("{}://{}:{}", l.name, l.advertised_host, l.advertised_port)
                    }),
                )
                .collect::<Vec<_>>()
                .join(","),
            ),
            (
                "auto.create.topics.enable",
                self.auto_create_topics_enable.to_string(),
            ),
            (
                "connections.max.idle.ms",
                self.connections_max_idle_ms.to_string(),
            ),
            (
                "default.replication.factor",
                self.default_replication_factor.to_string(),
            ),
            (
                "group.initial.rebalance.delay.ms",
                self.group_initial_rebalance_delay_ms.to_string(),
            ),
            (
                "group.max.session.timeout.ms",
                self.group_max_session_timeout_ms.to_string(),
            ),
            ("group.max.size", self.group_max_size.to_string()),
            (
                "group.consumer.session.timeout.ms",
                self.group_consumer_session_timeout_ms.to_string(),
            ),
            (
                "group.consumer.heartbeat.interval.ms",
                self.group_consumer_heartbeat_interval_ms.to_string(),
            ),
            (
                "group.consumer.max.size",
                self.group_consumer_max_size.to_string(),
            ),
            (
                "group.consumer.migration.policy",
                self.group_consumer_migration_policy.name().to_string(),
            ),
            (
                "group.share.session.timeout.ms",
                self.group_share_session_timeout_ms.to_string(),
            ),
            (
                "group.share.heartbeat.interval.ms",
                self.group_share_heartbeat_interval_ms.to_string(),
            ),
            (
                "group.share.max.size",
                self.group_share_max_size.to_string(),
            ),
            (
                "group.share.record.lock.duration.ms",
                self.group_share_record_lock_duration_ms.to_string(),
            ),
            (
                "group.share.delivery.count.limit",
                self.group_share_delivery_count_limit.to_string(),
            ),
            (
                "group.share.partition.max.record.locks",
                self.group_share_partition_max_record_locks.to_string(),
            ),
            (
                "group.share.max.share.sessions",
                self.group_share_max_share_sessions.to_string(),
            ),
            (
                "share.coordinator.state.topic.num.partitions",
                self.share_coordinator_state_topic_num_partitions
                    .to_string(),
            ),
            (
                "group.min.session.timeout.ms",
                self.group_min_session_timeout_ms.to_string(),
            ),
            (
                "listeners",
                std::iter::once(format!("{}://{}", self.listener_name, self.listen))
                    .chain(
                        self.extra_listeners
                            .iter()
                            .map(|l| format!("{}://{}", l.name, l.listen)),
                    )
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "log.cleaner.backoff.ms",
                self.log_cleaner_backoff_ms.to_string(),
            ),
            (
                "log.cleaner.dedupe.buffer.size",
                self.log_cleaner_dedupe_buffer_size.to_string(),
            ),
            ("log.cleaner.enable", self.log_cleaner_enable.to_string()),
            (
                "log.cleaner.io.max.bytes.per.second",
                self.log_cleaner_io_max_bytes_per_second.to_string(),
            ),
            ("log.cleaner.threads", self.log_cleaner_threads.to_string()),
            ("log.dirs", self.data_dir.clone()),
            (
                "log.index.interval.bytes",
                self.log_index_interval_bytes.to_string(),
            ),
            ("log.retention.bytes", self.log_retention_bytes.to_string()),
            (
                "log.retention.check.interval.ms",
                self.log_retention_check_interval_ms.to_string(),
            ),
            ("log.retention.ms", self.log_retention_ms.to_string()),
            ("log.roll.ms", self.log_roll_ms.to_string()),
            ("log.segment.bytes", self.log_segment_bytes.to_string()),
            ("message.max.bytes", self.message_max_bytes.to_string()),
            ("node.id", self.node_id.to_string()),
            ("num.partitions", self.num_partitions.to_string()),
            (
                "offset.metadata.max.bytes",
                self.offset_metadata_max_bytes.to_string(),
            ),
            (
                "offsets.retention.minutes",
                self.offsets_retention_minutes.to_string(),
            ),
            (
                "offsets.topic.num.partitions",
                self.offsets_topic_num_partitions.to_string(),
            ),
            (
                "offsets.topic.segment.bytes",
                self.offsets_topic_segment_bytes.to_string(),
            ),
            (
                "queued.max.request.bytes",
                self.queued_max_request_bytes.to_string(),
            ),
            (
                "socket.request.max.bytes",
                self.socket_request_max_bytes.to_string(),
            ),
            (
                "transaction.max.timeout.ms",
                self.transaction_max_timeout_ms.to_string(),
            ),
            (
                "transaction.state.log.num.partitions",
                self.transaction_state_log_num_partitions.to_string(),
            ),
            (
                "transaction.state.log.segment.bytes",
                self.transaction_state_log_segment_bytes.to_string(),
            ),
        ]
    }
}

/// Topic-level configs this broker knows, with their broker-level defaults, as
/// DescribeConfigs reports them.
pub fn topic_config_defaults(broker: &BrokerConfig) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("cleanup.policy", "delete".to_string()),
        ("compression.gzip.level", "-1".to_string()),
        ("compression.lz4.level", "9".to_string()),
        ("compression.type", "producer".to_string()),
        ("compression.zstd.level", "3".to_string()),
        ("delete.retention.ms", "86400000".to_string()),
        ("file.delete.delay.ms", "60000".to_string()),
        ("flush.messages", i64::MAX.to_string()),
        ("flush.ms", i64::MAX.to_string()),
        ("follower.replication.throttled.replicas", String::new()),
        ("leader.replication.throttled.replicas", String::new()),
        ("local.retention.bytes", "-2".to_string()),
        ("local.retention.ms", "-2".to_string()),
        (
            "message.timestamp.after.max.ms",
            crate::topics::DEFAULT_TIMESTAMP_AFTER_MAX_MS.to_string(),
        ),
        ("message.timestamp.before.max.ms", i64::MAX.to_string()),
        ("preallocate", "false".to_string()),
        ("remote.log.copy.disable", "false".to_string()),
        ("remote.log.delete.on.disable", "false".to_string()),
        ("remote.storage.enable", "false".to_string()),
        ("segment.jitter.ms", "0".to_string()),
        ("max.compaction.lag.ms", i64::MAX.to_string()),
        ("min.cleanable.dirty.ratio", "0.5".to_string()),
        ("min.compaction.lag.ms", "0".to_string()),
        ("max.message.bytes", broker.message_max_bytes.to_string()),
        ("message.timestamp.type", "CreateTime".to_string()),
        (
            "min.insync.replicas",
            broker.min_insync_replicas.to_string(),
        ),
        ("retention.bytes", broker.log_retention_bytes.to_string()),
        ("retention.ms", broker.log_retention_ms.to_string()),
        ("segment.bytes", broker.log_segment_bytes.to_string()),
        ("segment.index.bytes", "10485760".to_string()),
        ("segment.ms", broker.log_roll_ms.to_string()),
        (
            "index.interval.bytes",
            broker.log_index_interval_bytes.to_string(),
        ),
        ("unclean.leader.election.enable", "false".to_string()),
    ])
}
