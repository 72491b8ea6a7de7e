//! One simulation run: a seed picks a scenario (partitions, clients, which fault
//! classes are on and how often: swarm testing), starts the real broker through
//! `Node::start` on a simulated node with a `SimDisk`, drives it with producers and
//! consumers built on the project's Kafka client, lets a nemesis inject faults, heals,
//! reads everything back, and checks the history.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use jepsen_checks::{check_all, history, Kind, Op, Report, F};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{CreateTopicsRequest, InitProducerIdRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use sluice_core::config::BrokerConfig;
use sluice_core::env::{Env, SeededRandom};
use sluice_core::sim::{plant, planted, Bug};
use sluice_net::client::{
    decode_batches, encode_producer_batch, fetch_request, produce_request, Client, Message,
    Sequence,
};
use sluice_net::node::Node;
use sluice_net::tcp::TcpNetwork;
use tokio::time::{sleep, timeout, Instant};

use crate::clock::SimClock;
use crate::disk::{Faults, SimDisk};
use crate::env::InlineTasks;

const BROKER: &str = "10.0.0.1:9092";
pub(crate) const TOPIC: &str = "jepsen";
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub sends_per_producer: usize,
    /// Every fault class on (otherwise each is on with probability 1/2).
    pub all_faults: bool,
    pub bugs: Vec<Bug>,
    /// The cluster runner's fault model as it was when issue 15's seeds were found
    /// (11 kinds, one broker at a time, every broker restarted at the heal, no
    /// buggify): those seeds stay regression scenarios under the model that found them.
    pub classic: bool,
    /// The consumer-group runner's members speak either group protocol, drawn per
    /// incarnation (KIP-848's online migration: upgrades, mixed groups, downgrades).
    pub migrate: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sends_per_producer: 500,
            all_faults: true,
            bugs: Vec::new(),
            classic: false,
            migrate: false,
        }
    }
}

/// The fault classes the nemesis draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Power loss: kill the node and drop or tear its unsynced writes.
    Crash,
    /// Process kill -9: the page cache survives.
    Kill,
    Pause,
    /// Cut the broker off from everyone.
    Isolate,
    /// The broker can send but not receive.
    DropInbound,
    /// The broker can receive but not send.
    DropOutbound,
    /// One client's link to the broker drops its packets one way.
    ClogClientLink,
    /// fsync fails; the broker must stop serving the partition, then is restarted.
    FsyncFail,
    CorruptRead,
    DiskFull,
    ClockJump,
}

impl Fault {
    pub(crate) const ALL: [Fault; 11] = [
        Fault::Crash,
        Fault::Kill,
        Fault::Pause,
        Fault::Isolate,
        Fault::DropInbound,
        Fault::DropOutbound,
        Fault::ClogClientLink,
        Fault::FsyncFail,
        Fault::CorruptRead,
        Fault::DiskFull,
        Fault::ClockJump,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Isolate => "isolate",
            Fault::DropInbound => "drop-inbound",
            Fault::DropOutbound => "drop-outbound",
            Fault::ClogClientLink => "clog-client-link",
            Fault::FsyncFail => "fsync-fail",
            Fault::CorruptRead => "corrupt-read",
            Fault::DiskFull => "disk-full",
            Fault::ClockJump => "clock-jump",
        }
    }
}

/// The seed's draw.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub partitions: i32,
    pub producers: u64,
    pub consumers: u64,
    /// Members of the consumer group.
    pub members: u64,
    /// Transactional producers, and the partitions of their topic.
    pub txn_producers: u64,
    pub txn_partitions: i32,
    /// Partitions of the compacted topic of the log-life workload.
    pub kv_partitions: i32,
    /// Enabled fault classes with their weights.
    pub faults: Vec<(Fault, u32)>,
    pub buggify: bool,
}

impl Scenario {
    /// The fault classes a seed turns on with their weights: every class (or, with
    /// swarm testing, each with probability 1/2), weight 1–5.
    pub(crate) fn draw_faults(opts: &Options) -> Vec<(Fault, u32)> {
        let mut rng = thread_rng();
        let mut faults = Vec::new();
        for f in Fault::ALL {
            if opts.all_faults || rng.gen_bool(0.5) {
                faults.push((f, rng.gen_range(1..=5)));
            }
        }
        faults
    }

    fn draw(opts: &Options) -> Scenario {
        let faults = Self::draw_faults(opts);
        let mut rng = thread_rng();
        Scenario {
            partitions: rng.gen_range(1..=4),
            producers: rng.gen_range(2..=3),
            consumers: rng.gen_range(1..=2),
            members: rng.gen_range(2..=3),
            txn_producers: rng.gen_range(1..=2),
            txn_partitions: rng.gen_range(2..=3),
            kv_partitions: rng.gen_range(1..=2),
            faults,
            buggify: rng.gen_bool(0.5),
        }
    }

