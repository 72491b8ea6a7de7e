//! Share groups (KIP-932): what a queue promises.
//!
//! share-redelivered: a record a member accepted, and the broker answered the
//! acknowledgement as applied, is never delivered again: a share fetch invoked after
//! that answer must not return it. (Acknowledgements are answered only once the
//! share-partition state is durable, so no crash or leader change takes one back.)
//!
//! share-lost: every acknowledged send is delivered, and ends accepted: by an
//! acknowledgement answered as applied, or one whose answer was lost or never came
//! (it may have applied), unless it was delivered `group.share.delivery.count.limit`
//! times (it is then archived, as KIP-932 says). Judged on histories whose members drained the
//! topic after the faults were healed.
//!
//! Source: KIP-932 (Queues for Kafka): "acquired records", "acknowledgement",
//! "delivery count", and the at-least-once delivery of share groups.

use std::collections::{BTreeMap, BTreeSet};

use super::{short, Anomaly};
use crate::history::{acked_sends, Kind, Op, F};

pub const REDELIVERED: &str = "share-redelivered";
pub const LOST: &str = "share-lost";

/// The broker's `group.share.delivery.count.limit` in the runs checked.
pub const DELIVERY_LIMIT: i16 = 5;

/// Each share fetch's completed ops with the index of the fetch's invocation (the
/// same process's latest share-fetch invoke).
fn fetches(ops: &[Op]) -> Vec<(u64, &Op)> {
    let mut invoked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for o in ops.iter().filter(|o| o.f == F::ShareFetch) {
        match o.kind {
            Kind::Invoke => {
                invoked.insert(o.process, o.index);
            }
            Kind::Ok => out.push((*invoked.get(&o.process).unwrap_or(&o.index), o)),
            _ => {}
        }
    }
    out
}

pub fn check_redelivered(ops: &[Op]) -> Vec<Anomaly> {
    // value -> the first applied acceptance of it (op index)
    let mut accepted: BTreeMap<&str, u64> = BTreeMap::new();
    for o in ops
        .iter()
        .filter(|o| o.f == F::ShareAck && o.kind == Kind::Ok)
    {
        for (_, v) in &o.records {
            accepted.entry(v.as_str()).or_insert(o.index);
        }
    }
    let mut found = Vec::new();
    for (invoked, o) in fetches(ops) {
        for (offset, v) in &o.records {
            let Some(&ack) = accepted.get(v.as_str()) else {
                continue;
            };
            if invoked > ack {
                found.push(Anomaly {
                    kind: REDELIVERED,
                    ops: vec![ack, o.index],
                    detail: format!(
                        "{} (partition {}, offset {offset}) was accepted at op {ack}, then delivered again to {} by a fetch sent after (delivery {})",
                        short(v),
                        o.partition,
                        o.member.as_deref().unwrap_or(&o.node),
                        o.delivery_count.unwrap_or(-1)
                    ),
                });
            }
        }
    }
    found
}

