//! Share groups (KIP-932): membership and the assignment of partitions to members, as
//! part of the group coordinator. A share group's members read partitions together;
//! which record goes to whom is decided per record by the partition leader
//! ([`crate::share`]), so a partition may be assigned to several members and an
//! assignment changes at once, with no revocation round.
//!
//! Membership lives in the coordinator's memory only: after a coordinator moves,
//! members are told UNKNOWN_MEMBER_ID and join again (the records they held are
//! released by their locks or sessions, which the partition leaders keep).

use std::collections::{BTreeMap, BTreeSet};

use super::consumer::{Assignment, TopicImage};
use super::{GroupCoordinator, GroupError};

/// KIP-932's heartbeat epochs.
pub const SHARE_LEAVE_EPOCH: i32 = -1;

/// The broker's share-group limits and defaults (`group.share.*`).
#[derive(Debug, Clone)]
pub struct ShareGroupLimits {
    /// group.share.session.timeout.ms
    pub session_timeout_ms: i32,
    /// group.share.heartbeat.interval.ms
    pub heartbeat_interval_ms: i32,
    /// group.share.max.size
    pub max_size: usize,
}

impl Default for ShareGroupLimits {
    fn default() -> Self {
        ShareGroupLimits {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: 200,
        }
    }
}

impl ShareGroupLimits {
    /// The session timeout and heartbeat interval for a group, its group configs
    /// (`share.session.timeout.ms`, `share.heartbeat.interval.ms`) first.
    pub fn for_group(&self, configs: Option<&BTreeMap<String, String>>) -> (i32, i32) {
        let get = |k: &str, default: i32| {
            configs
                .and_then(|c| c.get(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        (
            get("share.session.timeout.ms", self.session_timeout_ms),
            get("share.heartbeat.interval.ms", self.heartbeat_interval_ms),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMember {
    pub member_id: String,
    pub epoch: i32,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: BTreeSet<String>,
    pub assigned: Assignment,
    pub last_heartbeat_ms: i64,
    pub session_timeout_ms: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareGroup {
    /// Moves on every change of members, subscriptions or subscribed partitions.
    pub epoch: i32,
    pub members: BTreeMap<String, ShareMember>,
    /// Partition counts of the subscribed topics the assignment was made for.
    subscribed_partitions: BTreeMap<String, i32>,
    /// Every topic the group's members subscribed to since the coordinator loaded it
    /// (what DescribeShareGroupOffsets reports when no topics are named).
    pub topics_read: BTreeSet<String>,
}

impl ShareGroup {
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
    }

    /// Recomputes every member's assignment for the current epoch (Kafka's simple
    /// assignor): per topic, partitions go round-robin over its subscribers; with
    /// more subscribers than partitions, subscribers go round-robin over partitions,
    /// so every partition is read and every subscriber reads.
    fn assign(&mut self, image: &TopicImage) {
        let mut assigned: BTreeMap<String, Assignment> = self
            .members
            .keys()
            .map(|m| (m.clone(), Assignment::new()))
            .collect();
        for (topic, &partitions) in &self.subscribed_partitions {
            let Some((id, _)) = image.get(topic) else {
                continue;
            };
            let readers: Vec<&String> = self
                .members
                .values()
                .filter(|m| m.subscribed.contains(topic))
                .map(|m| &m.member_id)
                .collect();
            if readers.is_empty() || partitions <= 0 {
                continue;
            }
            let pairs: Vec<(usize, i32)> = if readers.len() as i32 <= partitions {
                (0..partitions)
                    .map(|p| (p as usize % readers.len(), p))
                    .collect()
            } else {
                (0..readers.len())
                    .map(|r| (r, r as i32 % partitions))
                    .collect()
            };
            for (r, p) in pairs {
                assigned
                    .get_mut(readers[r])
                    .expect("a member")
                    .entry(*id)
                    .or_default()
                    .insert(p);
            }
        }
        // Each member takes its new assignment, and the epoch, on its next heartbeat.
        for (m, a) in assigned {
            self.members.get_mut(&m).expect("a member").assigned = a;
        }
        // Every partition of a subscribed topic is read by some subscriber.
        for (topic, &partitions) in &self.subscribed_partitions {
            let Some((id, _)) = image.get(topic) else {
                continue;
            };
            let read: BTreeSet<i32> = self
                .members
                .values()
                .filter_map(|m| m.assigned.get(id))
                .flatten()
                .copied()
                .collect();
            assert!(
                read.len() as i32 == partitions || read.is_empty(),
                "share group assignment leaves partitions of {topic} unread: {read:?} of {partitions}"
            );
        }
    }

    /// The subscribed topics that exist, with their partition counts.
    fn subscriptions(&self, image: &TopicImage) -> BTreeMap<String, i32> {
        self.members
            .values()
            .flat_map(|m| &m.subscribed)
            .filter_map(|t| image.get(t).map(|(_, n)| (t.clone(), *n)))
            .collect()
    }

    /// A new epoch and assignment if members, subscriptions or partition counts
    /// changed (`changed` says the members or subscriptions did).
    fn maybe_rebalance(&mut self, image: &TopicImage, changed: bool) {
        let subscribed = self.subscriptions(image);
        self.topics_read.extend(subscribed.keys().cloned());
        if changed || subscribed != self.subscribed_partitions {
            self.epoch += 1;
            self.subscribed_partitions = subscribed;
            self.assign(image);
        }
    }
}

/// A ShareGroupHeartbeat request.
#[derive(Debug, Clone, Default)]
pub struct ShareHeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub client_id: String,
    pub client_host: String,
}

/// A successful ShareGroupHeartbeat answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareHeartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assignment when it changed (or the member joined).
    pub assignment: Option<Assignment>,
}

type Refusal = (GroupError, String);

fn refuse<T>(e: GroupError, why: impl Into<String>) -> Result<T, Refusal> {
    Err((e, why.into()))
}

fn validate(req: &ShareHeartbeatRequest) -> Result<(), Refusal> {
    let invalid = |why: &str| refuse(GroupError::InvalidRequest, why);
    if req.group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if req.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    if req.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    match req.member_epoch {
        0 if req
            .subscribed_topic_names
            .as_ref()
            .is_none_or(Vec::is_empty) =>
        {
            invalid("SubscribedTopicNames must be set in first request.")
        }
        e if e >= 0 || e == SHARE_LEAVE_EPOCH => Ok(()),
        _ => invalid("MemberEpoch is invalid."),
    }
}

impl GroupCoordinator {
    /// ShareGroupHeartbeat (KIP-932): joins (epoch 0, with the member's own id),
    /// heartbeats and leaves (-1).
    pub fn share_heartbeat(
        &mut self,
        now_ms: i64,
        req: ShareHeartbeatRequest,
        image: &TopicImage,
    ) -> Result<ShareHeartbeat, Refusal> {
        validate(&req)?;
        let gid = req.group_id.clone();
        if self.groups.contains_key(&gid) {
            return refuse(
                GroupError::GroupIdNotFound,
                format!("Group {gid} is not a share group."),
            );
        }
        let (session_timeout_ms, heartbeat_interval_ms) =
            self.limits.share.for_group(self.group_configs.get(&gid));
        let max_size = self.limits.share.max_size;
        let joining = req.member_epoch == 0;
        if req.member_epoch == SHARE_LEAVE_EPOCH {
            let group = self.share_groups.get_mut(&gid);
            let Some(group) = group.filter(|g| g.members.contains_key(&req.member_id)) else {
                return refuse(
                    GroupError::UnknownMemberId,
                    format!("Member {} is not a member of group {gid}.", req.member_id),
                );
            };
            group.members.remove(&req.member_id);
            group.maybe_rebalance(image, true);
            return Ok(ShareHeartbeat {
                member_id: req.member_id,
                member_epoch: SHARE_LEAVE_EPOCH,
                heartbeat_interval_ms: 0,
                assignment: None,
            });
        }
        let group = match self.share_groups.get_mut(&gid) {
            Some(g) => g,
            None if joining => self.share_groups.entry(gid.clone()).or_default(),
            None => {
                return refuse(
                    GroupError::UnknownMemberId,
                    format!("Member {} is not a member of group {gid}.", req.member_id),
                )
            }
        };
        let known = group.members.contains_key(&req.member_id);
        if !known && !joining {
            return refuse(
                GroupError::UnknownMemberId,
                format!("Member {} is not a member of group {gid}.", req.member_id),
            );
        }
        if !known && group.members.len() >= max_size {
            return refuse(
                GroupError::GroupMaxSizeReached,
                format!("The share group has reached its maximum capacity of {max_size} members."),
            );
        }
        let mut changed = false;
        let member = group
            .members
            .entry(req.member_id.clone())
            .or_insert_with(|| {
                changed = true;
                ShareMember {
                    member_id: req.member_id.clone(),
                    epoch: 0,
                    rack_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    subscribed: BTreeSet::new(),
                    assigned: Assignment::new(),
                    last_heartbeat_ms: now_ms,
                    session_timeout_ms,
                }
            });
        if !joining && req.member_epoch != member.epoch {
            return refuse(
                GroupError::FencedMemberEpoch,
                format!(
                    "The share group member has a member epoch ({}) other than the one known by the group coordinator ({}). The member must rejoin.",
                    req.member_epoch, member.epoch
                ),
            );
        }
        let before = member.epoch;
        member.last_heartbeat_ms = now_ms;
        member.session_timeout_ms = session_timeout_ms;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        if req.rack_id.is_some() {
            member.rack_id = req.rack_id;
        }
        if let Some(names) = req.subscribed_topic_names {
            let names: BTreeSet<String> = names.into_iter().collect();
            if names != member.subscribed {
                member.subscribed = names;
                changed = true;
            }
        }
        group.maybe_rebalance(image, changed);
        let epoch = group.epoch;
        let member = group.members.get_mut(&req.member_id).expect("a member");
        member.epoch = epoch;
        Ok(ShareHeartbeat {
            member_id: member.member_id.clone(),
            member_epoch: member.epoch,
            heartbeat_interval_ms,
            assignment: (joining || member.epoch != before).then(|| member.assigned.clone()),
        })
    }

    /// Removes share-group members whose session ran out; returns them as
    /// (group, member).
    pub fn expire_share_members(
        &mut self,
        now_ms: i64,
        image: &TopicImage,
    ) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        for (gid, group) in &mut self.share_groups {
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| now_ms - m.last_heartbeat_ms >= i64::from(m.session_timeout_ms))
                .map(|m| m.member_id.clone())
                .collect();
            for m in &expired {
                group.members.remove(m);
                gone.push((gid.clone(), m.clone()));
            }
            if !expired.is_empty() {
                group.maybe_rebalance(image, true);
            }
        }
        gone
    }

    pub fn share_group(&self, id: &str) -> Option<&ShareGroup> {
        self.share_groups.get(id)
    }

    pub fn share_groups(&self) -> impl Iterator<Item = (&String, &ShareGroup)> {
        self.share_groups.iter()
    }

    /// Deletes an empty share group (DeleteGroups).
    pub fn delete_share_group(&mut self, id: &str) -> Result<(), GroupError> {
        match self.share_groups.get(id) {
            None => Err(GroupError::GroupIdNotFound),
            Some(g) if !g.members.is_empty() => Err(GroupError::NonEmptyGroup),
            Some(_) => {
                self.share_groups.remove(id);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupLimits;

    fn image() -> TopicImage {
        BTreeMap::from([
            ("t".to_string(), ([1; 16], 3)),
            ("u".to_string(), ([2; 16], 1)),
        ])
    }

    fn hb(member: &str, epoch: i32, topics: Option<&[&str]>) -> ShareHeartbeatRequest {
        ShareHeartbeatRequest {
            group_id: "g".into(),
            member_id: member.into(),
            member_epoch: epoch,
            subscribed_topic_names: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn partitions(a: &Option<Assignment>, id: u8) -> Vec<i32> {
        a.as_ref()
            .and_then(|a| a.get(&[id; 16]))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// KIP-932: a member joins with its own id at epoch 0 and gets every partition;
    /// a second member splits them; a partition may go to several members when
    /// members outnumber partitions.
    #[test]
    fn members_share_partitions_and_every_partition_is_read() {
        let mut c = GroupCoordinator::new(GroupLimits::default());
        let img = image();
        let a = c
            .share_heartbeat(0, hb("a", 0, Some(&["t", "u"])), &img)
            .unwrap();
        assert_eq!(
            (a.member_epoch, partitions(&a.assignment, 1)),
            (1, vec![0, 1, 2])
        );
        let b = c
            .share_heartbeat(0, hb("b", 0, Some(&["t", "u"])), &img)
            .unwrap();
        assert_eq!(b.member_epoch, 2);
        let a = c.share_heartbeat(10, hb("a", 1, None), &img).unwrap();
        assert_eq!(a.member_epoch, 2, "a moves to the new epoch at once");
        assert_eq!(partitions(&a.assignment, 1), vec![0, 2]);
        assert_eq!(partitions(&b.assignment, 1), vec![1]);
        // One partition of u, two members: both read it.
        assert_eq!(partitions(&a.assignment, 2), vec![0]);
        assert_eq!(partitions(&b.assignment, 2), vec![0]);
        let again = c.share_heartbeat(20, hb("a", 2, None), &img).unwrap();
        assert_eq!(again.assignment, None, "unchanged: not sent again");
    }

    /// Epochs fence, unknown members are told so, leaving rebalances the rest, and a
    /// session that runs out removes the member.
    #[test]
    fn epochs_fence_and_members_leave_or_expire() {
        let mut c = GroupCoordinator::new(GroupLimits::default());
        let img = image();
        c.share_heartbeat(0, hb("a", 0, Some(&["t"])), &img)
            .unwrap();
        c.share_heartbeat(0, hb("b", 0, Some(&["t"])), &img)
            .unwrap();
        let e = c.share_heartbeat(0, hb("a", 7, None), &img).unwrap_err();
        assert_eq!(e.0, GroupError::FencedMemberEpoch);
        let e = c.share_heartbeat(0, hb("z", 3, None), &img).unwrap_err();
        assert_eq!(e.0, GroupError::UnknownMemberId);
        let left = c.share_heartbeat(0, hb("b", -1, None), &img).unwrap();
        assert_eq!(left.member_epoch, -1);
        let a = c.share_heartbeat(1_000, hb("a", 1, None), &img).unwrap();
        assert_eq!(
            (a.member_epoch, partitions(&a.assignment, 1)),
            (3, vec![0, 1, 2])
        );
        assert!(c.expire_share_members(45_999, &img).is_empty());
        assert_eq!(
            c.expire_share_members(46_000, &img),
            vec![("g".to_string(), "a".to_string())]
        );
        assert_eq!(c.share_group("g").unwrap().state_name(), "Empty");
    }

    /// A topic gaining partitions gives the group a new epoch and assignment.
    #[test]
    fn new_partitions_are_assigned() {
        let mut c = GroupCoordinator::new(GroupLimits::default());
        let mut img = image();
        c.share_heartbeat(0, hb("a", 0, Some(&["t"])), &img)
            .unwrap();
        img.insert("t".into(), ([1; 16], 5));
        let a = c.share_heartbeat(0, hb("a", 1, None), &img).unwrap();
        assert_eq!(
            (a.member_epoch, partitions(&a.assignment, 1)),
            (2, vec![0, 1, 2, 3, 4])
        );
    }

    /// A group id is one kind of group: a share group's id is refused to classic and
    /// consumer members, and the other way round; bad requests are refused.
    #[test]
    fn ids_of_other_group_kinds_and_bad_requests_are_refused() {
        let mut c = GroupCoordinator::new(GroupLimits::default());
        let img = image();
        c.share_heartbeat(0, hb("a", 0, Some(&["t"])), &img)
            .unwrap();
        let consumer = crate::group::HeartbeatRequest {
            group_id: "g".into(),
            member_id: "c".into(),
            member_epoch: 0,
            rebalance_timeout_ms: 1000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            ..Default::default()
        };
        let e = c
            .consumer_heartbeat(0, consumer, &img, "x".into())
            .unwrap_err();
        assert_eq!(e.0, GroupError::GroupIdNotFound);
        for (req, why) in [
            (hb("", 0, Some(&["t"])), "MemberId"),
            (hb("b", 0, None), "SubscribedTopicNames"),
            (hb("b", -2, None), "MemberEpoch"),
        ] {
            let e = c.share_heartbeat(0, req, &img).unwrap_err();
            assert_eq!(e.0, GroupError::InvalidRequest);
            assert!(e.1.contains(why), "{}", e.1);
        }
        let mut limits = GroupLimits::default();
        limits.share.max_size = 1;
        let mut small = GroupCoordinator::new(limits);
        small
            .share_heartbeat(0, hb("a", 0, Some(&["t"])), &img)
            .unwrap();
        let e = small
            .share_heartbeat(0, hb("b", 0, Some(&["t"])), &img)
            .unwrap_err();
        assert_eq!(e.0, GroupError::GroupMaxSizeReached);
    }
}
