//! The KIP-848 consumer-group runner (`sluice-sim run --groups`): one broker, a topic,
//! producers writing it, and members of one group speaking the consumer protocol
//! (ConsumerGroupHeartbeat v1 with their own member ids) through the project's
//! client. Members consume from their committed offsets, commit at their member
//! epoch, revoke (commit, then let go) before acknowledging, crash (vanish, then come
//! back as a new member), and pause between processing and committing for longer than
//! their session, so they wake up as zombies the coordinator fenced. The nemesis
//! crashes, kills, pauses and cuts off the broker meanwhile. After the heal the group
//! settles and each member records what it owns.
//!
//! Every successful heartbeat is recorded as the member's assignment with its lease
//! (send time plus the session timeout), which is what `double-ownership` judges;
//! `unowned-partition` judges the settled group; the commit checkers judge the commits.
//!
//! With `--migrate`, each incarnation speaks either protocol: the classic one is an
//! eager (range) consumer — JoinGroup after giving up everything, the leader's range
//! assignment, SyncGroup, Heartbeat, LeaveGroup — so the group is upgraded when a
//! consumer-protocol member joins it live, holds both kinds of member, and turns
//! classic again when the last consumer-protocol member goes (KIP-848's online
//! migration), all under the same checkers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jepsen_checks::{Kind, Op, F};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, GroupId, HeartbeatRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, Runtime};
use sluice_core::sim::plant;
use sluice_net::client::{decode_batches, fetch_request, Client};
use tokio::time::{sleep, timeout, Instant};
use uuid::Uuid;

use crate::disk::SimDisk;
use crate::run::{
    connected, create_topic, fault_phase, finish_seed, ip, spawn_producers_and_members,
    start_broker, Options, Recorder, Scenario, SeedResult, REQUEST_TIMEOUT, TOPIC,
};

