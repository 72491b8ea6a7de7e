//! The consumer-group workload: members of one group over the workload's topic,
//! speaking the classic protocol through the project's client (JoinGroup with
//! MEMBER_ID_REQUIRED, a range assignor on the leader, SyncGroup, OffsetFetch, fetch,
//! commit-after-process, heartbeats, LeaveGroup). Members crash (vanish without
//! leaving, then come back with a new member id) and pause between processing and
//! committing for longer than their session timeout, so they wake up as zombies
//! whose generation is gone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use jepsen_checks::{Kind, Op, F};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use madsim::rand::{thread_rng, Rng};
use sluice_net::client::{decode_batches, fetch_request, Client};
use tokio::time::{sleep, timeout, Instant};

use crate::run::{connected, Recorder, REQUEST_TIMEOUT, TOPIC};

pub const GROUP: &str = "jepsen-group";
/// Short timeouts so that sessions expire and rebalances happen within a run (the
/// simulated broker allows sessions down to 1 s).
const SESSION_MS: i32 = 2_000;
const REBALANCE_MS: i32 = 4_000;
const HEARTBEAT_EVERY: Duration = Duration::from_millis(400);
/// JoinGroup and SyncGroup wait for the whole group.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Why a session with the group ended.
enum Rejoin {
    /// Keep the member id (rebalance, timeout).
    Same,
    /// The coordinator forgot us: rejoin as a new member.
    Fresh,
}

/// One member, over its whole life: incarnations that end in a crash or at `stop`.
pub(crate) async fn member(rec: Recorder, index: u64, partitions: i32, stop: Arc<AtomicBool>) {
    let node = format!("member-{index}");
    let mut incarnation = 0;
    while !stop.load(Ordering::SeqCst) {
        incarnation += 1;
        let process = 1000 + index * 100 + incarnation;
        let lifetime = if thread_rng().gen_bool(0.5) {
            Duration::from_millis(thread_rng().gen_range(2_000..20_000))
        } else {
            Duration::from_secs(3600)
        };
        let mut m = Member {
            rec: rec.clone(),
            node: node.clone(),
            process,
            partitions,
            member_id: String::new(),
            client: None,
        };
        tokio::select! {
            biased;
            () = m.run(&stop) => return,
            () = sleep(lifetime) => {
                rec.trace(&format!("{node}: crashed (process {process})"));
                sleep(Duration::from_millis(thread_rng().gen_range(0..3_000))).await;
            }
        }
    }
}

struct Member {
    rec: Recorder,
    node: String,
    process: u64,
    partitions: i32,
    member_id: String,
    client: Option<Client>,
}

impl Member {
    async fn run(&mut self, stop: &AtomicBool) {
        loop {
            if stop.load(Ordering::SeqCst) {
                self.leave().await;
                return;
            }
            if connected(&mut self.client, &self.node).await.is_none() {
                continue;
            }
            match self.session(stop).await {
                Ok(()) => {}
                Err(Rejoin::Fresh) => self.member_id.clear(),
                Err(Rejoin::Same) => {}
            }
        }
    }

    fn op(&self, kind: Kind, f: F, partition: i32) -> Op {
        let mut op = Op::new(kind, f, &self.node, self.process, partition);
        op.group = Some(GROUP.into());
        op.member = Some(self.member_id.clone());
        op
    }

    /// A failed request: drop the connection and back off.
    async fn lost(&mut self) -> Rejoin {
        self.client = None;
        sleep(Duration::from_millis(100)).await;
        Rejoin::Same
    }

    /// Error codes that end the generation for this member.
    fn after(code: i16) -> Rejoin {
        if code == 25 {
            Rejoin::Fresh
        } else {
            Rejoin::Same
        }
    }

