//! Kafka v2 record batch headers: just enough to validate a batch, assign its offsets
//! and index it, without decompressing or re-encoding the records.
//!
//! Layout (Kafka protocol guide, "Record Batch"): baseOffset i64, batchLength i32,
//! partitionLeaderEpoch i32, magic i8, crc u32 (CRC-32C of everything after it),
//! attributes i16, lastOffsetDelta i32, baseTimestamp i64, maxTimestamp i64,
//! producerId i64, producerEpoch i16, baseSequence i32, recordCount i32, records.

use thiserror::Error;

/// Bytes before the records: the fixed v2 header.
pub const HEADER_LEN: usize = 61;
/// Offset of the batchLength field's end: batchLength counts the bytes after it.
pub const LOG_OVERHEAD: usize = 12;
/// Where a batch's partition leader epoch sits (outside the CRC).
pub const LEADER_EPOCH_AT: usize = 12;
/// Where the CRC-covered part of a batch begins: the base offset, length, leader
/// epoch and magic before it are not covered.
pub const CRC_START: usize = 21;

/// Why a batch was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    #[error("record batch length {0} is invalid")]
    BadLength(i32),
    #[error("unsupported record batch magic {0}; only v2 is accepted")]
    BadMagic(i8),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record batch at offset {found} where offset {expected} was expected")]
    OffsetGap { expected: i64, found: i64 },
    #[error("record batch record count {count} does not match last offset delta {delta}")]
    BadCount { count: i32, delta: i32 },
    #[error("control batches are written by the broker, not produced")]
    ControlProduced,
    #[error("the leader epoch of the batch at offset {offset} read as {first}, then as {second}")]
    UnsteadyEpoch {
        offset: i64,
        first: i32,
        second: i32,
    },
}

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size in bytes, header included.
    pub size: usize,
    /// The partition leader epoch the leader stamped (not covered by the CRC).
    pub leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
    /// Offset just past this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

/// Size of the batch that starts at `buf[0]`, read from its length field, if at least
/// the length field is present. Does not validate.
pub fn peek_size(buf: &[u8]) -> Option<Result<usize, BatchError>> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(buf, 8);
    if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Some(Err(BatchError::BadLength(len)));
    }
    Some(Ok(LOG_OVERHEAD + len as usize))
}

/// Parses the fixed header at the start of `buf` (which need not hold the records).
pub fn parse_fixed(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let size = match peek_size(buf) {
        None => {
            return Err(BatchError::Truncated {
                have: buf.len(),
                need: LOG_OVERHEAD,
            })
        }
        Some(size) => size?,
    };
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            have: buf.len(),
            need: HEADER_LEN,
        });
    }
    let magic = buf[16] as i8;
    if magic != 2 {
        return Err(BatchError::BadMagic(magic));
    }
    let header = BatchHeader {
        base_offset: be_i64(buf, 0),
        size,
        leader_epoch: be_i32(buf, 12),
        attributes: be_i16(buf, 21),
        last_offset_delta: be_i32(buf, 23),
        base_timestamp: be_i64(buf, 27),
        max_timestamp: be_i64(buf, 35),
        producer_id: be_i64(buf, 43),
        producer_epoch: be_i16(buf, 51),
        base_sequence: be_i32(buf, 53),
        record_count: be_i32(buf, 57),
    };
    if header.last_offset_delta < 0 {
        return Err(BatchError::BadCount {
            count: header.record_count,
            delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Parses the header of the batch at the start of `buf`, which must hold the whole
/// batch, without checking the CRC.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_fixed(buf)?;
    if buf.len() < header.size {
        return Err(BatchError::Truncated {
            have: buf.len(),
            need: header.size,
        });
    }
    Ok(header)
}

/// Parses the header and checks the CRC-32C over the batch body.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(buf)?;
    let stored = u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]);
    let computed = crc32c::crc32c(&buf[CRC_START..header.size]);
    if stored != computed {
        return Err(BatchError::BadCrc { stored, computed });
    }
    Ok(header)
}

