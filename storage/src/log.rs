//! A partition's log: segments in a directory, appends with offset assignment,
//! group-commit fsync, reads bounded by the high watermark, and crash recovery.
//!
//! Durability contract (DESIGN.md §4): the high watermark only covers fsynced bytes, so
//! nothing is acknowledged or served that a crash could take back. A failed fsync fails
//! the partition for good: it never retries and acknowledges.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use sluice_core::buggify;
use sluice_core::env::{DiskFile, Env};
use sluice_core::producer::{ProducerError, ProducerStates, Verdict};
use sluice_core::sim::{planted, Bug};
use thiserror::Error;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::batch::{self, BatchError, BatchHeader};
use crate::checkpoint;
use crate::segment::{self, OffsetEntry, ProducerEvent, Segment};

/// Per-log settings, named as Kafka's topic configs.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// segment.bytes
    pub segment_bytes: u64,
    /// segment.ms
    pub segment_ms: u64,
    /// index.interval.bytes
    pub index_interval_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LogError {
    #[error("invalid record batch: {0}")]
    Corrupt(#[from] BatchError),
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("storage error: {0}")]
    Storage(String),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error("the log was truncated below offset {offset} while waiting for it")]
    Truncated { offset: i64 },
}

mod cleaner;
pub use cleaner::{CleanConfig, CleanStats, Dirtiness};

fn storage(context: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Storage(format!("{context}: {e}"))
}

/// Who an append comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A producer's batches: offsets assigned, producer state checked.
    Client,
    /// A transaction marker written by the coordinator.
    Control,
    /// Batches copied from the leader, offsets and epochs as they are.
    Replica,
}

/// Where a successful append put its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The log's truncation generation when it was appended: waiting for it to be
    /// committed fails if the log is cut back in between.
    pub generation: u64,
}

/// Batches read from the log, as stored.
#[derive(Debug, Clone)]
pub struct Read {
    pub batches: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub last_stable_offset: i64,
    /// For read_committed reads: the aborted transactions (producer id, first
    /// offset) the batches may hold records of.
    pub aborted: Vec<(i64, i64)>,
}

/// The high watermark as published to waiters, or the reason the log failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durable {
    Upto(i64),
    Failed(String),
}

struct State {
    segments: BTreeMap<i64, Segment>,
    /// The first offset served (Kafka's log start offset): the first segment's base,
    /// or later within it once DeleteRecords moved it there.
    log_start: i64,
    /// Log end offset: the next offset to assign.
    next_offset: i64,
    high_watermark: i64,
    /// Byte position of the high watermark within its segment.
    hw_segment: i64,
    hw_position: u64,
    /// Files written since the last sync (sealed segments).
    unsynced: Vec<Arc<dyn DiskFile>>,
    /// Sealed segments' encoded indexes, written once the segment is durable (a valid
    /// index file then proves its segment was synced), by base offset.
    pending_indexes: Vec<(i64, Vec<u8>, Vec<u8>)>,
    dir_dirty: bool,
    failed: Option<String>,
    /// Idempotent producers' recent batches (deduplication, sequence checks).
    producers: ProducerStates,
    /// Producer-state snapshots taken at rolls, written once their segment is durable.
    pending_snapshots: Vec<(i64, Vec<u8>)>,
    /// With replication: the high watermark the leader has established (the ISR's
    /// durable minimum). Readers and waiters see min(this, the local durable end).
    replicated_hw: Option<i64>,
    /// The epoch this replica stamps on the batches it appends as leader (-1: none).
    leader_epoch: i32,
    /// The leader epoch cache: (epoch, first offset), ascending. Shared so a read can
    /// take it out of the lock (to check the epochs of the batches it serves) for the
    /// cost of a reference count, not a copy.
    epochs: Arc<[(i32, i64)]>,
    /// Bumped by every truncation, so a sync round that raced one publishes nothing.
    generation: u64,
    /// The log cleaner's passes (its checkpoint, kept here so choosing what to clean
    /// reads no file).
    passes: sluice_core::compaction::Passes,
}

impl State {
    /// The high watermark readers and acks=all waiters see.
    fn published(&self) -> i64 {
        self.replicated_hw
            .map_or(self.high_watermark, |hw| hw.min(self.high_watermark))
    }

    /// Whether the log may be cut back to `offset` (for `what`): not once failed, and
    /// never below the high watermark.
    fn check_cut(&self, what: &str, offset: i64) -> Result<(), LogError> {
        if let Some(why) = &self.failed {
            return Err(LogError::Storage(why.clone()));
        }
        if offset < self.published() {
            let hw = self.published();
            return Err(storage(
                what,
                format!("offset {offset} is below the high watermark {hw}"),
            ));
        }
        Ok(())
    }

    /// Bytes of `seg` below the high watermark: all of a segment before the high
    /// watermark's, none of one after it.
    fn readable_end(&self, seg: &Segment) -> u64 {
        match seg.base_offset.cmp(&self.hw_segment) {
            std::cmp::Ordering::Less => seg.size,
            std::cmp::Ordering::Equal => self.hw_position,
            std::cmp::Ordering::Greater => 0,
        }
    }
}

pub struct PartitionLog {
    env: Env,
    dir: PathBuf,
    config: LogConfig,
    state: Mutex<State>,
    /// The published high watermark (acks=all, consumers, coordinators).
    durable: watch::Sender<Durable>,
    /// The local durable end (acks=1, followers reporting their progress).
    local: watch::Sender<i64>,
    flush: Arc<Notify>,
}

impl PartitionLog {
    /// Opens (recovering) or creates the log in `dir` and starts its flusher.
    pub fn open(env: Env, dir: &Path, config: LogConfig) -> Result<Arc<Self>, LogError> {
        let st = load(&env, dir, &config)?;
        let next_offset = st.next_offset;
        let log = Arc::new(PartitionLog {
            env: env.clone(),
            dir: dir.to_path_buf(),
            config,
            state: Mutex::new(st),
            durable: watch::channel(Durable::Upto(next_offset)).0,
            local: watch::channel(next_offset).0,
            flush: Arc::new(Notify::new()),
        });
        let weak = Arc::downgrade(&log);
        let flush = log.flush.clone();
        env.spawn(flusher(weak, flush));
        Ok(log)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means an assertion failed while appending; the state is
        // still consistent enough to read, and the flusher will fail the log.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Validates and appends the batches in `records` (one or more v2 batches as
    /// received), assigning offsets. The write is in the page cache when this returns;
    /// await [`PartitionLog::wait_durable`] before acknowledging.
    pub fn append(&self, records: &[u8]) -> Result<Appended, LogError> {
        self.append_batches(records, false)
    }

    /// Appends a transaction marker for `producer_id` (commit or abort), as the
    /// transaction coordinator's WriteTxnMarkers would.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<Appended, LogError> {
        let marker = batch::encode_marker(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            self.env.clock.wall_ms(),
        );
        self.append_batches(&marker, true)
    }

    /// Appends batches replicated from the leader: their offsets and epochs are kept,
    /// and they must continue this log exactly. Producer state follows them unchecked
    /// (the leader checked them).
    pub fn append_replicated(&self, records: &[u8]) -> Result<Appended, LogError> {
        self.append_kind(records, Kind::Replica)
    }

