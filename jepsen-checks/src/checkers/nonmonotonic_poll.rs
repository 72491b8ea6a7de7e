//! nonmonotonic-poll: a consumer's reads of a partition go backwards: offsets within
//! one poll do not increase, or a poll starts at or below the last offset the same
//! consumer already read (it never seeks back).
//! Source: Jepsen's Kafka test ("nonmonotonic-poll").

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{Kind, Op, F};

pub const NAME: &str = "nonmonotonic-poll";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut last: BTreeMap<(u64, i32), (i64, u64)> = BTreeMap::new();
    let mut found = Vec::new();
    for o in ops.iter().filter(|o| o.f == F::Poll && o.kind == Kind::Ok) {
        for (off, _) in &o.records {
            let key = (o.process, o.partition);
            if let Some(&(prev, prev_op)) = last.get(&key) {
                if *off <= prev {
                    found.push(Anomaly {
                        kind: NAME,
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
        assert_eq!(
            check(&[poll(0, 1, 0, 0, &[(1, "b"), (0, "a")], false)]).len(),
            1
        );
    }
}
