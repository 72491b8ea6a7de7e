//! Share groups (KIP-932): ShareGroupHeartbeat and ShareGroupDescribe at the group's
//! coordinator; ShareFetch and ShareAcknowledge at the partitions' leaders; and the
//! share-group state store's ReadShareGroupState and WriteShareGroupState, which
//! leaders send to the leader of a `__share_group_state` partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    describe_share_group_offsets_response, read_share_group_state_response,
    share_acknowledge_response, share_fetch_response, share_group_describe_response,
    share_group_heartbeat_response, write_share_group_state_response,
    DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse,
    ReadShareGroupStateRequest, ReadShareGroupStateResponse, ResponseKind, ShareAcknowledgeRequest,
    ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse, ShareGroupDescribeRequest,
    ShareGroupDescribeResponse, ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, TopicName,
    WriteShareGroupStateRequest, WriteShareGroupStateResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::group::share::ShareHeartbeatRequest;
use sluice_core::share::{Acquired, RecordState, ShareKey, ShareSnapshot, StateBatch};
use uuid::Uuid;

use super::{Client, Reply};
use crate::broker::Broker;
use crate::codes;
use crate::shares::{AckBatch, TopicPartition};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// ShareGroupHeartbeat: joins, heartbeats and leaves a share group.
pub fn heartbeat(broker: &Arc<Broker>, client: &Client, r: ShareGroupHeartbeatRequest) -> Reply {
    let req = ShareHeartbeatRequest {
        group_id: r.group_id.to_string(),
        member_id: r.member_id.to_string(),
        member_epoch: r.member_epoch,
        rack_id: r.rack_id.as_ref().map(|x| x.to_string()),
        subscribed_topic_names: r
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        client_id: client.id.clone(),
        client_host: client.host.clone(),
    };
    let failed = |code: i16, message: String| {
        ShareGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(s(&message)))
            .with_member_epoch(-1)
    };
    let response = match broker.groups.share_heartbeat(broker, req) {
        Err(e) => failed(codes::COORDINATOR_NOT_AVAILABLE, e.0),
        Ok(Err((e, message))) => failed(codes::group_error(e), message),
        Ok(Ok(hb)) => ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(s(&hb.member_id)))
            .with_member_epoch(hb.member_epoch)
            .with_heartbeat_interval_ms(hb.heartbeat_interval_ms)
            .with_assignment(hb.assignment.map(|a| {
                share_group_heartbeat_response::Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(t, ps)| {
                            share_group_heartbeat_response::TopicPartitions::default()
                                .with_topic_id(Uuid::from_bytes(t))
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            })),
    };
    Reply::Now(ResponseKind::ShareGroupHeartbeat(response))
}

/// ShareGroupDescribe: a share group's epoch, assignor and members.
pub fn describe(broker: &Arc<Broker>, r: ShareGroupDescribeRequest) -> ResponseKind {
    let groups = r
        .group_ids
        .iter()
        .map(|gid| {
            let entry = share_group_describe_response::DescribedGroup::default()
                .with_group_id(gid.clone())
                .with_authorized_operations(if r.include_authorized_operations {
                    0
                } else {
                    codes::AUTHORIZED_OPERATIONS_OMITTED
                });
            let Some(g) = broker.groups.describe_share(gid) else {
                let why = if broker.groups.describe(gid).is_some() {
                    format!("Group {} is not a share group.", gid.as_str())
                } else {
                    format!("Group {} not found.", gid.as_str())
                };
                return entry
                    .with_error_code(codes::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(s(&why)));
            };
            let members = g
                .members
                .values()
                .map(|m| {
                    share_group_describe_response::Member::default()
                        .with_member_id(s(&m.member_id))
                        .with_rack_id(m.rack_id.as_deref().map(s))
                        .with_member_epoch(m.epoch)
                        .with_client_id(s(&m.client_id))
                        .with_client_host(s(&m.client_host))
                        .with_subscribed_topic_names(
                            m.subscribed.iter().map(|t| TopicName(s(t))).collect(),
                        )
                        .with_assignment(
                            share_group_describe_response::Assignment::default()
                                .with_topic_partitions(
                                    m.assigned
                                        .iter()
                                        .map(|(t, ps)| {
                                            share_group_describe_response::TopicPartitions::default(
                                            )
                                            .with_topic_id(Uuid::from_bytes(*t))
                                            .with_topic_name(TopicName(s(&broker
                                                .topic_by_id(*t)
                                                .unwrap_or_default())))
                                            .with_partitions(ps.iter().copied().collect())
                                        })
                                        .collect(),
                                ),
                        )
                })
                .collect();
            entry
                .with_group_state(s(g.state_name()))
                .with_group_epoch(g.epoch)
                .with_assignment_epoch(g.epoch)
                .with_assignor_name(s("simple"))
                .with_members(members)
        })
        .collect();
    ResponseKind::ShareGroupDescribe(ShareGroupDescribeResponse::default().with_groups(groups))
}