    fn append_batches(&self, records: &[u8], control: bool) -> Result<Appended, LogError> {
        self.append_kind(records, if control { Kind::Control } else { Kind::Client })
    }

    fn append_kind(&self, records: &[u8], kind: Kind) -> Result<Appended, LogError> {
        let mut headers: Vec<(usize, BatchHeader)> = Vec::new();
        let mut pos = 0;
        while pos < records.len() {
            // A leader's batch may be one compaction emptied or thinned: fewer
            // records than its offset range. A producer's must be dense.
            let h = if kind == Kind::Replica {
                batch::validate(&records[pos..])?
            } else {
                batch::validate_produced(&records[pos..])?
            };
            if kind != Kind::Replica && h.is_control() != (kind == Kind::Control) {
                return Err(BatchError::ControlProduced.into());
            }
            headers.push((pos, h));
            pos += h.size;
        }
        if headers.is_empty() {
            return Err(LogError::Corrupt(BatchError::Truncated {
                have: 0,
                need: batch::HEADER_LEN,
            }));
        }

        let mut st = self.lock();
        if let Some(why) = &st.failed {
            return Err(LogError::Storage(why.clone()));
        }
        if kind == Kind::Replica {
            let mut expect = st.next_offset;
            for (_, h) in &headers {
                if h.base_offset != expect {
                    return Err(storage(
                        "replicate",
                        format!("batch at {} where {expect} comes next", h.base_offset),
                    ));
                }
                expect = h.next_offset();
            }
        } else if let Some(duplicate) = check_producers(&st, &headers)? {
            return Ok(duplicate);
        }
        let rolled = self.maybe_roll(&mut st, records.len() as u64)?;
        if rolled && planted(Bug::DuplicateOnRoll) && kind != Kind::Replica {
            drop(st);
            self.append_kind(records, kind)?;
            st = self.lock();
        }
        let base_offset = st.next_offset;
        // Each batch's first 16 bytes (base offset, length, leader epoch: outside the
        // CRC) as stored; the rest is written straight from the request.
        let mut heads: Vec<[u8; PATCHED]> = Vec::with_capacity(headers.len());
        let mut next = base_offset;
        for (at, h) in &mut headers {
            let mut head = [0u8; PATCHED];
            head.copy_from_slice(&records[*at..*at + PATCHED]);
            if kind != Kind::Replica {
                batch::set_base_offset(&mut head, next);
                h.base_offset = next;
                if st.leader_epoch >= 0 {
                    batch::set_leader_epoch(&mut head, st.leader_epoch);
                    h.leader_epoch = st.leader_epoch;
                }
            }
            heads.push(head);
            next = h.next_offset();
        }
        // A batch of a newer epoch starts that epoch in the cache, stored before the
        // batch can be durable so the cache never misses an epoch the log holds.
        // Adopted only once stored: a failed write must not leave the cache ahead of
        // its checkpoint, or later batches of the epoch would go unrecorded.
        let latest = st.epochs.last().map_or(-1, |(e, _)| *e);
        if headers.iter().any(|(_, h)| h.leader_epoch > latest) {
            let mut epochs = st.epochs.to_vec();
            for (_, h) in &headers {
                segment::note_epoch(&mut epochs, h.leader_epoch, h.base_offset);
            }
            write_epochs(self.env.disk.as_ref(), &self.dir, &epochs)?;
            st.epochs = epochs.into();
        }
        let State { segments, .. } = &mut *st;
        let active = segments
            .values_mut()
            .last()
            .ok_or_else(|| storage("append", "no active segment"))?;
        let start = active.size;
        if let Err(e) = write_batches(active.file.as_ref(), start, records, &headers, &heads) {
            // Undo a partial write so the tail stays whole; if even that fails, the
            // file is in an unknown state and the log stops.
            if let Err(e2) = active.file.set_len(start) {
                let why = format!("write failed ({e}) and could not be undone ({e2})");
                st.failed = Some(why.clone());
                self.durable.send_replace(Durable::Failed(why.clone()));
                return Err(LogError::Storage(why));
            }
            return Err(storage("write", e));
        }
        for (at, h) in &headers {
            active.track(start + *at as u64, h, self.config.index_interval_bytes);
        }
        let mut events = Vec::new();
        for (at, h) in &headers {
            segment::producer_events(h, &records[*at..*at + h.size], &mut events);
        }
        for e in &events {
            e.apply(&mut st.producers);
        }
        st.next_offset = next;
        let st_generation = st.generation;
        drop(st);
        self.flush.notify_one();
        Ok(Appended {
            base_offset,
            last_offset: next - 1,
            generation: st_generation,
        })
    }

    /// Rolls to a new segment when the active one is full or old; true if it did.
    fn maybe_roll(&self, st: &mut State, incoming: u64) -> Result<bool, LogError> {
        let now = self.env.clock.monotonic().as_millis() as u64;
        let active = st
            .segments
            .values()
            .last()
            .ok_or_else(|| storage("roll", "no active segment"))?;
        let full = active.size > 0 && active.size + incoming > self.config.segment_bytes;
        let old = active.size > 0 && now.saturating_sub(active.created_ms) > self.config.segment_ms;
        let early = active.size > 0 && buggify!(0.02);
        if !(full || old || early) {
            return Ok(false);
        }
        self.roll(st, now)?;
        Ok(true)
    }

    /// Seals the active segment and starts a new one at the log end.
    fn roll(&self, st: &mut State, now: u64) -> Result<(), LogError> {
        // Creating the next segment is the only step that can fail (a full disk); the
        // log changes only after it succeeded.
        let base = st.next_offset;
        let file = self
            .env
            .disk
            .open(&self.dir.join(segment::file_name(base, "log")), true)
            .map_err(|e| storage("create segment", e))?;
        let sealed = st
            .segments
            .values_mut()
            .last()
            .ok_or_else(|| storage("roll", "no active segment"))?;
        sealed.seal();
        let (idx, tidx) = sealed.encode_indexes();
        let (sealed_base, sealed_file) = (sealed.base_offset, sealed.file.clone());
        st.unsynced.push(sealed_file);
        st.pending_indexes.push((sealed_base, idx, tidx));
        if !st.producers.is_empty() {
            // The producer state as of the new segment's base: recovery starts there.
            let snapshot = st.producers.encode();
            st.pending_snapshots.push((base, snapshot));
        }
        st.segments.insert(base, Segment::new(base, file, now));
        st.dir_dirty = true;
        Ok(())
    }

    /// Waits until `offset` (exclusive) is durable: fsynced and below the high watermark.
    pub async fn wait_durable(&self, offset: i64) -> Result<(), LogError> {
        self.wait_committed(offset, self.generation()).await
    }

    /// The truncation generation (see [`Appended::generation`]).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Waits until `offset` (exclusive) is below the high watermark, provided the log
    /// is still at `generation`: a replica whose log was cut back (a leader that lost
    /// its leadership and diverged) must not acknowledge what it appended before.
    pub async fn wait_committed(&self, offset: i64, generation: u64) -> Result<(), LogError> {
        let mut rx = self.durable.subscribe();
        loop {
            let current = self.lock().generation;
            if current != generation {
                return Err(LogError::Truncated { offset });
            }
            match &*rx.borrow_and_update() {
                Durable::Upto(hw) if *hw >= offset => return Ok(()),
                Durable::Failed(why) => return Err(LogError::Storage(why.clone())),
                Durable::Upto(_) => {}
            }
            if rx.changed().await.is_err() {
                return Err(storage("wait", "log closed"));
            }
        }
    }

