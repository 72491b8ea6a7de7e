//! KIP-848's online migration, rule by rule: a live classic group upgraded by a
//! consumer-protocol member, classic and consumer members sharing the group's
//! partitions, and the downgrade when the last consumer-protocol member leaves.

use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as Owned;

use super::*;
use crate::group::{GroupLimits, OffsetCommit, OffsetValue};

const T: TopicId = [1; 16];
const DELAY: i32 = 3_000;

fn img() -> TopicImage {
    TopicImage::from([("t".to_string(), (T, 4))])
}

fn coordinator(limits: GroupLimits) -> GroupCoordinator {
    GroupCoordinator::new(GroupLimits {
        initial_rebalance_delay_ms: DELAY,
        ..limits
    })
}

/// A classic consumer's embedded subscription (version 1: with owned partitions).
fn subscription(owned: &[i32]) -> Bytes {
    let owned = if owned.is_empty() {
        Vec::new()
    } else {
        vec![Owned::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(owned.to_vec())]
    };
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("t")])
        .with_owned_partitions(owned);
    let mut b = BytesMut::new();
    b.put_i16(1);
    sub.encode(&mut b, 1).unwrap();
    b.freeze()
}

fn join_req(member: &str, owned: &[i32]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), subscription(owned))],
        require_known_member_id: false,
    }
}

fn sync_req(member: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        generation,
        member_id: member.into(),
        instance_id: None,
        protocol: Some(("consumer".into(), "range".into())),
        assignments,
    }
}

fn consumer_join(member: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(Assignment::new()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..HeartbeatRequest::default()
    }
}

fn consumer_beat(member: &str, epoch: i32, owned: &Assignment) -> HeartbeatRequest {
    HeartbeatRequest {
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        subscribed_topic_names: None,
        owned: Some(owned.clone()),
        ..consumer_join(member)
    }
}

fn asg(ps: &[i32]) -> Bytes {
    let a = Assignment::from([(T, ps.iter().copied().collect())]);
    encode_assignment(&a, &img(), 1)
}

fn partitions(raw: &Bytes) -> BTreeSet<i32> {
    decode_assignment(raw, &img())
        .unwrap()
        .remove(&T)
        .unwrap_or_default()
}

fn joined(effects: &[Effect]) -> Result<Joined, GroupError> {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Join { result, .. } => Some(result.clone().map_err(|(e, _)| e)),
            _ => None,
        })
        .expect("a JoinGroup answer")
}

fn synced(effects: &[Effect]) -> Result<Synced, GroupError> {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Sync { result, .. } => Some(result.clone()),
            _ => None,
        })
        .expect("a SyncGroup answer")
}

fn records(effects: &[Effect]) -> Vec<GroupRecord> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// A classic group of a and b, stable, a owning partitions 0 and 1, b 2 and 3;
/// returns its generation and the records written.
fn classic_group(c: &mut GroupCoordinator) -> (i32, Vec<GroupRecord>) {
    c.join(0, 1, join_req("", &[]), "a".into(), &img());
    c.join(0, 2, join_req("", &[]), "b".into(), &img());
    c.tick(DELAY.into());
    let generation = joined(&c.take_effects()).unwrap().generation;
    c.sync(
        DELAY.into(),
        3,
        sync_req("b", generation, Vec::new()),
        &img(),
    );
    let assignments = vec![("a".into(), asg(&[0, 1])), ("b".into(), asg(&[2, 3]))];
    c.sync(
        DELAY.into(),
        4,
        sync_req("a", generation, assignments),
        &img(),
    );
    let effects = c.take_effects();
    assert_eq!(c.group("g").unwrap().state, GroupState::Stable);
    (generation, records(&effects))
}

/// A classic member as a cooperative client runs it: heartbeat; told to rejoin,
/// JoinGroup with what it owns, then SyncGroup, keeping what it is given.
struct Classic {
    id: String,
    generation: i32,
    owned: BTreeSet<i32>,
}

impl Classic {
    fn member_id_is(&self, id: &str) -> bool {
        self.id == id
    }

