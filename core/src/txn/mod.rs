//! The transaction coordinator (KIP-98) as a pure state machine: transactional ids
//! and their producer id and epoch, the partitions of the open transaction, and the
//! two-phase end: a Prepare record made durable, then markers in every partition,
//! then a Complete record. What must be stored or written comes out as effects; the
//! caller reports back when markers are durable.

pub mod records;

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

pub use records::{TxnRecord, TxnValue};

use crate::sim::{planted, Bug};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
}

impl TxnState {
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TxnError {
    #[error("the transaction is being completed; retry")]
    ConcurrentTransactions,
    #[error("a newer producer with the same transactional id exists")]
    ProducerFenced,
    #[error("the producer id does not belong to the transactional id")]
    InvalidProducerIdMapping,
    #[error("the request does not fit the transaction's state")]
    InvalidTxnState,
    #[error("transaction.timeout.ms is above transaction.max.timeout.ms")]
    InvalidTransactionTimeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// Monotonic time the open transaction began (its timeout counts from here).
    started_ms: i64,
}

impl TxnMeta {
    /// Monotonic time the open transaction began.
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    fn value(&self, now_ms: i64) -> TxnValue {
        TxnValue {
            producer_id: self.producer_id,
            epoch: self.epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.iter().cloned().collect(),
            last_update_ms: now_ms,
            start_ms: self.started_ms,
        }
    }
}

/// What the coordinator wants done, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnEffect {
    /// Append to the id's `__transaction_state` partition; later effects wait for it.
    Persist(TxnRecord),
    /// Write a commit or abort marker to each partition, then call
    /// [`TxnCoordinator::markers_written`] (or `markers_failed`) with `writer`.
    WriteMarkers {
        transactional_id: String,
        writer: u64,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        partitions: Vec<(String, i32)>,
    },
}

/// How an EndTxn went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Markers are being written; answer once they are.
    Pending,
    /// Already done (a retried EndTxn).
    Done,
}

#[derive(Debug, Default)]
pub struct TxnCoordinator {
    /// transaction.max.timeout.ms
    max_timeout_ms: i32,
    txns: BTreeMap<String, TxnMeta>,
    /// The marker writer at work per transactional id: one at a time, each with a
    /// number of its own, so a writer that ends late completes nothing asked for
    /// after it (KIP-98: a transaction's markers come before the next one's batches).
    writing: BTreeMap<String, u64>,
    next_writer: u64,
    effects: Vec<TxnEffect>,
}

impl TxnCoordinator {
    pub fn new(max_timeout_ms: i32) -> Self {
        TxnCoordinator {
            max_timeout_ms,
            txns: BTreeMap::new(),
            writing: BTreeMap::new(),
            next_writer: 0,
            effects: Vec::new(),
        }
    }

    pub fn take_effects(&mut self) -> Vec<TxnEffect> {
        std::mem::take(&mut self.effects)
    }

    pub fn get(&self, id: &str) -> Option<&TxnMeta> {
        self.txns.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &TxnMeta)> {
        self.txns.iter()
    }

    /// Puts `id` back as it was (`None`: unknown) after its record could not be
    /// stored: nothing the record would have promised may happen.
    pub fn restore(&mut self, id: &str, before: Option<TxnMeta>) {
        match before {
            Some(m) => {
                self.txns.insert(id.to_string(), m);
            }
            None => {
                self.txns.remove(id);
            }
        }
    }

    fn persist(&mut self, now_ms: i64, id: &str) {
        if let Some(m) = self.txns.get(id) {
            let value = m.value(now_ms);
            self.effects.push(TxnEffect::Persist(TxnRecord {
                transactional_id: id.to_string(),
                value: Some(value),
            }));
        }
    }

    /// Moves an ongoing transaction to its end: Prepare record, then markers.
    fn prepare(&mut self, now_ms: i64, id: &str, commit: bool) {
        let Some(m) = self.txns.get_mut(id) else {
            return;
        };
        m.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        let markers = self.ask_markers(id);
        if planted(Bug::MarkersBeforePrepare) {
            self.effects.extend(markers);
            self.persist(now_ms, id);
        } else {
            self.persist(now_ms, id);
            self.effects.extend(markers);
        }
    }