    /// Waits until `offset` (exclusive) is fsynced here, whatever the replicas hold.
    pub async fn wait_local_durable(&self, offset: i64) -> Result<(), LogError> {
        let mut rx = self.local.subscribe();
        loop {
            if *rx.borrow_and_update() >= offset {
                return Ok(());
            }
            if let Some(why) = &self.lock().failed {
                return Err(LogError::Storage(why.clone()));
            }
            if rx.changed().await.is_err() {
                return Err(storage("wait", "log closed"));
            }
        }
    }

    /// A receiver of the local durable end (a follower reports it to its leader).
    pub fn watch_local(&self) -> watch::Receiver<i64> {
        self.local.subscribe()
    }

    /// The local durable end: the offset up to which this replica's log is fsynced.
    pub fn local_durable_end(&self) -> i64 {
        self.lock().high_watermark
    }

    /// Sets the replicated high watermark (`None`: the log is its own and only replica,
    /// the local durable end is the high watermark). It never moves back.
    pub fn set_replicated_hw(&self, hw: Option<i64>) {
        let mut st = self.lock();
        let published = st.published();
        st.replicated_hw = match (st.replicated_hw, hw) {
            (Some(_), Some(new)) if planted(Bug::HwGoesBack) => Some(new),
            (Some(old), Some(new)) => Some(old.max(new)),
            (None, Some(new)) => Some(new.max(published)),
            (_, None) => None,
        };
        if st.failed.is_none() {
            self.durable.send_replace(Durable::Upto(st.published()));
        }
    }

    /// Makes a freshly opened replica of a replicated partition start from a high
    /// watermark of 0 rather than its log end: what it holds past the real high
    /// watermark may be uncommitted, and is truncated if it diverged. (The leader or
    /// the followers' fetches establish the real one.)
    pub fn start_replicated(&self) {
        let mut st = self.lock();
        if st.replicated_hw.is_none() {
            st.replicated_hw = Some(0);
            if st.failed.is_none() {
                self.durable.send_replace(Durable::Upto(st.published()));
            }
        }
    }

