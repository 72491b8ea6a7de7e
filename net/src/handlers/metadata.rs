//! Metadata: this broker, and the requested topics with their partitions (this node
//! leads them all). Unknown topics are auto-created when allowed, as in Kafka.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::topics::Topic;
use uuid::Uuid;

use sluice_core::topics::TopicError;

use crate::broker::{Broker, BrokerError};
use crate::codes;

pub fn handle(broker: &Arc<Broker>, req: MetadataRequest, version: i16) -> ResponseKind {
    let node = broker.config.node_id;
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
    let may_create = version < 4 || req.allow_auto_topic_creation;
    let topics = names
        .into_iter()
        .map(|name| {
            let found = match broker.topic(&name) {
                Some(t) => Ok(t),
                None => (may_create && req.topics.is_some())
                    .then(|| broker.auto_create(&name))
                    .flatten()
                    .unwrap_or_else(|| Err(TopicError::Unknown(name.clone()).into())),
            };
            topic_entry(node, &name, found, req.include_topic_authorized_operations)
        })
        .collect();
    ResponseKind::Metadata(
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(node))
                .with_host(StrBytes::from_string(broker.config.advertised_host.clone()))
                .with_port(i32::from(broker.config.advertised_port))])
            .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
            .with_controller_id(BrokerId(node))
            .with_topics(topics)
            .with_cluster_authorized_operations(codes::AUTHORIZED_OPERATIONS_OMITTED),
    )
}

fn topic_entry(
    node: i32,
    name: &str,
    found: Result<Topic, BrokerError>,
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
                (0..t.partitions)
                    .map(|p| {
                        MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(BrokerId(node))
                            .with_leader_epoch(0)
                            .with_replica_nodes(vec![BrokerId(node)])
                            .with_isr_nodes(vec![BrokerId(node)])
                    })
                    .collect(),
            ),
        Err(BrokerError::Topic(e)) => entry.with_error_code(codes::topic_error(&e)),
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-create failed");
            entry.with_error_code(codes::KAFKA_STORAGE_ERROR)
        }
    }
}
