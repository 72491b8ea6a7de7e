//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), KIP-848's
//! consumer protocol (ConsumerGroupHeartbeat, ConsumerGroupDescribe), and the admin
//! APIs DescribeGroups, ListGroups, DeleteGroups. Decisions are the
//! coordinator's (`sluice_core::group`); this module only maps the wire to it.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    consumer_group_describe_response, consumer_group_heartbeat_request,
    consumer_group_heartbeat_response, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    TopicName,
};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, ResponseKind, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::group::consumer::Assignment;
use sluice_core::group::{
    GroupError, HeartbeatRequest as ConsumerHeartbeat, JoinRequest, Joined, SyncRequest,
};
use uuid::Uuid;

use super::{Client, Reply};
use crate::broker::Broker;
use crate::codes;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn join(broker: &Arc<Broker>, client: &Client, r: JoinGroupRequest, version: i16) -> Reply {
    let req = JoinRequest {
        group_id: r.group_id.to_string(),
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: client.id.clone(),
        client_host: client.host.clone(),
        session_timeout_ms: r.session_timeout_ms,
        // v0 had only the session timeout, which bounded rebalances too.
        rebalance_timeout_ms: if version >= 1 {
            r.rebalance_timeout_ms
        } else {
            r.session_timeout_ms
        },
        protocol_type: r.protocol_type.to_string(),
        protocols: r
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = req.member_id.clone();
    let failed = move |code: i16, member_id: &str| {
        ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(s(member_id))
                .with_protocol_name((version < 7).then(StrBytes::default)),
        )
    };
    let rx = match broker.groups.join(broker, req) {
        Ok(rx) => rx,
        Err(_) => return Reply::Now(failed(codes::COORDINATOR_NOT_AVAILABLE, &member_id)),
    };
    let env = broker.env.clone();
    Reply::Later(Box::pin(async move {
        let Ok(parked) = rx.await else {
            return failed(codes::COORDINATOR_NOT_AVAILABLE, &member_id);
        };
        // The JoinGroup answer is late (a slow coordinator or link).
        sluice_core::buggify_sleep!(env, 300);
        match parked.release().await {
            Err(_) => failed(codes::COORDINATOR_NOT_AVAILABLE, &member_id),
            Ok(Err((e, id))) => failed(codes::group_error(e), &id),
            Ok(Ok(joined)) => ResponseKind::JoinGroup(joined_response(joined, version)),
        }
    }))
}

fn joined_response(j: Joined, version: i16) -> JoinGroupResponse {
    let members = j
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(s(&id))
                .with_group_instance_id(if version >= 5 {
                    instance.map(|i| s(&i))
                } else {
                    None
                })
                .with_metadata(metadata)
        })
        .collect();
    let protocol = j.protocol.map(|p| s(&p));
    JoinGroupResponse::default()
        .with_generation_id(j.generation)
        .with_protocol_type(if version >= 7 {
            j.protocol_type.map(|p| s(&p))
        } else {
            None
        })
        .with_protocol_name(if version >= 7 {
            protocol
        } else {
            Some(protocol.unwrap_or_default())
        })
        .with_leader(s(&j.leader))
        .with_member_id(s(&j.member_id))
        .with_members(members)
}

pub fn sync(broker: &Arc<Broker>, r: SyncGroupRequest, version: i16) -> Reply {
    let failed =
        |code: i16| ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code));
    let req = SyncRequest {
        group_id: r.group_id.to_string(),
        generation: r.generation_id,
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.as_ref().map(|i| i.to_string()),
        protocol: match (&r.protocol_type, &r.protocol_name) {
            (Some(t), Some(n)) => Some((t.to_string(), n.to_string())),
            _ => None,
        },
        assignments: r
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let rx = broker.groups.sync(broker, req);
    let Ok(rx) = rx else {
        return Reply::Now(failed(codes::COORDINATOR_NOT_AVAILABLE));
    };
    let env = broker.env.clone();
    Reply::Later(Box::pin(async move {
        let Ok(parked) = rx.await else {
            return failed(codes::COORDINATOR_NOT_AVAILABLE);
        };
        sluice_core::buggify_sleep!(env, 300);
        match parked.release().await {
            Err(_) => failed(codes::COORDINATOR_NOT_AVAILABLE),
            Ok(Err(e)) => failed(codes::group_error(e)),
            Ok(Ok(synced)) => {
                let mut resp = SyncGroupResponse::default().with_assignment(synced.assignment);
                if version >= 5 {
                    resp = resp
                        .with_protocol_type(synced.protocol_type.map(|p| s(&p)))
                        .with_protocol_name(synced.protocol.map(|p| s(&p)));
                }
                ResponseKind::SyncGroup(resp)
            }
        }
    }))
}

