//! The checkers. Names follow Jepsen's Kafka test (jepsen.tests.kafka), whose anomaly
//! taxonomy this mirrors.

use crate::history::Op;

mod aborted_read;
mod compaction;
mod double_ownership;
mod duplicate;
mod exactly_once;
mod inconsistent_offsets;
mod log_start;
mod lost_write;
mod nonmonotonic_commit;
mod nonmonotonic_generation;
mod nonmonotonic_hw;
mod nonmonotonic_poll;
mod nonmonotonic_send;
mod poll_skip;
mod precommitted_read;
mod share;
mod skipped_by_commit;
mod split_ownership;
mod torn_transaction;
mod unexpected;
mod unowned;
mod unseen;

/// One anomaly and the operations that prove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: &'static str,
    /// Indexes of the operations that show it.
    pub ops: Vec<u64>,
    pub detail: String,
}

/// Every anomaly found, by kind, in the order the kinds were checked (root causes
/// first).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub anomalies: Vec<(&'static str, Vec<Anomaly>)>,
}

impl Report {
    /// Adds the anomalies of one kind (after those already there).
    pub fn push(&mut self, kind: &'static str, found: Vec<Anomaly>) {
        self.anomalies.push((kind, found));
    }

    /// The anomalies of one kind.
    pub fn get(&self, kind: &str) -> &[Anomaly] {
        self.anomalies
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    pub fn is_valid(&self) -> bool {
        self.anomalies.iter().all(|(_, v)| v.is_empty())
    }
    /// A short summary, e.g. `lost-write:3 poll-skip:1`, or `valid`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .anomalies
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}:{}", v.len()))
            .collect();
        if parts.is_empty() {
            "valid".into()
        } else {
            parts.join(" ")
        }
    }
    /// The full report, with up to `examples` anomalies of each kind.
    pub fn render(&self, examples: usize) -> String {
        let mut out = String::new();
        for (kind, found) in &self.anomalies {
            if found.is_empty() {
                continue;
            }
            out.push_str(&format!("{kind}: {} found\n", found.len()));
            for a in found.iter().take(examples) {
                out.push_str(&format!("  ops {:?}: {}\n", a.ops, a.detail));
            }
        }
        if out.is_empty() {
            out.push_str("valid: no anomalies\n");
        }
        out
    }
}

/// A checker: the anomalies of one kind in a history.
type Checker = fn(&[Op]) -> Vec<Anomaly>;

/// Every checker, root causes first: a lost or overwritten write explains the
/// ordering, group and exactly-once anomalies that follow from it, so a report lists
/// it before them.
const CHECKERS: [(&str, Checker); 25] = [
    (lost_write::NAME, lost_write::check),
    (log_start::NAME, log_start::check),
    (compaction::NAME, compaction::check),
    (inconsistent_offsets::NAME, inconsistent_offsets::check),
    (duplicate::NAME, duplicate::check),
    (unseen::NAME, unseen::check),
    (unexpected::NAME, unexpected::check),
    (nonmonotonic_hw::NAME, nonmonotonic_hw::check),
    (nonmonotonic_send::NAME, nonmonotonic_send::check),
    (nonmonotonic_poll::NAME, nonmonotonic_poll::check),
    (
        nonmonotonic_poll::INTERNAL,
        nonmonotonic_poll::check_internal,
    ),
    (poll_skip::NAME, poll_skip::check),
    (poll_skip::INTERNAL, poll_skip::check_internal),
    (aborted_read::NAME, aborted_read::check),
    (precommitted_read::NAME, precommitted_read::check),
    (torn_transaction::NAME, torn_transaction::check),
    (exactly_once::NAME, exactly_once::check),
    (split_ownership::NAME, split_ownership::check),
    (double_ownership::NAME, double_ownership::check),
    (unowned::NAME, unowned::check),
    (
        nonmonotonic_generation::NAME,
        nonmonotonic_generation::check,
    ),
    (nonmonotonic_commit::NAME, nonmonotonic_commit::check),
    (skipped_by_commit::NAME, skipped_by_commit::check),
    (share::REDELIVERED, share::check_redelivered),
    (share::LOST, share::check_lost),
];

/// Runs every checker.
pub fn check_all(ops: &[Op]) -> Report {
    let mut report = Report::default();
    for (name, check) in CHECKERS {
        report.push(name, check(ops));
    }
    report
}

