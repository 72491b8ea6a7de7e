//! The log-life workload. Keyed writers overwrite and delete a few keys each on a
//! compacted topic, whose overwritten values and old tombstones the cleaner removes
//! under the faults; a writer and a trimmer (DeleteRecords) work a topic whose
//! `retention.bytes` also moves its log start; a scanner reads both from their start
//! again and again; after the heal a final read of both. The `compaction` and
//! `log-start` checkers judge the history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jepsen_checks::{Kind, Op, F};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{CreateTopicsRequest, DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use madsim::rand::{thread_rng, Rng};
use sluice_net::client::{
    decode_batches, encode_batch, fetch_request, produce_request, Client, Message,
};
use tokio::time::{sleep, timeout, Instant};

use crate::run::{connect, connected, Recorder, REQUEST_TIMEOUT};

/// The compacted topic.
pub const KV_TOPIC: &str = "jepsen-kv";
/// The topic trimmed by DeleteRecords and by retention.bytes.
pub const TRIM_TOPIC: &str = "jepsen-trim";
/// Short, so that the cleaner removes tombstones within a run.
pub const DELETE_RETENTION_MS: i64 = 3_000;
/// Keys each writer of the compacted topic owns (one writer per key, so the key's
/// writes are ordered).
const KEYS_PER_WRITER: u64 = 8;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn configs(pairs: &[(&str, String)]) -> Vec<CreatableTopicConfig> {
    pairs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect()
}

/// Creates both topics: small segments so that segments close (only closed ones are
/// cleaned or deleted), a cleaner that passes at any dirtiness.
pub(crate) async fn create_topics(kv_partitions: i32) -> Result<(), String> {
    let mut c = connect("setup").await?;
    let kv = CreatableTopic::default()
        .with_name(name(KV_TOPIC))
        .with_num_partitions(kv_partitions)
        .with_replication_factor(1)
        .with_configs(configs(&[
            ("cleanup.policy", "compact".into()),
            ("segment.bytes", "4096".into()),
            ("min.cleanable.dirty.ratio", "0.01".into()),
            ("delete.retention.ms", DELETE_RETENTION_MS.to_string()),
        ]));
    let trim = CreatableTopic::default()
        .with_name(name(TRIM_TOPIC))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(configs(&[
            ("segment.bytes", "4096".into()),
            ("retention.bytes", "24576".into()),
        ]));
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![kv, trim]);
    let r = timeout(REQUEST_TIMEOUT, c.call(req, 7))
        .await
        .map_err(|_| "timeout")?
        .map_err(|e| e.to_string())?;
    for t in &r.topics {
        if !matches!(t.error_code, 0 | 36) {
            return Err(format!("create {}: error {}", t.name.0, t.error_code));
        }
    }
    Ok(())
}

/// Writes keyed records, one attempt each with acks=all, until `puts` are done or
/// `stop`. Writer `index` of the compacted topic owns its keys and deletes one now and
/// then; the trim topic's writer (`kv_partitions` None) writes a new key every time.
pub(crate) async fn writer(
    rec: Recorder,
    index: u64,
    kv_partitions: Option<i32>,
    puts: usize,
    stop: Arc<AtomicBool>,
) {
    let node = format!("kv-writer-{index}");
    let process = 3000 + index;
    let mut client: Option<Client> = None;
    for n in 0..puts {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (topic, partition, key, tombstone) = match kv_partitions {
            Some(partitions) => {
                let k = thread_rng().gen_range(0..KEYS_PER_WRITER);
                let partition = (k % partitions as u64) as i32;
                let tombstone = thread_rng().gen_bool(0.2);
                (KV_TOPIC, partition, format!("k{index}-{k}"), tombstone)
            }
            None => (TRIM_TOPIC, 0, format!("t{n}"), false),
        };
        let pad = thread_rng().gen_range(0..200);
        let value = (!tombstone).then(|| format!("w{index}-{n}:{}", ".".repeat(pad)));
        let mut op = Op::new(Kind::Invoke, F::Put, &node, process, partition);
        op.topic = Some(topic.into());
        op.key = Some(key.clone());
        op.value = value.clone();
        op.acks = Some(-1);
        if tombstone {
            op.delete_retention_ms = Some(DELETE_RETENTION_MS);
        }
        rec.record(op.clone());
        let message = Message {
            key: Some(Bytes::from(key)),
            value: value.map(Bytes::from),
            timestamp: n as i64,
        };
        match put_once(&mut client, &node, topic, partition, &message).await {
            Outcome::Written(offset) => {
                op.kind = Kind::Ok;
                op.offset = Some(offset);
            }
            Outcome::NotWritten(why) => {
                op.kind = Kind::Fail;
                op.error = Some(why);
            }
            Outcome::Unknown(why) => {
                op.kind = Kind::Info;
                op.error = Some(why);
            }
        }
        let failed = op.kind != Kind::Ok;
        rec.record(op);
        let pause = if failed { 100..300 } else { 0..30 };
        sleep(Duration::from_millis(thread_rng().gen_range(pause))).await;
    }
}