    pub fn describe(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(f, w)| format!("{}x{w}", f.name()))
            .collect();
        format!(
            "partitions={} producers={} consumers={} members={} txn-producers={}x{} kv-partitions={} buggify={} faults=[{}]",
            self.partitions,
            self.producers,
            self.consumers,
            self.members,
            self.txn_producers,
            self.txn_partitions,
            self.kv_partitions,
            self.buggify,
            faults.join(",")
        )
    }
}

/// What a seed did and what the checkers found.
#[derive(Debug, Clone)]
pub struct SeedResult {
    pub seed: u64,
    pub scenario: String,
    /// Completed operations (sends and polls).
    pub ops: usize,
    pub faults: BTreeMap<&'static str, u32>,
    pub report: Report,
    /// Set when the healed cluster did not serve everything back in time.
    pub liveness: Option<String>,
    pub history: String,
    pub trace: String,
    pub trace_hash: u64,
    /// Buggify points this run reached, and how many of them fired.
    pub points_reached: usize,
    pub points_fired: usize,
    /// Every point reached: (reached, fired) counts.
    pub points: BTreeMap<&'static str, (u64, u64)>,
}

impl SeedResult {
    #[allow(clippy::too_many_arguments)] // one per field
    pub(crate) fn new(
        seed: u64,
        scenario: String,
        ops: &[Op],
        faults: BTreeMap<&'static str, u32>,
        report: Report,
        liveness: Option<String>,
        history: String,
        trace: String,
    ) -> SeedResult {
        let trace_hash = fnv64(history.as_bytes()) ^ fnv64(trace.as_bytes()).rotate_left(1);
        let points = sluice_core::sim::take_buggify_points();
        SeedResult {
            points_reached: points.len(),
            points_fired: points.values().filter(|(_, f)| *f > 0).count(),
            points,
            seed,
            scenario,
            ops: ops.iter().filter(|o| o.kind != Kind::Invoke).count(),
            faults,
            report,
            liveness,
            history,
            trace,
            trace_hash,
        }
    }

    pub fn valid(&self) -> bool {
        self.report.is_valid() && self.liveness.is_none()
    }

    pub fn summary(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        let verdict = match &self.liveness {
            Some(why) => format!("{} liveness: {why}", self.report.summary()),
            None => self.report.summary(),
        };
        format!(
            "seed {} | {} | ops {} | faults {} | buggify points {} fired of {} reached | anomalies {} | trace {:016x}",
            self.seed,
            self.scenario,
            self.ops,
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(",")
            },
            self.points_fired,
            self.points_reached,
            verdict,
            self.trace_hash
        )
    }
}

/// Runs one seed to completion.
pub fn run_seed(seed: u64, opts: &Options) -> SeedResult {
    plant(&opts.bugs);
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    let opts = opts.clone();
    rt.block_on(simulate(seed, opts))
}

/// The history and a trace of what the nemesis did, both in simulated time.
#[derive(Clone)]
pub(crate) struct Recorder {
    inner: Arc<Mutex<(Vec<Op>, String)>>,
    start: Instant,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        sluice_core::sim::take_events();
        Recorder {
            inner: Arc::new(Mutex::new((Vec::new(), String::new()))),
            start: Instant::now(),
        }
    }

    /// The history and the trace so far.
    pub(crate) fn snapshot(&self) -> (Vec<Op>, String) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.drain_events(&mut g.1);
        g.clone()
    }

    /// Moves the brokers' events (`sim_event!`) into the trace.
    fn drain_events(&self, trace: &mut String) {
        for (at, line) in sluice_core::sim::take_events() {
            let t = at.saturating_duration_since(self.start).as_millis();
            trace.push_str(&format!("{t:>8} ms  {line}\n"));
        }
    }

    /// History time now, as ops are stamped.
    pub(crate) fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub(crate) fn record(&self, mut op: Op) {
        op.time_ms = self.now_ms();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        op.index = g.0.len() as u64;
        g.0.push(op);
    }
    pub(crate) fn trace(&self, line: &str) {
        let t = self.start.elapsed().as_millis();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.drain_events(&mut g.1);
        if sluice_core::sim::live_trace() {
            eprintln!("{t:>8} ms  {line}");
        }
        g.1.push_str(&format!("{t:>8} ms  {line}\n"));
    }
}

