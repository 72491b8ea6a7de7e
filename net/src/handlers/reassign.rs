//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455): moving a
//! partition's replicas between brokers while it stays online.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::cluster::metadata::MetadataError;

use crate::broker::{Broker, BrokerError};
use crate::codes;

const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;

fn failure(e: &BrokerError) -> i16 {
    match e {
        BrokerError::Topic(_) | BrokerError::Metadata(MetadataError::UnknownPartition(..)) => {
            codes::UNKNOWN_TOPIC_OR_PARTITION
        }
        BrokerError::Metadata(MetadataError::NoReassignment(..)) => NO_REASSIGNMENT_IN_PROGRESS,
        BrokerError::Metadata(_) => codes::INVALID_REPLICA_ASSIGNMENT,
        BrokerError::Controller(_) => codes::REQUEST_TIMED_OUT,
        _ => codes::KAFKA_STORAGE_ERROR,
    }
}

pub async fn alter(broker: Arc<Broker>, req: AlterPartitionReassignmentsRequest) -> ResponseKind {
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target = p
                .replicas
                .map(|r| r.into_iter().map(|b| b.0).collect::<Vec<i32>>());
            // Without allow_replication_factor_change (v1), a move keeps the factor.
            let factor = broker
                .image()
                .partition(&t.name, p.partition_index)
                .map(|cur| cur.target().len());
            let resized = match (&target, factor) {
                (Some(target), Some(factor)) => target.len() != factor,
                _ => false,
            };
            let result =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            let result = if resized && !req.allow_replication_factor_change {
                result
                    .with_error_code(codes::INVALID_REPLICATION_FACTOR)
                    .with_error_message(Some(StrBytes::from_static_str(
                        "the reassignment would change the replication factor",
                    )))
            } else {
                match broker.reassign(&t.name, p.partition_index, target).await {
                    Ok(()) => result.with_error_message(None),
                    Err(e) => result
                        .with_error_code(failure(&e))
                        .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                }
            };
            partitions.push(result);
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ResponseKind::AlterPartitionReassignments(
        AlterPartitionReassignmentsResponse::default()
            .with_allow_replication_factor_change(req.allow_replication_factor_change)
            .with_responses(responses),
    )
}

pub fn list(broker: &Arc<Broker>, req: ListPartitionReassignmentsRequest) -> ResponseKind {
    let image = broker.image();
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for (name, t) in &image.topics {
        let wanted = match &req.topics {
            None => None,
            Some(list) => match list.iter().find(|w| w.name.as_str() == name) {
                Some(w) => Some(&w.partition_indexes),
                None => continue,
            },
        };
        let partitions: Vec<_> = t
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| p.reassigning() && wanted.is_none_or(|w| w.contains(&(*i as i32))))
            .map(|(i, p)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(i as i32)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding))
                    .with_removing_replicas(ids(&p.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(StrBytes::from_string(name.clone()).into())
                    .with_partitions(partitions),
            );
        }
    }
    ResponseKind::ListPartitionReassignments(
        ListPartitionReassignmentsResponse::default().with_topics(topics),
    )
}