    /// The epoch stamped on batches appended from now on (as the partition's leader).
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.lock().leader_epoch = epoch;
    }

    /// The latest epoch in the leader epoch cache (-1 for none).
    pub fn latest_epoch(&self) -> i32 {
        self.lock().epochs.last().map_or(-1, |(e, _)| *e)
    }

    /// Kafka's OffsetForLeaderEpoch: the largest epoch <= `epoch` this log knows, and
    /// the offset where it ended (the start of the next epoch, or the log end for the
    /// latest). (-1, -1) when the log holds no such epoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let st = self.lock();
        let Some(i) = st.epochs.iter().rposition(|(e, _)| *e <= epoch) else {
            return (-1, -1);
        };
        let end = st
            .epochs
            .get(i + 1)
            .map_or(st.next_offset, |(_, start)| *start);
        (st.epochs[i].0, end)
    }

    /// Cuts the log back to `offset` (a diverged follower's truncation): the batches at
    /// and after it are removed from disk and the log is recovered again from what
    /// remains. The high watermark never goes back, so `offset` below it is refused.
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let mut st = self.lock();
        if offset >= st.next_offset && st.failed.is_none() {
            return Ok(());
        }
        st.check_cut("truncate", offset)?;
        let disk = self.env.disk.clone();
        let (seg_base, position) = {
            let Some(seg) = st.segments.range(..=offset).next_back().map(|(_, s)| s) else {
                return Err(storage("truncate", "no segment"));
            };
            let position =
                batch_boundary(seg.file.as_ref(), seg.entry_for(offset), seg.size, offset)?;
            (seg.base_offset, position)
        };
        let later: Vec<i64> = st.segments.range(seg_base + 1..).map(|(b, _)| *b).collect();
        for base in later.iter().rev() {
            for ext in ["log", "index", "timeindex", SNAPSHOT] {
                let _ = disk.remove_file(&self.dir.join(segment::file_name(*base, ext)));
            }
        }
        // The cut segment becomes the active one: its indexes are rebuilt by a scan.
        for ext in ["index", "timeindex"] {
            let _ = disk.remove_file(&self.dir.join(segment::file_name(seg_base, ext)));
        }
        let file = st.segments.get(&seg_base).map(|s| s.file.clone());
        if let Some(file) = file {
            file.set_len(position).map_err(|e| storage("truncate", e))?;
            file.sync().map_err(|e| storage("truncate", e))?;
        }
        disk.sync_dir(&self.dir)
            .map_err(|e| storage("truncate", e))?;
        let epochs: Vec<(i32, i64)> = st
            .epochs
            .iter()
            .copied()
            .filter(|(_, o)| *o < offset)
            .collect();
        write_epochs(disk.as_ref(), &self.dir, &epochs)?;
        let replicated_hw = st.replicated_hw;
        self.reload(&mut st, replicated_hw)?;
        info!(dir = %self.dir.display(), offset, next_offset = st.next_offset, "log truncated");
        Ok(())
    }

    /// Recovers the state again from the files after they were cut, keeping what the
    /// replication layer set; waits on the old state fail by its generation.
    fn reload(&self, st: &mut State, replicated_hw: Option<i64>) -> Result<(), LogError> {
        let mut fresh = load(&self.env, &self.dir, &self.config)?;
        fresh.replicated_hw = replicated_hw;
        fresh.leader_epoch = st.leader_epoch;
        fresh.generation = st.generation + 1;
        *st = fresh;
        self.local.send_replace(st.high_watermark);
        self.durable.send_replace(Durable::Upto(st.published()));
        Ok(())
    }

    /// Empties the log and starts it again at `offset` (Kafka's truncateFullyAndStartAt):
    /// a new follower whose leader no longer holds offsets below `offset` begins there.
    pub fn start_over_at(&self, offset: i64) -> Result<(), LogError> {
        let mut st = self.lock();
        st.check_cut("start over", offset)?;
        let disk = self.env.disk.clone();
        for base in st.segments.keys() {
            for ext in ["log", "index", "timeindex", SNAPSHOT] {
                let _ = disk.remove_file(&self.dir.join(segment::file_name(*base, ext)));
            }
        }
        let file = disk
            .open(&self.dir.join(segment::file_name(offset, "log")), true)
            .map_err(|e| storage("start over", e))?;
        file.sync().map_err(|e| storage("start over", e))?;
        disk.sync_dir(&self.dir)
            .map_err(|e| storage("start over", e))?;
        write_epochs(disk.as_ref(), &self.dir, &[])?;
        write_log_start(disk.as_ref(), &self.dir, offset)?;
        let replicated_hw = st.replicated_hw.map(|hw| hw.max(offset));
        self.reload(&mut st, replicated_hw)?;
        info!(dir = %self.dir.display(), offset, "log started over");
        Ok(())
    }

    /// A receiver that changes whenever the high watermark moves (for long polls).
    pub fn watch(&self) -> watch::Receiver<Durable> {
        self.durable.subscribe()
    }

    /// The high watermark consumers see.
    pub fn high_watermark(&self) -> i64 {
        self.lock().published()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start
    }

    /// Moves the log start offset forward to `offset` (DeleteRecords, KIP-107; a
    /// follower following its leader's): records below it are no longer served and
    /// whole segments below it are removed. Never past the high watermark. The new
    /// start is durable before anyone sees it. False if the start was already there.
    pub fn advance_log_start(&self, offset: i64) -> Result<bool, LogError> {
        // A full disk may have no room for the checkpoint: then the segments wholly
        // below the new start go first (recovery derives the same start from the
        // segments left) and the checkpoint is written into the room they leave. Only
        // for a full disk: after a failed fsync nothing written may be trusted again
        // (a retry that "succeeds" let the start go back after a crash in the
        // simulator, soak seed 21000111).
        for room_made in [false, true] {
            let mut st = self.lock();
            if let Some(why) = &st.failed {
                return Err(LogError::Storage(why.clone()));
            }
            if offset <= st.log_start {
                return Ok(false);
            }
            let hw = st.published();
            if offset > hw && !planted(Bug::RetentionPastHw) {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: st.log_start,
                    end: hw,
                });
            }
            match try_write_log_start(self.env.disk.as_ref(), &self.dir, offset) {
                Ok(()) => {
                    st.log_start = offset;
                    break;
                }
                Err(e) if room_made || e.kind() != std::io::ErrorKind::StorageFull => {
                    return Err(storage("write log start offset", e));
                }
                Err(e) => {
                    drop(st);
                    warn!(dir = %self.dir.display(), error = %e, "no room for the log start checkpoint; deleting the segments below it first");
                    self.delete_segments_before(offset)?;
                }
            }
        }
        self.delete_segments_before(offset)?;
        Ok(true)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.lock().next_offset
    }

    /// Reads whole batches from the one holding `offset`, up to `max_bytes` (but always
    /// at least one whole batch), never past the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Read, LogError> {
        self.read_isolated(offset, max_bytes, false)
    }

    /// Like [`PartitionLog::read`]; with `committed` (read_committed), never past the
    /// last stable offset, and with the aborted transactions the batches touch.
    pub fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        committed: bool,
    ) -> Result<Read, LogError> {
        self.read_upto(offset, max_bytes, committed, false)
    }

    /// A follower's read: up to the local durable end, past the high watermark.
    pub fn read_replica(&self, offset: i64, max_bytes: usize) -> Result<Read, LogError> {
        self.read_upto(offset, max_bytes, false, true)
    }

    fn read_upto(
        &self,
        offset: i64,
        max_bytes: usize,
        committed: bool,
        replica: bool,
    ) -> Result<Read, LogError> {
        let (file, from, to, hw, start, lso, epochs) = {
            let st = self.lock();
            if let Some(why) = &st.failed {
                return Err(LogError::Storage(why.clone()));
            }
            let start = st.log_start;
            let hw = st.published();
            // Followers read up to the local durable end; everyone else up to the
            // high watermark. Both are told the high watermark.
            let limit = if replica { st.high_watermark } else { hw };
            let lso = if planted(Bug::ReadPastLso) {
                hw
            } else {
                st.producers.last_stable_offset(hw)
            };
            // Out of range only past the local durable end: a new leader's high
            // watermark may lag what it holds.
            if offset < start || offset > st.high_watermark {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start,
                    end: hw,
                });
            }
            let empty = Read {
                batches: Bytes::new(),
                high_watermark: hw,
                log_start_offset: start,
                last_stable_offset: lso,
                aborted: Vec::new(),
            };
            let upto = if committed { lso } else { limit };
            if offset >= upto {
                return Ok(empty);
            }
            let Some(seg) = st.segments.range(..=offset).next_back().map(|(_, s)| s) else {
                return Ok(empty);
            };
            let end = st.readable_end(seg);
            (
                seg.file.clone(),
                seg.entry_for(offset),
                end,
                (hw, limit),
                start,
                lso,
                st.epochs.clone(),
            )
        };
        let (hw, limit) = hw;
        // Under the simulator, now and then serve as little as possible.
        let max_bytes = if buggify!(0.05) { 1 } else { max_bytes };
        let mut batches = read_batches(file.as_ref(), from, to, offset, max_bytes, &epochs)?;
        // The bytes read end at the local durable end; the replicated high watermark
        // may be lower.
        batches = batches.slice(..stable_prefix(&batches, limit));
        let mut aborted = Vec::new();
        if committed {
            batches = batches.slice(..stable_prefix(&batches, lso));
            if !batches.is_empty() && !planted(Bug::AbortedListDropped) {
                aborted = self.lock().producers.aborted_between(offset, lso);
            }
        }
        Ok(Read {
            batches,
            high_watermark: hw,
            log_start_offset: start,
            last_stable_offset: lso,
            aborted,
        })
    }

    /// The producers this partition remembers: (id, epoch, last sequence, first
    /// offset of its open transaction or -1), for DescribeProducers.
    pub fn active_producers(&self) -> Vec<(i64, i16, i32, i64)> {
        self.lock().producers.active().collect()
    }

    /// The last stable offset now.
    pub fn last_stable_offset(&self) -> i64 {
        let st = self.lock();
        st.producers.last_stable_offset(st.published())
    }

    /// The first batch (below the high watermark) whose max timestamp is >= `ts`.
    pub fn batch_for_timestamp(&self, ts: i64) -> Result<Option<Bytes>, LogError> {
        let (file, from, to) = {
            let st = self.lock();
            let Some(seg) = st.segments.values().find(|s| s.max_timestamp >= ts) else {
                return Ok(None);
            };
            let end = st.readable_end(seg);
            (seg.file.clone(), seg.position_for_timestamp(ts), end)
        };
        scan_for(file.as_ref(), from, to, |h| h.max_timestamp >= ts)
    }

    /// The batch holding the largest timestamp in the log (ListOffsets -3).
    pub fn batch_with_max_timestamp(&self) -> Result<Option<Bytes>, LogError> {
        let (file, from, to, target) = {
            let st = self.lock();
            let Some(seg) = st
                .segments
                .values()
                .filter(|s| s.max_timestamp >= 0)
                .max_by_key(|s| s.max_timestamp)
            else {
                return Ok(None);
            };
            let target = seg.max_timestamp_batch;
            let end = st.readable_end(seg);
            (seg.file.clone(), seg.position_for(target), end, target)
        };
        scan_for(file.as_ref(), from, to, |h| h.base_offset == target)
    }

    /// One group-commit round: fsync everything written so far, then publish it.
    async fn sync_round(&self) -> Result<(), String> {
        let (files, indexes, dir_dirty, target, seg, pos) = {
            let mut st = self.lock();
            if st.failed.is_some() {
                return Ok(());
            }
            let active = st.segments.values().last().ok_or("no active segment")?;
            let (seg, pos, file) = (active.base_offset, active.size, active.file.clone());
            if st.next_offset == st.high_watermark && st.unsynced.is_empty() {
                return Ok(());
            }
            let mut files = std::mem::take(&mut st.unsynced);
            files.push(file);
            let indexes = std::mem::take(&mut st.pending_indexes);
            let snapshots = std::mem::take(&mut st.pending_snapshots);
            let dir_dirty = std::mem::take(&mut st.dir_dirty);
            (
                files,
                (indexes, snapshots, st.generation),
                dir_dirty,
                st.next_offset,
                seg,
                pos,
            )
        };
        let (indexes, snapshots, generation) = indexes;
        if buggify!(0.05) {
            // A slow disk: appends pile up behind this sync.
            let ms = self.env.random_below(50);
            self.env
                .clock
                .sleep(std::time::Duration::from_millis(ms))
                .await;
        }
        let disk = self.env.disk.clone();
        let dir = self.dir.clone();
        let skip_sync = planted(Bug::AckBeforeFsync);
        let outcome = self
            .env
            .blocking(move || -> std::io::Result<()> {
                for f in &files {
                    if !skip_sync {
                        f.sync()?;
                    }
                }
                if dir_dirty {
                    disk.sync_dir(&dir)?;
                }
                // The sealed segments are durable now. Their indexes only speed up
                // recovery, which scans a segment whose index is missing or damaged,
                // so a failed write here costs nothing but that scan.
                for (base, idx, tidx) in indexes {
                    for (ext, bytes) in [("index", idx), ("timeindex", tidx)] {
                        let written = disk
                            .open(&dir.join(segment::file_name(base, ext)), true)
                            .and_then(|f| {
                                f.set_len(0)?;
                                f.write_at(0, &bytes)
                            });
                        if let Err(e) = written {
                            warn!(dir = %dir.display(), segment = base, error = %e, "could not write segment index");
                        }
                    }
                }
                // Likewise producer snapshots: without one, recovery reads more headers.
                for (base, bytes) in snapshots {
                    let path = dir.join(segment::file_name(base, SNAPSHOT));
                    match checkpoint::write_atomic(disk.as_ref(), &path, &bytes) {
                        Ok(()) => remove_old_snapshots(disk.as_ref(), &dir, base),
                        Err(e) => warn!(dir = %dir.display(), segment = base, error = %e, "could not write producer snapshot"),
                    }
                }
                Ok(())
            })
            .await
            .unwrap_or_else(|| Err(std::io::Error::other("sync task lost")));
        let mut st = self.lock();
        match outcome {
            Ok(()) => {
                // A roll with nothing new (retention rolling an idle segment) moves
                // the high watermark's segment on without moving the offset.
                let moved = target > st.high_watermark
                    || (target == st.high_watermark && seg > st.hw_segment);
                if moved && st.generation == generation {
                    st.high_watermark = target;
                    st.producers.settle(target);
                    st.hw_segment = seg;
                    st.hw_position = pos;
                    self.local.send_replace(target);
                    self.durable.send_replace(Durable::Upto(st.published()));
                }
                Ok(())
            }
            Err(e) => {
                let why = format!("fsync failed, partition taken offline: {e}");
                st.failed = Some(why.clone());
                self.durable.send_replace(Durable::Failed(why.clone()));
                Err(why)
            }
        }
    }

    /// Removes the log's files (DeleteTopics). The flusher stops once the last
    /// reference is gone.
    /// Retention (Kafka's `retention.ms` and `retention.bytes`, -1 for no limit):
    /// drops whole sealed segments, oldest first, whose newest record is older than
    /// `retention_ms` before `now_ms` (wall clock), or while the log is larger than
    /// `retention_bytes` without them. An expired active segment is rolled first and
    /// goes on a later pass, once durable. Returns how many went.
    pub fn apply_retention(
        &self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Result<usize, LogError> {
        let upto = {
            let mut st = self.lock();
            let mut size: u64 = st.segments.values().map(|s| s.size).sum();
            let mut upto = None;
            let count = st.segments.len();
            let published = st.published();
            let mut roll = false;
            for (i, seg) in st.segments.values().enumerate() {
                let expired = retention_ms >= 0
                    && seg.max_timestamp >= 0
                    && seg.max_timestamp < now_ms.saturating_sub(retention_ms);
                let oversized =
                    retention_bytes >= 0 && size.saturating_sub(seg.size) >= retention_bytes as u64;
                if !(expired || oversized) {
                    break;
                }
                if i + 1 == count {
                    // The active segment expired too (a topic no longer written to):
                    // roll it, as Kafka does, so that a later pass can delete it once
                    // it is durable; only once all of it is committed.
                    roll = expired && seg.size > 0 && seg.next_offset <= published;
                    break;
                }
                size -= seg.size;
                upto = Some(seg.next_offset);
            }
            if roll {
                let now = self.env.clock.monotonic().as_millis() as u64;
                self.roll(&mut st, now)?;
                drop(st);
                self.flush.notify_one();
            }
            upto
        };
        match upto {
            Some(offset) => {
                // The new start is made durable before the segments leave the log's
                // view: a failed directory sync and a crash may bring segments back,
                // but never a start readers already saw moved past (bug 31's lesson).
                let (hw, before) = {
                    let st = self.lock();
                    (st.published(), st.segments.len())
                };
                self.advance_log_start(offset.min(hw))?;
                self.delete_segments_before(offset)?;
                Ok(before.saturating_sub(self.lock().segments.len()))
            }
            None => Ok(0),
        }
    }

    /// Bytes of the log's segments (what `DescribeLogDirs` reports as its size).
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.values().map(|s| s.size).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// Removes the whole sealed, committed segments that end at or below `offset`
    /// (retention, DeleteRecords), oldest first: never past the high watermark, so a
    /// leader does not delete what its followers have yet to fetch. Each removal is
    /// made durable before the next, so a crash leaves a log that starts at a segment
    /// boundary, never one with a hole (which recovery would cut the log at). Returns
    /// how many went.
    pub fn delete_segments_before(&self, offset: i64) -> Result<usize, LogError> {
        let mut removed = 0;
        loop {
            let base = {
                let mut st = self.lock();
                if let Some(why) = &st.failed {
                    return Err(LogError::Storage(why.clone()));
                }
                let Some((&base, first)) = st.segments.iter().next() else {
                    break;
                };
                let below_hw = (first.next_offset <= st.published() && base != st.hw_segment)
                    || planted(Bug::RetentionPastHw);
                let removable = st.segments.len() > 1
                    && first.next_offset <= offset
                    && below_hw
                    && !st.pending_indexes.iter().any(|(b, ..)| *b == base);
                if !removable {
                    break;
                }
                st.segments.remove(&base);
                let first = st.segments.keys().next().copied().unwrap_or(base);
                st.log_start = st.log_start.max(first);
                st.producers.prune_before(first);
                base
            };
            let disk = &self.env.disk;
            disk.remove_file(&self.dir.join(segment::file_name(base, "log")))
                .map_err(|e| storage("remove segment", e))?;
            disk.sync_dir(&self.dir)
                .map_err(|e| storage("sync log dir", e))?;
            for ext in ["index", "timeindex"] {
                let _ = disk.remove_file(&self.dir.join(segment::file_name(base, ext)));
            }
            removed += 1;
        }
        Ok(removed)
    }

    pub fn delete(&self) -> Result<(), LogError> {
        let mut st = self.lock();
        st.failed = Some("partition deleted".into());
        self.durable
            .send_replace(Durable::Failed("partition deleted".into()));
        self.env
            .disk
            .remove_dir_all(&self.dir)
            .map_err(|e| storage("delete log", e))
    }
}

