#![cfg(not(madsim))]
//! Three in-process nodes on real TCP and real files forming one cluster: the metadata
//! quorum, replication with acks=all, and a leader failover.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sluice_core::config::BrokerConfig;
use sluice_net::client::{
    decode_batches, encode_batch, fetch_request, produce_request, Client, Message,
};
use sluice_net::node::Node;
use sluice_net::runtime::production_env;
use sluice_net::tcp::TcpNetwork;
use uuid::Uuid;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One cluster at a time: the voters' ports are picked free before the nodes bind
/// them, and two clusters starting at once could pick the same one.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    /// Held for the life of the cluster.
    _turn: tokio::sync::MutexGuard<'static, ()>,
    /// Kept for the life of the cluster.
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<Node>>,
    configs: Vec<BrokerConfig>,
}

impl Cluster {
    async fn start(n: i32) -> Cluster {
        Cluster::start_with(n, |_| {}).await
    }

    async fn start_with(n: i32, tweak: impl Fn(&mut BrokerConfig)) -> Cluster {
        let turn = ONE_AT_A_TIME.lock().await;
        let voters: Vec<String> = (1..=n)
            .map(|id| format!("{id}@127.0.0.1:{}", free_port()))
            .collect();
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let configs: Vec<BrokerConfig> = (1..=n)
            .map(|id| {
                let port = free_port();
                BrokerConfig {
                    node_id: id,
                    listen: format!("127.0.0.1:{port}"),
                    advertised_host: "127.0.0.1".into(),
                    advertised_port: port,
                    data_dir: dirs[(id - 1) as usize].path().display().to_string(),
                    controller_quorum_voters: voters.join(","),
                    broker_session_timeout_ms: 2000,
                    broker_heartbeat_interval_ms: 200,
                    replica_lag_time_max_ms: 3000,
                    leader_imbalance_check_interval_seconds: 1,
                    ..BrokerConfig::default()
                }
            })
            .map(|mut c| {
                tweak(&mut c);
                c
            })
            .collect();
        let started = futures::future::join_all(
            configs
                .iter()
                .map(|c| Node::start(production_env(&c.data_dir), c.clone())),
        )
        .await;
        let nodes = started.into_iter().map(|n| Some(n.unwrap())).collect();
        Cluster {
            _turn: turn,
            _dirs: dirs,
            nodes,
            configs,
        }
    }

    /// Starts `n` nodes and waits until each knows all of them registered.
    async fn start_registered(n: i32) -> Cluster {
        let cluster = Cluster::start(n).await;
        cluster
            .until(Duration::from_secs(20), "every broker registered", |c| {
                c.live()
                    .all(|id| c.node(id).broker.image().live_brokers().len() == n as usize)
            })
            .await;
        cluster
    }

    fn addr(&self, id: i32) -> String {
        self.nodes[(id - 1) as usize]
            .as_ref()
            .unwrap()
            .local_addr
            .clone()
    }

    async fn client(&self, id: i32) -> Client {
        Client::connect(&TcpNetwork, &self.addr(id), "test")
            .await
            .unwrap()
    }

    fn live(&self) -> impl Iterator<Item = i32> + '_ {
        (1..=self.nodes.len() as i32).filter(|id| self.nodes[(*id - 1) as usize].is_some())
    }

    /// Polls until `f` holds, failing after `within`.
    async fn until(&self, within: Duration, what: &str, mut f: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + within;
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn node(&self, id: i32) -> &Node {
        self.nodes[(id - 1) as usize].as_ref().unwrap()
    }

    async fn restart(&mut self, id: i32) {
        let c = self.configs[(id - 1) as usize].clone();
        let node = Node::start(production_env(&c.data_dir), c).await.unwrap();
        self.nodes[(id - 1) as usize] = Some(node);
    }

    fn stop(&mut self, id: i32) {
        if let Some(node) = self.nodes[(id - 1) as usize].take() {
            node.stop();
        }
    }
}

async fn leader_of(c: &mut Client, topic: &str) -> (i32, i32) {
    let r = c
        .call(
            MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(topic.into()))))])),
            12,
        )
        .await
        .unwrap();
    let p = &r.topics[0].partitions[0];
    (p.leader_id.0, p.leader_epoch)
}

/// Creates a one-partition topic with three replicas.
async fn create_replicated(c: &mut Client, name: &str) {
    let r = c
        .call(
            CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.into())))
                    .with_num_partitions(1)
                    .with_replication_factor(3)]),
            7,
        )
        .await
        .unwrap();
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    assert_eq!(r.topics[0].replication_factor, 3);
}