    /// One round; whether anything changed.
    fn round(&mut self, c: &mut GroupCoordinator, now: i64) -> bool {
        match c.heartbeat(now, "g", self.generation, &self.id, None) {
            Ok(()) => false,
            Err(GroupError::RebalanceInProgress) | Err(GroupError::IllegalGeneration) => {
                let owned: Vec<i32> = self.owned.iter().copied().collect();
                c.join(now, 10, join_req(&self.id, &owned), "unused".into(), &img());
                let j = joined(&c.take_effects()).expect("rejoined");
                self.generation = j.generation;
                c.sync(
                    now,
                    11,
                    sync_req(&self.id, j.generation, Vec::new()),
                    &img(),
                );
                match synced(&c.take_effects()) {
                    Ok(s) => self.owned = partitions(&s.assignment),
                    Err(GroupError::RebalanceInProgress) => {}
                    Err(e) => panic!("{} could not sync: {e:?}", self.id),
                }
                true
            }
            Err(e) => panic!("{}'s heartbeat refused: {e:?}", self.id),
        }
    }
}

struct Modern {
    id: String,
    epoch: i32,
    owned: Assignment,
}

impl Modern {
    fn round(&mut self, c: &mut GroupCoordinator, now: i64) -> bool {
        let hb = c
            .consumer_heartbeat(
                now,
                consumer_beat(&self.id, self.epoch, &self.owned),
                &img(),
                "x".into(),
            )
            .expect("heartbeat accepted");
        let mut changed = hb.member_epoch != self.epoch;
        self.epoch = hb.member_epoch;
        if let Some(a) = hb.assignment {
            changed |= a != self.owned;
            self.owned = a;
        }
        changed
    }

    fn partitions(&self) -> BTreeSet<i32> {
        self.owned.get(&T).cloned().unwrap_or_default()
    }
}

/// Runs every member until a whole round changes nothing.
fn settle(c: &mut GroupCoordinator, now: i64, classic: &mut [Classic], modern: &mut [Modern]) {
    for _ in 0..20 {
        let mut changed = false;
        for m in classic.iter_mut() {
            changed |= m.round(c, now);
        }
        for m in modern.iter_mut() {
            changed |= m.round(c, now);
        }
        if !changed {
            return;
        }
    }
    panic!("the mixed group did not settle");
}

/// Upgrades a fresh classic group of a and b with consumer-protocol member m, and
/// settles the three; returns the members and every record written.
fn mixed_group(c: &mut GroupCoordinator) -> (Vec<Classic>, Vec<Modern>, Vec<GroupRecord>) {
    let (generation, mut log) = classic_group(c);
    let hb = c
        .consumer_heartbeat(5_000, consumer_join("m"), &img(), "x".into())
        .expect("the upgrade and the join succeed");
    let mut classic: Vec<Classic> = ["a", "b"]
        .iter()
        .zip([[0, 1], [2, 3]])
        .map(|(id, owned)| Classic {
            id: id.to_string(),
            generation,
            owned: owned.into(),
        })
        .collect();
    let mut modern = vec![Modern {
        id: "m".into(),
        epoch: hb.member_epoch,
        owned: hb.assignment.unwrap_or_default(),
    }];
    log.extend(records(&c.take_effects()));
    settle(c, 6_000, &mut classic, &mut modern);
    log.extend(records(&c.take_effects()));
    (classic, modern, log)
}

