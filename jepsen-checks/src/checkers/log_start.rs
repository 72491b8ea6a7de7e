//! log-start: a partition's log start offset never goes back, and nothing above it is
//! missing.
//! - Once a scan or a DeleteRecords was answered a log start offset, no operation
//!   invoked after that answer is answered a lower one (real-time order).
//! - A DeleteRecords acknowledged for offset O answers a low watermark of at least O.
//! - A scan is never answered a log start above its high watermark (retention and
//!   DeleteRecords stop at the high watermark), nor records below its log start.
//! - In a topic that was trimmed, every acknowledged write at or above the final read's
//!   log start is read back at its offset.
//!
//! Source: Kafka's DeleteRecords (KIP-107: the low watermark, "log start offset never
//! decreases"), KIP-101's high watermark rule for what a leader may delete, and the
//! durability contract of acks=all.

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{with_invocations, Kind, Op, F};

pub const NAME: &str = "log-start";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut found = never_back(ops);
    found.extend(answers(ops));
    found.extend(nothing_missing(ops));
    found
}

fn answered(o: &Op) -> Option<(&str, i64)> {
    let topic = o.topic.as_deref()?;
    matches!(o.f, F::Scan | F::Trim)
        .then_some(())
        .filter(|_| o.kind == Kind::Ok)?;
    Some((topic, o.log_start?))
}

/// An answer in completion order: (its op index, the highest log start answered so
/// far, the index of the op that answered that).
type Answered = (u64, i64, u64);

fn never_back(ops: &[Op]) -> Vec<Anomaly> {
    // Per partition, the answers in completion order, with a running maximum.
    let mut done: BTreeMap<(&str, i32), Vec<Answered>> = BTreeMap::new();
    let completed = with_invocations(ops);
    for (_, o) in &completed {
        if let Some((topic, start)) = answered(o) {
            let seq = done.entry((topic, o.partition)).or_default();
            let (max, from) = match seq.last() {
                Some(&(_, m, at)) if m >= start => (m, at),
                _ => (start, o.index),
            };
            seq.push((o.index, max, from));
        }
    }
    let mut found = Vec::new();
    for (invoked, o) in completed {
        let Some((topic, start)) = answered(o) else {
            continue;
        };
        let Some(seq) = done.get(&(topic, o.partition)) else {
            continue;
        };
        // The highest log start answered before this operation was invoked.
        let before = seq.partition_point(|(at, ..)| *at < invoked);
        if let Some(&(_, max, at)) = before.checked_sub(1).and_then(|i| seq.get(i)) {
            if start < max {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![at, o.index],
                    detail: format!(
                        "{topic}-{}: log start offset {max} was answered, then {start} to a later {}",
                        o.partition,
                        if o.f == F::Trim { "trim" } else { "read" }
                    ),
                });
            }
        }
    }
    found
}

fn answers(ops: &[Op]) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for o in ops.iter().filter(|o| o.kind == Kind::Ok) {
        let Some((topic, start)) = answered(o) else {
            continue;
        };
        let at = format!("{topic}-{}", o.partition);
        let wrong = match o.f {
            F::Trim => o.offset.filter(|asked| start < *asked).map(|asked| {
                format!("{at}: records before {asked} deleted, answered low watermark {start}")
            }),
            _ => match o.hw {
                Some(hw) if start > hw => Some(format!(
                    "{at}: log start offset {start} above the high watermark {hw}"
                )),
                _ => o
                    .entries
                    .iter()
                    .find(|(off, ..)| *off < start)
                    .map(|(off, ..)| {
                        format!("{at}: a read answered offset {off} below its log start {start}")
                    }),
            },
        };
        if let Some(detail) = wrong {
            found.push(Anomaly {
                kind: NAME,
                ops: vec![o.index],
                detail,
            });
        }
    }
    found
}

fn nothing_missing(ops: &[Op]) -> Vec<Anomaly> {
    let trimmed: std::collections::BTreeSet<(&str, i32)> = ops
        .iter()
        .filter(|o| o.f == F::Trim)
        .filter_map(|o| o.topic.as_deref().map(|t| (t, o.partition)))
        .collect();
    let mut found = Vec::new();
    for &(topic, partition) in &trimmed {
        let finals: Vec<&Op> = ops
            .iter()
            .filter(|o| {
                o.f == F::Scan
                    && o.kind == Kind::Ok
                    && o.final_read
                    && o.partition == partition
                    && o.topic.as_deref() == Some(topic)
            })
            .collect();
        if finals.is_empty() {
            continue;
        }
        let start = finals.iter().filter_map(|o| o.log_start).max().unwrap_or(0);
        let read: BTreeMap<i64, (&Option<String>, &Option<String>)> = finals
            .iter()
            .flat_map(|o| o.entries.iter().map(|(off, k, v)| (*off, (k, v))))
            .collect();
        for w in ops.iter().filter(|o| {
            o.f == F::Put
                && o.kind == Kind::Ok
                && o.partition == partition
                && o.topic.as_deref() == Some(topic)
                && o.offset.is_some_and(|off| off >= start)
        }) {
            let off = w.offset.unwrap_or(-1);
            if read.get(&off) != Some(&(&w.key, &w.value)) {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![w.index],
                    detail: format!(
                        "{topic}-{partition}: the write acknowledged at {off} is not read back there, above the final log start {start}"
                    ),
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    fn trim(index: u64, asked: i64, answered: i64) -> Op {
        let mut o = Op::new(Kind::Ok, F::Trim, "t", 7, 0);
        o.index = index;
        o.topic = Some("kv".into());
        o.offset = Some(asked);
        o.log_start = Some(answered);
        o
    }

    fn at(mut o: Op, log_start: i64, hw: i64) -> Op {
        o.log_start = Some(log_start);
        o.hw = Some(hw);
        o
    }

    #[test]
    fn the_log_start_never_goes_back() {
        let fine = vec![
            at(scan(0, 1, &[], false), 0, 5),
            trim(1, 3, 3),
            at(scan(2, 1, &[], false), 3, 5),
        ];
        assert!(check(&fine).is_empty());
        let back = vec![trim(0, 3, 3), at(scan(1, 1, &[], false), 2, 5)];
        let found = check(&back);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ops, vec![0, 1]);
    }

    #[test]
    fn answers_hold_their_own_rules() {
        assert_eq!(
            check(&[trim(0, 4, 3)]).len(),
            1,
            "low watermark below the ask"
        );
        assert_eq!(
            check(&[at(scan(0, 1, &[], false), 6, 5)]).len(),
            1,
            "log start above the high watermark"
        );
        assert_eq!(
            check(&[at(scan(0, 1, &[(1, "a", Some("x"))], false), 2, 5)]).len(),
            1,
            "a record below the log start"
        );
    }

    #[test]
    fn in_a_trimmed_topic_nothing_above_the_log_start_is_missing() {
        let h = vec![
            put(0, 1, "a", Some("a"), 0),
            put(1, 1, "b", Some("b"), 1),
            put(2, 1, "c", Some("c"), 2),
            trim(3, 1, 1),
            at(scan(4, 9, &[(2, "c", Some("c"))], true), 1, 3),
        ];
        let found = check(&h);
        assert_eq!(found.len(), 1, "b at 1 is gone: {found:?}");
        assert_eq!(found[0].ops, vec![1]);
    }
}
