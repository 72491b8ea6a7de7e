//! The group coordinator of Kafka's classic consumer-group protocol, as a pure state
//! machine. Time comes in as `now_ms` (monotonic), member ids from the caller, and
//! everything it wants done — answers to waiting JoinGroup / SyncGroup requests and
//! records to persist in `__consumer_offsets` — comes out as [`Effect`]s, in order.
//!
//! States (Kafka's): Empty → PreparingRebalance → CompletingRebalance → Stable, and
//! back to PreparingRebalance on any membership change. A group that is deleted is
//! simply forgotten (Kafka's Dead).
//!
//! Committed offsets are applied only once their record is durable
//! ([`GroupCoordinator::apply_offset`]), and in log order, so nothing a crash could
//! take back is ever served.

pub mod assignors;
pub mod consumer;
pub mod records;
pub mod share;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use thiserror::Error;

use crate::sim::{planted, Bug};

pub use consumer::{
    ConsumerGroup, ConsumerLimits, Heartbeat, HeartbeatRequest, MigrationPolicy, TopicImage,
};
pub use records::{
    ClassicMemberMetadata, ConsumerRecord, GroupMetadata, GroupRecord, MemberMetadata, OffsetValue,
};

/// Names a waiting JoinGroup or SyncGroup request; the caller picks them.
pub type Ticket = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum GroupError {
    #[error("the member id is not known to the group")]
    UnknownMemberId,
    #[error("the generation is not the group's current one")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("another member took this group.instance.id")]
    FencedInstanceId,
    #[error("the protocol type or protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("the session timeout is outside the broker's limits")]
    InvalidSessionTimeout,
    #[error("rejoin with the member id given")]
    MemberIdRequired,
    #[error("the group has group.max.size members")]
    GroupMaxSizeReached,
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error("the group does not exist")]
    GroupIdNotFound,
    #[error("the group still has members")]
    NonEmptyGroup,
    #[error("the offset metadata is larger than offset.metadata.max.bytes")]
    OffsetMetadataTooLarge,
    #[error("the group's members are subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("the member epoch is fenced: the member must rejoin")]
    FencedMemberEpoch,
    #[error("the member epoch is not the member's current one")]
    StaleMemberEpoch,
    #[error("the static member's instance id is still in use")]
    UnreleasedInstanceId,
    #[error("the server assignor is not supported")]
    UnsupportedAssignor,
    #[error("the request is invalid")]
    InvalidRequest,
    #[error("the regular expression is not valid")]
    InvalidRegularExpression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The name Kafka reports in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Broker-side limits, named as Kafka's group configs.
#[derive(Debug, Clone)]
pub struct GroupLimits {
    /// group.min.session.timeout.ms
    pub session_timeout_min_ms: i32,
    /// group.max.session.timeout.ms
    pub session_timeout_max_ms: i32,
    /// group.initial.rebalance.delay.ms
    pub initial_rebalance_delay_ms: i32,
    /// group.max.size
    pub group_size_max: usize,
    /// offset.metadata.max.bytes
    pub offset_metadata_max_bytes: usize,
    /// offsets.retention.minutes, in milliseconds
    pub offsets_retention_ms: i64,
    /// The settings of KIP-848 consumer groups.
    pub consumer: ConsumerLimits,
    /// The settings of KIP-932 share groups.
    pub share: share::ShareGroupLimits,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            session_timeout_min_ms: 6_000,
            session_timeout_max_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            group_size_max: i32::MAX as usize,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            consumer: ConsumerLimits::default(),
            share: share::ShareGroupLimits::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// Protocol names with their metadata, in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_seen_ms: i64,
    join_ticket: Option<Ticket>,
    sync_ticket: Option<Ticket>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// A member waiting on a JoinGroup or SyncGroup answer is alive by definition.
    fn expired(&self, now_ms: i64) -> bool {
        self.join_ticket.is_none()
            && self.sync_ticket.is_none()
            && now_ms >= self.last_seen_ms + i64::from(self.session_timeout_ms)
    }
}

/// A committed offset as served by OffsetFetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub value: OffsetValue,
    /// Where its record sits in `__consumer_offsets`: later records win.
    pub position: i64,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    pub offsets: BTreeMap<(String, i32), Committed>,
    /// group.instance.id → member id.
    static_members: BTreeMap<String, String>,
    /// The metadata last sent to be stored: what a snapshot of the group writes.
    persisted: Option<GroupMetadata>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they expire.
    pending_members: BTreeMap<String, i64>,
    /// When the current rebalance phase gives up on members that have not answered.
    deadline_ms: i64,
    /// Wall-clock time the group was first seen Empty (offsets.retention.minutes).
    empty_since_ms: Option<i64>,
    /// The earliest a rebalance from Empty completes (initial rebalance delay).
    delay_until_ms: i64,
    rebalance_started_ms: i64,
    /// Set when the group speaks KIP-848's consumer protocol: then the classic
    /// membership above stays empty.
    pub consumer: Option<ConsumerGroup>,
}

