//! One segment: a `.log` file of v2 batches starting at `base_offset`, with sparse
//! in-memory offset and time indexes that are persisted as `.index` / `.timeindex` once
//! the sealed segment is durable, and rebuilt by a CRC-checking scan when missing or
//! invalid.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_core::env::{Disk, DiskFile};
use sluice_core::producer::{ProducedBatch, ProducerStates};
use sluice_core::sim::{planted, Bug};
use tracing::warn;

use crate::batch::{self, BatchError, BatchHeader};

/// Name of a segment file: base offset, zero-padded to 20 digits as in Kafka.
pub fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parses `00000000000000000042.log` into 42.
pub fn parse_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// An index entry: a batch that starts at `offset` at byte `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub offset: i64,
    pub position: u64,
}

/// A time index entry: the running maximum timestamp reached `timestamp` in the batch
/// that starts at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub offset: i64,
}

pub struct Segment {
    pub base_offset: i64,
    pub file: Arc<dyn DiskFile>,
    /// Bytes of whole batches in the file.
    pub size: u64,
    /// Offset after the last batch.
    pub next_offset: i64,
    pub index: Vec<OffsetEntry>,
    pub time_index: Vec<TimeEntry>,
    pub max_timestamp: i64,
    /// Base offset of the batch holding `max_timestamp`.
    pub max_timestamp_batch: i64,
    bytes_since_index: u64,
    /// Monotonic milliseconds when the segment was opened for appends (segment.ms).
    pub created_ms: u64,
}

impl Segment {
    pub fn new(base_offset: i64, file: Arc<dyn DiskFile>, created_ms: u64) -> Self {
        Segment {
            base_offset,
            file,
            size: 0,
            next_offset: base_offset,
            index: Vec::new(),
            time_index: Vec::new(),
            max_timestamp: -1,
            max_timestamp_batch: -1,
            bytes_since_index: 0,
            created_ms,
        }
    }

    /// Records a batch that was written at `position`.
    pub fn track(&mut self, position: u64, header: &BatchHeader, index_interval_bytes: u64) {
        if self.index.is_empty() || self.bytes_since_index >= index_interval_bytes {
            self.index.push(OffsetEntry {
                offset: header.base_offset,
                position,
            });
            self.bytes_since_index = 0;
            if header.max_timestamp > self.time_index.last().map_or(-1, |t| t.timestamp) {
                self.time_index.push(TimeEntry {
                    timestamp: header.max_timestamp,
                    offset: header.base_offset,
                });
            }
        }
        self.bytes_since_index += header.size as u64;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.max_timestamp_batch = header.base_offset;
        }
        self.size = position + header.size as u64;
        self.next_offset = header.next_offset();
    }

    /// The last indexed batch at or before `offset` (the segment start if none).
    pub fn entry_for(&self, offset: i64) -> OffsetEntry {
        let i = self.index.partition_point(|e| e.offset <= offset);
        if planted(Bug::OffsetIndexOffByOne) && i < self.index.len() {
            return self.index[i];
        }
        match i {
            0 => OffsetEntry {
                offset: self.base_offset,
                position: 0,
            },
            _ => self.index[i - 1],
        }
    }

    /// Byte position of the last indexed batch at or before `offset`.
    pub fn position_for(&self, offset: i64) -> u64 {
        self.entry_for(offset).position
    }

    /// Byte position from which to scan for the first batch with a timestamp >= `ts`.
    pub fn position_for_timestamp(&self, ts: i64) -> u64 {
        let i = self.time_index.partition_point(|e| e.timestamp < ts);
        if i == 0 {
            0
        } else {
            self.position_for(self.time_index[i - 1].offset)
        }
    }

    /// Closes the segment for appends: the time index gets an exact final entry, so a
    /// reloaded segment knows its true maximum timestamp.
    pub fn seal(&mut self) {
        if self.max_timestamp > self.time_index.last().map_or(-1, |t| t.timestamp) {
            self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                offset: self.max_timestamp_batch,
            });
        }
    }

    /// Encodes the indexes for the sealed-segment files, the time index with the
    /// final entry that [`Segment::seal`] adds.
    pub fn encode_indexes(&self) -> (Vec<u8>, Vec<u8>) {
        let mut idx = Vec::with_capacity(self.index.len() * 8);
        for e in &self.index {
            idx.extend_from_slice(&((e.offset - self.base_offset) as u32).to_be_bytes());
            idx.extend_from_slice(&(e.position as u32).to_be_bytes());
        }
        let mut tidx = Vec::with_capacity(self.time_index.len() * 12 + 12);
        let last = TimeEntry {
            timestamp: self.max_timestamp,
            offset: self.max_timestamp_batch,
        };
        let needs_last = self.max_timestamp > self.time_index.last().map_or(-1, |t| t.timestamp);
        for e in self.time_index.iter().chain(needs_last.then_some(&last)) {
            tidx.extend_from_slice(&e.timestamp.to_be_bytes());
            tidx.extend_from_slice(&((e.offset - self.base_offset) as u32).to_be_bytes());
        }
        // A CRC-32C trailer: a damaged index is rebuilt, never trusted.
        for file in [&mut idx, &mut tidx] {
            let crc = crc32c::crc32c(file);
            file.extend_from_slice(&crc.to_be_bytes());
        }
        (idx, tidx)
    }
}

