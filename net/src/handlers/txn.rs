//! The transactional APIs: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and
//! TxnOffsetCommit. Decisions are the transaction coordinator's
//! (`sluice_core::txn`); answers wait until what they promise is durable.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, ResponseKind,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use sluice_core::group::OffsetCommit;

use super::offsets::offset_commit;
use super::Reply;
use crate::broker::Broker;
use crate::codes;
use crate::internal::OFFSETS_TOPIC;

/// Kafka's answer for the partitions not tried because another one failed.
const OPERATION_NOT_ATTEMPTED: i16 = 55;

pub fn add_partitions(broker: &Arc<Broker>, r: AddPartitionsToTxnRequest) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let asked: Vec<(String, i32)> = r
            .v3_and_below_topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
            .collect();
        let image = broker.image();
        let unknown = |(t, p): &(String, i32)| image.partition(t, *p).is_none();
        let code = if asked.iter().any(unknown) {
            None
        } else {
            let added = broker
                .txns
                .add_partitions(
                    &broker,
                    &r.v3_and_below_transactional_id,
                    r.v3_and_below_producer_id.0,
                    r.v3_and_below_producer_epoch,
                    &asked,
                )
                .await;
            Some(codes::coordinator_outcome(added, codes::txn_error))
        };
        let results = r
            .v3_and_below_topics
            .iter()
            .map(|t| {
                AddPartitionsToTxnTopicResult::default()
                    .with_name(t.name.clone())
                    .with_results_by_partition(
                        t.partitions
                            .iter()
                            .map(|&p| {
                                let c = code.unwrap_or_else(|| {
                                    if unknown(&(t.name.to_string(), p)) {
                                        codes::UNKNOWN_TOPIC_OR_PARTITION
                                    } else {
                                        OPERATION_NOT_ATTEMPTED
                                    }
                                });
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(p)
                                    .with_partition_error_code(c)
                            })
                            .collect(),
                    )
            })
            .collect();
        ResponseKind::AddPartitionsToTxn(
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
        )
    }))
}

pub fn add_offsets(broker: &Arc<Broker>, r: AddOffsetsToTxnRequest) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let code = match broker.groups.offsets_partition(&broker, &r.group_id) {
            Err(_) => codes::COORDINATOR_NOT_AVAILABLE,
            Ok(partition) => {
                let tp = [(OFFSETS_TOPIC.to_string(), partition)];
                let added = broker
                    .txns
                    .add_partitions(
                        &broker,
                        &r.transactional_id,
                        r.producer_id.0,
                        r.producer_epoch,
                        &tp,
                    )
                    .await;
                codes::coordinator_outcome(added, codes::txn_error)
            }
        };
        ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
    }))
}

pub fn end(broker: &Arc<Broker>, r: EndTxnRequest) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        sluice_core::buggify_sleep!(broker.env, 300);
        let code = match broker
            .txns
            .end(
                &broker,
                &r.transactional_id,
                r.producer_id.0,
                r.producer_epoch,
                r.committed,
            )
            .await
        {
            Ok(Ok(())) => codes::NONE,
            Ok(Err(e)) => codes::txn_error(e),
            Err(e) => {
                tracing::warn!(transactional_id = %r.transactional_id.as_str(), error = %e, "EndTxn failed");
                codes::COORDINATOR_NOT_AVAILABLE
            }
        };
        ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code))
    }))
}

pub fn txn_offset_commit(broker: &Arc<Broker>, r: TxnOffsetCommitRequest) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let now = broker.env.clock.wall_ms();
        let offsets: Vec<OffsetCommit> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    offset_commit(
                        &t.name,
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.committed_metadata.as_ref(),
                        now,
                    )
                })
            })
            .collect();
        // The offsets partition must be in the producer's open transaction.
        let verified = broker
            .groups
            .offsets_partition(&broker, &r.group_id)
            .map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)
            .and_then(|p| {
                broker
                    .txns
                    .verify(
                        Some(r.transactional_id.as_str()),
                        r.producer_id.0,
                        r.producer_epoch,
                        OFFSETS_TOPIC,
                        p,
                    )
                    .map_err(codes::txn_error)
            });
        let code = match verified {
            Err(code) => code,
            Ok(()) => {
                let committed = broker
                    .groups
                    .txn_commit(
                        &broker,
                        &r.group_id,
                        r.producer_id.0,
                        r.producer_epoch,
                        r.generation_id,
                        &r.member_id,
                        r.group_instance_id.as_deref(),
                        offsets,
                    )
                    .await;
                codes::coordinator_outcome(committed, codes::group_error)
            }
        };
        let topics = r
            .topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics))
    }))
}
