//! skipped-by-commit: a group committed offset N for a partition while an
//! acknowledged record below N had not been processed by any member. With
//! commit-after-process that record is skipped for good: the group will resume at N.
//! Source: Kafka's at-least-once consumption contract (commit after processing).

use std::collections::{BTreeMap, BTreeSet};

use super::Anomaly;
use crate::history::{acked_sends, with_invocations, Kind, Op, F};

pub const NAME: &str = "skipped-by-commit";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    // Acknowledged offsets per partition.
    let mut acked: BTreeMap<i32, BTreeMap<i64, u64>> = BTreeMap::new();
    for s in acked_sends(ops) {
        if let Some(off) = s.offset {
            acked.entry(s.partition).or_default().insert(off, s.index);
        }
    }
    // When each (partition, offset) was first processed.
    let mut processed: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    for o in ops
        .iter()
        .filter(|o| o.f == F::Process && o.kind == Kind::Ok)
    {
        for (off, _) in &o.records {
            processed.entry((o.partition, *off)).or_insert(o.index);
        }
    }
    let mut reported: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut found = Vec::new();
    for (invoked, c) in with_invocations(ops) {
        if c.f != F::Commit || c.kind != Kind::Ok {
            continue;
        }
        let Some(upto) = c.offset else { continue };
        let Some(offsets) = acked.get(&c.partition) else {
            continue;
        };
        for (&off, &send) in offsets.range(..upto) {
            let in_time = processed
                .get(&(c.partition, off))
                .is_some_and(|&at| at < invoked);
            if !in_time && reported.insert((c.partition, off)) {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![send, c.index],
                    detail: format!(
                        "partition {}: offset {upto} committed before acknowledged offset {off} was processed",
                        c.partition
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
    use crate::checkers::test_support::{commit, process, send};

    #[test]
    fn committing_what_was_processed_is_valid() {
        let ops = [
            send(0, 1, 0, "a", 0, -1),
            send(1, 1, 0, "b", 1, -1),
            process(2, 5, 0, &[(0, "a"), (1, "b")]),
            commit(3, 5, 0, 2),
        ];
        assert!(check(&ops).is_empty());
    }

    #[test]
    fn committing_past_an_unprocessed_record_is_caught() {
        let ops = [
            send(0, 1, 0, "a", 0, -1),
            send(1, 1, 0, "b", 1, -1),
            process(2, 5, 0, &[(1, "b")]),
            commit(3, 5, 0, 2),
        ];
        assert_eq!(check(&ops).len(), 1);
    }
}
