#![cfg(not(madsim))]
//! The wire layer against a real in-process node on real TCP and real files: every
//! served API at every advertised version, and bad input.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sluice_core::config::BrokerConfig;
use sluice_net::client::{
    decode_batches, encode_batch, fetch_request, produce_request, Client, Consumed, Message,
};
use sluice_net::handlers::supported_versions;
use sluice_net::node::Node;
use sluice_net::runtime::production_env;
use sluice_net::tcp::TcpNetwork;

async fn start(dir: &tempfile::TempDir, tweak: impl FnOnce(&mut BrokerConfig)) -> Node {
    let mut config = BrokerConfig {
        listen: "127.0.0.1:0".into(),
        advertised_host: "127.0.0.1".into(),
        advertised_port: 0,
        data_dir: dir.path().display().to_string(),
        ..BrokerConfig::default()
    };
    tweak(&mut config);
    Node::start(production_env(&config.data_dir), config)
        .await
        .unwrap()
}

async fn connect(node: &Node) -> Client {
    Client::connect(&TcpNetwork, &node.local_addr, "test")
        .await
        .unwrap()
}

/// Asks for the group and transaction coordinators, as clients do before their first
/// group or transactional request; the internal topics are created on first use.
async fn find_coordinators(client: &mut Client) {
    for key_type in [0i8, 1] {
        let r = client
            .call(
                FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_static_str("any"))
                    .with_key_type(key_type),
                3,
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 0, "FindCoordinator key type {key_type}");
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (min, max) = supported_versions(key).unwrap();
    min..=max
}

async fn create(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    version: i16,
) -> CreateTopicsResponse {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    client.call(req, version).await.unwrap()
}

fn produce_req(topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    produce_request(topic, acks, 5000, [(partition, records)])
}

fn fetch_req(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    fetch_request(topic, [(partition, offset)], max_wait_ms, 1 << 20, 1 << 20)
}

/// The records of the first partition of a fetch response.
fn fetched(r: &FetchResponse) -> Vec<Consumed> {
    decode_batches(r.responses[0].partitions[0].records.clone().unwrap(), 0).unwrap()
}