/// Bytes at the front of a batch the log may rewrite: base offset, batch length and
/// partition leader epoch, none of them covered by the CRC.
const PATCHED: usize = 16;

/// Writes `records` at `start` with each batch's front replaced by its `heads` entry.
/// A small request is assembled and written at once; a large one is written in place
/// from the request's buffer, a few pieces per batch, so its bytes are not copied.
fn write_batches(
    file: &dyn sluice_core::env::DiskFile,
    start: u64,
    records: &[u8],
    headers: &[(usize, BatchHeader)],
    heads: &[[u8; PATCHED]],
) -> std::io::Result<()> {
    const ASSEMBLE_BELOW: usize = 64 << 10;
    if records.len() < ASSEMBLE_BELOW {
        let mut buf = records.to_vec();
        for ((at, _), head) in headers.iter().zip(heads) {
            buf[*at..*at + PATCHED].copy_from_slice(head);
        }
        return file.write_at(start, &buf);
    }
    for ((at, h), head) in headers.iter().zip(heads) {
        let at_file = start + *at as u64;
        file.write_at(at_file, head)?;
        file.write_at(
            at_file + PATCHED as u64,
            &records[*at + PATCHED..*at + h.size],
        )?;
    }
    Ok(())
}

/// Opens a log directory: lists, checks and recovers its segments, rebuilds the
/// producer state and the leader epoch cache.
fn load(env: &Env, dir: &Path, config: &LogConfig) -> Result<State, LogError> {
    let disk = env.disk.clone();
    let now = env.clock.monotonic().as_millis() as u64;
    if !disk.exists(dir) {
        disk.create_dir_all(dir)
            .map_err(|e| storage("create log dir", e))?;
        if let Some(parent) = dir.parent() {
            disk.sync_dir(parent)
                .map_err(|e| storage("sync data dir", e))?;
        }
    }
    let list = || disk.list(dir).map_err(|e| storage("list log dir", e));
    let mut names = list()?;
    if cleaner::recover_swaps(disk.as_ref(), dir, &names)? {
        names = list()?;
    }
    let mut bases: Vec<i64> = names
        .iter()
        .filter_map(|n| segment::parse_file_name(n))
        .collect();
    bases.sort_unstable();

    let mut segments = BTreeMap::new();
    let mut scanned: BTreeMap<i64, Vec<ProducerEvent>> = BTreeMap::new();
    let mut scanned_epochs: BTreeMap<i64, Vec<(i32, i64)>> = BTreeMap::new();
    let mut dropped_from = None;
    for (i, &base) in bases.iter().enumerate() {
        let path = dir.join(segment::file_name(base, "log"));
        let file = disk
            .open(&path, false)
            .map_err(|e| storage("open segment", e))?;
        let expected = segments
            .values()
            .last()
            .map_or(base, |s: &Segment| s.next_offset);
        if base != expected {
            // An empty file here is a segment whose creation was cut short: it
            // holds nothing and the log goes on in its predecessor or successor.
            if file.size().map_err(|e| storage("open segment", e))? == 0 {
                warn!(dir = %dir.display(), base, "removing an empty segment left by an interrupted roll");
                let _ = disk.remove_file(&path);
                continue;
            }
            warn!(dir = %dir.display(), base, expected, "segment does not follow its predecessor; dropping it and later ones");
            sluice_core::sim_event!(
                "{}: recovery drops segment {base} and later ones (expected {expected})",
                dir.display()
            );
            dropped_from = Some(i);
            break;
        }
        let sealed_next = bases.get(i + 1).copied();
        let loaded = sealed_next.and_then(|next| {
            segment::load_indexes(disk.as_ref(), dir, file.clone(), base, next, now)
        });
        let seg = match loaded {
            Some(seg) => seg,
            None => {
                let scan = segment::scan(file.clone(), base, config.index_interval_bytes, now)
                    .map_err(|e| storage("scan segment", e))?;
                let mut seg = scan.segment;
                scanned.insert(base, scan.produced);
                scanned_epochs.insert(base, scan.epochs);
                if let Some((pos, why)) = scan.stopped {
                    warn!(dir = %dir.display(), segment = base, position = pos, valid_bytes = seg.size,
                        next_offset = seg.next_offset, error = %why, "truncating log at the last valid batch");
                    sluice_core::sim_event!(
                        "{}: recovery truncates segment {base} at {} (next offset {}): {why}",
                        dir.display(),
                        seg.size,
                        seg.next_offset
                    );
                    file.set_len(seg.size)
                        .map_err(|e| storage("truncate segment", e))?;
                    let stop_here = sealed_next.is_some_and(|next| seg.next_offset != next);
                    if stop_here {
                        seg.seal();
                        segments.insert(base, seg);
                        dropped_from = Some(i + 1);
                        break;
                    }
                }
                if sealed_next.is_some() {
                    seg.seal();
                }
                seg
            }
        };
        segments.insert(base, seg);
    }
    if let Some(from) = dropped_from {
        for &base in &bases[from..] {
            for ext in ["log", "index", "timeindex"] {
                let _ = disk.remove_file(&dir.join(segment::file_name(base, ext)));
            }
        }
    }
    if segments.is_empty() {
        let file = disk
            .open(&dir.join(segment::file_name(0, "log")), true)
            .map_err(|e| storage("create segment", e))?;
        segments.insert(0, Segment::new(0, file, now));
    }
    // After a process kill (not a power loss) the page cache still holds what was
    // written, synced or not, including segments whose directory entry was never
    // synced. All of it is about to be served: make it durable first. This also
    // covers the truncations, removals and creations above.
    for seg in segments.values() {
        seg.file.sync().map_err(|e| storage("sync segment", e))?;
    }
    disk.sync_dir(dir).map_err(|e| storage("sync log dir", e))?;
    let active = segments
        .values()
        .last()
        .ok_or_else(|| storage("open", "no segment"))?;
    let (next_offset, hw_segment, hw_position) =
        (active.next_offset, active.base_offset, active.size);
    let producers = rebuild_producers(env, dir, &segments, &mut scanned, next_offset)?;
    let mut epochs = read_epochs(disk.as_ref(), dir, next_offset);
    // The batches are the truth: an epoch a recovered batch carries that the cache
    // lacks (its checkpoint write failed, or was lost with the crash) starts there.
    let mut epochs_changed = false;
    for (e, offset) in scanned_epochs.into_values().flatten() {
        epochs_changed |= segment::note_epoch(&mut epochs, e, offset);
    }
    if epochs_changed {
        write_epochs(disk.as_ref(), dir, &epochs)?;
    }
    info!(dir = %dir.display(), segments = segments.len(), next_offset, "log opened");
    let first = segments.keys().next().copied().unwrap_or(0);
    // A start moved by DeleteRecords lies within the first segment; one the
    // checkpoint puts past the log's end (the end was lost in a crash) stops there.
    let log_start = read_log_start(disk.as_ref(), dir)
        .max(first)
        .min(next_offset);
    Ok(State {
        passes: cleaner::read_passes(disk.as_ref(), dir),
        segments,
        log_start,
        next_offset,
        high_watermark: next_offset,
        hw_segment,
        hw_position,
        unsynced: Vec::new(),
        pending_indexes: Vec::new(),
        dir_dirty: false,
        failed: None,
        producers,
        pending_snapshots: Vec::new(),
        replicated_hw: None,
        leader_epoch: -1,
        epochs: epochs.into(),
        generation: 0,
    })
}

