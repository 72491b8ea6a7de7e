//! poll-skip: a poll from offset `from` (where the same consumer's previous poll of the
//! partition ended) returned records starting past an offset that holds a record
//! (known from an acknowledged send or another poll). int-poll-skip: one poll jumped
//! over such an offset between two of its own records. A consumer must see every
//! record in order.
//! Source: Jepsen's Kafka test ("poll-skip", "int-poll-skip").

use std::collections::{BTreeMap, BTreeSet};

use super::Anomaly;
use crate::history::{acked_sends, observations, Kind, Op, F};

pub const NAME: &str = "poll-skip";
pub const INTERNAL: &str = "int-poll-skip";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    skips(ops, false)
}

pub fn check_internal(ops: &[Op]) -> Vec<Anomaly> {
    skips(ops, true)
}

fn skips(ops: &[Op], internal: bool) -> Vec<Anomaly> {
    // Offsets known to hold a record, by partition.
    let mut known: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for s in acked_sends(ops) {
        if let Some(off) = s.offset {
            known.entry(s.partition).or_default().insert(off);
        }
    }
    for (p, off, _, _) in observations(ops) {
        known.entry(p).or_default().insert(off);
    }
    let mut found = Vec::new();
    for o in ops
        .iter()
        .filter(|o| o.f == F::Poll && o.kind == Kind::Ok && !o.records.is_empty())
    {
        let Some(from) = o.from else { continue };
        let Some(offsets) = known.get(&o.partition) else {
            continue;
        };
        let mut expected = from;
        for (i, (off, _)) in o.records.iter().enumerate() {
            if *off > expected && (i > 0) == internal {
                if let Some(skipped) = offsets.range(expected..*off).next() {
                    found.push(Anomaly {
                        kind: if internal { INTERNAL } else { NAME },
                        ops: vec![o.index],
                        detail: if internal {
                            format!(
                                "poll of {} jumped from {} to {off} over offset {skipped}",
                                o.partition,
                                expected - 1
                            )
                        } else {
                            format!(
                                "poll of {} from {from} started at {off}, past offset {skipped}",
                                o.partition
                            )
                        },
                    });
                    break;
                }
            }
            expected = off + 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    #[test]
    fn jumping_over_a_known_record_is_caught() {
        let h = vec![
            send(0, 1, 0, "a", 0, -1),
            send(1, 1, 0, "b", 1, -1),
            poll(2, 2, 0, 0, &[(1, "b")], false),
        ];
        assert_eq!(check(&h)[0].ops, vec![2]);
        assert!(check_internal(&h).is_empty(), "the jump is between polls");
        let inside = vec![
            send(0, 1, 0, "a", 0, -1),
            send(1, 1, 0, "b", 1, -1),
            send(2, 1, 0, "c", 2, -1),
            poll(3, 2, 0, 0, &[(0, "a"), (2, "c")], false),
        ];
        assert_eq!(check_internal(&inside)[0].ops, vec![3]);
        assert!(check(&inside).is_empty(), "the jump is inside one poll");
        let fine = vec![
            send(0, 1, 0, "a", 0, -1),
            poll(2, 2, 0, 0, &[(0, "a")], false),
            poll(3, 2, 0, 1, &[(5, "x")], false),
        ];
        assert!(
            check(&fine).is_empty(),
            "offsets nobody knows of may be gaps (failed sends)"
        );
    }
}