pub const GROUP: &str = "jepsen-kip848";
/// The broker's `group.consumer.session.timeout.ms` in these runs.
pub const SESSION_MS: i32 = 2_000;
const REBALANCE_MS: i32 = 4_000;
/// How often a classic member heartbeats, and how long its JoinGroup and SyncGroup
/// may wait on the rest of a classic group.
const CLASSIC_HEARTBEAT: Duration = Duration::from_millis(300);
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the healed group gets to settle (every member in, all at the target
/// epoch, for `STEADY`) before members record what they own.
const SETTLE: Duration = Duration::from_secs(60);
const STEADY: Duration = Duration::from_secs(3);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Runs one seed of the consumer-group runner.
pub fn run_groups_seed(seed: u64, opts: &Options) -> SeedResult {
    plant(&opts.bugs);
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    let opts = opts.clone();
    rt.block_on(simulate(seed, opts))
}

fn draw(opts: &Options) -> Scenario {
    let faults = Scenario::draw_faults(opts);
    let mut rng = thread_rng();
    Scenario {
        partitions: rng.gen_range(2..=6),
        producers: rng.gen_range(2..=3),
        consumers: 0,
        members: rng.gen_range(2..=4),
        txn_producers: 0,
        txn_partitions: 0,
        kv_partitions: 0,
        faults,
        buggify: rng.gen_bool(0.5),
    }
}

async fn simulate(seed: u64, opts: Options) -> SeedResult {
    let scenario = draw(&opts);
    if scenario.buggify {
        madsim::buggify::enable();
    }
    sluice_core::sim::enable_buggify(scenario.buggify);
    let rec = Recorder::new();
    rec.trace(&format!(
        "scenario {} (KIP-848 groups{})",
        scenario.describe(),
        if opts.migrate {
            ", either protocol per incarnation"
        } else {
            ""
        }
    ));
    let handle = Handle::current();
    let disk = SimDisk::new(seed ^ 0x5eed_d15c);
    let skew = Arc::new(AtomicI64::new(thread_rng().gen_range(-5_000..5_000)));
    let partitions = scenario.partitions;
    let broker = start_broker(&handle, &rec, &disk, &skew, partitions);
    let setup = handle.create_node().name("setup").ip(ip(2)).build();
    let _ = setup
        .spawn(async move {
            while create_topic(TOPIC, partitions).await.is_err() {
                sleep(Duration::from_millis(100)).await;
            }
        })
        .await;

    let settle = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let (producers, members) = spawn_producers_and_members(
        &handle,
        &rec,
        &scenario,
        opts.sends_per_producer,
        &mut clients,
        |m| {
            member(
                rec.clone(),
                m,
                partitions,
                opts.migrate,
                settle.clone(),
                stop.clone(),
            )
        },
    );

    let faults = fault_phase(&rec, &scenario, broker, &clients, &disk, &skew, producers).await;
    settle.store(true, Ordering::SeqCst);
    rec.trace("heal: faults cleared, broker restarted; the group settles");
    let describer = handle.create_node().name("describer").ip(ip(31)).build();
    let (rec2, count) = (rec.clone(), scenario.members as usize);
    let settled = describer
        .spawn(async move { wait_settled(&rec2, count).await })
        .await
        .unwrap_or(false);
    let mut expected = Op::new(Kind::Ok, F::Assign, "driver", 0, -1);
    expected.group = Some(GROUP.into());
    expected.partitions = (0..partitions).collect();
    expected.final_read = true;
    rec.record(expected);
    stop.store(true, Ordering::SeqCst);
    for m in members {
        let _ = m.await;
    }
    let unsettled = (!settled).then(|| {
        format!(
            "the group did not settle within {} s of the heal",
            SETTLE.as_secs()
        )
    });
    let label = format!("groups {}", scenario.describe());
    finish_seed(&handle, &rec, seed, label, partitions, faults, unsettled).await
}

/// Waits until the coordinator describes the group Stable with `members` members for
/// `STEADY` on end (a crashed member's old id is fenced within a session), then puts
/// its view in the trace. `false` if that does not happen within `SETTLE`.
async fn wait_settled(rec: &Recorder, members: usize) -> bool {
    use kafka_protocol::messages::ConsumerGroupDescribeRequest;
    let deadline = Instant::now() + SETTLE;
    let mut client = None;
    let mut steady_since: Option<Instant> = None;
    while Instant::now() < deadline {
        sleep(Duration::from_millis(500)).await;
        let Some(c) = connected(&mut client, "describer").await else {
            continue;
        };
        let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(GROUP))]);
        let Ok(Ok(r)) = timeout(REQUEST_TIMEOUT, c.call(req, 0)).await else {
            client = None;
            steady_since = None;
            continue;
        };
        let Some(g) = r.groups.first() else { continue };
        if g.error_code == 69 {
            // A classic group (every member classic since a downgrade).
            if classic_settled(rec, c, members, &mut steady_since).await {
                return true;
            }
            continue;
        }
        if g.error_code != 0 || g.group_state.as_str() != "Stable" || g.members.len() != members {
            steady_since = None;
            continue;
        }
        let since = *steady_since.get_or_insert_with(Instant::now);
        if since.elapsed() < STEADY {
            continue;
        }
        rec.trace(&format!("settled: epoch {}", g.group_epoch));
        for m in &g.members {
            let owned: Vec<i32> = m
                .assignment
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().copied())
                .collect();
            rec.trace(&format!(
                "settled: {} at epoch {} owns {owned:?}",
                m.member_id.as_str(),
                m.member_epoch
            ));
        }
        return true;
    }
    false
}

/// The classic group as DescribeGroups has it: Stable with `members` members for
/// `STEADY` on end, then its view goes in the trace.
async fn classic_settled(
    rec: &Recorder,
    c: &mut Client,
    members: usize,
    steady_since: &mut Option<Instant>,
) -> bool {
    use kafka_protocol::messages::DescribeGroupsRequest;
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(GROUP))]);
    let Ok(Ok(r)) = timeout(REQUEST_TIMEOUT, c.call(req, 5)).await else {
        *steady_since = None;
        return false;
    };
    let Some(g) = r.groups.first() else {
        return false;
    };
    if g.error_code != 0 || g.group_state.as_str() != "Stable" || g.members.len() != members {
        *steady_since = None;
        return false;
    }
    let since = *steady_since.get_or_insert_with(Instant::now);
    if since.elapsed() < STEADY {
        return false;
    }
    rec.trace("settled: a classic group");
    for m in &g.members {
        rec.trace(&format!(
            "settled: {} owns {:?}",
            m.member_id.as_str(),
            crate::group::decode_assignment(&m.member_assignment)
        ));
    }
    true
}

