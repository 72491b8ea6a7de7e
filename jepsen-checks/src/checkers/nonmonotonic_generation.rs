//! nonmonotonic-generation: a group member saw its group's generation go back, or saw
//! one generation number with two different assignments (a generation reused for a
//! new membership). Generations fence stale members only if they only increase. For
//! KIP-848 members (assignments with a lease) the generation is the member epoch.
//! Source: Kafka's group coordinator (generation ids, ILLEGAL_GENERATION).

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{Kind, Op, F};

pub const NAME: &str = "nonmonotonic-generation";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    // process -> (generation, partitions, op)
    let mut last: BTreeMap<u64, (i32, &[i32], u64)> = BTreeMap::new();
    let mut found = Vec::new();
    for o in ops
        .iter()
        .filter(|o| o.f == F::Assign && o.kind == Kind::Ok)
    {
        let Some(gen) = o.generation else { continue };
        if let Some(&(prev, prev_parts, prev_op)) = last.get(&o.process) {
            let why = if gen < prev {
                Some(format!("generation went from {prev} to {gen}"))
            } else if gen == prev && prev_parts != o.partitions.as_slice() && o.lease_ms.is_none() {
                // (A KIP-848 member's set changes within an epoch: it revokes at its
                // old epoch, and takes released partitions at its new one.)
                Some(format!(
                    "generation {gen} came with {prev_parts:?} and then with {:?}",
                    o.partitions
                ))
            } else {
                None
            };
            if let Some(why) = why {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![prev_op, o.index],
                    detail: format!("{}: {why}", o.member.as_deref().unwrap_or("?")),
                });
            }
        }
        last.insert(o.process, (gen, &o.partitions, o.index));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::assign;

    #[test]
    fn increasing_or_repeated_generations_are_valid() {
        let ops = [
            assign(0, 1, "a", 1, &[0]),
            assign(1, 1, "a", 1, &[0]),
            assign(2, 1, "a", 4, &[0, 1]),
        ];
        assert!(check(&ops).is_empty());
    }

    #[test]
    fn going_back_or_reusing_a_generation_is_caught() {
        let ops = [assign(0, 1, "a", 3, &[0]), assign(1, 1, "a", 2, &[0])];
        assert_eq!(check(&ops).len(), 1);
        let ops = [assign(0, 1, "a", 3, &[0]), assign(1, 1, "a", 3, &[0, 1])];
        assert_eq!(check(&ops).len(), 1);
    }
}
