//! The transaction coordinator at work: the pure [`TxnCoordinator`] behind a lock,
//! its records in `__transaction_state` (created on first use, 50 partitions as in
//! Kafka, rebuilt at start), and the end of a transaction carried out in order:
//! the Prepare record made durable, then a marker in every partition of the
//! transaction (offsets staged in `__consumer_offsets` apply or go with it), then
//! the Complete record.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_core::env::Env;
use sluice_core::txn::{Ended, TxnCoordinator, TxnEffect, TxnError, TxnMeta, TxnRecord, TxnState};
use sluice_storage::{LogError, PartitionLog};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::internal::{
    append_records, durable_point, leadership, log_for, partition_for, scan_log, wait_durable,
    DurablePoint, Unavailable, OFFSETS_TOPIC, TXN_TOPIC,
};

struct Inner {
    sm: TxnCoordinator,
    /// `__transaction_state` once it exists: per partition, its log if held here.
    logs: Vec<Option<Arc<PartitionLog>>>,
    /// EndTxn requests waiting for their transaction's markers, by transactional id.
    waiting: BTreeMap<String, Vec<oneshot::Sender<Result<(), String>>>>,
    /// Ticks until prepared transactions whose markers failed are tried again.
    retry_in: u32,
    /// The partitions this broker leads and coordinates, with the leader epoch their
    /// transactional ids were loaded at.
    led: BTreeMap<usize, i32>,
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
                retry_in: 0,
                led: BTreeMap::new(),
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

    /// The transactional ids this broker coordinates, with their state and, for one
    /// in progress, how long it has been open (ms).
    pub fn list(&self) -> Vec<(String, TxnMeta, Option<i64>)> {
        let now = self.now_ms();
        let inner = self.lock();
        inner
            .sm
            .iter()
            .map(|(id, m)| (id.clone(), m.clone(), open_for(m, now)))
            .collect()
    }

    /// What the coordinator of `id` knows of it.
    pub fn describe(&self, id: &str) -> TxnLookup {
        let now = self.now_ms();
        let inner = self.lock();
        let partition = partition_for(id, inner.logs.len().max(1));
        if inner.logs.is_empty() || !inner.led.contains_key(&partition) {
            return TxnLookup::NotCoordinator;
        }
        match inner.sm.get(id) {
            Some(m) => TxnLookup::Found(m.clone(), open_for(m, now)),
            None => TxnLookup::Unknown,
        }
    }

    /// Follows the leadership of `__transaction_state` partitions, as the group
    /// coordinator does: a partition this broker now leads has its transactional ids
    /// rebuilt from its log (transactions caught between Prepare and Complete are
    /// finished by [`Txns::tick`]); one it no longer leads is forgotten.
    pub fn sync_leadership(&self, broker: &Broker) -> Result<(), LogError> {
        let Some((logs, epochs)) = leadership(broker, TXN_TOPIC) else {
            return Ok(());
        };
        let count = logs.len();
        let now = self.now_ms();
        let mut inner = self.lock();
        // Replicas come and go with reassignments: take the logs held now.
        inner.logs = logs.clone();
        let mut failed = None;
        let mut loaded_any = false;
        for (p, epoch) in epochs.into_iter().enumerate() {
            let here = |id: &str| partition_for(id, count) == p;
            match epoch {
                Some(e) if inner.led.get(&p) != Some(&e) => {
                    inner.sm.unload(here);
                    inner.waiting.retain(|id, _| !here(id));
                    let Some(log) = &logs[p] else { continue };
                    let sm = &mut inner.sm;
                    let scanned = scan_log(log, |r| {
                        let Some(key) = r.key.as_ref().filter(|_| !r.control) else {
                            return;
                        };
                        match TxnRecord::decode(key, r.value.as_deref()) {
                            Ok(record) => sm.load(now, record),
                            Err(why) => {
                                warn!(partition = p, offset = r.offset, %why, "skipping unreadable transaction record")
                            }
                        }
                    });
                    match scanned {
                        Ok(()) => {
                            info!(
                                partition = p,
                                epoch = e,
                                "coordinating {TXN_TOPIC} partition"
                            );
                            inner.led.insert(p, e);
                            loaded_any = true;
                        }
                        Err(why) => {
                            inner.sm.unload(here);
                            failed.get_or_insert(LogError::Storage(format!(
                                "{TXN_TOPIC}-{p}: {why}"
                            )));
                        }
                    }
                }
                None if inner.led.contains_key(&p) => {
                    inner.sm.unload(here);
                    inner.waiting.retain(|id, _| !here(id));
                    inner.led.remove(&p);
                    info!(
                        partition = p,
                        "no longer coordinating {TXN_TOPIC} partition"
                    );
                }
                _ => {}
            }
        }
        if loaded_any {
            inner.sm.resume();
        }
        failed.map_or(Ok(()), Err)
    }

