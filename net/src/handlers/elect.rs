//! ElectLeaders: preferred leader election on request (Kafka's
//! `kafka-leader-election --election-type PREFERRED`): each partition whose first
//! replica is live and in sync but does not lead gets it as leader through the
//! metadata quorum. Unclean elections are refused: Sluice never elects a replica
//! outside the ISR.

use std::sync::Arc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_core::cluster::metadata::Command;

use crate::broker::Broker;
use crate::codes;

const PREFERRED: i8 = 0;

pub async fn handle(broker: Arc<Broker>, req: ElectLeadersRequest, version: i16) -> ResponseKind {
    let image = broker.image();
    // No list: every partition (and then only the ones an election changed or
    // failed on are answered, as Kafka does).
    let every = req.topic_partitions.is_none();
    let asked: Vec<(String, Vec<i32>)> = match req.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect(),
        None => image
            .topics
            .iter()
            .map(|(name, t)| (name.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
    };
    let election_type = if version == 0 {
        PREFERRED
    } else {
        req.election_type
    };
    let mut results = Vec::with_capacity(asked.len());
    for (topic, partitions) in asked {
        let mut out = Vec::with_capacity(partitions.len());
        for p in partitions {
            let (code, message) = elect(&broker, &topic, p, election_type).await;
            if every && code == codes::ELECTION_NOT_NEEDED {
                continue;
            }
            out.push(
                PartitionResult::default()
                    .with_partition_id(p)
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string)),
            );
        }
        if !out.is_empty() || !every {
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(kafka_protocol::messages::TopicName(StrBytes::from_string(
                        topic,
                    )))
                    .with_partition_result(out),
            );
        }
    }
    ResponseKind::ElectLeaders(
        ElectLeadersResponse::default().with_replica_election_results(results),
    )
}

/// One partition's election: its error code (NONE when its preferred replica now
/// leads) and why not.
async fn elect(
    broker: &Broker,
    topic: &str,
    partition: i32,
    election_type: i8,
) -> (i16, Option<String>) {
    let image = broker.image();
    let Some(ps) = image.partition(topic, partition) else {
        return (codes::UNKNOWN_TOPIC_OR_PARTITION, None);
    };
    if election_type != PREFERRED {
        return if ps.leader >= 0 {
            (codes::ELECTION_NOT_NEEDED, None)
        } else {
            (
                codes::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                Some(
                    "unclean election is not served: Sluice never elects a replica outside the ISR"
                        .into(),
                ),
            )
        };
    }
    let Some(&preferred) = ps.replicas.first() else {
        return (codes::PREFERRED_LEADER_NOT_AVAILABLE, None);
    };
    if ps.leader == preferred {
        return (codes::ELECTION_NOT_NEEDED, None);
    }
    if !ps.isr.contains(&preferred) || !image.is_live(preferred) {
        return (
            codes::PREFERRED_LEADER_NOT_AVAILABLE,
            Some(format!("broker {preferred} is not live and in sync")),
        );
    }
    let command = Command::ElectLeader {
        topic: topic.to_string(),
        partition,
        leader: preferred,
    };
    match broker.controller.write(command).await {
        Ok(Ok(_)) => (codes::NONE, None),
        Ok(Err(e)) => (codes::PREFERRED_LEADER_NOT_AVAILABLE, Some(e.to_string())),
        Err(e) => (codes::REQUEST_TIMED_OUT, Some(e.to_string())),
    }
}