/// One partition of a ShareFetch or ShareAcknowledge answer, as it is gathered.
#[derive(Default)]
struct Answer {
    error: i16,
    ack_error: i16,
    records: Option<Bytes>,
    acquired: Vec<Acquired>,
}

/// The request's partitions by name; ids this broker does not know are kept apart.
struct Named {
    add: Vec<TopicPartition>,
    acks: Vec<(TopicPartition, Vec<AckBatch>)>,
    unknown: Vec<(Uuid, i32)>,
}

fn topic_name(broker: &Broker, id: Uuid) -> Option<String> {
    broker.topic_by_id(*id.as_bytes())
}

/// ShareFetch: steps the member's share session, applies the acknowledgements it
/// carries (answered once durable), then acquires records of the session's
/// partitions for the member, long-polling up to max_wait_ms when there are none.
pub fn fetch(broker: &Arc<Broker>, req: ShareFetchRequest) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        ResponseKind::ShareFetch(share_fetch(&broker, req).await)
    }))
}

async fn share_fetch(broker: &Arc<Broker>, req: ShareFetchRequest) -> ShareFetchResponse {
    let (Some(group), Some(member)) = (req.group_id.as_ref(), req.member_id.as_ref()) else {
        return ShareFetchResponse::default()
            .with_error_code(codes::INVALID_REQUEST)
            .with_error_message(Some(s("GroupId and MemberId must be set.")));
    };
    let (group, member) = (group.to_string(), member.to_string());
    let mut named = Named {
        add: Vec::new(),
        acks: Vec::new(),
        unknown: Vec::new(),
    };
    for t in &req.topics {
        for p in &t.partitions {
            let Some(name) = topic_name(broker, t.topic_id) else {
                named.unknown.push((t.topic_id, p.partition_index));
                continue;
            };
            let tp = (name, p.partition_index);
            if !p.acknowledgement_batches.is_empty() {
                let batches = p
                    .acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                    .collect();
                named.acks.push((tp.clone(), batches));
            }
            named.add.push(tp);
        }
    }
    let forget: Vec<TopicPartition> = req
        .forgotten_topics_data
        .iter()
        .filter_map(|t| Some((topic_name(broker, t.topic_id)?, &t.partitions)))
        .flat_map(|(name, ps)| ps.iter().map(move |p| (name.clone(), *p)))
        .collect();
    let configs = broker.image().group_configs.get(&group).cloned();
    let lock_ms = broker.shares.lock_ms(configs.as_ref());
    let epoch = req.share_session_epoch;
    let stepped = match broker.shares.step(
        &group,
        &member,
        epoch,
        true,
        &named.add,
        &forget,
        &named.acks,
    ) {
        Ok(s) => s,
        Err(code) => {
            return ShareFetchResponse::default()
                .with_error_code(code)
                .with_acquisition_lock_timeout_ms(lock_ms)
        }
    };
    let mut answers: BTreeMap<TopicPartition, Answer> = BTreeMap::new();
    let unstored = broker.shares.persist(broker, &stepped.dirty).await;
    for (tp, code) in &stepped.ack_errors {
        let lost = unstored.contains_key(&(group.clone(), tp.0.clone(), tp.1));
        answers.entry(tp.clone()).or_default().ack_error = if *code == 0 && lost {
            codes::COORDINATOR_NOT_AVAILABLE
        } else {
            *code
        };
    }
    if epoch != -1 {
        acquire(
            broker,
            &req,
            &group,
            &member,
            &stepped.partitions,
            &mut answers,
        )
        .await;
    }
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(lock_ms)
        .with_responses(fetch_topics(broker, answers, &named.unknown))
}