#[test]
fn a_consumer_member_upgrades_a_live_classic_group_which_keeps_its_assignment() {
    let mut c = coordinator(GroupLimits::default());
    let (generation, _) = classic_group(&mut c);
    let hb = c
        .consumer_heartbeat(5_000, consumer_join("m"), &img(), "x".into())
        .unwrap();
    let effects = c.take_effects();
    // The classic group's record is tombstoned before the consumer group's records.
    let written = records(&effects);
    assert_eq!(
        written[0],
        GroupRecord::Metadata {
            group: "g".into(),
            value: None
        }
    );
    assert!(written[1..]
        .iter()
        .all(|r| matches!(r, GroupRecord::Consumer { .. })));
    let g = c.group("g").unwrap();
    assert!(g.is_consumer_protocol());
    assert!(g.members.is_empty());
    let cg = g.consumer.as_ref().unwrap();
    // The classic members are there at the old generation with what they owned; the
    // newcomer waits for partitions they still hold.
    for (id, ps) in [("a", [0, 1]), ("b", [2, 3])] {
        let m = &cg.members[id];
        assert!(m.is_classic());
        assert_eq!(m.epoch, generation);
        assert_eq!(m.assigned, Assignment::from([(T, ps.into())]));
    }
    assert_eq!(hb.member_epoch, generation + 1);
    assert_eq!(cg.epoch, generation + 1);
    assert!(hb.assignment.unwrap_or_default().is_empty());
    // A classic member's heartbeat tells it to rejoin for the new epoch.
    assert_eq!(
        c.heartbeat(5_100, "g", generation, "a", None),
        Err(GroupError::RebalanceInProgress)
    );
}

#[test]
fn classic_and_consumer_members_share_the_partitions_without_overlap() {
    let mut c = coordinator(GroupLimits::default());
    let (classic, modern, _) = mixed_group(&mut c);
    let mut all = BTreeSet::new();
    let owned: Vec<BTreeSet<i32>> = classic
        .iter()
        .map(|m| m.owned.clone())
        .chain(modern.iter().map(Modern::partitions))
        .collect();
    for ps in &owned {
        assert!(!ps.is_empty(), "every member gets a partition: {owned:?}");
        for p in ps {
            assert!(all.insert(*p), "partition {p} owned twice: {owned:?}");
        }
    }
    assert_eq!(all, BTreeSet::from([0, 1, 2, 3]));
    let cg = c.group("g").unwrap().consumer.clone().unwrap();
    assert_eq!(cg.state_name(), "Stable");
    for m in &classic {
        assert_eq!(m.generation, cg.epoch, "the generation is the member epoch");
        assert_eq!(c.heartbeat(7_000, "g", m.generation, &m.id, None), Ok(()));
    }
    // A classic member commits with its generation, which is its member epoch.
    let a = &classic[0];
    let commit = |_: i32| {
        vec![OffsetCommit {
            topic: "t".into(),
            partition: 0,
            value: OffsetValue {
                offset: 5,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 0,
            },
        }]
    };
    assert!(c
        .commit(7_000, "g", a.generation, &a.id, None, commit(0))
        .is_ok());
    assert_eq!(
        c.commit(7_000, "g", a.generation - 1, &a.id, None, commit(0))
            .err(),
        Some(GroupError::IllegalGeneration)
    );
    // Classic members commit at any OffsetCommit version; consumer ones need v9.
    assert!(!c.is_consumer_member("g", "a"));
    assert!(c.is_consumer_member("g", "m"));
}

#[test]
fn the_last_consumer_member_leaving_turns_the_group_classic_and_it_rebalances() {
    let mut c = coordinator(GroupLimits::default());
    let (mut classic, modern, _) = mixed_group(&mut c);
    let epoch = c.group("g").unwrap().consumer.as_ref().unwrap().epoch;
    let m = &modern[0];
    let mut leave = consumer_beat(&m.id, LEAVE_EPOCH, &Assignment::new());
    leave.owned = None;
    c.consumer_heartbeat(8_000, leave, &img(), "x".into())
        .unwrap();
    let written = records(&c.take_effects());
    // Every consumer record is tombstoned, then the classic group is written.
    let (last, tombstones) = written.split_last().unwrap();
    assert!(tombstones.iter().all(|r| matches!(
        r,
        GroupRecord::Consumer {
            record: ConsumerRecord::GroupEpoch(None)
                | ConsumerRecord::TargetEpoch(None)
                | ConsumerRecord::Member { value: None, .. }
                | ConsumerRecord::Target { value: None, .. }
                | ConsumerRecord::Current { value: None, .. },
            ..
        }
    )));
    let GroupRecord::Metadata {
        value: Some(meta), ..
    } = last
    else {
        panic!("the classic group is written last: {last:?}");
    };
    assert_eq!(meta.generation, epoch);
    assert_eq!(meta.protocol.as_deref(), Some("range"));
    for member in &meta.members {
        let held = &classic
            .iter()
            .find(|m| m.member_id_is(&member.member_id))
            .unwrap()
            .owned;
        assert_eq!(
            &partitions(&member.assignment),
            held,
            "each member keeps what it holds"
        );
    }
    let g = c.group("g").unwrap();
    assert!(!g.is_consumer_protocol());
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(g.generation, epoch);
    // The classic members rejoin, and the group completes a classic rebalance.
    for m in classic.iter_mut() {
        assert_eq!(
            c.heartbeat(8_100, "g", m.generation, &m.id, None),
            Err(GroupError::RebalanceInProgress)
        );
    }
    for (i, m) in classic.iter().enumerate() {
        let owned: Vec<i32> = m.owned.iter().copied().collect();
        c.join(
            8_200,
            20 + i as u64,
            join_req(&m.id, &owned),
            "x".into(),
            &img(),
        );
    }
    let answers: Vec<Joined> = c
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Join { result, .. } => Some(result.unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|j| j.generation == epoch + 1));
    assert_eq!(c.group("g").unwrap().state, GroupState::CompletingRebalance);
}

