use super::*;

fn register(image: &mut MetadataImage, node: i32, rack: Option<&str>) {
    let reg = BrokerRegistration {
        node_id: node,
        host: "localhost".into(),
        port: 9000 + node as u16,
        rack: rack.map(str::to_owned),
        endpoints: Default::default(),
    };
    image.apply(&Command::RegisterBroker(reg)).unwrap();
}

fn three_brokers_with_topic() -> MetadataImage {
    let mut image = MetadataImage::default();
    for n in 1..=3 {
        register(&mut image, n, None);
    }
    let replicas = place_replicas(&image.live_brokers(), 0, 3, 3, 0).unwrap();
    image
        .apply(&Command::CreateTopic {
            name: "t".into(),
            id: [1; 16],
            configs: BTreeMap::new(),
            replicas,
        })
        .unwrap();
    image
}

#[test]
fn placement_spreads_leaders_and_never_repeats_a_broker() {
    let brokers: Vec<_> = (1..=5).map(|n| (n, None)).collect();
    let placed = place_replicas(&brokers, 0, 10, 3, 2).unwrap();
    let mut leaders = BTreeMap::new();
    for replicas in &placed {
        assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
        *leaders.entry(replicas[0]).or_insert(0) += 1;
    }
    assert!(leaders.values().all(|&n| n == 2), "{leaders:?}");
    assert!(place_replicas(&brokers, 0, 1, 6, 0).is_err());
    assert_eq!(place_replicas(&brokers, 0, 1, -1, 0).unwrap()[0].len(), 3);
}

#[test]
fn placement_puts_replicas_on_different_racks() {
    let brokers = vec![
        (1, Some("a".into())),
        (2, Some("a".into())),
        (3, Some("b".into())),
        (4, Some("b".into())),
    ];
    let racks = |id: i32| if id <= 2 { "a" } else { "b" };
    for replicas in place_replicas(&brokers, 0, 8, 2, 1).unwrap() {
        assert_ne!(racks(replicas[0]), racks(replicas[1]), "{replicas:?}");
    }
}

#[test]
fn fencing_the_leader_elects_from_the_isr_and_bumps_the_epoch() {
    let mut image = three_brokers_with_topic();
    let before = image.partition("t", 0).unwrap().clone();
    image
        .apply(&Command::FenceBroker {
            node_id: before.leader,
        })
        .unwrap();
    let after = image.partition("t", 0).unwrap();
    assert_ne!(after.leader, before.leader);
    assert!(before.isr.contains(&after.leader));
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(!after.isr.contains(&before.leader));
    assert!(after.partition_epoch > before.partition_epoch);
}

#[test]
fn a_partition_whose_isr_is_all_fenced_goes_offline_and_returns_with_its_last_member() {
    let mut image = three_brokers_with_topic();
    for n in 1..=3 {
        image.apply(&Command::FenceBroker { node_id: n }).unwrap();
    }
    let p = image.partition("t", 0).unwrap().clone();
    assert_eq!(p.leader, NO_LEADER);
    assert_eq!(p.isr.len(), 1, "the last member stays: no unclean election");
    let last = p.isr[0];
    // Another replica coming back does not lead: it may lack acknowledged data.
    let other = (1..=3).find(|n| *n != last).unwrap();
    register(&mut image, other, None);
    assert_eq!(image.partition("t", 0).unwrap().leader, NO_LEADER);
    register(&mut image, last, None);
    let back = image.partition("t", 0).unwrap();
    assert_eq!(back.leader, last);
    assert_eq!(back.leader_epoch, p.leader_epoch + 1);
}

