//! OffsetForLeaderEpoch (KIP-101, KIP-279, KIP-320): where a leader epoch ended in the
//! leader's log. A follower that starts following a new leader truncates to it;
//! consumers use it to detect a log that was truncated under them.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ResponseKind,
};

use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, req: OffsetForLeaderEpochRequest) -> ResponseKind {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = EpochEndOffset::default().with_partition(p.partition);
                    match broker.leader_replica(&name, p.partition, p.current_leader_epoch) {
                        Ok(replica) => {
                            let (epoch, end) = replica.log.end_offset_for_epoch(p.leader_epoch);
                            r.with_leader_epoch(epoch).with_end_offset(end)
                        }
                        Err(code) => r
                            .with_error_code(code)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
