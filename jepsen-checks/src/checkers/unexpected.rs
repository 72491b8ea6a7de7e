//! unexpected: a poll returned a value no producer ever tried to send: garbage or
//! another partition's data served as records.
//! Source: Jepsen's queue checkers ("unexpected" in jepsen.checker/total-queue).

use std::collections::BTreeSet;

use super::Anomaly;
use crate::history::{observations, Op, F};

pub const NAME: &str = "unexpected";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let attempted: BTreeSet<&str> = ops
        .iter()
        .filter(|o| o.f == F::Send)
        .filter_map(|o| o.value.as_deref())
        .collect();
    observations(ops)
        .filter(|(_, _, v, _)| !attempted.contains(v))
        .map(|(p, off, v, op)| Anomaly {
            kind: NAME,
            ops: vec![op],
            detail: format!("{p}-{off} holds {:?}, never sent", super::short(v)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    #[test]
    fn values_never_sent_are_caught() {
        let h = vec![
            invoke_send(0, 1, 0, "a"),
            poll(1, 2, 0, 0, &[(0, "a"), (1, "zz")], false),
        ];
        assert_eq!(check(&h).len(), 1);
    }
}
