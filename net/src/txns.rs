//! The transaction coordinator at work: the pure [`TxnCoordinator`] behind a lock,
//! its records in `__transaction_state` (created on first use, 50 partitions as in
//! Kafka, rebuilt at start), and the end of a transaction carried out in order:
//! the Prepare record made durable, then a marker in every partition of the
//! transaction (offsets staged in `__consumer_offsets` apply or go with it), then
//! the Complete record.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_core::env::Env;
use sluice_core::txn::{Ended, TxnCoordinator, TxnEffect, TxnError, TxnMeta, TxnRecord};
use sluice_storage::{LogError, PartitionLog};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::internal::{
    append_records, durable_point, partition_for, scan_log, wait_durable, DurablePoint,
    Unavailable, OFFSETS_TOPIC, TXN_TOPIC,
};

struct Inner {
    sm: TxnCoordinator,
    logs: Vec<Arc<PartitionLog>>,
    /// EndTxn requests waiting for their transaction's markers, by transactional id.
    waiting: BTreeMap<String, Vec<oneshot::Sender<Result<(), String>>>>,
    /// Transactional ids whose markers are being written.
    writing: BTreeSet<String>,
    /// Ticks until prepared transactions whose markers failed are tried again.
    retry_in: u32,
}

pub struct Txns {
    env: Env,
    inner: Mutex<Inner>,
    /// Held while a transactional batch is checked and appended, and while a marker
    /// is appended: a batch checked as part of an open transaction is in the log
    /// before that transaction's marker, never after it.
    appends: Mutex<()>,
}