pub fn heartbeat(broker: &Arc<Broker>, r: HeartbeatRequest) -> ResponseKind {
    let beat = broker.groups.heartbeat(
        broker,
        &r.group_id,
        r.generation_id,
        &r.member_id,
        r.group_instance_id.as_deref(),
    );
    let code = codes::coordinator_outcome(beat, codes::group_error);
    ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
}

pub fn leave(broker: &Arc<Broker>, r: LeaveGroupRequest, version: i16) -> Reply {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        r.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(r.member_id.to_string(), None)]
    };
    let parked = match broker.groups.leave(broker, &r.group_id, &members) {
        Ok(p) => p,
        Err(_) => {
            return Reply::Now(ResponseKind::LeaveGroup(
                LeaveGroupResponse::default().with_error_code(codes::COORDINATOR_NOT_AVAILABLE),
            ))
        }
    };
    Reply::Later(Box::pin(async move {
        let results = match parked.release().await {
            Ok(r) => r,
            Err(_) => {
                return ResponseKind::LeaveGroup(
                    LeaveGroupResponse::default().with_error_code(codes::COORDINATOR_NOT_AVAILABLE),
                )
            }
        };
        let code = |r: &Result<(), GroupError>| match r {
            Ok(()) => codes::NONE,
            Err(e) => codes::group_error(*e),
        };
        let resp = if version >= 3 {
            LeaveGroupResponse::default().with_members(
                members
                    .iter()
                    .zip(&results)
                    .map(|((id, instance), r)| {
                        MemberResponse::default()
                            .with_member_id(s(id))
                            .with_group_instance_id(instance.as_deref().map(s))
                            .with_error_code(code(r))
                    })
                    .collect(),
            )
        } else {
            LeaveGroupResponse::default().with_error_code(results.first().map_or(0, code))
        };
        ResponseKind::LeaveGroup(resp)
    }))
}

pub fn describe(broker: &Arc<Broker>, r: DescribeGroupsRequest, version: i16) -> ResponseKind {
    let groups = r
        .groups
        .iter()
        .map(|gid| {
            let entry = DescribedGroup::default().with_group_id(gid.clone());
            let Some(g) = broker.groups.describe(gid) else {
                // Kafka describes an unknown group as Dead, and from v6 (KIP-1043)
                // says so with GROUP_ID_NOT_FOUND.
                let entry = entry.with_group_state(s("Dead"));
                return if version >= 6 {
                    entry
                        .with_error_code(codes::GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(s(&format!("Group {} not found.", gid.as_str()))))
                } else {
                    entry
                };
            };
            if g.is_consumer_protocol() {
                // Kafka 4: DescribeGroups describes classic groups only.
                return entry
                    .with_group_state(s("Dead"))
                    .with_error_code(codes::GROUP_ID_NOT_FOUND)
                    .with_error_message(
                        (version >= 6)
                            .then(|| s(&format!("Group {} is not a classic group.", gid.as_str()))),
                    );
            }
            let protocol = g.protocol.clone().unwrap_or_default();
            let members = g
                .members
                .values()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(s(&m.member_id))
                        .with_group_instance_id(if version >= 4 {
                            m.instance_id.as_deref().map(s)
                        } else {
                            None
                        })
                        .with_client_id(s(&m.client_id))
                        .with_client_host(s(&m.client_host))
                        .with_member_metadata(
                            m.protocols
                                .iter()
                                .find(|(p, _)| *p == protocol)
                                .map(|(_, meta)| meta.clone())
                                .unwrap_or_default(),
                        )
                        .with_member_assignment(m.assignment.clone())
                })
                .collect();
            entry
                .with_group_state(s(g.state.name()))
                .with_protocol_type(s(g.protocol_type.as_deref().unwrap_or_default()))
                .with_protocol_data(s(&protocol))
                .with_members(members)
                .with_authorized_operations(if version >= 3 && r.include_authorized_operations {
                    0
                } else {
                    codes::AUTHORIZED_OPERATIONS_OMITTED
                })
        })
        .collect();
    ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups))
}

