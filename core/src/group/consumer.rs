//! KIP-848's consumer group protocol, beside the classic one: members heartbeat
//! (ConsumerGroupHeartbeat) with their subscription and the partitions they own; the
//! coordinator keeps a group epoch, computes a target assignment with a server-side
//! assignor whenever the epoch moves past the target's, and reconciles each member
//! towards it one heartbeat at a time:
//!
//! - a member first gives up (revokes) what the target takes from it, staying at its
//!   epoch until it heartbeats without those partitions (UNREVOKED_PARTITIONS);
//! - then it moves to the target epoch and is given the target's partitions that no
//!   other member still owns (UNRELEASED_PARTITIONS until the rest are released).
//!
//! So a partition is never owned by two members at once (asserted in
//! [`ConsumerGroup::set_current`]), and a member's epoch only moves forward. Members
//! are fenced by session timeout (`group.consumer.session.timeout.ms`), by failing to
//! revoke within their rebalance timeout, or by an epoch the coordinator does not
//! know. Everything is persisted as Kafka's consumer-group records; a coordinator that
//! loads them carries on with the same epochs.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

use super::assignors::{self, MemberSpec, ASSIGNORS};
use super::records::{ConsumerRecord, CurrentAssignment, MemberSubscription};
use super::{Effect, Group, GroupCoordinator, GroupError, GroupRecord};

#[path = "migration.rs"]
mod migration;
use crate::sim::{planted, Bug};
pub use migration::MigrationPolicy;

pub use super::records::Assignment;

pub type TopicId = [u8; 16];

/// The topics as the metadata image has them: name → (id, partition count).
pub type TopicImage = BTreeMap<String, (TopicId, i32)>;

/// The group configs Sluice serves (IncrementalAlterConfigs on a GROUP resource);
/// each overrides the broker's `group.`-prefixed setting.
pub const GROUP_CONFIGS: [&str; 7] = [
    "consumer.session.timeout.ms",
    "consumer.heartbeat.interval.ms",
    "share.session.timeout.ms",
    "share.heartbeat.interval.ms",
    "share.record.lock.duration.ms",
    "share.auto.offset.reset",
    "share.isolation.level",
];

/// Checks a group's configs as they would stand: known names, whole numbers where
/// numbers go, the session within the broker's `group.min/max.session.timeout.ms`, the
/// heartbeat interval below the session, share settings among Kafka's values.
pub fn check_group_configs(
    configs: &BTreeMap<String, String>,
    limits: &super::GroupLimits,
) -> Result<(), String> {
    for (k, v) in configs {
        if !GROUP_CONFIGS.contains(&k.as_str()) {
            return Err(format!(
                "unknown group config {k} (group configs: {})",
                GROUP_CONFIGS.join(", ")
            ));
        }
        match k.as_str() {
            "share.auto.offset.reset" if !["latest", "earliest"].contains(&v.as_str()) => {
                return Err(format!(
                    "group config {k}: '{v}' is not latest or earliest (by_duration is not served)"
                ))
            }
            "share.isolation.level" if v != "read_uncommitted" => {
                return Err(format!(
                    "group config {k}: '{v}' is not served (share groups read read_uncommitted)"
                ))
            }
            "share.auto.offset.reset" | "share.isolation.level" => {}
            "share.record.lock.duration.ms"
                if v.parse::<i32>()
                    .map_or(true, |n| !(1000..=3_600_000).contains(&n)) =>
            {
                return Err(format!(
                    "group config {k}: '{v}' is not a whole number of ms in [1000, 3600000]"
                ));
            }
            _ if v.parse::<i32>().map_or(true, |n| n <= 0) => {
                return Err(format!(
                    "group config {k}: '{v}' is not a positive whole number"
                ))
            }
            _ => {}
        }
    }
    let (session, interval) = ConsumerLimits::for_group(&limits.consumer, Some(configs));
    if session < limits.session_timeout_min_ms || session > limits.session_timeout_max_ms {
        return Err(format!(
            "consumer.session.timeout.ms {session} is outside [{}, {}] (group.min/max.session.timeout.ms)",
            limits.session_timeout_min_ms, limits.session_timeout_max_ms
        ));
    }
    if interval >= session {
        return Err(format!(
            "consumer.heartbeat.interval.ms {interval} must be below consumer.session.timeout.ms {session}"
        ));
    }
    let (session, interval) = limits.share.for_group(Some(configs));
    if interval >= session {
        return Err(format!(
            "share.heartbeat.interval.ms {interval} must be below share.session.timeout.ms {session}"
        ));
    }
    Ok(())
}

/// Member epoch of a member leaving for good (KIP-848).
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving for now: it keeps its place for its
/// session timeout.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Broker-side settings of consumer groups, named as Kafka's.
#[derive(Debug, Clone)]
pub struct ConsumerLimits {
    /// group.consumer.session.timeout.ms
    pub session_timeout_ms: i32,
    /// group.consumer.heartbeat.interval.ms
    pub heartbeat_interval_ms: i32,
    /// group.consumer.max.size
    pub max_size: usize,
    /// group.consumer.migration.policy: which online conversions between the classic
    /// and the consumer protocol are allowed.
    pub migration_policy: MigrationPolicy,
}

