//! duplicate: one sent value appears at more than one offset. Every send carries a
//! unique value and producers never resend a value, so any copy is the broker's.
//! Source: Jepsen's Kafka test ("duplicate"); KIP-98 idempotence.

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{observations, Op};

pub const NAME: &str = "duplicate";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut at: BTreeMap<&str, BTreeMap<(i32, i64), u64>> = BTreeMap::new();
    for (p, off, v, op) in observations(ops) {
        at.entry(v).or_default().entry((p, off)).or_insert(op);
    }
    at.into_iter()
        .filter(|(_, places)| places.len() > 1)
        .map(|(v, places)| Anomaly {
            kind: NAME,
            ops: places.values().copied().collect(),
            detail: format!(
                "{:?} read at {:?}",
                super::short(v),
                places.keys().collect::<Vec<_>>()
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    #[test]
    fn a_value_at_two_offsets_is_a_duplicate() {
        let ok = vec![
            poll(0, 1, 0, 0, &[(0, "a"), (1, "b")], false),
            poll(1, 2, 0, 0, &[(0, "a")], false),
        ];
        assert!(check(&ok).is_empty());
        let dup = vec![poll(0, 1, 0, 0, &[(0, "a"), (1, "a")], false)];
        assert_eq!(check(&dup).len(), 1);
    }
}
