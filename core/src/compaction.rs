//! Log compaction's decisions, free of IO (Kafka's log cleaner; KIP-58
//! `min.compaction.lag.ms`, KIP-354 `max.compaction.lag.ms`, `delete.retention.ms`).
//!
//! A compacted log keeps, for every key, at least its newest record: a reader from the
//! start ends with the newest value of each key. The cleaner maps each key of the
//! dirty section (written since the last pass) to its newest offset, then rewrites the
//! closed segments keeping only records no newer record of the same key supersedes. A
//! tombstone (a null value) stays `delete.retention.ms` after the first pass that
//! covered it, so that a reader that saw its key can see it deleted.

use std::collections::BTreeMap;

/// What one entry of the offset map is charged beyond its key (the offset and the
/// map's own bookkeeping), so that `log.cleaner.dedupe.buffer.size` bounds memory.
pub const ENTRY_OVERHEAD: usize = 48;

/// Each key of a dirty section mapped to its newest offset, within a memory budget.
/// Keys are held whole, not hashed: no two keys can collide. A BTreeMap, so nothing
/// depends on a hasher's seed.
#[derive(Debug, Default)]
pub struct OffsetMap {
    newest: BTreeMap<Vec<u8>, i64>,
    bytes: usize,
    limit: usize,
}

impl OffsetMap {
    pub fn new(limit_bytes: usize) -> Self {
        OffsetMap {
            newest: BTreeMap::new(),
            bytes: 0,
            limit: limit_bytes,
        }
    }

    /// Records `offset` as the newest of `key`. False, changing nothing, when a new
    /// key would pass the budget: the pass then cleans only up to this offset.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        if let Some(at) = self.newest.get_mut(key) {
            *at = if crate::sim::planted(crate::sim::Bug::CleanerKeepsOldest) {
                (*at).min(offset)
            } else {
                (*at).max(offset)
            };
            return true;
        }
        let cost = key.len() + ENTRY_OVERHEAD;
        if self.bytes + cost > self.limit {
            return false;
        }
        self.bytes += cost;
        self.newest.insert(key.to_vec(), offset);
        true
    }

    /// The newest offset of `key` in the dirty section, if it appears there.
    pub fn newest(&self, key: &[u8]) -> Option<i64> {
        self.newest.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.newest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.newest.is_empty()
    }

    /// Memory charged so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// One record as the cleaner sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// A null value: the key's deletion.
    pub tombstone: bool,
}

/// Whether the cleaner keeps a record (Kafka's `LogCleaner.shouldRetainRecord`):
/// - a record a newer one of its key supersedes goes;
/// - a tombstone goes once `delete.retention.ms` passed since the first pass that
///   covered it (`first_cleaned_ms`, None if no pass has yet), as KIP-534 has it;
/// - a record without a key stays (a compacted topic refuses them, but a topic whose
///   policy changed to compact may hold some; Kafka keeps them too).
pub fn keep(
    record: Candidate<'_>,
    map: &OffsetMap,
    first_cleaned_ms: Option<i64>,
    now_ms: i64,
    delete_retention_ms: i64,
) -> bool {
    let Some(key) = record.key else {
        return true;
    };
    let superseded = match map.newest(key) {
        Some(kept) if crate::sim::planted(crate::sim::Bug::CleanerKeepsOldest) => {
            record.offset > kept
        }
        Some(newest) => record.offset < newest,
        None => false,
    };
    if superseded {
        return false;
    }
    if record.tombstone && crate::sim::planted(crate::sim::Bug::TombstoneDroppedEarly) {
        return false;
    }
    if record.tombstone {
        return match first_cleaned_ms {
            Some(first) => now_ms.saturating_sub(first) < delete_retention_ms,
            None => true,
        };
    }
    true
}

/// The cleaner's passes over one partition, oldest first: each pass cleaned up to
/// `end` (exclusive) at `at_ms`. Tells when a record was first covered by a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passes {
    passes: Vec<(i64, i64)>,
    /// When the first pass covered the oldest tombstone the last pass kept (None:
    /// it kept none): a pass is due once that is `delete.retention.ms` ago, dirty or
    /// not, or an idle topic would keep its tombstones for ever.
    pub oldest_tombstone_ms: Option<i64>,
}

impl Passes {
    pub fn from_entries(mut passes: Vec<(i64, i64)>, oldest_tombstone_ms: Option<i64>) -> Self {
        passes.sort_unstable();
        Passes {
            passes,
            oldest_tombstone_ms,
        }
    }

    /// Whether a kept tombstone may go now.
    pub fn tombstones_due(&self, now_ms: i64, delete_retention_ms: i64) -> bool {
        self.oldest_tombstone_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= delete_retention_ms)
    }

    pub fn entries(&self) -> &[(i64, i64)] {
        &self.passes
    }

    /// Where the dirty section starts: the end of the last pass (0 before any).
    pub fn first_dirty(&self) -> i64 {
        self.passes.last().map_or(0, |(end, _)| *end)
    }

    /// When the first pass that covered `offset` ran; None if none has.
    pub fn first_cleaned_ms(&self, offset: i64) -> Option<i64> {
        let i = self.passes.partition_point(|(end, _)| *end <= offset);
        self.passes.get(i).map(|(_, at)| *at)
    }

    /// Notes a pass that cleaned up to `end` at `now_ms`, and forgets what no longer
    /// matters: passes that ran `delete_retention_ms` or more ago are one entry (every
    /// tombstone they covered may go, whichever of them covered it first).
    pub fn record(&mut self, end: i64, now_ms: i64, delete_retention_ms: i64) {
        if end > self.first_dirty() {
            self.passes.push((end, now_ms));
        }
        let horizon = now_ms.saturating_sub(delete_retention_ms);
        let old = self.passes.partition_point(|(_, at)| *at <= horizon);
        if old > 1 {
            let last_old = self.passes[old - 1];
            self.passes.drain(..old);
            self.passes.insert(0, last_old);
        }
    }
}