/// A value as a report shows it: a workload's values are an id and padding, and the
/// id is what tells them apart.
pub fn short(value: &str) -> String {
    const KEEP: usize = 16;
    match value.char_indices().nth(KEEP) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::history::{Kind, Op, F};

    pub fn send(
        index: u64,
        process: u64,
        partition: i32,
        value: &str,
        offset: i64,
        acks: i16,
    ) -> Op {
        let mut o = Op::new(Kind::Ok, F::Send, "p", process, partition);
        o.index = index;
        o.value = Some(value.into());
        o.offset = Some(offset);
        o.acks = Some(acks);
        o
    }

    pub fn invoke_send(index: u64, process: u64, partition: i32, value: &str) -> Op {
        let mut o = Op::new(Kind::Invoke, F::Send, "p", process, partition);
        o.index = index;
        o.value = Some(value.into());
        o
    }

    pub fn assign(index: u64, process: u64, member: &str, generation: i32, parts: &[i32]) -> Op {
        let mut o = Op::new(Kind::Ok, F::Assign, member, process, -1);
        o.index = index;
        o.group = Some("g".into());
        o.member = Some(member.into());
        o.generation = Some(generation);
        o.partitions = parts.to_vec();
        o
    }

    pub fn commit(index: u64, process: u64, partition: i32, offset: i64) -> Op {
        let mut o = Op::new(Kind::Ok, F::Commit, "m", process, partition);
        o.index = index;
        o.group = Some("g".into());
        o.offset = Some(offset);
        o
    }

    pub fn fetch_offset(index: u64, process: u64, partition: i32, offset: i64) -> Op {
        let mut o = commit(index, process, partition, offset);
        o.f = F::FetchOffset;
        o
    }

    pub fn process(index: u64, process: u64, partition: i32, records: &[(i64, &str)]) -> Op {
        let mut o = Op::new(Kind::Ok, F::Process, "m", process, partition);
        o.index = index;
        o.records = records
            .iter()
            .map(|(off, v)| (*off, v.to_string()))
            .collect();
        o
    }

    pub fn txn_invoke(index: u64, name: &str, writes: &[(i64, &str)]) -> Op {
        let mut o = Op::new(Kind::Invoke, F::Txn, "tp", 1, -1);
        o.index = index;
        o.txn = Some(name.into());
        o.records = writes.iter().map(|(p, v)| (*p, v.to_string())).collect();
        o
    }

    pub fn txn(index: u64, name: &str, writes: &[(i64, &str)], commit: bool) -> Op {
        let mut o = txn_invoke(index, name, writes);
        o.kind = Kind::Ok;
        o.commit = Some(commit);
        o
    }

    pub fn read_committed(
        index: u64,
        partition: i32,
        records: &[(i64, &str)],
        lso: i64,
        hw: i64,
    ) -> Op {
        let mut o = Op::new(Kind::Ok, F::ReadCommitted, "rc", 9, partition);
        o.index = index;
        o.records = records
            .iter()
            .map(|(off, v)| (*off, v.to_string()))
            .collect();
        o.lso = Some(lso);
        o.hw = Some(hw);
        o
    }

    pub fn final_read_committed(index: u64, partition: i32, records: &[(i64, &str)]) -> Op {
        let mut o = read_committed(index, partition, records, 0, 0);
        o.final_read = true;
        o
    }

    pub fn poll(
        index: u64,
        process: u64,
        partition: i32,
        from: i64,
        records: &[(i64, &str)],
        final_read: bool,
    ) -> Op {
        let mut o = Op::new(Kind::Ok, F::Poll, "c", process, partition);
        o.index = index;
        o.from = Some(from);
        o.records = records
            .iter()
            .map(|(off, v)| (*off, v.to_string()))
            .collect();
        o.final_read = final_read;
        o
    }

    /// An acknowledged keyed write to topic "kv", partition 0 (`value` None: a
    /// tombstone).
    pub fn put(index: u64, process: u64, key: &str, value: Option<&str>, offset: i64) -> Op {
        let mut o = Op::new(Kind::Ok, F::Put, "w", process, 0);
        o.index = index;
        o.topic = Some("kv".into());
        o.key = Some(key.into());
        o.value = value.map(str::to_string);
        o.offset = Some(offset);
        o.acks = Some(-1);
        o
    }

    /// A scan of "kv" partition 0 from `from` 0.
    pub fn scan(
        index: u64,
        process: u64,
        entries: &[(i64, &str, Option<&str>)],
        final_read: bool,
    ) -> Op {
        let mut o = Op::new(Kind::Ok, F::Scan, "s", process, 0);
        o.index = index;
        o.topic = Some("kv".into());
        o.from = Some(0);
        o.entries = entries
            .iter()
            .map(|(off, k, v)| (*off, Some(k.to_string()), v.map(str::to_string)))
            .collect();
        o.final_read = final_read;
        o
    }
}
