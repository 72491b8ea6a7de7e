//! Partition replication as in Kafka: the leader appends and serves, followers fetch
//! from it with their replica id, the leader tracks how far each follower's log is
//! durable and moves the high watermark to the minimum over the in-sync replicas, and
//! asks the controller to shrink the ISR of a follower that falls behind for
//! `replica.lag.time.max.ms` or to expand it with one that caught up. A follower that
//! starts following a new leader epoch first truncates what diverged from the
//! leader (OffsetForLeaderEpoch), then fetches.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::cluster::metadata::PartitionState;
use sluice_core::sim::{planted, Bug};
use sluice_storage::PartitionLog;
use tracing::{debug, info, warn};

use crate::broker::{Broker, ReplicationSide};
use crate::client::Client;
use crate::codes;

/// What the leader knows of a follower.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The follower's durable log end, as its last fetch reported (-1: not yet).
    end: i64,
    /// The leader's durable end when that fetch came.
    leader_end_then: i64,
    /// When the follower last caught up: fetched from at least where the leader's log
    /// ended at its previous fetch (Kafka's lastCaughtUpTime: a follower that keeps
    /// pace with a busy leader is caught up, though never at the very end).
    caught_up_at: Duration,
    /// The follower's log start offset, as its last fetch reported (-1: not yet).
    log_start: i64,
}

impl Progress {
    fn new(now: Duration) -> Self {
        Progress {
            end: -1,
            leader_end_then: i64::MAX,
            caught_up_at: now,
            log_start: -1,
        }
    }
}

struct ReplicaState {
    /// The partition as the metadata last said.
    meta: PartitionState,
    /// On the leader: the followers' progress.
    followers: BTreeMap<i32, Progress>,
    /// An ISR change asked for at this partition epoch and not yet seen: the ISR asked.
    pending_isr: Option<(i32, Vec<i32>)>,
}

/// A partition replica on this broker.
pub struct Replica {
    pub topic: String,
    pub partition: i32,
    pub log: Arc<PartitionLog>,
    node_id: i32,
    state: Mutex<ReplicaState>,
    /// Held while a follower truncates or appends what it fetched: a fetch of an
    /// earlier epoch that completes late must not append after the new epoch's
    /// truncation.
    following: Mutex<()>,
    /// Set when the metadata no longer assigns the partition here: its fetcher stops
    /// (Kafka's StopReplica removes the partition's fetcher), so nothing is fetched
    /// in the name of a log that is being deleted.
    closed: AtomicBool,
    /// On the leader: its log end when it took the lead (Kafka's epoch start offset),
    /// until its high watermark reaches it (-1 then, and on followers). Every record
    /// a previous leader committed lies below it.
    epoch_start: AtomicI64,
}

/// A leader's ISR change to ask the controller for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

impl Replica {
    pub fn new(
        topic: &str,
        partition: i32,
        log: Arc<PartitionLog>,
        node_id: i32,
        meta: PartitionState,
        now: Duration,
    ) -> Arc<Replica> {
        let replica = Arc::new(Replica {
            topic: topic.to_string(),
            partition,
            log,
            node_id,
            state: Mutex::new(ReplicaState {
                meta: meta.clone(),
                followers: BTreeMap::new(),
                pending_isr: None,
            }),
            following: Mutex::new(()),
            closed: AtomicBool::new(false),
            epoch_start: AtomicI64::new(-1),
        });
        if meta.replicas.len() > 1 {
            replica.log.start_replicated();
        }
        replica.trace_meta(&meta);
        replica.become_(&meta, now);
        replica
    }

    fn lock(&self) -> MutexGuard<'_, ReplicaState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition's metadata as this replica last applied it.
    pub fn meta(&self) -> PartitionState {
        self.lock().meta.clone()
    }

