//! What the coordinators share about their internal topics (`__consumer_offsets`,
//! `__transaction_state`): where a key lives, appending records, waiting until they
//! are durable, and reading a partition back at start.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record};
use sluice_storage::{Appended, LogError, PartitionLog};

use crate::client::{encode_batch, for_each_record, Message};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub const TXN_TOPIC: &str = "__transaction_state";

/// Whether a topic is one the coordinators own (clients may not write or delete it).
pub fn is_internal(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == TXN_TOPIC || topic == crate::shares::SHARE_STATE_TOPIC
}

/// Why a coordinator cannot serve a request (COORDINATOR_NOT_AVAILABLE to clients).
#[derive(Debug, Clone, thiserror::Error)]
#[error("coordinator unavailable: {0}")]
pub struct Unavailable(pub String);

/// Java's `String.hashCode`, which Kafka uses to place a key.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The internal-topic partition holding a group or transactional id (Kafka's
/// placement: `abs(javaHash(key)) % partitions`).
pub fn partition_for(key: &str, partitions: usize) -> usize {
    (java_hash(key) & 0x7fff_ffff) as usize % partitions.max(1)
}

/// The local log of `key`'s internal-topic partition, if this broker holds it.
pub fn log_for<'a>(
    logs: &'a [Option<Arc<PartitionLog>>],
    key: &str,
) -> Option<&'a Arc<PartitionLog>> {
    logs.get(partition_for(key, logs.len()))?.as_ref()
}

/// A log, the offset below which it must be durable, and the log's truncation
/// generation then.
pub type DurablePoint = Option<(Arc<PartitionLog>, i64, u64)>;

/// Everything appended so far to `key`'s partition.
pub fn durable_point(logs: &[Option<Arc<PartitionLog>>], key: &str) -> DurablePoint {
    let log = log_for(logs, key)?;
    let generation = log.generation();
    Some((log.clone(), log.log_end_offset(), generation))
}

/// Waits until `point` is durable on the partition's in-sync replicas (and was not
/// truncated away meanwhile).
pub async fn wait_durable(point: DurablePoint) -> Result<(), Unavailable> {
    if let Some((log, end, generation)) = point {
        log.wait_committed(end, generation)
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
    }
    Ok(())
}

/// Appends key/value records as one batch.
pub fn append_records(
    log: &PartitionLog,
    records: impl IntoIterator<Item = (Bytes, Option<Bytes>)>,
    timestamp: i64,
) -> Result<Appended, LogError> {
    let messages: Vec<Message> = records
        .into_iter()
        .map(|(key, value)| Message {
            key: Some(key),
            value,
            timestamp,
        })
        .collect();
    let batch =
        encode_batch(&messages, Compression::None).map_err(|e| LogError::Storage(e.to_string()))?;
    log.append(&batch)
}

/// An internal topic's partitions: the local log of each this broker holds, and the
/// leader epoch of each it leads.
pub type Leadership = (Vec<Option<Arc<PartitionLog>>>, Vec<Option<i32>>);

/// What a coordinator loads and serves: see [`Leadership`].
pub fn leadership(broker: &crate::broker::Broker, topic: &str) -> Option<Leadership> {
    let logs = broker.internal_logs(topic)?;
    let epochs = (0..logs.len())
        .map(|p| {
            broker
                .replica(topic, p as i32)
                .filter(|r| r.is_leader())
                .map(|r| r.meta().leader_epoch)
        })
        .collect();
    Some((logs, epochs))
}

/// Reads of a coordinator's partition retried before loading fails (a bad read is
/// not a bad disk, as in recovery).
const SCAN_REREADS: usize = 8;

/// Calls `f` with every record of the partition (control records included), with
/// its batch's transactional flag, in order up to the local durable end. Reaching less
/// than that is an error: a coordinator must never load half its state.
pub fn scan_log(log: &PartitionLog, mut f: impl FnMut(Record)) -> Result<(), String> {
    let mut offset = log.log_start_offset();
    // Up to the local durable end: a new leader's high watermark may lag records the
    // old leader's coordinator already answered for.
    let end = log.local_durable_end();
    while offset < end {
        let mut read = log.read_replica(offset, 1 << 20);
        for _ in 0..SCAN_REREADS {
            if read.as_ref().is_ok_and(|r| !r.batches.is_empty()) {
                break;
            }
            read = log.read_replica(offset, 1 << 20);
        }
        let read = read.map_err(|e| e.to_string())?;
        // Past every batch read, records or none: a compacted partition holds batches
        // the cleaner emptied, and offsets it removed.
        let mut next = offset;
        let mut rest: &[u8] = &read.batches;
        while let Ok(h) = sluice_storage::batch::parse_header(rest) {
            next = next.max(h.next_offset());
            rest = &rest[h.size.min(rest.len())..];
        }
        for_each_record(read.batches, |_, r| {
            if r.offset >= offset {
                f(r);
            }
        })
        .map_err(|e| e.to_string())?;
        if next == offset {
            return Err(format!("nothing readable at offset {offset}, below {end}"));
        }
        offset = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_where_kafka_puts_them() {
        // Java: Math.abs("my-group".hashCode()) % 50
        assert_eq!(java_hash("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 50), 36);
        assert_eq!(java_hash(""), 0);
    }

    #[test]
    fn a_stored_commit_marker_reads_back_as_a_commit() {
        for commit in [true, false] {
            let mut m = sluice_storage::batch::encode_marker(7, 1, commit, 0, 5);
            m[0..8].copy_from_slice(&40i64.to_be_bytes());
            let mut records = Vec::new();
            for_each_record(Bytes::from(m), |_, r| records.push(r)).unwrap();
            assert_eq!(records.len(), 1);
            let r = &records[0];
            assert!(r.control && r.producer_id == 7 && r.offset == 40);
            let key = r.key.clone().unwrap();
            assert_eq!(
                sluice_storage::batch::marker_key_commits(&key),
                Some(commit),
                "{key:?}"
            );
        }
    }
}