    /// Markers for `id`'s prepared transaction, unless a writer is still at work for
    /// it (one from before a reload): then [`TxnCoordinator::resume`] asks once that
    /// one has ended.
    fn ask_markers(&mut self, id: &str) -> Option<TxnEffect> {
        let m = self.txns.get(id)?;
        let commit = match m.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return None,
        };
        if self.writing.contains_key(id) {
            return None;
        }
        self.next_writer += 1;
        self.writing.insert(id.to_string(), self.next_writer);
        Some(TxnEffect::WriteMarkers {
            transactional_id: id.to_string(),
            writer: self.next_writer,
            producer_id: m.producer_id,
            epoch: m.epoch,
            commit,
            partitions: m.partitions.iter().cloned().collect(),
        })
    }

    /// Whether `writer` is the writer at work for `id`; it is done with either way.
    fn writer_ends(&mut self, id: &str, writer: u64) -> bool {
        if self.writing.get(id) == Some(&writer) {
            self.writing.remove(id);
            true
        } else {
            false
        }
    }

    /// InitProducerId with a transactional id. `fresh_producer_id` is used when the
    /// id is new or its epochs are exhausted.
    pub fn init_producer_id(
        &mut self,
        now_ms: i64,
        id: &str,
        timeout_ms: i32,
        fresh_producer_id: i64,
    ) -> Result<(i64, i16), TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        let Some(m) = self.txns.get_mut(id) else {
            self.txns.insert(
                id.to_string(),
                TxnMeta {
                    producer_id: fresh_producer_id,
                    epoch: 0,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    started_ms: now_ms,
                },
            );
            self.persist(now_ms, id);
            return Ok((fresh_producer_id, 0));
        };
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // A new incarnation of the producer: fence the old one (new epoch) and
                // abort what it left open. The client retries once that is done.
                m.epoch = m.epoch.saturating_add(1);
                self.prepare(now_ms, id, false);
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                if m.epoch >= i16::MAX - 1 {
                    m.producer_id = fresh_producer_id;
                    m.epoch = 0;
                } else {
                    m.epoch += 1;
                }
                m.state = TxnState::Empty;
                m.timeout_ms = timeout_ms;
                m.partitions.clear();
                let out = (m.producer_id, m.epoch);
                self.persist(now_ms, id);
                Ok(out)
            }
        }
    }

    fn check_producer(&self, id: &str, producer_id: i64, epoch: i16) -> Result<&TxnMeta, TxnError> {
        let m = self
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if m.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != m.epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(m)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition).
    pub fn add_partitions(
        &mut self,
        now_ms: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), TxnError> {
        let m = self.check_producer(id, producer_id, epoch)?;
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Dead => return Err(TxnError::InvalidTxnState),
            _ => {}
        }
        let fresh = m.state != TxnState::Ongoing;
        let known = partitions.iter().all(|p| m.partitions.contains(p));
        if !fresh && known {
            return Ok(());
        }
        let m = self.txns.get_mut(id).expect("checked");
        if fresh {
            m.state = TxnState::Ongoing;
            m.partitions.clear();
            m.started_ms = now_ms;
        }
        m.partitions.extend(partitions.iter().cloned());
        self.persist(now_ms, id);
        Ok(())
    }

    /// EndTxn: commit or abort the open transaction.
    pub fn end(
        &mut self,
        now_ms: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<Ended, TxnError> {
        let m = self.check_producer(id, producer_id, epoch)?;
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {
                self.prepare(now_ms, id, commit);
                Ok(Ended::Pending)
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(Ended::Done),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// The markers `writer` was asked for are durable: complete the transaction.
    /// False, and nothing done, for a writer no longer current (asked for before a
    /// reload): its transaction is not the one now open.
    pub fn markers_written(&mut self, now_ms: i64, id: &str, writer: u64) -> bool {
        if !self.writer_ends(id, writer) {
            return false;
        }
        if let Some(m) = self.txns.get_mut(id) {
            let complete = match m.state {
                TxnState::PrepareCommit => Some(TxnState::CompleteCommit),
                TxnState::PrepareAbort => Some(TxnState::CompleteAbort),
                _ => None,
            };
            if let Some(state) = complete {
                m.state = state;
                m.partitions.clear();
                self.persist(now_ms, id);
            }
        }
        true
    }

    /// The markers of `id` could not all be written: the transaction stays prepared
    /// and [`TxnCoordinator::resume`] asks for them again. False for a writer no
    /// longer current.
    pub fn markers_failed(&mut self, id: &str, writer: u64) -> bool {
        self.writer_ends(id, writer)
    }

    /// Whether `producer_id` at `epoch` has `partition` of `topic` in its open
    /// transaction (KIP-890: a transactional produce elsewhere is refused).
    pub fn verify_partition(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        let Some(m) = self.txns.values().find(|m| m.producer_id == producer_id) else {
            return Err(TxnError::InvalidProducerIdMapping);
        };
        if epoch < m.epoch {
            return Err(TxnError::ProducerFenced);
        }
        if m.state != TxnState::Ongoing
            || epoch != m.epoch
            || !m.partitions.contains(&(topic.to_string(), partition))
        {
            return Err(TxnError::InvalidTxnState);
        }
        Ok(())
    }

    /// Aborts transactions open longer than their timeout, fencing their producer.
    pub fn tick(&mut self, now_ms: i64) {
        let expired: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, m)| {
                m.state == TxnState::Ongoing && now_ms >= m.started_ms + i64::from(m.timeout_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(m) = self.txns.get_mut(&id) {
                m.epoch = m.epoch.saturating_add(1);
            }
            self.prepare(now_ms, &id, false);
        }
    }

    /// Rebuilds from a `__transaction_state` record at start.
    pub fn load(&mut self, now_ms: i64, record: TxnRecord) {
        let Some(v) = record.value else {
            self.txns.remove(&record.transactional_id);
            return;
        };
        self.txns.insert(
            record.transactional_id,
            TxnMeta {
                producer_id: v.producer_id,
                epoch: v.epoch,
                timeout_ms: v.timeout_ms,
                state: v.state,
                partitions: v.partitions.into_iter().collect(),
                // Timeouts of open transactions count again from the restart.
                started_ms: now_ms,
            },
        );
    }

    /// Forgets the transactional ids `select` picks: their partition is now another
    /// coordinator's. A marker writer still at work for one stays counted until it
    /// ends, so a reload cannot start a second one beside it.
    pub fn unload(&mut self, select: impl Fn(&str) -> bool) {
        self.txns.retain(|id, _| !select(id));
    }

    /// Asks again for the markers of every prepared transaction that has no writer
    /// at work: after a load (prepared before a crash or a move of the coordinator)
    /// and after a failed attempt (markers are idempotent in effect).
    pub fn resume(&mut self) {
        let prepared: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, m)| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .map(|(id, _)| id.clone())
            .collect();
        for id in prepared {
            let markers = self.ask_markers(&id);
            self.effects.extend(markers);
        }
    }
}

#[cfg(test)]
mod tests;