impl Txns {
    pub fn new(env: Env, max_timeout_ms: i32) -> Txns {
        Txns {
            env,
            inner: Mutex::new(Inner {
                sm: TxnCoordinator::new(max_timeout_ms),
                logs: Vec::new(),
                waiting: BTreeMap::new(),
                writing: BTreeSet::new(),
                retry_in: 0,
            }),
            appends: Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> i64 {
        self.env.clock.monotonic().as_millis() as i64
    }

    /// Rebuilds the coordinator from `__transaction_state` (at start); transactions
    /// caught between Prepare and Complete are finished by [`Txns::tick`].
    pub fn load(&self, logs: Vec<Arc<PartitionLog>>) -> Result<(), LogError> {
        let now = self.now_ms();
        let mut inner = self.lock();
        for (p, log) in logs.iter().enumerate() {
            scan_log(log, |r| {
                let Some(key) = r.key.as_ref().filter(|_| !r.control) else {
                    return;
                };
                match TxnRecord::decode(key, r.value.as_deref()) {
                    Ok(record) => inner.sm.load(now, record),
                    Err(why) => warn!(partition = p, offset = r.offset, %why, "skipping unreadable transaction record"),
                }
            })
            .map_err(|e| LogError::Storage(format!("{TXN_TOPIC}-{p}: {e}")))?;
        }
        if !logs.is_empty() {
            info!(
                transactional_ids = inner.sm.iter().count(),
                "transaction state loaded"
            );
        }
        inner.sm.resume();
        inner.logs = logs;
        Ok(())
    }

    fn ensure_topic(&self, broker: &Broker) -> Result<(), Unavailable> {
        if !self.lock().logs.is_empty() {
            return Ok(());
        }
        let logs = broker
            .internal_topic(
                TXN_TOPIC,
                broker.config.transaction_state_log_num_partitions,
                broker.config.transaction_state_log_segment_bytes,
            )
            .map_err(|e| Unavailable(e.to_string()))?;
        let mut inner = self.lock();
        if inner.logs.is_empty() {
            inner.logs = logs;
        }
        Ok(())
    }

    /// Runs `f` on the coordinator and carries out its effects: records appended,
    /// marker writing started. Returns `f`'s result and the durability point of the
    /// id's partition, which the answer must wait for.
    fn run<R>(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        f: impl FnOnce(&mut Inner, i64) -> R,
    ) -> Result<(R, DurablePoint), Unavailable> {
        self.ensure_topic(broker)?;
        let now = self.now_ms();
        let mut inner = self.lock();
        let before = BTreeMap::from([(id.to_string(), inner.sm.get(id).cloned())]);
        let r = f(&mut inner, now);
        let unstored = self.carry_out(broker, &mut inner, &before);
        if unstored.contains(id) {
            return Err(Unavailable("transaction record not written".into()));
        }
        Ok((r, durable_point(&inner.logs, id)))
    }

    /// Carries out the coordinator's effects. A record that cannot be written puts
    /// its transactional id back as it was in `before` (and its markers are not
    /// written): returns the ids that were.
    fn carry_out(
        &self,
        broker: &Arc<Broker>,
        inner: &mut Inner,
        before: &BTreeMap<String, Option<TxnMeta>>,
    ) -> BTreeSet<String> {
        let mut unstored = BTreeSet::new();
        for effect in inner.sm.take_effects() {
            match effect {
                TxnEffect::Persist(record) => {
                    let id = record.transactional_id.clone();
                    if unstored.contains(&id) {
                        continue;
                    }
                    if let Err(e) = self.append(&inner.logs, &record) {
                        warn!(transactional_id = %id, error = %e, "transaction record not written");
                        if let Some(was) = before.get(&id) {
                            inner.sm.restore(&id, was.clone());
                        }
                        unstored.insert(id);
                    }
                }
                TxnEffect::WriteMarkers {
                    ref transactional_id,
                    ..
                } if unstored.contains(transactional_id) => {}
                TxnEffect::WriteMarkers {
                    transactional_id,
                    producer_id,
                    epoch,
                    commit,
                    partitions,
                } => {
                    // After everything appended for this id so far (its Prepare) is
                    // durable.
                    let prepared = durable_point(&inner.logs, &transactional_id);
                    inner.writing.insert(transactional_id.clone());
                    let broker = broker.clone();
                    self.env.spawn(async move {
                        let written = write_markers(
                            &broker,
                            prepared,
                            producer_id,
                            epoch,
                            commit,
                            &partitions,
                        )
                        .await;
                        broker
                            .txns
                            .markers_done(&broker, &transactional_id, epoch, written);
                    });
                }
            }
        }
        unstored
    }

    /// Markers of `id`'s transaction at `epoch` are durable (or failed): complete it
    /// and release the EndTxn waiting for it.
    fn markers_done(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        epoch: i16,
        written: Result<(), String>,
    ) {
        let now = self.now_ms();
        let mut inner = self.lock();
        inner.writing.remove(id);
        let waiters = inner.waiting.remove(id).unwrap_or_default();
        let outcome = match written {
            Ok(()) => {
                let before = BTreeMap::from([(id.to_string(), inner.sm.get(id).cloned())]);
                inner.sm.markers_written(now, id, epoch);
                if self.carry_out(broker, &mut inner, &before).is_empty() {
                    Ok(())
                } else {
                    Err("transaction record not written".to_string())
                }
            }
            Err(why) => {
                // The transaction stays prepared; the timer writes its markers again.
                warn!(transactional_id = id, %why, "transaction markers not written");
                Err(why)
            }
        };
        let upto = durable_point(&inner.logs, id);
        drop(inner);
        self.env.spawn(async move {
            let outcome = match (outcome, upto) {
                (Ok(()), Some((log, end))) => {
                    log.wait_durable(end).await.map_err(|e| e.to_string())
                }
                (other, _) => other,
            };
            for w in waiters {
                let _ = w.send(outcome.clone());
            }
        });
    }

    fn append(&self, logs: &[Arc<PartitionLog>], record: &TxnRecord) -> Result<(), LogError> {
        let Some(log) = logs.get(partition_for(&record.transactional_id, logs.len())) else {
            return Err(LogError::Storage(format!("{TXN_TOPIC} does not exist")));
        };
        append_records(log, [record.encode()], self.env.clock.wall_ms()).map(|_| ())
    }

    pub async fn init_producer_id(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        timeout_ms: i32,
    ) -> Result<Result<(i64, i16), TxnError>, Unavailable> {
        let fresh = broker
            .new_producer_id()
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        let (r, upto) = self.run(broker, id, |inner, now| {
            inner.sm.init_producer_id(now, id, timeout_ms, fresh)
        })?;
        wait_durable(upto).await?;
        Ok(r)
    }

    pub async fn add_partitions(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Result<(), TxnError>, Unavailable> {
        let (r, upto) = self.run(broker, id, |inner, now| {
            inner
                .sm
                .add_partitions(now, id, producer_id, epoch, partitions)
        })?;
        wait_durable(upto).await?;
        Ok(r)
    }

    /// EndTxn: answered once the markers are written and the end is stored.
    pub async fn end(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<Result<(), TxnError>, Unavailable> {
        let (tx, rx) = oneshot::channel();
        let (r, upto) = self.run(broker, id, |inner, now| {
            let r = inner.sm.end(now, id, producer_id, epoch, commit);
            if r == Ok(Ended::Pending) {
                // Registered before the markers are started, so their end finds it.
                inner.waiting.entry(id.to_string()).or_default().push(tx);
            }
            r
        })?;
        match r {
            Err(e) => {
                wait_durable(upto).await?;
                Ok(Err(e))
            }
            Ok(Ended::Done) => {
                wait_durable(upto).await?;
                Ok(Ok(()))
            }
            Ok(Ended::Pending) => match rx.await {
                Ok(Ok(())) => Ok(Ok(())),
                Ok(Err(why)) => Err(Unavailable(why)),
                Err(_) => Err(Unavailable("transaction coordinator stopped".into())),
            },
        }
    }

    /// Serializes transactional appends with marker appends (see `appends`).
    pub fn append_guard(&self) -> MutexGuard<'_, ()> {
        self.appends.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// KIP-890: a transactional batch may only go to a partition in its open
    /// transaction, from the current epoch.
    pub fn verify(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        self.lock()
            .sm
            .verify_partition(producer_id, epoch, topic, partition)
    }

    /// Aborts timed-out transactions; the node calls it periodically.
    pub fn tick(&self, broker: &Arc<Broker>) {
        let now = self.now_ms();
        let mut inner = self.lock();
        if inner.logs.is_empty() {
            return;
        }
        let before: BTreeMap<String, Option<TxnMeta>> = inner
            .sm
            .iter()
            .map(|(id, m)| (id.clone(), Some(m.clone())))
            .collect();
        inner.sm.tick(now);
        // Every second, markers that failed (a partition offline) are tried again.
        if inner.retry_in == 0 {
            inner.retry_in = 10;
            let writing = inner.writing.clone();
            inner.sm.resume_except(&writing);
        }
        inner.retry_in -= 1;
        self.carry_out(broker, &mut inner, &before);
    }

    /// Transactions started at load (prepared before a crash): their markers.
    pub fn start(&self, broker: &Arc<Broker>) {
        let mut inner = self.lock();
        self.carry_out(broker, &mut inner, &BTreeMap::new());
    }
}

/// Waits for the Prepare record, then writes a marker to every partition and waits
/// until all are durable; offsets staged in `__consumer_offsets` follow the marker.
async fn write_markers(
    broker: &Arc<Broker>,
    prepared: DurablePoint,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    partitions: &[(String, i32)],
) -> Result<(), String> {
    wait_durable(prepared).await.map_err(|e| e.0)?;
    let mut written = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let Some(log) = broker.partition(topic, *partition) else {
            continue; // a deleted topic has nothing to mark
        };
        let appended = {
            let _guard = broker.txns.append_guard();
            log.append_marker(producer_id, epoch, commit, 0)
        };
        let a = appended.map_err(|e| format!("marker for {topic}-{partition}: {e}"))?;
        written.push((log, a.last_offset + 1, topic, *partition));
    }
    for (log, end, topic, partition) in written {
        log.wait_durable(end)
            .await
            .map_err(|e| format!("marker for {topic}-{partition}: {e}"))?;
        if topic == OFFSETS_TOPIC {
            broker
                .groups
                .txn_marker(partition as usize, producer_id, commit);
        }
    }
    Ok(())
}
