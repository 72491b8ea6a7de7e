//! nonmonotonic-hw: a consumer saw a partition's high watermark go back: a poll was
//! answered with a high watermark below one the same consumer was answered earlier
//! (its polls run one after another, so the earlier one completed before the later
//! was sent). The high watermark is the committed end of the log; once a consumer was
//! told an offset is committed, no broker may tell it less (KIP-101/279: a new leader
//! holds every committed record; KIP-392 leaves the same promise to followers that
//! serve reads).
//! Source: Jepsen's Redpanda and Kafka analyses (high watermark regressions), the
//! Kafka replication design.

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{Kind, Op, F};

pub const NAME: &str = "nonmonotonic-hw";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut seen: BTreeMap<(u64, i32), (i64, u64)> = BTreeMap::new();
    let mut found = Vec::new();
    for o in ops.iter().filter(|o| o.f == F::Poll && o.kind == Kind::Ok) {
        let Some(hw) = o.hw else { continue };
        let key = (o.process, o.partition);
        match seen.get(&key) {
            Some(&(before, op)) if hw < before => found.push(Anomaly {
                kind: NAME,
                ops: vec![op, o.index],
                detail: format!(
                    "{} was told the high watermark of partition {} is {before}, then {hw}",
                    o.node, o.partition
                ),
            }),
            Some(&(before, _)) if hw == before => {}
            _ => {
                seen.insert(key, (hw, o.index));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    fn with_hw(mut o: Op, hw: i64) -> Op {
        o.hw = Some(hw);
        o
    }

    #[test]
    fn a_high_watermark_that_goes_back_is_caught() {
        let fine = vec![
            with_hw(poll(0, 1, 0, 0, &[], false), 3),
            with_hw(poll(1, 1, 0, 0, &[], false), 3),
            with_hw(poll(2, 2, 0, 0, &[], false), 1),
            with_hw(poll(3, 1, 0, 0, &[], false), 5),
        ];
        assert!(check(&fine).is_empty(), "another consumer may lag behind");
        let bad = vec![
            with_hw(poll(0, 1, 0, 0, &[], false), 5),
            with_hw(poll(1, 1, 0, 0, &[], false), 4),
        ];
        assert_eq!(check(&bad)[0].ops, vec![0, 1]);
    }
}