/// Acquires records of the session's partitions into `answers`, waiting up to the
/// request's max_wait_ms for some when none are there and nothing else is to say.
async fn acquire(
    broker: &Arc<Broker>,
    req: &ShareFetchRequest,
    group: &str,
    member: &str,
    partitions: &[TopicPartition],
    answers: &mut BTreeMap<TopicPartition, Answer>,
) {
    let clock = broker.env.clock.clone();
    let deadline = clock.monotonic() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let max_records = if req.max_records > 0 {
        req.max_records as usize
    } else {
        500
    };
    let max_bytes = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        50 << 20
    };
    let acked = !answers.is_empty();
    loop {
        let mut records_left = max_records;
        let mut bytes_left = max_bytes;
        let mut got = false;
        let mut errors = false;
        let mut watches = Vec::new();
        for tp in partitions {
            let answer = answers.entry(tp.clone()).or_default();
            let replica = match broker.leader_replica(&tp.0, tp.1, -1) {
                Ok(r) => r,
                Err(code) => {
                    answer.error = code;
                    errors = true;
                    continue;
                }
            };
            let epoch = replica.meta().leader_epoch;
            if let Err(e) = broker
                .shares
                .load(broker, group, &tp.0, tp.1, epoch, &replica.log)
                .await
            {
                tracing::warn!(group, topic = %tp.0, partition = tp.1, error = %e.0, "share partition not loaded");
                answer.error = codes::COORDINATOR_NOT_AVAILABLE;
                errors = true;
                continue;
            }
            if records_left == 0 || bytes_left == 0 {
                continue;
            }
            let pk = (group.to_string(), tp.0.clone(), tp.1);
            match broker
                .shares
                .acquire(&pk, member, &replica.log, records_left, bytes_left)
            {
                Ok((bytes, acquired)) if !acquired.is_empty() => {
                    let n: i64 = acquired
                        .iter()
                        .map(|a| a.last_offset - a.first_offset + 1)
                        .sum();
                    records_left = records_left.saturating_sub(n as usize);
                    bytes_left = bytes_left.saturating_sub(bytes.len());
                    answer.records = Some(bytes);
                    answer.acquired = acquired;
                    got = true;
                }
                Ok(_) => watches.push(replica.log.watch()),
                Err(e) => {
                    answer.error = codes::log_error(&e);
                    errors = true;
                }
            }
        }
        let now = clock.monotonic();
        if got || acked || errors || now >= deadline {
            return;
        }
        // New records raise a high watermark; released or timed-out records do not,
        // so look again at least every 100 ms.
        let sleep = clock.sleep((deadline - now).min(Duration::from_millis(100)));
        if watches.is_empty() {
            sleep.await;
            continue;
        }
        let changed = futures::future::select_all(
            watches
                .iter_mut()
                .map(|w| Box::pin(async move { w.changed().await })),
        );
        tokio::select! {
            biased;
            _ = changed => {}
            _ = sleep => {}
        }
    }
}

fn leader_of(broker: &Broker, topic: &str, partition: i32) -> (i32, i32) {
    broker
        .image()
        .partition(topic, partition)
        .map_or((-1, -1), |p| (p.leader, p.leader_epoch))
}

fn fetch_topics(
    broker: &Broker,
    answers: BTreeMap<TopicPartition, Answer>,
    unknown: &[(Uuid, i32)],
) -> Vec<share_fetch_response::ShareFetchableTopicResponse> {
    let mut by_topic: BTreeMap<String, Vec<share_fetch_response::PartitionData>> = BTreeMap::new();
    for ((topic, p), a) in answers {
        let (leader, leader_epoch) = leader_of(broker, &topic, p);
        let acquired = a
            .acquired
            .iter()
            .map(|r| {
                share_fetch_response::AcquiredRecords::default()
                    .with_first_offset(r.first_offset)
                    .with_last_offset(r.last_offset)
                    .with_delivery_count(r.delivery_count)
            })
            .collect();
        by_topic.entry(topic).or_default().push(
            share_fetch_response::PartitionData::default()
                .with_partition_index(p)
                .with_error_code(a.error)
                .with_acknowledge_error_code(a.ack_error)
                .with_current_leader(
                    share_fetch_response::LeaderIdAndEpoch::default()
                        .with_leader_id(leader)
                        .with_leader_epoch(leader_epoch),
                )
                .with_records(Some(a.records.unwrap_or_default()))
                .with_acquired_records(acquired),
        );
    }
    let mut topics: Vec<share_fetch_response::ShareFetchableTopicResponse> = by_topic
        .into_iter()
        .filter_map(|(topic, partitions)| {
            let id = broker.topic(&topic)?.id;
            Some(
                share_fetch_response::ShareFetchableTopicResponse::default()
                    .with_topic_id(Uuid::from_bytes(id))
                    .with_partitions(partitions),
            )
        })
        .collect();
    for (id, p) in unknown {
        topics.push(
            share_fetch_response::ShareFetchableTopicResponse::default()
                .with_topic_id(*id)
                .with_partitions(vec![share_fetch_response::PartitionData::default()
                    .with_partition_index(*p)
                    .with_error_code(codes::UNKNOWN_TOPIC_ID)
                    .with_records(Some(Bytes::new()))]),
        );
    }
    topics
}