/// One member over its life: incarnations that end in a crash or a leave (until the
/// group is to settle) or at `stop`. With `migrate`, each incarnation draws its
/// protocol.
async fn member(
    rec: Recorder,
    index: u64,
    partitions: i32,
    migrate: bool,
    settle: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let node = format!("member-{index}");
    let mut incarnation = 0;
    while !stop.load(Ordering::SeqCst) {
        incarnation += 1;
        let process = 3000 + index * 100 + incarnation;
        let lifetime = Duration::from_millis(thread_rng().gen_range(2_000..30_000));
        let classic = migrate && thread_rng().gen_bool(0.5);
        let mut m = Member {
            rec: rec.clone(),
            node: node.clone(),
            process,
            // KIP-1082: the client names itself, once per incarnation.
            member_id: format!("{node}-{incarnation}"),
            epoch: 0,
            topic_id: None,
            owned: BTreeSet::new(),
            positions: BTreeMap::new(),
            client: None,
            next_heartbeat: Instant::now(),
            full: false,
            classic: classic.then(|| Classic {
                member_id: String::new(),
                joined: false,
                partitions,
            }),
        };
        if classic {
            rec.trace(&format!(
                "{node}: incarnation {incarnation} speaks the classic protocol"
            ));
        }
        let crash = async {
            sleep(lifetime).await;
            if settle.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            () = m.run(&settle, &stop) => return,
            () = crash => {
                if migrate && thread_rng().gen_bool(0.5) {
                    // Leaves rather than vanishing: the group moves on at once (and
                    // may turn classic, if it was the last consumer-protocol member).
                    m.leave().await;
                    rec.trace(&format!("{node}: left (process {process})"));
                } else {
                    rec.trace(&format!("{node}: crashed (process {process})"));
                }
                sleep(Duration::from_millis(thread_rng().gen_range(0..3_000))).await;
            }
        }
    }
}

/// The classic-protocol side of a member (`--migrate`).
struct Classic {
    /// The id the coordinator gave (MEMBER_ID_REQUIRED).
    member_id: String,
    /// In a generation: joined and synced.
    joined: bool,
    partitions: i32,
}

struct Member {
    rec: Recorder,
    node: String,
    process: u64,
    member_id: String,
    epoch: i32,
    topic_id: Option<Uuid>,
    owned: BTreeSet<i32>,
    /// Where to read next in each owned partition, and whether it is committed.
    positions: BTreeMap<i32, (i64, bool)>,
    client: Option<Client>,
    next_heartbeat: Instant,
    /// The last heartbeat failed (its answer may be lost): the next one is a full
    /// request, which the coordinator answers with the whole assignment (KIP-848).
    full: bool,
    /// Set for an incarnation speaking the classic protocol.
    classic: Option<Classic>,
}

impl Member {
    async fn run(&mut self, settle: &AtomicBool, stop: &AtomicBool) {
        loop {
            if stop.load(Ordering::SeqCst) {
                let mut op = self.op(Kind::Ok, F::Assign, -1);
                op.generation = Some(self.epoch);
                op.partitions = self.owned.iter().copied().collect();
                op.final_read = true;
                self.rec.record(op);
                return;
            }
            if connected(&mut self.client, &self.node).await.is_none() {
                continue;
            }
            if Instant::now() >= self.next_heartbeat {
                self.heartbeat().await;
                continue;
            }
            let unknown: Vec<i32> = self
                .owned
                .iter()
                .filter(|p| !self.positions.contains_key(p))
                .copied()
                .collect();
            if !unknown.is_empty() && !self.fetch_offsets(&unknown).await {
                sleep(Duration::from_millis(50)).await;
                continue;
            }
            if self.owned.is_empty() {
                sleep(Duration::from_millis(50)).await;
                continue;
            }
            if !self.consume().await {
                continue;
            }
            if !settle.load(Ordering::SeqCst) && thread_rng().gen_bool(0.01) {
                // A long pause between processing and committing: the session expires
                // and this member wakes up as a zombie.
                self.rec
                    .trace(&format!("{}: paused before commit", self.node));
                sleep(Duration::from_millis(3 * SESSION_MS as u64)).await;
            }
            let owned: Vec<i32> = self.owned.iter().copied().collect();
            self.commit(&owned).await;
        }
    }

    fn op(&self, kind: Kind, f: F, partition: i32) -> Op {
        let mut op = Op::new(kind, f, &self.node, self.process, partition);
        op.group = Some(GROUP.into());
        op.member = Some(self.member_id.clone());
        op
    }

    fn lost(&mut self) {
        self.client = None;
    }

    /// The coordinator fenced us: let everything go and join again at epoch 0.
    fn fenced(&mut self) {
        if let Some(c) = self.classic.as_mut() {
            c.member_id.clear();
            c.joined = false;
        }
        self.release_all();
        self.epoch = 0;
    }

