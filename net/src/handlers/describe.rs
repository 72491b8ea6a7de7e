//! DescribeConfigs (topics and this broker) and DescribeCluster.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::cluster::metadata::DYNAMIC_BROKER_CONFIGS;
use sluice_core::config::{topic_config_defaults, BrokerConfig};

use crate::broker::Broker;
use crate::codes;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
// Kafka's ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// Kafka's DYNAMIC_GROUP_CONFIG.
const SOURCE_DYNAMIC_GROUP: i8 = 8;
// Kafka's ConfigType values.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => TYPE_LIST,
        "compression.type"
        | "message.timestamp.type"
        | "listeners"
        | "advertised.listeners"
        | "log.dirs" => TYPE_STRING,
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => {
            TYPE_LIST
        }
        "unclean.leader.election.enable"
        | "auto.create.topics.enable"
        | "preallocate"
        | "remote.storage.enable"
        | "remote.log.copy.disable"
        | "remote.log.delete.on.disable" => TYPE_BOOLEAN,
        "max.message.bytes"
        | "min.insync.replicas"
        | "segment.bytes"
        | "segment.index.bytes"
        | "index.interval.bytes"
        | "compression.gzip.level"
        | "compression.lz4.level"
        | "compression.zstd.level"
        | "num.partitions"
        | "message.max.bytes"
        | "socket.request.max.bytes"
        | "node.id"
        | "log.segment.bytes"
        | "log.index.interval.bytes"
        | "default.replication.factor" => TYPE_INT,
        "min.cleanable.dirty.ratio" => TYPE_DOUBLE,
        _ => TYPE_LONG,
    }
}

/// Broker configs as DescribeConfigs reports them: (name, value, source).
fn broker_configs(c: &BrokerConfig) -> Vec<(String, String, i8)> {
    let defaults = BrokerConfig::default().entries();
    c.entries()
        .into_iter()
        .map(|(name, value)| {
            let source = if defaults.contains(&(name, value.clone())) {
                SOURCE_DEFAULT
            } else {
                SOURCE_STATIC_BROKER
            };
            (name.to_string(), value, source)
        })
        .collect()
}

/// The dynamic broker configs in force here: this broker's own (when `own`), else the
/// cluster-wide defaults.
fn dynamic_broker_configs(broker: &Broker, own: bool) -> Vec<(String, String, i8)> {
    let image = broker.image();
    DYNAMIC_BROKER_CONFIGS
        .iter()
        .map(|name| {
            let mine = own
                .then(|| image.broker_configs.get(&broker.config.node_id)?.get(*name))
                .flatten();
            let cluster_wide = image.broker_configs.get(&-1).and_then(|c| c.get(*name));
            match (mine, cluster_wide) {
                (Some(v), _) => (name.to_string(), v.clone(), SOURCE_DYNAMIC_BROKER),
                (None, Some(v)) => (name.to_string(), v.clone(), SOURCE_DYNAMIC_DEFAULT),
                // Unset: Kafka's default, no throttle (Long.MAX_VALUE bytes/s).
                (None, None) => (name.to_string(), i64::MAX.to_string(), SOURCE_DEFAULT),
            }
        })
        .collect()
}

pub fn describe_configs(broker: &Arc<Broker>, req: DescribeConfigsRequest) -> ResponseKind {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries: Vec<(String, String, i8)> = match r.resource_type {
                RESOURCE_TOPIC => match broker.topic(&name) {
                    None => {
                        return result
                            .with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "topic '{name}' does not exist"
                            ))))
                    }
                    Some(topic) => topic_config_defaults(&broker.config)
                        .into_iter()
                        .map(|(k, v)| match topic.configs.get(k) {
                            Some(set) => (k.to_string(), set.clone(), SOURCE_TOPIC),
                            None => (k.to_string(), v, SOURCE_DEFAULT),
                        })
                        .collect(),
                },
                RESOURCE_GROUP => {
                    let image = broker.image();
                    let set = image.group_configs.get(&name);
                    let limits = broker.config.group_limits();
                    let (session, interval) = limits.consumer.for_group(None);
                    let (share_session, share_interval) = limits.share.for_group(None);
                    [
                        ("consumer.session.timeout.ms", session.to_string()),
                        ("consumer.heartbeat.interval.ms", interval.to_string()),
                        ("share.session.timeout.ms", share_session.to_string()),
                        ("share.heartbeat.interval.ms", share_interval.to_string()),
                        (
                            "share.record.lock.duration.ms",
                            broker
                                .config
                                .group_share_record_lock_duration_ms
                                .to_string(),
                        ),
                        ("share.auto.offset.reset", "latest".to_string()),
                        ("share.isolation.level", "read_uncommitted".to_string()),
                    ]
                    .into_iter()
                    .map(|(k, default)| match set.and_then(|c| c.get(k)) {
                        Some(v) => (k.to_string(), v.clone(), SOURCE_DYNAMIC_GROUP),
                        None => (k.to_string(), default, SOURCE_DEFAULT),
                    })
                    .collect()
                }
                RESOURCE_BROKER if name.is_empty() || name == broker.config.node_id.to_string() => {
                    let mut entries = broker_configs(&broker.config);
                    entries.extend(dynamic_broker_configs(broker, !name.is_empty()));
                    entries
                }
                _ => {
                    return result
                        .with_error_code(codes::INVALID_REQUEST)
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "unsupported resource type {} or unknown broker '{name}'",
                            r.resource_type
                        ))))
                }
            };
            let wanted = r
                .configuration_keys
                .as_ref()
                .map(|keys| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
            let configs = entries
                .into_iter()
                .filter(|(k, _, _)| wanted.as_ref().is_none_or(|w| w.contains(k)))
                .map(|(k, v, source)| {
                    let read_only = r.resource_type == RESOURCE_BROKER
                        && !DYNAMIC_BROKER_CONFIGS.contains(&k.as_str());
                    DescribeConfigsResourceResult::default()
                        .with_config_type(config_type(&k))
                        .with_name(StrBytes::from_string(k))
                        .with_value(Some(StrBytes::from_string(v)))
                        .with_config_source(source)
                        .with_read_only(read_only)
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results))
}

/// DescribeCluster: the live (unfenced) brokers of the metadata image and the
/// metadata quorum's leader, as Metadata answers them.
pub fn describe_cluster(broker: &Arc<Broker>, client: &super::Client) -> ResponseKind {
    let image = broker.image();
    let brokers = image
        .live_endpoints(&client.listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(StrBytes::from_string(host.to_string()))
                .with_port(i32::from(port))
                .with_rack(rack.map(|r| StrBytes::from_string(r.to_string())))
        })
        .collect();
    ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_endpoint_type(1)
            .with_cluster_id(StrBytes::from_string(broker.cluster_id()))
            .with_controller_id(BrokerId(broker.controller.leader().unwrap_or(-1)))
            .with_brokers(brokers)
            .with_cluster_authorized_operations(codes::AUTHORIZED_OPERATIONS_OMITTED),
    )
}
