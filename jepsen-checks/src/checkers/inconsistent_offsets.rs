//! inconsistent-offsets: two observers disagree about what is at a (partition,
//! offset): two polls saw different values there, or a send was acknowledged at an
//! offset where a poll saw another value.
//! Source: Jepsen's Kafka test ("inconsistent-offsets"); Kafka's log is one total
//! order per partition.

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{acked_sends, observations, Op};

pub const NAME: &str = "inconsistent-offsets";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut at: BTreeMap<(i32, i64), BTreeMap<&str, u64>> = BTreeMap::new();
    for s in acked_sends(ops) {
        if let (Some(off), Some(v)) = (s.offset, s.value.as_deref()) {
            at.entry((s.partition, off))
                .or_default()
                .entry(v)
                .or_insert(s.index);
        }
    }
    for (p, off, v, op) in observations(ops) {
        at.entry((p, off)).or_default().entry(v).or_insert(op);
    }
    at.into_iter()
        .filter(|(_, values)| values.len() > 1)
        .map(|((p, off), values)| Anomaly {
            kind: NAME,
            ops: values.values().copied().collect(),
            detail: format!(
                "{p}-{off} holds {:?}",
                values.keys().map(|v| super::short(v)).collect::<Vec<_>>()
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    #[test]
    fn disagreement_at_an_offset_is_caught() {
        let ok = vec![
            send(0, 1, 0, "a", 0, -1),
            poll(1, 2, 0, 0, &[(0, "a")], false),
        ];
        assert!(check(&ok).is_empty());
        let bad = vec![
            send(0, 1, 0, "a", 0, -1),
            poll(1, 2, 0, 0, &[(0, "b")], false),
        ];
        assert_eq!(check(&bad)[0].ops, vec![0, 1]);
    }
}