impl ConsumerLimits {
    /// A group's session timeout and heartbeat interval: its configs, else the broker's.
    pub fn for_group(&self, configs: Option<&BTreeMap<String, String>>) -> (i32, i32) {
        let get = |k: &str, default: i32| {
            configs
                .and_then(|c| c.get(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        (
            get("consumer.session.timeout.ms", self.session_timeout_ms),
            get("consumer.heartbeat.interval.ms", self.heartbeat_interval_ms),
        )
    }
}

impl Default for ConsumerLimits {
    fn default() -> Self {
        ConsumerLimits {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: i32::MAX as usize,
            migration_policy: MigrationPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

impl MemberState {
    fn byte(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    fn from_byte(b: i8) -> MemberState {
        match b {
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMember {
    pub member_id: String,
    pub subscription: MemberSubscription,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
    last_seen_ms: i64,
    /// When a member in UNREVOKED_PARTITIONS is fenced if still there.
    revoke_deadline_ms: Option<i64>,
    /// A classic-protocol member told to rejoin is fenced if it has not by then.
    join_deadline_ms: Option<i64>,
    /// A classic-protocol member that joined is fenced if it has not synced by then.
    sync_deadline_ms: Option<i64>,
}

impl ConsumerMember {
    fn new(member_id: String, now_ms: i64) -> ConsumerMember {
        ConsumerMember {
            member_id,
            subscription: MemberSubscription {
                rebalance_timeout_ms: -1,
                ..MemberSubscription::default()
            },
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            last_seen_ms: now_ms,
            revoke_deadline_ms: None,
            join_deadline_ms: None,
            sync_deadline_ms: None,
        }
    }

    /// Whether the member speaks the classic protocol (JoinGroup, SyncGroup,
    /// Heartbeat) inside the consumer group.
    pub fn is_classic(&self) -> bool {
        self.subscription.classic.is_some()
    }

    /// The session timeout the member lives by: its JoinGroup's for a classic member.
    fn session_ms(&self, group_session_ms: i32) -> i64 {
        i64::from(
            self.subscription
                .classic
                .as_ref()
                .map_or(group_session_ms, |c| c.session_timeout_ms),
        )
    }

    fn current(&self) -> CurrentAssignment {
        CurrentAssignment {
            epoch: self.epoch,
            previous_epoch: self.previous_epoch,
            state: self.state.byte(),
            assigned: self.assigned.clone(),
            pending_revocation: self.pending_revocation.clone(),
        }
    }
}

/// The consumer-protocol part of a group.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    /// Bumped by every change of membership, subscriptions or subscribed topics.
    pub epoch: i32,
    /// The epoch the target assignment was computed at.
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Each member's target assignment.
    pub target: BTreeMap<String, Assignment>,
    /// group.instance.id → member id.
    static_members: BTreeMap<String, String>,
    /// The subscribed topics as last computed (`None` after a load).
    subscribed: Option<TopicImage>,
    /// Partition → the member owning it (assigned or pending revocation) and its epoch.
    owners: BTreeMap<(TopicId, i32), (String, i32)>,
}

impl ConsumerGroup {
    /// Kafka's group states: Empty, Assigning (target behind the group epoch),
    /// Reconciling (a member not at the target yet), Stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch != self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor the members prefer most (ties to the earlier name), else the default.
    pub fn assignor(&self) -> &'static str {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.subscription.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        ASSIGNORS
            .iter()
            .copied()
            .max_by_key(|a| (votes.get(a).copied().unwrap_or(0), std::cmp::Reverse(*a)))
            .filter(|a| votes.contains_key(a))
            .unwrap_or(ASSIGNORS[0])
    }

    /// Replaces a member's current assignment, keeping the owners map true. The
    /// protocol's core promise is checked here: no partition gains a second owner.
    fn set_current(&mut self, member: ConsumerMember) {
        self.put_member(member, true)
    }

    /// As [`ConsumerGroup::set_current`]; `check` is off when loading, where the
    /// records come from disk and must not crash the broker.
    fn put_member(&mut self, member: ConsumerMember, check: bool) {
        let id = member.member_id.clone();
        self.owners.retain(|_, (owner, _)| *owner != id);
        for (t, ps) in member.assigned.iter().chain(&member.pending_revocation) {
            for p in ps {
                let previous = self.owners.insert((*t, *p), (id.clone(), member.epoch));
                assert!(
                    previous.is_none() || !check || planted(Bug::PartitionOwnedTwice),
                    "KIP-848: partition {p} of a topic given to member {id} while member {} owns it",
                    previous.map(|(o, _)| o).unwrap_or_default()
                );
            }
        }
        if let Some(instance) = &member.subscription.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.members.insert(id, member);
    }

    fn remove(&mut self, member_id: &str) -> Option<ConsumerMember> {
        let m = self.members.remove(member_id)?;
        self.owners.retain(|_, (owner, _)| owner != member_id);
        self.target.remove(member_id);
        if let Some(instance) = &m.subscription.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        Some(m)
    }

    /// A member by id, or a new one (epoch 0, nothing owned).
    fn member_or_new(&self, member_id: &str, now_ms: i64) -> ConsumerMember {
        self.members
            .get(member_id)
            .cloned()
            .unwrap_or_else(|| ConsumerMember::new(member_id.to_string(), now_ms))
    }

    fn subscribed_topics(&self, topics: &mut Subscriptions) -> TopicImage {
        let mut names = BTreeSet::new();
        for m in self.members.values() {
            names.extend(topics.of(&m.subscription));
        }
        names
            .into_iter()
            .map(|n| {
                let v = topics.image[&n];
                (n, v)
            })
            .collect()
    }

    /// After a member's change: recomputes the subscribed topics, bumps the group
    /// epoch when they or the member's subscription (`bump`) changed, and recomputes
    /// the target assignment when the epoch passed it.
    fn advance(&mut self, image: &TopicImage, mut bump: bool, records: &mut Vec<ConsumerRecord>) {
        let mut topics = Subscriptions::new(image);
        let subscribed = self.subscribed_topics(&mut topics);
        if self.subscribed.as_ref() != Some(&subscribed) {
            self.subscribed = Some(subscribed);
            bump = true;
        }
        if bump {
            self.epoch += 1;
            records.push(ConsumerRecord::GroupEpoch(Some(self.epoch)));
        }
        if self.epoch > self.assignment_epoch {
            records.extend(self.compute_target(&mut topics));
        }
    }

    /// Recomputes every member's target assignment at the group epoch.
    fn compute_target(&mut self, topics_of: &mut Subscriptions) -> Vec<ConsumerRecord> {
        let topics: BTreeMap<TopicId, i32> = self
            .subscribed
            .iter()
            .flat_map(|s| s.values().copied())
            .collect();
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .iter()
            .map(|(id, m)| {
                let subscribed = topics_of
                    .of(&m.subscription)
                    .iter()
                    .map(|n| topics_of.image[n].0)
                    .collect();
                let previous = self.target.get(id).cloned().unwrap_or_default();
                (
                    id.clone(),
                    MemberSpec {
                        subscribed,
                        previous,
                    },
                )
            })
            .collect();
        let new = assignors::assign(self.assignor(), &specs, &topics);
        let mut records = Vec::new();
        for (id, a) in new {
            if self.target.get(&id) != Some(&a) {
                records.push(ConsumerRecord::Target {
                    member_id: id.clone(),
                    value: Some(a.clone()),
                });
                self.target.insert(id, a);
            }
        }
        self.assignment_epoch = self.epoch;
        records.push(ConsumerRecord::TargetEpoch(Some(self.epoch)));
        records
    }

    /// KIP-848's reconciliation of one member towards the target (Kafka's
    /// CurrentAssignmentBuilder): revoke first, then assign what is free.
    fn reconcile(&self, member: &ConsumerMember, owned: Option<&Assignment>) -> ConsumerMember {
        let target_epoch = self.assignment_epoch;
        let empty = Assignment::new();
        let target = self.target.get(&member.member_id).unwrap_or(&empty);
        let still_owns = |revoking: &Assignment| match owned {
            None => true,
            Some(owned) => owned
                .iter()
                .any(|(t, ps)| revoking.get(t).is_some_and(|r| !r.is_disjoint(ps))),
        };
        let (epoch, assigned) = match member.state {
            MemberState::Stable if member.epoch == target_epoch => return member.clone(),
            MemberState::Stable | MemberState::UnreleasedPartitions => {
                (member.epoch, &member.assigned)
            }
            MemberState::UnrevokedPartitions => {
                if still_owns(&member.pending_revocation) {
                    return member.clone();
                }
                (member.epoch + 1, &member.assigned)
            }
        };
        let mut keep = Assignment::new();
        let mut revoke = Assignment::new();
        let mut add = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<&TopicId> = target.keys().chain(assigned.keys()).collect();
        for t in topics {
            let want = target.get(t).cloned().unwrap_or_default();
            let have = assigned.get(t).cloned().unwrap_or_default();
            let k: BTreeSet<i32> = have.intersection(&want).copied().collect();
            let r: BTreeSet<i32> = have.difference(&k).copied().collect();
            let mut a = BTreeSet::new();
            for p in want.difference(&k) {
                let owner = self.owners.get(&(*t, *p));
                let free = owner.is_none_or(|(o, _)| *o == member.member_id);
                if free || planted(Bug::PartitionOwnedTwice) {
                    a.insert(*p);
                } else {
                    unreleased = true;
                }
            }
            for (set, into) in [(k, &mut keep), (r, &mut revoke), (a, &mut add)] {
                if !set.is_empty() {
                    into.insert(*t, set);
                }
            }
        }
        let mut next = member.clone();
        next.pending_revocation = Assignment::new();
        if !revoke.is_empty() && still_owns(&revoke) {
            next.state = MemberState::UnrevokedPartitions;
            set_epoch(&mut next, epoch);
            next.assigned = keep;
            next.pending_revocation = revoke;
            return next;
        }
        for (t, ps) in add {
            keep.entry(t).or_default().extend(ps);
        }
        next.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        set_epoch(&mut next, target_epoch);
        next.assigned = keep;
        next
    }
}

/// Resolves members' subscriptions against the topics: by name, or by regex
/// (matched against whole names, internal topics left out, as Kafka does), each
/// distinct regex compiled once per heartbeat.
struct Subscriptions<'a> {
    image: &'a TopicImage,
    regexes: BTreeMap<String, Option<Regex>>,
}

impl<'a> Subscriptions<'a> {
    fn new(image: &'a TopicImage) -> Self {
        Subscriptions {
            image,
            regexes: BTreeMap::new(),
        }
    }

    /// The existing topics `sub` subscribes to.
    fn of(&mut self, sub: &MemberSubscription) -> BTreeSet<String> {
        let image = self.image;
        let mut out: BTreeSet<String> = sub
            .topic_names
            .iter()
            .filter(|t| image.contains_key(*t))
            .cloned()
            .collect();
        if let Some(pattern) = &sub.topic_regex {
            let re = self
                .regexes
                .entry(pattern.clone())
                .or_insert_with(|| compile_regex(pattern));
            if let Some(re) = re {
                out.extend(
                    image
                        .keys()
                        .filter(|t| !t.starts_with("__") && re.is_match(t))
                        .cloned(),
                );
            }
        }
        out
    }
}

fn set_epoch(m: &mut ConsumerMember, epoch: i32) {
    if m.epoch != epoch {
        m.previous_epoch = m.epoch;
        m.epoch = epoch;
    }
}

/// A subscription regex as KIP-848 takes it (RE2/J syntax, which Rust's `regex` crate
/// shares), anchored to match whole topic names.
pub fn compile_regex(re: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{re})$")).ok()
}

/// Whether `owned` (what the member says it owns) is within `assigned`.
fn is_subset(owned: Option<&Assignment>, assigned: &Assignment) -> bool {
    owned.is_some_and(|owned| {
        owned
            .iter()
            .all(|(t, ps)| ps.is_empty() || assigned.get(t).is_some_and(|a| ps.is_subset(a)))
    })
}

/// A ConsumerGroupHeartbeat request.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns (`None`: not said in this heartbeat).
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// A successful ConsumerGroupHeartbeat answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when it changed or the request was a full one.
    pub assignment: Option<Assignment>,
}

type Refusal = (GroupError, String);

fn refuse<T>(e: GroupError, why: impl Into<String>) -> Result<T, Refusal> {
    Err((e, why.into()))
}

fn validate(req: &HeartbeatRequest) -> Result<(), Refusal> {
    let invalid = |why: &str| refuse(GroupError::InvalidRequest, why);
    if req.group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if req.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    match req.member_epoch {
        e if e > 0 || e == LEAVE_EPOCH => {
            if req.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
        }
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            let names = req.subscribed_topic_names.as_ref();
            let regex = req
                .subscribed_topic_regex
                .as_deref()
                .filter(|r| !r.is_empty());
            if names.is_none_or(Vec::is_empty) && regex.is_none() {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        STATIC_LEAVE_EPOCH => {
            if req.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
            if req.instance_id.is_none() {
                return invalid("InstanceId can't be null.");
            }
        }
        _ => return invalid("MemberEpoch is invalid."),
    }
    if let Some(a) = &req.server_assignor {
        if !ASSIGNORS.contains(&a.as_str()) {
            return refuse(
                GroupError::UnsupportedAssignor,
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: {}.",
                    ASSIGNORS.join(", ")
                ),
            );
        }
    }
    if let Some(re) = req
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        if compile_regex(re).is_none() {
            return refuse(
                GroupError::InvalidRegularExpression,
                format!("SubscribedTopicRegex '{re}' is not a valid regular expression."),
            );
        }
    }
    Ok(())
}

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat (KIP-848): joins, heartbeats, reconciles and leaves.
    /// `fresh_member_id` names a joining member that brought no id (version 0).
    pub fn consumer_heartbeat(
        &mut self,
        now_ms: i64,
        req: HeartbeatRequest,
        image: &TopicImage,
        fresh_member_id: String,
    ) -> Result<Heartbeat, Refusal> {
        validate(&req)?;
        let gid = req.group_id.clone();
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH {
            return self.consumer_leave(now_ms, &gid, &req, image);
        }
        let upgrading = req.member_epoch == 0
            && !self.share_groups.contains_key(&gid)
            && self
                .groups
                .get(&gid)
                .is_some_and(|g| g.consumer.is_none() && !g.members.is_empty());
        if !upgrading {
            return self.member_heartbeat(now_ms, req, image, fresh_member_id);
        }
        // KIP-848's online upgrade: the classic group becomes a consumer group, which
        // this member then joins; if it cannot, the group stays as it was.
        let saved = self.groups.get(&gid).cloned();
        let mark = self.effects.len();
        self.upgrade(now_ms, &gid, image)?;
        let r = self.member_heartbeat(now_ms, req, image, fresh_member_id);
        if r.is_err() {
            self.effects.truncate(mark);
            if let Some(g) = saved {
                self.groups.insert(gid, g);
            }
        }
        r
    }

    fn member_heartbeat(
        &mut self,
        now_ms: i64,
        req: HeartbeatRequest,
        image: &TopicImage,
        fresh_member_id: String,
    ) -> Result<Heartbeat, Refusal> {
        let gid = req.group_id.clone();
        let joining = req.member_epoch == 0;
        let limits = self.limits.consumer.clone();
        let (_, heartbeat_interval_ms) = limits.for_group(self.group_configs.get(&gid));
        if self.share_groups.contains_key(&gid) {
            return refuse(
                GroupError::GroupIdNotFound,
                format!("Group {gid} is not a consumer group."),
            );
        }
        let group = match self.groups.get_mut(&gid) {
            Some(g) => g,
            None if joining => self.groups.entry(gid.clone()).or_insert_with(Group::new),
            None => {
                return refuse(
                    GroupError::GroupIdNotFound,
                    format!("Group {gid} not found."),
                )
            }
        };
        if group.consumer.is_none() {
            if !group.members.is_empty() {
                return refuse(
                    GroupError::GroupIdNotFound,
                    format!(
                        "Group {gid} is a classic group with members: it cannot take consumer-protocol members"
                    ),
                );
            }
            if !joining {
                return refuse(
                    GroupError::GroupIdNotFound,
                    format!("Group {gid} not found."),
                );
            }
            // An empty classic group becomes a consumer group; its offsets stay, and
            // its epochs carry on from the generation (Kafka starts a new group at 0;
            // counting on means an id never names two generations of one group).
            group.become_consumer();
            let cg = group.consumer.as_mut().expect("made a consumer group");
            cg.epoch = group.generation;
            cg.assignment_epoch = group.generation;
        }
        let cg = group.consumer.as_mut().expect("made a consumer group");
        let member_id = if req.member_id.is_empty() {
            fresh_member_id
        } else {
            req.member_id.clone()
        };
        if cg.members.len() >= limits.max_size && !cg.members.contains_key(&member_id) {
            return refuse(
                GroupError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    limits.max_size
                ),
            );
        }
        let mut records = Vec::new();
        let member = match &req.instance_id {
            Some(instance) => {
                let existing = cg
                    .static_members
                    .get(instance)
                    .and_then(|id| cg.members.get(id))
                    .cloned();
                match (joining, existing) {
                    (true, None) => cg.member_or_new(&member_id, now_ms),
                    (true, Some(old)) => {
                        // A classic member's instance may be taken over at once: the
                        // client restarted speaking the consumer protocol.
                        if old.epoch != STATIC_LEAVE_EPOCH && !old.is_classic() {
                            return refuse(
                                GroupError::UnreleasedInstanceId,
                                format!(
                                    "Static member {} with instance id {instance} is still in the group: it must leave first.",
                                    old.member_id
                                ),
                            );
                        }
                        // KIP-848 static membership: the new member takes over the
                        // old one's target assignment; it starts from epoch 0.
                        let target = cg.target.get(&old.member_id).cloned();
                        records.extend(remove_records(&old.member_id));
                        cg.remove(&old.member_id);
                        let mut m = ConsumerMember::new(member_id.clone(), now_ms);
                        m.subscription = old.subscription.clone();
                        m.subscription.classic = None;
                        records.push(ConsumerRecord::Member {
                            member_id: member_id.clone(),
                            value: Some(m.subscription.clone()),
                        });
                        cg.set_current(m.clone());
                        if let Some(t) = target {
                            records.push(ConsumerRecord::Target {
                                member_id: member_id.clone(),
                                value: Some(t.clone()),
                            });
                            cg.target.insert(member_id.clone(), t);
                        }
                        m
                    }
                    (false, None) => {
                        return refuse(
                            GroupError::UnknownMemberId,
                            format!("Instance id {instance} is unknown."),
                        )
                    }
                    (false, Some(old)) => {
                        if old.member_id != member_id {
                            return refuse(
                                GroupError::FencedInstanceId,
                                format!(
                                    "Static member {member_id} with instance id {instance} was fenced by member {}.",
                                    old.member_id
                                ),
                            );
                        }
                        refuse_classic(&old)?;
                        check_epoch(&old, req.member_epoch, req.owned.as_ref())?;
                        old
                    }
                }
            }
            None => match cg.members.get(&member_id) {
                Some(m) => {
                    refuse_classic(m)?;
                    check_epoch(m, req.member_epoch, req.owned.as_ref())?;
                    m.clone()
                }
                None if joining => ConsumerMember::new(member_id.clone(), now_ms),
                None => {
                    return refuse(
                        GroupError::UnknownMemberId,
                        format!("Member {member_id} is not a member of group {gid}."),
                    )
                }
            },
        };

        // 1. The member's subscription; a change of it bumps the group epoch.
        let mut updated = member.clone();
        let sub = &mut updated.subscription;
        if let Some(i) = &req.instance_id {
            sub.instance_id = Some(i.clone());
        }
        if let Some(r) = &req.rack_id {
            sub.rack_id = Some(r.clone());
        }
        if req.rebalance_timeout_ms != -1 {
            sub.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(a) = &req.server_assignor {
            sub.server_assignor = Some(a.clone());
        }
        if let Some(names) = &req.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            sub.topic_names = names;
        }
        if let Some(re) = &req.subscribed_topic_regex {
            sub.topic_regex = (!re.is_empty()).then(|| re.clone());
        }
        sub.client_id = req.client_id.clone();
        sub.client_host = req.client_host.clone();
        let mut bump = false;
        if updated.subscription != member.subscription || !cg.members.contains_key(&member_id) {
            records.push(ConsumerRecord::Member {
                member_id: member_id.clone(),
                value: Some(updated.subscription.clone()),
            });
            bump = updated.subscription.topic_names != member.subscription.topic_names
                || updated.subscription.topic_regex != member.subscription.topic_regex
                || !cg.members.contains_key(&member_id);
        }
        updated.last_seen_ms = now_ms;
        cg.set_current(updated.clone());

        // 2. The subscribed topics (new topics, new partitions, a regex's new matches).
        cg.advance(image, bump, &mut records);

        // 3. Reconciliation towards the target.
        let reconciled = cg.reconcile(&updated, req.owned.as_ref());
        if reconciled != updated {
            let mut next = reconciled;
            next.revoke_deadline_ms = match next.state {
                MemberState::UnrevokedPartitions
                    if updated.state != next.state || updated.epoch != next.epoch =>
                {
                    Some(now_ms + i64::from(next.subscription.rebalance_timeout_ms.max(0)))
                }
                MemberState::UnrevokedPartitions => updated.revoke_deadline_ms,
                _ => None,
            };
            records.push(ConsumerRecord::Current {
                member_id: member_id.clone(),
                value: Some(next.current()),
            });
            cg.set_current(next.clone());
            updated = next;
        } else if member.epoch == 0 && updated.epoch == 0 {
            records.push(ConsumerRecord::Current {
                member_id: member_id.clone(),
                value: Some(updated.current()),
            });
        }

        let full = joining
            || (req.rebalance_timeout_ms != -1
                && req.subscribed_topic_names.is_some()
                && req.owned.is_some());
        let assignment =
            (full || updated.assigned != member.assigned).then(|| updated.assigned.clone());
        for record in records {
            self.effects.push(Effect::Persist(GroupRecord::Consumer {
                group: gid.clone(),
                record,
            }));
        }
        Ok(Heartbeat {
            member_id,
            member_epoch: updated.epoch,
            heartbeat_interval_ms,
            assignment,
        })
    }

    fn consumer_leave(
        &mut self,
        now_ms: i64,
        gid: &str,
        req: &HeartbeatRequest,
        image: &TopicImage,
    ) -> Result<Heartbeat, Refusal> {
        let (_, interval) = self.limits.consumer.for_group(self.group_configs.get(gid));
        let Some(cg) = self.groups.get_mut(gid).and_then(|g| g.consumer.as_mut()) else {
            return refuse(
                GroupError::GroupIdNotFound,
                format!("Group {gid} not found."),
            );
        };
        let member_id = match &req.instance_id {
            None => {
                if !cg.members.contains_key(&req.member_id) {
                    return refuse(
                        GroupError::UnknownMemberId,
                        format!("Member {} is not a member of group {gid}.", req.member_id),
                    );
                }
                req.member_id.clone()
            }
            Some(instance) => {
                let Some(current) = cg.static_members.get(instance).cloned() else {
                    return refuse(
                        GroupError::UnknownMemberId,
                        format!("Instance id {instance} is unknown."),
                    );
                };
                if current != req.member_id {
                    return refuse(
                        GroupError::FencedInstanceId,
                        format!("Instance id {instance} belongs to member {current}."),
                    );
                }
                if req.member_epoch == STATIC_LEAVE_EPOCH {
                    // Leaves for now: keeps its target for its session timeout, owns
                    // nothing meanwhile.
                    let mut m = cg.members[&current].clone();
                    m.epoch = STATIC_LEAVE_EPOCH;
                    m.pending_revocation = Assignment::new();
                    m.assigned = Assignment::new();
                    m.state = MemberState::Stable;
                    let record = ConsumerRecord::Current {
                        member_id: current.clone(),
                        value: Some(m.current()),
                    };
                    cg.set_current(m);
                    self.effects.push(Effect::Persist(GroupRecord::Consumer {
                        group: gid.to_string(),
                        record,
                    }));
                    return Ok(Heartbeat {
                        member_id: current,
                        member_epoch: STATIC_LEAVE_EPOCH,
                        heartbeat_interval_ms: interval,
                        assignment: None,
                    });
                }
                current
            }
        };
        self.fence_consumer(now_ms, gid, &member_id, image);
        Ok(Heartbeat {
            member_id,
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: interval,
            assignment: None,
        })
    }

    /// Takes a member out of a consumer group (left, expired or fenced); the group
    /// epoch moves so the others get its partitions. When the last consumer-protocol
    /// member goes and classic members remain, the group turns classic again.
    pub fn fence_consumer(&mut self, now_ms: i64, gid: &str, member_id: &str, image: &TopicImage) {
        if self.downgrade_allowed(gid, member_id) {
            return self.downgrade(now_ms, gid, Some(member_id), image);
        }
        let Some(cg) = self.groups.get_mut(gid).and_then(|g| g.consumer.as_mut()) else {
            return;
        };
        if cg.remove(member_id).is_none() {
            return;
        }
        let mut records = remove_records(member_id);
        cg.epoch += 1;
        records.push(ConsumerRecord::GroupEpoch(Some(cg.epoch)));
        for record in records {
            self.effects.push(Effect::Persist(GroupRecord::Consumer {
                group: gid.to_string(),
                record,
            }));
        }
    }

    /// Consumer-group members whose session expired or that did not revoke within
    /// their rebalance timeout: (group, member), for [`GroupCoordinator::fence_consumer`].
    pub fn expired_consumers(&self, now_ms: i64) -> Vec<(String, String)> {
        let mut fenced = Vec::new();
        for (gid, g) in &self.groups {
            let Some(cg) = &g.consumer else { continue };
            let (session, _) = self.limits.consumer.for_group(self.group_configs.get(gid));
            for m in cg.members.values() {
                let expired = now_ms >= m.last_seen_ms + m.session_ms(session);
                let stuck = [m.revoke_deadline_ms, m.join_deadline_ms, m.sync_deadline_ms]
                    .iter()
                    .flatten()
                    .any(|d| now_ms >= *d);
                if expired || stuck {
                    fenced.push((gid.clone(), m.member_id.clone()));
                }
            }
        }
        fenced
    }

    /// OffsetFetch v9's member check (KIP-848): a fetch that names a member or an
    /// epoch of a consumer group must come from a member at its current epoch.
    pub fn check_consumer_fetch(
        &self,
        gid: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), GroupError> {
        if member_id.is_none() && epoch < 0 {
            return Ok(());
        }
        let Some(cg) = self.groups.get(gid).and_then(|g| g.consumer.as_ref()) else {
            return Ok(());
        };
        let m = cg
            .members
            .get(member_id.unwrap_or_default())
            .ok_or(GroupError::UnknownMemberId)?;
        check_member_epoch(m, epoch)
    }

    /// Whether `member_id` is a consumer-protocol member of `gid` (its commits must
    /// use OffsetCommit v9+; a classic member inside the group commits as before).
    pub fn is_consumer_member(&self, gid: &str, member_id: &str) -> bool {
        self.groups
            .get(gid)
            .and_then(|g| g.consumer.as_ref())
            .and_then(|cg| cg.members.get(member_id))
            .is_some_and(|m| !m.is_classic())
    }

    /// The group configs in force (from the metadata image), by group id.
    pub fn set_group_configs(&mut self, configs: BTreeMap<String, BTreeMap<String, String>>) {
        self.group_configs = configs;
    }

    /// One group's configs in force (`None`: none set).
    pub fn set_group_config(&mut self, gid: &str, configs: Option<BTreeMap<String, String>>) {
        match configs {
            Some(c) => self.group_configs.insert(gid.to_string(), c),
            None => self.group_configs.remove(gid),
        };
    }

    /// What a group is now (its committed offsets aside), to put back with
    /// [`GroupCoordinator::restore_consumer`] if the records of a change to a consumer
    /// group (or of a conversion to or from one) cannot be written: the coordinator
    /// must never serve state its log does not hold.
    pub fn consumer_snapshot(&self, gid: &str) -> ConsumerSnapshot {
        ConsumerSnapshot(self.groups.get(gid).map(Group::without_offsets))
    }

    pub fn restore_consumer(&mut self, gid: &str, snapshot: ConsumerSnapshot) {
        let now_consumer = self.groups.get(gid).is_some_and(|g| g.consumer.is_some());
        match snapshot.0 {
            Some(mut before) => {
                if before.consumer.is_none() && !now_consumer {
                    // A classic group's failed write rebalances it (storage_failed).
                    return;
                }
                if before.consumer.is_none() {
                    // The upgrade answered every waiting member already.
                    for m in before.members.values_mut() {
                        m.join_ticket = None;
                        m.sync_ticket = None;
                    }
                }
                before.offsets = self
                    .groups
                    .remove(gid)
                    .map(|g| g.offsets)
                    .unwrap_or_default();
                self.groups.insert(gid.to_string(), before);
            }
            None if !now_consumer => {}
            None => {
                if self.groups.get(gid).is_some_and(|g| g.offsets.is_empty()) {
                    self.groups.remove(gid);
                } else if let Some(g) = self.groups.get_mut(gid) {
                    g.consumer = None;
                    g.protocol_type = None;
                }
            }
        }
    }

    /// Applies a consumer-group record read back from `__consumer_offsets`.
    pub fn load_consumer(&mut self, now_ms: i64, gid: &str, record: ConsumerRecord) {
        let is_consumer = self.groups.get(gid).is_some_and(|g| g.consumer.is_some());
        if !is_consumer && record.is_tombstone() {
            // What is left of a consumer group already gone (converted or deleted).
            return;
        }
        let group = self
            .groups
            .entry(gid.to_string())
            .or_insert_with(Group::new);
        if group.consumer.is_none() {
            group.become_consumer();
        }
        let cg = group.consumer.as_mut().expect("made a consumer group");
        cg.subscribed = None;
        match record {
            ConsumerRecord::GroupEpoch(Some(e)) => cg.epoch = e,
            ConsumerRecord::GroupEpoch(None) => {
                group.consumer = None;
                if group.offsets.is_empty() {
                    self.groups.remove(gid);
                }
            }
            ConsumerRecord::TargetEpoch(e) => cg.assignment_epoch = e.unwrap_or(0),
            ConsumerRecord::Target { member_id, value } => match value {
                Some(a) => {
                    cg.target.insert(member_id, a);
                }
                None => {
                    cg.target.remove(&member_id);
                }
            },
            ConsumerRecord::Member { member_id, value } => match value {
                Some(sub) => {
                    let mut m = cg.member_or_new(&member_id, now_ms);
                    m.subscription = sub;
                    m.last_seen_ms = now_ms;
                    cg.put_member(m, false);
                }
                None => {
                    cg.remove(&member_id);
                }
            },
            ConsumerRecord::Current { member_id, value } => {
                let mut m = cg.member_or_new(&member_id, now_ms);
                match value {
                    Some(c) => {
                        m.epoch = c.epoch;
                        m.previous_epoch = c.previous_epoch;
                        m.state = MemberState::from_byte(c.state);
                        m.assigned = c.assigned;
                        m.pending_revocation = c.pending_revocation;
                        m.last_seen_ms = now_ms;
                        m.revoke_deadline_ms = (m.state == MemberState::UnrevokedPartitions
                            && !m.is_classic())
                        .then(|| now_ms + i64::from(m.subscription.rebalance_timeout_ms.max(0)));
                        cg.put_member(m, false);
                    }
                    None => {
                        m.assigned.clear();
                        m.pending_revocation.clear();
                        if cg.members.contains_key(&member_id) {
                            cg.put_member(m, false);
                        }
                    }
                }
            }
        }
    }
}

/// A group as it was, offsets aside (`None`: it did not exist).
#[derive(Debug, Clone)]
pub struct ConsumerSnapshot(Option<Group>);

/// The tombstones that take a member out of the log, in Kafka's order.
fn remove_records(member_id: &str) -> Vec<ConsumerRecord> {
    vec![
        ConsumerRecord::Current {
            member_id: member_id.to_string(),
            value: None,
        },
        ConsumerRecord::Target {
            member_id: member_id.to_string(),
            value: None,
        },
        ConsumerRecord::Member {
            member_id: member_id.to_string(),
            value: None,
        },
    ]
}

/// A classic member's id is not for ConsumerGroupHeartbeat: it speaks JoinGroup.
fn refuse_classic(m: &ConsumerMember) -> Result<(), Refusal> {
    if m.is_classic() {
        return refuse(
            GroupError::UnknownMemberId,
            format!(
                "Member {} uses the classic protocol: it must rejoin with JoinGroup.",
                m.member_id
            ),
        );
    }
    Ok(())
}

/// KIP-848: an epoch ahead of the coordinator's, or behind it other than the previous
/// epoch with a subset of the assignment (the answer that moved it was lost), fences.
fn check_epoch(
    m: &ConsumerMember,
    received: i32,
    owned: Option<&Assignment>,
) -> Result<(), Refusal> {
    if received > m.epoch {
        return refuse(
            GroupError::FencedMemberEpoch,
            format!(
                "The consumer group member has a greater member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                m.epoch
            ),
        );
    }
    if received < m.epoch && (received != m.previous_epoch || !is_subset(owned, &m.assigned)) {
        return refuse(
            GroupError::FencedMemberEpoch,
            format!(
                "The consumer group member has a smaller member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                m.epoch
            ),
        );
    }
    Ok(())
}

impl Group {
    pub fn is_consumer_protocol(&self) -> bool {
        self.consumer.is_some()
    }

    /// Turns an empty classic group into a consumer group (KIP-848), offsets kept. A
    /// rebalance the classic group still had running ends here: it must not complete
    /// later and write the group back as classic.
    fn become_consumer(&mut self) {
        self.state = super::GroupState::Empty;
        self.pending_members.clear();
        self.consumer = Some(ConsumerGroup::default());
        self.protocol_type = Some("consumer".to_string());
        self.protocol = None;
        self.leader = None;
    }

    /// The offset-commit check of a consumer group (KIP-848): a commit from outside
    /// the group (epoch -1) only while it is empty; a member's with its current
    /// epoch only.
    pub(super) fn check_consumer_commit(
        &self,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), GroupError> {
        let cg = self.consumer.as_ref().expect("a consumer group");
        if epoch < 0 && cg.members.is_empty() {
            return Ok(());
        }
        let m = cg
            .members
            .get(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        check_member_epoch(m, epoch)
    }
}

/// A commit's or fetch's epoch against the member's: a classic member's generation is
/// its member epoch, and a wrong one is ILLEGAL_GENERATION to it (Kafka's
/// validateMemberEpoch).
fn check_member_epoch(m: &ConsumerMember, epoch: i32) -> Result<(), GroupError> {
    match (epoch == m.epoch, m.is_classic()) {
        (true, _) => Ok(()),
        (false, true) => Err(GroupError::IllegalGeneration),
        (false, false) => Err(GroupError::StaleMemberEpoch),
    }
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