pub fn check_lost(ops: &[Op]) -> Vec<Anomaly> {
    if !ops.iter().any(|o| o.f == F::ShareFetch) {
        return Vec::new();
    }
    // Accepted, or maybe: answered as applied, answer lost, or never answered (the
    // member crashed with the request in flight).
    let mut accepted: BTreeSet<&str> = BTreeSet::new();
    let mut open: BTreeMap<(u64, i32), &Op> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.f == F::ShareAck) {
        match o.kind {
            Kind::Invoke => {
                open.insert((o.process, o.partition), o);
            }
            kind => {
                open.remove(&(o.process, o.partition));
                if matches!(kind, Kind::Ok | Kind::Info) {
                    accepted.extend(o.records.iter().map(|(_, v)| v.as_str()));
                }
            }
        }
    }
    accepted.extend(
        open.values()
            .flat_map(|o| o.records.iter().map(|(_, v)| v.as_str())),
    );
    let mut deliveries: BTreeMap<&str, i16> = BTreeMap::new();
    for (_, o) in fetches(ops) {
        for (_, v) in &o.records {
            let n = deliveries.entry(v.as_str()).or_default();
            *n = (*n).max(o.delivery_count.unwrap_or(1));
        }
    }
    acked_sends(ops)
        .filter_map(|s| {
            let v = s.value.as_deref()?;
            if accepted.contains(v) {
                return None;
            }
            let delivered = deliveries.get(v).copied().unwrap_or(0);
            if delivered >= DELIVERY_LIMIT {
                return None;
            }
            Some(Anomaly {
                kind: LOST,
                ops: vec![s.index],
                detail: format!(
                    "{} (partition {}, offset {}) was acknowledged to its producer but {}",
                    short(v),
                    s.partition,
                    s.offset.unwrap_or(-1),
                    if delivered == 0 {
                        "never delivered to the share group".to_string()
                    } else {
                        format!("never accepted ({delivered} deliveries, below the limit)")
                    }
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::send;

    fn fetch_invoke(index: u64, process: u64) -> Op {
        let mut o = Op::new(Kind::Invoke, F::ShareFetch, "m", process, -1);
        o.index = index;
        o
    }

    fn delivered(index: u64, process: u64, values: &[(i64, &str)], count: i16) -> Op {
        let mut o = Op::new(Kind::Ok, F::ShareFetch, "m", process, 0);
        o.index = index;
        o.records = values.iter().map(|(o, v)| (*o, v.to_string())).collect();
        o.delivery_count = Some(count);
        o
    }

    fn ack(index: u64, process: u64, kind: Kind, values: &[(i64, &str)]) -> Op {
        let mut o = Op::new(kind, F::ShareAck, "m", process, 0);
        o.index = index;
        o.records = values.iter().map(|(o, v)| (*o, v.to_string())).collect();
        o
    }

    #[test]
    fn a_record_fetched_again_after_its_acceptance_is_redelivered() {
        let ops = vec![
            send(0, 1, 0, "a", 0, -1),
            fetch_invoke(1, 10),
            delivered(2, 10, &[(0, "a")], 1),
            ack(3, 10, Kind::Ok, &[(0, "a")]),
            fetch_invoke(4, 11),
            delivered(5, 11, &[(0, "a")], 2),
        ];
        let found = check_redelivered(&ops);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].ops, vec![3, 5]);
        assert!(check_lost(&ops).is_empty());
    }

    #[test]
    fn a_fetch_sent_before_the_acceptance_was_answered_is_not_judged() {
        // 11's fetch was in flight when 10's acknowledgement was answered.
        let ops = vec![
            fetch_invoke(1, 10),
            delivered(2, 10, &[(0, "a")], 1),
            fetch_invoke(3, 11),
            ack(4, 10, Kind::Ok, &[(0, "a")]),
            delivered(5, 11, &[(0, "a")], 2),
        ];
        assert!(check_redelivered(&ops).is_empty());
        // A refused or unanswered acknowledgement promises nothing.
        let ops = vec![
            fetch_invoke(1, 10),
            delivered(2, 10, &[(0, "a")], 1),
            ack(3, 10, Kind::Info, &[(0, "a")]),
            fetch_invoke(4, 11),
            delivered(5, 11, &[(0, "a")], 2),
        ];
        assert!(check_redelivered(&ops).is_empty());
    }

    #[test]
    fn an_acknowledged_send_never_accepted_is_lost_unless_archived() {
        let ops = vec![
            send(0, 1, 0, "a", 0, -1),
            send(1, 1, 0, "b", 1, -1),
            send(2, 1, 0, "c", 2, -1),
            send(3, 1, 0, "d", 3, -1),
            fetch_invoke(4, 10),
            delivered(5, 10, &[(0, "a"), (1, "b")], 1),
            delivered(6, 10, &[(2, "c")], DELIVERY_LIMIT),
            ack(7, 10, Kind::Info, &[(0, "a")]),
            // b's acceptance refused; e's never answered (the member crashed).
            send(8, 1, 0, "e", 4, -1),
            ack(9, 10, Kind::Invoke, &[(1, "b")]),
            ack(10, 10, Kind::Fail, &[(1, "b")]),
            ack(11, 10, Kind::Invoke, &[(4, "e")]),
        ];
        let found = check_lost(&ops);
        let lost: Vec<u64> = found.iter().map(|a| a.ops[0]).collect();
        assert_eq!(
            lost,
            vec![1, 3],
            "b delivered once, never accepted; d never delivered"
        );
        assert!(found[1].detail.contains("never delivered"));
    }
}
