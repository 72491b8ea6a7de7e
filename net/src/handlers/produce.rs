//! Produce: on the partition's leader, validate each partition's batches, append them
//! in request order, then answer once they are fsynced: acks=1 here, acks=-1 on every
//! in-sync replica (the high watermark passed them), refused with NOT_ENOUGH_REPLICAS
//! while the ISR is smaller than min.insync.replicas. acks=0 gets no response at all.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_core::topics::ProducePolicy;
use sluice_core::txn::TxnError;
use sluice_storage::batch;
use sluice_storage::PartitionLog;

use super::Reply;
use crate::broker::Broker;
use crate::codes;

/// A partition's outcome: an error now, or an append whose durability is awaited.
enum Outcome {
    Failed(i16),
    Appended {
        log: Arc<PartitionLog>,
        base_offset: i64,
        end_offset: i64,
        generation: u64,
        /// The broker's time stamped on the batches (LogAppendTime), or -1.
        log_append_time: i64,
    },
}

pub fn handle(broker: &Arc<Broker>, req: ProduceRequest) -> Reply {
    let acks = req.acks;
    let transactional_id = req.transactional_id.as_ref().map(|t| t.to_string());
    let valid_acks = (-1..=1).contains(&acks);
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let name = t.name.to_string();
        let policy = broker.produce_policy(&name).unwrap_or_else(|| {
            ProducePolicy::of(&Default::default(), broker.config.message_max_bytes)
        });
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let outcome = if !valid_acks {
                Outcome::Failed(codes::INVALID_REQUIRED_ACKS)
            } else if crate::internal::is_internal(&name) {
                // Only the coordinator writes its internal topic.
                Outcome::Failed(codes::INVALID_TOPIC_EXCEPTION)
            } else if policy.compacted && has_keyless_record(p.records.as_ref()) {
                // Compaction keeps the newest record per key: one without a key has
                // no place in such a log (Kafka's LogValidator refuses it the same way).
                Outcome::Failed(codes::INVALID_RECORD)
            } else if sluice_core::buggify!(0.01) {
                // A retriable refusal before anything is written.
                Outcome::Failed(codes::REQUEST_TIMED_OUT)
            } else {
                let now = broker.env.clock.wall_ms();
                let records = p.records.as_deref().unwrap_or_default();
                let records = match conform(records, &policy, now) {
                    Ok(records) => records,
                    Err(code) => {
                        parts.push((p.index, Outcome::Failed(code)));
                        continue;
                    }
                };
                let stamped = if policy.log_append_time { now } else { -1 };
                let store = |log: &Arc<PartitionLog>| {
                    append(log, &records, policy.max_batch_bytes, stamped)
                };
                let replica = broker.leader_replica(&name, p.index, -1).and_then(|r| {
                    if acks == -1 {
                        r.check_min_isr(broker.min_insync_replicas(&name))?;
                    }
                    Ok(r)
                });
                match replica {
                    Err(code) => Outcome::Failed(code),
                    Ok(r) if batch::peek_transactional(&records).is_some() => {
                        // Checked and appended as one step against marker appends.
                        let _guard = broker.txns.append_guard();
                        match in_transaction(
                            broker,
                            transactional_id.as_deref(),
                            &name,
                            p.index,
                            &records,
                        ) {
                            Err(code) => Outcome::Failed(code),
                            Ok(()) => store(&r.log),
                        }
                    }
                    Ok(r) => store(&r.log),
                }
            };
            if let Outcome::Failed(code) = &outcome {
                tracing::debug!(topic = %name, partition = p.index, code, "produce refused");
            }
            parts.push((p.index, outcome));
        }
        // A fresh name: the request's is a slice of its frame, which the reply would
        // otherwise keep in memory until the records are durable.
        topics.push((TopicName(StrBytes::from_string(name)), parts));
    }
    if acks == 0 {
        return Reply::Silent;
    }
    let clock = broker.env.clock.clone();
    let deadline = clock.monotonic() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, parts) in topics {
            let mut out = Vec::with_capacity(parts.len());
            for (index, outcome) in parts {
                let r = PartitionProduceResponse::default()
                    .with_index(index)
                    .with_log_append_time_ms(-1);
                let failed = |r: PartitionProduceResponse, code| {
                    r.with_error_code(code)
                        .with_base_offset(-1)
                        .with_log_start_offset(-1)
                };
                out.push(match outcome {
                    Outcome::Failed(code) => failed(r, code),
                    Outcome::Appended {
                        log,
                        base_offset,
                        end_offset,
                        generation,
                        log_append_time,
                    } => {
                        // acks=all waits for the in-sync replicas (the high
                        // watermark), acks=1 for this replica's fsync; both at most
                        // the request's timeout.
                        let durable = async {
                            if acks == -1 {
                                log.wait_committed(end_offset, generation).await
                            } else {
                                log.wait_local_durable(end_offset).await
                            }
                        };
                        let left = deadline.saturating_sub(clock.monotonic());
                        let outcome = tokio::select! {
                            biased;
                            done = durable => Some(done),
                            () = clock.sleep(left) => None,
                        };
                        match outcome {
                            Some(Ok(())) => r
                                .with_base_offset(base_offset)
                                .with_log_append_time_ms(log_append_time)
                                .with_log_start_offset(log.log_start_offset()),
                            Some(Err(e)) => failed(r, codes::log_error(&e)),
                            None => failed(r, codes::REQUEST_TIMED_OUT),
                        }
                    }
                });
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(out),
            );
        }
        ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
    }))
}