fn messages(n: usize, ts: i64) -> Vec<Message> {
    (0..n)
        .map(|i| Message {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            timestamp: ts + i as i64,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_at_every_advertised_version() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;

    for v in versions(ApiKey::ApiVersions) {
        let r = c.call(ApiVersionsRequest::default(), v).await.unwrap();
        assert_eq!(r.error_code, 0);
        assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::Fetch as i16));
    }
    for v in versions(ApiKey::CreateTopics) {
        let topic = format!("t-v{v}");
        let r = create(&mut c, &topic, 2, v).await;
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
        let again = create(&mut c, &topic, 2, v).await;
        assert_eq!(
            again.topics[0].error_code, 36,
            "TOPIC_ALREADY_EXISTS at v{v}"
        );
    }
    let bad = create(&mut c, "bad name!", 1, 7).await;
    assert_eq!(bad.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    let zero = create(&mut c, "zero", 0, 7).await;
    assert_eq!(zero.topics[0].error_code, 37, "INVALID_PARTITIONS");

    for v in versions(ApiKey::Metadata) {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("t-v7")))
            ]))
            .with_allow_auto_topic_creation(v < 4);
        let r = c.call(req, v).await.unwrap();
        assert_eq!(r.brokers.len(), 1, "Metadata v{v}");
        assert_eq!(r.topics[0].partitions.len(), 2, "Metadata v{v}");
        if v >= 10 {
            assert!(!r.topics[0].topic_id.is_nil(), "topic id at v{v}");
        }
    }

    let batch = encode_batch(&messages(10, 1_000), Compression::None).unwrap();
    let mut next = 0;
    for v in versions(ApiKey::Produce) {
        let r = c
            .call(produce_req("t-v7", 0, -1, batch.clone()), v)
            .await
            .unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, next), "Produce v{v}");
        next += 10;
        let r = c
            .call(produce_req("nope", 0, 1, batch.clone()), v)
            .await
            .unwrap();
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION v{v}"
        );
    }
    // Fetch v13+ names topics by id (KIP-516).
    let topic_id = c
        .call(
            MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("t-v7")))
            ])),
            12,
        )
        .await
        .unwrap()
        .topics[0]
        .topic_id;
    let by_id = |mut req: FetchRequest, v: i16| {
        if v >= 13 {
            for t in &mut req.topics {
                t.topic = TopicName::default();
                t.topic_id = topic_id;
            }
        }
        req
    };
    for v in versions(ApiKey::Fetch) {
        let fetch_req = |t: &str, p: i32, o: i64, w: i32| by_id(fetch_req(t, p, o, w), v);
        let r = c.call(fetch_req("t-v7", 0, 15, 0), v).await.unwrap();
        if v >= 13 {
            assert_eq!(
                r.responses[0].topic_id, topic_id,
                "Fetch v{v} answers by id"
            );
        }
        let p = &r.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, next), "Fetch v{v}");
        let records = decode_batches(p.records.clone().unwrap(), 15).unwrap();
        assert_eq!(records.first().map(|r| r.offset), Some(15), "Fetch v{v}");
        assert_eq!(records.len() as i64, next - 15);
        let out = c.call(fetch_req("t-v7", 0, next + 1, 0), v).await.unwrap();
        assert_eq!(
            out.responses[0].partitions[0].error_code, 1,
            "OFFSET_OUT_OF_RANGE v{v}"
        );
        if v >= 13 {
            let mut unknown = fetch_req("t-v7", 0, 0, 0);
            unknown.topics[0].topic_id = uuid::Uuid::from_bytes([7; 16]);
            let r = c.call(unknown, v).await.unwrap();
            assert_eq!(
                r.responses[0].partitions[0].error_code, 100,
                "UNKNOWN_TOPIC_ID v{v}"
            );
        }
    }
    for v in versions(ApiKey::ListOffsets) {
        let mut queries = vec![(-2, 0), (-1, next), (1_005, 5), (999_999_999, -1)];
        if v >= 7 {
            // Every batch repeats timestamps 1000..=1009: the first holder of the max wins,
            // as in Kafka.
            queries.push((-3, 9));
        }
        if v >= 8 {
            // Earliest local (KIP-405): the earliest, as nothing is tiered.
            queries.push((-4, 0));
        }
        if v >= 9 {
            // Latest tiered (KIP-1005): none.
            queries.push((-5, -1));
        }
        for (ts, want) in queries {
            let req = ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_timeout_ms(if v >= 10 { 5000 } else { 0 })
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name("t-v7"))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(ts)])]);
            let r = c.call(req, v).await.unwrap();
            let p = &r.topics[0].partitions[0];
            assert_eq!(
                (p.error_code, p.offset),
                (0, want),
                "ListOffsets v{v} ts {ts}"
            );
        }
    }
    for v in versions(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t-v7"))
                .with_configuration_keys(None),
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("1"))
                .with_configuration_keys(None),
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("nope"))
                .with_configuration_keys(None),
        ]);
        let r = c.call(req, v).await.unwrap();
        let configs: BTreeMap<String, String> = r.results[0]
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().unwrap().to_string()))
            .collect();
        assert_eq!(
            configs.get("max.message.bytes").map(String::as_str),
            Some("1048588"),
            "DescribeConfigs v{v}"
        );
        assert!(r.results[1]
            .configs
            .iter()
            .any(|c| c.name.as_str() == "num.partitions"));
        assert_eq!(r.results[2].error_code, 3);
    }
    for v in versions(ApiKey::CreatePartitions) {
        let topic = format!("t-v{}", 2 + v);
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(name(&topic))
                .with_count(4)]);
        let r = c.call(req.clone(), v).await.unwrap();
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
        let r = c.call(req, v).await.unwrap();
        assert_eq!(
            r.results[0].error_code, 37,
            "shrinking or equal count is INVALID_PARTITIONS at v{v}"
        );
        // Explicit replicas for the new partitions: broker 1 (the only one) for each;
        // a wrong count of lists or an unknown broker is INVALID_REPLICA_ASSIGNMENT.
        use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
        let with = |count: i32, lists: Vec<Vec<i32>>| {
            CreatePartitionsRequest::default()
                .with_timeout_ms(1000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(name(&topic))
                    .with_count(count)
                    .with_assignments(Some(
                        lists
                            .into_iter()
                            .map(|l| {
                                CreatePartitionsAssignment::default()
                                    .with_broker_ids(l.into_iter().map(BrokerId).collect())
                            })
                            .collect(),
                    ))])
        };
        for bad in [
            with(6, vec![vec![1]]),
            with(5, vec![vec![7]]),
            with(5, vec![vec![1, 1]]),
        ] {
            let r = c.call(bad, v).await.unwrap();
            assert_eq!(
                r.results[0].error_code, 39,
                "v{v}: {:?}",
                r.results[0].error_message
            );
        }
        let r = c.call(with(6, vec![vec![1], vec![1]]), v).await.unwrap();
        assert_eq!(
            r.results[0].error_code, 0,
            "v{v}: {:?}",
            r.results[0].error_message
        );
    }
    for v in versions(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![
                StrBytes::from_static_str("g"),
                StrBytes::from_static_str(""),
            ])
        } else {
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
        };
        let r = c.call(req, v).await.unwrap();
        if v >= 4 {
            assert_eq!(
                (r.coordinators[0].error_code, r.coordinators[0].node_id.0),
                (0, 1)
            );
            assert_eq!(
                r.coordinators[1].error_code, 42,
                "empty key is INVALID_REQUEST"
            );
        } else {
            assert_eq!(
                (r.error_code, r.node_id.0, r.port),
                (0, 1, node.broker.config.advertised_port as i32),
                "FindCoordinator v{v}"
            );
        }
    }
    // Share keys (KIP-932, key type 2): from v6 only, in Kafka's form.
    for v in versions(ApiKey::FindCoordinator).filter(|v| *v >= 4) {
        let r = c
            .call(
                FindCoordinatorRequest::default()
                    .with_key_type(2)
                    .with_coordinator_keys(vec![
                        StrBytes::from_static_str("sg:BwcHBwcHBwcHBwcHBwcHBw:3"),
                        StrBytes::from_static_str("sg:not-a-topic-id:3"),
                    ]),
                v,
            )
            .await
            .unwrap();
        let got: Vec<(i16, i32)> = r
            .coordinators
            .iter()
            .map(|c| (c.error_code, c.node_id.0))
            .collect();
        if v >= 6 {
            assert_eq!(
                got,
                vec![(0, 1), (42, -1)],
                "v{v}: share key, then a malformed one"
            );
        } else {
            assert_eq!(
                got,
                vec![(42, -1), (42, -1)],
                "v{v}: no share keys before v6"
            );
        }
    }
    for v in versions(ApiKey::DescribeCluster) {
        let r = c.call(DescribeClusterRequest::default(), v).await.unwrap();
        assert_eq!(
            (r.error_code, r.brokers.len()),
            (0, 1),
            "DescribeCluster v{v}"
        );
    }
    for v in versions(ApiKey::DescribeLogDirs) {
        let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
            DescribableLogDirTopic::default()
                .with_topic(name("t-v7"))
                .with_partitions(vec![0, 1, 9]),
        ]));
        let r = c.call(req, v).await.unwrap();
        assert_eq!(r.results.len(), 1, "DescribeLogDirs v{v}: one log dir");
        let d = &r.results[0];
        assert!(
            d.log_dir.starts_with('/'),
            "an absolute path: {:?}",
            d.log_dir
        );
        let ps = &d.topics[0].partitions;
        assert_eq!(
            ps.iter().map(|p| p.partition_index).collect::<Vec<_>>(),
            vec![0, 1],
            "only the partitions it holds, at v{v}"
        );
        assert!(ps[0].partition_size > 0, "t-v7-0 holds records, at v{v}");
        let all = c
            .call(DescribeLogDirsRequest::default().with_topics(None), v)
            .await
            .unwrap();
        assert!(all.results[0].topics.len() > 1, "every topic at v{v}");
    }
    for v in versions(ApiKey::DeleteRecords) {
        let trim = |offset: i64| {
            DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(name("t-v7"))
                    .with_partitions(vec![DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset)])])
        };
        let want = 2 * (i64::from(v) + 1);
        let r = c.call(trim(want), v).await.unwrap();
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.low_watermark),
            (0, want),
            "DeleteRecords v{v}"
        );
        let r = c.call(trim(next + 1), v).await.unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code, 1,
            "OFFSET_OUT_OF_RANGE above the high watermark at v{v}"
        );
        let r = c.call(fetch_req("t-v7", 0, want - 1, 0), 12).await.unwrap();
        assert_eq!(
            (
                r.responses[0].partitions[0].error_code,
                r.responses[0].partitions[0].log_start_offset
            ),
            (1, want),
            "a fetch below the log start at v{v}"
        );
    }
    for v in versions(ApiKey::DeleteTopics) {
        let topic = format!("t-v{}", v + 1);
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name(&topic)))
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
        };
        let r = c.call(req.clone(), v).await.unwrap();
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
        let r = c.call(req, v).await.unwrap();
        assert_eq!(r.responses[0].error_code, 3, "deleting twice at v{v}");
    }
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_auto_creates_with_num_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |c| c.num_partitions = 3).await;
    let mut c = connect(&node).await;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("auto")))
        ]))
        .with_allow_auto_topic_creation(true);
    let r = c.call(req, 12).await.unwrap();
    assert_eq!(
        (r.topics[0].error_code, r.topics[0].partitions.len()),
        (0, 3)
    );
    let node2 = {
        let dir2 = tempfile::tempdir().unwrap();
        let n = start(&dir2, |c| c.auto_create_topics_enable = false).await;
        let mut c2 = connect(&n).await;
        let req = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("auto")))
            ]))
            .with_allow_auto_topic_creation(true);
        let r = c2.call(req, 12).await.unwrap();
        assert_eq!(r.topics[0].error_code, 3, "no auto-creation when disabled");
        n
    };
    node2.stop();
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_waits_for_data_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    create(&mut c, "lp", 1, 7).await;
    let t = std::time::Instant::now();
    let r = c.call(fetch_req("lp", 0, 0, 300), 12).await.unwrap();
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(280),
        "returned after {:?}",
        t.elapsed()
    );
    assert!(r.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());

    let mut c2 = connect(&node).await;
    let waiter = tokio::spawn(async move {
        let t = std::time::Instant::now();
        let r = c2.call(fetch_req("lp", 0, 0, 10_000), 12).await.unwrap();
        (t.elapsed(), r)
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let batch = encode_batch(&messages(3, 0), Compression::None).unwrap();
    c.call(produce_req("lp", 0, 1, batch), 10).await.unwrap();
    let (waited, r) = waiter.await.unwrap();
    assert!(
        waited < std::time::Duration::from_secs(5),
        "long poll not woken by produce: {waited:?}"
    );
    assert_eq!(fetched(&r).len(), 3);
    node.stop();
}

/// KIP-74: only the first batch of a fetch response may pass `max_bytes` or its
/// partition's `partition_max_bytes`; a later partition whose first batch does not fit
/// gets nothing this time (librdkafka drops a connection whose response exceeds what it
/// asked for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_response_passes_its_limits_only_by_its_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    create(&mut c, "big", 2, 7).await;
    let big = |tag: &str| {
        let value = Bytes::from(format!("{tag}{}", "x".repeat(900_000)));
        let m = Message {
            key: None,
            value: Some(value),
            timestamp: 0,
        };
        encode_batch(&[m], Compression::None).unwrap()
    };
    for p in 0..2 {
        let r = c
            .call(produce_req("big", p, 1, big(&format!("p{p}"))), 10)
            .await
            .unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let sizes = |r: &FetchResponse| -> Vec<usize> {
        r.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
            .collect()
    };
    // max_bytes 1,000,000: partition 0's 900 KB batch goes whole, partition 1 waits.
    let req = fetch_request("big", [(0, 0), (1, 0)], 0, 1_000_000, 1 << 21);
    let r = c.call(req, 12).await.unwrap();
    let got = sizes(&r);
    assert!(got[0] > 900_000 && got[1] == 0, "{got:?}");
    // partition_max_bytes 100 KB: the same.
    let req = fetch_request("big", [(0, 0), (1, 0)], 0, 50 << 20, 100_000);
    let got = sizes(&c.call(req, 12).await.unwrap());
    assert!(got[0] > 900_000 && got[1] == 0, "{got:?}");
    // Partition 1 first: now it is the one served.
    let req = fetch_request("big", [(1, 0), (0, 0)], 0, 1_000_000, 1 << 21);
    let got = sizes(&c.call(req, 12).await.unwrap());
    assert!(got[0] > 900_000 && got[1] == 0, "{got:?}");
    // Room for both: both served.
    let req = fetch_request("big", [(0, 0), (1, 0)], 0, 3_000_000, 1 << 21);
    let got = sizes(&c.call(req, 12).await.unwrap());
    assert!(got.iter().all(|&n| n > 900_000), "{got:?}");
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_not_while_a_request_waits() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |c| c.connections_max_idle_ms = 300).await;
    let mut c = connect(&node).await;
    create(&mut c, "idle", 1, 7).await;

    // A long poll three times the idle time: the connection waits on it, so it stays
    // open for the next request.
    let r = c.call(fetch_req("idle", 0, 0, 900), 12).await.unwrap();
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    let r = c.call(fetch_req("idle", 0, 0, 0), 12).await;
    assert!(r.is_ok(), "closed while a request was in flight");
    // Then nothing for longer than the idle time: closed.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let err = c.call(fetch_req("idle", 0, 0, 0), 12).await;
    assert!(err.is_err(), "an idle connection was left open");

    // A client that stops mid-frame is closed too, and gives back what it held.
    let mut stalled = tokio::net::TcpStream::connect(&node.local_addr)
        .await
        .unwrap();
    stalled.write_all(&[0, 0, 0x10, 0, 1, 2, 3]).await.unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("a stalled connection was left open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "closed after {:?}",
        t.elapsed()
    );
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_broker_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |c| c.socket_request_max_bytes = 1 << 20).await;
    let mut c = connect(&node).await;
    create(&mut c, "bad", 1, 7).await;

    // A batch with a flipped bit: CORRUPT_MESSAGE, nothing stored.
    let mut batch = BytesMut::from(&encode_batch(&messages(2, 0), Compression::None).unwrap()[..]);
    let last = batch.len() - 1;
    batch[last] ^= 0x40;
    let r = c
        .call(produce_req("bad", 0, -1, batch.freeze()), 10)
        .await
        .unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 2);
    // Garbage instead of records.
    let r = c
        .call(
            produce_req("bad", 0, -1, Bytes::from_static(b"not a batch at all")),
            10,
        )
        .await
        .unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 2);
    // Invalid acks.
    let ok = encode_batch(&messages(1, 0), Compression::None).unwrap();
    let r = c
        .call(produce_req("bad", 0, 5, ok.clone()), 10)
        .await
        .unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 21);
    // A batch over message.max.bytes.
    let big = encode_batch(
        &[Message {
            key: None,
            value: Some(Bytes::from(vec![7u8; 1_100_000])),
            timestamp: 0,
        }],
        Compression::None,
    )
    .unwrap();
    let mut big_conn = connect(&node).await;
    // Over socket.request.max.bytes too: this connection is closed...
    let err = big_conn.call(produce_req("bad", 0, -1, big), 10).await;
    assert!(err.is_err(), "oversized frame must close the connection");
    // ...and the others carry on.
    let r = c
        .call(produce_req("bad", 0, -1, ok.clone()), 10)
        .await
        .unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].base_offset, 0,
        "nothing corrupt was stored"
    );

    // Unknown API key, truncated header, random bytes: that connection closes.
    for junk in [
        &[0u8, 0, 0, 4, 0x7f, 0x7f, 0, 0][..],
        &[0, 0, 0, 2, 0, 1],
        &[0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    ] {
        let mut raw = connect(&node).await;
        assert!(
            raw.raw(junk).await.unwrap().is_none(),
            "junk {junk:?} must close the connection"
        );
    }
    // A newer ApiVersions than we know: error 35 in the v0 layout, with our versions.
    let mut raw = connect(&node).await;
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    frame.put_i16(18);
    frame.put_i16(99);
    frame.put_i32(42);
    frame.put_i16(-1);
    frame.put_u8(0);
    let len = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    let body = raw.raw(&frame).await.unwrap().expect("a response");
    assert_eq!(&body[..4], &42i32.to_be_bytes());
    assert_eq!(&body[4..6], &35i16.to_be_bytes());
    assert!(i32::from_be_bytes([body[6], body[7], body[8], body[9]]) >= 10);

    let r = c.call(fetch_req("bad", 0, 0, 0), 12).await.unwrap();
    assert_eq!(fetched(&r).len(), 1);
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_data_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    create(&mut c, "keep", 2, 7).await;
    for _ in 0..3 {
        let batch = encode_batch(&messages(100, 5), Compression::Lz4).unwrap();
        c.call(produce_req("keep", 1, -1, batch), 10).await.unwrap();
    }
    node.stop();
    drop(c);
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    let r = c.call(fetch_req("keep", 1, 0, 0), 12).await.unwrap();
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 300);
    let got = decode_batches(p.records.clone().unwrap(), 0).unwrap();
    assert_eq!(got.len(), 300);
    assert!(got.iter().enumerate().all(|(i, r)| r.offset == i as i64));
    node.stop();
}

