//! Log compaction on one partition log (Kafka's log cleaner): a pass maps each key of
//! the dirty section to its newest offset, then rewrites the closed segments below
//! the pass's end keeping what `sluice_core::compaction::keep` keeps, merging small
//! neighbours into one segment.
//!
//! The swap of cleaned segments is crash-safe: a group is written to
//! `<base>-<end>.cleaned` and fsynced, renamed to `<base>-<end>.swap` (the commit
//! point, made durable with its directory), then the group's old files are removed and
//! the swap file takes the first one's name. Recovery deletes a `.cleaned` file (the
//! old segments are whole) and finishes a `.swap` (the new segment is whole): a crash
//! leaves either the old segments or the new one, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::compaction::{self, Candidate, OffsetMap, Passes};
use sluice_core::env::{Clock, Disk, DiskFile};
use sluice_core::producer::TxnSpan;
use sluice_core::sim::{planted, Bug};
use tracing::{info, warn};

use super::{read_batch_at, storage, LogError, PartitionLog};
use crate::batch;
use crate::checkpoint;
use crate::compaction::rewrite;
use crate::segment::{self, Segment};

/// The cleaner's passes over this partition (see [`Passes`]).
const PASSES: &str = "cleaner-checkpoint";

/// What one pass is asked to do.
#[derive(Debug, Clone)]
pub struct CleanConfig {
    /// Wall clock, for tombstones and `min.compaction.lag.ms`.
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    /// `log.cleaner.dedupe.buffer.size`: the offset map's memory.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`: bytes read plus written; infinite for
    /// no limit.
    pub io_max_bytes_per_second: f64,
}

/// Holds the cleaner's IO (bytes read plus written) to a rate, as Kafka's cleaner
/// `Throttler` does: after each batch, if the bytes of the current window came faster
/// than the rate, the cleaner sleeps until they would not have.
pub(crate) struct Throttle<'a> {
    clock: &'a dyn Clock,
    rate: f64,
    window_start: Duration,
    window_bytes: f64,
}

/// How long a throttle window runs before it starts afresh.
const THROTTLE_WINDOW: Duration = Duration::from_millis(300);

impl<'a> Throttle<'a> {
    pub(crate) fn new(clock: &'a dyn Clock, bytes_per_second: f64) -> Self {
        Throttle {
            clock,
            rate: bytes_per_second,
            window_start: clock.monotonic(),
            window_bytes: 0.0,
        }
    }

    /// Counts `bytes` of IO, sleeping if they came too fast.
    pub(crate) fn spent(&mut self, bytes: u64) {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return;
        }
        self.window_bytes += bytes as f64;
        let elapsed = self.clock.monotonic().saturating_sub(self.window_start);
        let due = Duration::from_secs_f64(self.window_bytes / self.rate);
        if due > elapsed {
            self.clock.sleep_blocking(due - elapsed);
        }
        if elapsed.max(due) >= THROTTLE_WINDOW {
            self.window_start = self.clock.monotonic();
            self.window_bytes = 0.0;
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// The pass cleaned up to here (exclusive).
    pub end: i64,
    pub segments_before: usize,
    pub segments_after: usize,
    /// Bytes of the dirty section the offset map was built from.
    pub bytes_mapped: u64,
    /// Bytes read: the dirty section for the map, then every segment rewritten.
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    /// Commit markers removed (their transactions left no batch of their own).
    pub markers_removed: u64,
    /// Memory the offset map was charged.
    pub map_bytes: usize,
    /// Tombstones kept (their `delete.retention.ms` has yet to pass).
    pub tombstones_kept: u64,
    /// The earliest first pass over a kept tombstone that an earlier pass covered.
    pub oldest_tombstone_ms: Option<i64>,
}

/// How much of a partition is clean and dirty, for choosing what to clean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dirtiness {
    pub clean_bytes: u64,
    /// Bytes of closed, committed segments at or after the first dirty offset.
    pub dirty_bytes: u64,
    /// The newest timestamp of the first dirty segment (None: nothing dirty).
    pub oldest_dirty_ms: Option<i64>,
    /// When the oldest tombstone kept was first passed over (see
    /// `Passes::oldest_tombstone_ms`).
    pub oldest_tombstone_ms: Option<i64>,
}