/// ShareAcknowledge: steps the member's share session and applies its
/// acknowledgements, answered once durable.
pub fn acknowledge(broker: &Arc<Broker>, req: ShareAcknowledgeRequest) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        ResponseKind::ShareAcknowledge(share_acknowledge(&broker, req).await)
    }))
}

async fn share_acknowledge(
    broker: &Arc<Broker>,
    req: ShareAcknowledgeRequest,
) -> ShareAcknowledgeResponse {
    let (Some(group), Some(member)) = (req.group_id.as_ref(), req.member_id.as_ref()) else {
        return ShareAcknowledgeResponse::default()
            .with_error_code(codes::INVALID_REQUEST)
            .with_error_message(Some(s("GroupId and MemberId must be set.")));
    };
    let (group, member) = (group.to_string(), member.to_string());
    let mut acks = Vec::new();
    let mut unknown = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let Some(name) = topic_name(broker, t.topic_id) else {
                unknown.push((t.topic_id, p.partition_index));
                continue;
            };
            let batches = p
                .acknowledgement_batches
                .iter()
                .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                .collect();
            acks.push(((name, p.partition_index), batches));
        }
    }
    let stepped = match broker.shares.step(
        &group,
        &member,
        req.share_session_epoch,
        false,
        &[],
        &[],
        &acks,
    ) {
        Ok(s) => s,
        Err(code) => return ShareAcknowledgeResponse::default().with_error_code(code),
    };
    let unstored = broker.shares.persist(broker, &stepped.dirty).await;
    let mut by_topic: BTreeMap<String, Vec<share_acknowledge_response::PartitionData>> =
        BTreeMap::new();
    for ((topic, p), code) in stepped.ack_errors {
        let code = if code == 0 && unstored.contains_key(&(group.clone(), topic.clone(), p)) {
            codes::COORDINATOR_NOT_AVAILABLE
        } else {
            code
        };
        let (leader, leader_epoch) = leader_of(broker, &topic, p);
        by_topic.entry(topic).or_default().push(
            share_acknowledge_response::PartitionData::default()
                .with_partition_index(p)
                .with_error_code(code)
                .with_current_leader(
                    share_acknowledge_response::LeaderIdAndEpoch::default()
                        .with_leader_id(leader)
                        .with_leader_epoch(leader_epoch),
                ),
        );
    }
    let mut topics: Vec<share_acknowledge_response::ShareAcknowledgeTopicResponse> = by_topic
        .into_iter()
        .filter_map(|(topic, partitions)| {
            Some(
                share_acknowledge_response::ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(Uuid::from_bytes(broker.topic(&topic)?.id))
                    .with_partitions(partitions),
            )
        })
        .collect();
    for (id, p) in unknown {
        topics.push(
            share_acknowledge_response::ShareAcknowledgeTopicResponse::default()
                .with_topic_id(id)
                .with_partitions(vec![share_acknowledge_response::PartitionData::default()
                    .with_partition_index(p)
                    .with_error_code(codes::UNKNOWN_TOPIC_ID)]),
        );
    }
    ShareAcknowledgeResponse::default().with_responses(topics)
}

/// ReadShareGroupState (from a partition leader): the stored state of share
/// partitions whose state partition this broker leads; a start offset of -1 when none
/// is stored.
pub fn read_state(broker: &Arc<Broker>, req: ReadShareGroupStateRequest) -> ResponseKind {
    let results = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let key = ShareKey {
                        group: req.group_id.to_string(),
                        topic_id: *t.topic_id.as_bytes(),
                        partition: p.partition,
                    };
                    let out = read_share_group_state_response::PartitionResult::default()
                        .with_partition(p.partition);
                    match broker.shares.stored(broker, &key) {
                        Err(code) => out.with_error_code(code).with_start_offset(-1),
                        Ok(None) => out.with_state_epoch(-1).with_start_offset(-1),
                        Ok(Some(snap)) => out
                            .with_state_epoch(0)
                            .with_start_offset(snap.start_offset)
                            .with_state_batches(
                                snap.batches
                                    .iter()
                                    .map(|b| {
                                        read_share_group_state_response::StateBatch::default()
                                            .with_first_offset(b.first_offset)
                                            .with_last_offset(b.last_offset)
                                            .with_delivery_state(b.state as i8)
                                            .with_delivery_count(b.delivery_count)
                                    })
                                    .collect(),
                            ),
                    }
                })
                .collect();
            read_share_group_state_response::ReadStateResult::default()
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::ReadShareGroupState(ReadShareGroupStateResponse::default().with_results(results))
}