    /// Join, sync, then consume and commit until the generation ends. `Ok` only when
    /// `stop` was seen.
    async fn session(&mut self, stop: &AtomicBool) -> Result<(), Rejoin> {
        let Some(client) = self.client.as_mut() else {
            return Err(Rejoin::Same);
        };
        let join = join_request(GROUP, &self.member_id, SESSION_MS, REBALANCE_MS);
        let joined = match timeout(JOIN_TIMEOUT, client.call(join, 5)).await {
            Ok(Ok(r)) => r,
            _ => return Err(self.lost().await),
        };
        match joined.error_code {
            0 => {}
            79 => {
                self.member_id = joined.member_id.to_string();
                return Err(Rejoin::Same);
            }
            code => {
                sleep(Duration::from_millis(100)).await;
                return Err(Self::after(code));
            }
        }
        let generation = joined.generation_id;
        let assignments = leader_assignments(&joined, self.partitions);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(generation)
            .with_member_id(s(&self.member_id))
            .with_assignments(assignments);
        let synced = match timeout(JOIN_TIMEOUT, client.call(sync, 3)).await {
            Ok(Ok(r)) => r,
            _ => return Err(self.lost().await),
        };
        if synced.error_code != 0 {
            return Err(Self::after(synced.error_code));
        }
        let owned = decode_assignment(&synced.assignment);
        let mut op = self.op(Kind::Ok, F::Assign, -1);
        op.generation = Some(generation);
        op.partitions = owned.clone();
        self.rec.record(op);

        let mut positions = self.fetch_offsets(&owned).await?;
        let mut committed = positions.clone();
        let mut last_heartbeat = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            if !owned.is_empty() {
                self.consume(&mut positions).await?;
            } else {
                sleep(Duration::from_millis(100)).await;
            }
            if positions != committed {
                if thread_rng().gen_bool(0.02) {
                    // A long GC pause between processing and committing: the session
                    // expires and this member wakes up as a zombie.
                    self.rec
                        .trace(&format!("{}: paused before commit", self.node));
                    sleep(Duration::from_millis(3 * SESSION_MS as u64)).await;
                }
                self.commit(generation, &positions).await?;
                committed = positions.clone();
            }
            if last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
                last_heartbeat = Instant::now();
                self.heartbeat(generation).await?;
            }
        }
    }

    /// Committed offsets of the partitions owned; where to start each.
    async fn fetch_offsets(&mut self, owned: &[i32]) -> Result<BTreeMap<i32, i64>, Rejoin> {
        if owned.is_empty() {
            return Ok(BTreeMap::new());
        }
        for &p in owned {
            self.rec.record(self.op(Kind::Invoke, F::FetchOffset, p));
        }
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partition_indexes(owned.to_vec())]));
        let Some(client) = self.client.as_mut() else {
            return Err(Rejoin::Same);
        };
        let resp = match timeout(REQUEST_TIMEOUT, client.call(req, 5)).await {
            Ok(Ok(r)) => r,
            _ => {
                for &p in owned {
                    self.rec.record(self.op(Kind::Fail, F::FetchOffset, p));
                }
                return Err(self.lost().await);
            }
        };
        let mut positions = BTreeMap::new();
        for t in &resp.topics {
            for p in &t.partitions {
                let mut op = self.op(Kind::Ok, F::FetchOffset, p.partition_index);
                if p.error_code != 0 || resp.error_code != 0 {
                    op.kind = Kind::Fail;
                } else {
                    op.offset = Some(p.committed_offset);
                    positions.insert(p.partition_index, p.committed_offset.max(0));
                }
                self.rec.record(op);
            }
        }
        if positions.len() != owned.len() {
            return Err(Rejoin::Same);
        }
        Ok(positions)
    }

    /// One fetch of every owned partition; the records are "processed" (recorded).
    async fn consume(&mut self, positions: &mut BTreeMap<i32, i64>) -> Result<(), Rejoin> {
        let req = fetch_request(
            TOPIC,
            positions.iter().map(|(&p, &o)| (p, o)),
            100,
            64 << 10,
            16 << 10,
        );
        let Some(client) = self.client.as_mut() else {
            return Err(Rejoin::Same);
        };
        let resp = match timeout(REQUEST_TIMEOUT, client.call(req, 12)).await {
            Ok(Ok(r)) => r,
            _ => return Err(self.lost().await),
        };
        for pd in resp.responses.into_iter().flat_map(|t| t.partitions) {
            if pd.error_code != 0 {
                return Err(self.lost().await);
            }
            let Some(&from) = positions.get(&pd.partition_index) else {
                continue;
            };
            let Ok(records) = decode_batches(pd.records.unwrap_or_default(), from) else {
                return Err(self.lost().await);
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
            positions.insert(pd.partition_index, last + 1);
        }
        Ok(())
    }

    async fn commit(
        &mut self,
        generation: i32,
        positions: &BTreeMap<i32, i64>,
    ) -> Result<(), Rejoin> {
        let with = |mut op: Op, offset: i64| {
            op.generation = Some(generation);
            op.offset = Some(offset);
            op
        };
        for (&p, &o) in positions {
            self.rec
                .record(with(self.op(Kind::Invoke, F::Commit, p), o));
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(&self.member_id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(
                    positions
                        .iter()
                        .map(|(&p, &o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                        })
                        .collect(),
                )]);
        let Some(client) = self.client.as_mut() else {
            return Err(Rejoin::Same);
        };
        let resp = match timeout(REQUEST_TIMEOUT, client.call(req, 5)).await {
            Ok(Ok(r)) => r,
            _ => {
                for (&p, &o) in positions {
                    self.rec.record(with(self.op(Kind::Info, F::Commit, p), o));
                }
                return Err(self.lost().await);
            }
        };
        let mut failed = None;
        for pr in resp.topics.iter().flat_map(|t| &t.partitions) {
            let o = positions.get(&pr.partition_index).copied().unwrap_or(-1);
            let kind = if pr.error_code == 0 {
                Kind::Ok
            } else {
                failed = Some(pr.error_code);
                Kind::Fail
            };
            let mut op = with(self.op(kind, F::Commit, pr.partition_index), o);
            if pr.error_code != 0 {
                op.error = Some(format!("error code {}", pr.error_code));
            }
            self.rec.record(op);
        }
        match failed {
            None => Ok(()),
            Some(code) => Err(Self::after(code)),
        }
    }

    async fn heartbeat(&mut self, generation: i32) -> Result<(), Rejoin> {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(generation)
            .with_member_id(s(&self.member_id));
        let Some(client) = self.client.as_mut() else {
            return Err(Rejoin::Same);
        };
        match timeout(REQUEST_TIMEOUT, client.call(req, 3)).await {
            Ok(Ok(r)) if r.error_code == 0 => Ok(()),
            Ok(Ok(r)) => Err(Self::after(r.error_code)),
            _ => Err(self.lost().await),
        }
    }

    async fn leave(&mut self) {
        if self.member_id.is_empty() {
            return;
        }
        let req = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(&self.member_id));
        if let Some(client) = self.client.as_mut() {
            let _ = timeout(REQUEST_TIMEOUT, client.call(req, 2)).await;
        }
    }
}

