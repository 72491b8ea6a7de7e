//! compaction: a compacted partition read from its start after the heal yields, for
//! every key, its last acknowledged value or a later one (a record of that key
//! acknowledged at a higher offset, or a write whose outcome is unknown), never an
//! older one, and no key whose last acknowledged write was a tombstone comes back with
//! an older value. And a reader from the start that reaches a tombstone within the
//! topic's `delete.retention.ms` of its write (on the broker's clock: the real time
//! passed plus any forward clock jump in between) still sees it, unless a newer write
//! of its key may already have superseded it.
//! Keys whose newest acknowledged record lies below the final log start offset were
//! trimmed away; `log-start` judges those.
//! Source: Kafka's documentation, "Log Compaction" (guarantees 1 and 4 and
//! `delete.retention.ms`: "a bound on the time in which a consumer must complete a read
//! if they begin from offset 0"), KIP-534 (tombstone horizon).

use std::collections::BTreeMap;

use super::Anomaly;
use crate::history::{with_invocations, Kind, Op, F};

pub const NAME: &str = "compaction";

/// (topic, partition, key)
type KeyId<'a> = (&'a str, i32, &'a str);

/// A completed put and when it was invoked (ms).
struct Put<'a> {
    op: &'a Op,
    invoked_ms: u64,
}

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let times: BTreeMap<u64, u64> = ops.iter().map(|o| (o.index, o.time_ms)).collect();
    let mut puts: BTreeMap<KeyId<'_>, Vec<Put<'_>>> = BTreeMap::new();
    for (invoked, o) in with_invocations(ops) {
        if o.f != F::Put || o.kind == Kind::Fail {
            continue;
        }
        let (Some(topic), Some(key)) = (o.topic.as_deref(), o.key.as_deref()) else {
            continue;
        };
        puts.entry((topic, o.partition, key))
            .or_default()
            .push(Put {
                op: o,
                invoked_ms: times.get(&invoked).copied().unwrap_or(o.time_ms),
            });
    }
    let mut found = final_state(ops, &puts);
    found.extend(tombstone_horizon(ops, &puts));
    found
}

fn scans<'a>(ops: &'a [Op], topic: &'a str, partition: i32) -> impl Iterator<Item = &'a Op> {
    ops.iter().filter(move |o| {
        o.f == F::Scan
            && o.kind == Kind::Ok
            && o.partition == partition
            && o.topic.as_deref() == Some(topic)
    })
}

/// The final read's view: each key's newest record, and the highest log start offset
/// the final read was answered.
struct FinalView<'a> {
    newest: BTreeMap<&'a str, (i64, Option<&'a str>, u64)>,
    log_start: i64,
}

fn final_view<'a>(ops: &'a [Op], topic: &'a str, partition: i32) -> Option<FinalView<'a>> {
    let finals: Vec<&Op> = scans(ops, topic, partition)
        .filter(|o| o.final_read)
        .collect();
    if finals.is_empty() {
        return None;
    }
    let mut entries: Vec<(i64, &str, Option<&str>, u64)> = finals
        .iter()
        .flat_map(|o| {
            o.entries.iter().filter_map(move |(off, k, v)| {
                k.as_deref().map(|k| (*off, k, v.as_deref(), o.index))
            })
        })
        .collect();
    entries.sort_by_key(|e| e.0);
    let mut newest = BTreeMap::new();
    for (off, k, v, at) in entries {
        newest.insert(k, (off, v, at));
    }
    let log_start = finals.iter().filter_map(|o| o.log_start).max().unwrap_or(0);
    Some(FinalView { newest, log_start })
}