/// One member through a whole group life at each version of every group API: join
/// (MEMBER_ID_REQUIRED from v4), sync, heartbeat, commit, fetch, describe, list,
/// leave, delete; then OffsetDelete on a simple (memberless) commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_apis_at_every_advertised_version() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;

    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |c| c.group_initial_rebalance_delay_ms = 0).await;
    let mut c = connect(&node).await;
    assert_eq!(create(&mut c, "gt", 1, 7).await.topics[0].error_code, 0);
    find_coordinators(&mut c).await;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let commit = |group: &str, generation: i32, member: &str, offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(name("gt"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(s("meta")))])])
    };
    let fetch = |group: &str, v: i16| {
        if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(name("gt"))
                    .with_partition_indexes(vec![0])]))])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(name("gt"))
                    .with_partition_indexes(vec![0])]))
        }
    };
    let fetched = |r: &OffsetFetchResponse, v: i16| -> (i64, String) {
        if v >= 8 {
            let p = &r.groups[0].topics[0].partitions[0];
            (p.committed_offset, p.metadata.as_ref().unwrap().to_string())
        } else {
            let p = &r.topics[0].partitions[0];
            (p.committed_offset, p.metadata.as_ref().unwrap().to_string())
        }
    };
    for v in versions(ApiKey::JoinGroup) {
        let group = format!("g-v{v}");
        let mut join = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_session_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"sub"))]);
        if v >= 1 {
            join = join.with_rebalance_timeout_ms(10_000);
        }
        let mut r = c.call(join.clone(), v).await.unwrap();
        if v >= 4 {
            assert_eq!(
                r.error_code, 79,
                "JoinGroup v{v} asks for a member id first"
            );
            r = c
                .call(join.with_member_id(r.member_id.clone()), v)
                .await
                .unwrap();
        }
        assert_eq!((r.error_code, r.generation_id), (0, 1), "JoinGroup v{v}");
        assert_eq!(r.leader, r.member_id);
        assert_eq!(r.members.len(), 1);
        assert_eq!(r.members[0].metadata, Bytes::from_static(b"sub"));
        let member = r.member_id.to_string();

        let sv = v.min(5);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(1)
            .with_member_id(s(&member))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(Bytes::from_static(b"asg"))]);
        let r = c.call(sync, sv).await.unwrap();
        assert_eq!(
            (r.error_code, r.assignment.as_ref()),
            (0, &b"asg"[..]),
            "SyncGroup v{sv}"
        );

        let hv = v.min(4);
        let hb = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(1)
            .with_member_id(s(&member));
        assert_eq!(
            c.call(hb.clone(), hv).await.unwrap().error_code,
            0,
            "Heartbeat v{hv}"
        );
        let stale = c.call(hb.with_generation_id(0), hv).await.unwrap();
        assert_eq!(stale.error_code, 22, "stale generation at Heartbeat v{hv}");

        let cv = v.clamp(2, 9);
        let r = c.call(commit(&group, 1, &member, 5), cv).await.unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{cv}"
        );
        let r = c.call(commit(&group, 0, &member, 1), cv).await.unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code, 22,
            "stale commit v{cv}"
        );

        let fv = v.clamp(1, 9);
        let r = c.call(fetch(&group, fv), fv).await.unwrap();
        assert_eq!(fetched(&r, fv), (5, "meta".into()), "OffsetFetch v{fv}");

        let dv = v.min(5);
        let describe = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))]);
        let r = c.call(describe.clone(), dv).await.unwrap();
        let g = &r.groups[0];
        assert_eq!(
            (
                g.group_state.as_str(),
                g.protocol_data.as_str(),
                g.members.len()
            ),
            ("Stable", "range", 1),
            "DescribeGroups v{dv}"
        );
        assert_eq!(g.members[0].member_assignment.as_ref(), b"asg");

        let lv = v.min(5);
        let r = c.call(ListGroupsRequest::default(), lv).await.unwrap();
        assert!(
            r.groups.iter().any(|g| g.group_id.as_str() == group),
            "ListGroups v{lv}"
        );

        let leave_v = v.min(5);
        let leave = if leave_v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&member))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_member_id(s(&member))
        };
        let r = c.call(leave, leave_v).await.unwrap();
        let code = if leave_v >= 3 {
            r.members[0].error_code
        } else {
            r.error_code
        };
        assert_eq!(code, 0, "LeaveGroup v{leave_v}");
        let r = c.call(describe, dv).await.unwrap();
        assert_eq!(r.groups[0].group_state.as_str(), "Empty");

        let delv = v.min(2);
        let del = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&group))]);
        let r = c.call(del.clone(), delv).await.unwrap();
        assert_eq!(r.results[0].error_code, 0, "DeleteGroups v{delv}");
        let r = c.call(del, delv).await.unwrap();
        assert_eq!(r.results[0].error_code, 69, "deleting twice at v{delv}");
    }
    // OffsetDelete on a memberless group's simple commit.
    let r = c.call(commit("simple", -1, "", 7), 8).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let del = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("simple")))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(name("gt"))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0)
            ])]);
    let r = c.call(del, 0).await.unwrap();
    assert_eq!(
        (r.error_code, r.topics[0].partitions[0].error_code),
        (0, 0),
        "OffsetDelete v0"
    );
    let r = c.call(fetch("simple", 7), 7).await.unwrap();
    assert_eq!(fetched(&r, 7).0, -1, "deleted offsets read as none");
    node.stop();
}

/// `__consumer_offsets` is compacted by the log cleaner (each group's newest offset
/// per partition stays), and the committed offsets come back the same after a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_are_cleaned_and_survive_a_restart() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;

    let dir = tempfile::tempdir().unwrap();
    let tweak = |c: &mut BrokerConfig| {
        c.offsets_topic_num_partitions = 1;
        c.offsets_topic_segment_bytes = 4096;
        c.log_cleaner_backoff_ms = 100;
    };
    let node = start(&dir, tweak).await;
    let mut c = connect(&node).await;
    create(&mut c, "gt", 2, 7).await;
    find_coordinators(&mut c).await;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let commit = |group: &str, p: i32, offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(name("gt"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(s(&format!("at {offset}"))))])])
    };
    for i in 1..=400 {
        for (group, p) in [("one", 0), ("two", 1)] {
            let r = c.call(commit(group, p, i), 8).await.unwrap();
            assert_eq!(r.topics[0].partitions[0].error_code, 0);
        }
    }
    let log = node.broker.partition("__consumer_offsets", 0).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // 800 commit records of about 80 bytes, 16 segments' worth, of which two keys
    // live: the cleaned segments shrink to a few batches.
    let compacted = || log.size_bytes() <= 3 * 4096;
    while !compacted() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        compacted(),
        "not compacted: {} bytes in {} segments",
        log.size_bytes(),
        log.segment_count()
    );
    assert_eq!(log.log_end_offset(), 800, "offsets are kept");
    let fetch = |group: &str| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(name("gt"))
                .with_partition_indexes(vec![0, 1])]))
    };
    let committed = |r: OffsetFetchResponse| -> Vec<(i64, String)> {
        r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.committed_offset, p.metadata.clone().unwrap().to_string()))
            .collect()
    };
    let want_one = vec![(400, "at 400".to_string()), (-1, String::new())];
    let want_two = vec![(-1, String::new()), (400, "at 400".to_string())];
    assert_eq!(committed(c.call(fetch("one"), 7).await.unwrap()), want_one);
    node.stop();
    drop(c);
    drop(log);
    let node = start(&dir, tweak).await;
    let mut c = connect(&node).await;
    assert_eq!(committed(c.call(fetch("one"), 7).await.unwrap()), want_one);
    assert_eq!(committed(c.call(fetch("two"), 7).await.unwrap()), want_two);
    node.stop();
}

/// An idempotent producer's batch: `count` records from sequence `seq`.
fn idempotent_batch(pid: i64, epoch: i16, seq: i32, count: i32) -> Bytes {
    producer_batch(pid, epoch, seq, count, false)
}