fn batch(from: usize, n: usize) -> Bytes {
    let messages: Vec<Message> = (from..from + n)
        .map(|i| Message {
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            timestamp: 1_700_000_000_000 + i as i64,
        })
        .collect();
    encode_batch(&messages, Compression::None).unwrap()
}

/// Reads partition 0 to its end; a broker that does not lead it yet (the metadata
/// has not reached it) is asked again, as clients do.
async fn consume_all(c: &mut Client, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut offset = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c
            .call(fetch_request(topic, [(0, offset)], 0, 1 << 20, 1 << 20), 12)
            .await
            .unwrap();
        let p = &r.responses[0].partitions[0];
        if p.error_code == 6 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(p.error_code, 0);
        let records = decode_batches(p.records.clone().unwrap(), offset).unwrap();
        if records.is_empty() {
            return out;
        }
        for r in records {
            offset = r.offset + 1;
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_fail_over() {
    if let Ok(filter) = std::env::var("SLUICE_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init();
    }
    let mut cluster = Cluster::start_registered(3).await;

    let mut c = cluster.client(1).await;
    create_replicated(&mut c, "r").await;
    cluster
        .until(Duration::from_secs(10), "the topic everywhere", |c| {
            c.live()
                .all(|id| c.node(id).broker.partition("r", 0).is_some())
        })
        .await;

    let (leader, epoch) = leader_of(&mut c, "r").await;
    let mut p = cluster.client(leader).await;
    for i in 0..50 {
        let r = p
            .call(produce_request("r", -1, 5000, [(0, batch(i * 10, 10))]), 9)
            .await
            .unwrap();
        let code = r.responses[0].partition_responses[0].error_code;
        assert_eq!(code, 0, "acks=all produce {i}");
    }
    // Acknowledged with acks=all: every in-sync replica holds it durably.
    for id in cluster.live() {
        let log = cluster.node(id).broker.partition("r", 0).unwrap();
        assert!(
            log.local_durable_end() >= 500,
            "replica on node {id} has {}",
            log.local_durable_end()
        );
    }
    // A follower refuses clients.
    let follower = cluster.live().find(|id| *id != leader).unwrap();
    let mut f = cluster.client(follower).await;
    let r = f
        .call(produce_request("r", -1, 5000, [(0, batch(0, 1))]), 9)
        .await
        .unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 6,
        "NOT_LEADER_OR_FOLLOWER"
    );

    // The leader dies: a new leader from the ISR, with a higher epoch, within the
    // session timeout plus an election.
    let killed = Instant::now();
    cluster.stop(leader);
    drop(p);
    let survivor = cluster.live().next().unwrap();
    let mut s = cluster.client(survivor).await;
    let (new_leader, new_epoch) = loop {
        let (l, e) = leader_of(&mut s, "r").await;
        if l != leader && l >= 0 {
            break (l, e);
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let failover = killed.elapsed();
    eprintln!("failover: new leader {new_leader} at epoch {new_epoch} after {failover:?}");
    assert!(new_epoch > epoch);

    let mut p = cluster.client(new_leader).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = p
            .call(produce_request("r", -1, 5000, [(0, batch(500, 10))]), 9)
            .await
            .unwrap();
        let code = r.responses[0].partition_responses[0].error_code;
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "produce after failover: {code}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = consume_all(&mut p, "r").await;
    let want: Vec<String> = (0..510).map(|i| format!("v{i}")).collect();
    assert_eq!(got, want, "every acknowledged record once, in order");

    // The old leader comes back, catches up, rejoins the ISR and, being the preferred
    // replica, is made leader again (auto.leader.rebalance.enable).
    eprintln!("restarting broker {leader}");
    tokio::time::timeout(Duration::from_secs(60), cluster.restart(leader))
        .await
        .expect("the old leader restarts within 60 s");
    eprintln!("restarted broker {leader}");
    let back = Instant::now();
    loop {
        let (l, e) = leader_of(&mut s, "r").await;
        if l == leader {
            assert!(e > new_epoch);
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "leadership did not return to the preferred replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut p = cluster.client(leader).await;
    let got = consume_all(&mut p, "r").await;
    assert_eq!(got, want, "the returned leader holds every record");
}

/// Records of about 200 bytes each, so catch-up traffic is measurable.
fn big_batch(from: usize, n: usize) -> Bytes {
    let messages: Vec<Message> = (from..from + n)
        .map(|i| Message {
            key: None,
            value: Some(Bytes::from(format!("v{i}:{}", "x".repeat(200)))),
            timestamp: 1_700_000_000_000 + i as i64,
        })
        .collect();
    encode_batch(&messages, Compression::None).unwrap()
}

async fn set_broker_configs(c: &mut Client, set: Option<&str>) -> i16 {
    use kafka_protocol::messages::incremental_alter_configs_request::*;
    let configs = [
        "leader.replication.throttled.rate",
        "follower.replication.throttled.rate",
    ]
    .iter()
    .map(|name| {
        AlterableConfig::default()
            .with_name(StrBytes::from_static_str(name))
            .with_config_operation(if set.is_some() { 0 } else { 1 })
            .with_value(set.map(|v| StrBytes::from_string(v.into())))
    })
    .collect();
    let r = c
        .call(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str(""))
                    .with_configs(configs),
            ]),
            1,
        )
        .await
        .unwrap();
    r.responses[0].error_code
}

async fn ongoing_reassignments(c: &mut Client) -> Vec<(i32, Vec<i32>, Vec<i32>, Vec<i32>)> {
    let r = c
        .call(
            ListPartitionReassignmentsRequest::default().with_timeout_ms(5000),
            0,
        )
        .await
        .unwrap();
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.partition_index,
                ids(&p.replicas),
                ids(&p.adding_replicas),
                ids(&p.removing_replicas),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moves_off_its_leader_to_another_broker_with_throttled_catch_up() {
    use kafka_protocol::messages::alter_partition_reassignments_request::*;
    use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
    let cluster = Cluster::start_registered(3).await;
    let mut c = cluster.client(1).await;
    let r = c
        .call(
            CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("m")))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![CreatableReplicaAssignment::default()
                        .with_partition_index(0)
                        .with_broker_ids(vec![BrokerId(1), BrokerId(2)])])]),
            7,
        )
        .await
        .unwrap();
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    cluster
        .until(Duration::from_secs(10), "the topic on its replicas", |c| {
            [1, 2]
                .iter()
                .all(|id| c.node(*id).broker.partition("m", 0).is_some())
        })
        .await;
    let (leader, epoch) = leader_of(&mut c, "m").await;
    assert_eq!(leader, 1);
    for i in 0..30 {
        let r = c
            .call(
                produce_request("m", -1, 5000, [(0, big_batch(i * 10, 10))]),
                9,
            )
            .await
            .unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let bytes = cluster
        .node(1)
        .broker
        .partition("m", 0)
        .unwrap()
        .local_durable_end();
    assert_eq!(bytes, 300);

    // Only the replication throttles change at runtime.
    assert_eq!(set_broker_configs(&mut c, Some("20000")).await, 0);
    let r = c
        .call(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1"))
                    .with_configs(vec![kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("num.partitions"))
                        .with_value(Some(StrBytes::from_static_str("3")))]),
            ]),
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        r.responses[0].error_code, 40,
        "INVALID_CONFIG for a static config"
    );

    // Move the partition off its leader, broker 1, onto broker 3.
    let started = Instant::now();
    let r = c
        .call(
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![ReassignableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("m")))
                    .with_partitions(vec![ReassignablePartition::default()
                        .with_partition_index(0)
                        .with_replicas(Some(vec![BrokerId(3), BrokerId(2)]))])]),
            1,
        )
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    let ongoing = ongoing_reassignments(&mut c).await;
    assert_eq!(ongoing, vec![(0, vec![3, 2, 1], vec![3], vec![1])]);
    // Clients keep producing to the old leader while the new replica catches up.
    for i in 30..33 {
        let r = c
            .call(
                produce_request("m", -1, 5000, [(0, big_batch(i * 10, 10))]),
                9,
            )
            .await
            .unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    while !ongoing_reassignments(&mut c).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the move never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    // About 70 KB at 20 KB/s: the catch-up was paced.
    let stored = cluster.node(3).broker.partition("m", 0).unwrap();
    eprintln!("moved {} records in {took:?}", stored.log_end_offset());
    assert!(took >= Duration::from_secs(2), "throttle ignored: {took:?}");

    let (new_leader, new_epoch) = leader_of(&mut c, "m").await;
    assert_eq!(new_leader, 3, "leadership left the removed replica");
    assert!(new_epoch > epoch);
    let p = cluster
        .node(1)
        .broker
        .image()
        .partition("m", 0)
        .unwrap()
        .clone();
    assert_eq!((p.replicas, p.isr.len()), (vec![3, 2], 2));
    cluster
        .until(Duration::from_secs(10), "broker 1 drops its replica", |c| {
            c.node(1).broker.partition("m", 0).is_none()
        })
        .await;
    let mut n = cluster.client(3).await;
    let got = consume_all(&mut n, "m").await;
    let want: Vec<String> = (0..330)
        .map(|i| format!("v{i}:{}", "x".repeat(200)))
        .collect();
    assert_eq!(got, want, "every record moved, once, in order");
    assert_eq!(set_broker_configs(&mut c, None).await, 0);
    cluster
        .until(
            Duration::from_secs(10),
            "the throttle removed everywhere",
            |c| {
                c.live()
                    .all(|id| c.node(id).broker.image().broker_configs.is_empty())
            },
        )
        .await;
}

