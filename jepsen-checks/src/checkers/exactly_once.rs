//! exactly-once: a consume-transform-produce job writes `out:<input>@<attempt>` for
//! each input record and commits its input offsets in the same transaction. After
//! healing, read_committed, every acknowledged input below the job's final committed
//! offset has exactly one output, and no input at or above it has any.
//! Source: KIP-98 / KIP-447 (exactly-once stream processing); Jepsen's Kafka test.

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{acked_sends, Kind, Op, F};

pub const NAME: &str = "exactly-once";

/// The group whose committed offsets mark the job's progress.
pub const JOB_GROUP: &str = "ctp-group";

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let committed: BTreeMap<i32, (i64, u64)> = ops
        .iter()
        .filter(|o| {
            o.f == F::FetchOffset
                && o.kind == Kind::Ok
                && o.final_read
                && o.group.as_deref() == Some(JOB_GROUP)
        })
        .filter_map(|o| Some((o.partition, (o.offset?, o.index))))
        .collect();
    if committed.is_empty() {
        return Vec::new();
    }
    // Outputs per input value, from the final read_committed read.
    let mut outputs: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for o in ops
        .iter()
        .filter(|o| o.f == F::ReadCommitted && o.kind == Kind::Ok && o.final_read)
    {
        for (_, v) in &o.records {
            if let Some(input) = v.strip_prefix("out:").and_then(|r| r.split('@').next()) {
                outputs.entry(input).or_default().push(o.index);
            }
        }
    }
    let mut found = Vec::new();
    for send in acked_sends(ops) {
        let (Some(offset), Some(value)) = (send.offset, send.value.as_deref()) else {
            continue;
        };
        let Some(&(upto, at)) = committed.get(&send.partition) else {
            continue;
        };
        let key = value.split(':').next().unwrap_or_default();
        let n = outputs.get(key).map_or(0, Vec::len);
        let consumed = offset < upto;
        let why = match (consumed, n) {
            (true, 1) | (false, 0) => None,
            (true, 0) => Some("consumed (below the committed offset) but no output".to_string()),
            (true, n) => Some(format!("{n} outputs")),
            (false, n) => Some(format!(
                "{n} output(s) but not consumed (committed offset {upto})"
            )),
        };
        if let Some(why) = why {
            found.push(Anomaly {
                kind: NAME,
                ops: vec![send.index, at],
                detail: format!("input {key} at {}-{offset}: {why}", send.partition),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::{fetch_offset, final_read_committed, send};

    fn final_offset(index: u64, partition: i32, offset: i64) -> Op {
        let mut o = fetch_offset(index, 9, partition, offset);
        o.group = Some(JOB_GROUP.into());
        o.final_read = true;
        o
    }

    #[test]
    fn one_output_per_consumed_input_is_valid() {
        let ops = [
            send(0, 1, 0, "1-0:x", 0, -1),
            send(1, 1, 0, "1-1:x", 1, -1),
            final_read_committed(2, 0, &[(0, "out:1-0@a")]),
            final_offset(3, 0, 1),
        ];
        assert!(check(&ops).is_empty());
    }

    #[test]
    fn missing_doubled_and_premature_outputs_are_caught() {
        let ops = [
            send(0, 1, 0, "1-0:x", 0, -1),
            send(1, 1, 0, "1-1:x", 1, -1),
            send(2, 1, 0, "1-2:x", 2, -1),
            final_read_committed(
                3,
                0,
                &[(0, "out:1-1@a"), (1, "out:1-1@b"), (2, "out:1-2@c")],
            ),
            final_offset(4, 0, 2),
        ];
        assert_eq!(check(&ops).len(), 3);
    }
}
