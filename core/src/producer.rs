//! Idempotent producers (KIP-98): per partition, per producer id, the epoch and the
//! last five batches' sequence ranges, so a retried batch is recognised and answered
//! with its original offsets, a gap is refused, and an old epoch is fenced. Pure: the
//! log consults it under its append lock and feeds it every batch it stores, at
//! append and when it rebuilds at start.

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

/// Batches remembered per producer (Kafka's max.in.flight limit for idempotence).
pub const BATCHES_KEPT: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProducerError {
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    InvalidEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: sequence {got} where {expected} was expected")]
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
}

/// One stored batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducedBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// Already stored: answer with these offsets and store nothing.
    Duplicate {
        first_offset: i64,
        last_offset: i64,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<ProducedBatch>,
}

/// A transaction's span in one partition: from its first batch to its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnSpan {
    pub producer_id: i64,
    pub first_offset: i64,
    pub marker_offset: i64,
}

/// The producers of one partition, and their transactions in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
    /// Open transactions: producer id → offset of its first batch here.
    open: BTreeMap<i64, i64>,
    /// Transactions whose marker is written but perhaps not yet durable: they still
    /// hold the last stable offset back.
    closing: Vec<TxnSpan>,
    /// Aborted transactions, by marker offset (what read_committed fetches skip).
    aborted: Vec<TxnSpan>,
}