    fn ensure_topic(&self, broker: &Broker) -> Result<(), Unavailable> {
        if !self.lock().logs.is_empty() {
            return Ok(());
        }
        broker
            .internal_topic(
                TXN_TOPIC,
                broker.config.transaction_state_log_num_partitions,
                broker.config.transaction_state_log_segment_bytes,
            )
            .map_err(|e| Unavailable(e.to_string()))?;
        self.sync_leadership(broker)
            .map_err(|e| Unavailable(e.to_string()))
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
        let p = partition_for(id, inner.logs.len());
        if !inner.led.contains_key(&p) {
            return Err(Unavailable(format!(
                "not the coordinator of '{id}' ({TXN_TOPIC}-{p} is led elsewhere)"
            )));
        }
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
                    writer,
                    ..
                } if unstored.contains(transactional_id) => {
                    inner.sm.markers_failed(transactional_id, writer);
                }
                TxnEffect::WriteMarkers {
                    transactional_id,
                    writer,
                    producer_id,
                    epoch,
                    commit,
                    partitions,
                } => {
                    // After everything appended for this id so far (its Prepare) is
                    // durable.
                    let prepared = durable_point(&inner.logs, &transactional_id);
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
                            .markers_done(&broker, &transactional_id, writer, written);
                    });
                }
            }
        }
        unstored
    }

    /// The markers `writer` was asked for are durable (or failed): complete its
    /// transaction and release the EndTxn waiting for it. A writer no longer current
    /// (from before a reload) releases nothing: the open transaction is not its.
    fn markers_done(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        writer: u64,
        written: Result<(), String>,
    ) {
        let now = self.now_ms();
        let mut inner = self.lock();
        let outcome = match written {
            Ok(()) => {
                let before = BTreeMap::from([(id.to_string(), inner.sm.get(id).cloned())]);
                if !inner.sm.markers_written(now, id, writer) {
                    return;
                }
                if self.carry_out(broker, &mut inner, &before).is_empty() {
                    Ok(())
                } else {
                    Err("transaction record not written".to_string())
                }
            }
            Err(why) => {
                if !inner.sm.markers_failed(id, writer) {
                    return;
                }
                // The transaction stays prepared; the timer writes its markers again.
                warn!(transactional_id = id, %why, "transaction markers not written");
                Err(why)
            }
        };
        let waiters = inner.waiting.remove(id).unwrap_or_default();
        let upto = durable_point(&inner.logs, id);
        drop(inner);
        self.env.spawn(async move {
            let outcome = match (outcome, upto) {
                (Ok(()), Some((log, end, generation))) => log
                    .wait_committed(end, generation)
                    .await
                    .map_err(|e| e.to_string()),
                (other, _) => other,
            };
            for w in waiters {
                let _ = w.send(outcome.clone());
            }
        });
    }

    fn append(
        &self,
        logs: &[Option<Arc<PartitionLog>>],
        record: &TxnRecord,
    ) -> Result<(), LogError> {
        let Some(log) = log_for(logs, &record.transactional_id) else {
            return Err(LogError::Storage(format!(
                "{TXN_TOPIC} partition of '{}' is not here",
                record.transactional_id
            )));
        };
        append_records(log, [record.encode()], self.env.clock.wall_ms()).map(|_| ())
    }

    pub async fn init_producer_id(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        timeout_ms: i32,
    ) -> Result<Result<(i64, i16), TxnError>, Unavailable> {
        sluice_core::buggify_sleep!(broker.env, 300);
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
        sluice_core::buggify_sleep!(broker.env, 200);
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
        transactional_id: Option<&str>,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        let inner = self.lock();
        if let Some(id) = transactional_id {
            let coordinated_here = !inner.logs.is_empty()
                && inner.led.contains_key(&partition_for(id, inner.logs.len()));
            if !coordinated_here {
                // Another broker coordinates this transaction: checking it would take a
                // call to that coordinator (KIP-890's verification), not made yet.
                return Ok(());
            }
        }
        inner
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
            inner.sm.resume();
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

/// Waits for the Prepare record, then has a marker written to every partition (by
/// this broker where it leads, by WriteTxnMarkers to the leader elsewhere) and waits
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
    sluice_core::buggify_sleep!(broker.env, 500);
    let image = broker.image();
    let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, partition) in partitions {
        // A deleted topic has nothing to mark.
        if let Some(p) = image.partition(topic, *partition) {
            by_leader
                .entry(p.leader)
                .or_default()
                .push((topic.clone(), *partition));
        }
    }
    for (leader, partitions) in by_leader {
        let results = if leader == broker.config.node_id {
            write_local_markers(broker, producer_id, epoch, commit, &partitions).await
        } else {
            write_remote_markers(broker, leader, producer_id, epoch, commit, &partitions).await?
        };
        for ((topic, partition), code) in results {
            if code != crate::codes::NONE {
                return Err(format!("marker for {topic}-{partition}: error {code}"));
            }
        }
    }
    Ok(())
}