#[test]
fn isr_changes_need_the_current_leader_and_epochs() {
    let mut image = three_brokers_with_topic();
    let p = image.partition("t", 1).unwrap().clone();
    let follower = p.replicas[1];
    let shrink = |leader, leader_epoch, partition_epoch, isr: Vec<i32>| Command::AlterIsr {
        topic: "t".into(),
        partition: 1,
        leader,
        leader_epoch,
        partition_epoch,
        isr,
    };
    let smaller: Vec<i32> = p.isr.iter().copied().filter(|r| *r != follower).collect();
    assert!(matches!(
        image.apply(&shrink(follower, 0, 0, smaller.clone())),
        Err(MetadataError::NotLeader(..))
    ));
    let Applied::Partition(now) = image
        .apply(&shrink(p.leader, 0, 0, smaller.clone()))
        .unwrap()
    else {
        panic!("no partition state");
    };
    assert_eq!(now.isr, smaller);
    assert_eq!(now.partition_epoch, 1);
    // The same change again is stale.
    assert!(matches!(
        image.apply(&shrink(p.leader, 0, 0, smaller)),
        Err(MetadataError::StalePartitionEpoch { .. })
    ));
    // A fenced broker may not rejoin the ISR.
    image
        .apply(&Command::FenceBroker { node_id: follower })
        .unwrap();
    let p = image.partition("t", 1).unwrap().clone();
    let grown = p.replicas.clone();
    assert!(image
        .apply(&shrink(p.leader, p.leader_epoch, p.partition_epoch, grown))
        .is_err());
}

#[test]
fn topic_commands_validate_like_kafka() {
    let mut image = three_brokers_with_topic();
    let again = Command::CreateTopic {
        name: "t".into(),
        id: [2; 16],
        configs: BTreeMap::new(),
        replicas: vec![vec![1]],
    };
    assert_eq!(
        image.apply(&again),
        Err(TopicError::Exists("t".into()).into())
    );
    let unknown_broker = Command::CreateTopic {
        name: "u".into(),
        id: [3; 16],
        configs: BTreeMap::new(),
        replicas: vec![vec![1, 9]],
    };
    assert_eq!(
        image.apply(&unknown_broker),
        Err(MetadataError::UnknownBroker(9))
    );
    image
        .apply(&Command::CreatePartitions {
            name: "t".into(),
            replicas: vec![vec![2, 3]],
        })
        .unwrap();
    assert_eq!(image.topic("t").unwrap().partitions, 4);
    image
        .apply(&Command::DeleteTopic { name: "t".into() })
        .unwrap();
    assert!(image.topic("t").is_none());
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut image = MetadataImage::default();
    let a = image
        .apply(&Command::AllocateProducerIds { count: 1000 })
        .unwrap();
    let b = image
        .apply(&Command::AllocateProducerIds { count: 1000 })
        .unwrap();
    assert_eq!(a, Applied::ProducerIds { first: 0 });
    assert_eq!(b, Applied::ProducerIds { first: 1000 });
}

#[test]
fn leadership_returns_to_the_preferred_replica_once_it_is_back_in_sync() {
    let mut image = three_brokers_with_topic();
    let preferred = image.partition("t", 0).unwrap().replicas[0];
    image
        .apply(&Command::FenceBroker { node_id: preferred })
        .unwrap();
    assert!(
        preferred_elections(&image).is_empty(),
        "fenced: not electable"
    );
    register(&mut image, preferred, None);
    assert!(
        preferred_elections(&image).is_empty(),
        "out of the ISR: not electable"
    );
    let p = image.partition("t", 0).unwrap().clone();
    let mut isr = p.isr.clone();
    isr.push(preferred);
    image
        .apply(&Command::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        })
        .unwrap();
    let elections = preferred_elections(&image);
    assert_eq!(elections.len(), 1);
    image.apply(&elections[0]).unwrap();
    let back = image.partition("t", 0).unwrap();
    assert_eq!(back.leader, preferred);
    assert_eq!(back.leader_epoch, p.leader_epoch + 1);
    assert!(preferred_elections(&image).is_empty());
}

/// Brokers 1..=4, topic "r" with one partition on `replicas`.
fn four_brokers_with(replicas: Vec<i32>) -> MetadataImage {
    let mut image = MetadataImage::default();
    for n in 1..=4 {
        register(&mut image, n, None);
    }
    image
        .apply(&Command::CreateTopic {
            name: "r".into(),
            id: [2; 16],
            configs: BTreeMap::new(),
            replicas: vec![replicas],
        })
        .unwrap();
    image
}