/// A producer's batch, transactional or only idempotent.
fn producer_batch(pid: i64, epoch: i16, seq: i32, count: i32, transactional: bool) -> Bytes {
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: seq + i,
            timestamp: 1,
            key: None,
            value: Some(Bytes::from(format!("{pid}-{}", seq + i))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// InitProducerId at every version gives distinct ids, never reused after a
/// restart; a retried batch is answered with its first offsets and stored once
/// (also after a restart, the state rebuilt from the log); gaps and old epochs are
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producers_are_deduplicated_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments, so producer snapshots are written at rolls and used at start.
    let node = start(&dir, |c| c.log_segment_bytes = 2048).await;
    let mut c = connect(&node).await;
    create(&mut c, "idem", 1, 7).await;
    let mut ids = Vec::new();
    for v in versions(ApiKey::InitProducerId) {
        let r = c
            .call(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000),
                v,
            )
            .await
            .unwrap();
        assert_eq!(
            (r.error_code, r.producer_epoch),
            (0, 0),
            "InitProducerId v{v}"
        );
        ids.push(r.producer_id.0);
    }
    let pid = ids[0];
    let send =
        |seq: i32, epoch: i16| produce_req("idem", 0, -1, idempotent_batch(pid, epoch, seq, 10));
    let code_and_offset = |r: ProduceResponse| {
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    };
    let mut expected = Vec::new();
    for i in 0..30 {
        let r = c.call(send(i * 10, 0), 10).await.unwrap();
        assert_eq!(code_and_offset(r), (0, i64::from(i) * 10));
        expected.extend((0..10).map(|j| format!("{pid}-{}", i * 10 + j)));
    }
    // The last batch again (a retry): its first offset, nothing stored.
    assert_eq!(
        code_and_offset(c.call(send(290, 0), 10).await.unwrap()),
        (0, 290)
    );
    assert_eq!(
        code_and_offset(c.call(send(310, 0), 10).await.unwrap()).0,
        45,
        "a gap"
    );
    node.stop();
    drop(c);

    let node = start(&dir, |c| c.log_segment_bytes = 2048).await;
    let mut c = connect(&node).await;
    // Still recognised after the restart, whether from a snapshot or the log.
    assert_eq!(
        code_and_offset(c.call(send(280, 0), 10).await.unwrap()),
        (0, 280)
    );
    assert_eq!(
        code_and_offset(c.call(send(300, 0), 10).await.unwrap()),
        (0, 300)
    );
    expected.extend((0..10).map(|j| format!("{pid}-{}", 300 + j)));
    assert_eq!(
        code_and_offset(c.call(send(0, 1), 10).await.unwrap()),
        (0, 310),
        "new epoch"
    );
    expected.extend((0..10).map(|j| format!("{pid}-{j}")));
    assert_eq!(
        code_and_offset(c.call(send(10, 0), 10).await.unwrap()).0,
        47,
        "old epoch"
    );
    let r = c
        .call(
            InitProducerIdRequest::default().with_transactional_id(None),
            4,
        )
        .await
        .unwrap();
    assert!(
        !ids.contains(&r.producer_id.0),
        "a producer id handed out again after a restart"
    );
    let mut got: Vec<String> = Vec::new();
    while got.len() < expected.len() {
        let r = c
            .call(fetch_req("idem", 0, got.len() as i64, 0), 12)
            .await
            .unwrap();
        let batch = fetched(&r);
        assert!(!batch.is_empty(), "the log ends at {}", got.len());
        got.extend(
            batch
                .into_iter()
                .map(|m| String::from_utf8(m.value.unwrap().to_vec()).unwrap()),
        );
    }
    assert_eq!(got, expected);
    assert!(
        std::fs::read_dir(dir.path().join("idem-0"))
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snapshot")),
        "rolls write producer snapshots"
    );
    node.stop();
}

/// The transactional APIs at every advertised version, and what read_committed
/// readers see: committed data after its marker, aborted data listed as aborted,
/// nothing past the last stable offset while a transaction is open; fencing of an
/// old epoch; KIP-890's refusal of a partition not in the transaction; transactional
/// offsets visible only once committed.
/// DescribeProducers, ListTransactions and DescribeTransactions at every advertised
/// version, while `txn` (producer `pid` at `epoch`) is open in `tt-0` from `start`.
async fn introspect_open_transaction(c: &mut Client, txn: &str, pid: i64, epoch: i16, start: i64) {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    for v in versions(ApiKey::DescribeProducers) {
        let req = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(name("tt"))
            .with_partition_indexes(vec![0, 9])]);
        let r = c.call(req, v).await.unwrap();
        let parts = &r.topics[0].partitions;
        assert_eq!(
            parts[1].error_code, 3,
            "DescribeProducers v{v}: no partition 9"
        );
        let me = parts[0]
            .active_producers
            .iter()
            .find(|p| p.producer_id.0 == pid)
            .expect("the producer is listed");
        assert_eq!(
            (
                me.producer_epoch,
                me.last_sequence,
                me.current_txn_start_offset
            ),
            (i32::from(epoch), 4, start),
            "DescribeProducers v{v}"
        );
    }
    for v in versions(ApiKey::ListTransactions) {
        let mut req = ListTransactionsRequest::default()
            .with_state_filters(vec![s("Ongoing"), s("Nonsense")])
            .with_duration_filter(-1);
        if v >= 2 {
            req = req.with_transactional_id_pattern(Some(s("tx-v.*")));
        }
        let r = c.call(req, v).await.unwrap();
        assert_eq!(r.error_code, 0, "ListTransactions v{v}");
        assert_eq!(r.unknown_state_filters, vec![s("Nonsense")]);
        let listed: Vec<_> = r
            .transaction_states
            .iter()
            .map(|t| t.transactional_id.to_string())
            .collect();
        assert_eq!(listed, vec![txn.to_string()], "ListTransactions v{v}");
        if v >= 1 {
            // Open for less than an hour: not listed under a one-hour duration filter.
            let r = c
                .call(
                    ListTransactionsRequest::default().with_duration_filter(3_600_000),
                    v,
                )
                .await
                .unwrap();
            assert!(r.transaction_states.is_empty(), "v{v}");
        }
        if v >= 2 {
            let r = c
                .call(
                    ListTransactionsRequest::default()
                        .with_duration_filter(-1)
                        .with_transactional_id_pattern(Some(s("("))),
                    v,
                )
                .await
                .unwrap();
            assert_eq!(r.error_code, 128, "INVALID_REGULAR_EXPRESSION");
        }
    }
    for v in versions(ApiKey::DescribeTransactions) {
        let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![
            TransactionalId(s(txn)),
            TransactionalId(s("never-seen")),
        ]);
        let r = c.call(req, v).await.unwrap();
        let t = &r.transaction_states[0];
        assert_eq!(t.error_code, 0, "DescribeTransactions v{v}");
        assert_eq!(
            (
                t.transaction_state.as_str(),
                t.producer_id.0,
                t.producer_epoch,
                t.transaction_timeout_ms
            ),
            ("Ongoing", pid, epoch, 60_000)
        );
        assert!((now_ms() - 60_000..=now_ms()).contains(&t.transaction_start_time_ms));
        assert_eq!(
            t.topics.len(),
            2,
            "tt and __consumer_offsets: {:?}",
            t.topics
        );
        // "never-seen" hashes to a partition of this single node's coordinator.
        assert_eq!(
            r.transaction_states[1].error_code, 105,
            "TRANSACTIONAL_ID_NOT_FOUND"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_at_every_advertised_version() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };

    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |c| {
        c.offsets_topic_num_partitions = 3;
        c.transaction_state_log_num_partitions = 3;
    })
    .await;
    let mut c = connect(&node).await;
    create(&mut c, "tt", 2, 7).await;
    find_coordinators(&mut c).await;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let fetch_committed = |offset: i64| {
        let mut r = fetch_req("tt", 0, offset, 0);
        r.isolation_level = 1;
        r
    };
    let values = |r: &FetchResponse| -> Vec<String> {
        fetched(r)
            .into_iter()
            .map(|m| String::from_utf8(m.value.unwrap().to_vec()).unwrap())
            .collect()
    };
    for v in versions(ApiKey::InitProducerId) {
        let txn = format!("tx-v{v}");
        let init = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(&txn))))
            .with_transaction_timeout_ms(60_000);
        let r = c.call(init.clone(), v).await.unwrap();
        assert_eq!(
            r.error_code, 0,
            "InitProducerId v{v} with a transactional id"
        );
        let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
        let av = v.min(3);
        let add = |epoch: i16, partition: i32| {
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s(&txn)))
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(name("tt"))
                    .with_partitions(vec![partition])])
        };
        let r = c.call(add(epoch, 0), av).await.unwrap();
        assert_eq!(
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code, 0,
            "AddPartitionsToTxn v{av}"
        );
        let start = c
            .call(fetch_req("tt", 0, 0, 0), 12)
            .await
            .unwrap()
            .responses[0]
            .partitions[0]
            .high_watermark;
        let batch = |seq| producer_batch(pid, epoch, seq, 5, true);
        let r = c
            .call(produce_req("tt", 0, -1, batch(0)), 10)
            .await
            .unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        // Not added: refused (KIP-890).
        let r = c
            .call(produce_req("tt", 1, -1, batch(0)), 10)
            .await
            .unwrap();
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 48,
            "partition not in the txn"
        );
        // Open: read_committed stops at the first offset of the transaction.
        let r = c.call(fetch_committed(start), 12).await.unwrap();
        assert_eq!(r.responses[0].partitions[0].last_stable_offset, start);
        assert!(values(&r).is_empty());
        // Offsets committed inside the transaction.
        let ov = v.min(3);
        let r = c
            .call(
                AddOffsetsToTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(&txn)))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_group_id(GroupId(s(&txn))),
                ov,
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 0, "AddOffsetsToTxn v{ov}");
        let r = c
            .call(
                TxnOffsetCommitRequest::default()
                    .with_transactional_id(TransactionalId(s(&txn)))
                    .with_group_id(GroupId(s(&txn)))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_generation_id(-1)
                    .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                        .with_name(name("tt"))
                        .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42)
                            .with_committed_metadata(Some(s("m")))])]),
                ov,
            )
            .await
            .unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "TxnOffsetCommit v{ov}"
        );
        let offset_fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(&txn)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(name("tt"))
                .with_partition_indexes(vec![0])]));
        let before = c.call(offset_fetch.clone(), 7).await.unwrap();
        assert_eq!(
            before.topics[0].partitions[0].committed_offset, -1,
            "not before the commit"
        );
        let stable = c
            .call(offset_fetch.clone().with_require_stable(true), 7)
            .await
            .unwrap();
        assert_eq!(
            stable.topics[0].partitions[0].error_code, 88,
            "require_stable: UNSTABLE_OFFSET_COMMIT while a transactional commit is pending"
        );
        // The open transaction as kafka-transactions sees it.
        introspect_open_transaction(&mut c, &txn, pid, epoch, start).await;
        // Commit on even versions, abort on odd ones.
        let commit = v % 2 == 0;
        let r = c
            .call(
                EndTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(&txn)))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_committed(commit),
                av,
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 0, "EndTxn v{av}");
        let r = c.call(fetch_committed(start), 12).await.unwrap();
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.last_stable_offset, p.high_watermark, "decided: LSO = HW");
        assert_eq!(p.high_watermark, start + 6, "five records and a marker");
        let aborted = p.aborted_transactions.clone().unwrap_or_default();
        let after = c.call(offset_fetch, 7).await.unwrap();
        let committed_offset = after.topics[0].partitions[0].committed_offset;
        if commit {
            assert_eq!(values(&r).len(), 5);
            assert!(aborted.is_empty());
            assert_eq!(committed_offset, 42, "offsets commit with the transaction");
        } else {
            // The records are served; the client drops them using the aborted list.
            assert_eq!(aborted.len(), 1, "aborted transaction listed");
            assert_eq!(
                (aborted[0].producer_id.0, aborted[0].first_offset),
                (pid, start)
            );
            assert_eq!(committed_offset, -1, "offsets abort with the transaction");
        }
        // A new producer with the same id fences this one.
        let r = c.call(init, v).await.unwrap();
        assert_eq!((r.error_code, r.producer_epoch), (0, epoch + 1));
        let r = c.call(add(epoch, 0), av).await.unwrap();
        assert_eq!(
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code, 90,
            "the old epoch is fenced"
        );
    }
    node.stop();
}