impl Group {
    /// Whether any member, of either protocol, is in the group.
    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
            || self
                .consumer
                .as_ref()
                .is_some_and(|c| !c.members.is_empty())
    }

    /// The state Kafka reports (the consumer protocol's own names for its groups).
    pub fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(c) => c.state_name(),
            None => self.state.name(),
        }
    }

    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            offsets: BTreeMap::new(),
            static_members: BTreeMap::new(),
            persisted: None,
            pending_members: BTreeMap::new(),
            deadline_ms: 0,
            empty_since_ms: None,
            delay_until_ms: 0,
            rebalance_started_ms: 0,
            consumer: None,
        }
    }

    /// A copy of everything but the committed offsets (which only durable records
    /// change, so an undo never needs them).
    fn without_offsets(&self) -> Group {
        Group {
            state: self.state,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self.members.clone(),
            offsets: BTreeMap::new(),
            static_members: self.static_members.clone(),
            persisted: self.persisted.clone(),
            pending_members: self.pending_members.clone(),
            deadline_ms: self.deadline_ms,
            empty_since_ms: self.empty_since_ms,
            delay_until_ms: self.delay_until_ms,
            rebalance_started_ms: self.rebalance_started_ms,
            consumer: self.consumer.clone(),
        }
    }

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports, in the order the first member prefers them.
    fn common_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(p, _)| p.clone())
            .filter(|p| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(q, _)| q == p))
            })
            .collect()
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .common_protocols()
                .iter()
                .any(|p| protocols.iter().any(|(q, _)| q == p))
    }

    /// Each member votes for its most preferred common protocol; most votes wins,
    /// ties going to the first member's preference.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.common_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(p)) {
                *votes.entry(p).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        candidates
            .into_iter()
            .find(|c| votes.get(c.as_str()) == Some(&best))
    }

    /// The member-id check every request of a member goes through first.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => return Err(GroupError::FencedInstanceId),
                None if !self.members.contains_key(member_id) => {
                    return Err(GroupError::UnknownMemberId)
                }
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        Ok(())
    }

    /// The record storing the group's metadata now; remembered as what a snapshot
    /// of the group writes.
    fn stored_metadata(&mut self, gid: &str) -> Effect {
        let meta = self.metadata();
        self.persisted = Some(meta.clone());
        Effect::Persist(GroupRecord::Metadata {
            group: gid.to_string(),
            value: Some(meta),
        })
    }

    pub fn metadata(&self) -> GroupMetadata {
        GroupMetadata {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: self
                        .protocol
                        .as_deref()
                        .map(|p| m.metadata(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Each member's metadata for the chosen protocol (its subscription, for consumers).
    pub fn subscriptions(&self) -> Vec<Bytes> {
        match &self.protocol {
            Some(p) => self.members.values().map(|m| m.metadata(p)).collect(),
            None => Vec::new(),
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id is first given one (KIP-394).
    pub require_known_member_id: bool,
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// Protocol type and name, when the client says (v5+): checked against the group's.
    pub protocol: Option<(String, String)>,
    /// The leader's assignment for each member.
    pub assignments: Vec<(String, Bytes)>,
}

/// A successful JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members, with their metadata, to compute assignments.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// A successful SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

/// What the coordinator wants done, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer a waiting JoinGroup. An error carries the member id to report (the new
    /// one for MEMBER_ID_REQUIRED).
    Join {
        ticket: Ticket,
        result: Result<Joined, (GroupError, String)>,
    },
    /// Answer a waiting SyncGroup.
    Sync {
        ticket: Ticket,
        result: Result<Synced, GroupError>,
    },
    /// Append this record to the group's `__consumer_offsets` partition.
    Persist(GroupRecord),
}

/// An offset to commit with its verdict.
pub type CheckedCommit = (OffsetCommit, Result<(), GroupError>);

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub value: OffsetValue,
}

/// A transactional offset commit awaiting its transaction's marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub value: OffsetValue,
    pub position: i64,
}

#[derive(Debug, Default)]
pub struct GroupCoordinator {
    limits: GroupLimits,
    groups: BTreeMap<String, Group>,
    effects: Vec<Effect>,
    /// TxnOffsetCommit offsets by producer id, applied by a commit marker.
    staged: BTreeMap<i64, Vec<StagedOffset>>,
    /// Group configs (KIP-848) by group id, as the metadata image holds them.
    group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Share groups (KIP-932) by id; an id names a share group or another kind.
    share_groups: BTreeMap<String, share::ShareGroup>,
}

impl GroupCoordinator {
    pub fn new(limits: GroupLimits) -> Self {
        GroupCoordinator {
            limits,
            groups: BTreeMap::new(),
            effects: Vec::new(),
            staged: BTreeMap::new(),
            group_configs: BTreeMap::new(),
            share_groups: BTreeMap::new(),
        }
    }

    /// Forgets every group `select` picks, with their staged transactional offsets:
    /// their partition is now another coordinator's.
    pub fn unload(&mut self, select: impl Fn(&str) -> bool) {
        self.groups.retain(|g, _| !select(g));
        self.share_groups.retain(|g, _| !select(g));
        for staged in self.staged.values_mut() {
            staged.retain(|s| !select(&s.group));
        }
        self.staged.retain(|_, v| !v.is_empty());
    }

    /// Everything to do since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    pub fn groups(&self) -> impl Iterator<Item = (&String, &Group)> {
        self.groups.iter()
    }

    // ---- JoinGroup -------------------------------------------------------------

    /// Handles JoinGroup; the answer comes as an [`Effect::Join`] for `ticket`, now or
    /// when the rebalance completes. `fresh_member_id` is used if the member needs one.
    /// `image` serves a classic member joining a consumer group (KIP-848 migration).
    pub fn join(
        &mut self,
        now_ms: i64,
        ticket: Ticket,
        req: JoinRequest,
        fresh_member_id: String,
        image: &TopicImage,
    ) {
        let reply_err = |effects: &mut Vec<Effect>, e: GroupError, id: &str| {
            effects.push(Effect::Join {
                ticket,
                result: Err((e, id.to_string())),
            })
        };
        if req.group_id.is_empty() {
            return reply_err(
                &mut self.effects,
                GroupError::InvalidGroupId,
                &req.member_id,
            );
        }
        if req.session_timeout_ms < self.limits.session_timeout_min_ms
            || req.session_timeout_ms > self.limits.session_timeout_max_ms
        {
            return reply_err(
                &mut self.effects,
                GroupError::InvalidSessionTimeout,
                &req.member_id,
            );
        }
        if self.share_groups.contains_key(&req.group_id) {
            return reply_err(
                &mut self.effects,
                GroupError::InconsistentGroupProtocol,
                &req.member_id,
            );
        }
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(Group::new);
        if let Some(cg) = &group.consumer {
            if !cg.members.is_empty() {
                // A classic member joins the consumer group (KIP-848's migration).
                return self.classic_join_consumer(now_ms, ticket, req, image, fresh_member_id);
            }
            // An empty consumer group becomes a classic one; its offsets stay, and
            // its generations carry on from the group epoch.
            group.generation = group.generation.max(cg.epoch);
            group.consumer = None;
            group.protocol_type = None;
            for record in [
                ConsumerRecord::TargetEpoch(None),
                ConsumerRecord::GroupEpoch(None),
            ] {
                self.effects.push(Effect::Persist(GroupRecord::Consumer {
                    group: req.group_id.clone(),
                    record,
                }));
            }
            // The empty classic group is written at once, so a restart keeps its
            // generation.
            let stored = group.stored_metadata(&req.group_id);
            self.effects.push(stored);
        }
        if !group.supports(&req.protocol_type, &req.protocols) {
            return reply_err(
                &mut self.effects,
                GroupError::InconsistentGroupProtocol,
                &req.member_id,
            );
        }
        let full = group.members.len() >= self.limits.group_size_max;
        if req.member_id.is_empty() {
            if let Some(instance) = req.instance_id.clone() {
                if let Some(old) = group.static_members.get(&instance).cloned() {
                    return self.replace_static(now_ms, ticket, req, old, fresh_member_id);
                }
            } else if req.require_known_member_id {
                if full {
                    return reply_err(&mut self.effects, GroupError::GroupMaxSizeReached, "");
                }
                let deadline = now_ms + i64::from(req.session_timeout_ms);
                group
                    .pending_members
                    .insert(fresh_member_id.clone(), deadline);
                return reply_err(
                    &mut self.effects,
                    GroupError::MemberIdRequired,
                    &fresh_member_id,
                );
            }
            if full {
                return reply_err(&mut self.effects, GroupError::GroupMaxSizeReached, "");
            }
            return self.add_member(now_ms, ticket, req, fresh_member_id);
        }
        if group.pending_members.remove(&req.member_id).is_some() {
            if full {
                return reply_err(&mut self.effects, GroupError::GroupMaxSizeReached, "");
            }
            let id = req.member_id.clone();
            return self.add_member(now_ms, ticket, req, id);
        }
        if let Err(e) = group.check_member(&req.member_id, req.instance_id.as_deref()) {
            return reply_err(&mut self.effects, e, &req.member_id);
        }
        self.rejoin(now_ms, ticket, req);
    }

    fn add_member(&mut self, now_ms: i64, ticket: Ticket, req: JoinRequest, member_id: String) {
        let delay = i64::from(self.limits.initial_rebalance_delay_ms);
        let group = self.groups.get_mut(&req.group_id).expect("join created it");
        if group.members.is_empty() {
            group.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        group.members.insert(
            member_id.clone(),
            Member {
                member_id,
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                last_seen_ms: now_ms,
                join_ticket: Some(ticket),
                sync_ticket: None,
            },
        );
        let gid = req.group_id;
        let group = self.groups.get_mut(&gid).expect("present");
        if group.state == GroupState::PreparingRebalance && group.delay_until_ms > now_ms {
            // KIP-134: while the initial delay runs, each newcomer extends it, up to the
            // rebalance timeout.
            group.delay_until_ms =
                (now_ms + delay).min(group.rebalance_started_ms + group.rebalance_timeout_ms());
        }
        self.prepare_rebalance(now_ms, &gid);
        self.try_complete_join(now_ms, &gid);
    }

    fn rejoin(&mut self, now_ms: i64, ticket: Ticket, req: JoinRequest) {
        let gid = req.group_id.clone();
        let group = self.groups.get_mut(&gid).expect("checked");
        let member = group.members.get_mut(&req.member_id).expect("checked");
        let changed = member.protocols != req.protocols;
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_seen_ms = now_ms;
        if let Some(old) = member.join_ticket.replace(ticket) {
            // A retried JoinGroup replaces the one it retries.
            self.effects.push(Effect::Join {
                ticket: old,
                result: Err((GroupError::UnknownMemberId, req.member_id.clone())),
            });
        }
        let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
        // An unchanged member gets the current generation again, except the leader of a
        // stable group: its rejoin is how a client asks for a new assignment.
        let leader_of_stable = is_leader && group.state == GroupState::Stable;
        let unchanged = !(changed || leader_of_stable);
        match group.state {
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, &gid),
            GroupState::CompletingRebalance | GroupState::Stable if unchanged => {
                // Nothing changed: give the member the current generation again.
                let member = group.members.get_mut(&req.member_id).expect("checked");
                member.join_ticket = None;
                let joined = joined_for(group, &req.member_id);
                self.effects.push(Effect::Join {
                    ticket,
                    result: Ok(joined),
                });
            }
            _ => {
                self.prepare_rebalance(now_ms, &gid);
                self.try_complete_join(now_ms, &gid);
            }
        }
    }

    /// KIP-345: a static member rejoining without its member id takes over its
    /// instance id from the old member id, which is fenced from then on.
    fn replace_static(
        &mut self,
        now_ms: i64,
        ticket: Ticket,
        req: JoinRequest,
        old_id: String,
        new_id: String,
    ) {
        let gid = req.group_id.clone();
        let group = self.groups.get_mut(&gid).expect("checked");
        let Some(mut member) = group.members.remove(&old_id) else {
            group
                .static_members
                .remove(req.instance_id.as_deref().unwrap_or_default());
            return self.add_member(now_ms, ticket, req, new_id);
        };
        if let Some(old) = member.join_ticket.take() {
            self.effects.push(Effect::Join {
                ticket: old,
                result: Err((GroupError::FencedInstanceId, old_id.clone())),
            });
        }
        if let Some(old) = member.sync_ticket.take() {
            self.effects.push(Effect::Sync {
                ticket: old,
                result: Err(GroupError::FencedInstanceId),
            });
        }
        let changed = member.protocols != req.protocols;
        member.member_id = new_id.clone();
        member.protocols = req.protocols;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_seen_ms = now_ms;
        member.join_ticket = Some(ticket);
        group.members.insert(new_id.clone(), member);
        if let Some(instance) = &req.instance_id {
            group
                .static_members
                .insert(instance.clone(), new_id.clone());
        }
        if group.leader.as_deref() == Some(old_id.as_str()) {
            group.leader = Some(new_id.clone());
        }
        match group.state {
            GroupState::Stable if !changed => {
                // Same subscription: keep the assignment, no rebalance (KIP-345).
                let member = group.members.get_mut(&new_id).expect("inserted");
                member.join_ticket = None;
                let joined = joined_for(group, &new_id);
                let stored = group.stored_metadata(&gid);
                self.effects.push(stored);
                self.effects.push(Effect::Join {
                    ticket,
                    result: Ok(joined),
                });
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, &gid),
            _ => {
                self.prepare_rebalance(now_ms, &gid);
                self.try_complete_join(now_ms, &gid);
            }
        }
    }

    /// Starts a rebalance (from Empty, Stable or CompletingRebalance).
    fn prepare_rebalance(&mut self, now_ms: i64, gid: &str) {
        let delay = i64::from(self.limits.initial_rebalance_delay_ms);
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        let from = group.state;
        if from == GroupState::PreparingRebalance {
            return;
        }
        if from == GroupState::CompletingRebalance {
            for m in group.members.values_mut() {
                if let Some(t) = m.sync_ticket.take() {
                    self.effects.push(Effect::Sync {
                        ticket: t,
                        result: Err(GroupError::RebalanceInProgress),
                    });
                }
            }
        }
        group.state = GroupState::PreparingRebalance;
        group.rebalance_started_ms = now_ms;
        group.deadline_ms = now_ms + group.rebalance_timeout_ms();
        group.delay_until_ms = if from == GroupState::Empty {
            (now_ms + delay).min(group.deadline_ms)
        } else {
            now_ms
        };
    }

    fn try_complete_join(&mut self, now_ms: i64, gid: &str) {
        let Some(group) = self.groups.get(gid) else {
            return;
        };
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = group.members.values().all(|m| m.join_ticket.is_some())
            && group.pending_members.is_empty();
        if (all_joined && now_ms >= group.delay_until_ms) || now_ms >= group.deadline_ms {
            self.complete_join(now_ms, gid);
        }
    }

    fn complete_join(&mut self, now_ms: i64, gid: &str) {
        let group = self.groups.get_mut(gid).expect("caller checked");
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = group
            .members
            .values()
            .filter(|m| m.join_ticket.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            remove_member(group, &id, &mut self.effects);
        }
        if !(planted(Bug::GenerationNotBumped) && group.generation > 0) {
            group.generation += 1;
        }
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol = None;
            group.leader = None;
            let stored = group.stored_metadata(gid);
            self.effects.push(stored);
            return;
        }
        group.protocol = group.select_protocol();
        if !group
            .leader
            .as_ref()
            .is_some_and(|l| group.members.contains_key(l))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.state = GroupState::CompletingRebalance;
        group.deadline_ms = now_ms + group.rebalance_timeout_ms();
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let joined = joined_for(group, &id);
            let m = group.members.get_mut(&id).expect("listed");
            m.last_seen_ms = now_ms;
            if let Some(ticket) = m.join_ticket.take() {
                self.effects.push(Effect::Join {
                    ticket,
                    result: Ok(joined),
                });
            }
        }
    }

    // ---- SyncGroup -------------------------------------------------------------

    /// Handles SyncGroup; the answer comes as an [`Effect::Sync`] for `ticket`.
    pub fn sync(&mut self, now_ms: i64, ticket: Ticket, req: SyncRequest, image: &TopicImage) {
        if self
            .groups
            .get(&req.group_id)
            .is_some_and(Group::is_consumer_protocol)
        {
            let result = self.classic_sync_consumer(now_ms, &req, image);
            self.effects.push(Effect::Sync { ticket, result });
            return;
        }
        if let Err(e) = self.sync_inner(now_ms, ticket, req) {
            self.effects.push(Effect::Sync {
                ticket,
                result: Err(e),
            });
        }
    }

    fn sync_inner(
        &mut self,
        now_ms: i64,
        ticket: Ticket,
        req: SyncRequest,
    ) -> Result<(), GroupError> {
        let SyncRequest {
            group_id,
            generation,
            member_id,
            instance_id,
            protocol,
            assignments,
        } = req;
        let (gid, member_id) = (group_id.as_str(), member_id.as_str());
        let group = self
            .groups
            .get_mut(gid)
            .ok_or(GroupError::UnknownMemberId)?;
        group.check_member(member_id, instance_id.as_deref())?;
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if let Some((ptype, pname)) = &protocol {
            if group.protocol_type.as_ref() != Some(ptype) || group.protocol.as_ref() != Some(pname)
            {
                return Err(GroupError::InconsistentGroupProtocol);
            }
        }
        match group.state {
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                let m = group.members.get_mut(member_id).expect("checked");
                m.last_seen_ms = now_ms;
                let synced = Synced {
                    protocol_type: group.protocol_type.clone(),
                    protocol: group.protocol.clone(),
                    assignment: m.assignment.clone(),
                };
                self.effects.push(Effect::Sync {
                    ticket,
                    result: Ok(synced),
                });
                Ok(())
            }
            GroupState::CompletingRebalance => {
                let m = group.members.get_mut(member_id).expect("checked");
                m.last_seen_ms = now_ms;
                if let Some(old) = m.sync_ticket.replace(ticket) {
                    self.effects.push(Effect::Sync {
                        ticket: old,
                        result: Err(GroupError::RebalanceInProgress),
                    });
                }
                if group.leader.as_deref() != Some(member_id) {
                    return Ok(());
                }
                let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                let leaders = given.get(member_id).cloned().unwrap_or_default();
                for m in group.members.values_mut() {
                    m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    if planted(Bug::SyncSameAssignment) {
                        m.assignment = leaders.clone();
                    }
                }
                group.state = GroupState::Stable;
                let stored = group.stored_metadata(gid);
                self.effects.push(stored);
                for m in group.members.values_mut() {
                    if let Some(t) = m.sync_ticket.take() {
                        self.effects.push(Effect::Sync {
                            ticket: t,
                            result: Ok(Synced {
                                protocol_type: group.protocol_type.clone(),
                                protocol: group.protocol.clone(),
                                assignment: m.assignment.clone(),
                            }),
                        });
                    }
                }
                Ok(())
            }
        }
    }

    // ---- Heartbeat and LeaveGroup ------------------------------------------------

    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        gid: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(gid)
            .ok_or(GroupError::UnknownMemberId)?;
        if group.is_consumer_protocol() {
            return self.classic_heartbeat_consumer(
                now_ms,
                gid,
                generation,
                member_id,
                instance_id,
            );
        }
        group.check_member(member_id, instance_id)?;
        if group.state == GroupState::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        group
            .members
            .get_mut(member_id)
            .expect("checked")
            .last_seen_ms = now_ms;
        match group.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Removes members (by member id, or by instance id for static members); one
    /// result per member given.
    pub fn leave(
        &mut self,
        now_ms: i64,
        gid: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<Result<(), GroupError>> {
        if self
            .groups
            .get(gid)
            .is_some_and(Group::is_consumer_protocol)
        {
            return self.classic_leave_consumer(gid, members);
        }
        let mut results = Vec::with_capacity(members.len());
        let mut removed_any = false;
        for (member_id, instance_id) in members {
            let Some(group) = self.groups.get_mut(gid) else {
                results.push(Err(GroupError::UnknownMemberId));
                continue;
            };
            let id = match instance_id {
                Some(instance) => match group.static_members.get(instance) {
                    None => Err(GroupError::UnknownMemberId),
                    Some(current) if !member_id.is_empty() && current != member_id => {
                        Err(GroupError::FencedInstanceId)
                    }
                    Some(current) => Ok(current.clone()),
                },
                None if group.pending_members.remove(member_id).is_some() => {
                    results.push(Ok(()));
                    continue;
                }
                None if group.members.contains_key(member_id) => Ok(member_id.clone()),
                None => Err(GroupError::UnknownMemberId),
            };
            match id {
                Ok(id) => {
                    remove_member(group, &id, &mut self.effects);
                    removed_any = true;
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if removed_any {
            self.membership_changed(now_ms, gid);
        }
        results
    }

    fn membership_changed(&mut self, now_ms: i64, gid: &str) {
        let Some(group) = self.groups.get(gid) else {
            return;
        };
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, gid);
                self.try_complete_join(now_ms, gid);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, gid),
            GroupState::Empty => {}
        }
    }

    /// A record of the group could not be stored, so what it promised is void: the
    /// group rebalances (Kafka's answer to a failed group-metadata write).
    pub fn storage_failed(&mut self, now_ms: i64, gid: &str) {
        if self.groups.get(gid).is_some_and(|g| {
            matches!(
                g.state,
                GroupState::Stable | GroupState::CompletingRebalance
            )
        }) {
            self.prepare_rebalance(now_ms, gid);
            self.try_complete_join(now_ms, gid);
        }
    }

    // ---- Time --------------------------------------------------------------------

    /// Expires sessions and pending members and ends rebalance phases that ran out of
    /// time. Call it periodically.
    /// (KIP-848 members are fenced by the caller, one group at a time, with
    /// [`GroupCoordinator::expired_consumers`]: each fencing's records must be written
    /// before it stands.)
    pub fn tick(&mut self, now_ms: i64) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for gid in ids {
            let group = self.groups.get_mut(&gid).expect("listed");
            if group.is_consumer_protocol() {
                continue;
            }
            group
                .pending_members
                .retain(|_, deadline| *deadline > now_ms);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| m.expired(now_ms))
                .map(|m| m.member_id.clone())
                .collect();
            for id in &expired {
                remove_member(group, id, &mut self.effects);
            }
            if group.state == GroupState::CompletingRebalance && now_ms >= group.deadline_ms {
                // Members that never sent SyncGroup are out; the rest rebalance again.
                let silent: Vec<String> = group
                    .members
                    .values()
                    .filter(|m| m.sync_ticket.is_none())
                    .map(|m| m.member_id.clone())
                    .collect();
                for id in &silent {
                    remove_member(group, id, &mut self.effects);
                }
                self.prepare_rebalance(now_ms, &gid);
                self.try_complete_join(now_ms, &gid);
                continue;
            }
            if expired.is_empty() {
                self.try_complete_join(now_ms, &gid);
            } else {
                self.membership_changed(now_ms, &gid);
            }
        }
    }

    // ---- Offsets -----------------------------------------------------------------

    /// Validates an OffsetCommit and returns the records to persist (one per offset
    /// accepted) with a result per offset. Apply each with [`Self::apply_offset`] once
    /// it is durable. A commit with generation -1 and no member id is a "simple"
    /// commit, allowed while the group has no members.
    pub fn commit(
        &mut self,
        now_ms: i64,
        gid: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<OffsetCommit>,
    ) -> Result<Vec<CheckedCommit>, GroupError> {
        if gid.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let group = match self.groups.get_mut(gid) {
            Some(g) => g,
            None if generation < 0 => self
                .groups
                .entry(gid.to_string())
                .or_insert_with(Group::new),
            None => return Err(GroupError::IllegalGeneration),
        };
        let simple = generation < 0 && group.state == GroupState::Empty;
        if planted(Bug::StaleCommitAccepted) {
            // Zombies commit: no check at all.
        } else if group.consumer.is_some() {
            group.check_consumer_commit(member_id, generation)?;
        } else if !simple {
            group.check_member(member_id, instance_id)?;
            if generation != group.generation {
                return Err(GroupError::IllegalGeneration);
            }
            if group.state == GroupState::CompletingRebalance {
                return Err(GroupError::RebalanceInProgress);
            }
            if let Some(m) = group.members.get_mut(member_id) {
                m.last_seen_ms = now_ms;
            }
        }
        let max = self.limits.offset_metadata_max_bytes;
        Ok(offsets
            .into_iter()
            .map(|o| {
                let result = if o.value.metadata.len() > max {
                    Err(GroupError::OffsetMetadataTooLarge)
                } else {
                    Ok(())
                };
                (o, result)
            })
            .collect())
    }

    /// Validates a TxnOffsetCommit (KIP-447): with a generation or member id given, the
    /// member must be current; without, the producer's fencing is enough.
    pub fn check_txn_commit(
        &self,
        gid: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if gid.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if generation < 0 && member_id.is_empty() {
            return Ok(());
        }
        let group = self.groups.get(gid).ok_or(GroupError::IllegalGeneration)?;
        if group.is_consumer_protocol() {
            return group.check_consumer_commit(member_id, generation);
        }
        group.check_member(member_id, instance_id)?;
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// A durable transactional offset, applied when its producer's transaction commits.
    pub fn stage_txn_offset(&mut self, producer_id: i64, staged: StagedOffset) {
        self.staged.entry(producer_id).or_default().push(staged);
    }

    /// `producer_id`'s transaction ended (its marker is durable in the partition of
    /// the groups `here` selects): apply or drop its staged offsets there.
    pub fn end_txn_offsets(&mut self, producer_id: i64, commit: bool, here: impl Fn(&str) -> bool) {
        let Some(all) = self.staged.remove(&producer_id) else {
            return;
        };
        let (mine, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|s| here(&s.group));
        if !others.is_empty() {
            self.staged.insert(producer_id, others);
        }
        if commit || planted(Bug::TxnOffsetsIgnoreAbort) {
            for s in mine {
                self.apply_offset(&s.group, &s.topic, s.partition, Some(s.value), s.position);
            }
        }
    }

    /// Whether a transactional commit to `group`'s offsets is pending (OffsetFetch with
    /// require_stable answers UNSTABLE_OFFSET_COMMIT).
    pub fn has_staged(&self, group: &str) -> bool {
        self.staged.values().flatten().any(|s| s.group == group)
    }

    /// The partitions of `group` with transactional offsets pending.
    pub fn staged_partitions(&self, group: &str) -> BTreeSet<(String, i32)> {
        self.staged
            .values()
            .flatten()
            .filter(|s| s.group == group)
            .map(|s| (s.topic.clone(), s.partition))
            .collect()
    }

    /// Applies a durable offset-commit record found at `position` in the log (also
    /// used when loading). A record older than the one applied is ignored.
    pub fn apply_offset(
        &mut self,
        gid: &str,
        topic: &str,
        partition: i32,
        value: Option<OffsetValue>,
        position: i64,
    ) {
        let key = (topic.to_string(), partition);
        match value {
            Some(value) => {
                let group = self
                    .groups
                    .entry(gid.to_string())
                    .or_insert_with(Group::new);
                if group
                    .offsets
                    .get(&key)
                    .is_some_and(|c| c.position > position)
                {
                    return;
                }
                group.offsets.insert(key, Committed { value, position });
            }
            None => {
                if let Some(group) = self.groups.get_mut(gid) {
                    group.offsets.remove(&key);
                }
            }
        }
    }

    /// Rebuilds a group from its metadata record at start. Members are back as they
    /// were and must heartbeat within their session timeout to stay.
    pub fn load_metadata(&mut self, now_ms: i64, gid: &str, value: Option<GroupMetadata>) {
        let Some(meta) = value else {
            // Deleted (its offsets' tombstones precede this), or upgraded to a
            // consumer group (its records follow, and its offsets stay).
            if let Some(g) = self.groups.get_mut(gid) {
                g.members.clear();
                g.static_members.clear();
                g.state = GroupState::Empty;
                g.persisted = None;
                if g.offsets.is_empty() && g.consumer.is_none() {
                    self.groups.remove(gid);
                }
            }
            return;
        };
        let group = self
            .groups
            .entry(gid.to_string())
            .or_insert_with(Group::new);
        group.persisted = Some(meta.clone());
        group.consumer = None;
        group.generation = meta.generation;
        group.protocol_type = (!meta.protocol_type.is_empty()).then_some(meta.protocol_type);
        group.protocol = meta.protocol.clone();
        group.leader = meta.leader;
        group.members.clear();
        group.static_members.clear();
        for m in meta.members {
            if let Some(instance) = &m.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let protocols = meta
                .protocol
                .clone()
                .map(|p| vec![(p, m.subscription)])
                .unwrap_or_default();
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    last_seen_ms: now_ms,
                    join_ticket: None,
                    sync_ticket: None,
                },
            );
        }
        let pending = !group.members.is_empty() && group.leader.is_none();
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        if pending {
            // Members without a leader: written by a downgrade from the consumer
            // protocol, whose rebalance had not completed. It starts again, or the
            // members would carry on with what they held then, owning nothing new.
            self.prepare_rebalance(now_ms, gid);
        }
    }

    /// offsets.retention.minutes (KIP-211): a consumer group's committed offsets
    /// expire once it has been Empty for the retention; offsets committed without
    /// a group (standalone consumers) expire the retention after their commit. A
    /// group left with neither members nor offsets goes too. `now_ms` is the wall
    /// clock (commit timestamps are). The Empty clock starts when this coordinator
    /// first sees the group Empty, so it restarts with the coordinator.
    pub fn expire_offsets(&mut self, now_ms: i64) {
        let retention_ms = self.limits.offsets_retention_ms;
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for gid in ids {
            let group = self.groups.get_mut(&gid).expect("listed");
            if group.state != GroupState::Empty || group.has_members() {
                group.empty_since_ms = None;
                continue;
            }
            let since = *group.empty_since_ms.get_or_insert(now_ms);
            let expired: Vec<(String, i32)> = if group.protocol_type.is_some() {
                if now_ms.saturating_sub(since) < retention_ms {
                    continue;
                }
                group.offsets.keys().cloned().collect()
            } else {
                group
                    .offsets
                    .iter()
                    .filter(|(_, c)| {
                        now_ms.saturating_sub(c.value.commit_timestamp_ms) >= retention_ms
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            if expired.is_empty() {
                continue;
            }
            for (topic, partition) in expired {
                group.offsets.remove(&(topic.clone(), partition));
                self.effects.push(Effect::Persist(GroupRecord::Offset {
                    group: gid.clone(),
                    topic,
                    partition,
                    value: None,
                }));
            }
            if group.offsets.is_empty() && !group.has_members() {
                if group.consumer.is_some() {
                    self.effects.push(Effect::Persist(GroupRecord::Consumer {
                        group: gid.clone(),
                        record: ConsumerRecord::GroupEpoch(None),
                    }));
                }
                self.groups.remove(&gid);
                self.effects.push(Effect::Persist(GroupRecord::Metadata {
                    group: gid.clone(),
                    value: None,
                }));
            }
        }
    }

    /// DeleteGroups: only a group without members; its offsets go with it.
    pub fn delete_group(&mut self, gid: &str) -> Result<(), GroupError> {
        let group = self.groups.get(gid).ok_or(GroupError::GroupIdNotFound)?;
        if group.has_members() || group.state != GroupState::Empty {
            return Err(GroupError::NonEmptyGroup);
        }
        let group = self.groups.remove(gid).expect("present");
        if group.consumer.is_some() {
            for record in [
                ConsumerRecord::TargetEpoch(None),
                ConsumerRecord::GroupEpoch(None),
            ] {
                self.effects.push(Effect::Persist(GroupRecord::Consumer {
                    group: gid.to_string(),
                    record,
                }));
            }
        }
        for (topic, partition) in group.offsets.into_keys() {
            self.effects.push(Effect::Persist(GroupRecord::Offset {
                group: gid.to_string(),
                topic,
                partition,
                value: None,
            }));
        }
        self.effects.push(Effect::Persist(GroupRecord::Metadata {
            group: gid.to_string(),
            value: None,
        }));
        Ok(())
    }

    /// OffsetDelete: removes committed offsets of topics the group's members are not
    /// subscribed to (`subscribed` lists the topics they are).
    pub fn delete_offsets(
        &mut self,
        gid: &str,
        partitions: &[(String, i32)],
        subscribed: &BTreeSet<String>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let group = self
            .groups
            .get_mut(gid)
            .ok_or(GroupError::GroupIdNotFound)?;
        let active = group.has_members();
        if active && group.protocol_type.as_deref() != Some("consumer") {
            return Err(GroupError::NonEmptyGroup);
        }
        let mut results = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            if active && subscribed.contains(topic) {
                results.push(Err(GroupError::GroupSubscribedToTopic));
                continue;
            }
            if group.offsets.remove(&(topic.clone(), *partition)).is_some() {
                self.effects.push(Effect::Persist(GroupRecord::Offset {
                    group: gid.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                }));
            }
            results.push(Ok(()));
        }
        Ok(results)
    }
}

/// The JoinGroup answer for `member_id` in the group's current generation.
fn joined_for(group: &Group, member_id: &str) -> Joined {
    let leader = group.leader.clone().unwrap_or_default();
    let protocol = group.protocol.clone().unwrap_or_default();
    let members = if leader == member_id {
        group
            .members
            .values()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.instance_id.clone(),
                    m.metadata(&protocol),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    Joined {
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol.clone(),
        leader,
        member_id: member_id.to_string(),
        members,
    }
}

/// Takes a member out, failing whatever it was waiting on.
fn remove_member(group: &mut Group, member_id: &str, effects: &mut Vec<Effect>) {
    let Some(m) = group.members.remove(member_id) else {
        return;
    };
    if let Some(instance) = &m.instance_id {
        if group.static_members.get(instance).map(String::as_str) == Some(member_id) {
            group.static_members.remove(instance);
        }
    }
    if let Some(t) = m.join_ticket {
        effects.push(Effect::Join {
            ticket: t,
            result: Err((GroupError::UnknownMemberId, member_id.to_string())),
        });
    }
    if let Some(t) = m.sync_ticket {
        effects.push(Effect::Sync {
            ticket: t,
            result: Err(GroupError::UnknownMemberId),
        });
    }
}

#[cfg(test)]
mod tests;