fn reassign(image: &mut MetadataImage, target: Option<Vec<i32>>) -> Result<Applied, MetadataError> {
    image.apply(&Command::Reassign {
        topic: "r".into(),
        partition: 0,
        target,
    })
}

/// The partition's leader reports `isr` as its new ISR.
fn alter_isr(image: &mut MetadataImage, isr: Vec<i32>) -> PartitionState {
    let p = image.partition("r", 0).unwrap().clone();
    match image
        .apply(&Command::AlterIsr {
            topic: "r".into(),
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        })
        .unwrap()
    {
        Applied::Partition(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reassignment_adds_replicas_then_drops_the_old_ones_once_the_new_are_in_sync() {
    let mut image = four_brokers_with(vec![1, 2, 3]);
    reassign(&mut image, Some(vec![2, 3, 4])).unwrap();
    let p = image.partition("r", 0).unwrap().clone();
    assert_eq!(
        p.replicas,
        vec![2, 3, 4, 1],
        "old replicas stay until the move ends"
    );
    assert_eq!((p.adding.clone(), p.removing.clone()), (vec![4], vec![1]));
    assert_eq!(
        (p.leader, p.leader_epoch),
        (1, 0),
        "leadership stays while catching up"
    );
    assert_eq!(p.target(), vec![2, 3, 4]);
    assert!(
        preferred_elections(&image).is_empty(),
        "no election mid-move"
    );

    // Broker 4 caught up: the move completes in the same command, leadership leaves
    // the removed broker 1 for an in-sync target replica, under a new epoch.
    let done = alter_isr(&mut image, vec![1, 2, 3, 4]);
    assert_eq!(done.replicas, vec![2, 3, 4]);
    assert_eq!(done.isr, vec![2, 3, 4]);
    assert!(!done.reassigning());
    assert_eq!((done.leader, done.leader_epoch), (2, 1));
    assert!(matches!(
        reassign(&mut image, None),
        Err(MetadataError::NoReassignment(..))
    ));
}

/// Kafka's controller bumps the leader epoch whenever a replica leaves the replica
/// list, even when the leader stays (PartitionChangeBuilder's
/// triggerLeaderEpochBumpForReplicaReassignmentIfNeeded). Without it, a fetch the
/// removed replica had in flight is still in the current epoch when a later move adds
/// the broker back with an empty log, and its old log end is taken for the new
/// replica's: the new replica joins the ISR, leads, and truncates acknowledged records
/// (issue 15, cluster seeds 401041, 401469, 401836).
#[test]
fn removing_a_replica_bumps_the_leader_epoch_even_when_the_leader_stays() {
    let mut image = four_brokers_with(vec![1, 2, 3]);
    reassign(&mut image, Some(vec![1, 2, 4])).unwrap();
    let adding = image.partition("r", 0).unwrap().clone();
    assert_eq!(adding.leader_epoch, 0, "adding a replica fences nobody");
    let done = alter_isr(&mut image, vec![1, 2, 3, 4]);
    assert_eq!((done.replicas.clone(), done.leader), (vec![1, 2, 4], 1));
    assert_eq!(
        done.leader_epoch, 1,
        "broker 3 left: its fetches are fenced"
    );
    // Adding broker 3 back keeps the epoch; its fresh replica fetches in epoch 1,
    // which no fetch of the removed one carried.
    reassign(&mut image, Some(vec![3, 1, 2])).unwrap();
    let back = image.partition("r", 0).unwrap().clone();
    assert_eq!((back.leader_epoch, back.adding.clone()), (1, vec![3]));
    // Cancelling a move removes the replicas it added: a new epoch again.
    reassign(&mut image, None).unwrap();
    let cancelled = image.partition("r", 0).unwrap();
    assert_eq!(
        (cancelled.replicas.clone(), cancelled.leader_epoch),
        (vec![1, 2, 4], 2)
    );
}

#[test]
fn a_reassignment_can_be_cancelled_or_replaced_and_bad_targets_are_refused() {
    let mut image = four_brokers_with(vec![1, 2]);
    let before = image.clone();
    for bad in [vec![], vec![3, 3], vec![3, 9]] {
        assert!(matches!(
            reassign(&mut image, Some(bad)),
            Err(MetadataError::InvalidAssignment(..))
        ));
        assert_eq!(image, before, "a refused command changes nothing");
    }
    reassign(&mut image, Some(vec![3, 4])).unwrap();
    // A new target replaces the move in progress, from the original replicas.
    reassign(&mut image, Some(vec![1, 4])).unwrap();
    let p = image.partition("r", 0).unwrap().clone();
    assert_eq!(
        (p.replicas.clone(), p.adding.clone(), p.removing.clone()),
        (vec![1, 4, 2], vec![4], vec![2])
    );
    reassign(&mut image, None).unwrap();
    let p = image.partition("r", 0).unwrap();
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![1, 2], vec![1, 2])
    );
    assert!(!p.reassigning());
    // Shrinking the replication factor to in-sync replicas completes at once.
    reassign(&mut image, Some(vec![2])).unwrap();
    let p = image.partition("r", 0).unwrap();
    assert_eq!((p.replicas.clone(), p.leader), (vec![2], 2));
}

#[test]
fn plans_move_replicas_off_a_removed_broker_and_onto_added_ones() {
    let mut image = three_brokers_with_topic();
    assert!(
        plan_removal(&image, 2).is_err(),
        "two brokers cannot hold three replicas"
    );
    register(&mut image, 4, None);
    let off = plan_removal(&image, 2).unwrap();
    assert_eq!(off.len(), 3, "every partition has a replica on broker 2");
    for m in off {
        assert!(!m.replicas.contains(&2) && m.replicas.contains(&4), "{m:?}");
        assert_eq!(m.replicas.len(), 3);
    }
    // 9 replicas on 3 brokers; a fourth added: 2-3 each after balancing.
    let moves = plan_balance(&image);
    assert_eq!(moves.len(), 2, "{moves:?}");
    for m in &moves {
        image
            .apply(&Command::Reassign {
                topic: m.topic.clone(),
                partition: m.partition,
                target: Some(m.replicas.clone()),
            })
            .unwrap();
    }
    let counts = replica_counts(&image);
    assert!(counts.values().all(|c| (2..=3).contains(c)), "{counts:?}");
    assert!(plan_balance(&image).is_empty());
}

#[test]
fn only_dynamic_broker_configs_change_and_topic_configs_are_validated() {
    let mut image = three_brokers_with_topic();
    let rate = "follower.replication.throttled.rate";
    let alter = |resource, set: &[(&str, &str)], delete: &[&str]| Command::AlterConfigs {
        resource,
        set: set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        delete: delete.iter().map(|k| k.to_string()).collect(),
    };
    image
        .apply(&alter(ConfigResource::Broker(None), &[(rate, "1000")], &[]))
        .unwrap();
    image
        .apply(&alter(
            ConfigResource::Broker(Some(2)),
            &[(rate, "50")],
            &[],
        ))
        .unwrap();
    assert_eq!(image.broker_config(1, rate), Some("1000"));
    assert_eq!(image.broker_config(2, rate), Some("50"));
    image
        .apply(&alter(ConfigResource::Broker(Some(2)), &[], &[rate]))
        .unwrap();
    assert_eq!(image.broker_config(2, rate), Some("1000"));
    assert!(matches!(
        image.apply(&alter(
            ConfigResource::Broker(None),
            &[("log.dirs", "/x")],
            &[]
        )),
        Err(MetadataError::NotDynamic(..))
    ));
    let topic = ConfigResource::Topic("t".into());
    image
        .apply(&alter(topic.clone(), &[("retention.ms", "1000")], &[]))
        .unwrap();
    assert_eq!(image.topics["t"].configs["retention.ms"], "1000");
    assert!(image
        .apply(&alter(topic, &[("retention.ms", "soon")], &[]))
        .is_err());
    assert_eq!(image.topics["t"].configs["retention.ms"], "1000");
}