/// A transaction open when the broker stops is still open after a restart (the last
/// stable offset held back, the coordinator's state rebuilt); the producer's
/// successor aborts it, and a transaction that outlives its timeout is aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_survive_a_restart_and_time_out() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;

    let dir = tempfile::tempdir().unwrap();
    let tweak = |c: &mut BrokerConfig| c.transaction_state_log_num_partitions = 2;
    let node = start(&dir, tweak).await;
    let mut c = connect(&node).await;
    create(&mut c, "tr", 1, 7).await;
    find_coordinators(&mut c).await;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let init = |txn: &str, timeout_ms: i32| {
        InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(txn))))
            .with_transaction_timeout_ms(timeout_ms)
    };
    let add = |txn: &str, pid: i64, epoch: i16| {
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(txn)))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(name("tr"))
                .with_partitions(vec![0])])
    };
    let lso_and_hw = |r: FetchResponse| {
        let p = &r.responses[0].partitions[0];
        (p.last_stable_offset, p.high_watermark)
    };
    let r = c.call(init("slow", 60_000), 4).await.unwrap();
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    c.call(add("slow", pid, epoch), 3).await.unwrap();
    let batch = producer_batch(pid, epoch, 0, 3, true);
    c.call(produce_req("tr", 0, -1, batch), 10).await.unwrap();
    node.stop();
    drop(c);

    let node = start(&dir, tweak).await;
    let mut c = connect(&node).await;
    let mut fetch = fetch_req("tr", 0, 0, 0);
    fetch.isolation_level = 1;
    assert_eq!(
        lso_and_hw(c.call(fetch.clone(), 12).await.unwrap()),
        (0, 3),
        "still open"
    );
    // The successor: the first attempt aborts the open transaction, a retry succeeds.
    let mut r = c.call(init("slow", 60_000), 4).await.unwrap();
    assert_eq!(
        r.error_code, 51,
        "CONCURRENT_TRANSACTIONS while the old one is aborted"
    );
    for _ in 0..100 {
        r = c.call(init("slow", 60_000), 4).await.unwrap();
        if r.error_code == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!((r.error_code, r.producer_id.0), (0, pid));
    assert!(r.producer_epoch > epoch);
    let f = c.call(fetch.clone(), 12).await.unwrap();
    let aborted = f.responses[0].partitions[0]
        .aborted_transactions
        .clone()
        .unwrap();
    assert_eq!(lso_and_hw(f), (4, 4), "aborted: three records and a marker");
    assert_eq!(aborted.len(), 1);

    // A transaction past its timeout is aborted by the coordinator.
    let r = c.call(init("brief", 200), 4).await.unwrap();
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    c.call(add("brief", pid, epoch), 3).await.unwrap();
    let batch = producer_batch(pid, epoch, 0, 2, true);
    c.call(produce_req("tr", 0, -1, batch), 10).await.unwrap();
    assert_eq!(lso_and_hw(c.call(fetch.clone(), 12).await.unwrap()), (4, 6));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut seen = (0, 0);
    while std::time::Instant::now() < deadline {
        seen = lso_and_hw(c.call(fetch.clone(), 12).await.unwrap());
        if seen == (7, 7) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, (7, 7), "timed out and aborted");
    let r = c
        .call(
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s("brief")))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(true),
            3,
        )
        .await
        .unwrap();
    assert_eq!(r.error_code, 90, "the timed-out producer is fenced");
    node.stop();
}

/// A CreateTopics request for one single-partition topic with `configs`.
fn with_configs(topic: &str, configs: &[(&str, &str)]) -> CreateTopicsRequest {
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Topic configs shape what is stored (Kafka's LogValidator): `compression.type`
/// recompresses, LogAppendTime stamps the broker's time (and the produce answer says
/// it), timestamps outside `message.timestamp.before/after.max.ms` are refused with
/// INVALID_TIMESTAMP; configs Sluice cannot honour are refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_shape_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    let created =
        |r: CreateTopicsResponse| (r.topics[0].error_code, r.topics[0].error_message.clone());
    for (topic, configs) in [
        ("zstd", vec![("compression.type", "zstd")]),
        (
            "appended",
            vec![("message.timestamp.type", "LogAppendTime")],
        ),
        ("recent", vec![("message.timestamp.before.max.ms", "60000")]),
    ] {
        let r = c.call(with_configs(topic, &configs), 7).await.unwrap();
        assert_eq!(created(r).0, 0, "{topic}");
    }
    let r = c
        .call(
            with_configs("unclean", &[("unclean.leader.election.enable", "true")]),
            7,
        )
        .await
        .unwrap();
    let (code, message) = created(r);
    assert_eq!(code, 40, "INVALID_CONFIG");
    assert!(message.unwrap().contains("unclean.leader.election.enable"));

    let produce = |topic: &str, ts: i64, compression: Compression| {
        let m = Message {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from("v".repeat(2000))),
            timestamp: ts,
        };
        produce_req(
            topic,
            0,
            -1,
            encode_batch(&[m.clone(), m], compression).unwrap(),
        )
    };
    let answer = |r: ProduceResponse| {
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.log_append_time_ms)
    };
    let first_batch = |r: &FetchResponse| {
        let records = r.responses[0].partitions[0].records.clone().unwrap();
        sluice_storage::batch::validate(&records).unwrap()
    };
    let now = now_ms();

    // compression.type=zstd: a gzip batch is stored as zstd, its records intact.
    let r = c
        .call(produce("zstd", now, Compression::Gzip), 9)
        .await
        .unwrap();
    assert_eq!(answer(r), (0, -1));
    let f = c.call(fetch_req("zstd", 0, 0, 0), 12).await.unwrap();
    assert_eq!(first_batch(&f).compression(), 4);
    let got = fetched(&f);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].value.as_ref().unwrap().len(), 2000);

    // LogAppendTime: the broker's time, whatever the producer said.
    let r = c
        .call(produce("appended", 7, Compression::None), 9)
        .await
        .unwrap();
    let (code, appended_at) = answer(r);
    assert_eq!(code, 0);
    assert!((now..now + 60_000).contains(&appended_at), "{appended_at}");
    let f = c.call(fetch_req("appended", 0, 0, 0), 12).await.unwrap();
    let h = first_batch(&f);
    assert_eq!((h.attributes & 0x08, h.max_timestamp), (0x08, appended_at));
    assert!(fetched(&f).iter().all(|r| r.timestamp == appended_at));

    // CreateTime bounds: before.max.ms set here, after.max.ms at Kafka 4's hour.
    for (ts, code) in [(now - 120_000, 32), (now + 7_200_000, 32), (now, 0)] {
        let r = c
            .call(produce("recent", ts, Compression::Lz4), 9)
            .await
            .unwrap();
        assert_eq!(answer(r).0, code, "timestamp {}", ts - now);
    }
    let f = c.call(fetch_req("recent", 0, 0, 0), 12).await.unwrap();
    assert_eq!(fetched(&f).len(), 2, "only the batch in bounds was stored");
    node.stop();
}

/// A topic's configs as DescribeConfigs reports them.
async fn topic_configs(c: &mut Client, topic: &str) -> BTreeMap<String, String> {
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.into()))
            .with_configuration_keys(None)]);
    let r = c.call(req, 4).await.unwrap();
    r.results[0]
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().unwrap().to_string()))
        .collect()
}

