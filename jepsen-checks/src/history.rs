//! The history model: one JSON object per line, one line per operation event, in the
//! style of Jepsen's histories. A `send` is a produce of one record; a `poll` is a
//! fetch of one partition from a known position.
//!
//! ```json
//! {"index":7,"time_ms":120,"node":"producer-1","process":1,"type":"invoke","f":"send","partition":2,"acks":-1,"value":"p1-3"}
//! {"index":9,"time_ms":131,"node":"producer-1","process":1,"type":"ok","f":"send","partition":2,"acks":-1,"value":"p1-3","offset":41}
//! {"index":12,"time_ms":140,"node":"consumer-0","process":4,"type":"ok","f":"poll","partition":2,"from":40,"records":[[40,"p2-9"],[41,"p1-3"]]}
//! ```
//!
//! A poll carries the high watermark it was answered (`hw`); an idempotent send the
//! `producer` id, epoch and sequence it was sent with.
//!
//! Transactional producers add `txn` (the end of a transaction: its writes in
//! `records` as (partition, value), `commit` as asked) and read_committed readers
//! `read-committed` polls carrying the `lso` and `hw` they were answered.
//!
//! Consumer-group members add `assign` (a SyncGroup that gave `member` the
//! `partitions` of `generation`), `process` (records a member handled, like a poll),
//! `commit` (an OffsetCommit of `offset` for one partition) and `fetch-offset` (an
//! OffsetFetch that returned `offset`, -1 for none).
//!
//! Keyed workloads on compacted and trimmed topics add `put` (a keyed produce to
//! `topic`: `key`, `value`, absent for a tombstone, which carries the topic's
//! `delete_retention_ms`), `scan` (a fetch of `topic` from `from`: `entries` as
//! [offset, key, value], the `hw` and `log_start` answered), `trim` (a DeleteRecords of
//! `topic` to `offset`, answered with the low watermark in `log_start`), and the
//! nemesis's `clock-jump` (the broker's wall clock moved by `clock_ms`).
//!
//! `type` is `invoke` (started), `ok` (succeeded), `fail` (definitely did not happen)
//! or `info` (outcome unknown, e.g. a timeout). A `poll` with `"final": true` belongs to
//! the read after the faults healed, which must see everything acknowledged.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    Send,
    Poll,
    Assign,
    Process,
    Commit,
    #[serde(rename = "fetch-offset")]
    FetchOffset,
    /// The end of a transaction: `records` lists its (partition, value) writes,
    /// `commit` what was asked; `ok` means done as asked.
    Txn,
    /// A read_committed poll of the transactional topic.
    #[serde(rename = "read-committed")]
    ReadCommitted,
    /// A keyed produce to a compacted or trimmed topic.
    Put,
    /// A fetch of a keyed topic, with keys.
    Scan,
    /// A DeleteRecords.
    Trim,
    /// The nemesis moved the broker's wall clock (`clock_ms`).
    #[serde(rename = "clock-jump")]
    ClockJump,
    /// A share-group member's ShareFetch (KIP-932): invoked once, then one `ok` per
    /// acquired range with its records and `delivery_count`.
    #[serde(rename = "share-fetch")]
    ShareFetch,
    /// A share-group member's acknowledgement of records it accepted (`records`), per
    /// partition: `ok` when the broker answered it applied, `fail` when refused, `info`
    /// when the answer was lost.
    #[serde(rename = "share-ack")]
    ShareAck,
}

/// One record a scan returned: offset, key, value (None: a tombstone).
pub type Entry = (i64, Option<String>, Option<String>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub index: u64,
    pub time_ms: u64,
    pub node: String,
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub f: F,
    pub partition: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acks: Option<i16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<(i64, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, rename = "final", skip_serializing_if = "std::ops::Not::not")]
    pub final_read: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<bool>,
    /// A poll's last stable offset and high watermark, as the broker answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lso: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hw: Option<i64>,
    /// An idempotent or transactional send's producer id, epoch and sequence, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<(i64, i16, i32)>,
    /// The topic of a put, scan or trim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A scan's records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<Entry>,
    /// The log start offset a scan or trim was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_start: Option<i64>,
    /// A tombstone's topic `delete.retention.ms`: how long a reader from the start
    /// must still see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_retention_ms: Option<i64>,
    /// How far a clock jump moved the broker's wall clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_ms: Option<i64>,
    /// A KIP-848 member's assignment: until when (history time) its ownership holds
    /// whatever happens, the time its heartbeat was sent plus the session timeout (the
    /// coordinator cannot fence it sooner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// How many times a share fetch's records have been delivered, this time included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_count: Option<i16>,
}