/// WriteShareGroupState (from a partition leader): stores share partitions' state in
/// `__share_group_state`, answered once durable.
pub fn write_state(broker: &Arc<Broker>, req: WriteShareGroupStateRequest) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let mut results = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let key = ShareKey {
                    group: req.group_id.to_string(),
                    topic_id: *t.topic_id.as_bytes(),
                    partition: p.partition,
                };
                let batches: Option<Vec<StateBatch>> = p
                    .state_batches
                    .iter()
                    .map(|b| {
                        Some(StateBatch {
                            first_offset: b.first_offset,
                            last_offset: b.last_offset,
                            state: RecordState::from_code(b.delivery_state)?,
                            delivery_count: b.delivery_count,
                        })
                    })
                    .collect();
                let snap = batches.map(|batches| ShareSnapshot {
                    start_offset: p.start_offset,
                    batches,
                });
                let code = match snap.filter(ShareSnapshot::is_well_formed) {
                    None => codes::INVALID_REQUEST,
                    Some(snap) => match broker.shares.store(&broker, &key, &snap).await {
                        Ok(()) => codes::NONE,
                        Err(code) => code,
                    },
                };
                partitions.push(
                    write_share_group_state_response::PartitionResult::default()
                        .with_partition(p.partition)
                        .with_error_code(code),
                );
            }
            results.push(
                write_share_group_state_response::WriteStateResult::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(partitions),
            );
        }
        ResponseKind::WriteShareGroupState(
            WriteShareGroupStateResponse::default().with_results(results),
        )
    }))
}

/// DescribeShareGroupOffsets (KIP-932): each share partition's start offset, read from
/// `__share_group_state` (-1 where the group has not read the partition yet); with no
/// topics named, every partition the group has state for among the topics its members
/// subscribed to (since this coordinator loaded the group).
pub fn describe_offsets(broker: &Arc<Broker>, req: DescribeShareGroupOffsetsRequest) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in &req.groups {
            let gid = g.group_id.to_string();
            let out = describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup::default()
                .with_group_id(g.group_id.clone());
            let wanted: Vec<(String, Vec<i32>)> = match &g.topics {
                Some(topics) => topics
                    .iter()
                    .map(|t| (t.topic_name.to_string(), t.partitions.clone()))
                    .collect(),
                None => {
                    let Some(group) = broker.groups.describe_share(&gid) else {
                        groups.push(
                            out.with_error_code(codes::GROUP_ID_NOT_FOUND)
                                .with_error_message(Some(s(&format!(
                                    "Group {gid} is not a share group this coordinator knows."
                                )))),
                        );
                        continue;
                    };
                    group
                        .topics_read
                        .iter()
                        .filter_map(|t| {
                            Some((t.clone(), (0..broker.topic(t)?.partitions).collect()))
                        })
                        .collect()
                }
            };
            // With no topics named, only partitions the group has state for.
            let stored_only = g.topics.is_none();
            let mut topics = Vec::with_capacity(wanted.len());
            for (topic, partitions) in wanted {
                let known = broker.topic(&topic);
                let id = known.as_ref().map(|t| t.id);
                let mut parts = Vec::with_capacity(partitions.len());
                for p in partitions {
                    let part = describe_share_group_offsets_response::DescribeShareGroupOffsetsResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_epoch(-1);
                    let Some(topic_id) = id.filter(|_| {
                        known
                            .as_ref()
                            .is_some_and(|t| (0..t.partitions).contains(&p))
                    }) else {
                        parts.push(
                            part.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION)
                                .with_start_offset(-1),
                        );
                        continue;
                    };
                    let key = ShareKey {
                        group: gid.clone(),
                        topic_id,
                        partition: p,
                    };
                    parts.push(match crate::shares::read_state(&broker, &key).await {
                        Ok(Some(snap)) => part.with_start_offset(snap.start_offset),
                        Ok(None) if stored_only => continue,
                        Ok(None) => part.with_start_offset(-1),
                        Err(e) => part
                            .with_start_offset(-1)
                            .with_error_code(codes::COORDINATOR_NOT_AVAILABLE)
                            .with_error_message(Some(s(&e.0))),
                    });
                }
                topics.push(
                    describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(TopicName(s(&topic)))
                        .with_topic_id(id.map_or(Uuid::nil(), Uuid::from_bytes))
                        .with_partitions(parts),
                );
            }
            groups.push(out.with_topics(topics));
        }
        ResponseKind::DescribeShareGroupOffsets(
            DescribeShareGroupOffsetsResponse::default().with_groups(groups),
        )
    }))
}