enum Outcome {
    Written(i64),
    NotWritten(String),
    Unknown(String),
}

/// One produce of one record with acks=all, no retry.
async fn put_once(
    client: &mut Option<Client>,
    node: &str,
    topic: &str,
    partition: i32,
    message: &Message,
) -> Outcome {
    let Some(c) = connected(client, node).await else {
        return Outcome::NotWritten("not connected".into());
    };
    let batch = match encode_batch(std::slice::from_ref(message), Compression::None) {
        Ok(b) => b,
        Err(e) => return Outcome::NotWritten(e.to_string()),
    };
    let req = produce_request(topic, -1, 1000, [(partition, batch)]);
    let answer = match timeout(REQUEST_TIMEOUT, c.call(req, 9)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            *client = None;
            return Outcome::Unknown(e.to_string());
        }
        Err(_) => {
            *client = None;
            return Outcome::Unknown("timed out".into());
        }
    };
    match answer
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
    {
        Some(p) if p.error_code == 0 => Outcome::Written(p.base_offset),
        Some(p) if definitely_not_written(p.error_code) => {
            Outcome::NotWritten(format!("error code {}", p.error_code))
        }
        Some(p) => Outcome::Unknown(format!("error code {}", p.error_code)),
        None => Outcome::Unknown("empty produce response".into()),
    }
}

/// Produce error codes that prove nothing was written (a refused key-less record is
/// INVALID_RECORD, 87).
fn definitely_not_written(code: i16) -> bool {
    matches!(code, 2 | 3 | 10 | 21 | 45 | 47 | 87)
}

