//! Rewriting one stored batch for log compaction: its records are read (decompressed
//! as needed) and the ones the cleaner keeps are written back, byte for byte, into a
//! batch with the same base offset, last offset delta, leader epoch, producer id,
//! epoch and base sequence, compressed with the same codec. A batch keeps its offset
//! range even when it loses records, so offsets stay dense at the batch level and
//! recovery, reads and replication check them as before; a batch that loses every
//! record stays as an empty batch (as Kafka keeps one for its producer's state).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self, Compressor, Decompressor};

use crate::batch::{self, BatchError, BatchHeader, HEADER_LEN};

/// One record of a batch, as compaction needs it.
#[derive(Debug, Clone)]
pub struct RecordView {
    pub offset: i64,
    /// The record's timestamp (the batch's for LogAppendTime batches).
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// A null value: a tombstone.
    pub tombstone: bool,
    /// The record's bytes (its length prefix included) in the decompressed records.
    raw: std::ops::Range<usize>,
}

/// Why a stored batch could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("records of the batch at offset {offset}: {why}")]
    Records { offset: i64, why: String },
}

/// The codecs of a v2 batch's attributes.
const NONE: i16 = 0;
const GZIP: i16 = 1;
const SNAPPY: i16 = 2;
const LZ4: i16 = 3;
const ZSTD: i16 = 4;

/// The decompressed records section of a whole, valid batch, and its records.
pub fn records(batch: &[u8]) -> Result<(BatchHeader, Bytes, Vec<RecordView>), RewriteError> {
    let h = batch::validate(batch)?;
    let bad = |why: String| RewriteError::Records {
        offset: h.base_offset,
        why,
    };
    let mut section = Bytes::copy_from_slice(&batch[HEADER_LEN..h.size]);
    let plain: Bytes = match h.compression() {
        NONE => Ok(section),
        GZIP => compression::Gzip::decompress(&mut section, |b| Ok(b.clone())),
        SNAPPY => compression::Snappy::decompress(&mut section, |b| Ok(b.clone())),
        LZ4 => compression::Lz4::decompress(&mut section, |b| Ok(b.clone())),
        ZSTD => compression::Zstd::decompress(&mut section, |b| Ok(b.clone())),
        other => return Err(bad(format!("unknown codec {other}"))),
    }
    .map_err(|e| bad(e.to_string()))?;
    // The count is the sender's word: a record takes at least 7 bytes, so no more
    // than that many are reserved for.
    let mut views = Vec::with_capacity((h.record_count.max(0) as usize).min(plain.len() / 7));
    let mut at = 0;
    for _ in 0..h.record_count {
        let mut view = parse_record(&plain, &mut at, &h).map_err(|w| bad(w.into()))?;
        if h.attributes & 0x08 != 0 {
            view.timestamp = h.max_timestamp;
        }
        views.push(view);
    }
    if at != plain.len() {
        return Err(bad(format!(
            "{} bytes after its {} records",
            plain.len() - at,
            h.record_count
        )));
    }
    Ok((h, plain, views))
}

/// The batch with only the records `keep` picks (in order); `None` when it keeps them
/// all, so the stored bytes can be copied as they are.
pub fn rewrite(
    batch: &[u8],
    mut keep: impl FnMut(&RecordView) -> bool,
) -> Result<Option<Vec<u8>>, RewriteError> {
    let (h, plain, views) = records(batch)?;
    let kept: Vec<&RecordView> = views.iter().filter(|v| keep(v)).collect();
    if kept.len() == views.len() {
        return Ok(None);
    }
    rebuild(batch, &h, &plain, &kept, h.compression()).map(Some)
}

/// The batch with its records compressed with `codec` (a v2 codec attribute, 0-4),
/// as a topic's `compression.type` asks; `None` when it already is, or is a control
/// batch (those are never compressed). Offsets, timestamps, producer fields and the
/// records themselves are kept.
pub fn recompress(batch: &[u8], codec: i16) -> Result<Option<Vec<u8>>, RewriteError> {
    let h = batch::validate(batch)?;
    if h.compression() == codec || h.is_control() {
        return Ok(None);
    }
    let (h, plain, views) = records(batch)?;
    let all: Vec<&RecordView> = views.iter().collect();
    rebuild(batch, &h, &plain, &all, codec).map(Some)
}

