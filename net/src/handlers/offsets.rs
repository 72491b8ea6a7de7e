//! Committed offsets: OffsetCommit (answered once the commit is durable),
//! OffsetFetch, OffsetDelete.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Buf;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use sluice_core::group::{OffsetCommit, OffsetValue};

use super::Reply;
use crate::broker::Broker;
use crate::codes;
use crate::groups::CommitError;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// One offset to commit, from an OffsetCommit or TxnOffsetCommit partition.
pub(super) fn offset_commit(
    topic: &str,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&StrBytes>,
    now_ms: i64,
) -> OffsetCommit {
    OffsetCommit {
        topic: topic.to_string(),
        partition,
        value: OffsetValue {
            offset,
            leader_epoch,
            metadata: metadata.map(|m| m.to_string()).unwrap_or_default(),
            commit_timestamp_ms: now_ms,
        },
    }
}

pub fn commit(broker: &Arc<Broker>, r: OffsetCommitRequest, version: i16) -> Reply {
    let now = broker.env.clock.wall_ms();
    let mut offsets = Vec::new();
    // (topic, partition, error known before the coordinator is asked)
    let mut order: Vec<(TopicName, i32, Option<i16>)> = Vec::new();
    for t in &r.topics {
        let partitions = broker.topic(&t.name).map(|t| t.partitions);
        for p in &t.partitions {
            if !partitions.is_some_and(|n| (0..n).contains(&p.partition_index)) {
                order.push((
                    t.name.clone(),
                    p.partition_index,
                    Some(codes::UNKNOWN_TOPIC_OR_PARTITION),
                ));
                continue;
            }
            order.push((t.name.clone(), p.partition_index, None));
            offsets.push(offset_commit(
                &t.name,
                p.partition_index,
                p.committed_offset,
                p.committed_leader_epoch,
                p.committed_metadata.as_ref(),
                now,
            ));
        }
    }
    let group = r.group_id.to_string();
    // KIP-848: a consumer-protocol member commits with OffsetCommit v9+ (its member
    // epoch); an older version from one is refused, as Kafka does.
    if version < 9 && broker.groups.is_consumer_member(&group, &r.member_id) {
        let topics = r
            .topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(codes::UNSUPPORTED_VERSION)
                            })
                            .collect(),
                    )
            })
            .collect();
        return Reply::Now(ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(topics),
        ));
    }
    let checked = broker.groups.commit(
        broker,
        &group,
        r.generation_id_or_member_epoch,
        &r.member_id,
        r.group_instance_id.as_deref(),
        offsets,
    );
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        sluice_core::buggify_sleep!(broker.env, 300);
        let mut codes_by_partition: BTreeMap<(String, i32), i16> = BTreeMap::new();
        let whole = match checked {
            Err(_) => Some(codes::COORDINATOR_NOT_AVAILABLE),
            Ok(Err(e)) => Some(codes::group_error(e)),
            Ok(Ok(pending)) => {
                for (o, result) in broker.groups.finish_commit(&group, pending).await {
                    let code = match result {
                        Ok(()) => codes::NONE,
                        Err(e) => {
                            if let CommitError::Storage(why) = &e {
                                tracing::warn!(group = %group, %why, "offset commit failed");
                            }
                            codes::commit_error(&e)
                        }
                    };
                    codes_by_partition.insert((o.topic, o.partition), code);
                }
                None
            }
        };
        let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
        for (name, partition, early) in order {
            let code = early.or(whole).unwrap_or_else(|| {
                codes_by_partition
                    .get(&(name.to_string(), partition))
                    .copied()
                    .unwrap_or(codes::NONE)
            });
            let entry = OffsetCommitResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(code);
            match topics.last_mut() {
                Some(t) if t.name == name => t.partitions.push(entry),
                _ => topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(name)
                        .with_partitions(vec![entry]),
                ),
            }
        }
        ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
    }))
}

/// A partition's answer: its committed offset (`None` where nothing is), or an
/// error code.
type Answer = (i32, Result<Option<OffsetValue>, i16>);

/// Committed offsets by topic.
type CommittedByTopic = Vec<(String, Vec<Answer>)>;