async fn simulate(seed: u64, opts: Options) -> SeedResult {
    let scenario = Scenario::draw(&opts);
    if scenario.buggify {
        madsim::buggify::enable();
    }
    sluice_core::sim::enable_buggify(scenario.buggify);
    let rec = Recorder::new();
    rec.trace(&format!("scenario {}", scenario.describe()));
    let handle = Handle::current();
    let disk = SimDisk::new(seed ^ 0x5eed_d15c);
    let skew = Arc::new(AtomicI64::new(thread_rng().gen_range(-5_000..5_000)));
    let broker = start_broker(&handle, &rec, &disk, &skew, scenario.partitions);

    // The topic, before any client works.
    let setup = handle.create_node().name("setup").ip(ip(2)).build();
    let partitions = scenario.partitions;
    let txn_partitions = scenario.txn_partitions;
    let kv_partitions = scenario.kv_partitions;
    let _ = setup
        .spawn(async move {
            for (topic, count) in [(TOPIC, partitions), (crate::txn::TXN_TOPIC, txn_partitions)] {
                while create_topic(topic, count).await.is_err() {
                    sleep(Duration::from_millis(100)).await;
                }
            }
            while crate::kv::create_topics(kv_partitions).await.is_err() {
                sleep(Duration::from_millis(100)).await;
            }
        })
        .await;

    let stop_consumers = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let mut producers = Vec::new();
    for p in 0..scenario.producers {
        let node = handle
            .create_node()
            .name(format!("producer-{p}"))
            .ip(ip(10 + p as u8))
            .build();
        clients.push(node.id());
        // Producer 0 uses acks=all; the others acks=1 or all. Producers with acks=all
        // are idempotent half the time (idempotence needs acks=all).
        let acks = if p == 0 || thread_rng().gen_bool(0.5) {
            -1
        } else {
            1
        };
        let idempotent = acks == -1 && thread_rng().gen_bool(0.5);
        let (rec, sends) = (rec.clone(), opts.sends_per_producer);
        producers.push(node.spawn(producer(rec, p, acks, idempotent, sends, partitions)));
    }
    let mut consumers = Vec::new();
    for c in 0..scenario.consumers {
        let node = handle
            .create_node()
            .name(format!("consumer-{c}"))
            .ip(ip(20 + c as u8))
            .build();
        clients.push(node.id());
        let process = 100 + c;
        consumers.push(node.spawn(consumer(
            rec.clone(),
            process,
            partitions,
            stop_consumers.clone(),
        )));
    }
    for m in 0..scenario.members {
        let node = handle
            .create_node()
            .name(format!("member-{m}"))
            .ip(ip(40 + m as u8))
            .build();
        clients.push(node.id());
        consumers.push(node.spawn(crate::group::member(
            rec.clone(),
            m,
            partitions,
            stop_consumers.clone(),
        )));
    }
    for t in 0..scenario.txn_producers {
        let node = handle
            .create_node()
            .name(format!("txn-producer-{t}"))
            .ip(ip(50 + t as u8))
            .build();
        clients.push(node.id());
        // Stopped with the consumers: a transactional producer may have to wait out a
        // partition taken offline until the heal restarts the broker.
        let transactions = opts.sends_per_producer / 8;
        consumers.push(node.spawn(crate::txn::producer(
            rec.clone(),
            t,
            txn_partitions,
            transactions,
            stop_consumers.clone(),
        )));
    }
    {
        let node = handle.create_node().name("ctp-worker").ip(ip(70)).build();
        clients.push(node.id());
        consumers.push(node.spawn(crate::ctp::worker(
            rec.clone(),
            partitions,
            txn_partitions,
            stop_consumers.clone(),
        )));
    }
    // The log-life workload: two keyed writers of the compacted topic, one writer of
    // the trimmed topic, a trimmer and a scanner.
    for w in 0..3u64 {
        let node = handle
            .create_node()
            .name(format!("kv-writer-{w}"))
            .ip(ip(80 + w as u8))
            .build();
        clients.push(node.id());
        let kv = (w < 2).then_some(kv_partitions);
        let (rec, stop, puts) = (rec.clone(), stop_consumers.clone(), opts.sends_per_producer);
        consumers.push(node.spawn(crate::kv::writer(rec, w, kv, puts, stop)));
    }
    {
        let node = handle.create_node().name("kv-trimmer").ip(ip(85)).build();
        clients.push(node.id());
        consumers.push(node.spawn(crate::kv::trimmer(rec.clone(), stop_consumers.clone())));
        let node = handle.create_node().name("kv-scanner").ip(ip(86)).build();
        clients.push(node.id());
        let (rec, stop) = (rec.clone(), stop_consumers.clone());
        consumers.push(node.spawn(crate::kv::scanner(rec, kv_partitions, stop)));
    }
    {
        let node = handle.create_node().name("txn-reader").ip(ip(60)).build();
        clients.push(node.id());
        let (rec, stop) = (rec.clone(), stop_consumers.clone());
        consumers.push(node.spawn(async move {
            crate::txn::reader(rec, txn_partitions, stop, false).await;
        }));
    }

    // Phase 1: faults, while the producers run; phase 2: heal.
    let faults = fault_phase(&rec, &scenario, broker, &clients, &disk, &skew, producers).await;
    rec.trace("heal: faults cleared, broker restarted");
    sleep(Duration::from_secs(1)).await;
    stop_consumers.store(true, Ordering::SeqCst);
    for c in consumers {
        let _ = c.await;
    }

    // Final read: everything acknowledged must come back (liveness).
    let reader = handle.create_node().name("reader").ip(ip(30)).build();
    let liveness = reader
        .spawn(final_read(rec.clone(), partitions))
        .await
        .unwrap_or_else(|_| Some("final reader panicked".into()));
    let txn_reader = handle
        .create_node()
        .name("txn-final-reader")
        .ip(ip(61))
        .build();
    let stop = stop_consumers.clone();
    let txn_liveness = txn_reader
        .spawn(crate::txn::reader(rec.clone(), txn_partitions, stop, true))
        .await
        .unwrap_or_else(|_| Some("transactional final reader panicked".into()));
    // The job's final committed offsets, once every transaction has settled (the
    // read above waited for that; markers reach __consumer_offsets just after).
    let rec2 = rec.clone();
    let _ = txn_reader
        .spawn(async move {
            sleep(Duration::from_secs(2)).await;
            for _ in 0..100 {
                if let Ok(mut c) = connect("txn-final-reader").await {
                    let got = crate::ctp::committed(
                        &rec2,
                        &mut c,
                        "txn-final-reader",
                        2997,
                        partitions,
                        true,
                    )
                    .await;
                    if got.is_ok() {
                        return;
                    }
                }
                sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    let kv_reader = handle.create_node().name("kv-reader").ip(ip(87)).build();
    let kv_liveness = kv_reader
        .spawn(crate::kv::final_read(rec.clone(), kv_partitions))
        .await
        .unwrap_or_else(|_| Some("log-life final reader panicked".into()));
    let liveness = liveness.or(txn_liveness).or(kv_liveness);

    let (ops, trace) = rec.snapshot();
    let disk_stats = disk.stats();
    let trace = format!("{trace}disk {disk_stats:?}\n");
    let report = check_all(&ops);
    let history = history::to_jsonl(&ops);
    SeedResult::new(
        seed,
        scenario.describe(),
        &ops,
        faults,
        report,
        liveness,
        history,
        trace,
    )
}

/// The group runners' clients, one node each: `scenario.producers` acks=all producers,
/// then `scenario.members` members running `member(index)`; their node ids go to
/// `clients`.
pub(crate) fn spawn_producers_and_members<Fut>(
    handle: &Handle,
    rec: &Recorder,
    scenario: &Scenario,
    sends: usize,
    clients: &mut Vec<NodeId>,
    member: impl Fn(u64) -> Fut,
) -> (
    Vec<madsim::task::JoinHandle<()>>,
    Vec<madsim::task::JoinHandle<()>>,
)
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut producers = Vec::new();
    for p in 0..scenario.producers {
        let node = handle
            .create_node()
            .name(format!("producer-{p}"))
            .ip(ip(10 + p as u8))
            .build();
        clients.push(node.id());
        let rec = rec.clone();
        producers.push(node.spawn(producer(rec, p, -1, false, sends, scenario.partitions)));
    }
    let mut members = Vec::new();
    for m in 0..scenario.members {
        let node = handle
            .create_node()
            .name(format!("member-{m}"))
            .ip(ip(40 + m as u8))
            .build();
        clients.push(node.id());
        members.push(node.spawn(member(m)));
    }
    (producers, members)
}

/// The end of a group runner's seed: the final read, then every checker over the
/// history. `unfinished` is the runner's own liveness verdict, reported when the final
/// read has none.
#[allow(clippy::too_many_arguments)] // the seed's parts
pub(crate) async fn finish_seed(
    handle: &Handle,
    rec: &Recorder,
    seed: u64,
    label: String,
    partitions: i32,
    faults: BTreeMap<&'static str, u32>,
    unfinished: Option<String>,
) -> SeedResult {
    let reader = handle.create_node().name("reader").ip(ip(30)).build();
    let liveness = reader
        .spawn(final_read(rec.clone(), partitions))
        .await
        .unwrap_or_else(|_| Some("final reader panicked".into()))
        .or(unfinished);
    let (ops, trace) = rec.snapshot();
    let report = check_all(&ops);
    let history = history::to_jsonl(&ops);
    SeedResult::new(seed, label, &ops, faults, report, liveness, history, trace)
}

/// The fault phase: the nemesis injects faults until every producer is done, then
/// every fault is healed. Returns how many of each kind were injected.
pub(crate) async fn fault_phase(
    rec: &Recorder,
    scenario: &Scenario,
    broker: NodeId,
    clients: &[NodeId],
    disk: &SimDisk,
    skew: &Arc<AtomicI64>,
    producers: Vec<madsim::task::JoinHandle<()>>,
) -> BTreeMap<&'static str, u32> {
    let done = Arc::new(AtomicBool::new(false));
    let nemesis = madsim::task::spawn(nemesis(
        rec.clone(),
        scenario.clone(),
        broker,
        clients.to_vec(),
        disk.clone(),
        skew.clone(),
        done.clone(),
    ));
    for p in producers {
        let _ = p.await;
    }
    rec.trace("producers done: healing");
    done.store(true, Ordering::SeqCst);
    let faults = nemesis.await.unwrap_or_default();
    heal(&Handle::current(), disk, broker, clients);
    faults
}

/// Clears every fault (the disk's, the network's) and restarts the broker process, so
/// partitions taken offline by a failed fsync come back.
pub(crate) fn heal(handle: &Handle, disk: &SimDisk, broker: NodeId, clients: &[NodeId]) {
    disk.set_faults(Faults::default());
    let net = NetSim::current();
    net.unclog_node(broker);
    for c in clients {
        net.unclog_link(*c, broker);
        net.unclog_link(broker, *c);
    }
    handle.kill(broker);
    handle.restart(broker);
}

pub(crate) fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The broker node: the same `Node::start` as `sluice server`, on the simulated disk,
/// network and clock. Restarts run it again on the same disk.
pub(crate) fn start_broker(
    handle: &Handle,
    rec: &Recorder,
    disk: &SimDisk,
    skew: &Arc<AtomicI64>,
    partitions: i32,
) -> NodeId {
    let (rec, disk, skew) = (rec.clone(), disk.clone(), skew.clone());
    handle
        .create_node()
        .name("broker")
        .ip(ip(1))
        .init(move || {
            let (rec, disk, skew) = (rec.clone(), disk.clone(), skew.clone());
            async move {
                let env = Env {
                    clock: Arc::new(SimClock::new(skew)),
                    net: Arc::new(TcpNetwork),
                    disk: Arc::new(disk),
                    tasks: Arc::new(InlineTasks),
                    rng: Arc::new(SeededRandom::new(thread_rng().gen())),
                };
                let config = BrokerConfig {
                    listen: BROKER.into(),
                    advertised_host: "10.0.0.1".into(),
                    advertised_port: 9092,
                    data_dir: "sim".into(),
                    num_partitions: partitions,
                    // Small segments so rolls and sealed segments happen under faults.
                    log_segment_bytes: 16 << 10,
                    log_index_interval_bytes: 512,
                    // Short sessions, so members expire and rebalance within a run.
                    group_min_session_timeout_ms: 1_000,
                    group_initial_rebalance_delay_ms: 200,
                    // KIP-848 members likewise (the consumer-group runner).
                    group_consumer_session_timeout_ms: crate::kip848::SESSION_MS,
                    group_consumer_heartbeat_interval_ms: 300,
                    // Share groups likewise, with short locks (the share-group runner).
                    group_share_session_timeout_ms: crate::share::SESSION_MS,
                    group_share_heartbeat_interval_ms: 300,
                    group_share_record_lock_duration_ms: crate::share::LOCK_MS,
                    share_coordinator_state_topic_num_partitions: 4,
                    // Compact __consumer_offsets and __transaction_state often, under
                    // the faults.
                    offsets_topic_num_partitions: 4,
                    offsets_topic_segment_bytes: 16 << 10,
                    transaction_state_log_segment_bytes: 16 << 10,
                    log_cleaner_backoff_ms: 500,
                    log_retention_check_interval_ms: 500,
                    transaction_state_log_num_partitions: 4,
                    // The workloads' records carry made-up timestamps; nothing may expire.
                    log_retention_ms: -1,
                    ..BrokerConfig::default()
                };
                match Node::start(env, config).await {
                    Ok(node) => {
                        rec.trace("broker: started");
                        std::future::pending::<()>().await;
                        drop(node);
                    }
                    Err(e) => rec.trace(&format!("broker: failed to start: {e}")),
                }
            }
        })
        .build()
        .id()
}

/// The client's connection, made if there is none; `None`, after a pause, when the
/// broker cannot be reached.
pub(crate) async fn connected<'a>(
    client: &'a mut Option<Client>,
    id: &str,
) -> Option<&'a mut Client> {
    if client.is_none() {
        match connect(id).await {
            Ok(c) => *client = Some(c),
            Err(_) => {
                sleep(Duration::from_millis(100)).await;
                return None;
            }
        }
    }
    client.as_mut()
}

