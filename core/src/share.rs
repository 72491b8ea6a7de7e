//! A share partition (KIP-932): what a share group has done with one topic partition's
//! records, as a pure state machine. The partition leader holds one per group that
//! reads the partition; time comes in as `now_ms` and the log's positions from the
//! caller.
//!
//! Records from the share-partition start offset (SPSO) up to the end offset (SPEO)
//! are *in flight*: each is Available (to be delivered, again), Acquired by one member
//! under a time-limited lock, Acknowledged, or Archived (rejected, a gap, or delivered
//! too often). Records at and past SPEO were never delivered; records below SPSO are
//! done. SPSO moves up as the oldest in-flight records are acknowledged or archived.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use thiserror::Error;

/// The state of one in-flight record, with Kafka's persisted codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordState {
    Available = 0,
    Acquired = 1,
    Acknowledged = 2,
    Archived = 4,
}

impl RecordState {
    pub fn from_code(code: i8) -> Option<RecordState> {
        Some(match code {
            0 => RecordState::Available,
            1 => RecordState::Acquired,
            2 => RecordState::Acknowledged,
            4 => RecordState::Archived,
            _ => return None,
        })
    }
}

/// What a member says of records it was given (ShareFetch / ShareAcknowledge
/// `AcknowledgeTypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckType {
    /// Offsets inside a delivered range that hold no record (compaction, markers).
    Gap = 0,
    Accept = 1,
    Release = 2,
    Reject = 3,
}

impl AckType {
    pub fn from_code(code: i8) -> Option<AckType> {
        Some(match code {
            0 => AckType::Gap,
            1 => AckType::Accept,
            2 => AckType::Release,
            3 => AckType::Reject,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ShareError {
    /// INVALID_RECORD_STATE: the records are not acquired by this member (any more).
    #[error("the records are not acquired by this member")]
    InvalidRecordState,
    /// INVALID_REQUEST: a malformed acknowledgement batch.
    #[error("the acknowledgement batch is malformed")]
    InvalidRequest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    state: RecordState,
    delivery_count: i16,
    /// The member holding the lock, while Acquired (shared by the records it took at
    /// once).
    owner: Option<Arc<str>>,
    lock_until_ms: i64,
}

/// A run of offsets acquired together, with their delivery count (ShareFetch's
/// `AcquiredRecords`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub first_offset: i64,
    pub last_offset: i64,
    pub delivery_count: i16,
}

/// A run of in-flight offsets sharing a state and delivery count: the persisted form
/// (`__share_group_state`, ReadShareGroupState / WriteShareGroupState batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateBatch {
    pub first_offset: i64,
    pub last_offset: i64,
    pub state: RecordState,
    pub delivery_count: i16,
}

/// A share partition's persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareSnapshot {
    pub start_offset: i64,
    pub batches: Vec<StateBatch>,
}

/// The group's limits on a share partition.
#[derive(Debug, Clone, Copy)]
pub struct ShareLimits {
    /// group.share.record.lock.duration.ms
    pub lock_ms: i64,
    /// group.share.delivery.count.limit
    pub max_deliveries: i16,
    /// group.share.partition.max.record.locks: in-flight records at most.
    pub max_in_flight: i64,
}

#[derive(Debug, Clone)]
pub struct SharePartition {
    start: i64,
    end: i64,
    records: BTreeMap<i64, InFlight>,
    limits: ShareLimits,
}

impl SharePartition {
    /// A share partition no member has read yet, starting at `start_offset` (where
    /// `share.auto.offset.reset` points).
    pub fn new(start_offset: i64, limits: ShareLimits) -> SharePartition {
        SharePartition {
            start: start_offset,
            end: start_offset,
            records: BTreeMap::new(),
            limits,
        }
    }

