//! DescribeQuorum: the metadata quorum (`__cluster_metadata`, partition 0) as Kafka's
//! `kafka-metadata-quorum describe` shows it: leader, epoch, high watermark and each
//! voter's log end. Kafka's brokers forward this to the active controller; a Sluice
//! node answers with what it knows: on the quorum leader every voter's log end, on
//! another node only its own (-1 for the rest). Every node is a voter, so there are no
//! observers. Fetch times are not tracked (-1).

use std::sync::Arc;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::codes;

const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn handle(broker: &Arc<Broker>, req: DescribeQuorumRequest, version: i16) -> ResponseKind {
    let q = broker.controller.quorum();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let out = PartitionData::default().with_partition_index(p.partition_index);
                    if t.topic_name.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                        return out.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION);
                    }
                    out.with_leader_id(BrokerId(q.leader))
                        .with_leader_epoch(q.term as i32)
                        .with_high_watermark(q.high_watermark)
                        .with_current_voters(
                            q.voters
                                .iter()
                                .map(|(id, _, end)| {
                                    ReplicaState::default()
                                        .with_replica_id(BrokerId(*id))
                                        .with_log_end_offset(*end)
                                        .with_last_fetch_timestamp(-1)
                                        .with_last_caught_up_timestamp(-1)
                                })
                                .collect(),
                        )
                })
                .collect();
            TopicData::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let mut response = DescribeQuorumResponse::default().with_topics(topics);
    if version >= 2 {
        // The voters' quorum addresses (a single node without voters has none).
        response = response.with_nodes(
            q.voters
                .iter()
                .filter_map(|(id, addr, _)| {
                    let (host, port) = addr.rsplit_once(':')?;
                    Some(Node::default().with_node_id(BrokerId(*id)).with_listeners(
                        vec![Listener::default()
                                .with_name(StrBytes::from_static_str("CONTROLLER"))
                                .with_host(StrBytes::from_string(
                                    host.trim_matches(['[', ']']).to_string(),
                                ))
                                .with_port(port.parse().ok()?)],
                    ))
                })
                .collect(),
        );
    }
    ResponseKind::DescribeQuorum(response)
}