/// One fetch, answered with its error code or not.
async fn fetch(
    client: &mut Client,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<PartitionData, String> {
    let req = fetch_request(topic, [(partition, offset)], 100, 64 << 10, 16 << 10);
    let r = timeout(REQUEST_TIMEOUT, client.call(req, 12))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    r.responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .next()
        .ok_or_else(|| "empty fetch response".into())
}

/// Reads `topic`-`partition` from its log start to its high watermark, recording each
/// fetch as a scan. True when it got there.
async fn scan_partition(
    rec: &Recorder,
    client: &mut Option<Client>,
    node: &str,
    process: u64,
    (topic, partition): (&str, i32),
    final_read: bool,
    deadline: Instant,
) -> bool {
    let mut position = 0;
    while Instant::now() < deadline {
        let Some(c) = connected(client, node).await else {
            continue;
        };
        let mut op = Op::new(Kind::Invoke, F::Scan, node, process, partition);
        op.topic = Some(topic.into());
        op.from = Some(position);
        op.final_read = final_read;
        // Invoked and completed: the log-start checker orders answers in real time.
        rec.record(op.clone());
        op.kind = Kind::Ok;
        let answer = fetch(c, topic, partition, position).await;
        let pd = match answer {
            Ok(pd) => pd,
            Err(e) => {
                *client = None;
                op.kind = Kind::Fail;
                op.error = Some(e);
                rec.record(op);
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if pd.error_code != 0 {
            op.kind = Kind::Fail;
            op.error = Some(format!("error code {}", pd.error_code));
            rec.record(op);
            if pd.error_code == 1 && pd.log_start_offset > position {
                // Trimmed below us: start again from the log start, as
                // auto.offset.reset=earliest does.
                position = pd.log_start_offset;
            } else {
                sleep(Duration::from_millis(100)).await;
            }
            continue;
        }
        let records = match decode_batches(pd.records.clone().unwrap_or_default(), position) {
            Ok(r) => r,
            Err(e) => {
                op.kind = Kind::Fail;
                op.error = Some(e.to_string());
                rec.record(op);
                continue;
            }
        };
        let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        op.entries = records
            .iter()
            .map(|r| (r.offset, text(&r.key), text(&r.value)))
            .collect();
        op.hw = Some(pd.high_watermark);
        op.log_start = Some(pd.log_start_offset);
        if let Some(last) = records.last() {
            position = last.offset + 1;
        } else if position < pd.high_watermark {
            // A batch emptied by the cleaner, or one the records of which lie below
            // `position`: the next fetch starts past what was answered.
            position = next_after(&pd, position);
        }
        let stuck = op.entries.is_empty() && op.from == Some(position);
        rec.record(op);
        if position >= pd.high_watermark {
            return true;
        }
        if stuck {
            sleep(Duration::from_millis(100)).await;
        }
    }
    false
}

/// The offset after the last batch a fetch answered (for answers with no record at or
/// past `position`: batches the cleaner emptied).
fn next_after(pd: &PartitionData, position: i64) -> i64 {
    let mut next = position;
    let mut data: &[u8] = pd.records.as_deref().unwrap_or_default();
    while let Ok(h) = sluice_storage::batch::validate(data) {
        next = next.max(h.next_offset());
        data = &data[h.size.min(data.len())..];
    }
    next
}

fn partitions(kv_partitions: i32) -> Vec<(&'static str, i32)> {
    let mut all: Vec<(&str, i32)> = (0..kv_partitions).map(|p| (KV_TOPIC, p)).collect();
    all.push((TRIM_TOPIC, 0));
    all
}

/// Reads every partition of both topics from its start, round after round, until
/// `stop`.
pub(crate) async fn scanner(rec: Recorder, kv_partitions: i32, stop: Arc<AtomicBool>) {
    let node = "kv-scanner";
    let mut client = None;
    while !stop.load(Ordering::SeqCst) {
        for tp in partitions(kv_partitions) {
            let deadline = Instant::now() + Duration::from_secs(10);
            scan_partition(&rec, &mut client, node, 3300, tp, false, deadline).await;
        }
    }
}

/// Deletes the trim topic's records below a point between its log start and its high
/// watermark, now and then, until `stop`.
pub(crate) async fn trimmer(rec: Recorder, stop: Arc<AtomicBool>) {
    let node = "kv-trimmer";
    let process = 3200;
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::SeqCst) {
        sleep(Duration::from_millis(thread_rng().gen_range(300..900))).await;
        let Some(c) = connected(&mut client, node).await else {
            continue;
        };
        let Ok(pd) = fetch(c, TRIM_TOPIC, 0, 0).await else {
            client = None;
            continue;
        };
        let (start, hw) = (pd.log_start_offset.max(0), pd.high_watermark);
        if hw <= start {
            continue;
        }
        // Now and then past the high watermark, which the broker must refuse.
        let target = thread_rng().gen_range(start..=hw + 3);
        let mut op = Op::new(Kind::Invoke, F::Trim, node, process, 0);
        op.topic = Some(TRIM_TOPIC.into());
        op.offset = Some(target);
        rec.record(op.clone());
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(name(TRIM_TOPIC))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(target)])]);
        match timeout(REQUEST_TIMEOUT, c.call(req, 2)).await {
            Ok(Ok(r)) => {
                match r.topics.iter().flat_map(|t| &t.partitions).next() {
                    Some(p) if p.error_code == 0 => {
                        op.kind = Kind::Ok;
                        op.log_start = Some(p.low_watermark);
                    }
                    Some(p) if p.error_code == 1 => {
                        op.kind = Kind::Fail;
                        op.error = Some("offset out of range".into());
                    }
                    Some(p) => {
                        // Refused (e.g. the partition is offline) or timed out
                        // waiting: the log start may or may not have moved.
                        op.kind = Kind::Info;
                        op.error = Some(format!("error code {}", p.error_code));
                    }
                    None => {
                        op.kind = Kind::Info;
                        op.error = Some("no partition in the answer".into());
                    }
                }
            }
            Ok(Err(e)) => {
                op.kind = Kind::Info;
                op.error = Some(e.to_string());
                client = None;
            }
            Err(_) => {
                op.kind = Kind::Info;
                op.error = Some("timed out".into());
                client = None;
            }
        }
        rec.record(op);
    }
}

/// The final read of both topics; `Some(reason)` if the healed broker did not serve
/// them to their end within 60 s.
pub(crate) async fn final_read(rec: Recorder, kv_partitions: i32) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = None;
    for tp in partitions(kv_partitions) {
        if !scan_partition(&rec, &mut client, "kv-reader", 3999, tp, true, deadline).await {
            return Some(format!(
                "{}-{} not read back to its end within 60 s after healing",
                tp.0, tp.1
            ));
        }
    }
    None
}
