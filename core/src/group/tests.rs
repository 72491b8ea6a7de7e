use super::*;

const DELAY: i32 = 3_000;

fn coordinator() -> GroupCoordinator {
    GroupCoordinator::new(GroupLimits {
        initial_rebalance_delay_ms: DELAY,
        ..GroupLimits::default()
    })
}

fn join_req(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{member_id}-{p}"))))
            .collect(),
        require_known_member_id: false,
    }
}

fn sync_req(
    generation: i32,
    member: &str,
    instance: Option<&str>,
    assignments: Vec<(String, Bytes)>,
) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        generation,
        member_id: member.into(),
        instance_id: instance.map(str::to_string),
        protocol: None,
        assignments,
    }
}

fn joins(effects: &[Effect]) -> BTreeMap<Ticket, Result<Joined, (GroupError, String)>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Join { ticket, result } => Some((*ticket, result.clone())),
            _ => None,
        })
        .collect()
}

fn syncs(effects: &[Effect]) -> BTreeMap<Ticket, Result<Synced, GroupError>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Sync { ticket, result } => Some((*ticket, result.clone())),
            _ => None,
        })
        .collect()
}

/// Joins `ids` (tickets 1..) at t=0 and completes the join after the initial delay.
fn stable_group(c: &mut GroupCoordinator, ids: &[&str]) -> i32 {
    for (i, id) in ids.iter().enumerate() {
        c.join(
            0,
            i as u64 + 1,
            join_req("", None, &["range"]),
            id.to_string(),
            &TopicImage::new(),
        );
    }
    assert!(
        joins(&c.take_effects()).is_empty(),
        "the initial delay holds answers"
    );
    c.tick(i64::from(DELAY));
    let answers = joins(&c.take_effects());
    assert_eq!(answers.len(), ids.len());
    let gen = answers[&1].as_ref().unwrap().generation;
    let leader = answers[&1].as_ref().unwrap().leader.clone();
    let assignments = ids
        .iter()
        .map(|id| (id.to_string(), Bytes::from(format!("asg-{id}"))))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        if **id != leader {
            c.sync(
                DELAY.into(),
                100 + i as u64,
                sync_req(gen, id, None, Vec::new()),
                &TopicImage::new(),
            );
        }
    }
    c.sync(
        DELAY.into(),
        99,
        sync_req(gen, &leader, None, assignments),
        &TopicImage::new(),
    );
    let effects = c.take_effects();
    assert!(matches!(
        effects[0],
        Effect::Persist(GroupRecord::Metadata { .. })
    ));
    let answers = syncs(&effects);
    assert_eq!(answers.len(), ids.len());
    for r in answers.values() {
        assert!(r.is_ok());
    }
    assert_eq!(c.group("g").unwrap().state, GroupState::Stable);
    gen
}

#[test]
fn members_join_one_generation_and_the_leader_assigns() {
    let mut c = coordinator();
    let gen = stable_group(&mut c, &["a", "b", "c"]);
    assert_eq!(gen, 1);
    let g = c.group("g").unwrap();
    assert_eq!(g.leader.as_deref(), Some("a"));
    assert_eq!(g.protocol.as_deref(), Some("range"));
    assert_eq!(g.members["b"].assignment, Bytes::from("asg-b"));
}

#[test]
fn only_the_leader_sees_the_members() {
    let mut c = coordinator();
    c.join(
        0,
        1,
        join_req("", None, &["range"]),
        "a".into(),
        &TopicImage::new(),
    );
    c.join(
        0,
        2,
        join_req("", None, &["range"]),
        "b".into(),
        &TopicImage::new(),
    );
    c.tick(DELAY.into());
    let answers = joins(&c.take_effects());
    let a = answers[&1].as_ref().unwrap();
    let b = answers[&2].as_ref().unwrap();
    assert_eq!(a.leader, "a");
    assert_eq!(a.members.len(), 2);
    assert_eq!(a.members[1].2, Bytes::from("meta--range"));
    assert!(b.members.is_empty());
}