#[test]
fn a_failed_upgrade_leaves_the_classic_group_as_it_was() {
    // Disabled by policy, or a group of another protocol type: GROUP_ID_NOT_FOUND.
    let mut limits = GroupLimits::default();
    limits.consumer.migration_policy = MigrationPolicy::Downgrade;
    let mut c = coordinator(limits);
    classic_group(&mut c);
    let (e, why) = c
        .consumer_heartbeat(5_000, consumer_join("m"), &img(), "x".into())
        .unwrap_err();
    assert_eq!(e, GroupError::GroupIdNotFound);
    assert!(
        why.contains("group.consumer.migration.policy is downgrade"),
        "{why}"
    );
    assert!(!c.group("g").unwrap().is_consumer_protocol());

    // Upgraded, then the joining member does not fit: nothing is kept or written.
    let mut limits = GroupLimits::default();
    limits.consumer.max_size = 2;
    let mut c = coordinator(limits);
    let (generation, _) = classic_group(&mut c);
    let (e, _) = c
        .consumer_heartbeat(5_000, consumer_join("m"), &img(), "x".into())
        .unwrap_err();
    assert_eq!(e, GroupError::GroupMaxSizeReached);
    assert!(c.take_effects().is_empty());
    let g = c.group("g").unwrap();
    assert!(!g.is_consumer_protocol());
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(g.members.len(), 2);
    assert_eq!(c.heartbeat(5_100, "g", generation, "a", None), Ok(()));
}

#[test]
fn classic_requests_to_a_consumer_group_are_checked_as_kafka_checks_them() {
    let mut c = coordinator(GroupLimits::default());
    let (classic, modern, _) = mixed_group(&mut c);
    let a = &classic[0];
    // A wrong generation, a protocol other than the one the member was given.
    assert_eq!(
        c.heartbeat(9_000, "g", a.generation + 1, &a.id, None),
        Err(GroupError::IllegalGeneration)
    );
    let mut sync = sync_req(&a.id, a.generation, Vec::new());
    sync.protocol = Some(("consumer".into(), "roundrobin".into()));
    c.sync(9_000, 1, sync, &img());
    assert_eq!(
        synced(&c.take_effects()),
        Err(GroupError::InconsistentGroupProtocol)
    );
    // A classic request for a consumer-protocol member, and the other way round.
    assert_eq!(
        c.heartbeat(9_000, "g", modern[0].epoch, "m", None),
        Err(GroupError::UnknownMemberId)
    );
    let (e, _) = c
        .consumer_heartbeat(
            9_000,
            consumer_beat("a", a.generation, &Assignment::new()),
            &img(),
            "x".into(),
        )
        .unwrap_err();
    assert_eq!(e, GroupError::UnknownMemberId);
    // A classic member offering no protocol the others support.
    let mut odd = join_req("", &[]);
    odd.protocols[0].0 = "roundrobin".into();
    c.join(9_000, 2, odd, "z".into(), &img());
    assert_eq!(
        joined(&c.take_effects()).err(),
        Some(GroupError::InconsistentGroupProtocol)
    );
    // A newcomer with JoinGroup v4+ first gets a member id.
    let mut fresh = join_req("", &[]);
    fresh.require_known_member_id = true;
    c.join(9_000, 3, fresh, "n".into(), &img());
    assert_eq!(
        joined(&c.take_effects()).err(),
        Some(GroupError::MemberIdRequired)
    );
    // A classic member leaves with LeaveGroup; the group epoch moves.
    let epoch = c.group("g").unwrap().consumer.as_ref().unwrap().epoch;
    assert_eq!(
        c.leave(9_000, "g", &[("a".into(), None), ("m".into(), None)]),
        vec![Ok(()), Err(GroupError::UnknownMemberId)]
    );
    let cg = c.group("g").unwrap().consumer.as_ref().unwrap();
    assert!(!cg.members.contains_key("a"));
    assert_eq!(cg.epoch, epoch + 1);
}

