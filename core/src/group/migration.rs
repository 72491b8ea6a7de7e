//! KIP-848's online migration between the classic and the consumer protocol, in one
//! live group (Kafka's convertToConsumerGroup, classicGroup{Join,Sync,Heartbeat,
//! Leave}ToConsumerGroup and convertToClassicGroup):
//!
//! - Upgrade: a ConsumerGroupHeartbeat joining a classic group that has members turns
//!   it into a consumer group. Each classic member becomes a member at the group's
//!   generation, owning what its last SyncGroup gave it (which is also its target),
//!   and keeps speaking the classic protocol.
//! - Classic members inside a consumer group: JoinGroup is answered at once, with the
//!   member epoch as the generation, after reconciling the member against the
//!   partitions its subscription says it owns; SyncGroup hands out its current
//!   assignment; Heartbeat says REBALANCE_IN_PROGRESS whenever the member must rejoin
//!   to move on (the group epoch moved, it must revoke, or partitions it waits for are
//!   free); LeaveGroup removes it. Such a member is fenced when its session (its
//!   JoinGroup's), a rejoin or a sync runs out of time.
//! - Downgrade: when the last consumer-protocol member leaves and classic members
//!   remain, the group turns classic (generation = group epoch, each member keeping
//!   the partitions it holds) and rebalances.
//!
//! `group.consumer.migration.policy` (Kafka's; default bidirectional) allows each way.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::super::records::ClassicMemberMetadata;
use super::super::{GroupState, JoinRequest, Joined, Member, SyncRequest, Synced, Ticket};
use super::*;

/// `group.consumer.migration.policy`: which online conversions are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationPolicy {
    Disabled,
    Upgrade,
    Downgrade,
    #[default]
    Bidirectional,
}

impl MigrationPolicy {
    pub const NAMES: [&'static str; 4] = ["disabled", "upgrade", "downgrade", "bidirectional"];

    /// Kafka's names, in any case.
    pub fn parse(s: &str) -> Option<MigrationPolicy> {
        match s.to_ascii_lowercase().as_str() {
            "disabled" => Some(MigrationPolicy::Disabled),
            "upgrade" => Some(MigrationPolicy::Upgrade),
            "downgrade" => Some(MigrationPolicy::Downgrade),
            "bidirectional" => Some(MigrationPolicy::Bidirectional),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MigrationPolicy::Disabled => "disabled",
            MigrationPolicy::Upgrade => "upgrade",
            MigrationPolicy::Downgrade => "downgrade",
            MigrationPolicy::Bidirectional => "bidirectional",
        }
    }

    fn allows_upgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Upgrade | MigrationPolicy::Bidirectional
        )
    }

    fn allows_downgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Downgrade | MigrationPolicy::Bidirectional
        )
    }
}

// ---- The embedded consumer protocol (ConsumerProtocolSubscription / Assignment) ----

/// What a classic member's embedded subscription says.
struct Subscribed {
    topics: Vec<String>,
    owned: Vec<(String, Vec<i32>)>,
    rack: Option<String>,
}

/// The version an embedded subscription or assignment is written at; versions past
/// the ones known read as the newest (their fields come first).
fn version_of(raw: &[u8]) -> Result<i16, String> {
    match raw {
        [a, b, ..] => {
            let v = i16::from_be_bytes([*a, *b]);
            if v < 0 {
                return Err(format!("version {v}"));
            }
            Ok(v.min(3))
        }
        _ => Err("shorter than its version".into()),
    }
}

fn decode_subscription(raw: &Bytes) -> Result<Subscribed, String> {
    let version = version_of(raw)?;
    let mut b = raw.slice(2..);
    let s = ConsumerProtocolSubscription::decode(&mut b, version).map_err(|e| e.to_string())?;
    let mut topics: Vec<String> = s.topics.iter().map(|t| t.to_string()).collect();
    topics.sort();
    topics.dedup();
    Ok(Subscribed {
        topics,
        owned: s
            .owned_partitions
            .iter()
            .map(|t| (t.topic.to_string(), t.partitions.clone()))
            .collect(),
        rack: s.rack_id.map(|r| r.to_string()),
    })
}

/// Partitions named by topic name, as topic ids (topics that no longer exist and
/// partitions past a topic's count are left out).
fn to_ids(by_name: Vec<(String, Vec<i32>)>, image: &TopicImage) -> Assignment {
    let mut out = Assignment::new();
    for (name, partitions) in by_name {
        let Some((id, count)) = image.get(&name) else {
            continue;
        };
        let ps: BTreeSet<i32> = partitions
            .into_iter()
            .filter(|p| (0..*count).contains(p))
            .collect();
        if !ps.is_empty() {
            out.entry(*id).or_default().extend(ps);
        }
    }
    out
}