    /// A share partition from its persisted state. Records acquired when it was
    /// written are available again: their locks died with the leader that held them.
    /// Only the window `group.share.partition.max.record.locks` allows from the start
    /// is restored: records past it are delivered as new.
    pub fn restore(snapshot: &ShareSnapshot, limits: ShareLimits) -> SharePartition {
        let mut sp = SharePartition::new(snapshot.start_offset, limits);
        let window_end = sp.acquirable_end();
        for b in &snapshot.batches {
            for offset in b.first_offset.max(sp.start)..=b.last_offset.min(window_end - 1) {
                let state = match b.state {
                    RecordState::Acquired => RecordState::Available,
                    s => s,
                };
                sp.records.insert(
                    offset,
                    InFlight {
                        state,
                        delivery_count: b.delivery_count,
                        owner: None,
                        lock_until_ms: 0,
                    },
                );
                sp.end = sp.end.max(offset + 1);
            }
        }
        sp.advance();
        sp.check();
        sp
    }

    pub fn start_offset(&self) -> i64 {
        self.start
    }

    pub fn end_offset(&self) -> i64 {
        self.end
    }

    pub fn set_limits(&mut self, limits: ShareLimits) {
        self.limits = limits;
    }

    pub fn lock_ms(&self) -> i64 {
        self.limits.lock_ms
    }

    /// Records in flight (between SPSO and SPEO).
    pub fn in_flight(&self) -> i64 {
        self.end - self.start
    }

    /// Whether records released or timed out wait to be delivered again.
    pub fn has_available(&self) -> bool {
        self.records
            .values()
            .any(|r| r.state == RecordState::Available)
    }

    /// The offsets of records waiting to be delivered again, in order.
    pub fn available_offsets(&self) -> Vec<i64> {
        self.records
            .iter()
            .filter(|(_, r)| r.state == RecordState::Available)
            .map(|(o, _)| *o)
            .collect()
    }

    /// Records never delivered may be acquired up to this offset (exclusive): SPEO
    /// plus what the in-flight limit leaves room for.
    pub fn acquirable_end(&self) -> i64 {
        self.start + self.limits.max_in_flight
    }

    /// Acquires the available in-flight records at `offsets` (present in the log) for
    /// `member`, at most `max` of them.
    pub fn acquire_available(
        &mut self,
        member: &str,
        now_ms: i64,
        offsets: impl IntoIterator<Item = i64>,
        max: usize,
    ) -> Vec<Acquired> {
        let mut out: Vec<Acquired> = Vec::new();
        let mut taken = 0;
        let holder: Arc<str> = Arc::from(member);
        for offset in offsets {
            if taken >= max {
                break;
            }
            let Some(r) = self.records.get_mut(&offset) else {
                continue;
            };
            if r.state != RecordState::Available {
                continue;
            }
            r.state = RecordState::Acquired;
            r.delivery_count = r.delivery_count.saturating_add(1);
            r.owner = Some(holder.clone());
            r.lock_until_ms = now_ms + self.limits.lock_ms;
            taken += 1;
            push_run(&mut out, offset, r.delivery_count);
        }
        self.check();
        out
    }

    /// Acquires the never-delivered offsets from SPEO through `last_offset` for
    /// `member` (the caller read them from the log, whole batches, below the high
    /// watermark). Offsets from SPEO that the log no longer has are skipped first:
    /// `log_start` is the log's start offset.
    pub fn acquire_new(
        &mut self,
        member: &str,
        now_ms: i64,
        log_start: i64,
        last_offset: i64,
    ) -> Option<Acquired> {
        self.skip_to(log_start);
        let last = last_offset.min(self.acquirable_end() - 1);
        if last < self.end {
            return None;
        }
        let first = self.end;
        let holder: Arc<str> = Arc::from(member);
        for offset in first..=last {
            self.records.insert(
                offset,
                InFlight {
                    state: RecordState::Acquired,
                    delivery_count: 1,
                    owner: Some(holder.clone()),
                    lock_until_ms: now_ms + self.limits.lock_ms,
                },
            );
        }
        self.end = last + 1;
        self.check();
        Some(Acquired {
            first_offset: first,
            last_offset: last,
            delivery_count: 1,
        })
    }