fn final_state(ops: &[Op], puts: &BTreeMap<KeyId<'_>, Vec<Put<'_>>>) -> Vec<Anomaly> {
    let mut views: BTreeMap<(&str, i32), Option<FinalView<'_>>> = BTreeMap::new();
    let mut found = Vec::new();
    for (&(topic, partition, key), writes) in puts {
        let view = views
            .entry((topic, partition))
            .or_insert_with(|| final_view(ops, topic, partition));
        let Some(view) = view else { continue };
        let Some(last) = writes
            .iter()
            .filter(|p| p.op.kind == Kind::Ok)
            .max_by_key(|p| p.op.offset)
        else {
            continue;
        };
        let last_offset = last.op.offset.unwrap_or(-1);
        if last_offset < view.log_start {
            continue;
        }
        let at = format!("key {key:?} of {topic}-{partition}");
        match view.newest.get(key) {
            Some(&(off, value, read)) if off < last_offset => found.push(Anomaly {
                kind: NAME,
                ops: vec![last.op.index, read],
                detail: format!(
                    "{at}: the final read's newest record is at {off} ({}), older than the last acknowledged one at {last_offset} ({})",
                    shown(value),
                    shown(last.op.value.as_deref())
                ),
            }),
            Some(&(off, value, read)) if off == last_offset => {
                if value != last.op.value.as_deref() {
                    found.push(Anomaly {
                        kind: NAME,
                        ops: vec![last.op.index, read],
                        detail: format!(
                            "{at}: offset {off} reads {} but {} was acknowledged there",
                            shown(value),
                            shown(last.op.value.as_deref())
                        ),
                    });
                }
            }
            Some(&(off, value, read)) => {
                let written = writes.iter().any(|p| {
                    p.op.value.as_deref() == value
                        && (p.op.kind == Kind::Info || p.op.offset == Some(off))
                });
                if !written {
                    found.push(Anomaly {
                        kind: NAME,
                        ops: vec![last.op.index, read],
                        detail: format!(
                            "{at}: the final read's newest record at {off} ({}) is no write of that key",
                            shown(value)
                        ),
                    });
                }
            }
            None => {
                let deleted = last.op.value.is_none()
                    || writes
                        .iter()
                        .any(|p| p.op.kind == Kind::Info && p.op.value.is_none());
                if !deleted {
                    found.push(Anomaly {
                        kind: NAME,
                        ops: vec![last.op.index],
                        detail: format!(
                            "{at}: {} acknowledged at {last_offset} is not in the final read, nor is any record of the key",
                            shown(last.op.value.as_deref())
                        ),
                    });
                }
            }
        }
    }
    found
}

/// Tombstones a reader from the start must still have seen.
fn tombstone_horizon(ops: &[Op], puts: &BTreeMap<KeyId<'_>, Vec<Put<'_>>>) -> Vec<Anomaly> {
    let jumps: Vec<(u64, i64)> = ops
        .iter()
        .filter(|o| o.f == F::ClockJump)
        .filter_map(|o| o.clock_ms.map(|ms| (o.time_ms, ms)))
        .collect();
    // The most the broker's wall clock can have moved between two real times.
    let broker_elapsed = |from: u64, to: u64| -> i64 {
        let forward: i64 = jumps
            .iter()
            .filter(|(t, ms)| *t >= from && *t <= to && *ms > 0)
            .map(|(_, ms)| ms)
            .sum();
        to.saturating_sub(from) as i64 + forward
    };
    let mut found = Vec::new();
    for (&(topic, partition, key), writes) in puts {
        for t in writes {
            let (Kind::Ok, None, Some(offset), Some(retention)) = (
                t.op.kind,
                t.op.value.as_ref(),
                t.op.offset,
                t.op.delete_retention_ms,
            ) else {
                continue;
            };
            // A write of the key whose outcome is unknown and that began before this
            // tombstone was acknowledged may have landed after it and superseded it.
            let doubtful = writes.iter().any(|p| {
                p.op.kind == Kind::Info && p.invoked_ms <= t.op.time_ms && p.op.index != t.op.index
            });
            if doubtful {
                continue;
            }
            // Any later write of the key may supersede it once it begins.
            let superseded_from = writes
                .iter()
                .filter(|p| p.op.index != t.op.index && p.invoked_ms >= t.invoked_ms)
                .map(|p| p.invoked_ms)
                .min()
                .unwrap_or(u64::MAX);
            let missed = scans(ops, topic, partition).find(|s| {
                let covers = s.from.is_some_and(|f| f <= offset)
                    && s.entries.last().is_some_and(|(last, ..)| *last >= offset);
                covers
                    && s.time_ms < superseded_from
                    && broker_elapsed(t.invoked_ms, s.time_ms) < retention
                    && !s
                        .entries
                        .iter()
                        .any(|(o, k, v)| *o == offset && k.as_deref() == Some(key) && v.is_none())
            });
            if let Some(s) = missed {
                found.push(Anomaly {
                    kind: NAME,
                    ops: vec![t.op.index, s.index],
                    detail: format!(
                        "tombstone of key {key:?} at {topic}-{partition} offset {offset} missing from a read from {} {} ms after it was written (delete.retention.ms={retention})",
                        s.from.unwrap_or(-1),
                        s.time_ms.saturating_sub(t.invoked_ms)
                    ),
                });
            }
        }
    }
    found
}

