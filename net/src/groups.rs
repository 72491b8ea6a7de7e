//! The group coordinator at work: the pure [`GroupCoordinator`] behind a lock, its
//! records appended to `__consumer_offsets` (created on first use, 50 partitions by
//! default as in Kafka), its waiting JoinGroup / SyncGroup requests parked on
//! channels, and its state rebuilt from that topic at start.
//!
//! Durability: a group's records go to its partition of `__consumer_offsets`, the
//! partition Kafka would pick (`abs(javaHash(group)) % partitions`). No answer leaves
//! before every record appended to that partition so far is fsynced, and committed
//! offsets are applied only once durable, so a crash never takes back what a client
//! was told.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::records::Compression;
use sluice_core::env::Env;
use sluice_core::group::share::{ShareGroup, ShareHeartbeat, ShareHeartbeatRequest};
use sluice_core::group::{
    Effect, Group, GroupCoordinator, GroupError, GroupRecord, Heartbeat, HeartbeatRequest,
    JoinRequest, Joined, OffsetCommit, OffsetValue, StagedOffset, SyncRequest, Synced, Ticket,
    TopicImage,
};
use sluice_core::sim::{planted, Bug};
use sluice_storage::batch::marker_key_commits;
use sluice_storage::{LogError, PartitionLog};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::client::{encode_transactional_batch, Message, Sequence};
use crate::internal::{
    append_records, durable_point, leadership, log_for, partition_for, scan_log, wait_durable,
    DurablePoint, Unavailable, OFFSETS_TOPIC,
};

/// Rebuilds the groups of one `__consumer_offsets` partition from its log, with
/// transactional offsets applied only where a commit marker follows them. Returns
/// how many records applied.
fn load_partition(
    sm: &mut GroupCoordinator,
    p: usize,
    log: &PartitionLog,
    count: usize,
    now: i64,
) -> Result<usize, String> {
    let mut loaded = 0usize;
    scan_log(log, |r| {
        if r.control {
            // An unreadable marker cannot have been ours; treat it as an abort.
            let commit = r.key.as_deref().and_then(marker_key_commits) == Some(true);
            sm.end_txn_offsets(r.producer_id, commit, |g| partition_for(g, count) == p);
            return;
        }
        let Some(key) = &r.key else { return };
        match GroupRecord::decode(key, r.value.as_deref()) {
            Ok(GroupRecord::Offset {
                group,
                topic,
                partition,
                value: Some(value),
            }) if r.transactional => sm.stage_txn_offset(
                r.producer_id,
                StagedOffset {
                    group,
                    topic,
                    partition,
                    value,
                    position: r.offset,
                },
            ),
            Ok(record) => {
                apply_loaded(sm, now, record, r.offset);
                loaded += 1;
            }
            Err(why) => {
                warn!(partition = p, offset = r.offset, %why, "skipping unreadable group record")
            }
        }
    })?;
    Ok(loaded)
}

/// An answer for a parked request, released once `durable_upto` is fsynced.
pub struct Parked<T> {
    pub result: T,
    durable_upto: DurablePoint,
    /// A record this answer depends on could not be written.
    unstored: bool,
}

impl<T> Parked<T> {
    /// Waits until the answer may leave; a storage failure makes it unavailable.
    pub async fn release(self) -> Result<T, Unavailable> {
        if self.unstored {
            return Err(Unavailable("a group record could not be written".into()));
        }
        wait_durable(self.durable_upto).await?;
        Ok(self.result)
    }
}

pub type JoinAnswer = Parked<Result<Joined, (GroupError, String)>>;
pub type ConsumerHeartbeatAnswer = Parked<Result<Heartbeat, (GroupError, String)>>;
pub type SyncAnswer = Parked<Result<Synced, GroupError>>;

enum Waiter {
    Join(oneshot::Sender<JoinAnswer>),
    Sync(oneshot::Sender<SyncAnswer>),
}

struct Inner {
    sm: GroupCoordinator,
    /// Parked requests: their group and how to answer them.
    waiters: BTreeMap<Ticket, (String, Waiter)>,
    next_ticket: Ticket,
    /// `__consumer_offsets` once it exists: per partition, its log if held here.
    logs: Vec<Option<Arc<PartitionLog>>>,
    /// The partitions this broker leads and coordinates, with the leader epoch their
    /// groups were loaded at.
    led: BTreeMap<usize, i32>,
}