/// Asks broker 1 for the coordinator of `key` until one is ready; its node id.
async fn coordinator(c: &mut Client, key: &str, key_type: i8) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .call(
                FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(key.into()))
                    .with_key_type(key_type),
                3,
            )
            .await
            .unwrap();
        if r.error_code == 0 {
            return r.node_id.0;
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator for {key}: {}",
            r.error_code
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_coordinate_groups_and_transactions_on_partial_internal_topics() {
    use kafka_protocol::messages::offset_commit_request::*;
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    // Four brokers, internal topics with three replicas: no broker holds all of them.
    let cluster = Cluster::start_registered(4).await;
    let mut c = cluster.client(1).await;
    create_replicated(&mut c, "any").await;
    let mut coordinators = std::collections::BTreeSet::new();
    for i in 0..12 {
        let group = format!("group-{i}");
        let id = coordinator(&mut c, &group, 0).await;
        coordinators.insert(id);
        let mut g = cluster.client(id).await;
        let r = g
            .call(
                OffsetCommitRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("any")))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(100 + i)])]),
                7,
            )
            .await
            .unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "commit for {group}"
        );
        let r = g
            .call(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("any")))
                        .with_partition_indexes(vec![0])])),
                7,
            )
            .await
            .unwrap();
        assert_eq!(r.topics[0].partitions[0].committed_offset, 100 + i);

        let txn = format!("txn-{i}");
        let id = coordinator(&mut c, &txn, 1).await;
        let mut t = cluster.client(id).await;
        let r = t
            .call(
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(StrBytes::from_string(txn))))
                    .with_transaction_timeout_ms(30_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 0, "InitProducerId at the coordinator");
        assert!(r.producer_id.0 >= 0);
    }
    assert!(
        coordinators.len() > 1,
        "groups spread over brokers: {coordinators:?}"
    );
}