fn shown(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{:?}", super::short(v)),
        None => "a tombstone".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::*;

    #[test]
    fn the_final_read_holds_each_keys_newest_acknowledged_value() {
        let fine = vec![
            put(0, 1, "a", Some("a1"), 0),
            put(1, 1, "a", Some("a2"), 1),
            put(2, 1, "b", Some("b1"), 2),
            put(3, 1, "b", None, 3),
            scan(4, 0, &[(1, "a", Some("a2")), (3, "b", None)], true),
        ];
        assert!(check(&fine).is_empty(), "{:?}", check(&fine));
        let mut cleaned = fine.clone();
        cleaned[4] = scan(4, 0, &[(1, "a", Some("a2"))], true);
        assert!(check(&cleaned).is_empty(), "a tombstone may go in the end");

        let mut oldest = fine.clone();
        oldest[4] = scan(4, 0, &[(0, "a", Some("a1")), (3, "b", None)], true);
        let found = check(&oldest);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ops, vec![1, 4]);

        let mut resurrected = fine.clone();
        resurrected[4] = scan(4, 0, &[(1, "a", Some("a2")), (2, "b", Some("b1"))], true);
        assert_eq!(
            check(&resurrected).len(),
            1,
            "b came back after its tombstone"
        );

        let mut lost = fine;
        lost[4] = scan(4, 0, &[(3, "b", None)], true);
        assert_eq!(check(&lost).len(), 1, "a's newest value is gone");
    }

    #[test]
    fn a_newer_value_must_come_from_a_write_of_that_key() {
        let mut unknown = put(1, 1, "a", Some("a2"), 0);
        unknown.kind = Kind::Info;
        unknown.offset = None;
        let h = vec![
            put(0, 1, "a", Some("a1"), 0),
            unknown,
            scan(2, 0, &[(5, "a", Some("a2"))], true),
        ];
        assert!(check(&h).is_empty(), "an unknown write may have landed");
        let h = vec![
            put(0, 1, "a", Some("a1"), 0),
            scan(2, 0, &[(5, "a", Some("zz"))], true),
        ];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn keys_below_the_final_log_start_are_not_judged() {
        let mut last = scan(2, 0, &[], true);
        last.log_start = Some(5);
        let h = vec![put(0, 1, "a", Some("a1"), 3), last];
        assert!(check(&h).is_empty());
    }

    #[test]
    fn a_tombstone_read_within_delete_retention_must_be_there() {
        let mut tomb = put(0, 1, "a", None, 4);
        tomb.delete_retention_ms = Some(1000);
        tomb.time_ms = 100;
        let mut early = scan(1, 0, &[(2, "b", Some("b")), (7, "c", Some("c"))], false);
        early.time_ms = 600;
        let h = vec![tomb.clone(), early.clone()];
        let found = check(&h);
        assert_eq!(found.len(), 1, "read 500 ms after the write: {found:?}");
        assert_eq!(found[0].ops, vec![0, 1]);

        let mut late = early.clone();
        late.time_ms = 1200;
        assert!(
            check(&[tomb.clone(), late]).is_empty(),
            "past delete.retention.ms"
        );

        let mut jump = Op::new(Kind::Info, F::ClockJump, "nemesis", 0, -1);
        jump.index = 2;
        jump.time_ms = 300;
        jump.clock_ms = Some(5000);
        let jumped = vec![tomb.clone(), early.clone(), jump];
        assert!(
            check(&jumped).is_empty(),
            "the broker's clock jumped past it"
        );

        let mut newer = put(3, 1, "a", Some("a9"), 9);
        newer.time_ms = 500;
        assert!(
            check(&[tomb.clone(), early.clone(), newer]).is_empty(),
            "a newer write of the key may supersede the tombstone"
        );

        let mut kept = early;
        kept.entries.insert(1, (4, Some("a".into()), None));
        assert!(check(&[tomb, kept]).is_empty());
    }
}