pub fn list(broker: &Arc<Broker>, r: ListGroupsRequest) -> ResponseKind {
    let wanted = |state: &str| {
        r.states_filter.is_empty()
            || r.states_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case(state))
    };
    let typed = |kind: &str| {
        r.types_filter.is_empty() || r.types_filter.iter().any(|t| t.eq_ignore_ascii_case(kind))
    };
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state, kind)| typed(kind) && wanted(state))
        .map(|(id, ptype, state, kind)| {
            ListedGroup::default()
                .with_group_id(GroupId(s(&id)))
                .with_protocol_type(s(&ptype))
                .with_group_state(s(state))
                .with_group_type(s(kind))
        })
        .collect();
    ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(groups))
}

pub fn delete(broker: &Arc<Broker>, r: DeleteGroupsRequest) -> Reply {
    let parked: Vec<_> = r
        .groups_names
        .iter()
        .map(|gid| (gid.clone(), broker.groups.delete(broker, gid)))
        .collect();
    Reply::Later(Box::pin(async move {
        let mut results = Vec::with_capacity(parked.len());
        for (gid, p) in parked {
            let code = match p {
                Err(_) => codes::COORDINATOR_NOT_AVAILABLE,
                Ok(p) => match p.release().await {
                    Err(_) => codes::COORDINATOR_NOT_AVAILABLE,
                    Ok(Ok(())) => codes::NONE,
                    Ok(Err(e)) => codes::group_error(e),
                },
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(gid)
                    .with_error_code(code),
            );
        }
        ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
    }))
}

/// ConsumerGroupHeartbeat (KIP-848): join, heartbeat, reconcile, leave. Answered once
/// the group's records are durable.
pub fn consumer_group_heartbeat(
    broker: &Arc<Broker>,
    client: &Client,
    r: ConsumerGroupHeartbeatRequest,
) -> Reply {
    let assignment = |tps: &[consumer_group_heartbeat_request::TopicPartitions]| -> Assignment {
        let mut a = Assignment::new();
        for tp in tps {
            a.entry(*tp.topic_id.as_bytes())
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        a
    };
    let req = ConsumerHeartbeat {
        group_id: r.group_id.to_string(),
        member_id: r.member_id.to_string(),
        member_epoch: r.member_epoch,
        instance_id: r.instance_id.as_ref().map(|i| i.to_string()),
        rack_id: r.rack_id.as_ref().map(|i| i.to_string()),
        rebalance_timeout_ms: r.rebalance_timeout_ms,
        subscribed_topic_names: r
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        subscribed_topic_regex: r.subscribed_topic_regex.as_ref().map(|x| x.to_string()),
        server_assignor: r.server_assignor.as_ref().map(|x| x.to_string()),
        owned: r.topic_partitions.as_deref().map(assignment),
        client_id: client.id.clone(),
        client_host: client.host.clone(),
    };
    let failed = |code: i16, message: String| {
        ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(Some(s(&message)))
                .with_member_epoch(-1),
        )
    };
    let parked = match broker.groups.consumer_heartbeat(broker, req) {
        Ok(p) => p,
        Err(e) => return Reply::Now(failed(codes::COORDINATOR_NOT_AVAILABLE, e.0)),
    };
    Reply::Later(Box::pin(async move {
        let answer = match parked.release().await {
            Ok(a) => a,
            Err(e) => return failed(codes::COORDINATOR_NOT_AVAILABLE, e.0),
        };
        match answer {
            Err((e, message)) => failed(codes::group_error(e), message),
            Ok(hb) => ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_member_id(Some(s(&hb.member_id)))
                    .with_member_epoch(hb.member_epoch)
                    .with_heartbeat_interval_ms(hb.heartbeat_interval_ms)
                    .with_assignment(hb.assignment.map(|a| {
                        consumer_group_heartbeat_response::Assignment::default()
                            .with_topic_partitions(
                                a.into_iter()
                                    .map(|(t, ps)| {
                                        consumer_group_heartbeat_response::TopicPartitions::default(
                                        )
                                        .with_topic_id(Uuid::from_bytes(t))
                                        .with_partitions(ps.into_iter().collect())
                                    })
                                    .collect(),
                            )
                    })),
            ),
        }
    }))
}

