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

/// The producers of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
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

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Every remembered batch, by producer, oldest first: the snapshot's content.
    pub fn batches(&self) -> impl Iterator<Item = &ProducedBatch> {
        self.producers.values().flat_map(|e| e.batches.iter())
    }

    /// A compact encoding of the table (for snapshot files).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for b in self.batches() {
            out.extend_from_slice(&b.producer_id.to_be_bytes());
            out.extend_from_slice(&b.epoch.to_be_bytes());
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.first_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
        }
        out
    }

    /// Parses [`ProducerStates::encode`]'s output.
    pub fn decode(mut bytes: &[u8]) -> Result<ProducerStates, String> {
        const LEN: usize = 8 + 2 + 4 + 4 + 8 + 8;
        if !bytes.len().is_multiple_of(LEN) {
            return Err(format!(
                "{} bytes is not a whole number of entries",
                bytes.len()
            ));
        }
        let mut states = ProducerStates::default();
        while !bytes.is_empty() {
            let (e, rest) = bytes.split_at(LEN);
            bytes = rest;
            let i64_at = |i: usize| i64::from_be_bytes(e[i..i + 8].try_into().unwrap_or_default());
            let i32_at = |i: usize| i32::from_be_bytes(e[i..i + 4].try_into().unwrap_or_default());
            states.record(ProducedBatch {
                producer_id: i64_at(0),
                epoch: i16::from_be_bytes([e[8], e[9]]),
                first_seq: i32_at(10),
                last_seq: i32_at(14),
                first_offset: i64_at(18),
                last_offset: i64_at(26),
            });
        }
        Ok(states)
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
    fn the_table_round_trips() {
        let mut s = ProducerStates::default();
        for i in 0..8 {
            s.record(batch(i % 3, 1, i as i32, i as i32, i));
        }
        assert_eq!(ProducerStates::decode(&s.encode()).unwrap(), s);
        assert!(ProducerStates::decode(&[1, 2, 3]).is_err());
    }
}