#[test]
fn classic_members_live_by_their_own_session_and_must_rejoin_and_sync_in_time() {
    let mut c = coordinator(GroupLimits::default());
    let (generation, _) = classic_group(&mut c);
    c.consumer_heartbeat(5_000, consumer_join("m"), &img(), "x".into())
        .unwrap();
    // The JoinGroup session (10 s), not group.consumer.session.timeout.ms (45 s).
    assert!(c.expired_consumers(14_999).is_empty());
    let expired: Vec<String> = c
        .expired_consumers(15_000)
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(expired, ["a", "b"]);
    // Told to rejoin at 6 s, a keeps heartbeating but never rejoins: its rebalance
    // timeout (30 s) fences it.
    for t in (6_000..36_000).step_by(3_000) {
        assert_eq!(
            c.heartbeat(t, "g", generation, "a", None),
            Err(GroupError::RebalanceInProgress)
        );
        c.consumer_heartbeat(
            t,
            consumer_beat("m", generation + 1, &Assignment::new()),
            &img(),
            "x".into(),
        )
        .unwrap();
    }
    let fenced: Vec<String> = c
        .expired_consumers(36_000)
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert!(fenced.contains(&"a".to_string()), "{fenced:?}");
    assert!(!fenced.contains(&"m".to_string()));
    // b joins but never syncs: fenced at its rebalance timeout after the join.
    c.join(36_000, 1, join_req("b", &[2, 3]), "x".into(), &img());
    joined(&c.take_effects()).unwrap();
    for t in (39_000..66_000).step_by(3_000) {
        c.consumer_heartbeat(
            t,
            consumer_beat("m", generation + 1, &Assignment::new()),
            &img(),
            "x".into(),
        )
        .ok();
    }
    let fenced: Vec<String> = c
        .expired_consumers(66_000)
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert!(fenced.contains(&"b".to_string()), "{fenced:?}");
}

/// Applies records read back from the log, as a coordinator taking over does.
fn replay(records: &[GroupRecord]) -> GroupCoordinator {
    let mut c = coordinator(GroupLimits::default());
    for (position, r) in records.iter().enumerate() {
        let (k, v) = r.encode();
        match GroupRecord::decode(&k, v.as_deref()).unwrap() {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => c.apply_offset(&group, &topic, partition, value, position as i64),
            GroupRecord::Metadata { group, value } => c.load_metadata(0, &group, value),
            GroupRecord::Consumer { group, record } => c.load_consumer(0, &group, record),
        }
    }
    c
}