const SNAPSHOT: &str = "snapshot";
/// The log start offset once DeleteRecords moved it past the first segment's base.
const LOG_START: &str = "log-start-offset-checkpoint";

fn read_log_start(disk: &dyn sluice_core::env::Disk, dir: &Path) -> i64 {
    match checkpoint::read(disk, &dir.join(LOG_START)) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).trim().parse().unwrap_or(0),
        // Unreadable: the segments' own start is the safe answer (it serves more, never
        // less, than was kept).
        _ => 0,
    }
}

fn write_log_start(
    disk: &dyn sluice_core::env::Disk,
    dir: &Path,
    offset: i64,
) -> Result<(), LogError> {
    try_write_log_start(disk, dir, offset).map_err(|e| storage("write log start offset", e))
}

fn try_write_log_start(
    disk: &dyn sluice_core::env::Disk,
    dir: &Path,
    offset: i64,
) -> std::io::Result<()> {
    checkpoint::write_atomic(disk, &dir.join(LOG_START), offset.to_string().as_bytes())
}
/// The leader epoch cache, one `epoch first-offset` line per epoch.
const EPOCHS: &str = "leader-epoch-checkpoint";

/// The leader epoch cache as stored, without epochs that start at or past `log_end`
/// (their batches were lost in a crash or truncated).
fn read_epochs(disk: &dyn sluice_core::env::Disk, dir: &Path, log_end: i64) -> Vec<(i32, i64)> {
    let Ok(Some(bytes)) = checkpoint::read(disk, &dir.join(EPOCHS)) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| {
            let (e, o) = l.split_once(' ')?;
            Some((e.parse().ok()?, o.parse().ok()?))
        })
        .filter(|&(_, o)| o < log_end)
        .collect()
}