fn decode_assignment(raw: &Bytes, image: &TopicImage) -> Result<Assignment, String> {
    if raw.is_empty() {
        return Ok(Assignment::new());
    }
    let version = version_of(raw)?;
    let mut b = raw.slice(2..);
    let a = ConsumerProtocolAssignment::decode(&mut b, version).map_err(|e| e.to_string())?;
    Ok(to_ids(
        a.assigned_partitions
            .into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect(),
        image,
    ))
}

/// An assignment as a classic member reads it, at the version of its subscription.
fn encode_assignment(a: &Assignment, image: &TopicImage, version: i16) -> Bytes {
    let names: BTreeMap<&TopicId, &String> = image.iter().map(|(n, (id, _))| (id, n)).collect();
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        a.iter()
            .filter_map(|(id, ps)| {
                let name = names.get(id)?;
                Some(
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(ps.iter().copied().collect()),
                )
            })
            .collect(),
    );
    let mut out = BytesMut::new();
    out.put_i16(version);
    assignment
        .encode(&mut out, version)
        .expect("a list of topic names and partitions always encodes");
    out.freeze()
}

// ---- Classic members in a consumer group ------------------------------------------

impl ConsumerGroup {
    /// Kafka's supportsClassicProtocols: the consumer protocol type, and a protocol
    /// every classic member of the group supports.
    fn supports_classic(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type != "consumer" || protocols.is_empty() {
            return false;
        }
        let classic: Vec<&ClassicMemberMetadata> = self
            .members
            .values()
            .filter_map(|m| m.subscription.classic.as_ref())
            .collect();
        protocols.iter().any(|(name, _)| {
            classic
                .iter()
                .all(|c| c.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// Kafka's waitingOnUnreleasedPartition: a partition of the member's target is
    /// still owned by another member.
    fn waiting_on_unreleased(&self, m: &ConsumerMember) -> bool {
        if m.state != MemberState::UnreleasedPartitions {
            return false;
        }
        self.target.get(&m.member_id).is_some_and(|target| {
            target.iter().any(|(t, ps)| {
                ps.iter().any(|p| {
                    !m.assigned.get(t).is_some_and(|a| a.contains(p))
                        && self
                            .owners
                            .get(&(*t, *p))
                            .is_some_and(|(o, _)| *o != m.member_id)
                })
            })
        })
    }

    /// The classic member a SyncGroup, Heartbeat or LeaveGroup names.
    fn classic_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&ConsumerMember, GroupError> {
        let m = match instance_id {
            None => self.members.get(member_id),
            Some(i) => self
                .static_members
                .get(i)
                .and_then(|id| self.members.get(id)),
        }
        .ok_or(GroupError::UnknownMemberId)?;
        if instance_id.is_some() && m.member_id != member_id {
            return Err(GroupError::FencedInstanceId);
        }
        if !m.is_classic() {
            return Err(GroupError::UnknownMemberId);
        }
        Ok(m)
    }
}

impl ConsumerMember {
    /// The protocol the member was answered with: the first it offered.
    fn classic_protocol(&self) -> (String, Bytes) {
        self.subscription
            .classic
            .as_ref()
            .and_then(|c| c.protocols.first().cloned())
            .unwrap_or_default()
    }

    fn rebalance_deadline(&self, now_ms: i64) -> i64 {
        now_ms + i64::from(self.subscription.rebalance_timeout_ms.max(0))
    }
}

impl GroupCoordinator {
    /// Turns the classic group `gid`, which has members, into a consumer group
    /// (Kafka's convertToConsumerGroup). Refused, with nothing changed, when the
    /// policy forbids it, the group is not a consumer-protocol group, it is too large
    /// or its members' embedded protocol cannot be read.
    pub(in crate::group) fn upgrade(
        &mut self,
        now_ms: i64,
        gid: &str,
        image: &TopicImage,
    ) -> Result<(), Refusal> {
        let policy = self.limits.consumer.migration_policy;
        let max = self.limits.consumer.max_size;
        let group = self.groups.get(gid).expect("the caller found the group");
        let cannot = |why: String| {
            refuse(
                GroupError::GroupIdNotFound,
                format!("Cannot upgrade the classic group {gid} to a consumer group: {why}."),
            )
        };
        if !policy.allows_upgrade() {
            return cannot(format!(
                "group.consumer.migration.policy is {}",
                policy.name()
            ));
        }
        if group.protocol_type.as_deref() != Some("consumer") {
            return cannot(format!(
                "its protocol type is '{}', not consumer",
                group.protocol_type.as_deref().unwrap_or_default()
            ));
        }
        if group.members.len() > max {
            return cannot(format!(
                "it has more members than group.consumer.max.size ({max})"
            ));
        }
        let generation = group.generation;
        let mut members = Vec::new();
        let mut owners: BTreeMap<(TopicId, i32), &str> = BTreeMap::new();
        for m in group.members.values() {
            let protocol = group
                .protocol
                .clone()
                .or_else(|| m.protocols.first().map(|(n, _)| n.clone()))
                .unwrap_or_default();
            let malformed = |e: String| {
                cannot(format!(
                    "member {}'s embedded consumer protocol is malformed ({e})",
                    m.member_id
                ))
            };
            let sub = match decode_subscription(&m.metadata(&protocol)) {
                Ok(s) => s,
                Err(e) => return malformed(e),
            };
            let assigned = match decode_assignment(&m.assignment, image) {
                Ok(_) if planted(Bug::UpgradeForgetsHeldPartitions) => Assignment::new(),
                Ok(a) => a,
                Err(e) => return malformed(e),
            };
            for (t, ps) in &assigned {
                for p in ps {
                    if let Some(other) = owners.insert((*t, *p), &m.member_id) {
                        return cannot(format!(
                            "its last assignment gives partition {p} of a topic to both {other} and {}",
                            m.member_id
                        ));
                    }
                }
            }
            let mut cm = ConsumerMember::new(m.member_id.clone(), now_ms);
            cm.epoch = generation;
            cm.previous_epoch = generation;
            cm.assigned = assigned;
            cm.subscription = MemberSubscription {
                instance_id: m.instance_id.clone(),
                rack_id: sub.rack,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                topic_names: sub.topics,
                topic_regex: None,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                server_assignor: None,
                classic: Some(ClassicMemberMetadata {
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: m.protocols.clone(),
                }),
            };
            members.push(cm);
        }

        // The classic generation ends: whoever waits on it is told to rejoin.
        let group = self.groups.get_mut(gid).expect("found above");
        for m in group.members.values_mut() {
            if let Some(t) = m.join_ticket.take() {
                self.effects.push(Effect::Join {
                    ticket: t,
                    result: Err((GroupError::RebalanceInProgress, m.member_id.clone())),
                });
            }
            if let Some(t) = m.sync_ticket.take() {
                self.effects.push(Effect::Sync {
                    ticket: t,
                    result: Err(GroupError::RebalanceInProgress),
                });
            }
        }
        group.members.clear();
        group.static_members.clear();
        group.pending_members.clear();
        group.state = GroupState::Empty;
        group.persisted = None;
        group.become_consumer();
        let cg = group.consumer.as_mut().expect("made a consumer group");
        cg.epoch = generation;
        cg.assignment_epoch = generation;
        let mut records = Vec::new();
        for m in &members {
            records.push(ConsumerRecord::Member {
                member_id: m.member_id.clone(),
                value: Some(m.subscription.clone()),
            });
        }
        records.push(ConsumerRecord::GroupEpoch(Some(generation)));
        for m in &members {
            records.push(ConsumerRecord::Target {
                member_id: m.member_id.clone(),
                value: Some(m.assigned.clone()),
            });
        }
        records.push(ConsumerRecord::TargetEpoch(Some(generation)));
        for m in members {
            records.push(ConsumerRecord::Current {
                member_id: m.member_id.clone(),
                value: Some(m.current()),
            });
            cg.target.insert(m.member_id.clone(), m.assigned.clone());
            cg.set_current(m);
        }
        self.effects.push(Effect::Persist(GroupRecord::Metadata {
            group: gid.to_string(),
            value: None,
        }));
        self.persist_consumer(gid, records);
        Ok(())
    }

    fn persist_consumer(&mut self, gid: &str, records: Vec<ConsumerRecord>) {
        for record in records {
            self.effects.push(Effect::Persist(GroupRecord::Consumer {
                group: gid.to_string(),
                record,
            }));
        }
    }

    /// JoinGroup from a classic member into a consumer group that has members (Kafka's
    /// classicGroupJoinToConsumerGroup); answered at once.
    pub(in crate::group) fn classic_join_consumer(
        &mut self,
        now_ms: i64,
        ticket: Ticket,
        req: JoinRequest,
        image: &TopicImage,
        fresh_member_id: String,
    ) {
        let result = self.classic_join(now_ms, req, image, fresh_member_id);
        self.effects.push(Effect::Join { ticket, result });
    }

    fn classic_join(
        &mut self,
        now_ms: i64,
        req: JoinRequest,
        image: &TopicImage,
        fresh_member_id: String,
    ) -> Result<Joined, (GroupError, String)> {
        let gid = req.group_id.clone();
        let unknown = req.member_id.is_empty();
        let member_id = if unknown {
            fresh_member_id
        } else {
            req.member_id.clone()
        };
        let fail = |e: GroupError| Err((e, member_id.clone()));
        let max = self.limits.consumer.max_size;
        let Some(cg) = self.groups.get_mut(&gid).and_then(|g| g.consumer.as_mut()) else {
            return fail(GroupError::UnknownMemberId);
        };
        let existing_static = req
            .instance_id
            .as_ref()
            .and_then(|i| cg.static_members.get(i))
            .and_then(|id| cg.members.get(id))
            .cloned();
        if cg.members.len() >= max
            && !cg.members.contains_key(&member_id)
            && existing_static.is_none()
        {
            return fail(GroupError::GroupMaxSizeReached);
        }
        if !cg.supports_classic(&req.protocol_type, &req.protocols) {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        if unknown && req.instance_id.is_none() && req.require_known_member_id {
            return fail(GroupError::MemberIdRequired);
        }
        let (protocol, metadata) = req.protocols[0].clone();
        let Ok(sub) = decode_subscription(&metadata) else {
            return fail(GroupError::InconsistentGroupProtocol);
        };
        let mut records = Vec::new();
        let mut replaced = None;
        let member = match (&req.instance_id, existing_static) {
            (None, _) => match cg.members.get(&member_id) {
                Some(m) if !m.is_classic() => return fail(GroupError::UnknownMemberId),
                Some(m) => m.clone(),
                None => ConsumerMember::new(member_id.clone(), now_ms),
            },
            (Some(_), None) if unknown => ConsumerMember::new(member_id.clone(), now_ms),
            (Some(_), Some(old)) if unknown => {
                // A static member back under a new id takes over its old self's place.
                let target = cg.target.get(&old.member_id).cloned();
                records.extend(remove_records(&old.member_id));
                cg.remove(&old.member_id);
                let mut m = ConsumerMember::new(member_id.clone(), now_ms);
                m.subscription = old.subscription.clone();
                if let Some(t) = target {
                    records.push(ConsumerRecord::Target {
                        member_id: member_id.clone(),
                        value: Some(t.clone()),
                    });
                    cg.target.insert(member_id.clone(), t);
                }
                replaced = Some(old);
                m
            }
            (Some(_), None) => return fail(GroupError::UnknownMemberId),
            (Some(_), Some(old)) if old.member_id != member_id => {
                return fail(GroupError::FencedInstanceId)
            }
            (Some(_), Some(old)) if !old.is_classic() => return fail(GroupError::UnknownMemberId),
            (Some(_), Some(old)) => old,
        };

        // 1. The member's subscription; a change of topics bumps the group epoch.
        let mut updated = member.clone();
        let s = &mut updated.subscription;
        if let Some(i) = &req.instance_id {
            s.instance_id = Some(i.clone());
        }
        if let Some(r) = sub.rack {
            s.rack_id = Some(r);
        }
        if req.rebalance_timeout_ms != -1 {
            s.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        s.topic_names = sub.topics;
        s.client_id = req.client_id.clone();
        s.client_host = req.client_host.clone();
        s.classic = Some(ClassicMemberMetadata {
            session_timeout_ms: req.session_timeout_ms,
            protocols: req.protocols.clone(),
        });
        let is_new = !cg.members.contains_key(&member_id);
        let bump = is_new || updated.subscription.topic_names != member.subscription.topic_names;
        if is_new || updated.subscription != member.subscription {
            records.push(ConsumerRecord::Member {
                member_id: member_id.clone(),
                value: Some(updated.subscription.clone()),
            });
        }
        updated.last_seen_ms = now_ms;
        // A classic member is timed by its rejoins and syncs, not by revocations.
        updated.revoke_deadline_ms = None;
        updated.join_deadline_ms = None;
        updated.sync_deadline_ms = Some(updated.rebalance_deadline(now_ms));
        cg.set_current(updated.clone());

        // 2. The subscribed topics and the target assignment.
        cg.advance(image, bump, &mut records);

        // 3. Reconciliation, with what the member says it owns.
        let owned = to_ids(sub.owned, image);
        let reconciled = cg.reconcile(&updated, Some(&owned));
        if reconciled != updated || is_new {
            records.push(ConsumerRecord::Current {
                member_id: member_id.clone(),
                value: Some(reconciled.current()),
            });
            cg.set_current(reconciled.clone());
            updated = reconciled;
        }
        let all_classic = cg.members.values().all(ConsumerMember::is_classic);
        self.persist_consumer(&gid, records);

        // 4. The last consumer-protocol member replaced by a classic one: downgrade.
        if replaced.is_some_and(|old: ConsumerMember| !old.is_classic())
            && all_classic
            && self.limits.consumer.migration_policy.allows_downgrade()
            && self.groups[&gid]
                .consumer
                .as_ref()
                .is_some_and(|cg| cg.members.len() <= self.limits.group_size_max)
        {
            self.downgrade(now_ms, &gid, None, image);
        }
        Ok(Joined {
            generation: updated.epoch,
            protocol_type: Some("consumer".to_string()),
            protocol: Some(protocol),
            leader: String::new(),
            member_id,
            members: Vec::new(),
        })
    }

    /// SyncGroup from a classic member of a consumer group (Kafka's
    /// classicGroupSyncToConsumerGroup): its current assignment, or
    /// REBALANCE_IN_PROGRESS when it must rejoin first.
    pub(in crate::group) fn classic_sync_consumer(
        &mut self,
        now_ms: i64,
        req: &SyncRequest,
        image: &TopicImage,
    ) -> Result<Synced, GroupError> {
        let cg = self
            .groups
            .get_mut(&req.group_id)
            .and_then(|g| g.consumer.as_mut())
            .ok_or(GroupError::UnknownMemberId)?;
        let id = cg
            .classic_member(&req.member_id, req.instance_id.as_deref())?
            .member_id
            .clone();
        let group_epoch = cg.epoch;
        let m = cg.members.get_mut(&id).expect("found above");
        if req.generation != m.epoch {
            return Err(GroupError::IllegalGeneration);
        }
        let (protocol, metadata) = m.classic_protocol();
        if let Some((ptype, pname)) = &req.protocol {
            if ptype != "consumer" || *pname != protocol {
                return Err(GroupError::InconsistentGroupProtocol);
            }
        }
        if group_epoch > m.epoch && m.state != MemberState::UnrevokedPartitions {
            m.join_deadline_ms
                .get_or_insert(m.rebalance_deadline(now_ms));
            return Err(GroupError::RebalanceInProgress);
        }
        m.sync_deadline_ms = None;
        m.last_seen_ms = now_ms;
        let version = version_of(&metadata).unwrap_or(0);
        Ok(Synced {
            protocol_type: Some("consumer".to_string()),
            protocol: Some(protocol),
            assignment: encode_assignment(&m.assigned, image, version),
        })
    }

    /// Heartbeat from a classic member of a consumer group (Kafka's
    /// classicGroupHeartbeatToConsumerGroup).
    pub(in crate::group) fn classic_heartbeat_consumer(
        &mut self,
        now_ms: i64,
        gid: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let cg = self
            .groups
            .get_mut(gid)
            .and_then(|g| g.consumer.as_mut())
            .ok_or(GroupError::UnknownMemberId)?;
        let m = cg.classic_member(member_id, instance_id)?;
        let (id, waiting) = (m.member_id.clone(), cg.waiting_on_unreleased(m));
        let group_epoch = cg.epoch;
        let m = cg.members.get_mut(&id).expect("found above");
        if generation != m.epoch {
            return Err(GroupError::IllegalGeneration);
        }
        m.last_seen_ms = now_ms;
        let rejoin = m.epoch < group_epoch
            || m.state == MemberState::UnrevokedPartitions
            || (m.state == MemberState::UnreleasedPartitions && !waiting);
        if rejoin {
            m.join_deadline_ms
                .get_or_insert(m.rebalance_deadline(now_ms));
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// LeaveGroup from classic members of a consumer group (Kafka's
    /// classicGroupLeaveToConsumerGroup): each goes, and the group epoch moves once.
    pub(in crate::group) fn classic_leave_consumer(
        &mut self,
        gid: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<Result<(), GroupError>> {
        let Some(cg) = self.groups.get_mut(gid).and_then(|g| g.consumer.as_mut()) else {
            return vec![Err(GroupError::UnknownMemberId); members.len()];
        };
        let mut results = Vec::with_capacity(members.len());
        let mut records = Vec::new();
        for (member_id, instance_id) in members {
            // Removal by instance id alone (no member id) is an admin's.
            let named = match instance_id {
                Some(i) if member_id.is_empty() => {
                    cg.static_members.get(i).cloned().unwrap_or_default()
                }
                _ => member_id.clone(),
            };
            match cg.classic_member(&named, instance_id.as_deref()) {
                Ok(m) => {
                    let id = m.member_id.clone();
                    records.extend(remove_records(&id));
                    cg.remove(&id);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !records.is_empty() {
            cg.epoch += 1;
            records.push(ConsumerRecord::GroupEpoch(Some(cg.epoch)));
        }
        self.persist_consumer(gid, records);
        results
    }

    /// Whether `leaving` going turns the group classic: it is the last member
    /// speaking the consumer protocol, classic members remain, the policy allows it
    /// and they fit in `group.max.size` (Kafka's validateOnlineDowngradeWithFencedMember).
    pub(super) fn downgrade_allowed(&self, gid: &str, leaving: &str) -> bool {
        let Some(cg) = self.groups.get(gid).and_then(|g| g.consumer.as_ref()) else {
            return false;
        };
        let Some(m) = cg.members.get(leaving) else {
            return false;
        };
        let others = cg.members.len() - 1;
        !m.is_classic()
            && others > 0
            && cg
                .members
                .values()
                .filter(|o| o.member_id != leaving)
                .all(ConsumerMember::is_classic)
            && self.limits.consumer.migration_policy.allows_downgrade()
            && others <= self.limits.group_size_max
    }

    /// Turns the consumer group back into a classic one without `leaving` (Kafka's
    /// convertToClassicGroup): its records are tombstoned, the classic group is
    /// written with generation = group epoch and each member's partitions, and it
    /// rebalances.
    pub(super) fn downgrade(
        &mut self,
        now_ms: i64,
        gid: &str,
        leaving: Option<&str>,
        image: &TopicImage,
    ) {
        let group = self.groups.get_mut(gid).expect("the caller checked");
        let cg = group.consumer.take().expect("a consumer group");
        let mut records = Vec::new();
        for id in cg.members.keys() {
            records.extend(remove_records(id));
        }
        records.push(ConsumerRecord::TargetEpoch(None));
        records.push(ConsumerRecord::GroupEpoch(None));
        group.protocol_type = Some("consumer".to_string());
        group.generation = cg.epoch;
        group.state = GroupState::Stable;
        group.leader = None;
        group.members.clear();
        group.static_members.clear();
        group.pending_members.clear();
        for m in cg.members.values() {
            if Some(m.member_id.as_str()) == leaving {
                continue;
            }
            let classic = m.subscription.classic.clone().unwrap_or_default();
            let sub = &m.subscription;
            if let Some(instance) = &sub.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    instance_id: sub.instance_id.clone(),
                    client_id: sub.client_id.clone(),
                    client_host: sub.client_host.clone(),
                    session_timeout_ms: classic.session_timeout_ms,
                    rebalance_timeout_ms: sub.rebalance_timeout_ms,
                    protocols: classic.protocols,
                    assignment: Bytes::new(),
                    last_seen_ms: now_ms,
                    join_ticket: None,
                    sync_ticket: None,
                },
            );
        }
        group.protocol = group.select_protocol();
        let protocol = group.protocol.clone().unwrap_or_default();
        for m in group.members.values_mut() {
            // What the member holds now (Kafka writes its target): if the group is
            // upgraded again before its rebalance completes, a partition a member
            // still holds is not taken for free (the simulator's finding).
            let mut held = cg.members[&m.member_id].assigned.clone();
            for (t, ps) in &cg.members[&m.member_id].pending_revocation {
                held.entry(*t).or_default().extend(ps);
            }
            let version = version_of(&m.metadata(&protocol)).unwrap_or(0);
            m.assignment = encode_assignment(&held, image, version);
        }
        self.persist_consumer(gid, records);
        let group = self.groups.get_mut(gid).expect("present");
        let stored = group.stored_metadata(gid);
        self.effects.push(stored);
        self.prepare_rebalance(now_ms, gid);
    }
}

#[cfg(test)]
#[path = "migration_tests.rs"]
mod tests;