/// The sequence after `seq`, wrapping as Kafka's do.
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStates {
    /// Judges a batch of `producer_id` at `epoch` with sequences `first_seq..=last_seq`.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<Verdict, ProducerError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            // A producer never seen here (or whose state is gone): accept it.
            return Ok(Verdict::Append);
        };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            // A new epoch starts its sequences again at 0.
            return if first_seq == 0 {
                Ok(Verdict::Append)
            } else {
                Err(ProducerError::OutOfOrder {
                    producer_id,
                    expected: 0,
                    got: first_seq,
                })
            };
        }
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(Verdict::Duplicate {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
            });
        }
        let expected = entry
            .batches
            .back()
            .map_or(first_seq, |b| next_seq(b.last_seq));
        if first_seq != expected {
            return Err(ProducerError::OutOfOrder {
                producer_id,
                expected,
                got: first_seq,
            });
        }
        Ok(Verdict::Append)
    }

    /// Judges a transaction marker of `producer_id` at `epoch`: one from an epoch
    /// older than the producer's batches here is a zombie coordinator's, and would
    /// decide the newer epoch's open transaction (Kafka refuses it the same way,
    /// `ProducerStateManager.checkProducerEpoch`).
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<(), ProducerError> {
        match self.producers.get(&producer_id) {
            Some(entry) if epoch < entry.epoch => Err(ProducerError::InvalidEpoch {
                producer_id,
                epoch,
                current: entry.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Remembers a stored batch.
    pub fn record(&mut self, b: ProducedBatch) {
        let entry = self.producers.entry(b.producer_id).or_default();
        if b.epoch != entry.epoch {
            entry.epoch = b.epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(b);
        while entry.batches.len() > BATCHES_KEPT {
            entry.batches.pop_front();
        }
    }

    /// A transactional batch of `producer_id` stored at `offset`.
    pub fn transactional(&mut self, producer_id: i64, offset: i64) {
        self.open.entry(producer_id).or_insert(offset);
    }

    /// `producer_id`'s marker stored at `offset`: its transaction here is decided.
    pub fn marker(&mut self, producer_id: i64, offset: i64, commit: bool) {
        let Some(first_offset) = self.open.remove(&producer_id) else {
            return; // a marker for a transaction that wrote nothing here
        };
        let span = TxnSpan {
            producer_id,
            first_offset,
            marker_offset: offset,
        };
        self.closing.push(span);
        if !commit {
            self.aborted.push(span);
        }
    }

    /// The last stable offset under high watermark `hw`: below the first batch of
    /// every transaction not yet decided durably.
    pub fn last_stable_offset(&self, hw: i64) -> i64 {
        let open = self.open.values().copied();
        let closing = self
            .closing
            .iter()
            .filter(|t| t.marker_offset >= hw)
            .map(|t| t.first_offset);
        open.chain(closing).fold(hw, i64::min)
    }

    /// Forgets what lies wholly before `log_start` (its segments are gone): aborted
    /// transactions whose marker is there, and producers whose last batch is.
    pub fn prune_before(&mut self, log_start: i64) {
        self.aborted.retain(|t| t.marker_offset >= log_start);
        self.producers
            .retain(|_, e| e.batches.back().is_some_and(|b| b.last_offset >= log_start));
    }

    /// Forgets the closing transactions whose marker is below `hw` (durable).
    pub fn settle(&mut self, hw: i64) {
        self.closing.retain(|t| t.marker_offset >= hw);
    }

    /// Aborted transactions that overlap `[from, to)`: (producer id, first offset).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        self.aborted
            .iter()
            .filter(|t| t.marker_offset >= from && t.first_offset < to)
            .map(|t| (t.producer_id, t.first_offset))
            .collect()
    }

    /// Every aborted transaction this partition remembers (from its log start).
    pub fn aborted(&self) -> &[TxnSpan] {
        &self.aborted
    }

    /// Each producer this partition remembers (DescribeProducers): its id, epoch,
    /// last sequence, and the first offset of its open transaction here (or -1).
    pub fn active(&self) -> impl Iterator<Item = (i64, i16, i32, i64)> + '_ {
        self.producers.iter().map(|(&id, e)| {
            let last_seq = e.batches.back().map_or(-1, |b| b.last_seq);
            (
                id,
                e.epoch,
                last_seq,
                self.open.get(&id).copied().unwrap_or(-1),
            )
        })
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty() && self.open.is_empty() && self.aborted.is_empty()
    }

    /// Every remembered batch, by producer, oldest first: the snapshot's content.
    pub fn batches(&self) -> impl Iterator<Item = &ProducedBatch> {
        self.producers.values().flat_map(|e| e.batches.iter())
    }

    /// A compact encoding of the table (for snapshot files): the batches, the open
    /// transactions, the aborted ones. Closing transactions count as decided: a
    /// snapshot is written only once everything before it is durable.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let batches: Vec<&ProducedBatch> = self.batches().collect();
        out.extend_from_slice(&(batches.len() as u32).to_be_bytes());
        for b in batches {
            out.extend_from_slice(&b.producer_id.to_be_bytes());
            out.extend_from_slice(&b.epoch.to_be_bytes());
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.first_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
        }
        out.extend_from_slice(&(self.open.len() as u32).to_be_bytes());
        for (pid, first) in &self.open {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&first.to_be_bytes());
        }
        out.extend_from_slice(&(self.aborted.len() as u32).to_be_bytes());
        for t in &self.aborted {
            out.extend_from_slice(&t.producer_id.to_be_bytes());
            out.extend_from_slice(&t.first_offset.to_be_bytes());
            out.extend_from_slice(&t.marker_offset.to_be_bytes());
        }
        out
    }

    /// Parses [`ProducerStates::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<ProducerStates, String> {
        let mut r = Reader(bytes);
        let mut states = ProducerStates::default();
        for _ in 0..r.u32()? {
            states.record(ProducedBatch {
                producer_id: r.i64()?,
                epoch: r.i16()?,
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                first_offset: r.i64()?,
                last_offset: r.i64()?,
            });
        }
        for _ in 0..r.u32()? {
            let (pid, first) = (r.i64()?, r.i64()?);
            states.open.insert(pid, first);
        }
        for _ in 0..r.u32()? {
            states.aborted.push(TxnSpan {
                producer_id: r.i64()?,
                first_offset: r.i64()?,
                marker_offset: r.i64()?,
            });
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the table", r.0.len()));
        }
        Ok(states)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.0.len() < N {
            return Err("truncated producer snapshot".into());
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_be_bytes)
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, first: i32, last: i32, offset: i64) -> ProducedBatch {
        ProducedBatch {
            producer_id: pid,
            epoch,
            first_seq: first,
            last_seq: last,
            first_offset: offset,
            last_offset: offset + i64::from(last - first),
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 4), Ok(Verdict::Append));
        s.record(batch(7, 0, 0, 4, 100));
        assert_eq!(s.check(7, 0, 5, 9), Ok(Verdict::Append));
        s.record(batch(7, 0, 5, 9, 105));
        assert_eq!(
            s.check(7, 0, 0, 4),
            Ok(Verdict::Duplicate {
                first_offset: 100,
                last_offset: 104
            })
        );
    }

    #[test]
    fn gaps_and_old_epochs_are_refused() {
        let mut s = ProducerStates::default();
        s.record(batch(7, 2, 0, 4, 0));
        assert_eq!(
            s.check(7, 2, 7, 9),
            Err(ProducerError::OutOfOrder {
                producer_id: 7,
                expected: 5,
                got: 7
            })
        );
        assert!(matches!(
            s.check(7, 1, 5, 9),
            Err(ProducerError::InvalidEpoch { .. })
        ));
        assert!(matches!(
            s.check(7, 3, 5, 9),
            Err(ProducerError::OutOfOrder { expected: 0, .. })
        ));
        assert_eq!(s.check(7, 3, 0, 0), Ok(Verdict::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(batch(1, 0, i, i, i64::from(i)));
        }
        assert!(matches!(
            s.check(1, 0, 1, 1),
            Err(ProducerError::OutOfOrder { .. })
        ));
        assert!(matches!(s.check(1, 0, 2, 2), Ok(Verdict::Duplicate { .. })));
        let mut w = ProducerStates::default();
        w.record(batch(2, 0, i32::MAX - 1, i32::MAX, 0));
        assert_eq!(w.check(2, 0, 0, 3), Ok(Verdict::Append));
    }

    #[test]
    fn a_marker_from_an_older_epoch_than_the_batches_is_refused() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check_marker(4, 27), Ok(()), "a producer never seen here");
        s.record(batch(4, 28, 0, 0, 373));
        s.transactional(4, 373);
        assert_eq!(
            s.check_marker(4, 27),
            Err(ProducerError::InvalidEpoch {
                producer_id: 4,
                epoch: 27,
                current: 28
            })
        );
        assert_eq!(s.check_marker(4, 28), Ok(()));
        assert_eq!(
            s.check_marker(4, 29),
            Ok(()),
            "a fencing abort's bumped epoch"
        );
    }

    #[test]
    fn the_table_round_trips() {
        let mut s = ProducerStates::default();
        for i in 0..8 {
            s.record(batch(i % 3, 1, i as i32, i as i32, i));
        }
        s.transactional(1, 3);
        s.transactional(2, 5);
        s.marker(2, 9, false);
        s.settle(100);
        assert_eq!(ProducerStates::decode(&s.encode()).unwrap(), s);
        assert!(ProducerStates::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn the_last_stable_offset_waits_for_durable_markers() {
        let mut s = ProducerStates::default();
        assert_eq!(s.last_stable_offset(10), 10);
        s.transactional(7, 4);
        s.transactional(7, 6);
        s.transactional(8, 5);
        assert_eq!(s.last_stable_offset(10), 4);
        s.marker(7, 10, false);
        assert_eq!(
            s.last_stable_offset(10),
            4,
            "marker at 10 is not durable under hw 10"
        );
        assert_eq!(s.last_stable_offset(11), 5);
        s.settle(11);
        s.marker(8, 11, true);
        assert_eq!(s.last_stable_offset(12), 12);
        assert_eq!(s.aborted_between(0, 12), vec![(7, 4)]);
        assert_eq!(s.aborted_between(11, 12), vec![]);
        s.marker(9, 12, true);
        assert_eq!(
            s.last_stable_offset(13),
            13,
            "a marker with nothing open here"
        );
    }
}