#[test]
fn member_id_required_then_join_with_it() {
    let mut c = coordinator();
    let mut req = join_req("", None, &["range"]);
    req.require_known_member_id = true;
    c.join(0, 1, req.clone(), "m-1".into(), &TopicImage::new());
    assert_eq!(
        joins(&c.take_effects())[&1],
        Err((GroupError::MemberIdRequired, "m-1".into()))
    );
    req.member_id = "m-1".into();
    c.join(10, 2, req, "unused".into(), &TopicImage::new());
    c.tick(10 + i64::from(DELAY));
    let answers = joins(&c.take_effects());
    assert_eq!(answers[&2].as_ref().unwrap().member_id, "m-1");
}

#[test]
fn the_initial_delay_waits_for_more_members_and_is_bounded() {
    let mut c = coordinator();
    c.join(
        0,
        1,
        join_req("", None, &["range"]),
        "a".into(),
        &TopicImage::new(),
    );
    c.tick(2_000);
    c.join(
        2_000,
        2,
        join_req("", None, &["range"]),
        "b".into(),
        &TopicImage::new(),
    );
    c.tick(3_500);
    assert!(joins(&c.take_effects()).is_empty(), "b extended the delay");
    c.tick(5_000);
    assert_eq!(joins(&c.take_effects()).len(), 2);
}

#[test]
fn a_dead_member_is_expired_and_the_rest_rebalance() {
    let mut c = coordinator();
    let gen = stable_group(&mut c, &["a", "b", "c"]);
    // a and b heartbeat; c went silent.
    for t in (4_000..14_000).step_by(3_000) {
        assert_eq!(c.heartbeat(t, "g", gen, "a", None), Ok(()));
        assert_eq!(c.heartbeat(t, "g", gen, "b", None), Ok(()));
        c.tick(t);
    }
    c.tick(13_000);
    assert!(!c.group("g").unwrap().members.contains_key("c"));
    assert_eq!(c.group("g").unwrap().state, GroupState::PreparingRebalance);
    assert_eq!(
        c.heartbeat(13_100, "g", gen, "a", None),
        Err(GroupError::RebalanceInProgress)
    );
    c.join(
        13_200,
        7,
        join_req("a", None, &["range"]),
        "x".into(),
        &TopicImage::new(),
    );
    assert!(
        joins(&c.take_effects()).is_empty(),
        "b has not rejoined yet"
    );
    c.join(
        13_300,
        8,
        join_req("b", None, &["range"]),
        "x".into(),
        &TopicImage::new(),
    );
    let answers = joins(&c.take_effects());
    assert_eq!(answers[&7].as_ref().unwrap().generation, gen + 1);
    assert_eq!(answers[&8].as_ref().unwrap().generation, gen + 1);
    assert_eq!(
        c.heartbeat(13_400, "g", gen, "a", None),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        c.heartbeat(13_400, "g", gen + 1, "c", None),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let mut c = coordinator();
    let gen = stable_group(&mut c, &["a", "b"]);
    c.join(
        4_000,
        7,
        join_req("a", None, &["range", "roundrobin"]),
        "x".into(),
        &TopicImage::new(),
    );
    assert_eq!(c.group("g").unwrap().state, GroupState::PreparingRebalance);
    // b keeps heartbeating but never rejoins.
    for t in (5_000..34_000).step_by(1_000) {
        let _ = c.heartbeat(t, "g", gen, "b", None);
        c.tick(t);
    }
    c.tick(34_000);
    let answers = joins(&c.take_effects());
    let a = answers[&7].as_ref().unwrap();
    assert_eq!(a.generation, gen + 1);
    assert_eq!(a.members.len(), 1);
    assert!(!c.group("g").unwrap().members.contains_key("b"));
}

#[test]
fn leaving_last_member_empties_the_group_with_a_new_generation() {
    let mut c = coordinator();
    let gen = stable_group(&mut c, &["a"]);
    assert_eq!(c.leave(5_000, "g", &[("a".into(), None)]), vec![Ok(())]);
    let g = c.group("g").unwrap();
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.generation, gen + 1);
    let effects = c.take_effects();
    assert!(
        matches!(&effects[..], [Effect::Persist(GroupRecord::Metadata { value: Some(m), .. })] if m.members.is_empty())
    );
    assert_eq!(
        c.leave(5_000, "g", &[("a".into(), None)]),
        vec![Err(GroupError::UnknownMemberId)]
    );
}