impl Dirtiness {
    pub fn ratio(&self) -> f64 {
        compaction::dirty_ratio(self.clean_bytes, self.dirty_bytes)
    }
}

/// A closed segment a pass may clean, as found under the lock.
struct Closed {
    base: i64,
    file: Arc<dyn DiskFile>,
    size: u64,
    next_offset: i64,
    max_timestamp: i64,
}

impl PartitionLog {
    /// How dirty this log is, counting only what a pass at `now_ms` may clean.
    pub fn dirtiness(&self, now_ms: i64, min_compaction_lag_ms: i64) -> Dirtiness {
        let (first_dirty, oldest_tombstone_ms) = {
            let st = self.lock();
            (st.passes.first_dirty(), st.passes.oldest_tombstone_ms)
        };
        let closed = self.cleanable(now_ms, min_compaction_lag_ms);
        let mut d = Dirtiness {
            clean_bytes: 0,
            dirty_bytes: 0,
            oldest_dirty_ms: None,
            oldest_tombstone_ms,
        };
        for c in &closed {
            if c.next_offset <= first_dirty {
                d.clean_bytes += c.size;
            } else {
                d.dirty_bytes += c.size;
                d.oldest_dirty_ms.get_or_insert(c.max_timestamp.max(0));
            }
        }
        d
    }

    /// The closed segments from the log's start that a pass may rewrite: durable,
    /// committed (below the high watermark), with indexes written, and every record
    /// older than `min.compaction.lag.ms` (KIP-58). Never the active segment.
    fn cleanable(&self, now_ms: i64, min_lag_ms: i64) -> Vec<Closed> {
        let st = self.lock();
        if st.failed.is_some() {
            return Vec::new();
        }
        let published = st.published();
        // Kafka's cleaner stops at the last stable offset too: records of a
        // transaction still open may yet be aborted.
        let stable = st.producers.last_stable_offset(published);
        let sealed = st.segments.len().saturating_sub(1);
        st.segments
            .values()
            .take(sealed)
            .take_while(|s| {
                s.base_offset < st.hw_segment
                    && s.next_offset <= published
                    && s.next_offset <= stable
                    && !st.pending_indexes.iter().any(|(b, ..)| *b == s.base_offset)
                    // As Kafka: only a positive lag holds segments back (a record
                    // stamped in the future must not stop cleaning for good).
                    && (min_lag_ms <= 0 || s.max_timestamp <= now_ms.saturating_sub(min_lag_ms))
            })
            .map(|s| Closed {
                base: s.base_offset,
                file: s.file.clone(),
                size: s.size,
                next_offset: s.next_offset,
                max_timestamp: s.max_timestamp,
            })
            .collect()
    }

