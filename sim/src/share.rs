//! The share-group runner (`sluice-sim run --share`, KIP-932): one broker, a topic,
//! producers writing it, and members of one share group reading it through the
//! project's client: ShareGroupHeartbeat for their assignment, ShareFetch in a share
//! session with their acknowledgements piggybacked (each delivered record accepted,
//! or now and then released to be delivered again). Members crash (their session and
//! locks are left to expire), and pause past the acquisition lock, so their late
//! acknowledgements are refused. The nemesis crashes, kills, pauses and cuts off the
//! broker meanwhile. After the heal the members drain the topic.
//!
//! Every delivery is recorded with its delivery count, every acknowledgement with the
//! broker's answer; `share-redelivered` and `share-lost` judge them, and the final read
//! the log itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jepsen_checks::{check_all, Kind, Op, F};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition, FetchTopic, ForgottenTopic,
};
use kafka_protocol::messages::{
    GroupId, IncrementalAlterConfigsRequest, ShareFetchRequest, ShareGroupHeartbeatRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, Runtime};
use sluice_core::sim::plant;
use sluice_net::client::{decode_batches, Client};
use tokio::time::{sleep, timeout, Instant};
use uuid::Uuid;

use crate::disk::SimDisk;
use crate::run::{
    connect, connected, create_topic, fault_phase, finish_seed, ip, spawn_producers_and_members,
    start_broker, Options, Recorder, Scenario, SeedResult, REQUEST_TIMEOUT, TOPIC,
};

pub const GROUP: &str = "jepsen-share";
/// The broker's `group.share.record.lock.duration.ms` in these runs.
pub const LOCK_MS: i32 = 2_000;
/// The broker's `group.share.session.timeout.ms` in these runs.
pub const SESSION_MS: i32 = 3_000;
/// How long the members get after the heal to accept every acknowledged send.
const DRAIN: Duration = Duration::from_secs(90);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Runs one seed of the share-group runner.
pub fn run_share_seed(seed: u64, opts: &Options) -> SeedResult {
    plant(&opts.bugs);
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    let opts = opts.clone();
    rt.block_on(simulate(seed, opts))
}

fn draw(opts: &Options) -> Scenario {
    let faults = Scenario::draw_faults(opts);
    let mut rng = thread_rng();
    Scenario {
        partitions: rng.gen_range(1..=4),
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

/// Creates the topic and has the group start at the earliest offset (the default,
/// latest, would skip what producers wrote before the first share fetch).
async fn setup(partitions: i32) {
    while create_topic(TOPIC, partitions).await.is_err() {
        sleep(Duration::from_millis(100)).await;
    }
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(32)
            .with_resource_name(s(GROUP))
            .with_configs(vec![AlterableConfig::default()
                .with_name(s("share.auto.offset.reset"))
                .with_config_operation(0)
                .with_value(Some(s("earliest")))]),
    ]);
    loop {
        if let Ok(mut c) = connect("setup").await {
            if let Ok(Ok(r)) = timeout(REQUEST_TIMEOUT, c.call(req.clone(), 1)).await {
                if r.responses.first().is_some_and(|r| r.error_code == 0) {
                    return;
                }
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
}

async fn simulate(seed: u64, opts: Options) -> SeedResult {
    let scenario = draw(&opts);
    if scenario.buggify {
        madsim::buggify::enable();
    }
    sluice_core::sim::enable_buggify(scenario.buggify);
    let rec = Recorder::new();
    rec.trace(&format!("scenario {} (share groups)", scenario.describe()));
    let handle = Handle::current();
    let disk = SimDisk::new(seed ^ 0x5eed_d15c);
    let skew = Arc::new(AtomicI64::new(thread_rng().gen_range(-5_000..5_000)));
    let partitions = scenario.partitions;
    let broker = start_broker(&handle, &rec, &disk, &skew, partitions);
    let setup_node = handle.create_node().name("setup").ip(ip(2)).build();
    let _ = setup_node.spawn(setup(partitions)).await;

    let settle = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let (producers, members) = spawn_producers_and_members(
        &handle,
        &rec,
        &scenario,
        opts.sends_per_producer,
        &mut clients,
        |m| member(rec.clone(), m, settle.clone(), stop.clone()),
    );

    let faults = fault_phase(&rec, &scenario, broker, &clients, &disk, &skew, producers).await;
    settle.store(true, Ordering::SeqCst);
    rec.trace("heal: faults cleared, broker restarted; the members drain the topic");
    let drained = wait_drained(&rec).await;
    stop.store(true, Ordering::SeqCst);
    for m in members {
        let _ = m.await;
    }
    let undrained = (!drained).then(|| {
        format!(
            "the share group did not accept every acknowledged send within {} s of the heal",
            DRAIN.as_secs()
        )
    });
    let label = format!("share {}", scenario.describe());
    finish_seed(&handle, &rec, seed, label, partitions, faults, undrained).await
}

/// Waits until every acknowledged send has been accepted (or archived), as
/// `share-lost` judges it; `false` if that does not happen within `DRAIN`.
async fn wait_drained(rec: &Recorder) -> bool {
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        sleep(Duration::from_millis(500)).await;
        let (ops, _) = rec.snapshot();
        if check_all(&ops).get("share-lost").is_empty() {
            rec.trace("drained: every acknowledged send accepted");
            return true;
        }
    }
    false
}

/// One member over its life: incarnations that end in a crash (until the drain) or at
/// `stop`.
async fn member(rec: Recorder, index: u64, settle: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let node = format!("member-{index}");
    let mut incarnation = 0;
    while !stop.load(Ordering::SeqCst) {
        incarnation += 1;
        let process = 5000 + index * 100 + incarnation;
        let lifetime = Duration::from_millis(thread_rng().gen_range(2_000..30_000));
        let mut m = Member {
            rec: rec.clone(),
            node: node.clone(),
            process,
            member_id: format!("{node}-{incarnation}"),
            epoch: 0,
            topic_id: None,
            assigned: BTreeSet::new(),
            in_session: BTreeSet::new(),
            session_epoch: 0,
            pending: BTreeMap::new(),
            client: None,
            next_heartbeat: Instant::now(),
        };
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
                rec.trace(&format!("{node}: crashed (process {process})"));
                sleep(Duration::from_millis(thread_rng().gen_range(0..3_000))).await;
            }
        }
    }
}