/// KIP-890: a transactional batch only goes to a partition of its producer's open
/// transaction, at the producer's current epoch.
fn in_transaction(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> Result<(), i16> {
    let Some((producer_id, epoch)) = batch::peek_transactional(records) else {
        return Ok(());
    };
    broker
        .txns
        .verify(transactional_id, producer_id, epoch, topic, partition)
        .map_err(|e| match e {
            TxnError::ProducerFenced => codes::INVALID_PRODUCER_EPOCH,
            other => codes::txn_error(other),
        })
}

fn append(
    log: &Arc<PartitionLog>,
    records: &[u8],
    max_batch_bytes: usize,
    log_append_time: i64,
) -> Outcome {
    // message.max.bytes bounds each batch, as in Kafka.
    let mut pos = 0;
    while pos < records.len() {
        match batch::peek_size(&records[pos..]) {
            Some(Ok(size)) if size > records.len() - pos => {
                return Outcome::Failed(codes::CORRUPT_MESSAGE)
            }
            Some(Ok(size)) if size > max_batch_bytes => {
                return Outcome::Failed(codes::MESSAGE_TOO_LARGE)
            }
            Some(Ok(size)) => pos += size,
            _ => return Outcome::Failed(codes::CORRUPT_MESSAGE),
        }
    }
    match log.append(records) {
        Ok(a) => Outcome::Appended {
            log: log.clone(),
            base_offset: a.base_offset,
            end_offset: a.last_offset + 1,
            generation: a.generation,
            log_append_time,
        },
        Err(e) => {
            tracing::warn!(dir = %log.dir().display(), error = %e, "append refused");
            Outcome::Failed(codes::log_error(&e))
        }
    }
}

/// Whether a produced record set holds a record without a key (decompressing as
/// needed). A set that does not parse counts as keyless: the append would refuse it
/// anyway, and compaction could not read it. (Parsed by the cleaner's own reader,
/// which allocates by the bytes received, never by a count the client claims.)
fn has_keyless_record(records: Option<&bytes::Bytes>) -> bool {
    let Some(records) = records else {
        return false;
    };
    let mut pos = 0;
    while pos < records.len() {
        let Some(Ok(size)) = batch::peek_size(&records[pos..]) else {
            return true;
        };
        let Some(one) = records.get(pos..pos + size) else {
            return true;
        };
        match sluice_storage::compaction::records(one) {
            Ok((_, _, views)) if views.iter().all(|r| r.key.is_some()) => {}
            _ => return true,
        }
        pos += size;
    }
    false
}

/// The batches as the topic keeps them (Kafka's LogValidator): CreateTime timestamps
/// within `message.timestamp.before/after.max.ms` of the broker's clock (else
/// INVALID_TIMESTAMP), recompressed to `compression.type`, stamped with the broker's
/// time under LogAppendTime. Borrowed when nothing changes; a batch that does not
/// parse is left for the append to refuse.
fn conform<'a>(records: &'a [u8], policy: &ProducePolicy, now: i64) -> Result<Cow<'a, [u8]>, i16> {
    let mut out: Option<Vec<u8>> = None;
    let mut pos = 0;
    while pos < records.len() {
        let Ok(h) = batch::parse_header(&records[pos..]) else {
            return Ok(Cow::Borrowed(records));
        };
        let one = &records[pos..pos + h.size];
        if !policy.log_append_time {
            // The batch's max timestamp bounds its records from above; the earliest
            // is read only when a lower bound is set.
            let earliest = if policy.max_before_ms == i64::MAX {
                None
            } else {
                match sluice_storage::compaction::records(one) {
                    Ok((_, _, views)) => views.iter().map(|v| v.timestamp).min(),
                    Err(_) => return Ok(Cow::Borrowed(records)),
                }
            };
            if !policy.timestamp_ok(h.max_timestamp, now)
                || earliest.is_some_and(|t| !policy.timestamp_ok(t, now))
            {
                return Err(codes::INVALID_TIMESTAMP);
            }
        }
        let recompressed = match policy.codec {
            Some(codec) => match sluice_storage::compaction::recompress(one, codec) {
                Ok(r) => r,
                Err(_) => return Err(codes::CORRUPT_MESSAGE),
            },
            None => None,
        };
        if recompressed.is_some() || policy.log_append_time || out.is_some() {
            let buf = out.get_or_insert_with(|| records[..pos].to_vec());
            let at = buf.len();
            buf.extend_from_slice(recompressed.as_deref().unwrap_or(one));
            if policy.log_append_time {
                batch::stamp_log_append_time(&mut buf[at..], now);
            }
        }
        pos += h.size;
    }
    Ok(out.map_or(Cow::Borrowed(records), Cow::Owned))
}