    /// Applies one acknowledgement batch from `member`: one type for the whole range,
    /// or one per offset. Every offset must be acquired by `member`; if any is not,
    /// nothing changes.
    pub fn acknowledge(
        &mut self,
        member: &str,
        first_offset: i64,
        last_offset: i64,
        types: &[AckType],
    ) -> Result<(), ShareError> {
        let len = last_offset
            .checked_sub(first_offset)
            .and_then(|d| d.checked_add(1))
            .ok_or(ShareError::InvalidRequest)?;
        if len <= 0 || types.is_empty() || (types.len() != 1 && types.len() as i64 != len) {
            return Err(ShareError::InvalidRequest);
        }
        for offset in first_offset..=last_offset {
            match self.records.get(&offset) {
                Some(r)
                    if r.state == RecordState::Acquired && r.owner.as_deref() == Some(member) => {}
                _ => return Err(ShareError::InvalidRecordState),
            }
        }
        for (i, offset) in (first_offset..=last_offset).enumerate() {
            let t = if types.len() == 1 { types[0] } else { types[i] };
            let max = self.limits.max_deliveries;
            let r = self.records.get_mut(&offset).expect("checked above");
            r.owner = None;
            r.state = match t {
                AckType::Accept => RecordState::Acknowledged,
                AckType::Gap | AckType::Reject => RecordState::Archived,
                AckType::Release
                    if r.delivery_count >= max
                        || crate::sim::planted(crate::sim::Bug::ShareReleaseArchives) =>
                {
                    RecordState::Archived
                }
                AckType::Release => RecordState::Available,
            };
        }
        self.advance();
        self.check();
        Ok(())
    }

    /// Releases every record `member` holds (its share session ended).
    pub fn release_member(&mut self, member: &str) {
        let max = self.limits.max_deliveries;
        for r in self.records.values_mut() {
            if r.state == RecordState::Acquired && r.owner.as_deref() == Some(member) {
                release(r, max);
            }
        }
        self.advance();
        self.check();
    }

    /// Releases records whose acquisition lock ran out; returns how many.
    pub fn expire_locks(&mut self, now_ms: i64) -> usize {
        let max = self.limits.max_deliveries;
        let mut n = 0;
        for r in self.records.values_mut() {
            if r.state == RecordState::Acquired && r.lock_until_ms <= now_ms {
                release(r, max);
                n += 1;
            }
        }
        if n > 0 {
            self.advance();
            self.check();
        }
        n
    }

    /// The earliest lock deadline, if any record is acquired.
    pub fn next_lock_deadline(&self) -> Option<i64> {
        self.records
            .values()
            .filter(|r| r.state == RecordState::Acquired)
            .map(|r| r.lock_until_ms)
            .min()
    }

    /// Moves past records the log no longer has (retention, DeleteRecords).
    pub fn skip_to(&mut self, log_start: i64) {
        if log_start <= self.start {
            return;
        }
        self.records = self.records.split_off(&log_start);
        self.start = log_start;
        self.end = self.end.max(log_start);
        self.advance();
        self.check();
    }

    /// The persisted form: SPSO and the in-flight records in runs.
    pub fn snapshot(&self) -> ShareSnapshot {
        let mut batches: Vec<StateBatch> = Vec::new();
        for (&offset, r) in &self.records {
            match batches.last_mut() {
                Some(b)
                    if b.last_offset + 1 == offset
                        && b.state == r.state
                        && b.delivery_count == r.delivery_count =>
                {
                    b.last_offset = offset
                }
                _ => batches.push(StateBatch {
                    first_offset: offset,
                    last_offset: offset,
                    state: r.state,
                    delivery_count: r.delivery_count,
                }),
            }
        }
        ShareSnapshot {
            start_offset: self.start,
            batches,
        }
    }

    /// SPSO past the oldest records that are done.
    fn advance(&mut self) {
        while let Some(entry) = self.records.first_entry() {
            if *entry.key() != self.start
                || !matches!(
                    entry.get().state,
                    RecordState::Acknowledged | RecordState::Archived
                )
            {
                break;
            }
            entry.remove();
            self.start += 1;
        }
        if self.records.is_empty() {
            self.start = self.start.max(self.end);
            self.end = self.start;
        }
    }