/// `batch`'s header around the `kept` records of its decompressed section `plain`,
/// compressed with `codec`.
fn rebuild(
    batch: &[u8],
    h: &BatchHeader,
    plain: &[u8],
    kept: &[&RecordView],
    codec: i16,
) -> Result<Vec<u8>, RewriteError> {
    let bad = |why: String| RewriteError::Records {
        offset: h.base_offset,
        why,
    };
    let mut attributes = (h.attributes & !0x07) | codec;
    let mut section = BytesMut::new();
    if kept.is_empty() {
        // No records: nothing to compress (a reader would try to inflate nothing).
        attributes &= !0x07;
    } else {
        let write = |out: &mut BytesMut| {
            for v in kept {
                out.put_slice(&plain[v.raw.clone()]);
            }
            Ok(())
        };
        match codec {
            NONE => write(&mut section),
            GZIP => compression::Gzip::compress(&mut section, write),
            SNAPPY => compression::Snappy::compress(&mut section, write),
            LZ4 => compression::Lz4::compress(&mut section, write),
            ZSTD => compression::Zstd::compress(&mut section, write),
            other => return Err(bad(format!("unknown codec {other}"))),
        }
        .map_err(|e| bad(e.to_string()))?;
    }
    let mut out = Vec::with_capacity(HEADER_LEN + section.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&section);
    let length = i32::try_from(out.len() - batch::LOG_OVERHEAD)
        .map_err(|_| bad("rewritten batch too large".into()))?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// A batch without records over `[base, next)`: what the cleaner leaves of a run of
/// neighbouring batches (one leader epoch, no producer) that lost every record, so the
/// offsets stay dense at the batch level for 61 bytes per run. No producer: the runs
/// hold no batch a producer's state remembers (those stay whole).
pub fn empty_batch(
    base: i64,
    next: i64,
    leader_epoch: i32,
    timestamp_type_attribute: i16,
    base_timestamp: i64,
    max_timestamp: i64,
) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[0..8].copy_from_slice(&base.to_be_bytes());
    b[8..12].copy_from_slice(&((HEADER_LEN - batch::LOG_OVERHEAD) as i32).to_be_bytes());
    b[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&(timestamp_type_attribute & 0x08).to_be_bytes());
    let delta = i32::try_from(next - base - 1).unwrap_or(i32::MAX);
    b[23..27].copy_from_slice(&delta.to_be_bytes());
    b[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
    b[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Reads one record at `*at` (Kafka's v2 record: length varint, attributes i8,
/// timestampDelta varlong, offsetDelta varint, key, value, headers), moving `*at`
/// past it.
fn parse_record(buf: &[u8], at: &mut usize, h: &BatchHeader) -> Result<RecordView, &'static str> {
    let start = *at;
    let length = varint(buf, at)?;
    let body_start = *at;
    let end = usize::try_from(length)
        .ok()
        .and_then(|l| body_start.checked_add(l))
        .filter(|e| *e <= buf.len())
        .ok_or("record length out of bounds")?;
    let mut p = body_start + 1; // attributes
    let timestamp_delta = varint(&buf[..end], &mut p)?;
    let offset_delta = varint(&buf[..end], &mut p)?;
    let key_len = varint(&buf[..end], &mut p)?;
    let key = match key_len {
        -1 => None,
        n if n >= 0 && p + n as usize <= end => {
            let k = Bytes::copy_from_slice(&buf[p..p + n as usize]);
            p += n as usize;
            Some(k)
        }
        _ => return Err("key length out of bounds"),
    };
    let value_len = varint(&buf[..end], &mut p)?;
    if value_len < -1 {
        return Err("negative value length");
    }
    *at = end;
    Ok(RecordView {
        offset: h.base_offset.saturating_add(offset_delta),
        timestamp: h.base_timestamp.saturating_add(timestamp_delta),
        key,
        tombstone: value_len == -1,
        raw: start..end,
    })
}

/// A zigzag varint (Kafka's varint and varlong alike), as i64.
fn varint(buf: &[u8], at: &mut usize) -> Result<i64, &'static str> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).ok_or("varint past the end")?;
        *at += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err("varint too long")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    fn record(offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
        Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 3,
            producer_id: 42,
            producer_epoch: 1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32,
            timestamp: 1_000 + offset,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
            delete_horizon: false,
        }
    }

    fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    #[test]
    fn a_rewritten_batch_keeps_its_offsets_producer_and_codec() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let original = encode(
                &[
                    record(10, Some("a"), Some("1")),
                    record(11, Some("b"), Some("2")),
                    record(12, Some("a"), None),
                    record(13, Some("c"), Some("3")),
                ],
                compression,
            );
            let (h, _, views) = records(&original).unwrap();
            assert_eq!(views.len(), 4);
            assert!(views[2].tombstone && !views[1].tombstone);
            assert_eq!((views[3].offset, views[3].timestamp), (13, 1_013));
            assert!(
                rewrite(&original, |_| true).unwrap().is_none(),
                "all kept: as is"
            );
            let cleaned = rewrite(&original, |v| v.offset % 2 == 1).unwrap().unwrap();
            let c = batch::validate(&cleaned).unwrap();
            assert_eq!(
                (c.base_offset, c.last_offset_delta, c.leader_epoch),
                (h.base_offset, h.last_offset_delta, h.leader_epoch)
            );
            assert_eq!(
                (c.producer_id, c.producer_epoch, c.base_sequence),
                (42, 1, 10)
            );
            assert_eq!((c.record_count, c.compression()), (2, h.compression()));
            // A Kafka client's decoder reads it: the kept records, offsets intact.
            let set = RecordBatchDecoder::decode(&mut Bytes::from(cleaned)).unwrap();
            let got: Vec<(i64, Option<Bytes>)> = set
                .records
                .iter()
                .map(|r| (r.offset, r.key.clone()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (11, Some(Bytes::from_static(b"b"))),
                    (13, Some(Bytes::from_static(b"c")))
                ]
            );
            assert_eq!(set.records[1].timestamp, 1_013);
            // None kept: an empty, uncompressed batch over the same offsets.
            let empty = rewrite(&original, |_| false).unwrap().unwrap();
            let e = batch::validate(&empty).unwrap();
            assert_eq!(
                (e.record_count, e.compression(), e.size),
                (0, 0, HEADER_LEN)
            );
            assert_eq!(e.next_offset(), h.next_offset());
        }
    }

    #[test]
    fn recompression_changes_only_the_codec() {
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for from in codecs {
            let original = encode(
                &[
                    record(10, Some("a"), Some("1")),
                    record(11, None, Some(&"x".repeat(500))),
                ],
                from,
            );
            let before = RecordBatchDecoder::decode(&mut Bytes::from(original.clone())).unwrap();
            for (to, attribute) in codecs.iter().zip(0i16..) {
                let Some(out) = recompress(&original, attribute).unwrap() else {
                    assert_eq!(from, *to, "only a batch already in the codec stays as is");
                    continue;
                };
                let h = batch::validate(&out).unwrap();
                assert_eq!(h.compression(), attribute);
                assert_eq!(
                    (h.producer_id, h.base_sequence, h.record_count),
                    (42, 10, 2)
                );
                let after = RecordBatchDecoder::decode(&mut Bytes::from(out)).unwrap();
                assert_eq!(after.compression, *to);
                assert_eq!(after.records, before.records, "{from:?} to {to:?}");
            }
        }
    }

    #[test]
    fn an_empty_run_is_one_valid_batch_over_its_offsets() {
        let b = empty_batch(100, 180, 4, 0x08, 5, 9);
        let h = batch::validate(&b).unwrap();
        assert_eq!(
            (h.base_offset, h.next_offset(), h.leader_epoch),
            (100, 180, 4)
        );
        assert_eq!((h.record_count, h.producer_id, h.attributes), (0, -1, 0x08));
        let set = RecordBatchDecoder::decode(&mut Bytes::from(b)).unwrap();
        assert!(set.records.is_empty());
    }

    #[test]
    fn a_claimed_record_count_does_not_size_anything() {
        let mut original = encode(&[record(0, Some("a"), Some("1"))], Compression::None);
        original[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        original[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        let crc = crc32c::crc32c(&original[21..]);
        original[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            records(&original),
            Err(RewriteError::Records { .. })
        ));
    }

    #[test]
    fn a_batch_whose_records_do_not_parse_is_refused() {
        let mut original = encode(&[record(0, Some("a"), Some("1"))], Compression::None);
        // A record length past the end, CRC made valid again.
        original[HEADER_LEN] = 0x7e;
        let crc = crc32c::crc32c(&original[21..]);
        original[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            rewrite(&original, |_| false),
            Err(RewriteError::Records { .. })
        ));
    }
}