pub struct Groups {
    env: Env,
    inner: Mutex<Inner>,
}

impl Groups {
    pub fn new(env: Env, coordinator: GroupCoordinator) -> Groups {
        Groups {
            env,
            inner: Mutex::new(Inner {
                sm: coordinator,
                waiters: BTreeMap::new(),
                next_ticket: 1,
                logs: Vec::new(),
                led: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> i64 {
        self.env.clock.monotonic().as_millis() as i64
    }

    /// Follows the leadership of `__consumer_offsets` partitions: a partition this
    /// broker now leads (at a new leader epoch) has its groups rebuilt from its log;
    /// one it no longer leads has its groups forgotten and their parked requests
    /// dropped (the clients find the new coordinator). Called at start, after every
    /// metadata change and on the group timer (a failed load is retried).
    pub fn sync_leadership(&self, broker: &Broker) -> Result<(), LogError> {
        let Some((logs, epochs)) = leadership(broker, OFFSETS_TOPIC) else {
            return Ok(());
        };
        let count = logs.len();
        let now = self.now_ms();
        let group_configs = broker.image().group_configs.clone();
        let mut inner = self.lock();
        inner.sm.set_group_configs(group_configs);
        // Replicas come and go with reassignments: take the logs held now.
        inner.logs = logs.clone();
        let mut failed = None;
        for (p, epoch) in epochs.into_iter().enumerate() {
            let here = |g: &str| partition_for(g, count) == p;
            match epoch {
                Some(e) if inner.led.get(&p) != Some(&e) => {
                    inner.sm.unload(here);
                    inner.waiters.retain(|_, (g, _)| !here(g));
                    let Some(log) = &logs[p] else { continue };
                    match load_partition(&mut inner.sm, p, log, count, now) {
                        Ok(loaded) => {
                            #[cfg(madsim)]
                            for (gid, g) in inner.sm.groups() {
                                if !here(gid) {
                                    continue;
                                }
                                let Some(cg) = g.consumer.as_ref() else {
                                    sluice_core::sim::record_event(format!(
                                        "group {gid}: loaded classic, generation {} {}, members {:?}",
                                        g.generation,
                                        g.state_name(),
                                        g.members.keys().collect::<Vec<_>>()
                                    ));
                                    continue;
                                };
                                let members: Vec<String> = cg
                                    .members
                                    .values()
                                    .map(|m| {
                                        let owned: Vec<i32> =
                                            m.assigned.values().flatten().copied().collect();
                                        format!("{}@{}{owned:?}", m.member_id, m.epoch)
                                    })
                                    .collect();
                                sluice_core::sim::record_event(format!(
                                    "group {gid}: loaded at epoch {} (target {}): {}",
                                    cg.epoch,
                                    cg.assignment_epoch,
                                    members.join(" ")
                                ));
                            }
                            info!(
                                partition = p,
                                epoch = e,
                                records = loaded,
                                "coordinating {OFFSETS_TOPIC} partition"
                            );
                            inner.led.insert(p, e);
                        }
                        Err(e) => {
                            inner.sm.unload(here);
                            failed.get_or_insert(LogError::Storage(format!(
                                "{OFFSETS_TOPIC}-{p}: {e}"
                            )));
                        }
                    }
                }
                None if inner.led.contains_key(&p) => {
                    inner.sm.unload(here);
                    inner.waiters.retain(|_, (g, _)| !here(g));
                    inner.led.remove(&p);
                    info!(
                        partition = p,
                        "no longer coordinating {OFFSETS_TOPIC} partition"
                    );
                }
                _ => {}
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// TxnOffsetCommit: checks the member (KIP-447), writes the offsets as the
    /// producer's transactional batch, and once durable stages them until the
    /// transaction's marker.
    #[allow(clippy::too_many_arguments)] // the request's fields
    pub async fn txn_commit(
        &self,
        broker: &Broker,
        group: &str,
        producer_id: i64,
        epoch: i16,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<OffsetCommit>,
    ) -> Result<Result<(), GroupError>, Unavailable> {
        sluice_core::buggify_sleep!(broker.env, 200);
        let appended = self.run(broker, group, |inner, _| {
            inner
                .sm
                .check_txn_commit(group, generation, member_id, instance_id)?;
            let Some(log) = log_for(&inner.logs, group).cloned() else {
                return Ok(Err("no offsets partition".to_string()));
            };
            let messages: Vec<Message> = offsets
                .iter()
                .map(|o| {
                    let (key, value) = offset_record(group, o).encode();
                    Message {
                        key: Some(key),
                        value,
                        timestamp: self.env.clock.wall_ms(),
                    }
                })
                .collect();
            // The producer's id and epoch, but no sequence: its sequences belong to
            // its data partitions.
            let producer = Sequence {
                producer_id,
                epoch,
                first: -1,
            };
            let written = encode_transactional_batch(&messages, Compression::None, producer)
                .map_err(|e| e.to_string())
                .and_then(|b| log.append(&b).map_err(|e| e.to_string()))
                .map(|a| (log, a.base_offset, a.generation));
            Ok(written)
        })?;
        let (log, base, generation) = match appended.0 {
            Err(e) => return Ok(Err(e)),
            Ok(Err(why)) => return Err(Unavailable(why)),
            Ok(Ok(w)) => w,
        };
        log.wait_committed(base + offsets.len() as i64, generation)
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        let mut inner = self.lock();
        for (i, o) in offsets.into_iter().enumerate() {
            inner.sm.stage_txn_offset(
                producer_id,
                StagedOffset {
                    group: group.to_string(),
                    topic: o.topic,
                    partition: o.partition,
                    value: o.value,
                    position: base + i as i64,
                },
            );
        }
        Ok(Ok(()))
    }

    /// A transaction marker of `producer_id` is durable in `__consumer_offsets`
    /// partition `partition`: its staged offsets there apply (commit) or go.
    pub fn txn_marker(&self, partition: usize, producer_id: i64, commit: bool) {
        let mut inner = self.lock();
        let n = inner.logs.len();
        inner
            .sm
            .end_txn_offsets(producer_id, commit, |g| partition_for(g, n) == partition);
    }

    /// The `__consumer_offsets` partition of `group` (creating the topic if needed).
    pub fn offsets_partition(&self, broker: &Broker, group: &str) -> Result<i32, Unavailable> {
        self.ensure_topic(broker)?;
        Ok(partition_for(group, self.lock().logs.len()) as i32)
    }

    /// Makes sure `__consumer_offsets` exists (Kafka creates it on first use).
    fn ensure_topic(&self, broker: &Broker) -> Result<(), Unavailable> {
        if !self.lock().logs.is_empty() {
            return Ok(());
        }
        broker
            .internal_topic(
                OFFSETS_TOPIC,
                broker.config.offsets_topic_num_partitions,
                broker.config.offsets_topic_segment_bytes,
            )
            .map_err(|e| Unavailable(e.to_string()))?;
        self.sync_leadership(broker)
            .map_err(|e| Unavailable(e.to_string()))
    }

    /// Runs `f` on the coordinator, then carries out its effects: records appended,
    /// parked requests answered. Returns `f`'s result and the durability point of the
    /// group's partition, which the caller's answer must wait for.
    fn run<R>(
        &self,
        broker: &Broker,
        group: &str,
        f: impl FnOnce(&mut Inner, i64) -> R,
    ) -> Result<(R, DurablePoint), Unavailable> {
        self.run_noting(broker, group, f)
            .map(|(r, upto, _)| (r, upto))
    }

    /// As [`Groups::run_noting`] for a change to a KIP-848 group: if a record of it
    /// cannot be written, the group is put back as it was, so nothing the log does not
    /// hold is ever served (a later heartbeat must not be told an epoch that a restart
    /// would take back).
    fn run_consumer<R>(
        &self,
        broker: &Broker,
        group: &str,
        f: impl FnOnce(&mut Inner, i64) -> R,
    ) -> Result<(R, DurablePoint, bool), Unavailable> {
        self.run_checked(broker, group, true, f)
    }

    fn check_led(inner: &Inner, group: &str) -> Result<(), Unavailable> {
        let p = partition_for(group, inner.logs.len());
        if !inner.led.contains_key(&p) {
            return Err(Unavailable(format!(
                "not the coordinator of group '{group}' ({OFFSETS_TOPIC}-{p} is led elsewhere)"
            )));
        }
        Ok(())
    }

    /// As [`Groups::run`], also telling whether a record of the group could not be
    /// written (then what `f` decided is not to be promised to anyone).
    fn run_noting<R>(
        &self,
        broker: &Broker,
        group: &str,
        f: impl FnOnce(&mut Inner, i64) -> R,
    ) -> Result<(R, DurablePoint, bool), Unavailable> {
        self.run_checked(broker, group, false, f)
    }

    /// Runs `f` on the coordinator under the lock and carries out its effects; with
    /// `undo`, or for any request to a KIP-848 group (a classic member's JoinGroup or
    /// LeaveGroup changes it too, or converts it), a group whose records could not be
    /// written is put back as it was before `f`, under the same lock.
    fn run_checked<R>(
        &self,
        broker: &Broker,
        group: &str,
        undo: bool,
        f: impl FnOnce(&mut Inner, i64) -> R,
    ) -> Result<(R, DurablePoint, bool), Unavailable> {
        self.ensure_topic(broker)?;
        let now = self.now_ms();
        let mut inner = self.lock();
        Self::check_led(&inner, group)?;
        let consumer = inner
            .sm
            .group(group)
            .is_some_and(|g| g.is_consumer_protocol());
        let before = (undo || consumer).then(|| inner.sm.consumer_snapshot(group));
        let r = f(&mut inner, now);
        let unstored = self.carry_out(&mut inner).contains(group);
        if let (true, Some(before)) = (unstored, before) {
            inner.sm.restore_consumer(group, before);
        }
        let upto = durable_point(&inner.logs, group);
        Ok((r, upto, unstored))
    }

    /// Carries out the coordinator's effects; returns the groups a record of which
    /// could not be written.
    fn carry_out(&self, inner: &mut Inner) -> BTreeSet<String> {
        let mut answers = Vec::new();
        let mut unstored: BTreeSet<String> = BTreeSet::new();
        loop {
            let effects = inner.sm.take_effects();
            if effects.is_empty() {
                break;
            }
            // The records of one round go to their group's partition as one batch per
            // group: a change of several records (a KIP-848 member fenced: its
            // assignment, target and subscription gone, the epoch bumped) is written
            // whole or not at all.
            let mut batches: Vec<(String, Vec<GroupRecord>)> = Vec::new();
            for effect in effects {
                match effect {
                    Effect::Persist(record) => {
                        let group = record.group().to_string();
                        match batches.iter_mut().find(|(g, _)| *g == group) {
                            Some((_, records)) => records.push(record),
                            None => batches.push((group, vec![record])),
                        }
                    }
                    Effect::Join { ticket, result } => {
                        #[cfg(madsim)]
                        match &result {
                            Ok(j) => sluice_core::sim::record_event(format!(
                                "group JoinGroup: {} joined generation {}{}",
                                j.member_id,
                                j.generation,
                                if j.leader == j.member_id {
                                    " (leader)"
                                } else {
                                    ""
                                }
                            )),
                            Err((e, id)) => sluice_core::sim::record_event(format!(
                                "group JoinGroup: {id}: {e:?}"
                            )),
                        }
                        if let Some((group, Waiter::Join(tx))) = inner.waiters.remove(&ticket) {
                            answers.push((group, Ok((tx, result))));
                        }
                    }
                    Effect::Sync { ticket, result } => {
                        if let Some((group, Waiter::Sync(tx))) = inner.waiters.remove(&ticket) {
                            answers.push((group, Err((tx, result))));
                        }
                    }
                }
            }
            for (group, records) in batches {
                if unstored.contains(&group) {
                    continue;
                }
                let refs: Vec<&GroupRecord> = records.iter().collect();
                if let Err(e) = self.append(&inner.logs, &refs) {
                    warn!(group = %group, error = %e, "group records not written");
                    unstored.insert(group.clone());
                    inner.sm.storage_failed(self.now_ms(), &group);
                }
            }
        }
        // Answers leave only once everything their group's partition holds so far
        // (this round's records included) is durable.
        for (group, answer) in answers {
            let durable_upto = durable_point(&inner.logs, &group);
            let unstored = unstored.contains(&group);
            let _ = match answer {
                Ok((tx, result)) => tx
                    .send(Parked {
                        result,
                        durable_upto,
                        unstored,
                    })
                    .is_ok(),
                Err((tx, result)) => tx
                    .send(Parked {
                        result,
                        durable_upto,
                        unstored,
                    })
                    .is_ok(),
            };
        }
        unstored
    }

    fn park(&self, inner: &mut Inner, group: &str, waiter: Waiter) -> Ticket {
        let ticket = inner.next_ticket;
        inner.next_ticket += 1;
        inner.waiters.insert(ticket, (group.to_string(), waiter));
        ticket
    }

    /// A member id as Kafka makes them: the client id and a random UUID.
    fn fresh_member_id(&self, client_id: &str) -> String {
        format!("{client_id}-{}", self.fresh_uuid())
    }

    pub fn join(
        &self,
        broker: &Broker,
        req: JoinRequest,
    ) -> Result<oneshot::Receiver<JoinAnswer>, Unavailable> {
        let (tx, rx) = oneshot::channel();
        let fresh = self.fresh_member_id(&req.client_id);
        let group = req.group_id.clone();
        let image = topic_image(broker);
        self.run(broker, &group, |inner, now| {
            let ticket = self.park(inner, &req.group_id, Waiter::Join(tx));
            inner.sm.join(now, ticket, req, fresh, &image);
        })?;
        Ok(rx)
    }

    pub fn sync(
        &self,
        broker: &Broker,
        req: SyncRequest,
    ) -> Result<oneshot::Receiver<SyncAnswer>, Unavailable> {
        let (tx, rx) = oneshot::channel();
        let group = req.group_id.clone();
        let image = topic_image(broker);
        self.run(broker, &group, |inner, now| {
            let ticket = self.park(inner, &req.group_id, Waiter::Sync(tx));
            inner.sm.sync(now, ticket, req, &image);
        })?;
        Ok(rx)
    }

    /// ConsumerGroupHeartbeat (KIP-848); the answer leaves once the group's records
    /// are durable.
    pub fn consumer_heartbeat(
        &self,
        broker: &Broker,
        req: HeartbeatRequest,
    ) -> Result<ConsumerHeartbeatAnswer, Unavailable> {
        let metadata = broker.image();
        let image = topic_image(broker);
        let fresh = self.fresh_uuid();
        let group = req.group_id.clone();
        // Group configs change through the metadata quorum: this group's as they are now.
        let group_configs = metadata.group_configs.get(&group).cloned();
        let (result, durable_upto, unstored) =
            self.run_consumer(broker, &group, |inner, now| {
                inner.sm.set_group_config(&group, group_configs);
                #[cfg(madsim)]
                let (member, epoch) = (req.member_id.clone(), req.member_epoch);
                let r = inner.sm.consumer_heartbeat(now, req, &image, fresh);
                #[cfg(madsim)]
                match &r {
                    Ok(hb) => sluice_core::sim::record_event(format!(
                        "group {group}: {member} at {epoch} -> epoch {} assignment {:?}",
                        hb.member_epoch,
                        hb.assignment.as_ref().map(|a| a
                            .values()
                            .flatten()
                            .copied()
                            .collect::<Vec<i32>>())
                    )),
                    Err((e, _)) => sluice_core::sim::record_event(format!(
                        "group {group}: {member} at {epoch}: {e:?}"
                    )),
                }
                r
            })?;
        Ok(Parked {
            result,
            durable_upto,
            unstored,
        })
    }

    /// ShareGroupHeartbeat (KIP-932). Share-group membership is not written to the
    /// log, so the answer is ready at once.
    pub fn share_heartbeat(
        &self,
        broker: &Broker,
        req: ShareHeartbeatRequest,
    ) -> Result<Result<ShareHeartbeat, (GroupError, String)>, Unavailable> {
        let image = topic_image(broker);
        let group = req.group_id.clone();
        let group_configs = broker.image().group_configs.get(&group).cloned();
        let (r, _) = self.run(broker, &group, |inner, now| {
            inner.sm.set_group_config(&group, group_configs);
            inner.sm.share_heartbeat(now, req, &image)
        })?;
        Ok(r)
    }

    pub fn describe_share(&self, group: &str) -> Option<ShareGroup> {
        self.lock().sm.share_group(group).cloned()
    }

    /// A member id as KIP-848 coordinators make them: a random UUID.
    fn fresh_uuid(&self) -> String {
        let (a, b) = (self.env.rng.next_u64(), self.env.rng.next_u64());
        let hex = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    pub fn heartbeat(
        &self,
        broker: &Broker,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<Result<(), GroupError>, Unavailable> {
        let (r, _) = self.run(broker, group, |inner, now| {
            inner
                .sm
                .heartbeat(now, group, generation, member_id, instance_id)
        })?;
        Ok(r)
    }

    pub fn leave(
        &self,
        broker: &Broker,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Parked<Vec<Result<(), GroupError>>>, Unavailable> {
        // A classic member leaving a KIP-848 group writes its records: the answer
        // waits for them, and fails if they could not be written.
        let (result, durable_upto, unstored) = self.run_noting(broker, group, |inner, now| {
            inner.sm.leave(now, group, members)
        })?;
        Ok(Parked {
            result,
            durable_upto,
            unstored,
        })
    }

    /// Validates an offset commit and appends the accepted offsets; finish it with
    /// [`Groups::finish_commit`].
    pub fn commit(
        &self,
        broker: &Broker,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<OffsetCommit>,
    ) -> Result<Result<Vec<PendingCommit>, GroupError>, Unavailable> {
        let (checked, _) = self.run(broker, group, |inner, now| {
            let checked =
                inner
                    .sm
                    .commit(now, group, generation, member_id, instance_id, offsets)?;
            // The accepted offsets go in one batch, appended under the lock, so the
            // log's order is the order of commits.
            let accepted: Vec<GroupRecord> = checked
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(o, _)| offset_record(group, o))
                .collect();
            let written = if accepted.is_empty() {
                Ok(None)
            } else {
                let refs: Vec<&GroupRecord> = accepted.iter().collect();
                self.append(&inner.logs, &refs).map(Some)
            };
            let mut position = 0;
            Ok(checked
                .into_iter()
                .map(|(offset, r)| {
                    let written = r.map_err(CommitError::Group).and_then(|()| {
                        let (log, base) = written
                            .as_ref()
                            .map_err(|e| CommitError::Storage(e.to_string()))?
                            .clone()
                            .ok_or_else(|| CommitError::Storage("not appended".into()))?;
                        position += 1;
                        Ok((log, base + position - 1))
                    });
                    PendingCommit { offset, written }
                })
                .collect())
        })?;
        Ok(checked)
    }

    /// Waits for the commit's records to be durable, then applies them.
    pub async fn finish_commit(
        &self,
        group: &str,
        pending: Vec<PendingCommit>,
    ) -> Vec<(OffsetCommit, Result<(), CommitError>)> {
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            let result = match p.written {
                Err(e) => Err(e),
                Ok((log, position)) => match log.wait_durable(position + 1).await {
                    Err(e) => Err(CommitError::Storage(e.to_string())),
                    Ok(()) => {
                        let o = &p.offset;
                        self.lock().sm.apply_offset(
                            group,
                            &o.topic,
                            o.partition,
                            Some(o.value.clone()),
                            position,
                        );
                        Ok(())
                    }
                },
            };
            out.push((p.offset, result));
        }
        out
    }

    /// Partitions of `group` with a transactional offset commit awaiting its marker.
    pub fn pending_txn_offsets(&self, group: &str) -> BTreeSet<(String, i32)> {
        self.lock().sm.staged_partitions(group)
    }

    /// OffsetFetch v9's member check of a KIP-848 group.
    pub fn check_fetch(
        &self,
        group: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), GroupError> {
        self.lock().sm.check_consumer_fetch(group, member_id, epoch)
    }

    /// Whether `member_id` is a KIP-848 member of `group`.
    pub fn is_consumer_member(&self, group: &str, member_id: &str) -> bool {
        self.lock().sm.is_consumer_member(group, member_id)
    }

    /// Committed offsets of a group (durable ones only).
    pub fn offsets(&self, group: &str) -> BTreeMap<(String, i32), OffsetValue> {
        self.lock()
            .sm
            .group(group)
            .map(|g| {
                g.offsets
                    .iter()
                    .map(|(k, c)| {
                        let mut v = c.value.clone();
                        if planted(Bug::OffsetFetchPastCommit) {
                            v.offset += 1;
                        }
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn describe(&self, group: &str) -> Option<Group> {
        self.lock().sm.group(group).cloned()
    }

    /// Every group: id, protocol type, state, group type (`classic`, `consumer` or
    /// `share`).
    pub fn list(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let inner = self.lock();
        inner
            .sm
            .groups()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state_name(),
                    if g.is_consumer_protocol() {
                        "consumer"
                    } else {
                        "classic"
                    },
                )
            })
            .chain(
                inner
                    .sm
                    .share_groups()
                    .map(|(id, g)| (id.clone(), "share".to_string(), g.state_name(), "share")),
            )
            .collect()
    }

    pub fn delete(
        &self,
        broker: &Broker,
        group: &str,
    ) -> Result<Parked<Result<(), GroupError>>, Unavailable> {
        let (result, durable_upto) = self.run(broker, group, |inner, _| {
            if inner.sm.share_group(group).is_some() {
                return inner.sm.delete_share_group(group);
            }
            inner.sm.delete_group(group)
        })?;
        Ok(Parked {
            result,
            durable_upto,
            unstored: false,
        })
    }

    pub fn delete_offsets(
        &self,
        broker: &Broker,
        group: &str,
        partitions: &[(String, i32)],
        subscribed: &BTreeSet<String>,
    ) -> Result<Parked<OffsetDeletion>, Unavailable> {
        let (result, durable_upto) = self.run(broker, group, |inner, _| {
            inner.sm.delete_offsets(group, partitions, subscribed)
        })?;
        Ok(Parked {
            result,
            durable_upto,
            unstored: false,
        })
    }

    /// Expires sessions and rebalance phases; the node calls it periodically.
    pub fn tick(&self, broker: &Broker) {
        let image = topic_image(broker);
        let now = self.now_ms();
        let mut inner = self.lock();
        // KIP-848 members out of time are fenced one at a time, each undone if its
        // records cannot be written (it is tried again on the next tick).
        for (group, member) in inner.sm.expired_consumers(now) {
            #[cfg(madsim)]
            sluice_core::sim::record_event(format!("group {group}: {member} fenced (timed out)"));
            let before = inner.sm.consumer_snapshot(&group);
            inner.sm.fence_consumer(now, &group, &member, &image);
            if self.carry_out(&mut inner).contains(&group) {
                inner.sm.restore_consumer(&group, before);
            }
        }
        inner.sm.tick(now);
        inner.sm.expire_share_members(now, &image);
        inner.sm.expire_offsets(self.env.clock.wall_ms());
        let _ = self.carry_out(&mut inner);
    }

    /// Appends records of one group to its partition as one batch; returns where
    /// the first landed.
    fn append(
        &self,
        logs: &[Option<Arc<PartitionLog>>],
        records: &[&GroupRecord],
    ) -> Result<(Arc<PartitionLog>, i64), LogError> {
        let group = records.first().map_or("", |r| r.group());
        let Some(log) = log_for(logs, group) else {
            return Err(LogError::Storage(format!(
                "{OFFSETS_TOPIC} partition of group '{group}' is not here"
            )));
        };
        let encoded = records.iter().map(|r| r.encode());
        let appended = append_records(log, encoded, self.env.clock.wall_ms())?;
        Ok((log.clone(), appended.base_offset))
    }
}

/// The topics as group assignors see them: name → (id, partition count).
fn topic_image(broker: &Broker) -> TopicImage {
    broker
        .image()
        .topics
        .iter()
        .map(|(name, t)| (name.clone(), (t.id, t.partitions.len() as i32)))
        .collect()
}

/// The record of a committed offset.
fn offset_record(group: &str, o: &OffsetCommit) -> GroupRecord {
    GroupRecord::Offset {
        group: group.to_string(),
        topic: o.topic.clone(),
        partition: o.partition,
        value: Some(o.value.clone()),
    }
}

/// OffsetDelete's verdict: for the group, then per partition.
pub type OffsetDeletion = Result<Vec<Result<(), GroupError>>, GroupError>;

/// An offset commit accepted and appended (or refused), awaiting durability.
pub struct PendingCommit {
    pub offset: OffsetCommit,
    written: Result<(Arc<PartitionLog>, i64), CommitError>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Group(GroupError),
    #[error("offset commit not stored: {0}")]
    Storage(String),
}

fn apply_loaded(sm: &mut GroupCoordinator, now: i64, record: GroupRecord, position: i64) {
    match record {
        GroupRecord::Offset {
            group,
            topic,
            partition,
            value,
        } => sm.apply_offset(&group, &topic, partition, value, position),
        GroupRecord::Metadata { group, value } => sm.load_metadata(now, &group, value),
        GroupRecord::Consumer { group, record } => sm.load_consumer(now, &group, record),
    }
}