/// ElectLeaders (preferred): after a failover and the old leader's return to the ISR,
/// the partition's first replica leads again on request; asked again, the election is
/// not needed; an unclean election of a led partition is not needed either; an
/// unknown partition is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_leaders_moves_leadership_back_to_the_preferred_replica() {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let mut cluster = Cluster::start_with(3, |c| c.auto_leader_rebalance_enable = false).await;
    cluster
        .until(Duration::from_secs(20), "every broker registered", |c| {
            c.live()
                .all(|id| c.node(id).broker.image().live_brokers().len() == 3)
        })
        .await;
    let mut c = cluster.client(1).await;
    create_replicated(&mut c, "e").await;
    let preferred = cluster
        .node(1)
        .broker
        .image()
        .partition("e", 0)
        .unwrap()
        .replicas[0];
    cluster
        .until(
            Duration::from_secs(10),
            "the preferred replica leading",
            |c| c.node(1).broker.image().partition("e", 0).unwrap().leader == preferred,
        )
        .await;
    cluster.stop(preferred);
    let other = cluster.live().next().unwrap();
    cluster
        .until(Duration::from_secs(20), "another leader", |c| {
            // `other` may not have applied the topic's creation yet.
            c.node(other)
                .broker
                .image()
                .partition("e", 0)
                .is_some_and(|p| p.leader >= 0 && p.leader != preferred)
        })
        .await;
    cluster.restart(preferred).await;
    cluster
        .until(
            Duration::from_secs(20),
            "the preferred replica back in sync",
            |c| {
                c.node(other)
                    .broker
                    .image()
                    .partition("e", 0)
                    .is_some_and(|p| p.isr.contains(&preferred))
            },
        )
        .await;
    let mut c = cluster.client(other).await;
    let elect = |election_type: i8, partitions: Vec<i32>| {
        ElectLeadersRequest::default()
            .with_election_type(election_type)
            .with_timeout_ms(5000)
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(TopicName(StrBytes::from_static_str("e")))
                .with_partitions(partitions)]))
    };
    let codes = |r: ElectLeadersResponse| -> Vec<i16> {
        r.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| p.error_code)
            .collect()
    };
    let r = c.call(elect(0, vec![0, 7]), 2).await.unwrap();
    assert_eq!(codes(r), vec![0, 3], "elected; partition 7 unknown");
    cluster
        .until(
            Duration::from_secs(10),
            "the preferred replica leading again",
            |c| {
                c.node(other)
                    .broker
                    .image()
                    .partition("e", 0)
                    .unwrap()
                    .leader
                    == preferred
            },
        )
        .await;
    for v in 0..=2 {
        let r = c.call(elect(0, vec![0]), v).await.unwrap();
        assert_eq!(codes(r), vec![84], "v{v}: ELECTION_NOT_NEEDED");
    }
    for v in 1..=2 {
        let r = c.call(elect(1, vec![0]), v).await.unwrap();
        assert_eq!(codes(r), vec![84], "v{v}: unclean, but led");
    }
}

