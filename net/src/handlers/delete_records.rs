//! DeleteRecords (KIP-107): moves partitions' log start offsets forward. The leader
//! moves its own at once, durably; the answer waits until every in-sync replica has
//! followed (the low watermark reached the offset asked) or the request's timeout
//! ran out, as Kafka's DelayedDeleteRecords does.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, ResponseKind};

use super::Reply;
use crate::broker::Broker;
use crate::codes;
use crate::internal::is_internal;
use crate::replication::Replica;
use sluice_core::sim::{planted, Bug};

/// DeleteRecords' "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;
/// How often a waiting answer looks at the followers' log start offsets again.
const POLL: Duration = Duration::from_millis(20);

/// A partition's start moved on its leader (waiting for the followers: the replica and
/// the offset asked), or the error code it was refused with.
type Outcome = Result<(Arc<Replica>, i64), i16>;

pub fn handle(broker: &Arc<Broker>, req: DeleteRecordsRequest) -> Reply {
    let mut topics: Vec<(DeleteRecordsTopicResult, Vec<Outcome>)> = Vec::new();
    for t in req.topics {
        let name = t.name.to_string();
        let mut outcomes = Vec::new();
        let mut results = Vec::new();
        for p in t.partitions {
            results.push(
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1),
            );
            outcomes.push(move_start(broker, &name, p.partition_index, p.offset));
        }
        topics.push((
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(results),
            outcomes,
        ));
    }
    let clock = broker.env.clock.clone();
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0));
    Reply::Later(Box::pin(async move {
        let deadline = clock.monotonic() + timeout;
        let mut answered = Vec::with_capacity(topics.len());
        for (mut topic, outcomes) in topics {
            for (result, outcome) in topic.partitions.iter_mut().zip(outcomes) {
                match outcome {
                    Err(code) => result.error_code = code,
                    Ok((replica, target)) => loop {
                        let low = replica.low_watermark();
                        if low >= target {
                            result.low_watermark = low;
                            break;
                        }
                        if replica.check_leader(-1).is_err() {
                            result.error_code = codes::NOT_LEADER_OR_FOLLOWER;
                            break;
                        }
                        if clock.monotonic() >= deadline {
                            result.error_code = codes::REQUEST_TIMED_OUT;
                            result.low_watermark = low;
                            break;
                        }
                        clock.sleep(POLL).await;
                    },
                }
            }
            answered.push(topic);
        }
        ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(answered))
    }))
}

/// Moves the leader's log start offset to `offset` (-1: the high watermark); the
/// offset to wait for, or Kafka's error code.
fn move_start(broker: &Broker, topic: &str, partition: i32, offset: i64) -> Outcome {
    if is_internal(topic) {
        // The coordinators' logs are theirs to keep (Kafka refuses these too).
        return Err(codes::INVALID_TOPIC_EXCEPTION);
    }
    let replica = broker.leader_replica(topic, partition, -1)?;
    if !broker.cleanup_policy_deletes(topic) {
        // A compact-only topic keeps every key's latest value (Kafka: POLICY_VIOLATION).
        return Err(codes::POLICY_VIOLATION);
    }
    let hw = replica.log.high_watermark();
    let target = if offset == HIGH_WATERMARK { hw } else { offset };
    if target < 0 || (target > hw && !planted(Bug::RetentionPastHw)) {
        return Err(codes::OFFSET_OUT_OF_RANGE);
    }
    replica
        .log
        .advance_log_start(target)
        .map_err(|e| codes::log_error(&e))?;
    Ok((replica, target))
}