/// What a scan of a segment file found.
pub struct Scan {
    pub segment: Segment,
    /// Set when the scan stopped before the end of the file: where and why.
    pub stopped: Option<(u64, BatchError)>,
    /// What the batches found tell the producer table, in order.
    pub produced: Vec<ProducerEvent>,
    /// Where each leader epoch found starts (the first batch of each newer epoch).
    pub epochs: Vec<(i32, i64)>,
}

/// Adds to a leader epoch cache (epoch, start offset) a batch's epoch, if it is newer
/// than the cache's latest; true if it was.
pub fn note_epoch(epochs: &mut Vec<(i32, i64)>, epoch: i32, offset: i64) -> bool {
    let newer = is_newer_epoch(epochs, epoch);
    if newer {
        epochs.push((epoch, offset));
    }
    newer
}

fn is_newer_epoch(epochs: &[(i32, i64)], epoch: i32) -> bool {
    epoch >= 0 && epochs.last().is_none_or(|(e, _)| epoch > *e)
}

/// The partition leader epoch field of the batch at byte `pos`, read on its own.
fn read_leader_epoch(file: &dyn DiskFile, pos: u64) -> io::Result<i32> {
    let mut field = [0u8; 4];
    file.read_exact_at(pos + batch::LEADER_EPOCH_AT as u64, &mut field)?;
    Ok(i32::from_be_bytes(field))
}

/// What a stored batch tells the partition's producer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerEvent {
    /// An idempotent producer's batch.
    Batch(ProducedBatch),
    /// A transactional batch: its producer's transaction is open here.
    Txn { producer_id: i64, offset: i64 },
    /// A transaction marker.
    Marker {
        producer_id: i64,
        epoch: i16,
        offset: i64,
        commit: bool,
    },
}

impl ProducerEvent {
    pub fn offset(&self) -> i64 {
        match self {
            ProducerEvent::Batch(b) => b.first_offset,
            ProducerEvent::Txn { offset, .. } | ProducerEvent::Marker { offset, .. } => *offset,
        }
    }

    pub fn apply(&self, states: &mut ProducerStates) {
        match *self {
            ProducerEvent::Batch(b) => states.record(b),
            ProducerEvent::Txn {
                producer_id,
                offset,
            } => states.transactional(producer_id, offset),
            ProducerEvent::Marker {
                producer_id,
                offset,
                commit,
                ..
            } => states.marker(producer_id, offset, commit),
        }
    }
}