    /// Stops the replica for good: the metadata moved it away from this broker.
    pub fn close(&self) {
        if !planted(Bug::RemovedReplicaKeepsEpoch) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn is_leader(&self) -> bool {
        self.lock().meta.leader == self.node_id
    }

    /// Applies new metadata. Returns true when the leader epoch changed (a follower
    /// must then start over: truncate, then fetch from the new leader).
    pub fn update(&self, meta: &PartitionState, now: Duration) -> bool {
        let old = self.lock().meta.clone();
        if old == *meta {
            return false;
        }
        let new_epoch = meta.leader_epoch != old.leader_epoch || meta.leader != old.leader;
        self.trace_meta(meta);
        if new_epoch {
            self.become_(meta, now);
        } else {
            let mut st = self.lock();
            st.meta = meta.clone();
            if st
                .pending_isr
                .as_ref()
                .is_some_and(|(e, _)| *e < meta.partition_epoch)
            {
                st.pending_isr = None;
            }
            // A reassignment adds or drops followers within the epoch.
            self.track_followers(&mut st, now);
            drop(st);
            self.recompute_hw();
        }
        new_epoch
    }

    #[cfg_attr(not(madsim), allow(unused_variables))]
    fn trace_meta(&self, meta: &PartitionState) {
        sluice_core::sim_event!(
            "broker-{} {}-{}: epoch {} leader {} isr {:?} replicas {:?} adding {:?} removing {:?} (leo {} hw {})",
            self.node_id,
            self.topic,
            self.partition,
            meta.leader_epoch,
            meta.leader,
            meta.isr,
            meta.replicas,
            meta.adding,
            meta.removing,
            self.log.log_end_offset(),
            self.log.high_watermark()
        );
    }

    fn become_(&self, meta: &PartitionState, now: Duration) {
        let mut st = self.lock();
        st.meta = meta.clone();
        st.pending_isr = None;
        st.followers.clear();
        self.track_followers(&mut st, now);
        drop(st);
        if meta.leader == self.node_id {
            self.epoch_start
                .store(self.log.log_end_offset(), Ordering::SeqCst);
            self.log.set_leader_epoch(meta.leader_epoch);
            info!(topic = %self.topic, partition = self.partition, epoch = meta.leader_epoch, isr = ?meta.isr, "leading");
            self.recompute_hw();
        } else {
            self.log.set_leader_epoch(-1);
        }
    }

    /// Keeps a progress entry for exactly the other assigned replicas; new ones start
    /// unheard-of.
    fn track_followers(&self, st: &mut ReplicaState, now: Duration) {
        let ReplicaState {
            meta, followers, ..
        } = st;
        followers.retain(|r, _| meta.replicas.contains(r));
        for r in &meta.replicas {
            if *r != self.node_id {
                followers.entry(*r).or_insert_with(|| Progress::new(now));
            }
        }
    }

    /// Whether a reassignment is adding `node` as a replica of this partition.
    pub fn is_adding(&self, node: i32) -> bool {
        self.lock().meta.adding.contains(&node)
    }

    /// On the leader: the high watermark is the smallest durable end over the ISR.
    fn recompute_hw(&self) {
        let st = self.lock();
        if st.meta.leader != self.node_id {
            return;
        }
        // KIP-497's maximal ISR: a member being added counts at once (the controller
        // may make it leader in the same change), one being removed until it is gone.
        let pending = st.pending_isr.as_ref().map_or(&[][..], |(_, isr)| isr);
        let mut isr: Vec<i32> = st.meta.isr.clone();
        isr.extend(pending.iter().filter(|r| !st.meta.isr.contains(r)));
        let others: Vec<i64> = isr
            .iter()
            .filter(|r| **r != self.node_id)
            .map(|r| st.followers.get(r).map_or(-1, |p| p.end))
            .collect();
        drop(st);
        if others.is_empty() || planted(Bug::HwBeforeIsr) {
            self.log.set_replicated_hw(None);
        } else if let Some(min) = others.iter().copied().min().filter(|m| *m >= 0) {
            self.log.set_replicated_hw(Some(min));
        } else {
            // A follower not yet heard from holds the high watermark where it is.
            self.log.set_replicated_hw(Some(self.log.high_watermark()));
        }
    }

    /// Checks a fetch or produce against this replica's leadership: `current_epoch` is
    /// the leader epoch the client believes (-1: unknown).
    pub fn check_leader(&self, current_epoch: i32) -> Result<(), i16> {
        let st = self.lock();
        if st.meta.leader != self.node_id {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        match current_epoch {
            -1 => Ok(()),
            e if e < st.meta.leader_epoch => Err(codes::FENCED_LEADER_EPOCH),
            e if e > st.meta.leader_epoch => Err(codes::UNKNOWN_LEADER_EPOCH),
            _ => Ok(()),
        }
    }

    /// For a consumer's Fetch or ListOffsets: OFFSET_NOT_AVAILABLE while this new
    /// leader's high watermark is below its epoch start offset (KIP-207). A previous
    /// leader may have told consumers of a higher one; answering with ours would make
    /// the high watermark they see go back. Followers' fetches, which move it, are
    /// served all the same.
    pub fn check_hw_caught_up(&self) -> Result<(), i16> {
        let start = self.epoch_start.load(Ordering::SeqCst);
        if start < 0 || planted(Bug::StaleHwAfterElection) {
            return Ok(());
        }
        if self.log.high_watermark() < start {
            return Err(codes::OFFSET_NOT_AVAILABLE);
        }
        // Caught up for the rest of this leadership (the high watermark never goes
        // back): later fetches need not look again.
        let _ = self
            .epoch_start
            .compare_exchange(start, -1, Ordering::SeqCst, Ordering::SeqCst);
        Ok(())
    }

    /// min.insync.replicas for acks=all: NOT_ENOUGH_REPLICAS when the ISR is smaller.
    pub fn check_min_isr(&self, min_isr: i32) -> Result<(), i16> {
        if (self.lock().meta.isr.len() as i32) < min_isr {
            Err(codes::NOT_ENOUGH_REPLICAS)
        } else {
            Ok(())
        }
    }

    /// On the leader: the lowest log start offset of the in-sync replicas, this one
    /// included (Kafka's low watermark: what DeleteRecords answers once it reached the
    /// offset asked). A follower not heard from yet counts as 0.
    pub fn low_watermark(&self) -> i64 {
        let st = self.lock();
        st.meta
            .isr
            .iter()
            .filter(|id| **id != self.node_id)
            .map(|id| st.followers.get(id).map_or(0, |p| p.log_start.max(0)))
            .fold(self.log.log_start_offset(), i64::min)
    }

    /// On the leader: a follower fetched from `offset`, which is its durable end, and
    /// told its log start offset (-1 if its fetch version cannot). Returns an ISR
    /// expansion to ask for when it has caught up from outside the ISR.
    pub fn follower_fetched(
        &self,
        follower: i32,
        offset: i64,
        log_start: i64,
        now: Duration,
    ) -> Option<IsrChange> {
        if offset > self.log.log_end_offset() && !planted(Bug::FollowerEndUnchecked) {
            // Past our log end: not records of ours (Kafka answers such a fetch with
            // OFFSET_OUT_OF_RANGE and leaves the follower's progress alone).
            return None;
        }
        let leader_end = self.log.local_durable_end();
        let mut st = self.lock();
        let p = st.followers.get_mut(&follower)?;
        let caught_up = offset >= leader_end || offset >= p.leader_end_then;
        if caught_up {
            p.caught_up_at = now;
        }
        p.end = offset;
        p.leader_end_then = leader_end;
        p.log_start = log_start;
        let hw = self.log.high_watermark();
        let expand = !st.meta.isr.contains(&follower)
            && caught_up
            && offset >= hw
            && st.pending_isr.is_none()
            // A leader may ask later than it could (a busy controller channel).
            && !sluice_core::buggify!(0.2);
        let change = expand.then(|| {
            let mut isr = st.meta.isr.clone();
            isr.push(follower);
            sluice_core::sim_event!(
                "broker-{} {}-{}: asks to add {follower} to the ISR {isr:?} (its end {offset}, hw {hw})",
                self.node_id,
                self.topic,
                self.partition
            );
            st.pending_isr = Some((st.meta.partition_epoch, isr.clone()));
            IsrChange {
                topic: self.topic.clone(),
                partition: self.partition,
                leader_epoch: st.meta.leader_epoch,
                partition_epoch: st.meta.partition_epoch,
                isr,
            }
        });
        drop(st);
        self.recompute_hw();
        change
    }

    /// On the leader: an ISR shrink for followers not caught up within `max_lag`.
    pub fn shrink_if_lagging(&self, now: Duration, max_lag: Duration) -> Option<IsrChange> {
        let mut st = self.lock();
        if st.meta.leader != self.node_id || st.pending_isr.is_some() {
            return None;
        }
        let lagging: Vec<i32> = st
            .meta
            .isr
            .iter()
            .filter(|r| **r != self.node_id)
            .filter(|r| {
                st.followers
                    .get(r)
                    .is_none_or(|p| now.saturating_sub(p.caught_up_at) > max_lag)
            })
            .copied()
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let isr: Vec<i32> = st
            .meta
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        st.pending_isr = Some((st.meta.partition_epoch, isr.clone()));
        sluice_core::sim_event!(
            "broker-{} {}-{}: asks to shrink the ISR to {isr:?} (lagging {lagging:?})",
            self.node_id,
            self.topic,
            self.partition
        );
        Some(IsrChange {
            topic: self.topic.clone(),
            partition: self.partition,
            leader_epoch: st.meta.leader_epoch,
            partition_epoch: st.meta.partition_epoch,
            isr,
        })
    }

    /// Runs `f` (a follower's truncation or append) if this replica still follows in
    /// `epoch`, excluding every other such step.
    fn while_following<T>(&self, epoch: i32, f: impl FnOnce() -> T) -> Option<T> {
        let _guard = self.following.lock().unwrap_or_else(|p| p.into_inner());
        let meta = self.meta();
        (meta.leader_epoch == epoch && meta.leader != self.node_id && !self.is_closed()).then(f)
    }

    /// Forgets an ISR change the controller refused, so it is asked again, if it is
    /// still the one pending. The answer to an older request (asked under an earlier
    /// partition epoch and since superseded) must not clear a newer one: the newer
    /// one's maximal ISR (KIP-497) is what keeps the high watermark from passing a
    /// replica that may be joining the ISR, and leading, in the same change (Kafka's
    /// Partition ignores AlterPartition answers for a state it no longer proposes).
    pub fn isr_change_failed(&self, change: &IsrChange) {
        let mut st = self.lock();
        if Self::pending_is(&st, change) || planted(Bug::StaleIsrAnswerClears) {
            st.pending_isr = None;
        }
    }

    /// Whether `change` is the ISR change this leader is waiting on.
    pub fn is_pending(&self, change: &IsrChange) -> bool {
        Self::pending_is(&self.lock(), change)
    }

    fn pending_is(st: &ReplicaState, change: &IsrChange) -> bool {
        st.pending_isr
            .as_ref()
            .is_some_and(|(e, isr)| *e == change.partition_epoch && *isr == change.isr)
    }
}

/// How long a follower waits before retrying a leader it could not reach.
const RETRY: Duration = Duration::from_millis(200);

/// A follower's loop for one leader epoch: truncate to where the leader's log and ours
/// agree, then fetch and append until the epoch or leader changes.
pub async fn follow(broker: Arc<Broker>, replica: Arc<Replica>, epoch: i32) {
    let mut client: Option<Client> = None;
    let mut truncated = false;
    loop {
        let meta = replica.meta();
        if meta.leader_epoch != epoch
            || meta.leader == broker.config.node_id
            || broker.is_stopped()
            || replica.is_closed()
        {
            return;
        }
        if client.is_none() {
            let Some(addr) = broker.broker_address(meta.leader) else {
                broker.env.clock.sleep(RETRY).await;
                continue;
            };
            match Client::connect(broker.env.net.as_ref(), &addr, "sluice-replica").await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    debug!(leader = meta.leader, error = %e, "follower cannot reach leader");
                    broker.env.clock.sleep(RETRY).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let step = if truncated {
            fetch_once(&broker, &replica, c, epoch).await
        } else {
            truncate(&replica, c, broker.config.node_id, epoch).await
        };
        match step {
            Ok(()) => truncated = true,
            Err(Step::Retry(why)) => {
                debug!(topic = %replica.topic, partition = replica.partition, %why, "follower retrying");
                client = None;
                broker.env.clock.sleep(RETRY).await;
            }
            Err(Step::Wait(why)) => {
                debug!(topic = %replica.topic, partition = replica.partition, %why, "follower waiting");
                broker.env.clock.sleep(RETRY).await;
            }
            Err(Step::Truncate) => {
                truncated = false;
                broker.env.clock.sleep(RETRY).await;
            }
        }
    }
}

enum Step {
    /// The connection is suspect: reconnect, then retry.
    Retry(String),
    /// The leader answered but cannot serve yet: retry on the same connection.
    Wait(String),
    /// Our log end is past the leader's: find where they agree again.
    Truncate,
}

/// KIP-101/279: asks the leader where our latest epoch ended in its log and cuts ours
/// back to there.
async fn truncate(
    replica: &Replica,
    client: &mut Client,
    node_id: i32,
    epoch: i32,
) -> Result<(), Step> {
    if planted(Bug::SkipEpochTruncation) {
        return Ok(());
    }
    let log = &replica.log;
    let ours = log.latest_epoch();
    let target = if ours < 0 {
        // No epochs: nothing we hold was written under a leader epoch we can check.
        log.high_watermark()
    } else {
        let version = client
            .version(ApiKey::OffsetForLeaderEpoch, 4)
            .map_err(|e| Step::Retry(e.to_string()))?;
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(node_id))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_string(replica.topic.clone())))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(replica.partition)
                    .with_current_leader_epoch(epoch)
                    .with_leader_epoch(ours)])]);
        let resp = client
            .call(req, version)
            .await
            .map_err(|e| Step::Retry(e.to_string()))?;
        let Some(r) = resp.topics.first().and_then(|t| t.partitions.first()) else {
            return Err(Step::Retry("empty OffsetForLeaderEpoch response".into()));
        };
        if sluice_core::buggify!(0.05) {
            return Err(Step::Retry(
                "buggify: OffsetForLeaderEpoch answer lost".into(),
            ));
        }
        if r.error_code != codes::NONE {
            return Err(Step::Wait(format!(
                "OffsetForLeaderEpoch error {}",
                r.error_code
            )));
        }
        if r.leader_epoch < 0 {
            log.high_watermark()
        } else if r.leader_epoch == ours {
            r.end_offset
        } else {
            // The leader's latest epoch at or below ours is older: we diverged where
            // that epoch ended in either log.
            let (_, our_end) = log.end_offset_for_epoch(r.leader_epoch);
            r.end_offset.min(our_end.max(0))
        }
    };
    replica
        .while_following(epoch, || {
            let end = log.log_end_offset();
            if target < end {
                warn!(topic = %replica.topic, partition = replica.partition, from = end, to = target, "truncating a diverged follower log");
                sluice_core::sim_event!(
                    "broker-{node_id} {}-{}: truncates from {end} to {} (epoch {epoch}, hw {})",
                    replica.topic,
                    replica.partition,
                    target.max(log.high_watermark()),
                    log.high_watermark()
                );
                log.truncate_to(target.max(log.high_watermark()))
                    .map_err(|e| Step::Wait(e.to_string()))?;
            }
            Ok(())
        })
        .unwrap_or_else(|| Err(Step::Wait("the leader epoch moved on".into())))
}

