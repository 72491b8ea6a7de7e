//! Metadata: the live brokers, and the requested topics with each partition's leader,
//! leader epoch, replicas and ISR. Unknown topics are auto-created when allowed, as
//! in Kafka.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest,
    MetadataResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::cluster::metadata::{MetadataImage, PartitionState, TopicImage, NO_LEADER};
use sluice_core::topics::TopicError;
use uuid::Uuid;

use super::{Client, Reply};
use crate::broker::{Broker, BrokerError};
use crate::codes;

pub fn handle(broker: &Arc<Broker>, client: &Client, req: MetadataRequest, version: i16) -> Reply {
    let listener = client.listener.clone();
    let names: Vec<String> = match &req.topics {
        None => broker.topics().into_iter().map(|(n, _)| n).collect(),
        Some(ts) => ts
            .iter()
            .map(|t| match &t.name {
                Some(n) => n.to_string(),
                None => broker
                    .topic_by_id(*t.topic_id.as_bytes())
                    .unwrap_or_default(),
            })
            .collect(),
    };
    // Before v4 there was no flag and creation was implied.
    let may_create = (version < 4 || req.allow_auto_topic_creation)
        && req.topics.is_some()
        && broker.config.auto_create_topics_enable;
    let missing: Vec<String> = names
        .iter()
        .filter(|n| !n.is_empty() && broker.topic(n).is_none())
        .cloned()
        .collect();
    if !may_create || missing.is_empty() {
        return Reply::Now(respond(broker, &listener, &names, &BTreeMap::new(), &req));
    }
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let mut failed = BTreeMap::new();
        for name in missing {
            if let Some(Err(e)) = broker.auto_create(&name).await {
                failed.insert(name, e);
            }
        }
        respond(&broker, &listener, &names, &failed, &req)
    }))
}

fn respond(
    broker: &Broker,
    listener: &str,
    names: &[String],
    failed: &BTreeMap<String, BrokerError>,
    req: &MetadataRequest,
) -> ResponseKind {
    let image = broker.image();
    let topics = names
        .iter()
        .map(|name| {
            let found = match (image.topics.get(name), failed.get(name)) {
                (Some(t), _) => Ok(t),
                (None, Some(e)) => Err(e),
                (None, None) => Err(&UNKNOWN),
            };
            topic_entry(&image, name, found, req.include_topic_authorized_operations)
        })
        .collect();
    // Each broker's endpoint of the listener this request came in on (Kafka leaves
    // out brokers without it).
    let brokers = image
        .live_endpoints(listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host.to_string()))
                .with_port(i32::from(port))
                .with_rack(rack.map(|r| StrBytes::from_string(r.to_string())))
        })
        .collect();
    ResponseKind::Metadata(
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id())))
            .with_controller_id(BrokerId(broker.controller.leader().unwrap_or(-1)))
            .with_topics(topics)
            .with_cluster_authorized_operations(codes::AUTHORIZED_OPERATIONS_OMITTED),
    )
}

static UNKNOWN: BrokerError = BrokerError::Topic(TopicError::Unknown(String::new()));

fn topic_entry(
    image: &MetadataImage,
    name: &str,
    found: Result<&TopicImage, &BrokerError>,
    with_ops: bool,
) -> MetadataResponseTopic {
    let entry = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_topic_authorized_operations(if with_ops {
            0
        } else {
            codes::AUTHORIZED_OPERATIONS_OMITTED
        });
    match found {
        Ok(t) => entry
            .with_topic_id(Uuid::from_bytes(t.id))
            .with_is_internal(crate::internal::is_internal(name))
            .with_partitions(
                t.partitions
                    .iter()
                    .enumerate()
                    .map(|(p, ps)| {
                        let v = PartitionView::of(image, ps);
                        MetadataResponsePartition::default()
                            .with_error_code(v.error_code)
                            .with_partition_index(p as i32)
                            .with_leader_id(BrokerId(ps.leader))
                            .with_leader_epoch(ps.leader_epoch)
                            .with_replica_nodes(v.replicas)
                            .with_isr_nodes(v.isr)
                            .with_offline_replicas(v.offline)
                    })
                    .collect(),
            ),
        Err(BrokerError::Topic(e)) => entry.with_error_code(codes::topic_error(e)),
        Err(BrokerError::Controller(e)) => {
            tracing::warn!(topic = name, error = %e, "auto-create failed");
            entry.with_error_code(codes::LEADER_NOT_AVAILABLE)
        }
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-create failed");
            entry.with_error_code(codes::KAFKA_STORAGE_ERROR)
        }
    }
}