/// An eager (`range`) consumer's JoinGroup to `group`.
pub(crate) fn join_request(
    group: &str,
    member_id: &str,
    session_ms: i32,
    rebalance_ms: i32,
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(rebalance_ms)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription())])
}

/// What a member's SyncGroup carries: the range assignment of every member when the
/// JoinGroup answer made it the leader, else nothing.
pub(crate) fn leader_assignments(
    joined: &JoinGroupResponse,
    partitions: i32,
) -> Vec<SyncGroupRequestAssignment> {
    if joined.leader != joined.member_id {
        return Vec::new();
    }
    let members: Vec<String> = joined
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    range_assign(&members, partitions)
}

/// The consumer protocol's subscription to the workload topic (version 0).
fn subscription() -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    let sub = ConsumerProtocolSubscription::default().with_topics(vec![s(TOPIC)]);
    if sub.encode(&mut b, 0).is_err() {
        return Bytes::new();
    }
    b.freeze()
}

/// Kafka's range assignor for one topic: members sorted by id, partitions split into
/// contiguous runs, the first `partitions % members` runs one longer.
fn range_assign(members: &[String], partitions: i32) -> Vec<SyncGroupRequestAssignment> {
    let mut sorted = members.to_vec();
    sorted.sort();
    let n = sorted.len().max(1) as i32;
    let (each, extra) = (partitions / n, partitions % n);
    let mut next = 0;
    sorted
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let count = each + i32::from((i as i32) < extra);
            let owned: Vec<i32> = (next..next + count).collect();
            next += count;
            let mut b = BytesMut::new();
            b.put_i16(0);
            let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                TopicPartition::default()
                    .with_topic(TopicName(s(TOPIC)))
                    .with_partitions(owned),
            ]);
            let _ = a.encode(&mut b, 0);
            SyncGroupRequestAssignment::default()
                .with_member_id(s(m))
                .with_assignment(b.freeze())
        })
        .collect()
}

pub(crate) fn decode_assignment(raw: &Bytes) -> Vec<i32> {
    let mut b = raw.clone();
    if b.len() < 2 {
        return Vec::new();
    }
    let version = b.get_i16().clamp(0, 3);
    let Ok(a) = ConsumerProtocolAssignment::decode(&mut b, version) else {
        return Vec::new();
    };
    let mut owned: Vec<i32> = a
        .assigned_partitions
        .iter()
        .filter(|t| t.topic.as_str() == TOPIC)
        .flat_map(|t| t.partitions.iter().copied())
        .collect();
    owned.sort();
    owned
}