impl Op {
    /// A blank op of the given kind and function; fill in the rest.
    pub fn new(kind: Kind, f: F, node: &str, process: u64, partition: i32) -> Op {
        Op {
            index: 0,
            time_ms: 0,
            node: node.to_string(),
            process,
            kind,
            f,
            partition,
            acks: None,
            value: None,
            offset: None,
            from: None,
            records: Vec::new(),
            error: None,
            final_read: false,
            group: None,
            member: None,
            generation: None,
            partitions: Vec::new(),
            txn: None,
            commit: None,
            lso: None,
            hw: None,
            producer: None,
            topic: None,
            key: None,
            entries: Vec::new(),
            log_start: None,
            delete_retention_ms: None,
            clock_ms: None,
            lease_ms: None,
            delivery_count: None,
        }
    }
}

/// Parses a JSON-lines history.
pub fn parse(text: &str) -> Result<Vec<Op>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("history line {}: {e}", i + 1)))
        .collect()
}

/// Writes a history as JSON lines.
pub fn to_jsonl(ops: &[Op]) -> String {
    let mut out = String::new();
    for op in ops {
        // Serializing plain data cannot fail.
        out.push_str(&serde_json::to_string(op).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Every (partition, offset, value, op index) a poll observed.
pub fn observations(ops: &[Op]) -> impl Iterator<Item = (i32, i64, &str, u64)> {
    ops.iter()
        .filter(|o| o.f == F::Poll && o.kind == Kind::Ok)
        .flat_map(|o| {
            o.records
                .iter()
                .map(move |(off, v)| (o.partition, *off, v.as_str(), o.index))
        })
}

/// Acknowledged sends.
pub fn acked_sends(ops: &[Op]) -> impl Iterator<Item = &Op> {
    ops.iter().filter(|o| o.f == F::Send && o.kind == Kind::Ok)
}

/// Acknowledged sends the final read did not return, in partitions a final read
/// covered. Only the final read counts: a record some poll saw during the faults and
/// that is gone after the heal was lost all the same (it was truncated away).
pub fn unread_acked_sends(ops: &[Op]) -> Vec<&Op> {
    let finals: std::collections::BTreeSet<i32> = ops
        .iter()
        .filter(|o| o.final_read)
        .map(|o| o.partition)
        .collect();
    let seen: std::collections::BTreeSet<&str> = ops
        .iter()
        .filter(|o| o.f == F::Poll && o.kind == Kind::Ok && o.final_read)
        .flat_map(|o| o.records.iter().map(|(_, v)| v.as_str()))
        .collect();
    acked_sends(ops)
        .filter(|s| {
            finals.contains(&s.partition) && s.value.as_deref().is_some_and(|v| !seen.contains(v))
        })
        .collect()
}

/// Each completed operation with the index of its invocation (the same process's
/// latest `invoke` of the same function), for real-time order: A precedes B when A
/// completed before B was invoked. Operations recorded without an invoke count as
/// invoked where they completed.
pub fn with_invocations(ops: &[Op]) -> Vec<(u64, &Op)> {
    let mut open: std::collections::BTreeMap<(u64, F, i32), u64> = Default::default();
    let mut out = Vec::new();
    for o in ops {
        let key = (o.process, o.f, o.partition);
        if o.kind == Kind::Invoke {
            open.insert(key, o.index);
        } else {
            out.push((open.remove(&key).unwrap_or(o.index), o));
        }
    }
    out
}