/// ConsumerGroupDescribe (KIP-848): a consumer group's epochs, assignor and members
/// with their current and target assignments.
pub fn consumer_group_describe(
    broker: &Arc<Broker>,
    r: ConsumerGroupDescribeRequest,
) -> ResponseKind {
    let described = |a: &Assignment| {
        consumer_group_describe_response::Assignment::default().with_topic_partitions(
            a.iter()
                .map(|(t, ps)| {
                    consumer_group_describe_response::TopicPartitions::default()
                        .with_topic_id(Uuid::from_bytes(*t))
                        .with_topic_name(TopicName(s(&broker.topic_by_id(*t).unwrap_or_default())))
                        .with_partitions(ps.iter().copied().collect())
                })
                .collect(),
        )
    };
    let groups = r
        .group_ids
        .iter()
        .map(|gid| {
            let entry = consumer_group_describe_response::DescribedGroup::default()
                .with_group_id(gid.clone())
                .with_authorized_operations(if r.include_authorized_operations {
                    0
                } else {
                    codes::AUTHORIZED_OPERATIONS_OMITTED
                });
            let Some(cg) = broker.groups.describe(gid).and_then(|g| g.consumer) else {
                let why = if broker.groups.describe(gid).is_some() {
                    format!("Group {} is not a consumer group.", gid.as_str())
                } else {
                    format!("Group {} not found.", gid.as_str())
                };
                return entry
                    .with_error_code(codes::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(s(&why)));
            };
            let empty = Assignment::new();
            let members = cg
                .members
                .values()
                .map(|m| {
                    let sub = &m.subscription;
                    consumer_group_describe_response::Member::default()
                        .with_member_id(s(&m.member_id))
                        .with_instance_id(sub.instance_id.as_deref().map(s))
                        .with_rack_id(sub.rack_id.as_deref().map(s))
                        .with_member_epoch(m.epoch)
                        .with_client_id(s(&sub.client_id))
                        .with_client_host(s(&sub.client_host))
                        .with_subscribed_topic_names(
                            sub.topic_names.iter().map(|t| TopicName(s(t))).collect(),
                        )
                        .with_subscribed_topic_regex(sub.topic_regex.as_deref().map(s))
                        .with_assignment(described(&m.assigned))
                        .with_target_assignment(described(
                            cg.target.get(&m.member_id).unwrap_or(&empty),
                        ))
                        // KIP-1099: 0 classic protocol (a migrating member), 1 consumer.
                        .with_member_type(if m.is_classic() { 0 } else { 1 })
                })
                .collect();
            entry
                .with_group_state(s(cg.state_name()))
                .with_group_epoch(cg.epoch)
                .with_assignment_epoch(cg.assignment_epoch)
                .with_assignor_name(s(cg.assignor()))
                .with_members(members)
        })
        .collect();
    ResponseKind::ConsumerGroupDescribe(
        ConsumerGroupDescribeResponse::default().with_groups(groups),
    )
}