    /// The invariants every step keeps (kept on in release builds).
    fn check(&self) {
        assert!(
            self.start <= self.end,
            "SPSO {} past SPEO {}",
            self.start,
            self.end
        );
        if let (Some((&lo, _)), Some((&hi, _))) = (
            self.records.first_key_value(),
            self.records.last_key_value(),
        ) {
            assert!(
                self.start <= lo && hi < self.end,
                "in-flight records {lo}..={hi} outside SPSO {}..SPEO {}",
                self.start,
                self.end
            );
        }
        assert!(
            self.records
                .values()
                .all(|r| (r.state == RecordState::Acquired) == r.owner.is_some()),
            "an acquired record without its owner, or an owner on a free record"
        );
    }
}

/// Where a share partition's state is kept: group, topic id and partition (Kafka's
/// share-partition key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareKey {
    pub group: String,
    pub topic_id: [u8; 16],
    pub partition: i32,
}

impl ShareKey {
    /// The coordinator key that places it in `__share_group_state`
    /// (`group:topicId:partition`, the topic id as Kafka prints a Uuid: URL-safe base64
    /// without padding), as FindCoordinator's share key type names it.
    pub fn coordinator_key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.group,
            base64url(&self.topic_id),
            self.partition
        )
    }

    /// Reads a coordinator key back; `None` unless it is `group:topicId:partition`.
    pub fn parse_coordinator_key(key: &str) -> Option<ShareKey> {
        let mut parts = key.rsplitn(3, ':');
        let partition = parts.next()?.parse().ok()?;
        let topic_id = from_base64url(parts.next()?)?;
        let group = parts.next()?;
        (!group.is_empty()).then(|| ShareKey {
            group: group.to_string(),
            topic_id,
            partition,
        })
    }

    /// The record key in `__share_group_state`.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(24 + self.group.len());
        b.put_i16(SNAPSHOT_VERSION);
        b.put_u16(u16::try_from(self.group.len()).unwrap_or(u16::MAX));
        b.put_slice(&self.group.as_bytes()[..self.group.len().min(u16::MAX as usize)]);
        b.put_slice(&self.topic_id);
        b.put_i32(self.partition);
        b.freeze()
    }

    pub fn decode(mut b: &[u8]) -> Option<ShareKey> {
        if b.remaining() < 4 || b.get_i16() != SNAPSHOT_VERSION {
            return None;
        }
        let len = b.get_u16() as usize;
        if b.remaining() < len + 20 {
            return None;
        }
        let group = String::from_utf8(b[..len].to_vec()).ok()?;
        b.advance(len);
        let mut topic_id = [0u8; 16];
        b.copy_to_slice(&mut topic_id);
        Some(ShareKey {
            group,
            topic_id,
            partition: b.get_i32(),
        })
    }
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// 16 bytes as 22 characters of URL-safe base64 without padding.
fn base64url(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(BASE64URL[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn from_base64url(text: &str) -> Option<[u8; 16]> {
    if text.len() != 22 {
        return None;
    }
    let mut bits = 0u32;
    let mut have = 0;
    let mut out = Vec::with_capacity(16);
    for c in text.bytes() {
        let v = BASE64URL.iter().position(|x| *x == c)? as u32;
        bits = bits << 6 | v;
        have += 6;
        if have >= 8 {
            have -= 8;
            out.push((bits >> have) as u8);
            bits &= (1 << have) - 1;
        }
    }
    (bits == 0).then_some(())?;
    out.try_into().ok()
}

/// The version of the key and value layouts in `__share_group_state`.
const SNAPSHOT_VERSION: i16 = 0;

impl ShareSnapshot {
    /// The record value in `__share_group_state`.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(14 + 19 * self.batches.len());
        b.put_i16(SNAPSHOT_VERSION);
        b.put_i64(self.start_offset);
        b.put_i32(self.batches.len() as i32);
        for s in &self.batches {
            b.put_i64(s.first_offset);
            b.put_i64(s.last_offset);
            b.put_i16(s.delivery_count);
            b.put_i8(s.state as i8);
        }
        b.freeze()
    }

    /// Reads a stored value back; `None` for anything malformed (never a panic: the
    /// bytes come from disk).
    pub fn decode(mut b: &[u8]) -> Option<ShareSnapshot> {
        if b.remaining() < 14 || b.get_i16() != SNAPSHOT_VERSION {
            return None;
        }
        let start_offset = b.get_i64();
        let n = usize::try_from(b.get_i32()).ok()?;
        if b.remaining() != n.checked_mul(19)? {
            return None;
        }
        let mut batches = Vec::with_capacity(n);
        for _ in 0..n {
            let (first_offset, last_offset) = (b.get_i64(), b.get_i64());
            let delivery_count = b.get_i16();
            let state = RecordState::from_code(b.get_i8())?;
            batches.push(StateBatch {
                first_offset,
                last_offset,
                state,
                delivery_count,
            });
        }
        let snapshot = ShareSnapshot {
            start_offset,
            batches,
        };
        snapshot.is_well_formed().then_some(snapshot)
    }

    /// Batches in order, apart, each a range at or past the start offset.
    pub fn is_well_formed(&self) -> bool {
        let mut next = self.start_offset;
        for b in &self.batches {
            if b.first_offset < next || b.first_offset > b.last_offset {
                return false;
            }
            next = b.last_offset.saturating_add(1);
        }
        true
    }
}

fn release(r: &mut InFlight, max_deliveries: i16) {
    r.owner = None;
    r.state = if r.delivery_count >= max_deliveries {
        RecordState::Archived
    } else {
        RecordState::Available
    };
}

fn push_run(out: &mut Vec<Acquired>, offset: i64, delivery_count: i16) {
    match out.last_mut() {
        Some(a) if a.last_offset + 1 == offset && a.delivery_count == delivery_count => {
            a.last_offset = offset
        }
        _ => out.push(Acquired {
            first_offset: offset,
            last_offset: offset,
            delivery_count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ShareLimits = ShareLimits {
        lock_ms: 30_000,
        max_deliveries: 5,
        max_in_flight: 2000,
    };

    fn acquired(first: i64, last: i64, count: i16) -> Acquired {
        Acquired {
            first_offset: first,
            last_offset: last,
            delivery_count: count,
        }
    }

    /// KIP-932: acknowledged records move SPSO; a record is delivered once while
    /// acquired; the same range is not handed to a second member.
    #[test]
    fn records_go_to_one_member_and_acks_move_the_start() {
        let mut sp = SharePartition::new(10, LIMITS);
        assert_eq!(sp.acquire_new("a", 0, 0, 14), Some(acquired(10, 14, 1)));
        assert_eq!(sp.acquire_new("b", 0, 0, 14), None, "nothing new for b");
        assert_eq!(
            sp.acknowledge("b", 10, 10, &[AckType::Accept]),
            Err(ShareError::InvalidRecordState),
            "b holds no lock on 10"
        );
        sp.acknowledge("a", 10, 12, &[AckType::Accept]).unwrap();
        assert_eq!((sp.start_offset(), sp.end_offset()), (13, 15));
        // Out of order: 14 done, 13 still held: SPSO waits for 13.
        sp.acknowledge("a", 14, 14, &[AckType::Accept]).unwrap();
        assert_eq!(sp.start_offset(), 13);
        sp.acknowledge("a", 13, 13, &[AckType::Reject]).unwrap();
        assert_eq!((sp.start_offset(), sp.in_flight()), (15, 0));
    }

    /// KIP-932: released records are delivered again with a higher delivery count,
    /// and archived once `group.share.delivery.count.limit` deliveries are spent.
    #[test]
    fn released_records_come_back_until_the_delivery_limit() {
        let limits = ShareLimits {
            max_deliveries: 2,
            ..LIMITS
        };
        let mut sp = SharePartition::new(0, limits);
        sp.acquire_new("a", 0, 0, 1).unwrap();
        sp.acknowledge("a", 0, 1, &[AckType::Release, AckType::Accept])
            .unwrap();
        assert_eq!(sp.available_offsets(), vec![0]);
        assert_eq!(
            sp.acquire_available("b", 0, sp.available_offsets(), 10),
            vec![acquired(0, 0, 2)]
        );
        sp.acknowledge("b", 0, 0, &[AckType::Release]).unwrap();
        assert!(!sp.has_available(), "two deliveries spent: archived");
        assert_eq!(sp.start_offset(), 2);
    }

    /// KIP-932: an acquisition lock that runs out makes the records available again;
    /// the late member's acknowledgement is then refused.
    #[test]
    fn a_lock_that_runs_out_frees_the_records() {
        let mut sp = SharePartition::new(0, LIMITS);
        sp.acquire_new("a", 1_000, 0, 2).unwrap();
        assert_eq!(sp.next_lock_deadline(), Some(31_000));
        assert_eq!(sp.expire_locks(30_999), 0);
        assert_eq!(sp.expire_locks(31_000), 3);
        assert_eq!(
            sp.acknowledge("a", 0, 2, &[AckType::Accept]),
            Err(ShareError::InvalidRecordState)
        );
        assert_eq!(
            sp.acquire_available("b", 31_000, sp.available_offsets(), 2),
            vec![acquired(0, 1, 2)],
            "at most the records asked for"
        );
    }

    /// A member whose session ends gives its records back; others' stay held.
    #[test]
    fn a_member_leaving_releases_only_its_records() {
        let mut sp = SharePartition::new(0, LIMITS);
        sp.acquire_new("a", 0, 0, 1).unwrap();
        sp.acquire_new("b", 0, 0, 3).unwrap();
        sp.release_member("a");
        assert_eq!(sp.available_offsets(), vec![0, 1]);
        sp.acknowledge("b", 2, 3, &[AckType::Accept]).unwrap();
    }

    /// Nothing new is acquired past `group.share.partition.max.record.locks`
    /// in-flight records.
    #[test]
    fn in_flight_records_are_bounded() {
        let limits = ShareLimits {
            max_in_flight: 4,
            ..LIMITS
        };
        let mut sp = SharePartition::new(0, limits);
        assert_eq!(sp.acquire_new("a", 0, 0, 9), Some(acquired(0, 3, 1)));
        assert_eq!(sp.acquire_new("a", 0, 0, 9), None);
        sp.acknowledge("a", 0, 1, &[AckType::Accept]).unwrap();
        assert_eq!(sp.acquire_new("a", 0, 0, 9), Some(acquired(4, 5, 1)));
    }

    /// A malformed batch changes nothing; per-offset types must match the range.
    #[test]
    fn malformed_acknowledgements_are_refused_whole() {
        let mut sp = SharePartition::new(0, LIMITS);
        sp.acquire_new("a", 0, 0, 2).unwrap();
        for (first, last, types) in [
            (2, 0, vec![AckType::Accept]),
            (0, 2, vec![]),
            (0, 2, vec![AckType::Accept, AckType::Accept]),
        ] {
            assert_eq!(
                sp.acknowledge("a", first, last, &types),
                Err(ShareError::InvalidRequest)
            );
        }
        assert_eq!(
            sp.acknowledge("a", 0, 3, &[AckType::Accept]),
            Err(ShareError::InvalidRecordState),
            "offset 3 was never acquired: nothing applied"
        );
        assert_eq!(sp.start_offset(), 0);
    }

    /// The persisted state restores SPSO, acknowledged and archived records and
    /// delivery counts; acquired records come back available.
    #[test]
    fn a_snapshot_restores_what_was_done() {
        let mut sp = SharePartition::new(5, LIMITS);
        sp.acquire_new("a", 0, 0, 9).unwrap();
        sp.acknowledge("a", 5, 5, &[AckType::Accept]).unwrap();
        sp.acknowledge("a", 7, 7, &[AckType::Accept]).unwrap();
        sp.acknowledge("a", 8, 8, &[AckType::Release]).unwrap();
        let snap = sp.snapshot();
        assert_eq!(snap.start_offset, 6);
        let back = SharePartition::restore(&snap, LIMITS);
        assert_eq!((back.start_offset(), back.end_offset()), (6, 10));
        assert_eq!(back.available_offsets(), vec![6, 8, 9]);
        assert_eq!(
            back.snapshot().batches.len(),
            3,
            "6, 7, 8..=9: {:?}",
            back.snapshot()
        );
    }

    /// Keys and snapshots read back as written; damaged bytes are refused, not
    /// trusted.
    #[test]
    fn keys_and_snapshots_round_trip_and_damage_is_refused() {
        let key = ShareKey {
            group: "g".into(),
            topic_id: [7; 16],
            partition: 3,
        };
        assert_eq!(ShareKey::decode(&key.encode()), Some(key.clone()));
        // Kafka prints a Uuid as URL-safe base64 without padding.
        assert_eq!(key.coordinator_key(), "g:BwcHBwcHBwcHBwcHBwcHBw:3");
        assert_eq!(
            ShareKey::parse_coordinator_key(&key.coordinator_key()),
            Some(key.clone())
        );
        let id: [u8; 16] = std::array::from_fn(|i| (i * 37 + 250) as u8);
        let k = ShareKey {
            group: "a:b".into(),
            topic_id: id,
            partition: 0,
        };
        assert_eq!(
            ShareKey::parse_coordinator_key(&k.coordinator_key()),
            Some(k)
        );
        for bad in [
            "g:BwcH:3",
            "g:BwcHBwcHBwcHBwcHBwcHBw:x",
            ":BwcHBwcHBwcHBwcHBwcHBw:3",
            "g",
        ] {
            assert_eq!(ShareKey::parse_coordinator_key(bad), None, "{bad}");
        }
        let mut sp = SharePartition::new(0, LIMITS);
        sp.acquire_new("a", 0, 0, 5).unwrap();
        sp.acknowledge("a", 1, 2, &[AckType::Accept]).unwrap();
        let snap = sp.snapshot();
        let bytes = snap.encode();
        assert_eq!(ShareSnapshot::decode(&bytes), Some(snap));
        for cut in 0..bytes.len() {
            assert_eq!(ShareSnapshot::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut bad = bytes.to_vec();
        let last = bad.len() - 1;
        bad[last] = 9; // no such state
        assert_eq!(ShareSnapshot::decode(&bad), None);
    }

    /// Bad input from the wire or the disk is refused or bounded, never a panic or a
    /// runaway allocation.
    #[test]
    fn hostile_ranges_are_refused_or_bounded() {
        let mut sp = SharePartition::new(0, LIMITS);
        sp.acquire_new("a", 0, 0, 2).unwrap();
        assert_eq!(
            sp.acknowledge("a", i64::MIN, i64::MAX, &[AckType::Accept]),
            Err(ShareError::InvalidRequest)
        );
        assert_eq!(
            sp.acknowledge("a", 0, i64::MAX - 1, &[AckType::Accept]),
            Err(ShareError::InvalidRecordState)
        );
        let huge = ShareSnapshot {
            start_offset: 0,
            batches: vec![StateBatch {
                first_offset: 0,
                last_offset: i64::MAX,
                state: RecordState::Acknowledged,
                delivery_count: 1,
            }],
        };
        let back = SharePartition::restore(&huge, LIMITS);
        assert_eq!(
            back.in_flight(),
            0,
            "acknowledged up to the window: all done"
        );
        assert_eq!(back.start_offset(), LIMITS.max_in_flight);
        let overlapping = ShareSnapshot {
            start_offset: 0,
            batches: vec![
                StateBatch {
                    first_offset: 0,
                    last_offset: 5,
                    state: RecordState::Archived,
                    delivery_count: 1,
                },
                StateBatch {
                    first_offset: 5,
                    last_offset: 6,
                    state: RecordState::Available,
                    delivery_count: 1,
                },
            ],
        };
        assert_eq!(ShareSnapshot::decode(&overlapping.encode()), None);
    }

    /// Records removed from the log (retention) leave the share partition too.
    #[test]
    fn the_log_start_moving_up_skips_records() {
        let mut sp = SharePartition::new(0, LIMITS);
        sp.acquire_new("a", 0, 0, 4).unwrap();
        sp.skip_to(3);
        assert_eq!((sp.start_offset(), sp.end_offset()), (3, 5));
        assert_eq!(sp.acquire_new("a", 0, 8, 9), Some(acquired(8, 9, 1)));
        assert_eq!(sp.start_offset(), 8);
    }
}
