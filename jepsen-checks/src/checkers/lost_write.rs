//! lost-write: a record whose send was acknowledged with acks=all is not returned by
//! the final read after the faults healed (a record polled during the run and gone at
//! the end is lost all the same).
//! Source: Jepsen's Kafka test ("lost-write"), and the Kafka durability contract
//! (KIP-98's acks=all: an acknowledged write survives).

use super::Anomaly;
use crate::history::{unread_acked_sends, Op};

pub const NAME: &str = "lost-write";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    unread_acked_sends(ops)
        .into_iter()
        .filter(|s| s.acks == Some(-1))
        .map(|s| Anomaly {
            kind: NAME,
            ops: vec![s.index],
            detail: format!(
                "{:?} acknowledged at {}-{} with acks=all, not in the final read",
                super::short(s.value.as_deref().unwrap_or_default()),
                s.partition,
                s.offset.unwrap_or(-1)
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    #[test]
    fn acked_and_unread_is_lost_only_with_a_final_read() {
        let mut h = vec![
            send(0, 1, 0, "a", 0, -1),
            send(1, 1, 0, "b", 1, -1),
            send(2, 1, 0, "c", 2, 1),
        ];
        assert!(
            check(&h).is_empty(),
            "no final read: nothing can be called lost"
        );
        h.push(poll(3, 9, 0, 0, &[(0, "a")], true));
        let found = check(&h);
        assert_eq!(found.len(), 1, "b is lost; c was acks=1");
        assert_eq!(found[0].ops, vec![1]);
    }

    #[test]
    fn a_record_seen_mid_run_and_gone_from_the_final_read_is_lost() {
        let h = vec![
            send(0, 1, 0, "a", 0, -1),
            send(1, 1, 0, "b", 1, -1),
            poll(2, 9, 0, 0, &[(0, "a"), (1, "b")], false),
            poll(3, 9, 0, 0, &[(0, "a")], true),
        ];
        let found = check(&h);
        assert_eq!(found.len(), 1, "b was truncated away after a poll saw it");
        assert_eq!(found[0].ops, vec![1]);
    }
}