    /// Gives up every partition (recorded: the holds end now).
    fn release_all(&mut self) {
        self.owned.clear();
        self.positions.clear();
        let mut op = self.op(Kind::Ok, F::Assign, -1);
        op.lease_ms = Some(self.rec.now_ms());
        self.rec.record(op);
    }

    /// Leaves the group for good: what was processed is committed, everything is let
    /// go, then LeaveGroup (classic) or a heartbeat at epoch -1.
    async fn leave(&mut self) {
        let owned: Vec<i32> = self.owned.iter().copied().collect();
        if connected(&mut self.client, &self.node).await.is_none() {
            return;
        }
        self.commit(&owned).await;
        self.release_all();
        let Some(client) = self.client.as_mut() else {
            return;
        };
        match &self.classic {
            Some(c) if c.member_id.is_empty() => {}
            Some(c) => {
                let req = LeaveGroupRequest::default()
                    .with_group_id(GroupId(s(GROUP)))
                    .with_member_id(s(&c.member_id));
                let _ = timeout(REQUEST_TIMEOUT, client.call(req, 2)).await;
            }
            None => {
                let req = ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s(GROUP)))
                    .with_member_id(s(&self.member_id))
                    .with_member_epoch(-1);
                let _ = timeout(REQUEST_TIMEOUT, client.call(req, 1)).await;
            }
        }
    }

    async fn heartbeat(&mut self) {
        if self.classic.is_some() {
            return self.classic_heartbeat().await;
        }
        let owned = self.topic_id.map(|id| {
            vec![TopicPartitions::default()
                .with_topic_id(id)
                .with_partitions(self.owned.iter().copied().collect())]
        });
        let mut req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(&self.member_id))
            .with_member_epoch(self.epoch)
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(Some(owned.unwrap_or_default()));
        if self.epoch == 0 || self.full {
            req = req
                .with_rebalance_timeout_ms(REBALANCE_MS)
                .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]));
        }
        if self.epoch == 0 {
            req = req.with_topic_partitions(Some(Vec::new()));
        }
        let sent = self.rec.now_ms();
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let r = match timeout(REQUEST_TIMEOUT, client.call(req, 1)).await {
            Ok(Ok(r)) => r,
            _ => {
                self.lost();
                self.full = true;
                self.next_heartbeat = Instant::now() + Duration::from_millis(100);
                return;
            }
        };
        self.full = r.error_code != 0;
        match r.error_code {
            0 => {}
            // FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, GROUP_ID_NOT_FOUND (the group
            // was forgotten): rejoin from nothing.
            110 | 25 | 69 => {
                self.rec.trace(&format!(
                    "{}: fenced ({}) at epoch {}",
                    self.node, r.error_code, self.epoch
                ));
                self.fenced();
                self.next_heartbeat = Instant::now();
                return;
            }
            _ => {
                self.next_heartbeat = Instant::now() + Duration::from_millis(100);
                return;
            }
        }
        self.epoch = r.member_epoch;
        self.next_heartbeat =
            Instant::now() + Duration::from_millis(r.heartbeat_interval_ms.max(50) as u64);
        if let Some(a) = r.assignment {
            let mut target = BTreeSet::new();
            for tp in a.topic_partitions {
                self.topic_id = Some(tp.topic_id);
                target.extend(tp.partitions);
            }
            let revoked: Vec<i32> = self.owned.difference(&target).copied().collect();
            let added: Vec<i32> = target.difference(&self.owned).copied().collect();
            if !revoked.is_empty() {
                // Revoke: commit what was processed, then let go. The next heartbeat
                // (at once) tells the coordinator.
                self.commit(&revoked).await;
                for p in &revoked {
                    self.positions.remove(p);
                }
                self.next_heartbeat = Instant::now();
            }
            self.owned = target;
            if !added.is_empty() {
                // Where a fetch of the committed offsets fails, the run loop asks again.
                self.fetch_offsets(&added).await;
            }
        }
        let mut op = self.op(Kind::Ok, F::Assign, -1);
        op.generation = Some(self.epoch);
        op.partitions = self.owned.iter().copied().collect();
        op.lease_ms = Some(sent + SESSION_MS as u64);
        self.rec.record(op);
    }

    /// Committed offsets of newly owned partitions: where to start each.
    async fn fetch_offsets(&mut self, added: &[i32]) -> bool {
        for &p in added {
            self.rec.record(self.op(Kind::Invoke, F::FetchOffset, p));
        }
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partition_indexes(added.to_vec())]));
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        let resp = match timeout(REQUEST_TIMEOUT, client.call(req, 5)).await {
            Ok(Ok(r)) => r,
            _ => {
                for &p in added {
                    self.rec.record(self.op(Kind::Fail, F::FetchOffset, p));
                }
                self.lost();
                return false;
            }
        };
        let mut all = true;
        for p in resp.topics.iter().flat_map(|t| &t.partitions) {
            let mut op = self.op(Kind::Ok, F::FetchOffset, p.partition_index);
            if p.error_code != 0 || resp.error_code != 0 {
                op.kind = Kind::Fail;
                all = false;
            } else {
                op.offset = Some(p.committed_offset);
                self.positions
                    .insert(p.partition_index, (p.committed_offset.max(0), true));
            }
            self.rec.record(op);
        }
        all && added.iter().all(|p| self.positions.contains_key(p))
    }

    /// One fetch of every owned partition; the records are "processed" (recorded).
    async fn consume(&mut self) -> bool {
        let req = fetch_request(
            TOPIC,
            self.positions.iter().map(|(&p, &(o, _))| (p, o)),
            100,
            64 << 10,
            16 << 10,
        );
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        let resp = match timeout(REQUEST_TIMEOUT, client.call(req, 12)).await {
            Ok(Ok(r)) => r,
            _ => {
                self.lost();
                return false;
            }
        };
        for pd in resp.responses.into_iter().flat_map(|t| t.partitions) {
            if pd.error_code != 0 {
                self.lost();
                return false;
            }
            let Some(&(from, _)) = self.positions.get(&pd.partition_index) else {
                continue;
            };
            let Ok(records) = decode_batches(pd.records.unwrap_or_default(), from) else {
                self.lost();
                return false;
            };
            let Some(last) = records.last().map(|r| r.offset) else {
                continue;
            };
            let mut op = self.op(Kind::Ok, F::Process, pd.partition_index);
            op.from = Some(from);
            op.records = records
                .into_iter()
                .map(|r| {
                    let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                    (r.offset, v.into_owned())
                })
                .collect();
            self.rec.record(op);
            self.positions.insert(pd.partition_index, (last + 1, false));
        }
        true
    }

    /// Commits the processed positions of `partitions` at the member epoch.
    async fn commit(&mut self, partitions: &[i32]) {
        let todo: Vec<(i32, i64)> = partitions
            .iter()
            .filter_map(|p| match self.positions.get(p) {
                Some(&(o, false)) => Some((*p, o)),
                _ => None,
            })
            .collect();
        if todo.is_empty() {
            return;
        }
        let epoch = self.epoch;
        let with = |mut op: Op, offset: i64| {
            op.generation = Some(epoch);
            op.offset = Some(offset);
            op
        };
        for &(p, o) in &todo {
            self.rec
                .record(with(self.op(Kind::Invoke, F::Commit, p), o));
        }
        let member_id = match &self.classic {
            Some(c) => c.member_id.clone(),
            None => self.member_id.clone(),
        };
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id_or_member_epoch(epoch)
            .with_member_id(s(&member_id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(
                    todo.iter()
                        .map(|&(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                        })
                        .collect(),
                )]);
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let resp = match timeout(REQUEST_TIMEOUT, client.call(req, 9)).await {
            Ok(Ok(r)) => r,
            _ => {
                for &(p, o) in &todo {
                    self.rec.record(with(self.op(Kind::Info, F::Commit, p), o));
                }
                self.lost();
                return;
            }
        };
        let mut fenced = false;
        for pr in resp.topics.iter().flat_map(|t| &t.partitions) {
            let o = todo
                .iter()
                .find(|(p, _)| *p == pr.partition_index)
                .map_or(-1, |(_, o)| *o);
            let mut op = with(self.op(Kind::Ok, F::Commit, pr.partition_index), o);
            if pr.error_code == 0 {
                if let Some(pos) = self.positions.get_mut(&pr.partition_index) {
                    pos.1 = true;
                }
            } else {
                op.kind = Kind::Fail;
                op.error = Some(format!("error code {}", pr.error_code));
                // UNKNOWN_MEMBER_ID: fenced. STALE_MEMBER_EPOCH, ILLEGAL_GENERATION,
                // REBALANCE_IN_PROGRESS: heartbeat first (a classic one rejoins).
                fenced |= pr.error_code == 25;
                self.next_heartbeat = Instant::now();
            }
            self.rec.record(op);
        }
        if fenced {
            self.fenced();
        }
    }

    /// A classic member's heartbeat: JoinGroup and SyncGroup when not in a
    /// generation, else Heartbeat; REBALANCE_IN_PROGRESS or ILLEGAL_GENERATION send it
    /// back to join.
    async fn classic_heartbeat(&mut self) {
        let joined = self.classic.as_ref().is_some_and(|c| c.joined);
        if !joined {
            return self.classic_join().await;
        }
        let classic_id = self
            .classic
            .as_ref()
            .map(|c| c.member_id.clone())
            .unwrap_or_default();
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(self.epoch)
            .with_member_id(s(&classic_id));
        let sent = self.rec.now_ms();
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let code = match timeout(REQUEST_TIMEOUT, client.call(req, 3)).await {
            Ok(Ok(r)) => r.error_code,
            _ => {
                self.lost();
                self.next_heartbeat = Instant::now() + Duration::from_millis(100);
                return;
            }
        };
        match code {
            0 => {
                let mut op = self.op(Kind::Ok, F::Assign, -1);
                op.generation = Some(self.epoch);
                op.partitions = self.owned.iter().copied().collect();
                op.lease_ms = Some(sent + SESSION_MS as u64);
                self.rec.record(op);
                self.next_heartbeat = Instant::now() + CLASSIC_HEARTBEAT;
            }
            // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION: rejoin.
            27 | 22 => {
                if let Some(c) = self.classic.as_mut() {
                    c.joined = false;
                }
                self.next_heartbeat = Instant::now();
            }
            25 => {
                self.rec.trace(&format!(
                    "{}: fenced (25) at generation {}",
                    self.node, self.epoch
                ));
                self.fenced();
                self.next_heartbeat = Instant::now();
            }
            _ => self.next_heartbeat = Instant::now() + Duration::from_millis(100),
        }
    }

    /// An eager (range) consumer's rejoin: commit and give up everything, JoinGroup,
    /// the leader's range assignment, SyncGroup.
    async fn classic_join(&mut self) {
        if !self.owned.is_empty() {
            let owned: Vec<i32> = self.owned.iter().copied().collect();
            self.commit(&owned).await;
            self.release_all();
        }
        let Some(Classic {
            member_id,
            partitions,
            ..
        }) = self.classic.as_ref()
        else {
            return;
        };
        let (classic_id, partitions) = (member_id.clone(), *partitions);
        let join = crate::group::join_request(GROUP, &classic_id, SESSION_MS, REBALANCE_MS);
        let Some(client) = self.client.as_mut() else {
            return;
        };
        self.next_heartbeat = Instant::now() + Duration::from_millis(100);
        let joined = match timeout(JOIN_TIMEOUT, client.call(join, 5)).await {
            Ok(Ok(r)) => r,
            _ => return self.lost(),
        };
        let classic = self.classic.as_mut().expect("a classic member");
        match joined.error_code {
            0 => {}
            // MEMBER_ID_REQUIRED: join again with the id given.
            79 => {
                classic.member_id = joined.member_id.to_string();
                self.next_heartbeat = Instant::now();
                return;
            }
            25 => {
                classic.member_id.clear();
                return;
            }
            _ => return,
        }
        let generation = joined.generation_id;
        let assignments = crate::group::leader_assignments(&joined, partitions);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(generation)
            .with_member_id(s(&classic_id))
            .with_assignments(assignments);
        let sent = self.rec.now_ms();
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let synced = match timeout(JOIN_TIMEOUT, client.call(sync, 3)).await {
            Ok(Ok(r)) => r,
            _ => return self.lost(),
        };
        match synced.error_code {
            0 => {}
            25 => return self.fenced(),
            // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION: join again.
            _ => {
                self.next_heartbeat = Instant::now();
                return;
            }
        }
        self.epoch = generation;
        self.owned = crate::group::decode_assignment(&synced.assignment)
            .into_iter()
            .collect();
        if let Some(c) = self.classic.as_mut() {
            c.joined = true;
        }
        let mut op = self.op(Kind::Ok, F::Assign, -1);
        op.generation = Some(generation);
        op.partitions = self.owned.iter().copied().collect();
        op.lease_ms = Some(sent + SESSION_MS as u64);
        self.rec.record(op);
        self.next_heartbeat = Instant::now() + CLASSIC_HEARTBEAT;
        let owned: Vec<i32> = self.owned.iter().copied().collect();
        self.fetch_offsets(&owned).await;
    }
}