/// A partition's share of uncleaned bytes (Kafka's dirty ratio).
pub fn dirty_ratio(clean_bytes: u64, dirty_bytes: u64) -> f64 {
    let total = clean_bytes + dirty_bytes;
    if total == 0 {
        0.0
    } else {
        dirty_bytes as f64 / total as f64
    }
}

/// Whether a partition is due for cleaning: its dirty ratio reached
/// `min.cleanable.dirty.ratio`, or its oldest dirty record has waited longer than
/// `max.compaction.lag.ms` (KIP-354), provided there is something dirty at all.
pub fn due(
    ratio: f64,
    min_ratio: f64,
    oldest_dirty_ms: Option<i64>,
    now_ms: i64,
    max_lag_ms: i64,
) -> bool {
    let Some(oldest) = oldest_dirty_ms else {
        return false;
    };
    ratio >= min_ratio || now_ms.saturating_sub(oldest) > max_lag_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, key: &[u8], tombstone: bool) -> Candidate<'_> {
        Candidate {
            offset,
            key: Some(key),
            tombstone,
        }
    }

    #[test]
    fn a_superseded_record_goes_and_the_newest_stays() {
        let mut map = OffsetMap::new(1 << 20);
        assert!(map.put(b"k", 3));
        assert!(map.put(b"k", 7));
        assert!(
            map.put(b"k", 5),
            "an older offset does not move the newest back"
        );
        assert_eq!(map.newest(b"k"), Some(7));
        assert!(!keep(rec(3, b"k", false), &map, None, 0, 0));
        assert!(keep(rec(7, b"k", false), &map, None, 0, 0));
        assert!(
            keep(rec(2, b"other", false), &map, None, 0, 0),
            "a key only in the clean section"
        );
        let keyless = Candidate {
            offset: 1,
            key: None,
            tombstone: false,
        };
        assert!(keep(keyless, &map, None, 0, 0));
    }

    #[test]
    fn a_tombstone_stays_delete_retention_ms_after_the_first_pass_over_it() {
        let map = OffsetMap::new(1 << 20);
        let t = rec(10, b"gone", true);
        assert!(keep(t, &map, None, 1_000_000, 100), "never cleaned yet");
        assert!(keep(t, &map, Some(1_000), 1_099, 100));
        assert!(!keep(t, &map, Some(1_000), 1_100, 100));
    }

    #[test]
    fn the_offset_map_stays_within_its_budget() {
        let mut map = OffsetMap::new(2 * (ENTRY_OVERHEAD + 1));
        assert!(map.put(b"a", 0));
        assert!(map.put(b"b", 1));
        assert!(!map.put(b"c", 2), "a third key does not fit");
        assert!(map.put(b"a", 3), "a known key always does");
        assert_eq!((map.len(), map.bytes()), (2, 2 * (ENTRY_OVERHEAD + 1)));
    }

    #[test]
    fn passes_tell_when_an_offset_was_first_cleaned() {
        let mut p = Passes::default();
        assert_eq!(p.first_dirty(), 0);
        p.record(100, 1_000, 10_000);
        p.record(250, 2_000, 10_000);
        p.record(250, 3_000, 10_000);
        assert_eq!(p.first_dirty(), 250);
        assert_eq!(p.first_cleaned_ms(0), Some(1_000));
        assert_eq!(p.first_cleaned_ms(99), Some(1_000));
        assert_eq!(p.first_cleaned_ms(100), Some(2_000));
        assert_eq!(p.first_cleaned_ms(250), None);
        // Much later, the old passes fold into one that still dates them as old.
        p.record(400, 50_000, 10_000);
        assert_eq!(p.entries().len(), 2);
        assert!(p.first_cleaned_ms(10).unwrap() <= 40_000);
        assert_eq!(p.first_cleaned_ms(300), Some(50_000));
        assert!(!p.tombstones_due(50_000, 10_000));
        p.oldest_tombstone_ms = Some(45_000);
        assert!(!p.tombstones_due(54_999, 10_000));
        assert!(p.tombstones_due(55_000, 10_000));
    }

    #[test]
    fn a_partition_is_due_by_ratio_or_by_max_lag() {
        assert!(!due(0.9, 0.5, None, 0, 0), "nothing dirty");
        assert!(due(0.5, 0.5, Some(0), 0, i64::MAX));
        assert!(!due(0.4, 0.5, Some(0), 1_000, 1_000));
        assert!(due(0.4, 0.5, Some(0), 1_001, 1_000));
        assert_eq!(dirty_ratio(0, 0), 0.0);
        assert_eq!(dirty_ratio(1, 3), 0.75);
    }
}
