//! poll-skip: a poll from offset `from` returned records starting past an offset that
//! holds a record (known from an acknowledged send or another poll), or jumped over
//! one between two of its records. A consumer must see every record in order.
//! Source: Jepsen's Kafka test ("poll-skip").

use std::collections::{BTreeMap, BTreeSet};

use super::Anomaly;
use crate::history::{acked_sends, observations, Kind, Op, F};

pub const NAME: &str = "poll-skip";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
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
        for (off, _) in &o.records {
            if *off > expected {
                if let Some(skipped) = offsets.range(expected..*off).next() {
                    found.push(Anomaly {
                        kind: NAME,
                        ops: vec![o.index],
                        detail: format!(
                            "poll of {} from {from} skipped offset {skipped} (jumped to {off})",
                            o.partition
                        ),
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
