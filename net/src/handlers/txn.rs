//! The transactional APIs: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and
//! TxnOffsetCommit. Decisions are the transaction coordinator's
//! (`sluice_core::txn`); answers wait until what they promise is durable. And the
//! admin views `kafka-transactions` uses: DescribeProducers (a partition's leader),
//! ListTransactions and DescribeTransactions (the coordinators).

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, ResponseKind, TopicName,
    TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::group::OffsetCommit;

use super::offsets::offset_commit;
use super::Reply;
use crate::broker::Broker;
use crate::codes;
use crate::internal::OFFSETS_TOPIC;
use crate::txns::TxnLookup;

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

/// DescribeProducers: the producers each partition's leader remembers. The last
/// timestamp and coordinator epoch are not kept (-1).
pub fn describe_producers(broker: &Arc<Broker>, r: DescribeProducersRequest) -> ResponseKind {
    use kafka_protocol::messages::describe_producers_response::{
        PartitionResponse, ProducerState, TopicResponse,
    };
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| {
                    let out = PartitionResponse::default().with_partition_index(p);
                    match broker.leader_replica(&name, p, -1) {
                        Err(code) => out.with_error_code(code),
                        Ok(replica) => out.with_active_producers(
                            replica
                                .log
                                .active_producers()
                                .into_iter()
                                .map(|(id, epoch, last_seq, txn_start)| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(id))
                                        .with_producer_epoch(i32::from(epoch))
                                        .with_last_sequence(last_seq)
                                        .with_last_timestamp(-1)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(txn_start)
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::DescribeProducers(DescribeProducersResponse::default().with_topics(topics))
}

/// ListTransactions: the transactional ids this broker coordinates, filtered by
/// state, producer id, how long they have been open (v1, KIP-994) and a pattern on the
/// id (v2; the whole id must match, as Java's `Matcher.matches`).
pub fn list_transactions(broker: &Arc<Broker>, r: ListTransactionsRequest) -> ResponseKind {
    use kafka_protocol::messages::list_transactions_response::TransactionState;
    const STATES: [&str; 7] = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "Dead",
    ];
    let response = ListTransactionsResponse::default();
    let pattern = match r
        .transactional_id_pattern
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(re) => Some(re),
            Err(_) => {
                return ResponseKind::ListTransactions(
                    response.with_error_code(codes::INVALID_REGULAR_EXPRESSION),
                )
            }
        },
    };
    let unknown: Vec<_> = r
        .state_filters
        .iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .cloned()
        .collect();
    let states = broker
        .txns
        .list()
        .into_iter()
        .filter(|(_, m, _)| {
            r.state_filters.is_empty()
                || r.state_filters.iter().any(|s| s.as_str() == m.state.name())
        })
        .filter(|(_, m, _)| {
            r.producer_id_filters.is_empty()
                || r.producer_id_filters.contains(&ProducerId(m.producer_id))
        })
        .filter(|(_, _, open)| {
            r.duration_filter < 0 || open.is_some_and(|ms| ms > r.duration_filter)
        })
        .filter(|(id, _, _)| pattern.as_ref().is_none_or(|re| re.is_match(id)))
        .map(|(id, m, _)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(StrBytes::from_static_str(m.state.name()))
        })
        .collect();
    ResponseKind::ListTransactions(
        response
            .with_unknown_state_filters(unknown)
            .with_transaction_states(states),
    )
}

/// DescribeTransactions, on each id's coordinator: its state, producer, timeout, start
/// time and partitions; NOT_COORDINATOR elsewhere, TRANSACTIONAL_ID_NOT_FOUND for an
/// id the coordinator does not know.
pub fn describe_transactions(broker: &Arc<Broker>, r: DescribeTransactionsRequest) -> ResponseKind {
    use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
    let wall = broker.env.clock.wall_ms();
    let states = r
        .transactional_ids
        .into_iter()
        .map(|id| {
            let out = TransactionState::default()
                .with_transactional_id(id.clone())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1)
                .with_transaction_state(StrBytes::from_static_str(""));
            match broker.txns.describe(id.as_str()) {
                TxnLookup::NotCoordinator => out.with_error_code(codes::NOT_COORDINATOR),
                TxnLookup::Unknown => out.with_error_code(codes::TRANSACTIONAL_ID_NOT_FOUND),
                TxnLookup::Found(m, open_for) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (topic, p) in &m.partitions {
                        match topics.last_mut() {
                            Some(t) if t.topic.as_str() == topic => t.partitions.push(*p),
                            _ => topics.push(
                                TopicData::default()
                                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                                    .with_partitions(vec![*p]),
                            ),
                        }
                    }
                    out.with_transaction_state(StrBytes::from_static_str(m.state.name()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(open_for.map_or(-1, |ms| wall - ms))
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.epoch)
                        .with_topics(topics)
                }
            }
        })
        .collect();
    ResponseKind::DescribeTransactions(
        DescribeTransactionsResponse::default().with_transaction_states(states),
    )
}
