//! precommitted-read: a read_committed reader saw a transaction's write before the
//! transaction's commit was even requested. Data must stay invisible until the
//! producer commits. Also checks the broker's own answers: a last stable offset
//! above the high watermark.
//! Source: Jepsen's Kafka test ("precommitted-read"); KIP-98 (LSO ≤ HW).

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{Kind, Op, F};

pub const NAME: &str = "precommitted-read";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    // When each transaction's end was requested (its invoke).
    let mut requested: BTreeMap<&str, u64> = BTreeMap::new();
    for o in ops
        .iter()
        .filter(|o| o.f == F::Txn && o.kind == Kind::Invoke)
    {
        for (_, v) in &o.records {
            requested.entry(v.as_str()).or_insert(o.index);
        }
    }
    let mut found = Vec::new();
    for r in ops
        .iter()
        .filter(|o| o.f == F::ReadCommitted && o.kind == Kind::Ok)
    {
        if let (Some(lso), Some(hw)) = (r.lso, r.hw) {
            if lso > hw {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![r.index],
                    detail: format!(
                        "partition {}: last stable offset {lso} above high watermark {hw}",
                        r.partition
                    ),
                });
            }
        }
        for (off, v) in &r.records {
            let early = requested.get(v.as_str()).is_none_or(|&at| at > r.index);
            if early {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![r.index],
                    detail: format!(
                        "{} read {v} at {}-{off} before its commit was requested",
                        r.node, r.partition
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
    use crate::checkers::test_support::{read_committed, txn_invoke};

    #[test]
    fn reads_after_the_commit_request_are_valid() {
        let ops = [
            txn_invoke(0, "t1", &[(0, "a")]),
            read_committed(1, 0, &[(0, "a")], 1, 1),
        ];
        assert!(check(&ops).is_empty());
    }

    #[test]
    fn early_reads_and_lso_above_hw_are_caught() {
        let ops = [
            read_committed(0, 0, &[(0, "a")], 1, 1),
            txn_invoke(1, "t1", &[(0, "a")]),
        ];
        assert_eq!(check(&ops).len(), 1);
        let ops = [read_committed(0, 0, &[], 5, 4)];
        assert_eq!(check(&ops).len(), 1);
    }
}