/// IncrementalAlterConfigs at every advertised version: SET and DELETE, APPEND and
/// SUBTRACT on a list config (KIP-339), refused on a config that is not a list; the
/// topic's configs then read back through DescribeConfigs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_alter_configs_sets_deletes_appends_and_subtracts() {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    let alter = |ops: &[(&str, i8, Option<&str>)]| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("altered"))
                .with_configs(
                    ops.iter()
                        .map(|(k, op, v)| {
                            AlterableConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_config_operation(*op)
                                .with_value(v.map(|v| StrBytes::from_string(v.into())))
                        })
                        .collect(),
                ),
        ])
    };
    for v in versions(ApiKey::IncrementalAlterConfigs) {
        let _ = c
            .call(
                DeleteTopicsRequest::default().with_topic_names(vec![name("altered")]),
                4,
            )
            .await;
        let r = c.call(with_configs("altered", &[]), 7).await.unwrap();
        assert_eq!(r.topics[0].error_code, 0);
        let r = c
            .call(
                alter(&[
                    ("retention.ms", 0, Some("60000")),
                    ("cleanup.policy", 2, Some("compact")),
                ]),
                v,
            )
            .await
            .unwrap();
        assert_eq!(
            r.responses[0].error_code, 0,
            "v{v}: {:?}",
            r.responses[0].error_message
        );
        let got = topic_configs(&mut c, "altered").await;
        assert_eq!(got["retention.ms"], "60000");
        assert_eq!(
            got["cleanup.policy"], "delete,compact",
            "v{v}: appended to the default"
        );
        let r = c
            .call(
                alter(&[
                    ("cleanup.policy", 3, Some("delete")),
                    ("retention.ms", 1, None),
                ]),
                v,
            )
            .await
            .unwrap();
        assert_eq!(r.responses[0].error_code, 0);
        let got = topic_configs(&mut c, "altered").await;
        assert_eq!(got["cleanup.policy"], "compact");
        assert_eq!(
            got["retention.ms"], "604800000",
            "v{v}: back to the default"
        );
        // APPEND to a config that is not a list; SUBTRACT of the last policy.
        for ops in [
            &[("retention.ms", 2i8, Some("5"))][..],
            &[("cleanup.policy", 3, Some("compact"))],
        ] {
            let r = c.call(alter(ops), v).await.unwrap();
            assert_eq!(
                r.responses[0].error_code, 40,
                "v{v}: INVALID_CONFIG for {ops:?}"
            );
        }
        assert_eq!(
            topic_configs(&mut c, "altered").await["cleanup.policy"],
            "compact",
            "nothing changed"
        );
    }
    // AlterConfigs (legacy) replaces the whole set: cleanup.policy, not named, goes
    // back to its default.
    for v in versions(ApiKey::AlterConfigs) {
        use kafka_protocol::messages::alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let req =
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("altered"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.bytes"))
                    .with_value(Some(StrBytes::from_string(format!(
                        "{}",
                        1_000_000 + v as i64
                    ))))])]);
        let r = c.call(req, v).await.unwrap();
        assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
        let got = topic_configs(&mut c, "altered").await;
        assert_eq!(got["retention.bytes"], format!("{}", 1_000_000 + v as i64));
        assert_eq!(got["cleanup.policy"], "delete", "v{v}");
        let bad =
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("altered"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("remote.storage.enable"))
                    .with_value(Some(StrBytes::from_static_str("true")))])]);
        let r = c.call(bad, v).await.unwrap();
        assert_eq!(r.responses[0].error_code, 40, "AlterConfigs v{v}");
        assert!(r.responses[0]
            .error_message
            .as_ref()
            .unwrap()
            .contains("tiered storage"));
    }
    node.stop();
}

/// KIP-848's consumer group protocol at every advertised version of
/// ConsumerGroupHeartbeat and ConsumerGroupDescribe: a join gets every partition by
/// topic id at epoch 1; commits need the member epoch (OffsetCommit v9); the group
/// is described and listed as a consumer group; a leave empties it; bad requests get
/// Kafka's codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_group_apis_at_every_advertised_version() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    assert_eq!(create(&mut c, "kt", 2, 7).await.topics[0].error_code, 0);
    find_coordinators(&mut c).await;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let join = |group: &str, member: &str| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![name("kt")]))
            .with_topic_partitions(Some(vec![]))
    };
    let commit = |group: &str, member: &str, epoch: i32| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(epoch)
            .with_member_id(s(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(name("kt"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(3)])])
    };
    for v in versions(ApiKey::ConsumerGroupHeartbeat) {
        let group = format!("kg-v{v}");
        // v0: the coordinator names the member; v1 (KIP-1082): the client does.
        let given = if v >= 1 { "member-one" } else { "" };
        let r = c.call(join(&group, given), v).await.unwrap();
        assert_eq!(r.error_code, 0, "v{v}: {:?}", r.error_message);
        let member = r.member_id.unwrap().to_string();
        assert!(
            !member.is_empty() && (v == 0 || member == given),
            "v{v}: {member}"
        );
        assert_eq!(r.member_epoch, 1, "v{v}");
        assert_eq!(r.heartbeat_interval_ms, 5_000);
        let a = r.assignment.unwrap();
        assert_eq!(a.topic_partitions.len(), 1);
        assert_eq!(a.topic_partitions[0].partitions, vec![0, 1]);
        let topic_id = a.topic_partitions[0].topic_id;
        // A plain heartbeat: same epoch, no assignment (nothing changed).
        let r = c
            .call(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_member_id(s(&member))
                    .with_member_epoch(1)
                    .with_rebalance_timeout_ms(-1),
                v,
            )
            .await
            .unwrap();
        assert_eq!((r.error_code, r.member_epoch), (0, 1), "v{v}");
        assert!(r.assignment.is_none(), "v{v}");
        // Commits carry the member epoch; a stale one is refused.
        let ok = c.call(commit(&group, &member, 1), 9).await.unwrap();
        assert_eq!(ok.topics[0].partitions[0].error_code, 0, "v{v}");
        let stale = c.call(commit(&group, &member, 0), 9).await.unwrap();
        assert_eq!(
            stale.topics[0].partitions[0].error_code, 113,
            "STALE_MEMBER_EPOCH"
        );
        let zombie = c.call(commit(&group, "zombie", 1), 9).await.unwrap();
        assert_eq!(
            zombie.topics[0].partitions[0].error_code, 25,
            "UNKNOWN_MEMBER_ID"
        );
        // A consumer-protocol member must commit with v9+ (its member epoch).
        let old = c.call(commit(&group, &member, 1), 8).await.unwrap();
        assert_eq!(
            old.topics[0].partitions[0].error_code, 35,
            "UNSUPPORTED_VERSION"
        );
        // OffsetFetch v9 checks the member and epoch it names.
        {
            use kafka_protocol::messages::offset_fetch_request::{
                OffsetFetchRequestGroup, OffsetFetchRequestTopics,
            };
            let fetch = |m: Option<&str>, e: i32| {
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_member_id(m.map(s))
                    .with_member_epoch(e)
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(name("kt"))
                        .with_partition_indexes(vec![0])]))])
            };
            let ok = c.call(fetch(Some(&member), 1), 9).await.unwrap();
            assert_eq!(ok.groups[0].error_code, 0);
            assert_eq!(ok.groups[0].topics[0].partitions[0].committed_offset, 3);
            let stale = c.call(fetch(Some(&member), 0), 9).await.unwrap();
            assert_eq!(stale.groups[0].error_code, 113, "STALE_MEMBER_EPOCH");
            let unknown = c.call(fetch(Some("zombie"), 1), 9).await.unwrap();
            assert_eq!(unknown.groups[0].error_code, 25, "UNKNOWN_MEMBER_ID");
            let admin = c.call(fetch(None, -1), 9).await.unwrap();
            assert_eq!(
                admin.groups[0].error_code, 0,
                "an admin fetch names no member"
            );
        }
        // An epoch from the future fences.
        let r = c
            .call(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_member_id(s(&member))
                    .with_member_epoch(9)
                    .with_rebalance_timeout_ms(-1),
                v,
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 110, "FENCED_MEMBER_EPOCH");
        for dv in versions(ApiKey::ConsumerGroupDescribe) {
            let d = c
                .call(
                    ConsumerGroupDescribeRequest::default()
                        .with_group_ids(vec![GroupId(s(&group)), GroupId(s("nope"))]),
                    dv,
                )
                .await
                .unwrap();
            let g = &d.groups[0];
            assert_eq!(g.error_code, 0);
            assert_eq!(g.group_state.as_str(), "Stable");
            assert_eq!((g.group_epoch, g.assignment_epoch), (1, 1));
            assert_eq!(g.assignor_name.as_str(), "uniform");
            let m = &g.members[0];
            assert_eq!(m.member_id.as_str(), member);
            assert_eq!(m.member_epoch, 1);
            assert_eq!(m.assignment.topic_partitions[0].topic_id, topic_id);
            assert_eq!(m.assignment.topic_partitions[0].topic_name.as_str(), "kt");
            assert_eq!(m.target_assignment, m.assignment);
            assert_eq!(d.groups[1].error_code, 69, "GROUP_ID_NOT_FOUND");
        }
        let listed = c
            .call(
                ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
                5,
            )
            .await
            .unwrap();
        assert!(listed
            .groups
            .iter()
            .any(|l| l.group_id.as_str() == group && l.group_type.as_str() == "consumer"));
        // DescribeGroups describes classic groups only.
        let classic = c
            .call(
                DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))]),
                5,
            )
            .await
            .unwrap();
        assert_eq!(classic.groups[0].error_code, 69);
        for dv in versions(ApiKey::DescribeGroups) {
            let d = c
                .call(
                    DescribeGroupsRequest::default().with_groups(vec![GroupId(s("no-such"))]),
                    dv,
                )
                .await
                .unwrap();
            let g = &d.groups[0];
            assert_eq!(g.group_state.as_str(), "Dead");
            // KIP-1043: from v6 an unknown group is GROUP_ID_NOT_FOUND, with a message.
            let want = if dv >= 6 { 69 } else { 0 };
            assert_eq!(g.error_code, want, "DescribeGroups v{dv}");
            assert_eq!(g.error_message.is_some(), dv >= 6);
        }
        // Leave (epoch -1): answered with -1; the group is empty.
        let r = c
            .call(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_member_id(s(&member))
                    .with_member_epoch(-1)
                    .with_rebalance_timeout_ms(-1),
                v,
            )
            .await
            .unwrap();
        assert_eq!((r.error_code, r.member_epoch), (0, -1), "v{v}");
        let d = c
            .call(
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(&group))]),
                0,
            )
            .await
            .unwrap();
        assert_eq!(d.groups[0].group_state.as_str(), "Empty");
        // Bad requests: Kafka's codes, with a message.
        if v >= 1 {
            // Regex subscriptions came with v1.
            let mut bad = join(&group, "m2").with_subscribed_topic_regex(Some(s("(")));
            bad.subscribed_topic_names = None;
            let r = c.call(bad, v).await.unwrap();
            assert_eq!(r.error_code, 128, "INVALID_REGULAR_EXPRESSION");
            assert!(r.error_message.is_some());
        }
        let r = c
            .call(
                join(&group, "m2").with_server_assignor(Some(s("sticky"))),
                v,
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 112, "UNSUPPORTED_ASSIGNOR");
        let r = c
            .call(join(&group, "m2").with_rebalance_timeout_ms(-1), v)
            .await
            .unwrap();
        assert_eq!(r.error_code, 42, "INVALID_REQUEST");
        let r = c
            .call(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s("unknown-group")))
                    .with_member_id(s("m"))
                    .with_member_epoch(3)
                    .with_rebalance_timeout_ms(-1),
                v,
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 69, "GROUP_ID_NOT_FOUND");
    }
    node.stop();
}

