//! double-ownership: two members of a KIP-848 consumer group owned one partition at the
//! same time. A member owns a partition from the moment it is told so until it lets
//! it go (its next assignment without it) or its lease runs out (its last successful
//! heartbeat's send time plus the session timeout: the coordinator cannot fence it, and
//! hand its partitions on, any sooner). The consumer protocol promises that a
//! partition goes to its next owner only once the last one released it or was fenced,
//! so these intervals never overlap, whatever the epochs say.
//! Source: KIP-848 (reconciliation: "revoke before assign", unreleased partitions).

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{Kind, Op, F};

pub const NAME: &str = "double-ownership";

/// One member's hold of one partition: [start, end) in history time, and the op
/// that started it.
struct Hold<'a> {
    member: &'a str,
    start: u64,
    end: u64,
    op: u64,
}

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let end_of_history = ops.iter().map(|o| o.time_ms).max().unwrap_or(0) + 1;
    // (group, partition) -> the holds, in the order they began.
    let mut holds: BTreeMap<(&str, i32), Vec<Hold>> = BTreeMap::new();
    // (process, partition) -> the open hold (start, op) and its lease.
    let mut open: BTreeMap<(u64, i32), (u64, u64, u64)> = BTreeMap::new();
    // A KIP-848 member records an assignment with its lease after every successful
    // heartbeat, and an empty one when it learns it was fenced.
    let kip848 = ops
        .iter()
        .filter(|o| o.f == F::Assign && o.kind == Kind::Ok && o.lease_ms.is_some());
    let mut group_of: BTreeMap<u64, (&str, &str)> = BTreeMap::new();
    for o in kip848 {
        let (Some(group), Some(member)) = (o.group.as_deref(), o.member.as_deref()) else {
            continue;
        };
        group_of.insert(o.process, (group, member));
        let now_owned: &[i32] = &o.partitions;
        let lease = o.lease_ms.unwrap_or(o.time_ms);
        // Holds that end here: partitions no longer owned.
        let ending: Vec<i32> = open
            .range((o.process, i32::MIN)..=(o.process, i32::MAX))
            .map(|((_, p), _)| *p)
            .filter(|p| !now_owned.contains(p))
            .collect();
        for p in ending {
            let (start, op, last_lease) = open.remove(&(o.process, p)).expect("listed");
            holds.entry((group, p)).or_default().push(Hold {
                member,
                start,
                end: o.time_ms.min(last_lease),
                op,
            });
        }
        for &p in now_owned {
            let e = open
                .entry((o.process, p))
                .or_insert((o.time_ms, o.index, lease));
            // A hold whose lease ran out before this heartbeat is cut there; a new
            // one starts now.
            if e.2 < o.time_ms {
                let (start, op, last_lease) = *e;
                holds.entry((group, p)).or_default().push(Hold {
                    member,
                    start,
                    end: last_lease,
                    op,
                });
                *e = (o.time_ms, o.index, lease);
            } else {
                e.2 = e.2.max(lease);
            }
        }
    }
    for ((process, p), (start, op, lease)) in open {
        let (group, member) = group_of[&process];
        holds.entry((group, p)).or_default().push(Hold {
            member,
            start,
            end: lease.min(end_of_history),
            op,
        });
    }
    let mut found = Vec::new();
    for ((group, p), mut hs) in holds {
        hs.sort_by_key(|h| (h.start, h.op));
        for (i, a) in hs.iter().enumerate() {
            if let Some(b) = hs[i + 1..]
                .iter()
                .find(|b| b.member != a.member && b.start < a.end)
            {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![a.op, b.op],
                    detail: format!(
                        "group {group} partition {p}: {} owned it from {} ms until {} ms, and {} was given it at {} ms",
                        a.member, a.start, a.end, b.member, b.start
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
    use crate::checkers::test_support::assign;

    fn held(
        index: u64,
        time: u64,
        process: u64,
        member: &str,
        epoch: i32,
        parts: &[i32],
        lease: u64,
    ) -> Op {
        let mut o = assign(index, process, member, epoch, parts);
        o.time_ms = time;
        o.lease_ms = Some(lease);
        o
    }

    #[test]
    fn a_partition_handed_on_after_its_release_is_valid() {
        let ops = [
            held(0, 10, 1, "a", 1, &[0, 1], 3_010),
            held(1, 20, 2, "b", 2, &[], 3_020),
            held(2, 30, 1, "a", 1, &[0], 3_030), // a releases 1
            held(3, 40, 2, "b", 2, &[1], 3_040), // then b gets it
        ];
        assert!(check(&ops).is_empty());
    }

    #[test]
    fn a_partition_given_before_its_owner_released_it_is_caught() {
        let ops = [
            held(0, 10, 1, "a", 1, &[0, 1], 3_010),
            held(1, 20, 2, "b", 2, &[1], 3_020), // b gets 1 while a holds it
            held(2, 30, 1, "a", 1, &[0], 3_030),
        ];
        let found = check(&ops);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ops, vec![0, 1]);
    }

    #[test]
    fn a_fenced_zombies_hold_ends_with_its_lease() {
        // a stops heartbeating at 10 (lease 3,010); b gets its partition at 5,000.
        let ops = [
            held(0, 10, 1, "a", 1, &[0], 3_010),
            held(1, 5_000, 2, "b", 3, &[0], 8_000),
        ];
        assert!(check(&ops).is_empty());
        // Had b been given it before a's lease ran out, that is double ownership.
        let ops = [
            held(0, 10, 1, "a", 1, &[0], 3_010),
            held(1, 2_000, 2, "b", 3, &[0], 5_000),
        ];
        assert_eq!(check(&ops).len(), 1);
    }
}