/// The producer events of the batch `bytes` (which starts with header `h`).
pub fn producer_events(h: &BatchHeader, bytes: &[u8], out: &mut Vec<ProducerEvent>) {
    if h.producer_id < 0 {
        return;
    }
    if h.is_control() {
        // An unreadable marker cannot have been ours; treat it as an abort.
        out.push(ProducerEvent::Marker {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            offset: h.base_offset,
            commit: batch::marker_commits(bytes).unwrap_or(false),
        });
        return;
    }
    if h.base_sequence >= 0 {
        out.push(ProducerEvent::Batch(ProducedBatch {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_seq: h.base_sequence,
            last_seq: h.base_sequence.wrapping_add(h.last_offset_delta),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        }));
    }
    if h.is_transactional() {
        out.push(ProducerEvent::Txn {
            producer_id: h.producer_id,
            offset: h.base_offset,
        });
    }
}

/// The producer events of a sealed segment from byte `from` on (CRCs were checked
/// when it was written and synced).
pub fn read_producer_events(
    file: &dyn DiskFile,
    from: u64,
    end: u64,
) -> io::Result<Vec<ProducerEvent>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < end {
        let buf = read_chunk(file, pos, end, SCAN_CHUNK)?;
        let mut advanced = 0;
        for (at, h) in batch::Batches::new(&buf, false) {
            producer_events(&h, &buf[at..at + h.size], &mut out);
            advanced = at + h.size;
        }
        if advanced == 0 {
            break;
        }
        pos += advanced as u64;
    }
    Ok(out)
}

const SCAN_CHUNK: usize = 4 << 20;
/// Times a batch that fails its CRC during recovery is read again before the log is
/// truncated there.
const RECOVERY_REREADS: u32 = 8;

/// Reads up to `chunk` bytes of `[pos, end)`, or more when the batch at `pos` is
/// larger and fits, so a whole batch comes back whenever one is there.
pub fn read_chunk(file: &dyn DiskFile, pos: u64, end: u64, chunk: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; (end - pos).min(chunk as u64) as usize];
    file.read_exact_at(pos, &mut buf)?;
    if let Some(Ok(size)) = batch::peek_size(&buf) {
        if size > buf.len() && pos + size as u64 <= end {
            buf.resize(size, 0);
            file.read_exact_at(pos, &mut buf)?;
        }
    }
    Ok(buf)
}

/// Reads a segment front to back, validating every batch's CRC and that offsets are
/// dense, and rebuilds its indexes. Stops at the first torn or corrupt batch.
pub fn scan(
    file: Arc<dyn DiskFile>,
    base_offset: i64,
    index_interval_bytes: u64,
    created_ms: u64,
) -> io::Result<Scan> {
    let len = file.size()?;
    let mut segment = Segment::new(base_offset, file.clone(), created_ms);
    let mut pos = 0u64;
    let mut rereads = 0;
    let mut found = Vec::new();
    let mut epochs: Vec<(i32, i64)> = Vec::new();
    while pos < len {
        let buf = read_chunk(file.as_ref(), pos, len, SCAN_CHUNK)?;
        let mut batches = batch::Batches::new(&buf, !planted(Bug::SkipRecoveryCrc));
        let mut progressed = false;
        let mut gap = None;
        for (at, header) in batches.by_ref() {
            if header.base_offset != segment.next_offset {
                gap = Some(BatchError::OffsetGap {
                    expected: segment.next_offset,
                    found: header.base_offset,
                });
                break;
            }
            // The leader epoch lies outside the CRC, and a newer one goes into the
            // epoch cache for good: believe it only when a second read agrees.
            if is_newer_epoch(&epochs, header.leader_epoch) && !planted(Bug::UncheckedBatchEpoch) {
                let again = read_leader_epoch(file.as_ref(), pos + at as u64)?;
                if again != header.leader_epoch {
                    warn!(
                        offset = header.base_offset,
                        first = header.leader_epoch,
                        second = again,
                        "a batch's leader epoch read differently twice; reading it again"
                    );
                    gap = Some(BatchError::UnsteadyEpoch {
                        offset: header.base_offset,
                        first: header.leader_epoch,
                        second: again,
                    });
                    break;
                }
            }
            segment.track(pos + at as u64, &header, index_interval_bytes);
            producer_events(&header, &buf[at..at + header.size], &mut found);
            note_epoch(&mut epochs, header.leader_epoch, header.base_offset);
            progressed = true;
        }
        pos = segment.size;
        match gap.or(batches.stopped.take()) {
            None => {}
            // The chunk ended inside a batch that may continue in the file: read on
            // from it. Without progress the file itself ends inside the batch.
            Some(BatchError::Truncated { .. }) if progressed => {}
            // Truncating destroys data for good: a bad read must not be mistaken for a
            // bad disk. Read the batch again before believing it is torn or corrupt.
            Some(_) if rereads < RECOVERY_REREADS => rereads += 1,
            Some(e) => {
                return Ok(Scan {
                    segment,
                    stopped: Some((pos, e)),
                    produced: found,
                    epochs,
                })
            }
        }
        if progressed {
            rereads = 0;
        }
    }
    Ok(Scan {
        segment,
        stopped: None,
        produced: found,
        epochs,
    })
}