/// A record delivered and what the member will say of it.
struct Decided {
    offset: i64,
    /// None: a gap (no record at the offset).
    value: Option<String>,
    accept: bool,
}

struct Member {
    rec: Recorder,
    node: String,
    process: u64,
    member_id: String,
    epoch: i32,
    topic_id: Option<Uuid>,
    assigned: BTreeSet<i32>,
    /// The partitions the broker's share session holds, as this member told it.
    in_session: BTreeSet<i32>,
    session_epoch: i32,
    /// Acknowledgements to send with the next fetch, per partition.
    pending: BTreeMap<i32, Vec<Decided>>,
    client: Option<Client>,
    next_heartbeat: Instant,
}

impl Member {
    async fn run(&mut self, settle: &AtomicBool, stop: &AtomicBool) {
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if connected(&mut self.client, &self.node).await.is_none() {
                continue;
            }
            if Instant::now() >= self.next_heartbeat {
                self.heartbeat().await;
                continue;
            }
            if self.assigned.is_empty() || self.topic_id.is_none() {
                sleep(Duration::from_millis(50)).await;
                continue;
            }
            self.fetch().await;
            if !settle.load(Ordering::SeqCst) && thread_rng().gen_bool(0.01) {
                // Held past the lock: the acknowledgements that follow are refused.
                self.rec
                    .trace(&format!("{}: paused holding records", self.node));
                sleep(Duration::from_millis(2 * LOCK_MS as u64)).await;
            }
        }
    }

    fn op(&self, kind: Kind, f: F, partition: i32) -> Op {
        let mut op = Op::new(kind, f, &self.node, self.process, partition);
        op.group = Some(GROUP.into());
        op.member = Some(self.member_id.clone());
        op
    }

    /// The connection or the session is gone: a new session starts at epoch 0.
    fn lost(&mut self) {
        self.client = None;
        self.reset_session();
    }

    fn reset_session(&mut self) {
        self.session_epoch = 0;
        self.in_session.clear();
        self.pending.clear();
    }

    async fn heartbeat(&mut self) {
        let mut req = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(&self.member_id))
            .with_member_epoch(self.epoch);
        if self.epoch == 0 {
            req = req.with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]));
        }
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let r = match timeout(REQUEST_TIMEOUT, client.call(req, 1)).await {
            Ok(Ok(r)) => r,
            _ => {
                self.lost();
                self.next_heartbeat = Instant::now() + Duration::from_millis(100);
                return;
            }
        };
        match r.error_code {
            0 => {}
            // FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID (the coordinator restarted and
            // forgot the group): join again.
            110 | 25 => {
                self.epoch = 0;
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
            self.assigned = a
                .topic_partitions
                .iter()
                .flat_map(|tp| tp.partitions.iter().copied())
                .collect();
            if let Some(tp) = a.topic_partitions.first() {
                self.topic_id = Some(tp.topic_id);
            }
        }
    }

    /// Records what became of the acknowledgements of `partition` sent with a fetch.
    fn record_acks(&self, partition: i32, decided: &[Decided], kind: Kind, error: Option<String>) {
        let accepted: Vec<(i64, String)> = decided
            .iter()
            .filter(|d| d.accept)
            .filter_map(|d| Some((d.offset, d.value.clone()?)))
            .collect();
        if accepted.is_empty() {
            return;
        }
        let mut op = self.op(kind, F::ShareAck, partition);
        op.records = accepted;
        op.error = error;
        self.rec.record(op);
    }

    async fn fetch(&mut self) {
        let Some(topic_id) = self.topic_id else {
            return;
        };
        // A new session cannot carry acknowledgements: they are dropped (the records
        // were released with the old session).
        let pending = if self.session_epoch == 0 {
            BTreeMap::new()
        } else {
            std::mem::take(&mut self.pending)
        };
        self.pending.clear();
        let forget: BTreeSet<i32> = self
            .in_session
            .difference(&self.assigned)
            .copied()
            .collect();
        let mut partitions: BTreeSet<i32> = self.assigned.clone();
        partitions.extend(pending.keys().copied());
        let fetch_partitions = partitions
            .iter()
            .map(|&p| {
                let acks = pending
                    .get(&p)
                    .map(|ds| {
                        ds.iter()
                            .map(|d| {
                                let kind = match (&d.value, d.accept) {
                                    (None, _) => 0,
                                    (Some(_), true) => 1,
                                    (Some(_), false) => 2,
                                };
                                AcknowledgementBatch::default()
                                    .with_first_offset(d.offset)
                                    .with_last_offset(d.offset)
                                    .with_acknowledge_types(vec![kind])
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                FetchPartition::default()
                    .with_partition_index(p)
                    .with_acknowledgement_batches(acks)
            })
            .collect();
        let mut req = ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(GROUP))))
            .with_member_id(Some(s(&self.member_id)))
            .with_share_session_epoch(self.session_epoch)
            .with_max_wait_ms(100)
            .with_max_bytes(64 << 10)
            .with_max_records(thread_rng().gen_range(1..=50))
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(fetch_partitions)]);
        if !forget.is_empty() && self.session_epoch > 0 {
            req = req.with_forgotten_topics_data(vec![ForgottenTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(forget.iter().copied().collect())]);
        }
        for (p, ds) in &pending {
            self.record_acks(*p, ds, Kind::Invoke, None);
        }
        self.rec.record(self.op(Kind::Invoke, F::ShareFetch, -1));
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let r = match timeout(REQUEST_TIMEOUT, client.call(req, 1)).await {
            Ok(Ok(r)) => r,
            _ => {
                for (p, ds) in &pending {
                    self.record_acks(*p, ds, Kind::Info, None);
                }
                self.lost();
                return;
            }
        };
        if r.error_code != 0 {
            self.rec.trace(&format!(
                "{}: share fetch at session epoch {}: error {}",
                self.node, self.session_epoch, r.error_code
            ));
            // The session step failed: no acknowledgement was applied.
            for (p, ds) in &pending {
                self.record_acks(
                    *p,
                    ds,
                    Kind::Fail,
                    Some(format!("error code {}", r.error_code)),
                );
            }
            self.reset_session();
            return;
        }
        self.session_epoch += 1;
        self.in_session = partitions.difference(&forget).copied().collect();
        for pd in r.responses.iter().flat_map(|t| &t.partitions) {
            let p = pd.partition_index;
            if let Some(ds) = pending.get(&p) {
                match pd.acknowledge_error_code {
                    0 => self.record_acks(p, ds, Kind::Ok, None),
                    // COORDINATOR_NOT_AVAILABLE: the state could not be made durable;
                    // the write may have landed all the same.
                    15 => self.record_acks(p, ds, Kind::Info, Some("error code 15".into())),
                    code => self.record_acks(p, ds, Kind::Fail, Some(format!("error code {code}"))),
                }
            }
            if pd.error_code != 0 {
                self.rec.trace(&format!(
                    "{}: share fetch of partition {p}: error {}",
                    self.node, pd.error_code
                ));
            }
            if pd.error_code != 0 || pd.acquired_records.is_empty() {
                continue;
            }
            let Ok(records) = decode_batches(pd.records.clone().unwrap_or_default(), 0) else {
                continue;
            };
            let values: BTreeMap<i64, String> = records
                .into_iter()
                .map(|r| {
                    let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                    (r.offset, v.into_owned())
                })
                .collect();
            for a in &pd.acquired_records {
                let mut op = self.op(Kind::Ok, F::ShareFetch, p);
                op.delivery_count = Some(a.delivery_count);
                op.from = Some(a.first_offset);
                op.offset = Some(a.last_offset);
                for offset in a.first_offset..=a.last_offset.min(a.first_offset + 10_000) {
                    let value = values.get(&offset).cloned();
                    if let Some(v) = &value {
                        op.records.push((offset, v.clone()));
                    }
                    let accept = thread_rng().gen_bool(0.9);
                    self.pending.entry(p).or_default().push(Decided {
                        offset,
                        value,
                        accept,
                    });
                }
                self.rec.record(op);
            }
        }
    }
}
