//! KIP-848's consumer group protocol, rule by rule.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::group::{GroupLimits, JoinRequest, OffsetCommit, OffsetValue};

const T: TopicId = [1; 16];
const U: TopicId = [2; 16];

fn image(topics: &[(&str, TopicId, i32)]) -> TopicImage {
    topics
        .iter()
        .map(|(n, id, p)| (n.to_string(), (*id, *p)))
        .collect()
}

fn coordinator() -> GroupCoordinator {
    GroupCoordinator::new(GroupLimits::default())
}

fn join(member: &str, topics: &[&str]) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 60_000,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        owned: Some(Assignment::new()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..HeartbeatRequest::default()
    }
}

fn beat(member: &str, epoch: i32, owned: &Assignment) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..HeartbeatRequest::default()
    }
}

/// Fences the members whose time ran out, as the broker's timer does.
fn expire(c: &mut GroupCoordinator, now: i64) {
    for (g, m) in c.expired_consumers(now) {
        c.fence_consumer(now, &g, &m, &TopicImage::new());
    }
}

fn parts(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

fn ok(c: &mut GroupCoordinator, now: i64, req: HeartbeatRequest, img: &TopicImage) -> Heartbeat {
    c.consumer_heartbeat(now, req, img, "fresh".into())
        .expect("heartbeat accepted")
}

fn err(c: &mut GroupCoordinator, now: i64, req: HeartbeatRequest, img: &TopicImage) -> GroupError {
    c.consumer_heartbeat(now, req, img, "fresh".into())
        .expect_err("heartbeat refused")
        .0
}

/// Heartbeats each member with what it owns until nothing changes; returns each
/// member's (epoch, assignment).
fn settle(
    c: &mut GroupCoordinator,
    now: i64,
    img: &TopicImage,
    members: &mut BTreeMap<String, (i32, Assignment)>,
) {
    for _ in 0..10 {
        let mut changed = false;
        for (id, (epoch, owned)) in members.iter_mut() {
            let hb = ok(c, now, beat(id, *epoch, owned), img);
            if hb.member_epoch != *epoch {
                changed = true;
                *epoch = hb.member_epoch;
            }
            if let Some(a) = hb.assignment {
                if a != *owned {
                    changed = true;
                    *owned = a;
                }
            }
        }
        if !changed {
            return;
        }
    }
    panic!("the group did not settle");
}

#[test]
fn a_first_member_gets_every_partition_at_epoch_one() {
    let img = image(&[("t", T, 3)]);
    let mut c = coordinator();
    let hb = ok(&mut c, 0, join("a", &["t"]), &img);
    assert_eq!(hb.member_epoch, 1);
    assert_eq!(hb.assignment.unwrap()[&T], BTreeSet::from([0, 1, 2]));
    assert_eq!(hb.heartbeat_interval_ms, 5_000);
    let g = c.group("g").unwrap().consumer.as_ref().unwrap();
    assert_eq!(g.state_name(), "Stable");
}

#[test]
fn a_partition_moves_only_after_its_owner_revokes_it() {
    // KIP-848 reconciliation: the new member waits (UNRELEASED_PARTITIONS) until the
    // old owner's heartbeat no longer lists the partitions it must give up.
    let img = image(&[("t", T, 4)]);
    let mut c = coordinator();
    let a = ok(&mut c, 0, join("a", &["t"]), &img);
    let a_owned = a.assignment.unwrap();
    let b = ok(&mut c, 0, join("b", &["t"]), &img);
    assert_eq!(b.member_epoch, 2);
    assert_eq!(
        parts(b.assignment.as_ref().unwrap()),
        0,
        "a still owns them"
    );
    let g = c.group("g").unwrap().consumer.as_ref().unwrap();
    assert_eq!(g.state_name(), "Reconciling");
    // a is told to give two up, at its old epoch.
    let a2 = ok(&mut c, 1, beat("a", 1, &a_owned), &img);
    assert_eq!(a2.member_epoch, 1);
    let a_kept = a2.assignment.unwrap();
    assert_eq!(parts(&a_kept), 2);
    // Until a heartbeats without them, b gets nothing.
    let b2 = ok(&mut c, 2, beat("b", 2, &Assignment::new()), &img);
    assert!(b2.assignment.is_none());
    let a3 = ok(&mut c, 3, beat("a", 1, &a_kept), &img);
    assert_eq!(a3.member_epoch, 2);
    let b3 = ok(&mut c, 4, beat("b", 2, &Assignment::new()), &img);
    let b_owned = b3.assignment.unwrap();
    assert_eq!(parts(&b_owned), 2);
    assert!(b_owned[&T].is_disjoint(&a_kept[&T]));
    let g = c.group("g").unwrap().consumer.as_ref().unwrap();
    assert_eq!(g.state_name(), "Stable");
}

#[test]
fn epochs_ahead_or_behind_fence_but_the_previous_epoch_with_a_subset_is_forgiven() {
    let img = image(&[("t", T, 2)]);
    let mut c = coordinator();
    let a = ok(&mut c, 0, join("a", &["t"]), &img);
    let owned = a.assignment.unwrap();
    assert_eq!(
        err(&mut c, 1, beat("a", 7, &owned), &img),
        GroupError::FencedMemberEpoch
    );
    // b joins: a moves to epoch 2 after revoking one partition.
    ok(&mut c, 1, join("b", &["t"]), &img);
    let a2 = ok(&mut c, 2, beat("a", 1, &owned), &img);
    let kept = a2.assignment.unwrap();
    let a3 = ok(&mut c, 3, beat("a", 1, &kept), &img);
    assert_eq!(a3.member_epoch, 2);
    // The answer with epoch 2 was lost: a retries at epoch 1 owning a subset.
    assert_eq!(ok(&mut c, 4, beat("a", 1, &kept), &img).member_epoch, 2);
    // But epoch 1 owning more than its assignment is a zombie.
    assert_eq!(
        err(&mut c, 5, beat("a", 1, &owned), &img),
        GroupError::FencedMemberEpoch
    );
    assert_eq!(
        err(&mut c, 5, beat("a", 0, &Assignment::new()), &img),
        GroupError::InvalidRequest,
        "epoch 0 needs a full join request"
    );
}

#[test]
fn an_expired_session_fences_the_member_and_frees_its_partitions() {
    let img = image(&[("t", T, 2)]);
    let mut c = coordinator();
    let mut members = BTreeMap::from([
        ("a".to_string(), (0, Assignment::new())),
        ("b".to_string(), (0, Assignment::new())),
    ]);
    for id in ["a", "b"] {
        let hb = ok(&mut c, 0, join(id, &["t"]), &img);
        members.insert(id.into(), (hb.member_epoch, hb.assignment.unwrap()));
    }
    settle(&mut c, 0, &img, &mut members);
    // b goes silent; a keeps heartbeating.
    let session = i64::from(GroupLimits::default().consumer.session_timeout_ms);
    let (e, owned) = members["a"].clone();
    ok(&mut c, session - 1, beat("a", e, &owned), &img);
    expire(&mut c, session);
    assert_eq!(
        err(
            &mut c,
            session + 1,
            beat("b", members["b"].0, &members["b"].1),
            &img
        ),
        GroupError::UnknownMemberId
    );
    members.remove("b");
    settle(&mut c, session + 2, &img, &mut members);
    assert_eq!(parts(&members["a"].1), 2);
}

#[test]
fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_fenced() {
    let img = image(&[("t", T, 2)]);
    let mut c = coordinator();
    let a = ok(&mut c, 0, join("a", &["t"]), &img);
    let owned = a.assignment.unwrap();
    ok(&mut c, 0, join("b", &["t"]), &img);
    // a is asked to revoke, and keeps heartbeating with the partition it must give up.
    ok(&mut c, 1, beat("a", 1, &owned), &img);
    for now in [30_000, 59_000] {
        ok(&mut c, now, beat("a", 1, &owned), &img);
        ok(&mut c, now, beat("b", 2, &Assignment::new()), &img);
    }
    expire(&mut c, 60_001);
    assert_eq!(
        err(&mut c, 60_002, beat("a", 1, &owned), &img),
        GroupError::UnknownMemberId
    );
    let b = ok(&mut c, 60_003, beat("b", 2, &Assignment::new()), &img);
    assert_eq!(parts(&b.assignment.unwrap()), 2);
}

#[test]
fn a_static_member_leaving_for_now_is_replaced_by_its_next_incarnation() {
    // KIP-848 static membership: epoch -2 keeps the place; the new member id takes
    // over the target assignment; a second live instance is refused.
    let img = image(&[("t", T, 2)]);
    let mut c = coordinator();
    let mut req = join("a1", &["t"]);
    req.instance_id = Some("i".into());
    let a = ok(&mut c, 0, req.clone(), &img);
    assert_eq!(parts(a.assignment.as_ref().unwrap()), 2);
    let mut dup = req.clone();
    dup.member_id = "a2".into();
    assert_eq!(
        err(&mut c, 1, dup.clone(), &img),
        GroupError::UnreleasedInstanceId
    );
    let mut leave = beat("a1", STATIC_LEAVE_EPOCH, &Assignment::new());
    leave.instance_id = Some("i".into());
    assert_eq!(ok(&mut c, 2, leave, &img).member_epoch, STATIC_LEAVE_EPOCH);
    let a2 = ok(&mut c, 3, dup, &img);
    assert_eq!(a2.member_id, "a2");
    assert_eq!(parts(&a2.assignment.unwrap()), 2);
    let mut old = beat("a1", 1, &Assignment::new());
    old.instance_id = Some("i".into());
    assert_eq!(err(&mut c, 4, old, &img), GroupError::FencedInstanceId);
    let g = c.group("g").unwrap().consumer.as_ref().unwrap();
    assert_eq!(g.members.len(), 1);
    assert_eq!(
        g.epoch, 1,
        "the replacement did not change the subscription"
    );
}

#[test]
fn a_regex_subscription_follows_topics_as_they_appear() {
    let mut img = image(&[("orders-eu", T, 1), ("payments", U, 1)]);
    let mut c = coordinator();
    let mut req = join("a", &[]);
    req.subscribed_topic_names = None;
    req.subscribed_topic_regex = Some("orders-.*".into());
    let a = ok(&mut c, 0, req, &img);
    assert_eq!(
        a.assignment.clone().unwrap().keys().collect::<Vec<_>>(),
        vec![&T]
    );
    img.insert("orders-us".into(), ([3; 16], 2));
    let a2 = ok(&mut c, 1, beat("a", 1, &a.assignment.unwrap()), &img);
    assert_eq!(
        a2.member_epoch, 2,
        "a new matching topic bumps the group epoch"
    );
    assert_eq!(parts(&a2.assignment.unwrap()), 3);
}

#[test]
fn bad_regexes_and_unknown_assignors_are_refused_by_name() {
    let img = image(&[("t", T, 1)]);
    let mut c = coordinator();
    let mut req = join("a", &[]);
    req.subscribed_topic_regex = Some("(".into());
    assert_eq!(
        err(&mut c, 0, req, &img),
        GroupError::InvalidRegularExpression
    );
    let mut req = join("a", &["t"]);
    req.server_assignor = Some("sticky".into());
    let (e, why) = c.consumer_heartbeat(0, req, &img, "x".into()).unwrap_err();
    assert_eq!(e, GroupError::UnsupportedAssignor);
    assert!(why.contains("uniform, range"), "{why}");
}

#[test]
fn new_partitions_of_a_subscribed_topic_are_assigned() {
    let mut img = image(&[("t", T, 1)]);
    let mut c = coordinator();
    let a = ok(&mut c, 0, join("a", &["t"]), &img);
    img.insert("t".into(), (T, 3));
    let a2 = ok(
        &mut c,
        1,
        beat("a", a.member_epoch, &a.assignment.unwrap()),
        &img,
    );
    assert_eq!(a2.member_epoch, 2);
    assert_eq!(a2.assignment.unwrap()[&T], BTreeSet::from([0, 1, 2]));
}

#[test]
fn the_range_assignor_is_used_when_members_ask_for_it() {
    let img = image(&[("t", T, 4)]);
    let mut c = coordinator();
    let mut members = BTreeMap::new();
    for id in ["a", "b"] {
        let mut req = join(id, &["t"]);
        req.server_assignor = Some("range".into());
        let hb = ok(&mut c, 0, req, &img);
        members.insert(id.to_string(), (hb.member_epoch, hb.assignment.unwrap()));
    }
    settle(&mut c, 1, &img, &mut members);
    assert_eq!(members["a"].1[&T], BTreeSet::from([0, 1]));
    assert_eq!(members["b"].1[&T], BTreeSet::from([2, 3]));
    assert_eq!(
        c.group("g").unwrap().consumer.as_ref().unwrap().assignor(),
        "range"
    );
}

#[test]
fn commits_need_the_members_current_epoch() {
    let img = image(&[("t", T, 1)]);
    let mut c = coordinator();
    let a = ok(&mut c, 0, join("a", &["t"]), &img);
    let commit = || {
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
        .commit(0, "g", a.member_epoch, "a", None, commit())
        .is_ok());
    assert_eq!(
        c.commit(0, "g", a.member_epoch - 1, "a", None, commit())
            .unwrap_err(),
        GroupError::StaleMemberEpoch
    );
    assert_eq!(
        c.commit(0, "g", -1, "", None, commit()).unwrap_err(),
        GroupError::UnknownMemberId,
        "outsiders commit only to an empty group"
    );
    let mut leave = beat("a", LEAVE_EPOCH, &Assignment::new());
    leave.owned = None;
    ok(&mut c, 1, leave, &img);
    assert!(c.commit(2, "g", -1, "", None, commit()).is_ok());
}

#[test]
fn an_empty_consumer_group_turns_classic_for_a_classic_member() {
    // (Classic members joining a consumer group with members: migration_tests.rs.)
    let img = image(&[("t", T, 1)]);
    let mut c = coordinator();
    ok(&mut c, 0, join("a", &["t"]), &img);
    let mut leave = beat("a", LEAVE_EPOCH, &Assignment::new());
    leave.owned = None;
    ok(&mut c, 2, leave, &img);
    assert!(c.group("g").unwrap().is_consumer_protocol());
    let classic = JoinRequest {
        group_id: "g".into(),
        member_id: String::new(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), bytes::Bytes::new())],
        require_known_member_id: false,
    };
    c.join(3, 2, classic, "m".into(), &TopicImage::new());
    assert!(!c.group("g").unwrap().is_consumer_protocol());
}

