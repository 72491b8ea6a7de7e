//! split-ownership: two members of a consumer group were given the same partition in
//! the same generation, so both would process it. The group protocol's promise is one
//! owner per partition per generation.
//! Source: Kafka's group membership protocol (KIP-62, KIP-345); Jepsen's "split-brain".

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{Kind, Op, F};

pub const NAME: &str = "split-ownership";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    // (group, generation, partition) -> (member, op)
    let mut owner: BTreeMap<(&str, i32, i32), (&str, u64)> = BTreeMap::new();
    let mut found = Vec::new();
    for o in ops
        .iter()
        .filter(|o| o.f == F::Assign && o.kind == Kind::Ok)
    {
        let (Some(group), Some(member), Some(gen)) = (&o.group, &o.member, o.generation) else {
            continue;
        };
        for &p in &o.partitions {
            match owner.get(&(group.as_str(), gen, p)) {
                Some(&(other, first)) if other != member => found.push(Anomaly {
                    kind: NAME,
                    ops: vec![first, o.index],
                    detail: format!(
                        "group {group} generation {gen}: partition {p} given to {other} and {member}"
                    ),
                }),
                Some(_) => {}
                None => {
                    owner.insert((group.as_str(), gen, p), (member.as_str(), o.index));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::assign;

    #[test]
    fn one_owner_per_generation_is_valid() {
        let ops = [
            assign(0, 1, "a", 1, &[0, 1]),
            assign(1, 2, "b", 1, &[2]),
            assign(2, 2, "b", 2, &[0, 1, 2]),
        ];
        assert!(check(&ops).is_empty());
    }

    #[test]
    fn two_owners_in_one_generation_are_caught() {
        let ops = [assign(0, 1, "a", 3, &[0, 1]), assign(1, 2, "b", 3, &[1])];
        assert_eq!(check(&ops).len(), 1);
    }
}