/// Loads the persisted indexes of a sealed segment; `None` if they are missing or do
/// not fit the segment (then the caller rebuilds them by scanning).
pub fn load_indexes(
    disk: &dyn Disk,
    dir: &Path,
    file: Arc<dyn DiskFile>,
    base_offset: i64,
    next_offset: i64,
    created_ms: u64,
) -> Option<Segment> {
    let read_all = |path: PathBuf| -> Option<Vec<u8>> {
        let f = disk.open(&path, false).ok()?;
        let mut buf = vec![0u8; f.size().ok()? as usize];
        f.read_exact_at(0, &mut buf).ok()?;
        Some(buf)
    };
    let checked = |mut bytes: Vec<u8>| -> Option<Vec<u8>> {
        let body = bytes.len().checked_sub(4)?;
        let stored = u32::from_be_bytes(bytes[body..].try_into().ok()?);
        bytes.truncate(body);
        (crc32c::crc32c(&bytes) == stored).then_some(bytes)
    };
    let idx = checked(read_all(dir.join(file_name(base_offset, "index")))?)?;
    let tidx = checked(read_all(dir.join(file_name(base_offset, "timeindex")))?)?;
    let size = file.size().ok()?;
    if idx.len() % 8 != 0 || tidx.len() % 12 != 0 || idx.is_empty() {
        return None;
    }
    let mut segment = Segment::new(base_offset, file, created_ms);
    for e in idx.chunks_exact(8) {
        let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let position = u64::from(u32::from_be_bytes([e[4], e[5], e[6], e[7]]));
        let offset = base_offset + i64::from(rel);
        let prev = segment.index.last().copied();
        if position >= size
            || offset >= next_offset
            || prev.is_some_and(|p| p.offset >= offset || p.position >= position)
        {
            return None;
        }
        segment.index.push(OffsetEntry { offset, position });
    }
    for e in tidx.chunks_exact(12) {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        let timestamp = i64::from_be_bytes(ts);
        let offset = base_offset + i64::from(u32::from_be_bytes([e[8], e[9], e[10], e[11]]));
        if offset >= next_offset {
            return None;
        }
        segment.time_index.push(TimeEntry { timestamp, offset });
    }
    // The index may have outlived a torn tail (it is written when the segment is
    // sealed, the log synced just after): check the batches after the last entry.
    let tail = segment.index.last().copied()?;
    let mut buf = vec![0u8; (size - tail.position) as usize];
    segment.file.read_exact_at(tail.position, &mut buf).ok()?;
    let mut expect = tail.offset;
    let mut batches = batch::Batches::new(&buf, true);
    for (_, h) in batches.by_ref() {
        if h.base_offset != expect {
            return None;
        }
        expect = h.next_offset();
    }
    if batches.stopped.is_some() || expect != next_offset {
        return None;
    }
    let last = segment.time_index.last().copied();
    segment.max_timestamp = last.map_or(-1, |t| t.timestamp);
    segment.max_timestamp_batch = last.map_or(-1, |t| t.offset);
    segment.size = size;
    segment.next_offset = next_offset;
    Some(segment)
}