/// DescribeTopicPartitions (KIP-966) at every advertised version: the topics by name,
/// their partitions in order, paged by the partition limit with a cursor, an unknown
/// topic named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_topic_partitions_pages_through_topics_in_order() {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    create(&mut c, "b-three", 3, 7).await;
    create(&mut c, "a-two", 2, 7).await;
    for v in versions(ApiKey::DescribeTopicPartitions) {
        let ask = |cursor: Option<(&str, i32)>| {
            DescribeTopicPartitionsRequest::default()
                .with_topics(
                    ["b-three", "a-two", "nope"]
                        .iter()
                        .map(|t| TopicRequest::default().with_name(name(t)))
                        .collect(),
                )
                .with_response_partition_limit(2)
                .with_cursor(cursor.map(|(t, p)| {
                    Cursor::default()
                        .with_topic_name(name(t))
                        .with_partition_index(p)
                }))
        };
        let seen = |r: &DescribeTopicPartitionsResponse| -> Vec<(String, i32)> {
            r.topics
                .iter()
                .flat_map(|t| {
                    let n = t.name.as_ref().unwrap().to_string();
                    t.partitions
                        .iter()
                        .map(move |p| (n.clone(), p.partition_index))
                })
                .collect()
        };
        let r = c.call(ask(None), v).await.unwrap();
        assert_eq!(seen(&r), vec![("a-two".into(), 0), ("a-two".into(), 1)]);
        assert_eq!(r.topics[0].partitions[0].leader_id.0, 1);
        assert_eq!(r.topics[0].partitions[0].isr_nodes, vec![BrokerId(1)]);
        let next = r.next_cursor.expect("more to come");
        assert_eq!(
            (next.topic_name.as_str(), next.partition_index),
            ("b-three", 0)
        );
        let r = c.call(ask(Some(("b-three", 0))), v).await.unwrap();
        assert_eq!(seen(&r), vec![("b-three".into(), 0), ("b-three".into(), 1)]);
        let next = r.next_cursor.expect("more to come");
        assert_eq!(
            (next.topic_name.as_str(), next.partition_index),
            ("b-three", 2)
        );
        let r = c.call(ask(Some(("b-three", 2))), v).await.unwrap();
        assert_eq!(seen(&r), vec![("b-three".into(), 2)]);
        assert_eq!(
            r.topics.last().unwrap().error_code,
            3,
            "nope: UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert!(r.next_cursor.is_none());
    }
    node.stop();
}

/// Retention drops whole sealed segments: by age of their newest record
/// (`retention.ms`) and by size (`retention.bytes`); never the active segment, never a
/// `cleanup.policy=compact` topic; reads below the new log start are out of range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_and_excess_segments() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    let now = now_ms();
    for (topic, configs) in [
        (
            "aged",
            vec![("segment.bytes", "2048"), ("retention.ms", "3600000")],
        ),
        (
            "sized",
            vec![("segment.bytes", "2048"), ("retention.bytes", "6000")],
        ),
        (
            "kept",
            vec![
                ("segment.bytes", "2048"),
                ("retention.ms", "1"),
                ("cleanup.policy", "compact"),
            ],
        ),
    ] {
        let r = c.call(with_configs(topic, &configs), 7).await.unwrap();
        assert_eq!(r.topics[0].error_code, 0, "{topic}");
    }
    // Two days old in "aged" (then fresh ones), fresh in the others.
    for i in 0..30 {
        let ts = if i < 20 {
            now - 2 * 24 * 3600 * 1000
        } else {
            now
        };
        for topic in ["aged", "sized", "kept"] {
            let ts = if topic == "aged" { ts } else { now };
            let batch = encode_batch(&messages(20, ts), Compression::None).unwrap();
            let r = c.call(produce_req(topic, 0, -1, batch), 10).await.unwrap();
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
    }
    let log = |t: &str| node.broker.partition(t, 0).unwrap();
    let before = |t: &str| (log(t).segment_count(), log(t).log_start_offset());
    assert!(before("aged").0 > 5 && before("sized").0 > 5);
    node.broker.apply_retention();

    // aged: every segment holding only old records went; the fresh ones stay.
    let aged = log("aged");
    assert!(aged.log_start_offset() > 0 && aged.log_start_offset() <= 400);
    let r = c
        .call(fetch_req("aged", 0, aged.log_start_offset(), 0), 12)
        .await
        .unwrap();
    let got = fetched(&r);
    assert!(got.iter().any(|m| m.timestamp >= now), "fresh records kept");
    let r = c.call(fetch_req("aged", 0, 0, 0), 12).await.unwrap();
    assert_eq!(
        r.responses[0].partitions[0].error_code, 1,
        "OFFSET_OUT_OF_RANGE below the start"
    );

    // sized: about retention.bytes left, plus the active segment.
    let sized = log("sized");
    assert!(sized.log_start_offset() > 0);
    assert!(
        sized.segment_count() <= 5,
        "{} segments",
        sized.segment_count()
    );
    assert_eq!(sized.log_end_offset(), 600, "nothing after the start lost");

    assert_eq!(
        before("kept").1,
        0,
        "compact topics are not subject to retention"
    );
    node.stop();
}

/// GROUP config resources (KIP-848's group configs): IncrementalAlterConfigs sets a
/// group's heartbeat interval and session timeout, checked by name and range;
/// DescribeConfigs shows them with their source; the coordinator uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_configs_are_set_described_and_used() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    assert_eq!(create(&mut c, "gc", 1, 7).await.topics[0].error_code, 0);
    find_coordinators(&mut c).await;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let alter = |configs: &[(&str, Option<&str>)]| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(32)
                .with_resource_name(s("cg"))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(s(k))
                                .with_config_operation(if v.is_some() { 0 } else { 1 })
                                .with_value(v.map(s))
                        })
                        .collect(),
                ),
        ])
    };
    let describe = || {
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(32)
            .with_resource_name(s("cg"))
            .with_configuration_keys(None)])
    };
    for v in versions(ApiKey::IncrementalAlterConfigs) {
        let r = c
            .call(
                alter(&[("consumer.heartbeat.interval.ms", Some("1000"))]),
                v,
            )
            .await
            .unwrap();
        assert_eq!(
            r.responses[0].error_code, 0,
            "v{v}: {:?}",
            r.responses[0].error_message
        );
    }
    for v in versions(ApiKey::DescribeConfigs) {
        let d = c.call(describe(), v).await.unwrap();
        assert_eq!(
            d.results[0].error_code, 0,
            "v{v}: {:?}",
            d.results[0].error_message
        );
        let got: BTreeMap<String, (String, i8)> = d.results[0]
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    (
                        c.value.as_deref().unwrap_or_default().to_string(),
                        c.config_source,
                    ),
                )
            })
            .collect();
        assert_eq!(
            got["consumer.heartbeat.interval.ms"],
            ("1000".into(), 8),
            "v{v}"
        );
        assert_eq!(
            got["consumer.session.timeout.ms"],
            ("45000".into(), 5),
            "v{v}"
        );
    }
    // The coordinator tells the group's members the interval set.
    let hb = c
        .call(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("cg")))
                .with_member_id(s("m"))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![name("gc")]))
                .with_topic_partitions(Some(vec![])),
            1,
        )
        .await
        .unwrap();
    assert_eq!((hb.error_code, hb.heartbeat_interval_ms), (0, 1000));
    // Refused by name: share-group configs, unknown ones, out-of-range values.
    for (k, v, why) in [
        ("share.auto.offset.reset", "by_duration:PT1H", "by_duration"),
        ("share.isolation.level", "read_committed", "not served"),
        ("consumer.bogus", "1", "unknown group config"),
        ("consumer.session.timeout.ms", "900", "outside"),
        ("consumer.heartbeat.interval.ms", "50000", "below"),
        ("consumer.heartbeat.interval.ms", "soon", "whole number"),
    ] {
        let r = c.call(alter(&[(k, Some(v))]), 1).await.unwrap();
        assert_eq!(r.responses[0].error_code, 40, "{k}={v}");
        let msg = r.responses[0]
            .error_message
            .as_deref()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(why) && msg.contains(k), "{k}={v}: {msg}");
    }
    // Deleted: back to the broker's default.
    let r = c
        .call(alter(&[("consumer.heartbeat.interval.ms", None)]), 1)
        .await
        .unwrap();
    assert_eq!(r.responses[0].error_code, 0);
    let d = c.call(describe(), 4).await.unwrap();
    let interval = d.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "consumer.heartbeat.interval.ms")
        .unwrap();
    assert_eq!(
        (interval.value.as_deref(), interval.config_source),
        (Some("5000"), 5)
    );
    node.stop();
}