#[test]
fn a_coordinator_that_loads_the_records_carries_on_with_the_same_epochs() {
    let img = image(&[("t", T, 4), ("u", U, 2)]);
    let mut c = coordinator();
    let mut members = BTreeMap::new();
    for (id, topics) in [("a", vec!["t", "u"]), ("b", vec!["t"])] {
        let hb = ok(&mut c, 0, join(id, &topics), &img);
        members.insert(id.to_string(), (hb.member_epoch, hb.assignment.unwrap()));
    }
    settle(&mut c, 1, &img, &mut members);
    // Every record goes through its encoding, as it would through the log.
    let mut loaded = coordinator();
    for e in c.take_effects() {
        if let Effect::Persist(r) = e {
            let (k, v) = r.encode();
            match GroupRecord::decode(&k, v.as_deref()).unwrap() {
                GroupRecord::Consumer { group, record } => loaded.load_consumer(9, &group, record),
                other => panic!("unexpected record {other:?}"),
            }
        }
    }
    let before = c.group("g").unwrap().consumer.as_ref().unwrap();
    let after = loaded.group("g").unwrap().consumer.as_ref().unwrap();
    assert_eq!(after.epoch, before.epoch);
    assert_eq!(after.assignment_epoch, before.assignment_epoch);
    assert_eq!(after.target, before.target);
    for (id, m) in &before.members {
        assert_eq!(after.members[id].epoch, m.epoch);
        assert_eq!(after.members[id].assigned, m.assigned);
        assert_eq!(after.members[id].subscription, m.subscription);
    }
    // The members heartbeat on at their epochs; the one recomputation of the topics
    // after a load bumps the epoch once and keeps every partition where it was.
    let mut again = members.clone();
    settle(&mut loaded, 10, &img, &mut again);
    for (id, (_, owned)) in &members {
        assert_eq!(&again[id].1, owned);
    }
}