    /// One cleaning pass; `None` if nothing was dirty. Blocking IO: run it off the
    /// async workers.
    pub fn clean(&self, cfg: &CleanConfig) -> Result<Option<CleanStats>, LogError> {
        let mut passes = self.lock().passes.clone();
        let closed = self.cleanable(cfg.now_ms, cfg.min_compaction_lag_ms);
        let Some(last) = closed.last() else {
            return Ok(None);
        };
        let first_dirty = passes.first_dirty();
        let tombstones_due = passes.tombstones_due(cfg.now_ms, cfg.delete_retention_ms);
        if last.next_offset <= first_dirty && !tombstones_due {
            return Ok(None);
        }
        let (generation, remembered, aborted) = {
            let st = self.lock();
            // Aborted transactions whose abort marker is committed: their records
            // go (Kafka's cleaner removes them too; the batch headers stay, for the
            // producer state and the last stable offset recovery rebuilds).
            let published = st.published();
            let aborted: Vec<TxnSpan> = st
                .producers
                .aborted()
                .iter()
                .filter(|t| t.marker_offset < published)
                .copied()
                .collect();
            // Each producer's remembered batches keep their headers: deduplication
            // of its retries and its sequence checks go on after cleaning.
            let remembered: BTreeSet<i64> =
                st.producers.batches().map(|b| b.first_offset).collect();
            (st.generation, remembered, aborted)
        };
        let mut stats = CleanStats {
            segments_before: closed.len(),
            ..CleanStats::default()
        };

        // The offset map of the dirty section, as far as the memory allows.
        let mut throttle = Throttle::new(self.env.clock.as_ref(), cfg.io_max_bytes_per_second);
        let mut map = OffsetMap::new(cfg.dedupe_buffer_bytes);
        let mut end = last.next_offset.max(first_dirty);
        'map: for c in closed.iter().filter(|c| c.next_offset > first_dirty) {
            for item in batches_of(c) {
                let (h, bytes) = item?;
                stats.bytes_read += h.size as u64;
                stats.bytes_mapped += h.size as u64;
                throttle.spent(h.size as u64);
                if h.next_offset() <= first_dirty || h.is_control() || in_aborted(&h, &aborted) {
                    // A record of an aborted transaction must not take the place of a
                    // committed value. (Open transactions lie past the last stable
                    // offset, which no pass reaches.)
                    continue;
                }
                let (_, _, records) = crate::compaction::records(&bytes)
                    .map_err(|e| storage("clean: read records", e))?;
                let mut fits = true;
                for r in &records {
                    if let Some(key) = &r.key {
                        fits &= map.put(key, r.offset);
                    }
                }
                if !fits {
                    // Full: this pass ends before this batch. What the map holds of it
                    // stays correct (newest within the mapped part only removes older).
                    end = h.base_offset;
                    break 'map;
                }
            }
        }
        stats.map_bytes = map.bytes();
        if end <= first_dirty && !tombstones_due {
            warn!(dir = %self.dir.display(), "log.cleaner.dedupe.buffer.size holds no whole batch of keys; not cleaning");
            return Ok(None);
        }
        stats.end = end;