#[test]
fn the_records_of_a_migration_load_back_into_the_same_group() {
    let mut c = coordinator(GroupLimits::default());
    let (generation, mut log) = classic_group(&mut c);
    log.push(GroupRecord::Offset {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
        value: Some(OffsetValue {
            offset: 7,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        }),
    });
    c.consumer_heartbeat(5_000, consumer_join("m"), &img(), "x".into())
        .unwrap();
    log.extend(records(&c.take_effects()));
    // Upgraded: the same members, epochs, assignments and classic metadata; the
    // offset committed before the upgrade survives the classic group's tombstone.
    let loaded = replay(&log);
    let g = loaded.group("g").unwrap();
    assert_eq!(g.offsets[&("t".to_string(), 0)].value.offset, 7);
    let (before, after) = (
        c.group("g").unwrap().consumer.as_ref().unwrap(),
        g.consumer.as_ref().unwrap(),
    );
    assert_eq!(after.epoch, before.epoch);
    assert_eq!(after.target, before.target);
    for (id, m) in &before.members {
        assert_eq!(after.members[id].epoch, m.epoch);
        assert_eq!(after.members[id].assigned, m.assigned);
        assert_eq!(after.members[id].subscription, m.subscription);
    }
    assert_eq!(
        after.members["a"]
            .subscription
            .classic
            .as_ref()
            .unwrap()
            .session_timeout_ms,
        10_000
    );
    assert_eq!(after.members["a"].epoch, generation);
    // Downgraded: the classic group, its generation and assignments.
    let mut leave = consumer_beat("m", LEAVE_EPOCH, &Assignment::new());
    leave.owned = None;
    c.consumer_heartbeat(6_000, leave, &img(), "x".into())
        .unwrap();
    assert!(!c.group("g").unwrap().is_consumer_protocol());
    log.extend(records(&c.take_effects()));
    let loaded = replay(&log);
    let (before, after) = (c.group("g").unwrap(), loaded.group("g").unwrap());
    assert!(!after.is_consumer_protocol());
    // Its rebalance had not completed: it starts again after the load.
    assert_eq!(before.state, GroupState::PreparingRebalance);
    assert_eq!(after.state, GroupState::PreparingRebalance);
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.protocol, before.protocol);
    for (id, m) in &before.members {
        assert_eq!(after.members[id].assignment, m.assignment);
    }
    assert_eq!(after.offsets.len(), 1);
}

#[test]
fn an_empty_group_switching_protocol_keeps_counting_its_generations() {
    let mut c = coordinator(GroupLimits::default());
    let (generation, _) = classic_group(&mut c);
    c.leave(5_000, "g", &[("a".into(), None), ("b".into(), None)]);
    let empty_at = c.group("g").unwrap().generation;
    assert!(empty_at > generation);
    // The consumer protocol takes over the empty group: epochs go on from there.
    let hb = c
        .consumer_heartbeat(6_000, consumer_join("m"), &img(), "x".into())
        .unwrap();
    assert_eq!(hb.member_epoch, empty_at + 1);
    let mut leave = consumer_beat("m", LEAVE_EPOCH, &Assignment::new());
    leave.owned = None;
    c.consumer_heartbeat(7_000, leave, &img(), "x".into())
        .unwrap();
    let epoch = c.group("g").unwrap().consumer.as_ref().unwrap().epoch;
    // And a classic member taking it back gets a later generation still, which a
    // restart before its first rebalance completes keeps too.
    let mut log = records(&c.take_effects());
    c.join(8_000, 1, join_req("", &[]), "a".into(), &img());
    log.extend(records(&c.take_effects()));
    let loaded = replay(&log);
    let g = loaded.group("g").unwrap();
    assert!(
        !g.is_consumer_protocol(),
        "the consumer group's tombstones leave nothing"
    );
    assert_eq!(g.generation, epoch);
    c.tick(8_000 + i64::from(DELAY));
    assert_eq!(joined(&c.take_effects()).unwrap().generation, epoch + 1);
}