/// Checks what a producer sent: CRC, and a record count that matches the offset delta
/// (a client-built batch has dense relative offsets).
pub fn validate_produced(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = validate(buf)?;
    if header.record_count <= 0 || header.record_count - 1 != header.last_offset_delta {
        return Err(BatchError::BadCount {
            count: header.record_count,
            delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Overwrites the base offset field (not covered by the CRC).
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) {
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrites the partition leader epoch field (not covered by the CRC).
pub fn set_leader_epoch(buf: &mut [u8], epoch: i32) {
    buf[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps a whole, valid batch with the broker's time (`message.timestamp.type=
/// LogAppendTime`): the timestamp type attribute and the max timestamp, which
/// readers take for every record of such a batch; then recomputes its CRC.
pub fn stamp_log_append_time(buf: &mut [u8], now_ms: i64) {
    if buf.len() >= HEADER_LEN {
        let attributes = be_i16(buf, 21) | 0x08;
        buf[21..23].copy_from_slice(&attributes.to_be_bytes());
        buf[35..43].copy_from_slice(&now_ms.to_be_bytes());
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Marks a batch as non-idempotent (base sequence -1) and recomputes its CRC.
pub fn clear_base_sequence(buf: &mut [u8]) {
    if buf.len() >= HEADER_LEN {
        buf[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Iterates over the complete batches at the front of `buf`, yielding
/// `(position, header)`; stops at the first incomplete or invalid batch and reports
/// through [`Batches::stopped`] why.
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    check_crc: bool,
    pub stopped: Option<BatchError>,
}

impl<'a> Batches<'a> {
    pub fn new(buf: &'a [u8], check_crc: bool) -> Self {
        Batches {
            buf,
            pos: 0,
            check_crc,
            stopped: None,
        }
    }
    /// Bytes consumed by the batches yielded so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for Batches<'_> {
    type Item = (usize, BatchHeader);
    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let parsed = if self.check_crc {
            validate(rest)
        } else {
            parse_header(rest)
        };
        match parsed {
            Ok(h) => {
                let at = self.pos;
                self.pos += h.size;
                Some((at, h))
            }
            Err(e) => {
                self.stopped = Some(e);
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a syntactically valid v2 batch with `count` opaque records of `body` bytes.
    pub fn make_batch(base_offset: i64, count: i32, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + body.len());
        b.extend_from_slice(&base_offset.to_be_bytes());
        b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&timestamp.to_be_bytes());
        b.extend_from_slice(&timestamp.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(body);
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn valid_batch_round_trips_and_flipped_bit_is_caught() {
        let mut b = make_batch(0, 3, 1000, b"hello");
        let h = validate_produced(&b).unwrap();
        assert_eq!((h.record_count, h.last_offset(), h.size), (3, 2, b.len()));
        set_base_offset(&mut b, 42);
        assert_eq!(
            validate(&b).unwrap().base_offset,
            42,
            "base offset is outside the CRC"
        );
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(validate(&b), Err(BatchError::BadCrc { .. })));
    }

    #[test]
    fn truncated_and_garbage_are_errors_not_panics() {
        let b = make_batch(0, 1, 0, b"x");
        for cut in 0..b.len() {
            assert!(validate(&b[..cut]).is_err());
        }
        let mut bad = b.clone();
        bad[16] = 1;
        assert_eq!(validate(&bad), Err(BatchError::BadMagic(1)));
        let mut neg = b;
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(validate(&neg), Err(BatchError::BadLength(-5)));
    }
}

/// A transaction marker (a control batch of one record, Kafka's EndTransactionMarker):
/// key (version 0, type 0 abort / 1 commit), value (version 0, coordinator epoch).
pub fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let mut record = Vec::with_capacity(24);
    record.push(0); // attributes
    put_varint(&mut record, 0); // timestamp delta
    put_varint(&mut record, 0); // offset delta
    put_varint(&mut record, 4);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&i16::from(commit).to_be_bytes());
    put_varint(&mut record, 6);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&coordinator_epoch.to_be_bytes());
    put_varint(&mut record, 0); // headers
    let mut b = Vec::with_capacity(HEADER_LEN + record.len() + 2);
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // batch length, below
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    b.extend_from_slice(&(0x20i16 | 0x10).to_be_bytes()); // control, transactional
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // record count
    put_varint(&mut b, record.len() as i64);
    b.extend_from_slice(&record);
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// For a control batch (`buf` starts at it), whether its marker commits (`Some(true)`)
/// or aborts; `None` if it is not a readable marker.
pub fn marker_commits(buf: &[u8]) -> Option<bool> {
    let mut pos = HEADER_LEN;
    let _len = get_varint(buf, &mut pos)?;
    pos += 1; // attributes
    get_varint(buf, &mut pos)?; // timestamp delta
    get_varint(buf, &mut pos)?; // offset delta
    let key_len = usize::try_from(get_varint(buf, &mut pos)?).ok()?;
    marker_key_commits(buf.get(pos..pos + key_len)?)
}

/// For a marker record's key (version i16, type i16), whether it commits.
pub fn marker_key_commits(key: &[u8]) -> Option<bool> {
    if key.len() < 4 {
        return None;
    }
    match be_i16(key, 2) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod marker_tests {
    use super::*;

    #[test]
    fn markers_are_valid_control_batches_that_say_what_they_decide() {
        for commit in [true, false] {
            let m = encode_marker(42, 3, commit, 7, 1_700_000_000_000);
            let h = validate_produced(&m).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.record_count),
                (42, 3, 1)
            );
            assert_eq!(h.size, m.len());
            assert_eq!(marker_commits(&m), Some(commit));
        }
        assert_eq!(marker_commits(&[0; 10]), None);
    }
}

/// The producer id and epoch of a transactional batch (`buf` starts at it), read
/// without validating; `None` for a non-transactional or too short one.
pub fn peek_transactional(buf: &[u8]) -> Option<(i64, i16)> {
    if buf.len() < HEADER_LEN || be_i16(buf, 21) & 0x10 == 0 {
        return None;
    }
    Some((be_i64(buf, 43), be_i16(buf, 51)))
}