        // Per producer, whether the transaction the walk is in keeps a batch of its
        // own: a commit marker goes only once its transaction keeps none.
        let mut txns: BTreeMap<i64, bool> = BTreeMap::new();
        // Rewrite the segments below the end, merged into groups of at most a segment.
        for g in group(&closed, end, self.config.segment_bytes) {
            let cleaned = self.clean_group(
                &g,
                &map,
                &passes,
                cfg,
                (&remembered, &aborted),
                generation,
                &mut stats,
                &mut throttle,
                &mut txns,
            )?;
            if !cleaned {
                // The log changed under the pass (truncated, trimmed): try again later.
                return Ok(None);
            }
        }
        passes.record(end, cfg.now_ms, cfg.delete_retention_ms);
        passes.oldest_tombstone_ms = stats.oldest_tombstone_ms;
        write_passes(self.env.disk.as_ref(), &self.dir, &passes)?;
        let mut st = self.lock();
        st.passes = passes;
        stats.segments_after = st.segments.len().saturating_sub(1);
        drop(st);
        info!(dir = %self.dir.display(), end, removed = stats.records_removed,
            mapped = stats.bytes_mapped, read = stats.bytes_read, written = stats.bytes_written, "cleaned");
        Ok(Some(stats))
    }

    /// Rewrites one group of neighbouring closed segments into one; false if the log
    /// changed under it (nothing is then changed).
    #[allow(clippy::too_many_arguments)]
    fn clean_group(
        &self,
        group: &[&Closed],
        map: &OffsetMap,
        passes: &Passes,
        cfg: &CleanConfig,
        (remembered, aborted): (&BTreeSet<i64>, &[TxnSpan]),
        generation: u64,
        stats: &mut CleanStats,
        throttle: &mut Throttle<'_>,
        txns: &mut BTreeMap<i64, bool>,
    ) -> Result<bool, LogError> {
        let disk = self.env.disk.clone();
        let (first, last) = (group[0], group[group.len() - 1]);
        let (base, end) = (first.base, last.next_offset);
        let cleaned_path = self.dir.join(swap_name(base, end, CLEANED));
        let swap_path = self.dir.join(swap_name(base, end, SWAP));
        let _ = disk.remove_file(&cleaned_path);
        let out = disk
            .open(&cleaned_path, true)
            .map_err(|e| storage("clean: create", e))?;
        let now = self.env.clock.monotonic().as_millis() as u64;
        // The new segment, indexed as it is written (as an append indexes).
        let mut fresh = Segment::new(base, out.clone(), now);
        let interval = self.config.index_interval_bytes;
        // Bytes written since the throttle last counted.
        let written = std::cell::Cell::new(0u64);
        let mut write = |data: &[u8]| -> Result<(), LogError> {
            let h = batch::parse_fixed(data)?;
            out.write_at(fresh.size, data)
                .map_err(|e| storage("clean: write", e))?;
            fresh.track(fresh.size, &h, interval);
            written.set(written.get() + data.len() as u64);
            Ok(())
        };
        let mut run: Option<EmptyRun> = None;
        for c in group {
            for item in batches_of(c) {
                let (h, bytes) = item?;
                stats.bytes_read += h.size as u64;
                throttle.spent(h.size as u64 + written.take());
                let in_aborted = in_aborted(&h, aborted);
                // Markers stay whole; committed transactional records are cleaned as
                // any others (Kafka Streams' exactly-once changelogs are compacted).
                let whole = h.is_control();
                // A batch its producer's state remembers keeps its header (offsets,
                // sequences) even when it loses every record, as Kafka keeps it.
                let remembered = remembered.contains(&h.base_offset);
                let drop_marker = h.is_control()
                    && self.commit_marker_goes(&h, &bytes, remembered, txns, passes, cfg, stats)?;
                let mut kept_records = h.record_count;
                let rewritten = if whole || h.record_count == 0 {
                    None
                } else {
                    kept_records = 0;
                    rewrite(&bytes, |r| {
                        let first = passes.first_cleaned_ms(r.offset);
                        let keep = !in_aborted
                            && compaction::keep(
                                Candidate {
                                    offset: r.offset,
                                    key: r.key.as_deref(),
                                    tombstone: r.tombstone,
                                },
                                map,
                                first,
                                cfg.now_ms,
                                cfg.delete_retention_ms,
                            );
                        if keep {
                            kept_records += 1;
                        } else {
                            stats.records_removed += 1;
                        }
                        if keep && r.tombstone {
                            // Its clock started with the first pass over it: this
                            // one, if none before.
                            stats.tombstones_kept += 1;
                            let since = first.unwrap_or(cfg.now_ms);
                            stats.oldest_tombstone_ms =
                                Some(stats.oldest_tombstone_ms.map_or(since, |t| t.min(since)));
                        }
                        keep
                    })
                    .map_err(|e| storage("clean: rewrite", e))?
                };
                if h.is_transactional() && !h.is_control() && !in_aborted {
                    // Whether its transaction keeps a batch of its own (its marker then
                    // stays too).
                    let kept = kept_records > 0 || remembered;
                    *txns.entry(h.producer_id).or_insert(false) |= kept;
                }
                // An aborted transaction's batch stays (empty) as itself: recovery
                // counts its header as the transaction's start.
                let emptied = !whole && !remembered && !in_aborted && kept_records == 0;
                if emptied || drop_marker {
                    // Neighbouring emptied batches of one leader epoch become one.
                    match &mut run {
                        Some(r) if r.extends_to(&h) => {
                            r.next = h.next_offset();
                            r.max_timestamp = r.max_timestamp.max(h.max_timestamp);
                        }
                        _ => {
                            if let Some(r) = run.replace(EmptyRun::of(h)) {
                                write(&r.batch())?;
                            }
                        }
                    }
                    continue;
                }
                if let Some(r) = run.take() {
                    write(&r.batch())?;
                }
                write(rewritten.as_deref().unwrap_or(&bytes))?;
            }
        }
        if let Some(r) = run.take() {
            write(&r.batch())?;
        }
        if !planted(Bug::SwapBeforeSync) {
            out.sync().map_err(|e| storage("clean: sync", e))?;
        }
        stats.bytes_written += fresh.size;
        fresh.seal();
        // The commit point: from here recovery finishes the swap.
        disk.rename(&cleaned_path, &swap_path)
            .map_err(|e| storage("clean: rename", e))?;
        disk.sync_dir(&self.dir)
            .map_err(|e| storage("clean: sync dir", e))?;

        let mut st = self.lock();
        let unchanged = st.failed.is_none()
            && st.generation == generation
            && group.iter().all(|c| {
                st.segments
                    .get(&c.base)
                    .is_some_and(|s| Arc::ptr_eq(&s.file, &c.file) && s.size == c.size)
            });
        if !unchanged {
            drop(st);
            let _ = disk.remove_file(&swap_path);
            let _ = disk.sync_dir(&self.dir);
            return Ok(false);
        }
        if let Err(e) = finish_swap(disk.as_ref(), &self.dir, base, end) {
            // Past the commit point the files no longer match what is served: stop
            // serving; recovery at the next start finishes the swap.
            let why =
                format!("finishing a cleaned segment's swap failed, partition taken offline: {e}");
            st.failed = Some(why.clone());
            self.durable.send_replace(super::Durable::Failed(why));
            return Err(e);
        }
        for c in group {
            st.segments.remove(&c.base);
        }
        sluice_core::sim_event!(
            "{}: cleaned segments {:?} into {base}-{end} ({} bytes)",
            self.dir.display(),
            group.iter().map(|c| c.base).collect::<Vec<_>>(),
            fresh.size
        );
        let (idx, tidx) = fresh.encode_indexes();
        st.segments.insert(base, fresh);
        drop(st);
        // Indexes only speed up recovery; the segment is durable already.
        for (ext, bytes) in [("index", idx), ("timeindex", tidx)] {
            let path = self.dir.join(segment::file_name(base, ext));
            if let Err(e) = checkpoint::write_atomic(disk.as_ref(), &path, &bytes) {
                warn!(dir = %self.dir.display(), segment = base, error = %e, "could not write a cleaned segment's index");
            }
        }
        Ok(true)
    }
}