#[test]
#[should_panic(expected = "KIP-848")]
fn giving_a_partition_to_a_second_owner_trips_the_invariant() {
    let mut g = ConsumerGroup::default();
    let mut a = ConsumerMember::new("a".into(), 0);
    a.assigned = Assignment::from([(T, BTreeSet::from([0]))]);
    g.set_current(a);
    let mut b = ConsumerMember::new("b".into(), 0);
    b.assigned = Assignment::from([(T, BTreeSet::from([0]))]);
    g.set_current(b);
}

#[test]
fn a_snapshot_puts_back_a_change_whose_records_were_not_written() {
    let img = image(&[("t", T, 2)]);
    let mut c = coordinator();
    let a = ok(&mut c, 0, join("a", &["t"]), &img);
    let before = c.consumer_snapshot("g");
    ok(&mut c, 1, join("b", &["t"]), &img);
    c.restore_consumer("g", before);
    let g = c.group("g").unwrap().consumer.as_ref().unwrap();
    assert_eq!((g.epoch, g.members.len()), (1, 1));
    // a goes on at its epoch as if b had never come.
    let hb = ok(
        &mut c,
        2,
        beat("a", a.member_epoch, &a.assignment.unwrap()),
        &img,
    );
    assert_eq!(hb.member_epoch, 1);
    // A group that did not exist before is gone again.
    let none = c.consumer_snapshot("h");
    let mut req = join("x", &["t"]);
    req.group_id = "h".into();
    ok(&mut c, 3, req, &img);
    c.restore_consumer("h", none);
    assert!(c.group("h").is_none());
}