fn write_epochs(
    disk: &dyn sluice_core::env::Disk,
    dir: &Path,
    epochs: &[(i32, i64)],
) -> Result<(), LogError> {
    let text: String = epochs.iter().map(|(e, o)| format!("{e} {o}\n")).collect();
    checkpoint::write_atomic(disk, &dir.join(EPOCHS), text.as_bytes())
        .map_err(|e| storage("write leader epochs", e))
}

/// Bytes of the whole batches in `batches` that start below `lso`.
fn stable_prefix(batches: &[u8], lso: i64) -> usize {
    let mut pos = 0;
    while pos + batch::LOG_OVERHEAD <= batches.len() {
        let base = i64::from_be_bytes(batches[pos..pos + 8].try_into().unwrap_or_default());
        let Some(Ok(size)) = batch::peek_size(&batches[pos..]) else {
            break;
        };
        if base >= lso || pos + size > batches.len() {
            break;
        }
        pos += size;
    }
    pos
}

/// Judges the idempotent batches of an append against the producer table, in order.
/// `Some` when the append is a retry of batches already stored (their offsets).
fn check_producers(
    st: &State,
    headers: &[(usize, BatchHeader)],
) -> Result<Option<Appended>, LogError> {
    let mut scratch: Option<ProducerStates> = None;
    let mut next = st.next_offset;
    let mut duplicate = None;
    for (i, (_, h)) in headers.iter().enumerate() {
        let mut events = Vec::new();
        segment::producer_events(h, &[], &mut events);
        let table = scratch.as_ref().unwrap_or(&st.producers);
        for e in &events {
            if let ProducerEvent::Marker {
                producer_id, epoch, ..
            } = *e
            {
                table.check_marker(producer_id, epoch)?;
            }
        }
        let Some(mut b) = events.iter().find_map(|e| match e {
            ProducerEvent::Batch(b) => Some(*b),
            _ => None,
        }) else {
            next += i64::from(h.last_offset_delta) + 1;
            continue;
        };
        let verdict = if planted(Bug::SkipProducerDedup) {
            Verdict::Append
        } else {
            table.check(b.producer_id, b.epoch, b.first_seq, b.last_seq)?
        };
        match verdict {
            Verdict::Duplicate {
                first_offset,
                last_offset,
            } if headers.len() == 1 => {
                duplicate = Some(Appended {
                    base_offset: first_offset,
                    last_offset,
                    generation: st.generation,
                });
            }
            Verdict::Duplicate { .. } => {
                // A retry mixed with new batches: the client's state is broken.
                return Err(ProducerError::OutOfOrder {
                    producer_id: b.producer_id,
                    expected: b.last_seq.wrapping_add(1),
                    got: b.first_seq,
                }
                .into());
            }
            Verdict::Append if i + 1 < headers.len() => {
                // Later batches of this append follow this one.
                b.first_offset = next;
                b.last_offset = next + i64::from(h.last_offset_delta);
                scratch
                    .get_or_insert_with(|| st.producers.clone())
                    .record(b);
            }
            Verdict::Append => {}
        }
        next += i64::from(h.last_offset_delta) + 1;
    }
    Ok(duplicate)
}

/// Producer state at open: the newest readable snapshot at or below the log end,
/// then every idempotent batch after it.
fn rebuild_producers(
    env: &Env,
    dir: &Path,
    segments: &BTreeMap<i64, Segment>,
    scanned: &mut BTreeMap<i64, Vec<ProducerEvent>>,
    log_end: i64,
) -> Result<ProducerStates, LogError> {
    let disk = env.disk.as_ref();
    let mut offsets: Vec<i64> = disk
        .list(dir)
        .map_err(|e| storage("list log dir", e))?
        .iter()
        .filter_map(|n| {
            let stem = n.strip_suffix(".snapshot")?;
            (stem.len() == 20).then(|| stem.parse().ok()).flatten()
        })
        .filter(|&o| o <= log_end)
        .collect();
    offsets.sort_unstable();
    let mut from = i64::MIN;
    let mut states = ProducerStates::default();
    for &o in offsets.iter().rev() {
        // (a snapshot's closing transactions are decided: everything before it is durable)
        let path = dir.join(segment::file_name(o, SNAPSHOT));
        if let Ok(Some(bytes)) = checkpoint::read(disk, &path) {
            if let Ok(s) = ProducerStates::decode(&bytes) {
                states = s;
                from = o;
                break;
            }
        }
        warn!(dir = %dir.display(), offset = o, "ignoring an unreadable producer snapshot");
    }
    for seg in segments.values() {
        if seg.next_offset <= from {
            continue;
        }
        let events = match scanned.remove(&seg.base_offset) {
            Some(e) => e,
            None => {
                let start = if from > seg.base_offset {
                    seg.entry_for(from).position
                } else {
                    0
                };
                segment::read_producer_events(seg.file.as_ref(), start, seg.size)
                    .map_err(|e| storage("read producer state", e))?
            }
        };
        for e in events.iter().filter(|e| e.offset() >= from) {
            e.apply(&mut states);
        }
    }
    Ok(states)
}

