//! nonmonotonic-send: one producer's acknowledged sends to one partition, issued one
//! after another, got offsets that do not increase.
//! Source: Jepsen's Kafka test ("nonmonotonic-send"); Kafka's per-partition ordering.

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{acked_sends, Op};

pub const NAME: &str = "nonmonotonic-send";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut last: BTreeMap<(u64, i32), (i64, u64)> = BTreeMap::new();
    let mut found = Vec::new();
    for s in acked_sends(ops) {
        let Some(off) = s.offset else { continue };
        if let Some(&(prev, prev_op)) = last.get(&(s.process, s.partition)) {
            if off <= prev {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![prev_op, s.index],
                    detail: format!(
                        "process {} sent to {} at offset {prev} then {off}",
                        s.process, s.partition
                    ),
                });
            }
        }
        last.insert((s.process, s.partition), (off, s.index));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    #[test]
    fn offsets_going_back_for_one_producer_are_caught() {
        assert!(check(&[
            send(0, 1, 0, "a", 3, -1),
            send(1, 1, 0, "b", 4, -1),
            send(2, 2, 0, "c", 1, -1)
        ])
        .is_empty());
        assert_eq!(
            check(&[send(0, 1, 0, "a", 3, -1), send(1, 1, 0, "b", 3, -1)]).len(),
            1
        );
    }
}
