//! Fetch from the partition's leader, by consumers and by followers. Stored batches
//! are served as `Bytes`, never re-encoded, bounded by partition_max_bytes and
//! max_bytes (the first batch is always whole, KIP-74). Consumers never read past the
//! high watermark, nor with isolation_level=read_committed past the last stable
//! offset (with the aborted transactions listed for the client to skip). Followers
//! (replica id >= 0) read up to the leader's durable end, and their fetch offset tells
//! the leader how far their log is durable. Below min_bytes the request long-polls
//! until data arrives or max_wait_ms passes.

use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, ResponseKind};
use sluice_storage::log::Durable;
use tokio::sync::watch;

use super::Reply;
use crate::broker::{Broker, ReplicationSide};
use crate::codes;

/// What a long-poll waits on: the high watermark (consumers) or the leader's durable
/// end (followers, who replicate past the high watermark).
enum Watch {
    HighWatermark(watch::Receiver<Durable>),
    LocalEnd(watch::Receiver<i64>),
}

impl Watch {
    async fn changed(&mut self) {
        let _ = match self {
            Watch::HighWatermark(w) => w.changed().await,
            Watch::LocalEnd(w) => w.changed().await,
        };
    }
}

pub fn handle(broker: &Arc<Broker>, mut req: FetchRequest) -> Reply {
    // Fetch v13+ names topics by id (KIP-516): find their names. An unknown id keeps
    // an empty name and is answered UNKNOWN_TOPIC_ID.
    for t in &mut req.topics {
        if t.topic.is_empty() && !t.topic_id.is_nil() {
            if let Some(name) = broker.topic_by_id(*t.topic_id.as_bytes()) {
                t.topic = kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_string(name),
                );
            }
        }
    }
    let (response, bytes, errors) = collect(broker, &req);
    if req.max_wait_ms <= 0 || bytes >= req.min_bytes.max(1) as usize || errors {
        let delay = leader_throttle(broker, &req, &response);
        if delay.is_zero() {
            return Reply::Now(ResponseKind::Fetch(response));
        }
        let clock = broker.env.clock.clone();
        return Reply::Later(Box::pin(async move {
            clock.sleep(delay).await;
            ResponseKind::Fetch(response)
        }));
    }
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let clock = broker.env.clock.clone();
        let deadline = clock.monotonic() + Duration::from_millis(req.max_wait_ms as u64);
        // Subscribe before reading again: a high watermark that moves after this read
        // is then a change the wait below sees, never a lost wakeup.
        let follower = req.replica_id.0 >= 0;
        let mut watches: Vec<Watch> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter_map(|p| broker.partition(&t.topic, p.partition))
            })
            .map(|log| {
                if follower {
                    Watch::LocalEnd(log.watch_local())
                } else {
                    Watch::HighWatermark(log.watch())
                }
            })
            .collect();
        loop {
            let (response, bytes, errors) = collect(&broker, &req);
            let now = clock.monotonic();
            if bytes >= req.min_bytes.max(1) as usize || errors || now >= deadline {
                let delay = leader_throttle(&broker, &req, &response);
                if !delay.is_zero() {
                    clock.sleep(delay).await;
                }
                return ResponseKind::Fetch(response);
            }
            let sleep = clock.sleep(deadline - now);
            if watches.is_empty() {
                sleep.await;
                continue;
            }
            let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                biased;
                _ = changed => {}
                _ = sleep => {}
            }
        }
    }))
}

/// How long the leader holds back a follower's fetch: the bytes it carries for
/// partitions a reassignment is adding that follower to, under the leader throttle.
fn leader_throttle(broker: &Broker, req: &FetchRequest, response: &FetchResponse) -> Duration {
    let follower = req.replica_id.0;
    if follower < 0 || broker.replication_rate(ReplicationSide::Leader).is_none() {
        return Duration::ZERO;
    }
    let mut bytes = 0;
    for t in &response.responses {
        for p in &t.partitions {
            let adding = broker
                .leader_replica(&t.topic, p.partition_index, -1)
                .is_ok_and(|r| r.is_adding(follower));
            if adding {
                bytes += p.records.as_ref().map_or(0, |r| r.len());
            }
        }
    }
    broker.replication_delay(ReplicationSide::Leader, bytes)
}

