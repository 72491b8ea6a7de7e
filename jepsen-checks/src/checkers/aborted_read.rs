//! aborted-read (G1a): a read_committed reader saw a write of a transaction that was
//! aborted. Aborted data must never be visible to read_committed readers.
//! Source: Adya's G1a; Jepsen's Kafka test ("aborted-read"); KIP-98.

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{Kind, Op, F};

pub const NAME: &str = "aborted-read";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let aborted: BTreeMap<&str, &Op> = ops
        .iter()
        .filter(|o| o.f == F::Txn && o.kind == Kind::Ok && o.commit == Some(false))
        .flat_map(|o| o.records.iter().map(move |(_, v)| (v.as_str(), o)))
        .collect();
    let mut found = Vec::new();
    for r in ops
        .iter()
        .filter(|o| o.f == F::ReadCommitted && o.kind == Kind::Ok)
    {
        for (off, v) in &r.records {
            if let Some(t) = aborted.get(v.as_str()) {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![t.index, r.index],
                    detail: format!(
                        "{} read {v} at {}-{off}, written by aborted transaction {}",
                        r.node,
                        r.partition,
                        t.txn.as_deref().unwrap_or("?")
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
    use crate::checkers::test_support::{read_committed, txn};

    #[test]
    fn committed_reads_are_valid_and_aborted_ones_caught() {
        let ops = [
            txn(0, "t1", &[(0, "a")], true),
            txn(1, "t2", &[(0, "b")], false),
            read_committed(2, 0, &[(0, "a")], 1, 1),
        ];
        assert!(check(&ops).is_empty());
        let ops = [
            txn(0, "t2", &[(0, "b")], false),
            read_committed(1, 0, &[(3, "b")], 4, 4),
        ];
        assert_eq!(check(&ops).len(), 1);
    }
}