/// Keeps the two newest producer snapshots.
fn remove_old_snapshots(disk: &dyn sluice_core::env::Disk, dir: &Path, newest: i64) {
    let Ok(names) = disk.list(dir) else { return };
    let mut older: Vec<&String> = names
        .iter()
        .filter(|n| n.ends_with(".snapshot") && **n < segment::file_name(newest, SNAPSHOT))
        .collect();
    older.sort();
    older.pop();
    for n in older {
        let _ = disk.remove_file(&dir.join(n));
    }
}

async fn flusher(log: Weak<PartitionLog>, flush: Arc<Notify>) {
    loop {
        flush.notified().await;
        let Some(log) = log.upgrade() else { return };
        if let Err(why) = log.sync_round().await {
            warn!(dir = %log.dir.display(), %why, "log failed");
            return;
        }
        if log.lock().failed.is_some() {
            return;
        }
    }
}

const READ_AHEAD: usize = 64 << 10;

/// The epoch the leader epoch cache gives `offset` (-1 when it names none).
fn epoch_at(epochs: &[(i32, i64)], offset: i64) -> i32 {
    epochs
        .iter()
        .rev()
        .find(|(_, start)| *start <= offset)
        .map_or(-1, |(e, _)| *e)
}

/// Reads whole batches in `[from.position, to)` starting at the batch that holds
/// `offset`. Every batch is checked before it is served: its CRC, that its base
/// offset (which the CRC does not cover) continues from the index entry `from`, and
/// that its partition leader epoch (not covered either) is the one the leader epoch
/// cache gives its offset. A disk that returns corrupted bytes gets a storage error,
/// never a client or a follower (which would store a wrong epoch and truncate by it).
fn read_batches(
    file: &dyn DiskFile,
    from: OffsetEntry,
    to: u64,
    offset: i64,
    max_bytes: usize,
    epochs: &[(i32, i64)],
) -> Result<Bytes, LogError> {
    let corrupt =
        |pos: u64, what: String| storage("read", format!("corrupt batch at byte {pos}: {what}"));
    let (mut pos, mut expect) = (from.position, from.offset);
    // Skip batches before `offset` (at most one index interval of them).
    let first_size = loop {
        if pos + batch::HEADER_LEN as u64 > to {
            return Ok(Bytes::new());
        }
        let mut head = [0u8; batch::HEADER_LEN];
        file.read_exact_at(pos, &mut head)
            .map_err(|e| storage("read", e))?;
        let h = batch::parse_fixed(&head)?;
        if h.base_offset != expect {
            return Err(corrupt(
                pos,
                format!("base offset {} where {expect} belongs", h.base_offset),
            ));
        }
        if h.last_offset() >= offset {
            break h.size as u64;
        }
        pos += h.size as u64;
        expect = h.next_offset();
    };
    let want = (max_bytes as u64).max(first_size).min(to - pos);
    let mut buf = vec![0u8; want as usize];
    file.read_exact_at(pos, &mut buf)
        .map_err(|e| storage("read", e))?;
    // Keep the whole, valid, contiguous batches.
    let mut keep = 0;
    let mut batches = batch::Batches::new(&buf, true);
    for (at, h) in batches.by_ref() {
        let epoch = epoch_at(epochs, h.base_offset);
        let epoch_ok =
            epochs.is_empty() || h.leader_epoch == epoch || planted(Bug::UncheckedBatchEpoch);
        if h.base_offset != expect || !epoch_ok {
            if at == 0 {
                return Err(corrupt(
                    pos,
                    format!(
                        "base offset {} (leader epoch {}) where {expect} (epoch {epoch}) belongs",
                        h.base_offset, h.leader_epoch
                    ),
                ));
            }
            break;
        }
        expect = h.next_offset();
        keep = at + h.size;
    }
    if keep == 0 {
        // The whole first batch was read: if it is not servable the bytes are bad
        // (or were read badly), never an end of data.
        let why = batches
            .stopped
            .map_or_else(|| "unreadable batch".to_string(), |e| e.to_string());
        return Err(corrupt(pos, why));
    }
    buf.truncate(keep);
    if planted(Bug::ReadDropsBatch) {
        let first = batch::peek_size(&buf).and_then(Result::ok).unwrap_or(0);
        let second = buf
            .get(first..)
            .and_then(batch::peek_size)
            .and_then(Result::ok)
            .unwrap_or(0);
        if first > 0 && second > 0 && first + second < buf.len() {
            buf.drain(first..first + second);
        }
    }
    if planted(Bug::ServeBatchTwice) && keep > 0 {
        let first = batch::peek_size(&buf).and_then(Result::ok).unwrap_or(0);
        buf.extend_from_within(..first);
    }
    Ok(Bytes::from(buf))
}

/// The whole batch at byte `pos` of `file` (which must end by `end`), CRC-checked:
/// its header and its bytes.
pub(crate) fn read_batch_at(
    file: &dyn DiskFile,
    pos: u64,
    end: u64,
) -> Result<(BatchHeader, Vec<u8>), LogError> {
    let mut head = [0u8; batch::HEADER_LEN];
    file.read_exact_at(pos, &mut head)
        .map_err(|e| storage("read", e))?;
    let size = batch::parse_fixed(&head)?.size;
    if pos + size as u64 > end {
        return Err(storage(
            "read",
            format!("the batch at byte {pos} runs past the segment end {end}"),
        ));
    }
    let mut bytes = vec![0u8; size];
    file.read_exact_at(pos, &mut bytes)
        .map_err(|e| storage("read", e))?;
    Ok((batch::validate(&bytes)?, bytes))
}

/// The byte position of the batch boundary at or below `offset`, walking headers from
/// the index entry `from` up to `end`.
fn batch_boundary(
    file: &dyn DiskFile,
    from: OffsetEntry,
    end: u64,
    offset: i64,
) -> Result<u64, LogError> {
    let (mut pos, mut expect) = (from.position, from.offset);
    while pos + batch::HEADER_LEN as u64 <= end {
        // Read whole and CRC-checked: a bit flipped in the offset delta on this read
        // would otherwise move the cut to an earlier batch.
        let (h, _) = read_batch_at(file, pos, end)?;
        // The base offset is outside the CRC: a bit flipped in it on this read would
        // cut the log short of what it holds (committed records included). Refuse;
        // the caller tries again.
        if h.base_offset != expect && !planted(Bug::UncheckedBatchEpoch) {
            return Err(storage(
                "find a batch boundary",
                format!(
                    "base offset {} at byte {pos} where {expect} belongs",
                    h.base_offset
                ),
            ));
        }
        if h.next_offset() > offset {
            return Ok(pos);
        }
        pos += h.size as u64;
        expect = h.next_offset();
    }
    Ok(pos.min(end))
}

/// Scans batches in `[from, to)` and returns the first one matching `found`.
fn scan_for(
    file: &dyn DiskFile,
    mut pos: u64,
    to: u64,
    found: impl Fn(&BatchHeader) -> bool,
) -> Result<Option<Bytes>, LogError> {
    while pos < to {
        let buf = segment::read_chunk(file, pos, to, READ_AHEAD).map_err(|e| storage("read", e))?;
        let mut batches = batch::Batches::new(&buf, true);
        for (at, h) in batches.by_ref() {
            if found(&h) {
                return Ok(Some(Bytes::copy_from_slice(&buf[at..at + h.size])));
            }
        }
        if batches.position() == 0 {
            break;
        }
        pos += batches.position() as u64;
    }
    Ok(None)
}
