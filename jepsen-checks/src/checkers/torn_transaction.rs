//! torn-transaction: after healing, a read_committed read shows some but not all of a
//! transaction's writes (atomicity across partitions), or not all of a transaction
//! that was acknowledged as committed (a lost commit).
//! Source: KIP-98 (atomic multi-partition writes); Jepsen's Kafka test.

use std::collections::{BTreeMap, BTreeSet};

use super::Anomaly;
use crate::history::{Kind, Op, F};

pub const NAME: &str = "torn-transaction";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let finals: Vec<&Op> = ops
        .iter()
        .filter(|o| o.f == F::ReadCommitted && o.kind == Kind::Ok && o.final_read)
        .collect();
    if finals.is_empty() {
        return Vec::new();
    }
    let covered: BTreeSet<i32> = finals.iter().map(|o| o.partition).collect();
    let seen: BTreeSet<&str> = finals
        .iter()
        .flat_map(|o| o.records.iter().map(|(_, v)| v.as_str()))
        .collect();
    let mut found = Vec::new();
    // The last outcome known for each transaction (invoke, then ok / info / fail).
    let mut ends: BTreeMap<&str, &Op> = BTreeMap::new();
    for o in ops
        .iter()
        .filter(|o| o.f == F::Txn && o.kind != Kind::Invoke)
    {
        if let Some(t) = &o.txn {
            ends.insert(t, o);
        }
    }
    for (name, o) in ends {
        let writes: Vec<&str> = o
            .records
            .iter()
            .filter(|(p, _)| covered.contains(&(*p as i32)))
            .map(|(_, v)| v.as_str())
            .collect();
        let visible = writes.iter().filter(|v| seen.contains(*v)).count();
        let committed = o.kind == Kind::Ok && o.commit == Some(true);
        let why = if visible != 0 && visible != writes.len() {
            Some(format!("{visible} of its {} writes visible", writes.len()))
        } else if committed && visible != writes.len() {
            Some(format!(
                "committed, but none of its {} writes visible",
                writes.len()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            found.push(Anomaly {
                kind: NAME,
                ops: vec![o.index],
                detail: format!("transaction {name}: {why}"),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::{final_read_committed, txn};

    #[test]
    fn whole_transactions_are_valid() {
        let ops = [
            txn(0, "t1", &[(0, "a"), (1, "b")], true),
            txn(1, "t2", &[(0, "c"), (1, "d")], false),
            final_read_committed(2, 0, &[(0, "a")]),
            final_read_committed(3, 1, &[(0, "b")]),
        ];
        assert!(check(&ops).is_empty());
    }

    #[test]
    fn half_visible_or_lost_commits_are_caught() {
        let ops = [
            txn(0, "t1", &[(0, "a"), (1, "b")], false),
            final_read_committed(1, 0, &[(0, "a")]),
            final_read_committed(2, 1, &[]),
        ];
        assert_eq!(check(&ops).len(), 1);
        let ops = [
            txn(0, "t1", &[(0, "a")], true),
            final_read_committed(1, 0, &[]),
        ];
        assert_eq!(check(&ops).len(), 1);
    }
}