#[test]
fn stale_generation_cannot_sync_or_commit() {
    let mut c = coordinator();
    let gen = stable_group(&mut c, &["a", "b"]);
    c.sync(
        5_000,
        50,
        sync_req(gen - 1, "b", None, Vec::new()),
        &TopicImage::new(),
    );
    assert_eq!(
        syncs(&c.take_effects())[&50],
        Err(GroupError::IllegalGeneration)
    );
    let commit = |topic: &str| OffsetCommit {
        topic: topic.into(),
        partition: 0,
        value: OffsetValue {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        },
    };
    assert_eq!(
        c.commit(5_000, "g", gen - 1, "b", None, vec![commit("t")])
            .unwrap_err(),
        GroupError::IllegalGeneration
    );
    assert_eq!(
        c.commit(5_000, "g", gen, "zz", None, vec![commit("t")])
            .unwrap_err(),
        GroupError::UnknownMemberId
    );
    // A simple commit is refused while the group has members.
    assert!(c
        .commit(5_000, "g", -1, "", None, vec![commit("t")])
        .is_err());
    let ok = c
        .commit(5_000, "g", gen, "b", None, vec![commit("t")])
        .unwrap();
    assert_eq!(ok[0].1, Ok(()));
}

#[test]
fn commits_are_served_once_applied_and_in_log_order() {
    let mut c = coordinator();
    let value = |offset| OffsetValue {
        offset,
        leader_epoch: -1,
        metadata: "m".into(),
        commit_timestamp_ms: 0,
    };
    let accepted = c
        .commit(
            0,
            "solo",
            -1,
            "",
            None,
            vec![OffsetCommit {
                topic: "t".into(),
                partition: 1,
                value: value(10),
            }],
        )
        .unwrap();
    assert_eq!(accepted.len(), 1);
    assert!(
        c.group("solo").unwrap().offsets.is_empty(),
        "not durable yet"
    );
    c.apply_offset("solo", "t", 1, Some(value(20)), 8);
    c.apply_offset("solo", "t", 1, Some(value(10)), 7);
    assert_eq!(
        c.group("solo").unwrap().offsets[&("t".into(), 1)]
            .value
            .offset,
        20
    );
    let mut big = value(1);
    big.metadata = "x".repeat(5000);
    let r = c
        .commit(
            0,
            "solo",
            -1,
            "",
            None,
            vec![OffsetCommit {
                topic: "t".into(),
                partition: 1,
                value: big,
            }],
        )
        .unwrap();
    assert_eq!(r[0].1, Err(GroupError::OffsetMetadataTooLarge));
}