/// Share groups (KIP-932) over the wire: ShareGroupHeartbeat assigns, ShareFetch
/// opens a session and acquires records, a second member gets none of them, acks
/// are checked against what the member holds, session epochs are enforced,
/// ShareAcknowledge accepts and releases, a closed session gives back what its member
/// held, ShareGroupDescribe and ListGroups show the group, and the state reads back
/// through ReadShareGroupState.
#[tokio::test]
async fn share_group_apis_at_every_advertised_version() {
    use kafka_protocol::messages::share_acknowledge_request::{
        AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AckBatch,
    };
    use kafka_protocol::messages::share_fetch_request::{
        AcknowledgementBatch, FetchPartition, FetchTopic,
    };
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut c = connect(&node).await;
    assert_eq!(create(&mut c, "sq", 1, 7).await.topics[0].error_code, 0);
    find_coordinators(&mut c).await;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let v = *versions(ApiKey::ShareGroupHeartbeat).end();
    let hb = |member: &str, epoch: i32, topics: Option<Vec<TopicName>>| {
        ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("sg")))
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names(topics)
    };
    let a = c.call(hb("a", 0, Some(vec![name("sq")])), v).await.unwrap();
    assert_eq!(
        (a.error_code, a.member_epoch),
        (0, 1),
        "{:?}",
        a.error_message
    );
    let assigned = a.assignment.unwrap().topic_partitions;
    assert_eq!(assigned[0].partitions, vec![0]);
    let topic_id = assigned[0].topic_id;
    let b = c.call(hb("b", 0, Some(vec![name("sq")])), v).await.unwrap();
    assert_eq!((b.error_code, b.member_epoch), (0, 2));
    assert_eq!(
        b.assignment.unwrap().topic_partitions[0].partitions,
        vec![0],
        "one partition, two members: both read it"
    );
    let fenced = c.call(hb("a", 7, None), v).await.unwrap();
    assert_eq!(fenced.error_code, 110, "FENCED_MEMBER_EPOCH");
    let bad = c.call(hb("", 0, Some(vec![name("sq")])), v).await.unwrap();
    assert_eq!(bad.error_code, 42, "INVALID_REQUEST: no member id");
    // The default share.auto.offset.reset is latest: records from here on are read.
    for i in 0..2 {
        let r = c
            .call(
                produce_req(
                    "sq",
                    0,
                    -1,
                    encode_batch(&messages(5, i), Compression::None).unwrap(),
                ),
                9,
            )
            .await
            .unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let fetch = |member: &str, epoch: i32, acks: Vec<AcknowledgementBatch>, max_records: i32| {
        ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s("sg"))))
            .with_member_id(Some(s(member)))
            .with_share_session_epoch(epoch)
            .with_max_wait_ms(200)
            .with_max_bytes(1 << 20)
            .with_max_records(max_records)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(acks)])])
    };
    let v = *versions(ApiKey::ShareFetch).end();
    let acquired = |r: &ShareFetchResponse| -> Vec<(i64, i64, i16)> {
        r.responses
            .iter()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| &p.acquired_records)
            .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
            .collect()
    };
    // Nothing was produced before the group started: nothing to read (latest).
    let r = c.call(fetch("a", 0, vec![], 7), v).await.unwrap();
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.acquisition_lock_timeout_ms, 30_000);
    assert!(acquired(&r).is_empty(), "{r:?}");
    for i in 2..4 {
        c.call(
            produce_req(
                "sq",
                0,
                -1,
                encode_batch(&messages(5, i), Compression::None).unwrap(),
            ),
            9,
        )
        .await
        .unwrap();
    }
    let r = c.call(fetch("a", 1, vec![], 7), v).await.unwrap();
    assert_eq!(
        acquired(&r),
        vec![(10, 16, 1)],
        "at most max_records, part of a batch"
    );
    let p = &r.responses[0].partitions[0];
    assert!(!p.records.as_ref().unwrap().is_empty());
    // b gets the rest, never a's.
    let rb = c.call(fetch("b", 0, vec![], 100), v).await.unwrap();
    assert_eq!(acquired(&rb), vec![(17, 19, 1)]);
    // Session epochs: a's next is 2.
    let r = c.call(fetch("a", 5, vec![], 7), v).await.unwrap();
    assert_eq!(
        r.error_code, 123,
        "INVALID_SHARE_SESSION_EPOCH (and the session is gone)"
    );
    let r = c.call(fetch("a", 2, vec![], 7), v).await.unwrap();
    assert_eq!(r.error_code, 122, "SHARE_SESSION_NOT_FOUND");
    // a's session went with its records: they come back to a fresh session, delivered twice.
    let r = c.call(fetch("a", 0, vec![], 7), v).await.unwrap();
    assert_eq!(acquired(&r), vec![(10, 16, 2)]);
    // Acks: b may not acknowledge a's records; a accepts 10..=12, releases 13, rejects the rest.
    let ack = |first: i64, last: i64, types: Vec<i8>| {
        AcknowledgementBatch::default()
            .with_first_offset(first)
            .with_last_offset(last)
            .with_acknowledge_types(types)
    };
    let r = c
        .call(fetch("b", 1, vec![ack(10, 10, vec![1])], 100), v)
        .await
        .unwrap();
    assert_eq!(
        r.responses[0].partitions[0].acknowledge_error_code, 121,
        "INVALID_RECORD_STATE"
    );
    let va = *versions(ApiKey::ShareAcknowledge).end();
    let acknowledge = |member: &str, epoch: i32, batches: Vec<AckBatch>| {
        ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(s("sg"))))
            .with_member_id(Some(s(member)))
            .with_share_session_epoch(epoch)
            .with_topics(vec![AcknowledgeTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![AcknowledgePartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(batches)])])
    };
    let ab = |first: i64, last: i64, types: Vec<i8>| {
        AckBatch::default()
            .with_first_offset(first)
            .with_last_offset(last)
            .with_acknowledge_types(types)
    };
    let r = c.call(acknowledge("a", 0, vec![]), va).await.unwrap();
    assert_eq!(r.error_code, 123, "ShareAcknowledge cannot open a session");
    let r = c
        .call(
            acknowledge(
                "a",
                1,
                vec![ab(10, 12, vec![1]), ab(13, 16, vec![2, 3, 3, 3])],
            ),
            va,
        )
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    // 13 was released: delivered again (third time); the rest is done.
    let r = c.call(fetch("a", 2, vec![], 7), v).await.unwrap();
    assert_eq!(acquired(&r), vec![(13, 13, 3)]);
    // b closes its session holding 17..=19: they are released at once.
    let r = c.call(fetch("b", -1, vec![], 100), v).await.unwrap();
    assert_eq!(r.error_code, 0);
    assert!(acquired(&r).is_empty(), "a final fetch acquires nothing");
    let r = c
        .call(fetch("a", 3, vec![ack(13, 13, vec![1])], 100), v)
        .await
        .unwrap();
    assert_eq!(r.responses[0].partitions[0].acknowledge_error_code, 0);
    assert_eq!(acquired(&r), vec![(17, 19, 2)]);

    let d = c
        .call(
            ShareGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(s("sg")), GroupId(s("nope"))]),
            *versions(ApiKey::ShareGroupDescribe).end(),
        )
        .await
        .unwrap();
    let g = &d.groups[0];
    assert_eq!(
        (g.error_code, g.group_state.as_str(), g.group_epoch),
        (0, "Stable", 2)
    );
    assert_eq!(g.assignor_name.as_str(), "simple");
    assert_eq!(g.members.len(), 2);
    assert_eq!(
        g.members[0].assignment.topic_partitions[0].topic_name,
        name("sq")
    );
    assert_eq!(d.groups[1].error_code, 69, "GROUP_ID_NOT_FOUND");
    let l = c
        .call(
            ListGroupsRequest::default().with_types_filter(vec![s("share")]),
            5,
        )
        .await
        .unwrap();
    let listed: Vec<_> = l
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.group_type.to_string()))
        .collect();
    assert_eq!(listed, vec![("sg".to_string(), "share".to_string())]);
    // A consumer-protocol member may not take the share group's id.
    let r = c
        .call(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("sg")))
                .with_member_id(s("x"))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![name("sq")]))
                .with_topic_partitions(Some(vec![])),
            1,
        )
        .await
        .unwrap();
    assert_eq!(r.error_code, 69, "GROUP_ID_NOT_FOUND");

    // The state as stored: start 17 (10..=16 done), 17..=19 in flight.
    let read_state = |group: &str| {
        ReadShareGroupStateRequest::default()
            .with_group_id(s(group))
            .with_topics(vec![
                read_share_group_state_request::ReadStateData::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![
                        read_share_group_state_request::PartitionData::default().with_partition(0),
                    ]),
            ])
    };
    let r = c.call(read_state("sg"), 0).await.unwrap();
    let p = &r.results[0].partitions[0];
    assert_eq!((p.error_code, p.start_offset), (0, 17));
    let r = c.call(read_state("other"), 0).await.unwrap();
    assert_eq!(
        r.results[0].partitions[0].start_offset, -1,
        "nothing stored"
    );
    // DescribeShareGroupOffsets: the start offset of each share partition.
    let described = |r: &DescribeShareGroupOffsetsResponse| -> Vec<(String, i32, i64)> {
        r.groups[0]
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic_name.to_string(), p.partition_index, p.start_offset))
            })
            .collect()
    };
    use kafka_protocol::messages::describe_share_group_offsets_request::{
        DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic,
    };
    for v in versions(ApiKey::DescribeShareGroupOffsets) {
        let group = |topics| {
            DescribeShareGroupOffsetsRequest::default().with_groups(vec![
                DescribeShareGroupOffsetsRequestGroup::default()
                    .with_group_id(GroupId(s("sg")))
                    .with_topics(topics),
            ])
        };
        let all = c.call(group(None), v).await.unwrap();
        assert_eq!(described(&all), vec![("sq".to_string(), 0, 17)], "v{v}");
        let named = c
            .call(
                group(Some(vec![DescribeShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(name("sq"))
                    .with_partitions(vec![0, 5])])),
                v,
            )
            .await
            .unwrap();
        assert_eq!(
            described(&named),
            vec![("sq".to_string(), 0, 17), ("sq".to_string(), 5, -1)],
            "v{v}"
        );
        let errors: Vec<i16> = named.groups[0].topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(errors, vec![0, 3], "v{v}: sq has no partition 5");
    }
}