/// Reads every requested partition once: the response, the bytes in it, and whether
/// any partition carries an error (which answers at once).
fn collect(broker: &Arc<Broker>, req: &FetchRequest) -> (FetchResponse, usize, bool) {
    let follower = (req.replica_id.0 >= 0).then_some(req.replica_id.0);
    let now = broker.env.clock.monotonic();
    let mut total = 0usize;
    let mut errors = false;
    let budget = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let read_committed = req.isolation_level == 1;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.topic.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(bytes::Bytes::new()))
                .with_aborted_transactions(read_committed.then(Vec::new));
            let replica = if name.is_empty() && !t.topic_id.is_nil() {
                Err(codes::UNKNOWN_TOPIC_ID)
            } else {
                broker.leader_replica(&name, p.partition, p.current_leader_epoch)
            }
            .and_then(|r| match follower {
                Some(_) => Ok(r),
                None => r.check_hw_caught_up().map(|()| r),
            });
            match replica {
                Err(code) => {
                    errors = true;
                    data = data
                        .with_error_code(code)
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1);
                }
                Ok(replica) => {
                    let log = &replica.log;
                    if let Some(id) = follower {
                        if let Some(change) =
                            replica.follower_fetched(id, p.fetch_offset, p.log_start_offset, now)
                        {
                            let (b, r) = (broker.clone(), replica.clone());
                            broker
                                .env
                                .spawn(async move { b.alter_isr(&r, change).await });
                        }
                    }
                    // At least one whole batch for the first partition with data.
                    let limit =
                        (p.partition_max_bytes.max(0) as usize).min(budget.saturating_sub(total));
                    let limit = if total == 0 { limit.max(1) } else { limit };
                    let result = if limit == 0 {
                        Ok(None)
                    } else {
                        match follower {
                            Some(_) => log.read_replica(p.fetch_offset, limit),
                            None => log.read_isolated(p.fetch_offset, limit, read_committed),
                        }
                        .map(Some)
                    };
                    match result {
                        Ok(Some(mut read)) => {
                            // Only the response's first batch may pass the limits
                            // (KIP-74); a later partition's oversized first batch
                            // waits for a fetch of its own.
                            if total > 0 && read.batches.len() > limit {
                                let fits = whole_batches_within(&read.batches, limit);
                                read.batches.truncate(fits);
                            }
                            total += read.batches.len();
                            let aborted = read
                                .aborted
                                .iter()
                                .map(|&(pid, first)| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(pid))
                                        .with_first_offset(first)
                                })
                                .collect();
                            data = data
                                .with_high_watermark(read.high_watermark)
                                .with_last_stable_offset(read.last_stable_offset)
                                .with_log_start_offset(read.log_start_offset)
                                .with_aborted_transactions(read_committed.then_some(aborted))
                                .with_records(Some(read.batches));
                        }
                        Ok(None) => {
                            let hw = log.high_watermark();
                            data = data
                                .with_high_watermark(hw)
                                .with_last_stable_offset(log.last_stable_offset())
                                .with_log_start_offset(log.log_start_offset());
                        }
                        Err(e) => {
                            errors = true;
                            let hw = match &*log.watch().borrow() {
                                Durable::Upto(hw) => *hw,
                                Durable::Failed(_) => -1,
                            };
                            data = data
                                .with_error_code(codes::log_error(&e))
                                .with_high_watermark(hw)
                                .with_last_stable_offset(hw)
                                .with_log_start_offset(log.log_start_offset());
                        }
                    }
                }
            }
            parts.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(parts),
        );
    }
    (
        FetchResponse::default().with_responses(topics),
        total,
        errors,
    )
}

/// The length of the longest run of whole batches at the front of `batches` that fits
/// in `limit` bytes.
fn whole_batches_within(batches: &[u8], limit: usize) -> usize {
    let mut fits = 0;
    for (at, h) in sluice_storage::batch::Batches::new(batches, false) {
        if at + h.size > limit {
            break;
        }
        fits = at + h.size;
    }
    fits
}