/// One fetch from the leader: append what came, fsync it, adopt the leader's high
/// watermark. The next fetch offset then reports our durable end.
async fn fetch_once(
    broker: &Broker,
    replica: &Replica,
    client: &mut Client,
    epoch: i32,
) -> Result<(), Step> {
    let log = &replica.log;
    sluice_core::buggify_sleep!(broker.env, 200);
    // Our log end as this epoch's follower, read under the follower lock: a fetcher of
    // an older epoch that reads it after the new epoch's fetcher appended would report
    // records the old leader never had, and a zombie leader of that epoch would count
    // them as replicated.
    let offset = if planted(Bug::FollowerEndUnchecked) {
        log.log_end_offset()
    } else {
        replica
            .while_following(epoch, || log.log_end_offset())
            .ok_or_else(|| Step::Wait("the leader epoch moved on".into()))?
    };
    log.wait_local_durable(offset)
        .await
        .map_err(|e| Step::Wait(e.to_string()))?;
    // A fetch that leaves late (a slow follower thread, a congested link): what it
    // reports may be stale by the time the leader reads it.
    sluice_core::buggify_sleep!(broker.env, 300);
    let version = client
        .version(ApiKey::Fetch, 12)
        .map_err(|e| Step::Retry(e.to_string()))?;
    let mut partition = FetchPartition::default()
        .with_partition(replica.partition)
        .with_fetch_offset(offset)
        // A fetch of one batch at a time now and then (at least one whole batch comes).
        .with_partition_max_bytes(if sluice_core::buggify!(0.05) {
            1
        } else {
            1 << 20
        });
    if version >= 9 {
        partition = partition.with_current_leader_epoch(epoch);
    }
    if version >= 5 {
        partition = partition.with_log_start_offset(log.log_start_offset());
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(broker.config.node_id))
        .with_max_wait_ms(broker.config.replica_fetch_wait_max_ms as i32)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(replica.topic.clone())))
            .with_partitions(vec![partition])]);
    let resp = client
        .call(req, version)
        .await
        .map_err(|e| Step::Retry(e.to_string()))?;
    let Some(data) = resp.responses.first().and_then(|t| t.partitions.first()) else {
        return Err(Step::Retry("empty fetch response".into()));
    };
    if sluice_core::buggify!(0.02) {
        // The connection breaks with the answer lost: reconnect and fetch again.
        return Err(Step::Retry("buggify: connection lost".into()));
    }
    if data.error_code == codes::OFFSET_OUT_OF_RANGE {
        // Below the leader's log start (a new replica of a topic whose old segments are
        // gone): start there. Past its end: truncate again.
        return if offset < data.log_start_offset {
            sluice_core::sim_event!(
                "broker-{} {}-{}: starts over at {} (fetch offset {offset})",
                broker.config.node_id,
                replica.topic,
                replica.partition,
                data.log_start_offset
            );
            replica
                .while_following(epoch, || log.start_over_at(data.log_start_offset))
                .unwrap_or(Ok(()))
                .map_err(|e| Step::Wait(format!("start over: {e}")))
        } else {
            Err(Step::Truncate)
        };
    }
    if data.error_code != codes::NONE {
        return Err(Step::Wait(format!("fetch error {}", data.error_code)));
    }
    replica
        .while_following(epoch, || {
            if let Some(batches) = data.records.as_ref().filter(|b| !b.is_empty()) {
                log.append_replicated(batches)
                    .map_err(|e| Step::Wait(format!("append: {e}")))?;
            }
            log.set_replicated_hw(Some(data.high_watermark));
            // The leader's log start (DeleteRecords, retention), as far as this
            // replica's high watermark allows (Kafka's maybeIncrementLogStartOffset).
            let start = data.log_start_offset.min(log.high_watermark());
            log.advance_log_start(start)
                .map_err(|e| Step::Wait(format!("log start: {e}")))?;
            Ok(())
        })
        .unwrap_or_else(|| Err(Step::Wait("the leader epoch moved on".into())))?;
    // A replica a reassignment is adding catches up within the follower throttle.
    let fetched = data.records.as_ref().map_or(0, |b| b.len());
    if replica.is_adding(broker.config.node_id) {
        let delay = broker.replication_delay(ReplicationSide::Follower, fetched);
        if !delay.is_zero() {
            broker.env.clock.sleep(delay).await;
        }
    }
    Ok(())
}
