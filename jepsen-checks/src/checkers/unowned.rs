//! unowned-partition: once a KIP-848 consumer group has settled (faults healed, members
//! alive and heartbeating), every partition of its topic is owned by exactly one
//! member. The history ends with the partitions to own (an assignment without a
//! member) and each live member's last assignment (final ones); a partition owned by
//! none, or by two, is reported.
//! Source: KIP-848 (the target assignment covers every subscribed partition and
//! members converge to it).

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{Kind, Op, F};

pub const NAME: &str = "unowned-partition";

/// Per partition, the members owning it with the op that says so.
type Owners<'a> = BTreeMap<i32, Vec<(&'a str, u64)>>;

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let finals = ops
        .iter()
        .filter(|o| o.f == F::Assign && o.kind == Kind::Ok && o.final_read);
    // group -> (the partitions to own, the op naming them)
    let mut expected: BTreeMap<&str, (&[i32], u64)> = BTreeMap::new();
    // group -> partition -> owners (member, op)
    let mut owners: BTreeMap<&str, Owners> = BTreeMap::new();
    for o in finals {
        let Some(group) = o.group.as_deref() else {
            continue;
        };
        match o.member.as_deref() {
            None => {
                expected.insert(group, (&o.partitions, o.index));
            }
            Some(m) => {
                for &p in &o.partitions {
                    owners
                        .entry(group)
                        .or_default()
                        .entry(p)
                        .or_default()
                        .push((m, o.index));
                }
            }
        }
    }
    let mut found = Vec::new();
    for (group, (partitions, op)) in expected {
        let owned = owners.remove(group).unwrap_or_default();
        for p in partitions {
            match owned.get(p).map(Vec::as_slice).unwrap_or_default() {
                [] => found.push(Anomaly {
                    kind: NAME,
                    ops: vec![op],
                    detail: format!(
                        "group {group}: partition {p} has no owner after the group settled"
                    ),
                }),
                [_] => {}
                many => found.push(Anomaly {
                    kind: NAME,
                    ops: many.iter().map(|(_, i)| *i).collect(),
                    detail: format!(
                        "group {group}: partition {p} owned by {:?} after the group settled",
                        many.iter().map(|(m, _)| *m).collect::<Vec<_>>()
                    ),
                }),
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::assign;

    fn settled(index: u64, member: Option<&str>, parts: &[i32]) -> Op {
        let mut o = assign(index, 1, member.unwrap_or("driver"), 5, parts);
        o.member = member.map(str::to_string);
        o.final_read = true;
        o
    }

    #[test]
    fn every_partition_owned_once_is_valid() {
        let ops = [
            settled(0, None, &[0, 1, 2]),
            settled(1, Some("a"), &[0, 2]),
            settled(2, Some("b"), &[1]),
        ];
        assert!(check(&ops).is_empty());
    }

    #[test]
    fn a_partition_owned_by_none_or_by_two_is_caught() {
        let ops = [
            settled(0, None, &[0, 1, 2]),
            settled(1, Some("a"), &[0, 1]),
            settled(2, Some("b"), &[1]),
        ];
        let found = check(&ops);
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