#[test]
fn a_downgrade_keeps_what_members_hold_so_an_upgrade_right_after_takes_nothing_held() {
    let mut c = coordinator(GroupLimits::default());
    let (generation, _) = classic_group(&mut c);
    // m joins: the target moves partitions from a and b to m, which they still hold.
    let hb = c
        .consumer_heartbeat(5_000, consumer_join("m"), &img(), "x".into())
        .unwrap();
    let target_a = c.group("g").unwrap().consumer.as_ref().unwrap().target["a"].clone();
    assert_ne!(
        target_a[&T],
        BTreeSet::from([0, 1]),
        "a is to give something up"
    );
    // m leaves before a and b rejoin: the group turns classic with what they hold.
    let mut leave = consumer_beat("m", hb.member_epoch, &Assignment::new());
    leave.member_epoch = LEAVE_EPOCH;
    leave.owned = None;
    c.consumer_heartbeat(6_000, leave, &img(), "x".into())
        .unwrap();
    let g = c.group("g").unwrap();
    assert_eq!(
        partitions(&g.members["a"].assignment),
        BTreeSet::from([0, 1])
    );
    assert_eq!(
        partitions(&g.members["b"].assignment),
        BTreeSet::from([2, 3])
    );
    // n joins at once: nothing a or b holds is given to it until they let it go.
    let hb = c
        .consumer_heartbeat(6_100, consumer_join("n"), &img(), "x".into())
        .unwrap();
    assert!(hb.assignment.unwrap_or_default().is_empty());
    assert_eq!(
        c.heartbeat(6_200, "g", generation, "a", None),
        Err(GroupError::IllegalGeneration),
        "a's generation ended with the downgrade"
    );
}

#[test]
fn a_classic_rebalance_left_running_by_an_upgrade_never_completes_as_classic() {
    let mut c = coordinator(GroupLimits::default());
    classic_group(&mut c);
    // A newcomer is handed a member id (KIP-394) and the members go: the group waits
    // for the newcomer's JoinGroup, rebalancing with nobody in it.
    c.leave(5_000, "g", &[("a".into(), None)]);
    let mut newcomer = join_req("", &[]);
    newcomer.require_known_member_id = true;
    c.join(5_000, 1, newcomer, "n".into(), &img());
    c.leave(5_000, "g", &[("b".into(), None)]);
    c.take_effects();
    let g = c.group("g").unwrap();
    assert!(g.members.is_empty());
    assert_eq!(g.state, GroupState::PreparingRebalance);
    // A consumer-protocol member takes the empty group over meanwhile.
    c.consumer_heartbeat(5_200, consumer_join("m"), &img(), "x".into())
        .unwrap();
    c.take_effects();
    // The old rebalance's deadline passes: nothing classic is written or changed.
    c.tick(60_000);
    let written = records(&c.take_effects());
    assert!(
        !written
            .iter()
            .any(|r| matches!(r, GroupRecord::Metadata { .. })),
        "{written:?}"
    );
    assert!(c.group("g").unwrap().is_consumer_protocol());
}

#[test]
fn a_classic_member_loaded_mid_revocation_is_timed_by_its_rejoin_not_a_revocation() {
    let mut c = coordinator(GroupLimits::default());
    let (generation, mut log) = classic_group(&mut c);
    c.consumer_heartbeat(5_000, consumer_join("m"), &img(), "x".into())
        .unwrap();
    // a rejoins still holding 0 and 1: it is to give one up (UNREVOKED_PARTITIONS).
    c.join(5_100, 1, join_req("a", &[0, 1]), "x".into(), &img());
    let effects = c.take_effects();
    joined(&effects).unwrap();
    log.extend(records(&effects));
    let cg = c.group("g").unwrap().consumer.as_ref().unwrap();
    assert_eq!(cg.members["a"].state, MemberState::UnrevokedPartitions);
    let a_epoch = cg.members["a"].epoch;
    assert_eq!(a_epoch, generation);
    // A coordinator loads the group and a heartbeats on, told to rejoin each time:
    // only its rejoin deadline (30 s from the first) fences it, no revocation timer.
    let mut loaded = replay(&log);
    for t in (5_000..=30_000).step_by(5_000) {
        assert_eq!(
            loaded.heartbeat(t, "g", a_epoch, "a", None),
            Err(GroupError::RebalanceInProgress)
        );
    }
    let fenced = |c: &GroupCoordinator, t| -> Vec<String> {
        c.expired_consumers(t).into_iter().map(|(_, m)| m).collect()
    };
    assert!(!fenced(&loaded, 30_001).contains(&"a".to_string()));
    assert!(fenced(&loaded, 35_000).contains(&"a".to_string()));
}
