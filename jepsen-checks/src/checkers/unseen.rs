//! unseen: acknowledged sends (any acks level) that no poll ever observed, when a final
//! read covered their partition. On a single node acks=1 waits for the fsync too, so
//! any unseen record is a loss; `lost-write` names the acks=all ones.
//! Source: Jepsen's Kafka test ("unseen").

use super::Anomaly;
use crate::history::{unread_acked_sends, Op};

pub const NAME: &str = "unseen";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let unseen = unread_acked_sends(ops);
    if unseen.is_empty() {
        return Vec::new();
    }
    vec![Anomaly {
        kind: NAME,
        ops: unseen.iter().map(|s| s.index).collect(),
        detail: format!("{} acknowledged records never read", unseen.len()),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    #[test]
    fn acked_but_never_read_is_unseen() {
        let h = vec![send(0, 1, 0, "a", 0, 1), poll(1, 2, 0, 0, &[], true)];
        assert_eq!(check(&h)[0].ops, vec![0]);
        let h = vec![
            send(0, 1, 0, "a", 0, 1),
            poll(1, 2, 0, 0, &[(0, "a")], true),
        ];
        assert!(check(&h).is_empty());
    }
}
