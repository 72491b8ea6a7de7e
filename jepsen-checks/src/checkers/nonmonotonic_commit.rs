//! nonmonotonic-commit: a group's committed offset for a partition went back. Once a
//! commit of offset N was acknowledged, or an offset fetch returned N, any commit
//! acknowledged or fetch returning later (invoked after that completed) must be ≥ N.
//! With generation fencing and commit-after-process, no correct member commits lower.
//! Source: Kafka's OffsetCommit semantics; Jepsen's monotonic reads.

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{with_invocations, Kind, Op, F};

pub const NAME: &str = "nonmonotonic-commit";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    // Committed-offset observations: (invoked at, completed at, group, partition, offset).
    let mut seen: Vec<(u64, u64, &str, i32, i64)> = with_invocations(ops)
        .into_iter()
        .filter(|(_, o)| o.kind == Kind::Ok && matches!(o.f, F::Commit | F::FetchOffset))
        .filter_map(|(inv, o)| Some((inv, o.index, o.group.as_deref()?, o.partition, o.offset?)))
        .collect();
    // Walk invocations in order; `floor` holds the highest offset of observations that
    // completed before the current invocation.
    let mut completions: Vec<(u64, &str, i32, i64)> = seen
        .iter()
        .map(|&(_, done, g, p, off)| (done, g, p, off))
        .collect();
    completions.sort();
    seen.sort();
    let mut floor: BTreeMap<(&str, i32), (i64, u64)> = BTreeMap::new();
    let mut next = 0;
    let mut found = Vec::new();
    for (invoked, done, group, partition, offset) in seen {
        while next < completions.len() && completions[next].0 < invoked {
            let (at, g, p, off) = completions[next];
            let e = floor.entry((g, p)).or_insert((off, at));
            if off > e.0 {
                *e = (off, at);
            }
            next += 1;
        }
        if let Some(&(high, at)) = floor.get(&(group, partition)) {
            if offset < high {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![at, done],
                    detail: format!(
                        "group {group} partition {partition}: committed offset {high} then {offset}"
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
    use crate::checkers::test_support::{commit, fetch_offset};

    #[test]
    fn rising_commits_and_fetches_are_valid() {
        let ops = [
            commit(0, 1, 0, 5),
            fetch_offset(1, 2, 0, 5),
            commit(2, 3, 0, 9),
            fetch_offset(3, 2, 0, 9),
        ];
        assert!(check(&ops).is_empty());
    }

    #[test]
    fn a_lower_commit_or_fetch_afterwards_is_caught() {
        let ops = [commit(0, 1, 0, 9), commit(1, 2, 0, 5)];
        assert_eq!(check(&ops).len(), 1);
        let ops = [commit(0, 1, 0, 9), fetch_offset(1, 2, 0, -1)];
        assert_eq!(check(&ops).len(), 1);
    }
}