/// One fetch of one partition: its data, or why there was none.
pub(crate) async fn fetch_partition(
    client: &mut Client,
    topic: &str,
    partition: i32,
    offset: i64,
    read_committed: bool,
) -> Result<PartitionData, String> {
    let mut req = fetch_request(topic, [(partition, offset)], 100, 64 << 10, 32 << 10);
    if read_committed {
        req.isolation_level = 1;
    }
    let r = timeout(REQUEST_TIMEOUT, client.call(req, 12))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let pd = r
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .next()
        .ok_or("empty fetch response")?;
    if pd.error_code != 0 {
        return Err(format!("error code {}", pd.error_code));
    }
    Ok(pd)
}

pub(crate) async fn connect(id: &str) -> Result<Client, String> {
    match timeout(REQUEST_TIMEOUT, Client::connect(&TcpNetwork, BROKER, id)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

pub(crate) async fn create_topic(topic: &'static str, partitions: i32) -> Result<(), String> {
    let mut c = connect("setup").await?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let r = timeout(REQUEST_TIMEOUT, c.call(req, 7))
        .await
        .map_err(|_| "timeout")?
        .map_err(|e| e.to_string())?;
    match r.topics.first().map(|t| t.error_code) {
        Some(0) | Some(36) => Ok(()),
        other => Err(format!("create topic: {other:?}")),
    }
}

/// Error codes that prove a produce wrote nothing.
fn definitely_not_written(code: i16) -> bool {
    // ... and for idempotent producers, a sequence or epoch refusal.
    matches!(code, 2 | 3 | 10 | 21 | 45 | 47 | 87)
}

/// An idempotent producer's identity and next sequence per partition.
struct Idempotence {
    producer_id: Option<i64>,
    next: Vec<i32>,
}

/// How many times an idempotent producer sends a batch before giving up on it.
const IDEMPOTENT_ATTEMPTS: usize = 8;

async fn init_producer_id(client: &mut Client) -> Option<i64> {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    match timeout(REQUEST_TIMEOUT, client.call(req, 4)).await {
        Ok(Ok(r)) if r.error_code == 0 => Some(r.producer_id.0),
        _ => None,
    }
}

/// One produce request: the partition's error code and base offset, or why there
/// was no answer.
async fn send_once(
    client: &mut Client,
    acks: i16,
    partition: i32,
    batch: Bytes,
) -> Result<(i16, i64), String> {
    let req = produce_request(TOPIC, acks, 1000, [(partition, batch)]);
    match timeout(REQUEST_TIMEOUT, client.call(req, 9)).await {
        Ok(Ok(r)) => r
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .map(|p| (p.error_code, p.base_offset))
            .ok_or_else(|| "empty produce response".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Sends single-record batches to random partitions. An idempotent producer (acks
/// all) resends a batch whose outcome it does not know, with the same sequence, as
/// real clients do: the broker must store it once.
pub(crate) async fn producer(
    rec: Recorder,
    process: u64,
    acks: i16,
    idempotent: bool,
    sends: usize,
    partitions: i32,
) {
    let node = format!("producer-{process}");
    let mut client: Option<Client> = None;
    let mut idem = Idempotence {
        producer_id: None,
        next: vec![0; partitions as usize],
    };
    for n in 0..sends {
        let partition = thread_rng().gen_range(0..partitions);
        // Values of varied size, so batches straddle disk sectors as real ones do.
        let pad = thread_rng().gen_range(0..700);
        let value = format!("{process}-{n}:{}", ".".repeat(pad));
        let mut op = Op::new(Kind::Invoke, F::Send, &node, process, partition);
        op.acks = Some(acks);
        op.value = Some(value.clone());
        rec.record(op.clone());
        let message = Message {
            key: None,
            value: Some(Bytes::from(value.clone())),
            timestamp: n as i64,
        };
        let mut reply: Option<(i16, i64)> = None;
        let mut sent = false;
        let attempts = if idempotent { IDEMPOTENT_ATTEMPTS } else { 1 };
        for attempt in 0..attempts {
            if attempt > 0 {
                sleep(Duration::from_millis(thread_rng().gen_range(50..300))).await;
            }
            if client.is_none() {
                match connect(&node).await {
                    Ok(c) => client = Some(c),
                    Err(e) => {
                        op.error = Some(e);
                        continue;
                    }
                }
            }
            let Some(c) = client.as_mut() else { continue };
            if idempotent && idem.producer_id.is_none() {
                // A new producer id starts every partition's sequence at 0.
                idem.producer_id = init_producer_id(c).await;
                idem.next.iter_mut().for_each(|s| *s = 0);
                if idem.producer_id.is_none() {
                    op.error = Some("no producer id".into());
                    client = None;
                    continue;
                }
            }
            let sequence = idem.producer_id.map(|producer_id| Sequence {
                producer_id,
                epoch: 0,
                first: idem.next[partition as usize],
            });
            op.producer = sequence
                .as_ref()
                .filter(|_| idempotent)
                .map(|s| (s.producer_id, s.epoch, s.first));
            let batch = match encode_producer_batch(
                std::slice::from_ref(&message),
                Compression::None,
                sequence.filter(|_| idempotent),
            ) {
                Ok(b) => b,
                Err(e) => {
                    op.error = Some(e.to_string());
                    break;
                }
            };
            sent = true;
            match send_once(c, acks, partition, batch).await {
                Ok((0, offset)) => {
                    reply = Some((0, offset));
                    break;
                }
                Ok((code, offset)) => {
                    reply = Some((code, offset));
                    op.error = Some(format!("error code {code}"));
                    if definitely_not_written(code) || !idempotent {
                        break;
                    }
                }
                Err(e) => {
                    reply = None;
                    op.error = Some(e);
                    client = None;
                }
            }
        }
        match reply {
            Some((0, offset)) => {
                op.kind = Kind::Ok;
                op.offset = Some(offset);
                op.error = None;
                idem.next[partition as usize] += 1;
            }
            Some((code, _)) if definitely_not_written(code) => op.kind = Kind::Fail,
            _ if !sent => op.kind = Kind::Fail,
            _ => {
                op.kind = Kind::Info;
                // Where this partition's sequence stands is unknown: start afresh.
                idem.producer_id = None;
                if !idempotent {
                    client = None;
                }
            }
        }
        let failed = op.kind != Kind::Ok;
        rec.record(op);
        let pause = if failed {
            thread_rng().gen_range(50..200)
        } else {
            thread_rng().gen_range(0..20)
        };
        sleep(Duration::from_millis(pause)).await;
    }
}

/// Fetches one partition from `offset`: the records and the high watermark.
async fn poll_one(
    client: &mut Client,
    partition: i32,
    offset: i64,
) -> Result<(Vec<(i64, String)>, i64), String> {
    let pd = fetch_partition(client, TOPIC, partition, offset, false).await?;
    let records =
        decode_batches(pd.records.unwrap_or_default(), offset).map_err(|e| e.to_string())?;
    let records = records
        .into_iter()
        .map(|r| {
            (
                r.offset,
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    Ok((records, pd.high_watermark))
}

/// How a reader fetches a partition: the records from `offset` and the high
/// watermark. The single-broker reader uses one connection; the cluster's follows
/// the leaders.
pub(crate) trait Poller {
    fn poll(
        &mut self,
        partition: i32,
        offset: i64,
    ) -> impl std::future::Future<Output = Result<(Vec<(i64, String)>, i64), String>>;
}

/// The single broker, over one connection made again after any error.
struct BrokerPoller {
    id: String,
    client: Option<Client>,
}

impl Poller for BrokerPoller {
    async fn poll(
        &mut self,
        partition: i32,
        offset: i64,
    ) -> Result<(Vec<(i64, String)>, i64), String> {
        let c = connected(&mut self.client, &self.id)
            .await
            .ok_or("not connected")?;
        let r = poll_one(c, partition, offset).await;
        if r.is_err() {
            self.client = None;
        }
        r
    }
}

async fn consumer(rec: Recorder, process: u64, partitions: i32, stop: Arc<AtomicBool>) {
    let node = format!("consumer-{}", process - 100);
    let poller = BrokerPoller {
        id: node.clone(),
        client: None,
    };
    consume(rec, &node, process, partitions, stop, poller).await;
}

/// Reads every partition round robin, recording each poll, until `stop`.
pub(crate) async fn consume(
    rec: Recorder,
    node: &str,
    process: u64,
    partitions: i32,
    stop: Arc<AtomicBool>,
    mut poller: impl Poller,
) {
    let mut positions = vec![0i64; partitions as usize];
    let mut p = 0usize;
    while !stop.load(Ordering::SeqCst) {
        p = (p + 1) % positions.len();
        let mut op = Op::new(Kind::Ok, F::Poll, node, process, p as i32);
        op.from = Some(positions[p]);
        match poller.poll(p as i32, positions[p]).await {
            Ok((records, hw)) => {
                if let Some((last, _)) = records.last() {
                    positions[p] = last + 1;
                }
                op.records = records;
                op.hw = Some(hw);
            }
            Err(e) => {
                op.kind = Kind::Fail;
                op.error = Some(e);
                if planted(Bug::ConsumerRewinds) {
                    positions[p] = (positions[p] - 1).max(0);
                }
            }
        }
        let failed = op.kind == Kind::Fail;
        rec.record(op);
        if failed {
            sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads every partition from 0 to its high watermark; `Some(reason)` if the healed
/// broker could not serve that within the liveness deadline.
pub(crate) async fn final_read(rec: Recorder, partitions: i32) -> Option<String> {
    let poller = BrokerPoller {
        id: "reader".into(),
        client: None,
    };
    read_to_end(rec, partitions, poller).await
}

/// The final read: every partition from 0 to its high watermark, each poll recorded
/// as final; `Some(reason)` if that is not done within 60 s.
pub(crate) async fn read_to_end(
    rec: Recorder,
    partitions: i32,
    mut poller: impl Poller,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in 0..partitions {
        let mut offset = 0;
        loop {
            if Instant::now() > deadline {
                return Some(format!(
                    "partition {p} not read back to its end within 60 s after healing"
                ));
            }
            let mut op = Op::new(Kind::Ok, F::Poll, "reader", 999, p);
            op.from = Some(offset);
            op.final_read = true;
            match poller.poll(p, offset).await {
                Ok((records, hw)) => {
                    if let Some((last, _)) = records.last() {
                        offset = last + 1;
                    }
                    op.records = records;
                    op.hw = Some(hw);
                    rec.record(op);
                    if offset >= hw {
                        break;
                    }
                }
                Err(e) => {
                    op.kind = Kind::Fail;
                    op.error = Some(e);
                    rec.record(op);
                    sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    None
}

/// A disk fault both runners inject: 0.5–10% of reads return a flipped bit.
pub(crate) fn corrupt_reads() -> Faults {
    Faults {
        corrupt_read_per_mille: thread_rng().gen_range(5..100),
        ..Faults::default()
    }
}

/// A disk fault both runners inject: the disk is full after a few more KiB.
pub(crate) fn full_soon(disk: &SimDisk) -> Faults {
    let room = thread_rng().gen_range(0..32 << 10);
    Faults {
        capacity_bytes: Some(disk.used_bytes() + room),
        ..Faults::default()
    }
}

/// A clock jump goes into the history: what the broker's wall clock does bounds what
/// the checkers may expect of time-based configs (delete.retention.ms).
pub(crate) fn record_clock_jump(rec: &Recorder, jump_ms: i64) {
    let mut op = Op::new(Kind::Info, F::ClockJump, "nemesis", 9000, -1);
    op.clock_ms = Some(jump_ms);
    rec.record(op);
}

pub(crate) async fn nemesis(
    rec: Recorder,
    scenario: Scenario,
    broker: NodeId,
    clients: Vec<NodeId>,
    disk: SimDisk,
    skew: Arc<AtomicI64>,
    done: Arc<AtomicBool>,
) -> BTreeMap<&'static str, u32> {
    let mut counts = BTreeMap::new();
    let total: u32 = scenario.faults.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return counts;
    }
    let handle = Handle::current();
    let net = NetSim::current();
    let pause = |lo: u64, hi: u64| sleep(Duration::from_millis(thread_rng().gen_range(lo..hi)));
    while !done.load(Ordering::SeqCst) {
        pause(200, 1200).await;
        if done.load(Ordering::SeqCst) {
            break;
        }
        let mut pick = thread_rng().gen_range(0..total);
        let fault = scenario
            .faults
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or(Fault::Kill, |(f, _)| *f);
        rec.trace(&format!("nemesis: {}", fault.name()));
        match fault {
            Fault::Crash => {
                handle.kill(broker);
                disk.crash();
                pause(50, 500).await;
                handle.restart(broker);
            }
            Fault::Kill => {
                handle.kill(broker);
                pause(50, 500).await;
                handle.restart(broker);
            }
            Fault::Pause => {
                handle.pause(broker);
                pause(100, 1500).await;
                handle.resume(broker);
            }
            Fault::Isolate => {
                net.clog_node(broker);
                pause(100, 1000).await;
                net.unclog_node(broker);
            }
            Fault::DropInbound => {
                net.clog_node_in(broker);
                pause(100, 1000).await;
                net.unclog_node_in(broker);
            }
            Fault::DropOutbound => {
                net.clog_node_out(broker);
                pause(100, 1000).await;
                net.unclog_node_out(broker);
            }
            Fault::ClogClientLink => {
                let c = clients[thread_rng().gen_range(0..clients.len())];
                let (a, b) = if thread_rng().gen_bool(0.5) {
                    (c, broker)
                } else {
                    (broker, c)
                };
                net.clog_link(a, b);
                pause(100, 1000).await;
                net.unclog_link(a, b);
            }
            Fault::FsyncFail => {
                disk.set_faults(Faults {
                    fail_sync: true,
                    ..Faults::default()
                });
                pause(100, 600).await;
                // The failed partitions stay offline until the process restarts.
                handle.kill(broker);
                disk.set_faults(Faults::default());
                disk.crash();
                handle.restart(broker);
            }
            Fault::CorruptRead => {
                disk.set_faults(corrupt_reads());
                pause(200, 1000).await;
                disk.set_faults(Faults::default());
            }
            Fault::DiskFull => {
                disk.set_faults(full_soon(&disk));
                pause(200, 1000).await;
                disk.set_faults(Faults::default());
            }
            Fault::ClockJump => {
                let jump = thread_rng().gen_range(-3_600_000..3_600_000);
                skew.fetch_add(jump, Ordering::Relaxed);
                record_clock_jump(&rec, jump);
            }
        }
        *counts.entry(fault.name()).or_insert(0) += 1;
    }
    counts
}