/// Neighbouring batches of one leader epoch that lost every record: the first one's
/// header, where the run ends, its newest timestamp.
struct EmptyRun {
    first: batch::BatchHeader,
    next: i64,
    max_timestamp: i64,
}

impl EmptyRun {
    fn of(first: batch::BatchHeader) -> Self {
        EmptyRun {
            next: first.next_offset(),
            max_timestamp: first.max_timestamp,
            first,
        }
    }

    /// Whether `h` continues the run (its offset range must fit one batch).
    fn extends_to(&self, h: &batch::BatchHeader) -> bool {
        self.next == h.base_offset
            && self.first.leader_epoch == h.leader_epoch
            && h.next_offset() - self.first.base_offset <= i64::from(i32::MAX)
    }

    fn batch(&self) -> Vec<u8> {
        crate::compaction::empty_batch(
            self.first.base_offset,
            self.next,
            self.first.leader_epoch,
            self.first.attributes,
            self.first.base_timestamp,
            self.max_timestamp,
        )
    }
}

const CLEANED: &str = "cleaned";
const SWAP: &str = "swap";

fn swap_name(base: i64, end: i64, ext: &str) -> String {
    format!("{base:020}-{end:020}.{ext}")
}

/// `(base, end, ext)` of a `.cleaned` or `.swap` file name.
fn parse_swap_name(name: &str) -> Option<(i64, i64, &str)> {
    let (stem, ext) = name.rsplit_once('.')?;
    if ext != CLEANED && ext != SWAP {
        return None;
    }
    let (base, end) = stem.split_once('-')?;
    Some((base.parse().ok()?, end.parse().ok()?, ext))
}

