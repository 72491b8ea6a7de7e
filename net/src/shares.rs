//! Share groups on a partition leader (KIP-932): the share partitions of the groups
//! that read the partitions this broker leads, the share sessions of their members,
//! and the share-group state store over `__share_group_state`.
//!
//! A share partition's state is written to `__share_group_state` whenever members'
//! acknowledgements, releases or expired locks change it, and the change is answered
//! only once durable there; a leader that takes a partition over reads the state back
//! (from its own replica of the state partition, or with ReadShareGroupState from that
//! partition's leader). Acquisitions are not written: after a leader change, records
//! that were acquired are delivered again, as in Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sluice_core::env::Env;
use sluice_core::share::{
    AckType, Acquired, ShareError, ShareKey, ShareLimits, SharePartition, ShareSnapshot,
};
use sluice_storage::PartitionLog;
use tracing::warn;

use crate::broker::Broker;
use crate::codes;
use crate::internal::{append_records, partition_for, scan_log, wait_durable, Unavailable};

pub const SHARE_STATE_TOPIC: &str = "__share_group_state";

/// A share partition by group, topic and partition.
pub type PartKey = (String, String, i32);

/// A topic partition by name.
pub type TopicPartition = (String, i32);

/// One acknowledgement batch: first and last offset, and the types.
pub type AckBatch = (i64, i64, Vec<i8>);

struct Held {
    sp: SharePartition,
    key: ShareKey,
    /// The leader epoch it was loaded at: a new epoch loads it again.
    leader_epoch: i32,
}

struct Session {
    /// The epoch the member's next request must carry.
    next_epoch: i32,
    partitions: BTreeSet<TopicPartition>,
    last_used_ms: i64,
}

#[derive(Default)]
struct Inner {
    partitions: BTreeMap<PartKey, Held>,
    sessions: BTreeMap<(String, String), Session>,
    /// On leaders of `__share_group_state` partitions: the latest state per key.
    store: BTreeMap<ShareKey, ShareSnapshot>,
    /// The state partitions `store` holds, with the leader epoch they were read at.
    store_loaded: BTreeMap<usize, i32>,
}

/// What opening, continuing or closing a share session decided.
pub struct Stepped {
    /// The session's partitions (to fetch from), after this request's changes.
    pub partitions: Vec<TopicPartition>,
    /// Per acknowledged partition, its error code (0: applied).
    pub ack_errors: BTreeMap<TopicPartition, i16>,
    /// Share partitions whose state changed and must be written.
    pub dirty: BTreeSet<PartKey>,
}

pub struct Shares {
    env: Env,
    limits: ShareLimits,
    max_sessions: usize,
    session_timeout_ms: i64,
    inner: Mutex<Inner>,
    /// Writes of state go one at a time, so a later state never lands before an
    /// earlier one.
    writer: tokio::sync::Mutex<()>,
    /// Idle connections to other brokers' state stores, by broker id.
    peers: Mutex<BTreeMap<i32, crate::client::Client>>,
}