#[test]
fn a_static_member_rejoining_fences_its_old_id_without_a_rebalance() {
    let mut c = coordinator();
    c.join(
        0,
        1,
        join_req("", Some("i-1"), &["range"]),
        "old-1".into(),
        &TopicImage::new(),
    );
    c.join(
        0,
        2,
        join_req("", Some("i-2"), &["range"]),
        "old-2".into(),
        &TopicImage::new(),
    );
    c.tick(DELAY.into());
    let gen = joins(&c.take_effects())[&1].as_ref().unwrap().generation;
    c.sync(
        DELAY.into(),
        3,
        sync_req(gen, "old-2", Some("i-2"), Vec::new()),
        &TopicImage::new(),
    );
    c.sync(
        DELAY.into(),
        4,
        sync_req(
            gen,
            "old-1",
            Some("i-1"),
            vec![
                ("old-1".into(), Bytes::from("A")),
                ("old-2".into(), Bytes::from("B")),
            ],
        ),
        &TopicImage::new(),
    );
    c.take_effects();
    // i-2 restarts and comes back without its member id.
    c.join(
        5_000,
        5,
        join_req("", Some("i-2"), &["range"]),
        "new-2".into(),
        &TopicImage::new(),
    );
    let effects = c.take_effects();
    let joined = joins(&effects)[&5].clone().unwrap();
    assert_eq!(joined.generation, gen, "no rebalance");
    assert_eq!(joined.member_id, "new-2");
    assert_eq!(c.group("g").unwrap().state, GroupState::Stable);
    c.sync(
        5_000,
        6,
        sync_req(gen, "new-2", Some("i-2"), Vec::new()),
        &TopicImage::new(),
    );
    assert_eq!(
        syncs(&c.take_effects())[&6].as_ref().unwrap().assignment,
        Bytes::from("B")
    );
    assert_eq!(
        c.heartbeat(5_100, "g", gen, "old-2", Some("i-2")),
        Err(GroupError::FencedInstanceId)
    );
}

#[test]
fn inconsistent_protocols_are_refused() {
    let mut c = coordinator();
    stable_group(&mut c, &["a"]);
    c.join(
        5_000,
        9,
        join_req("", None, &["roundrobin"]),
        "z".into(),
        &TopicImage::new(),
    );
    assert_eq!(
        joins(&c.take_effects())[&9],
        Err((GroupError::InconsistentGroupProtocol, String::new()))
    );
    let mut bad = join_req("", None, &["range"]);
    bad.session_timeout_ms = 10;
    c.join(5_000, 10, bad, "z".into(), &TopicImage::new());
    assert_eq!(
        joins(&c.take_effects())[&10],
        Err((GroupError::InvalidSessionTimeout, String::new()))
    );
}

#[test]
fn the_protocol_most_members_prefer_wins() {
    let mut c = coordinator();
    c.join(
        0,
        1,
        join_req("", None, &["range", "roundrobin"]),
        "a".into(),
        &TopicImage::new(),
    );
    c.join(
        0,
        2,
        join_req("", None, &["roundrobin", "range"]),
        "b".into(),
        &TopicImage::new(),
    );
    c.join(
        0,
        3,
        join_req("", None, &["roundrobin", "range"]),
        "c".into(),
        &TopicImage::new(),
    );
    c.tick(DELAY.into());
    let answers = joins(&c.take_effects());
    assert_eq!(
        answers[&1].as_ref().unwrap().protocol.as_deref(),
        Some("roundrobin")
    );
}