/// A partition as Metadata and DescribeTopicPartitions describe it.
struct PartitionView {
    /// LEADER_NOT_AVAILABLE while it has no leader.
    error_code: i16,
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    /// The replicas whose broker is fenced or gone.
    offline: Vec<BrokerId>,
}

impl PartitionView {
    fn of(image: &MetadataImage, ps: &PartitionState) -> PartitionView {
        let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
        PartitionView {
            error_code: if ps.leader == NO_LEADER {
                codes::LEADER_NOT_AVAILABLE
            } else {
                codes::NONE
            },
            replicas: ids(&ps.replicas),
            isr: ids(&ps.isr),
            offline: ps
                .replicas
                .iter()
                .copied()
                .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
                .map(BrokerId)
                .collect(),
        }
    }
}

/// DescribeTopicPartitions (KIP-966), what Kafka 4's admin client describes topics
/// with: the topics asked (all when none is), by name, their partitions in order,
/// paged at `response_partition_limit` partitions (at most 2000, Kafka's
/// `max.request.partition.size.limit`) from the cursor on; `next_cursor` says where
/// the next page starts. Sluice has no eligible leader replicas (KIP-966's ELR): those
/// lists are empty.
pub fn describe_topic_partitions(
    broker: &Arc<Broker>,
    req: DescribeTopicPartitionsRequest,
) -> ResponseKind {
    use kafka_protocol::messages::describe_topic_partitions_response::{
        Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
    };
    const MAX_PARTITIONS: i32 = 2000;
    let image = broker.image();
    let mut names: Vec<String> = if req.topics.is_empty() {
        image.topics.keys().cloned().collect()
    } else {
        req.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (from_topic, from_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.to_string()), c.partition_index.max(0)),
        None => (None, 0),
    };
    let mut left = if req.response_partition_limit > 0 {
        req.response_partition_limit.min(MAX_PARTITIONS)
    } else {
        MAX_PARTITIONS
    };
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if from_topic.as_ref().is_some_and(|f| name < *f) {
            continue;
        }
        let first = if from_topic.as_deref() == Some(name.as_str()) {
            from_partition
        } else {
            0
        };
        let entry = DescribeTopicPartitionsResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
            .with_topic_authorized_operations(codes::AUTHORIZED_OPERATIONS_OMITTED);
        let Some(t) = image.topics.get(&name) else {
            topics.push(entry.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        };
        if left == 0 {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_string(name)))
                    .with_partition_index(first),
            );
            break;
        }
        let mut partitions = Vec::new();
        for (p, ps) in t.partitions.iter().enumerate().skip(first as usize) {
            if left == 0 {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(TopicName(StrBytes::from_string(name.clone())))
                        .with_partition_index(p as i32),
                );
                break;
            }
            left -= 1;
            let v = PartitionView::of(&image, ps);
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(v.error_code)
                    .with_partition_index(p as i32)
                    .with_leader_id(BrokerId(ps.leader))
                    .with_leader_epoch(ps.leader_epoch)
                    .with_replica_nodes(v.replicas)
                    .with_isr_nodes(v.isr)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(v.offline),
            );
        }
        topics.push(
            entry
                .with_topic_id(Uuid::from_bytes(t.id))
                .with_is_internal(crate::internal::is_internal(&name))
                .with_partitions(partitions),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    ResponseKind::DescribeTopicPartitions(
        DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next_cursor),
    )
}