#[test]
fn a_groups_own_session_timeout_and_heartbeat_interval_apply() {
    // KIP-848 group configs override the broker's group.consumer.* settings.
    let img = image(&[("t", T, 1)]);
    let mut c = coordinator();
    let configs = BTreeMap::from([
        (
            "consumer.session.timeout.ms".to_string(),
            "10000".to_string(),
        ),
        (
            "consumer.heartbeat.interval.ms".to_string(),
            "2000".to_string(),
        ),
    ]);
    assert!(check_group_configs(&configs, &GroupLimits::default()).is_ok());
    c.set_group_configs(BTreeMap::from([("g".to_string(), configs)]));
    let hb = ok(&mut c, 0, join("a", &["t"]), &img);
    assert_eq!(hb.heartbeat_interval_ms, 2_000);
    assert!(c.expired_consumers(9_999).is_empty());
    assert_eq!(
        c.expired_consumers(10_000),
        vec![("g".to_string(), "a".to_string())]
    );
}

#[test]
fn group_configs_are_checked_by_name_and_range() {
    let limits = GroupLimits::default();
    let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    for (k, v, why) in [
        ("share.record.lock.duration.ms", "999", "[1000, 3600000]"),
        ("share.auto.offset.reset", "by_duration:PT1H", "by_duration"),
        ("share.isolation.level", "read_committed", "not served"),
        ("share.heartbeat.interval.ms", "50000", "below"),
        ("consumer.nope", "1", "unknown group config"),
        ("consumer.session.timeout.ms", "-5", "positive"),
        ("consumer.session.timeout.ms", "5000", "outside"),
        ("consumer.heartbeat.interval.ms", "45000", "below"),
    ] {
        let e = check_group_configs(&one(k, v), &limits).unwrap_err();
        assert!(e.contains(why), "{k}={v}: {e}");
    }
}