#[test]
fn a_leader_that_never_syncs_sends_everyone_back_to_rebalance() {
    let mut c = coordinator();
    c.join(
        0,
        1,
        join_req("", None, &["range"]),
        "a".into(),
        &TopicImage::new(),
    );
    c.join(
        0,
        2,
        join_req("", None, &["range"]),
        "b".into(),
        &TopicImage::new(),
    );
    c.tick(DELAY.into());
    let gen = joins(&c.take_effects())[&1].as_ref().unwrap().generation;
    c.sync(
        3_100,
        5,
        sync_req(gen, "b", None, Vec::new()),
        &TopicImage::new(),
    );
    c.tick(3_000 + 30_000);
    let effects = c.take_effects();
    assert_eq!(syncs(&effects)[&5], Err(GroupError::RebalanceInProgress));
    let g = c.group("g").unwrap();
    assert!(!g.members.contains_key("a"));
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn delete_needs_an_empty_group_and_tombstones_its_offsets() {
    let mut c = coordinator();
    stable_group(&mut c, &["a"]);
    assert_eq!(c.delete_group("g"), Err(GroupError::NonEmptyGroup));
    assert_eq!(c.delete_group("nope"), Err(GroupError::GroupIdNotFound));
    c.leave(5_000, "g", &[("a".into(), None)]);
    c.apply_offset(
        "g",
        "t",
        0,
        Some(OffsetValue {
            offset: 3,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        }),
        1,
    );
    c.take_effects();
    assert_eq!(c.delete_group("g"), Ok(()));
    let effects = c.take_effects();
    assert_eq!(effects.len(), 2);
    assert!(matches!(
        &effects[0],
        Effect::Persist(GroupRecord::Offset { value: None, .. })
    ));
    assert!(c.group("g").is_none());
}

#[test]
fn a_loaded_group_keeps_its_generation_and_members_must_heartbeat() {
    let mut c = coordinator();
    let gen = stable_group(&mut c, &["a", "b"]);
    let meta = c.group("g").unwrap().metadata();
    let mut restarted = coordinator();
    restarted.load_metadata(100, "g", Some(meta));
    let g = restarted.group("g").unwrap();
    assert_eq!((g.state, g.generation), (GroupState::Stable, gen));
    assert_eq!(restarted.heartbeat(200, "g", gen, "a", None), Ok(()));
    restarted.tick(10_100);
    assert!(!restarted.group("g").unwrap().members.contains_key("b"));
    assert_eq!(
        restarted.group("g").unwrap().state,
        GroupState::PreparingRebalance
    );
}

fn committed(ts: i64) -> Option<OffsetValue> {
    Some(OffsetValue {
        offset: 7,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: ts,
    })
}

fn tombstones(effects: &[Effect]) -> Vec<(String, Option<(String, i32)>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(GroupRecord::Offset {
                group,
                topic,
                partition,
                value: None,
            }) => Some((group.clone(), Some((topic.clone(), *partition)))),
            Effect::Persist(GroupRecord::Metadata { group, value: None }) => {
                Some((group.clone(), None))
            }
            _ => None,
        })
        .collect()
}

/// KIP-211: a consumer group's offsets expire offsets.retention.minutes after it
/// became Empty (not while it has members); standalone offsets, that long after
/// their commit; a group left with nothing goes.
#[test]
fn offsets_expire_after_the_retention_once_nobody_uses_them() {
    const DAY: i64 = 86_400_000;
    let mut c = coordinator();
    stable_group(&mut c, &["a"]);
    c.apply_offset("g", "t", 0, committed(0), 1);
    c.apply_offset("solo", "t", 0, committed(0), 2);
    c.apply_offset("solo", "t", 1, committed(11 * DAY), 3);
    c.take_effects();
    // Members: nothing of g expires, however old its commits.
    c.expire_offsets(10 * DAY);
    assert_eq!(
        tombstones(&c.take_effects()),
        [("solo".to_string(), Some(("t".to_string(), 0)))],
        "only the standalone offset committed more than 7 days ago"
    );
    c.leave(5_000, "g", &[("a".into(), None)]);
    c.take_effects();
    c.expire_offsets(11 * DAY);
    let t = tombstones(&c.take_effects());
    assert!(t.is_empty(), "Empty for 0 days: {t:?}");
    c.expire_offsets(18 * DAY - 1);
    assert!(tombstones(&c.take_effects()).is_empty());
    c.expire_offsets(18 * DAY);
    let gone = tombstones(&c.take_effects());
    assert_eq!(
        gone,
        [
            ("g".to_string(), Some(("t".to_string(), 0))),
            ("g".to_string(), None),
            ("solo".to_string(), Some(("t".to_string(), 1))),
            ("solo".to_string(), None),
        ]
    );
    assert!(c.group("g").is_none() && c.group("solo").is_none());
}