/// Recovery's part, given the directory's `names`: removes unfinished `.cleaned`
/// files and finishes `.swap` ones, so the directory holds either the old segments of
/// a group or its cleaned one. True if it changed the directory.
pub(super) fn recover_swaps(
    disk: &dyn Disk,
    dir: &Path,
    names: &[String],
) -> Result<bool, LogError> {
    let mut touched = false;
    for name in names {
        match parse_swap_name(name) {
            Some((_, _, CLEANED)) => {
                warn!(dir = %dir.display(), file = %name, "removing an unfinished cleaned segment");
                sluice_core::sim_event!("{}: recovery removes {name}", dir.display());
                disk.remove_file(&dir.join(name))
                    .map_err(|e| storage("remove cleaned segment", e))?;
                touched = true;
            }
            Some((base, end, _)) => {
                warn!(dir = %dir.display(), file = %name, "finishing an interrupted segment swap");
                sluice_core::sim_event!("{}: recovery finishes swap {name}", dir.display());
                finish_swap(disk, dir, base, end)?;
                touched = true;
            }
            None => {}
        }
    }
    if touched {
        disk.sync_dir(dir).map_err(|e| storage("sync log dir", e))?;
    }
    Ok(touched)
}

/// Removes the old segments in `[base, end)` with their indexes, and gives the swap
/// file the first one's name; each step durable before the next.
fn finish_swap(disk: &dyn Disk, dir: &Path, base: i64, end: i64) -> Result<(), LogError> {
    let names = disk.list(dir).map_err(|e| storage("list log dir", e))?;
    for name in &names {
        let Some(b) = segment::parse_file_name(name) else {
            continue;
        };
        if b > base && b < end {
            disk.remove_file(&dir.join(name))
                .map_err(|e| storage("remove cleaned-away segment", e))?;
        }
        if b >= base && b < end {
            for ext in ["index", "timeindex"] {
                let _ = disk.remove_file(&dir.join(segment::file_name(b, ext)));
            }
        }
    }
    disk.sync_dir(dir).map_err(|e| storage("sync log dir", e))?;
    disk.rename(
        &dir.join(swap_name(base, end, SWAP)),
        &dir.join(segment::file_name(base, "log")),
    )
    .map_err(|e| storage("finish swap", e))?;
    disk.sync_dir(dir).map_err(|e| storage("sync log dir", e))
}

impl PartitionLog {
    /// Whether the cleaner removes this marker (Kafka's cleaner does, KIP-534): a
    /// commit marker whose transaction keeps no batch of its own in the log, once
    /// `delete.retention.ms` passed since the first pass over it, like a tombstone.
    /// Abort markers stay, with their transactions' emptied batch headers: the
    /// aborted transactions read_committed fetches list end at them.
    #[allow(clippy::too_many_arguments)]
    fn commit_marker_goes(
        &self,
        h: &batch::BatchHeader,
        bytes: &[u8],
        remembered: bool,
        txns: &mut BTreeMap<i64, bool>,
        passes: &Passes,
        cfg: &CleanConfig,
        stats: &mut CleanStats,
    ) -> Result<bool, LogError> {
        let keeps_data = txns.remove(&h.producer_id).unwrap_or(false);
        let (_, _, records) =
            crate::compaction::records(bytes).map_err(|e| storage("clean: read marker", e))?;
        // A control record's key: version (i16), then type (i16): 0 abort, 1 commit.
        let commit = records
            .first()
            .and_then(|r| r.key.as_ref())
            .is_some_and(|k| k.len() >= 4 && i16::from_be_bytes([k[2], k[3]]) == 1);
        if !commit || keeps_data || remembered {
            return Ok(false);
        }
        let first = passes.first_cleaned_ms(h.base_offset);
        if first.is_some_and(|f| cfg.now_ms.saturating_sub(f) >= cfg.delete_retention_ms) {
            stats.markers_removed += 1;
            return Ok(true);
        }
        // Its clock runs from this pass, if none before; a later pass removes it.
        let since = first.unwrap_or(cfg.now_ms);
        stats.oldest_tombstone_ms = Some(stats.oldest_tombstone_ms.map_or(since, |t| t.min(since)));
        Ok(false)
    }
}