/// DescribeQuorum at every advertised version: the quorum leader reports every voter's
/// log end; another node reports the leader and its own; v2 names the voters' quorum
/// addresses; any other topic is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_quorum_shows_the_metadata_quorum() {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    let cluster = Cluster::start_registered(3).await;
    let leader = cluster.node(1).broker.controller.leader().unwrap();
    let follower = cluster.live().find(|id| *id != leader).unwrap();
    let ask = |topic: &str| {
        DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])])
    };
    for v in 0..=2 {
        let mut c = cluster.client(leader).await;
        let r = c.call(ask("__cluster_metadata"), v).await.unwrap();
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_id.0), (0, leader), "v{v}");
        assert!(p.leader_epoch >= 1 && p.high_watermark >= 1, "v{v}: {p:?}");
        let mut voters: Vec<i32> = p.current_voters.iter().map(|s| s.replica_id.0).collect();
        voters.sort();
        assert_eq!(voters, vec![1, 2, 3]);
        assert!(
            p.current_voters.iter().all(|s| s.log_end_offset >= 1),
            "v{v}: {p:?}"
        );
        assert!(p.observers.is_empty());
        if v >= 2 {
            assert_eq!(r.nodes.len(), 3);
            assert!(r.nodes.iter().all(|n| n.listeners[0].port > 0));
        }
        let mut f = cluster.client(follower).await;
        let r = f.call(ask("__cluster_metadata"), v).await.unwrap();
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.leader_id.0, leader, "v{v}: the follower knows the leader");
        let own = p
            .current_voters
            .iter()
            .find(|s| s.replica_id.0 == follower)
            .unwrap();
        assert!(own.log_end_offset >= 1);
        let r = f.call(ask("other"), v).await.unwrap();
        assert_eq!(r.topics[0].partitions[0].error_code, 3, "v{v}");
    }
}