/// One group's answer: for each topic asked (or every committed one when `None`),
/// its partitions' committed offsets. With `require_stable` (KIP-447), a partition
/// with a transactional commit pending answers UNSTABLE_OFFSET_COMMIT, so the
/// client retries rather than start from an offset about to change.
fn committed(
    broker: &Broker,
    group: &str,
    asked: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> CommittedByTopic {
    let offsets = broker.groups.offsets(group);
    let pending = if require_stable {
        broker.groups.pending_txn_offsets(group)
    } else {
        BTreeSet::new()
    };
    let answer = |t: &str, p: i32, v: Option<OffsetValue>| -> Answer {
        if pending.contains(&(t.to_string(), p)) {
            (p, Err(codes::UNSTABLE_OFFSET_COMMIT))
        } else {
            (p, Ok(v))
        }
    };
    match asked {
        Some(topics) => topics
            .into_iter()
            .map(|(t, parts)| {
                let found = parts
                    .into_iter()
                    .map(|p| answer(&t, p, offsets.get(&(t.clone(), p)).cloned()))
                    .collect();
                (t, found)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<Answer>> = BTreeMap::new();
            for ((t, p), v) in offsets {
                let a = answer(&t, p, Some(v));
                by_topic.entry(t).or_default().push(a);
            }
            by_topic.into_iter().collect()
        }
    }
}

pub fn fetch(broker: &Arc<Broker>, r: OffsetFetchRequest, version: i16) -> ResponseKind {
    let epoch = |v: &Option<OffsetValue>| {
        if version >= 5 {
            v.as_ref().map_or(-1, |v| v.leader_epoch)
        } else {
            -1
        }
    };
    // (code, offset, leader epoch, metadata) of a partition's answer.
    let fields = |a: Result<Option<OffsetValue>, i16>| match a {
        Err(code) => (code, -1, -1, String::new()),
        Ok(v) => (
            codes::NONE,
            v.as_ref().map_or(-1, |v| v.offset),
            epoch(&v),
            v.map(|v| v.metadata).unwrap_or_default(),
        ),
    };
    let require_stable = version >= 7 && r.require_stable;
    // The one-group (v1–7) and many-group (v8+) layouts have their own types with
    // the same fields.
    macro_rules! layout {
        ($committed:expr, $topic:ident, $partition:ident) => {
            $committed
                .into_iter()
                .map(|(t, parts)| {
                    $topic::default().with_name(topic_name(&t)).with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, a)| {
                                let (code, offset, leader_epoch, metadata) = fields(a);
                                $partition::default()
                                    .with_partition_index(p)
                                    .with_error_code(code)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(leader_epoch)
                                    .with_metadata(Some(StrBytes::from_string(metadata)))
                            })
                            .collect(),
                    )
                })
                .collect()
        };
    }
    if version >= 8 {
        let groups = r
            .groups
            .iter()
            .map(|g| {
                // v9 (KIP-848): a fetch naming a member of a consumer group is checked.
                let member = g.member_id.as_deref().map(|m| m.to_string());
                let epoch = if version >= 9 { g.member_epoch } else { -1 };
                if let Err(e) = broker
                    .groups
                    .check_fetch(&g.group_id, member.as_deref(), epoch)
                {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(codes::group_error(e));
                }
                let asked = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let committed = committed(broker, &g.group_id, asked, require_stable);
                let topics = layout!(
                    committed,
                    OffsetFetchResponseTopics,
                    OffsetFetchResponsePartitions
                );
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
            })
            .collect();
        return ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_groups(groups));
    }
    let asked = r.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let committed = committed(broker, &r.group_id, asked, require_stable);
    let topics = layout!(
        committed,
        OffsetFetchResponseTopic,
        OffsetFetchResponsePartition
    );
    ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_topics(topics))
}

/// Topics the members' consumer-protocol subscriptions name.
fn subscribed_topics(subscriptions: &[bytes::Bytes]) -> BTreeSet<String> {
    let mut topics = BTreeSet::new();
    for sub in subscriptions {
        let mut b = sub.clone();
        if b.len() < 2 {
            continue;
        }
        let version = b.get_i16().clamp(0, 3);
        if let Ok(s) = ConsumerProtocolSubscription::decode(&mut b, version) {
            topics.extend(s.topics.iter().map(|t| t.to_string()));
        }
    }
    topics
}

pub fn delete(broker: &Arc<Broker>, r: OffsetDeleteRequest) -> Reply {
    let subscribed = broker
        .groups
        .describe(&r.group_id)
        .map(|g| subscribed_topics(&g.subscriptions()))
        .unwrap_or_default();
    let partitions: Vec<(String, i32)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let parked = broker
        .groups
        .delete_offsets(broker, &r.group_id, &partitions, &subscribed);
    Reply::Later(Box::pin(async move {
        let failed = |code| {
            ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code))
        };
        let results = match parked {
            Err(_) => return failed(codes::COORDINATOR_NOT_AVAILABLE),
            Ok(p) => match p.release().await {
                Err(_) => return failed(codes::COORDINATOR_NOT_AVAILABLE),
                Ok(Err(e)) => return failed(codes::group_error(e)),
                Ok(Ok(results)) => results,
            },
        };
        let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
        for ((topic, partition), result) in partitions.iter().zip(results) {
            let entry = OffsetDeleteResponsePartition::default()
                .with_partition_index(*partition)
                .with_error_code(result.map_or_else(codes::group_error, |()| codes::NONE));
            let name = topic_name(topic);
            match topics.last_mut() {
                Some(t) if t.name == name => t.partitions.push(entry),
                _ => topics.push(
                    OffsetDeleteResponseTopic::default()
                        .with_name(name)
                        .with_partitions(vec![entry]),
                ),
            }
        }
        ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_topics(topics))
    }))
}