/// Writes markers to partitions this broker leads and waits until they are durable
/// (WriteTxnMarkers, and the coordinator's own partitions). Answers a Kafka error
/// code per partition.
pub async fn write_local_markers(
    broker: &Broker,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    partitions: &[(String, i32)],
) -> Vec<((String, i32), i16)> {
    let mut out = Vec::with_capacity(partitions.len());
    let mut written = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let key = (topic.clone(), *partition);
        let replica = match broker.leader_replica(topic, *partition, -1) {
            Ok(r) => r,
            Err(crate::codes::UNKNOWN_TOPIC_OR_PARTITION) => {
                out.push((key, crate::codes::NONE)); // deleted: nothing to mark
                continue;
            }
            Err(code) => {
                out.push((key, code));
                continue;
            }
        };
        let appended = {
            let _guard = broker.txns.append_guard();
            replica.log.append_marker(producer_id, epoch, commit, 0)
        };
        match appended {
            Ok(a) => written.push((replica, a.last_offset + 1, a.generation, key)),
            Err(e) => out.push((key, crate::codes::log_error(&e))),
        }
    }
    for (replica, end, generation, key) in written {
        let code = match replica.log.wait_committed(end, generation).await {
            Ok(()) => {
                if key.0 == OFFSETS_TOPIC {
                    broker
                        .groups
                        .txn_marker(key.1 as usize, producer_id, commit);
                }
                crate::codes::NONE
            }
            Err(e) => crate::codes::log_error(&e),
        };
        out.push((key, code));
    }
    out
}

/// WriteTxnMarkers to the leader of `partitions`.
async fn write_remote_markers(
    broker: &Broker,
    leader: i32,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    partitions: &[(String, i32)],
) -> Result<Vec<((String, i32), i16)>, String> {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest};
    use kafka_protocol::protocol::StrBytes;

    let addr = broker
        .broker_address(leader)
        .ok_or_else(|| format!("broker {leader} is not registered"))?;
    let mut client = crate::client::Client::connect(broker.env.net.as_ref(), &addr, "sluice-txn")
        .await
        .map_err(|e| e.to_string())?;
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        topics.entry(t).or_default().push(*p);
    }
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_transaction_result(commit)
        .with_coordinator_epoch(0)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_indexes(ps)
                })
                .collect(),
        )]);
    let version = client
        .version(ApiKey::WriteTxnMarkers, 1)
        .map_err(|e| e.to_string())?;
    let resp = client.call(req, version).await.map_err(|e| e.to_string())?;
    Ok(resp
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| ((t.name.to_string(), p.partition_index), p.error_code))
        })
        .collect())
}

/// A transactional id as its coordinator sees it.
pub enum TxnLookup {
    /// This broker does not coordinate the id's partition.
    NotCoordinator,
    Unknown,
    /// Its metadata, and how long its transaction in progress has been open (ms).
    Found(TxnMeta, Option<i64>),
}

/// How long a transaction in progress has been open (ms); None when none is.
fn open_for(m: &TxnMeta, now_ms: i64) -> Option<i64> {
    matches!(
        m.state,
        TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
    )
    .then(|| (now_ms - m.started_ms()).max(0))
}
