//! nonmonotonic-poll: a consumer's reads of a partition go backwards: a poll returns
//! an offset at or below the last one the same consumer already read in an earlier
//! poll (it never seeks back). int-nonmonotonic-poll: the offsets within one poll do
//! not increase.
//! Source: Jepsen's Kafka test ("nonmonotonic-poll", "int-nonmonotonic-poll").

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{Kind, Op, F};

pub const NAME: &str = "nonmonotonic-poll";
pub const INTERNAL: &str = "int-nonmonotonic-poll";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    backwards(ops, false)
}

pub fn check_internal(ops: &[Op]) -> Vec<Anomaly> {
    backwards(ops, true)
}

fn backwards(ops: &[Op], internal: bool) -> Vec<Anomaly> {
    let mut last: BTreeMap<(u64, i32), (i64, u64)> = BTreeMap::new();
    let mut found = Vec::new();
    for o in ops.iter().filter(|o| o.f == F::Poll && o.kind == Kind::Ok) {
        for (off, _) in &o.records {
            let key = (o.process, o.partition);
            if let Some(&(prev, prev_op)) = last.get(&key) {
                if *off <= prev && (prev_op == o.index) == internal {
                    found.push(Anomaly {
                        kind: if internal { INTERNAL } else { NAME },
                        ops: if prev_op == o.index {
                            vec![o.index]
                        } else {
                            vec![prev_op, o.index]
                        },
                        detail: format!(
                            "process {} read {}-{prev} then {}-{off}",
                            o.process, o.partition, o.partition
                        ),
                    });
                }
            }
            last.insert(key, (*off, o.index));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    #[test]
    fn reading_backwards_is_caught() {
        assert!(check(&[
            poll(0, 1, 0, 0, &[(0, "a"), (1, "b")], false),
            poll(1, 1, 0, 2, &[(2, "c")], false)
        ])
        .is_empty());
        assert_eq!(
            check(&[
                poll(0, 1, 0, 0, &[(0, "a"), (1, "b")], false),
                poll(1, 1, 0, 1, &[(1, "b")], false)
            ])
            .len(),
            1
        );
        let inside = [poll(0, 1, 0, 0, &[(1, "b"), (0, "a")], false)];
        assert!(check(&inside).is_empty(), "one poll: the internal variant");
        assert_eq!(check_internal(&inside).len(), 1);
    }
}