/// Whether `h` holds records of one of the `aborted` transactions.
fn in_aborted(h: &batch::BatchHeader, aborted: &[TxnSpan]) -> bool {
    h.is_transactional()
        && !h.is_control()
        && aborted.iter().any(|t| {
            t.producer_id == h.producer_id
                && t.first_offset <= h.base_offset
                && h.base_offset < t.marker_offset
        })
}

/// Neighbouring segments that begin below `end`, grouped so a group's size stays
/// within a segment (Kafka's `groupSegmentsBySize`). The segment holding `end` is
/// rewritten too (its records from `end` on are newer than anything the map holds, so
/// they stay): a map too small for one segment's keys still makes progress.
fn group(closed: &[Closed], end: i64, segment_bytes: u64) -> Vec<Vec<&Closed>> {
    let mut groups: Vec<Vec<&Closed>> = Vec::new();
    let mut size = 0;
    for c in closed.iter().take_while(|c| c.base < end) {
        match groups.last_mut() {
            Some(g) if size + c.size <= segment_bytes => {
                g.push(c);
                size += c.size;
            }
            _ => {
                groups.push(vec![c]);
                size = c.size;
            }
        }
    }
    groups
}

/// The batches of a closed segment, each read whole and CRC-checked. The fields the
/// CRC does not cover are checked too, as the cleaner copies them into the segment it
/// writes: a bit flipped on this read must not become the log's content. Batches of a
/// segment follow one another without a gap (the cleaner keeps emptied batches as
/// empty ones), so each base offset is known before it is read; the leader epoch and
/// the rest of the prefix must read the same twice.
fn batches_of(
    c: &Closed,
) -> impl Iterator<Item = Result<(batch::BatchHeader, Vec<u8>), LogError>> + '_ {
    let (mut pos, mut expect) = (0u64, c.base);
    std::iter::from_fn(move || {
        if pos >= c.size {
            return None;
        }
        let read = read_batch_at(c.file.as_ref(), pos, c.size).and_then(|(h, bytes)| {
            if planted(Bug::CleanerTrustsHeaders) {
                return Ok((h, bytes));
            }
            if h.base_offset != expect {
                return Err(storage(
                    "clean: read",
                    format!(
                        "batch at byte {pos} reads base offset {} where {expect} follows",
                        h.base_offset
                    ),
                ));
            }
            let mut again = [0u8; batch::CRC_START];
            c.file
                .read_exact_at(pos, &mut again)
                .map_err(|e| storage("clean: read", e))?;
            if again[..] != bytes[..batch::CRC_START] {
                return Err(storage(
                    "clean: read",
                    format!("batch header at byte {pos} read two ways"),
                ));
            }
            Ok((h, bytes))
        });
        // After a bad read the segment is not walked on.
        match &read {
            Ok((h, _)) => {
                pos += h.size as u64;
                expect = h.next_offset();
            }
            Err(_) => pos = c.size,
        }
        Some(read)
    })
}

pub(super) fn read_passes(disk: &dyn Disk, dir: &Path) -> Passes {
    let Ok(Some(bytes)) = checkpoint::read(disk, &dir.join(PASSES)) else {
        return Passes::default();
    };
    let text = String::from_utf8_lossy(&bytes);
    let tombstones = text
        .lines()
        .find_map(|l| l.strip_prefix("tombstones ")?.parse().ok());
    Passes::from_entries(
        text.lines()
            .filter_map(|l| {
                let (end, at) = l.split_once(' ')?;
                Some((end.parse().ok()?, at.parse().ok()?))
            })
            .collect(),
        tombstones,
    )
}

fn write_passes(disk: &dyn Disk, dir: &Path, passes: &Passes) -> Result<(), LogError> {
    let text: String = passes
        .entries()
        .iter()
        .map(|(end, at)| format!("{end} {at}\n"))
        .chain(
            passes
                .oldest_tombstone_ms
                .map(|t| format!("tombstones {t}\n")),
        )
        .collect();
    checkpoint::write_atomic(disk, &dir.join(PASSES), text.as_bytes())
        .map_err(|e| storage("write cleaner checkpoint", e))
}