/// Share groups across brokers (KIP-932): the data partition's leader writes its
/// share-partition state to the leader of its `__share_group_state` partition on
/// another broker (WriteShareGroupState); when the data leader dies, the new leader
/// reads it back (ReadShareGroupState or its own replica) and delivers only what was
/// not acknowledged, the acquired records again with their delivery counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_group_state_survives_the_partition_leader_on_another_broker() {
    use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
    use kafka_protocol::messages::share_acknowledge_request::{
        AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch,
    };
    use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};
    let mut cluster = Cluster::start_with(3, |c| {
        c.share_coordinator_state_topic_num_partitions = 1;
        c.auto_leader_rebalance_enable = false;
    })
    .await;
    cluster
        .until(Duration::from_secs(30), "every broker registered", |c| {
            c.live()
                .all(|id| c.node(id).broker.image().live_brokers().len() == 3)
        })
        .await;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let fetch = |topic_id: Uuid, member: &str, epoch: i32| {
        ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s("sg"))))
            .with_member_id(Some(s(member)))
            .with_share_session_epoch(epoch)
            .with_max_wait_ms(100)
            .with_max_bytes(1 << 20)
            .with_max_records(100)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![
                    FetchPartition::default().with_partition_index(0)
                ])])
    };
    let acquired = |r: &ShareFetchResponse| -> Vec<(i64, i64, i16)> {
        r.responses
            .iter()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| &p.acquired_records)
            .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
            .collect()
    };
    let topic_id =
        |c: &Cluster, topic: &str| Uuid::from_bytes(c.node(1).broker.image().topics[topic].id);
    // FindCoordinator with a share key (v6) creates __share_group_state (one
    // partition) and names its leader.
    let mut c = cluster.client(1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let state_leader = loop {
        let r = c
            .call(
                FindCoordinatorRequest::default()
                    .with_key_type(2)
                    .with_coordinator_keys(vec![s("sg:BwcHBwcHBwcHBwcHBwcHBw:0")]),
                6,
            )
            .await
            .unwrap();
        let found = &r.coordinators[0];
        if found.error_code == 0 {
            break found.node_id.0;
        }
        assert!(
            Instant::now() < deadline,
            "no share coordinator: {:?}",
            found.error_message
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster
        .until(Duration::from_secs(30), "the state partition led", |c| {
            c.node(1)
                .broker
                .image()
                .partition("__share_group_state", 0)
                .is_some_and(|p| p.leader == state_leader)
        })
        .await;
    // The data partition is led elsewhere, and its second replica is not the state
    // leader either, so both leaders write their state over the wire.
    let others: Vec<i32> = (1..=3).filter(|b| *b != state_leader).collect();
    let r = c
        .call(
            CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(s("sh")))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![CreatableReplicaAssignment::default()
                        .with_partition_index(0)
                        .with_broker_ids(vec![
                            BrokerId(others[0]),
                            BrokerId(others[1]),
                            BrokerId(state_leader),
                        ])])]),
            7,
        )
        .await
        .unwrap();
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    cluster
        .until(
            Duration::from_secs(10),
            "the topic led by its first replica",
            |c| {
                c.node(others[0])
                    .broker
                    .replica("sh", 0)
                    .is_some_and(|r| r.is_leader())
            },
        )
        .await;
    let sh = topic_id(&cluster, "sh");
    let mut l = cluster.client(others[0]).await;
    // Opened before the records exist: the share partition starts at the end (latest).
    let r = l.call(fetch(sh, "a", 0), 1).await.unwrap();
    assert_eq!((r.error_code, acquired(&r)), (0, vec![]));
    let r = l
        .call(produce_request("sh", -1, 5000, [(0, batch(0, 10))]), 9)
        .await
        .unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let r = l.call(fetch(sh, "a", 1), 1).await.unwrap();
    assert_eq!(acquired(&r), vec![(0, 9, 1)]);
    let r = l
        .call(
            ShareAcknowledgeRequest::default()
                .with_group_id(Some(GroupId(s("sg"))))
                .with_member_id(Some(s("a")))
                .with_share_session_epoch(2)
                .with_topics(vec![AcknowledgeTopic::default()
                    .with_topic_id(sh)
                    .with_partitions(vec![AcknowledgePartition::default()
                        .with_partition_index(0)
                        .with_acknowledgement_batches(vec![
                            AcknowledgementBatch::default()
                                .with_first_offset(0)
                                .with_last_offset(4)
                                .with_acknowledge_types(vec![1]),
                        ])])]),
            1,
        )
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
    assert_eq!(
        r.responses[0].partitions[0].error_code, 0,
        "acknowledged once stored on broker {state_leader}"
    );
    // The leader dies holding 5..=9 for a.
    cluster.stop(others[0]);
    cluster
        .until(Duration::from_secs(30), "a new leader in sync", |c| {
            c.live().any(|id| {
                c.node(id)
                    .broker
                    .replica("sh", 0)
                    .is_some_and(|r| r.is_leader())
            })
        })
        .await;
    // Most often the second replica (its state then read over the wire); the state
    // leader itself may win the election too.
    let new_leader = cluster
        .live()
        .find(|id| {
            cluster
                .node(*id)
                .broker
                .replica("sh", 0)
                .is_some_and(|r| r.is_leader())
        })
        .unwrap();
    let mut l2 = cluster.client(new_leader).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let r = l2.call(fetch(sh, "b", 0), 1).await.unwrap();
        let got = acquired(&r);
        let code = r
            .responses
            .first()
            .map_or(0, |t| t.partitions[0].error_code);
        if (!got.is_empty() && code == 0) || Instant::now() > deadline {
            break got;
        }
        // Not leading yet (metadata on its way): ask again with a fresh session.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        got,
        vec![(5, 9, 2)],
        "acknowledged records stay done; held ones come back, counted"
    );
}