impl Shares {
    pub fn new(env: Env, config: &sluice_core::config::BrokerConfig) -> Shares {
        Shares {
            env,
            limits: ShareLimits {
                lock_ms: i64::from(config.group_share_record_lock_duration_ms),
                max_deliveries: config.group_share_delivery_count_limit as i16,
                max_in_flight: i64::from(config.group_share_partition_max_record_locks),
            },
            max_sessions: config.group_share_max_share_sessions.max(0) as usize,
            session_timeout_ms: i64::from(config.group_share_session_timeout_ms),
            inner: Mutex::new(Inner::default()),
            writer: tokio::sync::Mutex::new(()),
            peers: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn now_ms(&self) -> i64 {
        self.env.clock.monotonic().as_millis() as i64
    }

    /// The group's limits: its `share.record.lock.duration.ms` over the broker's.
    fn limits_for(&self, group_configs: Option<&BTreeMap<String, String>>) -> ShareLimits {
        let lock_ms = group_configs
            .and_then(|c| c.get("share.record.lock.duration.ms"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.limits.lock_ms);
        ShareLimits {
            lock_ms,
            ..self.limits
        }
    }

    /// The share-session step of a ShareFetch (`fetch`) or ShareAcknowledge, with the
    /// request's acknowledgements applied in between: epoch 0 opens a session (fetch
    /// only, no acknowledgements), -1 closes it after the acknowledgements, any other
    /// epoch must be the session's next. Forgotten partitions and closed sessions give
    /// back the member's records.
    #[allow(clippy::too_many_arguments)] // the request's parts
    pub fn step(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
        fetch: bool,
        add: &[TopicPartition],
        forget: &[TopicPartition],
        acks: &[(TopicPartition, Vec<AckBatch>)],
    ) -> Result<Stepped, i16> {
        let now = self.now_ms();
        let mut inner = self.lock();
        let sid = (group.to_string(), member.to_string());
        let mut dirty = BTreeSet::new();
        match epoch {
            // Only ShareFetch opens sessions, and a new session has nothing to
            // acknowledge yet.
            0 if !fetch => return Err(codes::INVALID_SHARE_SESSION_EPOCH),
            0 if !acks.is_empty() => return Err(codes::INVALID_REQUEST),
            0 => {
                if let Some(old) = inner.sessions.remove(&sid) {
                    release(&mut inner, group, member, &old.partitions, &mut dirty);
                } else if inner.sessions.len() >= self.max_sessions {
                    return Err(codes::SHARE_SESSION_LIMIT_REACHED);
                }
                inner.sessions.insert(
                    sid.clone(),
                    Session {
                        next_epoch: 0,
                        partitions: BTreeSet::new(),
                        last_used_ms: now,
                    },
                );
            }
            _ => match inner.sessions.get(&sid) {
                None => return Err(codes::SHARE_SESSION_NOT_FOUND),
                Some(s) if epoch != -1 && epoch != s.next_epoch => {
                    let old = inner.sessions.remove(&sid).expect("found");
                    release(&mut inner, group, member, &old.partitions, &mut dirty);
                    // The released records are written by the next tick.
                    return Err(codes::INVALID_SHARE_SESSION_EPOCH);
                }
                Some(_) if epoch == -1 && !forget.is_empty() => return Err(codes::INVALID_REQUEST),
                Some(_) => {}
            },
        }
        // Acknowledgements first: records of partitions forgotten below are still held.
        let mut ack_errors = BTreeMap::new();
        for (tp, batches) in acks {
            let pk = (group.to_string(), tp.0.clone(), tp.1);
            let code = match inner.partitions.get_mut(&pk) {
                None => codes::INVALID_RECORD_STATE,
                Some(h) => {
                    let mut code = codes::NONE;
                    for (first, last, types) in batches {
                        let types: Option<Vec<AckType>> =
                            types.iter().map(|t| AckType::from_code(*t)).collect();
                        let r = match types {
                            None => Err(ShareError::InvalidRequest),
                            Some(types) => h.sp.acknowledge(member, *first, *last, &types),
                        };
                        match r {
                            Ok(()) => {
                                dirty.insert(pk.clone());
                            }
                            Err(e) => code = share_error(e),
                        }
                    }
                    code
                }
            };
            ack_errors.insert(tp.clone(), code);
        }
        let session = inner.sessions.get_mut(&sid).expect("opened or found");
        session.last_used_ms = now;
        let partitions: Vec<TopicPartition>;
        if epoch == -1 {
            let old = inner.sessions.remove(&sid).expect("found");
            release(&mut inner, group, member, &old.partitions, &mut dirty);
            partitions = Vec::new();
        } else {
            session.next_epoch += 1;
            session.partitions.extend(add.iter().cloned());
            let mut gone = BTreeSet::new();
            for tp in forget {
                if session.partitions.remove(tp) {
                    gone.insert(tp.clone());
                }
            }
            partitions = session.partitions.iter().cloned().collect();
            release(&mut inner, group, member, &gone, &mut dirty);
        }
        Ok(Stepped {
            partitions,
            ack_errors,
            dirty,
        })
    }

    /// Makes sure this leader holds the group's share partition at `leader_epoch`,
    /// reading its state back, or starting it where `share.auto.offset.reset` says.
    pub async fn load(
        &self,
        broker: &Arc<Broker>,
        group: &str,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        log: &PartitionLog,
    ) -> Result<(), Unavailable> {
        let pk = (group.to_string(), topic.to_string(), partition);
        // The group's configs as they are now: a changed lock duration applies from
        // the next acquisition on.
        let image = broker.image();
        let configs = image.group_configs.get(group);
        let limits = self.limits_for(configs);
        if let Some(h) = self
            .lock()
            .partitions
            .get_mut(&pk)
            .filter(|h| h.leader_epoch == leader_epoch)
        {
            h.sp.set_limits(limits);
            return Ok(());
        }
        let Some(t) = broker.topic(topic) else {
            return Err(Unavailable(format!("topic '{topic}' is gone")));
        };
        let key = ShareKey {
            group: group.to_string(),
            topic_id: t.id,
            partition,
        };
        let sp = match read_state(broker, &key).await? {
            Some(snapshot) => SharePartition::restore(&snapshot, limits),
            None => {
                let earliest = configs
                    .and_then(|c| c.get("share.auto.offset.reset"))
                    .is_some_and(|v| v == "earliest");
                let start = if earliest {
                    log.log_start_offset()
                } else {
                    log.high_watermark()
                };
                SharePartition::new(start, limits)
            }
        };
        sluice_core::sim_event!(
            "share {group} {topic}-{partition}: loaded at leader epoch {leader_epoch}: start {} end {} available {:?}",
            sp.start_offset(),
            sp.end_offset(),
            sp.available_offsets()
        );
        let mut inner = self.lock();
        let stale = inner
            .partitions
            .get(&pk)
            .is_none_or(|h| h.leader_epoch != leader_epoch);
        if stale {
            inner.partitions.insert(
                pk,
                Held {
                    sp,
                    key,
                    leader_epoch,
                },
            );
        }
        Ok(())
    }

    /// Acquires records of a held share partition for `member`: records to deliver
    /// again if there are any, else new ones below the high watermark, at most
    /// `max_records`. Returns the stored batches to send
    /// and the acquired offsets.
    pub fn acquire(
        &self,
        pk: &PartKey,
        member: &str,
        log: &PartitionLog,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<(Bytes, Vec<Acquired>), sluice_storage::LogError> {
        let now = self.now_ms();
        let mut inner = self.lock();
        let Some(h) = inner.partitions.get_mut(pk) else {
            return Ok((Bytes::new(), Vec::new()));
        };
        let log_start = log.log_start_offset();
        h.sp.skip_to(log_start);
        let available = h.sp.available_offsets();
        if let Some(&first) = available.first() {
            let read = log.read(first, max_bytes)?;
            let last = last_offset(&read.batches).unwrap_or(first - 1);
            let offsets = available.into_iter().filter(|o| *o <= last);
            let acquired =
                h.sp.acquire_available(member, now, offsets, max_records.max(1));
            return Ok((read.batches, acquired));
        }
        let from = h.sp.end_offset();
        if from >= log.high_watermark() || from >= h.sp.acquirable_end() {
            sluice_core::sim_event!(
                "share {} {}-{}: nothing for {member}: start {} end {from} hw {} in flight {}",
                pk.0,
                pk.1,
                pk.2,
                h.sp.start_offset(),
                log.high_watermark(),
                h.sp.in_flight()
            );
            return Ok((Bytes::new(), Vec::new()));
        }
        let read = log.read(from, max_bytes)?;
        let (len, last) = batches_for(&read.batches, from, max_records);
        let Some(last) = last else {
            return Ok((Bytes::new(), Vec::new()));
        };
        let Some(acquired) = h.sp.acquire_new(member, now, log_start, last) else {
            return Ok((Bytes::new(), Vec::new()));
        };
        Ok((read.batches.slice(..len), vec![acquired]))
    }

    /// The lock duration members of `group` are told (ShareFetch's
    /// AcquisitionLockTimeoutMs).
    pub fn lock_ms(&self, group_configs: Option<&BTreeMap<String, String>>) -> i32 {
        self.limits_for(group_configs).lock_ms as i32
    }

    /// Writes the state of each share partition in `dirty`, in turn; returns those
    /// that could not be written. A share partition whose write fails is dropped, to be
    /// read back from the store: the changes not written are undone (the write may yet
    /// have landed, when it failed waiting for durability, so the outcome of those
    /// changes is unknown to the members told of the failure).
    pub async fn persist(
        &self,
        broker: &Arc<Broker>,
        dirty: &BTreeSet<PartKey>,
    ) -> BTreeMap<PartKey, String> {
        let _writing = self.writer.lock().await;
        let mut failed = BTreeMap::new();
        if sluice_core::sim::planted(sluice_core::sim::Bug::ShareAckNotDurable) {
            return failed;
        }
        for pk in dirty {
            let state = self
                .lock()
                .partitions
                .get(pk)
                .map(|h| (h.key.clone(), h.sp.snapshot()));
            let Some((key, snapshot)) = state else {
                // Dropped after an earlier write failed: this change went with it.
                failed.insert(pk.clone(), "share partition reloading".into());
                continue;
            };
            if let Err(e) = write_state(broker, &key, &snapshot).await {
                warn!(group = %pk.0, topic = %pk.1, partition = pk.2, error = %e.0, "share-group state not written");
                // What is held here is ahead of what is stored: drop it, so the next
                // fetch starts again from the stored state (as Kafka rolls back).
                self.lock().partitions.remove(pk);
                failed.insert(pk.clone(), e.0);
            }
        }
        failed
    }

    /// Expires acquisition locks and idle sessions, and forgets share partitions this
    /// broker no longer leads; returns the share partitions to write.
    pub fn tick(&self, broker: &Broker) -> BTreeSet<PartKey> {
        let now = self.now_ms();
        let mut inner = self.lock();
        let mut dirty = BTreeSet::new();
        inner
            .partitions
            .retain(|(_, topic, p), _| broker.replica(topic, *p).is_some_and(|r| r.is_leader()));
        for (pk, h) in inner.partitions.iter_mut() {
            if h.sp.expire_locks(now) > 0 {
                dirty.insert(pk.clone());
            }
        }
        let idle: Vec<(String, String)> = inner
            .sessions
            .iter()
            .filter(|(_, s)| now - s.last_used_ms >= self.session_timeout_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for sid in idle {
            let s = inner.sessions.remove(&sid).expect("listed");
            release(&mut inner, &sid.0, &sid.1, &s.partitions, &mut dirty);
        }
        dirty
    }

    /// A share partition's start offset and in-flight count, if held here.
    pub fn describe(&self, pk: &PartKey) -> Option<(i64, i64)> {
        self.lock()
            .partitions
            .get(pk)
            .map(|h| (h.sp.start_offset(), h.sp.in_flight()))
    }

    // ---- the state store, on leaders of `__share_group_state` partitions ----

    /// The state stored for `key`, if this broker leads its state partition.
    pub fn stored(&self, broker: &Broker, key: &ShareKey) -> Result<Option<ShareSnapshot>, i16> {
        let (log, p, epoch) = led_state_partition(broker, key).ok_or(codes::NOT_COORDINATOR)?;
        let mut inner = self.lock();
        if inner.store_loaded.get(&p) != Some(&epoch) {
            let count = broker.topic(SHARE_STATE_TOPIC).map_or(0, |t| t.partitions) as usize;
            inner
                .store
                .retain(|k, _| partition_for(&k.coordinator_key(), count) != p);
            let mut loaded = BTreeMap::new();
            scan_log(&log, |r| {
                let Some(k) = r.key.as_deref().and_then(ShareKey::decode) else {
                    return;
                };
                match r.value.as_deref().map(ShareSnapshot::decode) {
                    Some(Some(v)) => {
                        loaded.insert(k, v);
                    }
                    Some(None) => {
                        warn!(group = %k.group, "unreadable share-group state record skipped")
                    }
                    None => {
                        loaded.remove(&k);
                    }
                }
            })
            .map_err(|e| {
                warn!(partition = p, error = %e, "reading {SHARE_STATE_TOPIC}");
                codes::COORDINATOR_NOT_AVAILABLE
            })?;
            inner.store.extend(loaded);
            inner.store_loaded.insert(p, epoch);
        }
        Ok(inner.store.get(key).cloned())
    }

    /// Stores `snapshot` for `key` if this broker leads its state partition, once
    /// durable.
    pub async fn store(
        &self,
        broker: &Broker,
        key: &ShareKey,
        snapshot: &ShareSnapshot,
    ) -> Result<(), i16> {
        let (log, p, epoch) = led_state_partition(broker, key).ok_or(codes::NOT_COORDINATOR)?;
        let generation = log.generation();
        let appended = append_records(
            &log,
            [(key.encode(), Some(snapshot.encode()))],
            self.env.clock.wall_ms(),
        )
        .map_err(|e| codes::log_error(&e))?;
        let end = appended.base_offset + 1;
        wait_durable(Some((log, end, generation)))
            .await
            .map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)?;
        let mut inner = self.lock();
        if inner.store_loaded.get(&p) == Some(&epoch) {
            inner.store.insert(key.clone(), snapshot.clone());
        }
        Ok(())
    }
}

/// Gives back the records `member` holds in `partitions` of `group`.
fn release(
    inner: &mut Inner,
    group: &str,
    member: &str,
    partitions: &BTreeSet<TopicPartition>,
    dirty: &mut BTreeSet<PartKey>,
) {
    for (topic, p) in partitions {
        let pk = (group.to_string(), topic.clone(), *p);
        if let Some(h) = inner.partitions.get_mut(&pk) {
            h.sp.release_member(member);
            dirty.insert(pk);
        }
    }
}

pub fn share_error(e: ShareError) -> i16 {
    match e {
        ShareError::InvalidRecordState => codes::INVALID_RECORD_STATE,
        ShareError::InvalidRequest => codes::INVALID_REQUEST,
    }
}

/// The last offset of the last whole batch in `batches`.
fn last_offset(batches: &[u8]) -> Option<i64> {
    sluice_storage::batch::Batches::new(batches, false)
        .last()
        .map(|(_, h)| h.last_offset())
}

/// How many bytes of `batches` to send for at most `max_records` records from `from`
/// (whole batches), and the last offset to acquire: a batch may be acquired in part,
/// as members take only the offsets acquired for them.
fn batches_for(batches: &[u8], from: i64, max_records: usize) -> (usize, Option<i64>) {
    let mut len = 0;
    let mut last = None;
    let mut left = max_records.max(1) as i64;
    for (at, h) in sluice_storage::batch::Batches::new(batches, false) {
        if h.last_offset() < from {
            len = at + h.size;
            continue;
        }
        if left <= 0 {
            break;
        }
        let first = from.max(h.base_offset);
        let take = (h.last_offset() - first + 1).min(left);
        left -= take;
        len = at + h.size;
        last = Some(first + take - 1);
    }
    (len, last)
}

/// The state partition of `key` if this broker leads it: its log, number and leader
/// epoch.
fn led_state_partition(broker: &Broker, key: &ShareKey) -> Option<(Arc<PartitionLog>, usize, i32)> {
    let count = broker.topic(SHARE_STATE_TOPIC)?.partitions as usize;
    let p = partition_for(&key.coordinator_key(), count);
    let replica = broker
        .replica(SHARE_STATE_TOPIC, p as i32)
        .filter(|r| r.is_leader())?;
    Some((replica.log.clone(), p, replica.meta().leader_epoch))
}

/// The leader of `key`'s state partition, creating `__share_group_state` on first use
/// (as the coordinators create theirs) and waiting a little for it.
async fn state_leader(broker: &Arc<Broker>, key: &ShareKey) -> Result<i32, Unavailable> {
    for _ in 0..100 {
        let logs = broker.internal_topic(
            SHARE_STATE_TOPIC,
            broker.config.share_coordinator_state_topic_num_partitions,
            broker.config.offsets_topic_segment_bytes,
        );
        if let Ok(logs) = logs {
            let p = partition_for(&key.coordinator_key(), logs.len());
            let leader = broker
                .image()
                .partition(SHARE_STATE_TOPIC, p as i32)
                .map_or(-1, |s| s.leader);
            if leader >= 0 {
                return Ok(leader);
            }
        }
        broker
            .env
            .clock
            .sleep(std::time::Duration::from_millis(100))
            .await;
    }
    Err(Unavailable(format!(
        "{SHARE_STATE_TOPIC} has no leader for group '{}'",
        key.group
    )))
}

/// Reads `key`'s state from the leader of its state partition.
pub async fn read_state(
    broker: &Arc<Broker>,
    key: &ShareKey,
) -> Result<Option<ShareSnapshot>, Unavailable> {
    let leader = state_leader(broker, key).await?;
    if leader == broker.config.node_id {
        return broker
            .shares
            .stored(broker, key)
            .map_err(|code| Unavailable(format!("share-group state unreadable (error {code})")));
    }
    remote::read(broker, leader, key).await
}

/// Writes `key`'s state to the leader of its state partition, durably.
async fn write_state(
    broker: &Arc<Broker>,
    key: &ShareKey,
    snapshot: &ShareSnapshot,
) -> Result<(), Unavailable> {
    let leader = state_leader(broker, key).await?;
    if leader == broker.config.node_id {
        return broker
            .shares
            .store(broker, key, snapshot)
            .await
            .map_err(|code| Unavailable(format!("share-group state not stored (error {code})")));
    }
    remote::write(broker, leader, key, snapshot).await
}

/// ReadShareGroupState and WriteShareGroupState to the leader of a state partition.
mod remote {
    use kafka_protocol::messages::{
        read_share_group_state_request, write_share_group_state_request, ApiKey,
        ReadShareGroupStateRequest, WriteShareGroupStateRequest,
    };
    use kafka_protocol::protocol::StrBytes;
    use sluice_core::share::{RecordState, ShareKey, ShareSnapshot, StateBatch};

    use super::*;

    /// Sends `req` to `leader` over an idle connection if there is one, else a new
    /// one; the connection is kept for the next call if this one went well.
    async fn call<R: kafka_protocol::protocol::Request>(
        broker: &Broker,
        leader: i32,
        req: R,
    ) -> Result<R::Response, Unavailable> {
        let peers = &broker.shares.peers;
        let idle = peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&leader);
        let mut c = match idle {
            Some(c) => c,
            None => {
                let addr = broker
                    .broker_address(leader)
                    .ok_or_else(|| Unavailable(format!("broker {leader} is not registered")))?;
                crate::client::Client::connect(broker.env.net.as_ref(), &addr, "sluice-share")
                    .await
                    .map_err(|e| Unavailable(e.to_string()))?
            }
        };
        let api = ApiKey::try_from(R::KEY)
            .map_err(|_| Unavailable(format!("unknown api key {}", R::KEY)))?;
        let v = c
            .version(api, R::VERSIONS.max)
            .map_err(|e| Unavailable(e.to_string()))?;
        let r = c
            .call(req, v)
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(leader, c);
        Ok(r)
    }

    pub async fn read(
        broker: &Broker,
        leader: i32,
        key: &ShareKey,
    ) -> Result<Option<ShareSnapshot>, Unavailable> {
        let req = ReadShareGroupStateRequest::default()
            .with_group_id(StrBytes::from_string(key.group.clone()))
            .with_topics(vec![
                read_share_group_state_request::ReadStateData::default()
                    .with_topic_id(uuid::Uuid::from_bytes(key.topic_id))
                    .with_partitions(vec![
                        read_share_group_state_request::PartitionData::default()
                            .with_partition(key.partition),
                    ]),
            ]);
        let r = call(broker, leader, req).await?;
        let p = r
            .results
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| Unavailable("empty ReadShareGroupState answer".into()))?;
        if p.error_code != 0 {
            return Err(Unavailable(format!(
                "ReadShareGroupState from broker {leader}: error {}",
                p.error_code
            )));
        }
        // A start offset of -1: nothing stored for the key.
        if p.start_offset < 0 {
            return Ok(None);
        }
        let mut batches = Vec::with_capacity(p.state_batches.len());
        for b in &p.state_batches {
            let state = RecordState::from_code(b.delivery_state)
                .ok_or_else(|| Unavailable(format!("bad delivery state {}", b.delivery_state)))?;
            batches.push(StateBatch {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
                state,
                delivery_count: b.delivery_count,
            });
        }
        let snapshot = ShareSnapshot {
            start_offset: p.start_offset,
            batches,
        };
        if !snapshot.is_well_formed() {
            return Err(Unavailable(format!(
                "ReadShareGroupState from broker {leader}: malformed state batches"
            )));
        }
        Ok(Some(snapshot))
    }

    pub async fn write(
        broker: &Broker,
        leader: i32,
        key: &ShareKey,
        snapshot: &ShareSnapshot,
    ) -> Result<(), Unavailable> {
        let batches = snapshot
            .batches
            .iter()
            .map(|b| {
                write_share_group_state_request::StateBatch::default()
                    .with_first_offset(b.first_offset)
                    .with_last_offset(b.last_offset)
                    .with_delivery_state(b.state as i8)
                    .with_delivery_count(b.delivery_count)
            })
            .collect();
        let req = WriteShareGroupStateRequest::default()
            .with_group_id(StrBytes::from_string(key.group.clone()))
            .with_topics(vec![
                write_share_group_state_request::WriteStateData::default()
                    .with_topic_id(uuid::Uuid::from_bytes(key.topic_id))
                    .with_partitions(vec![
                        write_share_group_state_request::PartitionData::default()
                            .with_partition(key.partition)
                            .with_start_offset(snapshot.start_offset)
                            .with_state_batches(batches),
                    ]),
            ]);
        let r = call(broker, leader, req).await?;
        let code = r
            .results
            .first()
            .and_then(|t| t.partitions.first())
            .map_or(codes::UNKNOWN_SERVER_ERROR, |p| p.error_code);
        if code != 0 {
            return Err(Unavailable(format!(
                "WriteShareGroupState to broker {leader}: error {code}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_records_are_acquired_from_whole_batches() {
        use kafka_protocol::records::Compression;
        let batch = |base: i64, n: usize| {
            let msgs: Vec<crate::client::Message> = (0..n)
                .map(|_| crate::client::Message {
                    key: None,
                    value: Some(Bytes::from_static(b"v")),
                    timestamp: 0,
                })
                .collect();
            let mut b = crate::client::encode_batch(&msgs, Compression::None)
                .unwrap()
                .to_vec();
            b[..8].copy_from_slice(&base.to_be_bytes());
            b
        };
        let (a, b, c) = (batch(0, 3), batch(3, 3), batch(6, 3));
        let all = [a.clone(), b.clone(), c].concat();
        assert_eq!(
            batches_for(&all, 0, 1),
            (a.len(), Some(0)),
            "part of a batch"
        );
        assert_eq!(batches_for(&all, 0, 4), (a.len() + b.len(), Some(3)));
        assert_eq!(
            batches_for(&all, 4, 2),
            (a.len() + b.len(), Some(5)),
            "from inside a batch"
        );
        assert_eq!(batches_for(&all, 4, 100), (all.len(), Some(8)));
        assert_eq!(
            batches_for(&all, 9, 5),
            (all.len(), None),
            "nothing at or past 9"
        );
        assert_eq!(last_offset(&all), Some(8));
    }
}
