//! The cluster simulation: 3 to 5 real nodes (`Node::start`, each on its own faulty
//! disk and clock, all of them metadata quorum voters), a replicated topic
//! (replication factor 3, min.insync.replicas 2), leader-aware producers and
//! consumers on the project's client, and a nemesis that crashes, kills, pauses and
//! isolates one broker at a time, cuts broker-to-broker links (one way or both) and
//! jumps clocks. A monitor looks inside every live broker every few milliseconds and
//! checks that no two brokers lead a partition in the same epoch and that a replica's
//! leader epoch and high watermark never go back; after the heal, the replicas of each
//! partition must hold the same batches up to the high watermark, and the history
//! checkers (lost writes, inconsistent offsets, ...) run over everything the clients
//! saw.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use jepsen_checks::{check_all, history, Anomaly, Kind, Op, F};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, CreateTopicsRequest, InitProducerIdRequest,
    MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use sluice_core::config::BrokerConfig;
use sluice_core::env::{Env, SeededRandom};
use sluice_core::sim::plant;
use sluice_net::broker::Broker;
use sluice_net::client::{
    decode_batches, encode_producer_batch, fetch_request, produce_request, Client, Message,
    Sequence,
};
use sluice_net::node::Node;
use sluice_net::tcp::TcpNetwork;

use crate::links::{LinkedNetwork, Links};
use tokio::time::{sleep, timeout, Instant};

use crate::clock::SimClock;
use crate::disk::{Faults, SimDisk};
use crate::env::InlineTasks;
use crate::run::{
    consume, corrupt_reads, full_soon, read_to_end, Options, Poller, Recorder, SeedResult,
};

const TOPIC: &str = "jepsen";
const KAFKA_PORT: u16 = 9092;
const CONTROLLER_PORT: u16 = 9093;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn kafka_addr(node: i32) -> String {
    format!("10.0.0.{node}:{KAFKA_PORT}")
}

/// The cluster nemesis' fault kinds.
const FAULTS: [&str; 16] = [
    "crash",
    "kill",
    "pause",
    "isolate",
    "drop-inbound",
    "drop-outbound",
    "cut-broker-link",
    "cut-controller-link",
    "cut-replication-link",
    "fsync-fail",
    "clock-jump",
    // Correlated faults: several brokers lose power at once (a majority, or all of
    // them); the brokers split into a majority and a minority that cannot reach each
    // other; a reassignment immediately followed by a partition of one of its brokers.
    "crash-many",
    "split",
    "move-then-cut",
    // Storage faults on one broker's disk, for a while.
    "disk-full",
    "corrupt-read",
];

/// The cluster's draw.
#[derive(Debug, Clone)]
struct Scenario {
    brokers: i32,
    partitions: i32,
    producers: u64,
    consumers: u64,
    /// Enabled fault kinds with their weights (swarm testing: with `--swarm` each kind
    /// is on with probability 1/2, and the weights and the nemesis' pace vary by seed).
    faults: Vec<(&'static str, u32)>,
    /// Milliseconds between faults, drawn per seed.
    interval_ms: (u64, u64),
    buggify: bool,
    /// Whether the heal restarts every broker or only some.
    restart_all_at_heal: bool,
    /// Milliseconds between the mover's reassignments, and the chance that it moves a
    /// partition straight back (a replica removed and added again while its last
    /// fetches may still be in flight).
    move_ms: (u64, u64),
    move_back: f64,
}

impl Scenario {
    fn draw(opts: &Options) -> Scenario {
        if opts.classic {
            return Scenario::classic();
        }
        let mut rng = thread_rng();
        let mut faults: Vec<(&'static str, u32)> = Vec::new();
        for f in FAULTS {
            if opts.all_faults || rng.gen_bool(0.5) {
                faults.push((f, rng.gen_range(1..=5)));
            }
        }
        if faults.is_empty() {
            faults.push((FAULTS[rng.gen_range(0..FAULTS.len())], 1));
        }
        let lo = rng.gen_range(200..800);
        Scenario {
            brokers: rng.gen_range(3..=5),
            partitions: rng.gen_range(1..=3),
            producers: rng.gen_range(2..=3),
            consumers: rng.gen_range(1..=2),
            faults,
            interval_ms: (lo, lo + rng.gen_range(300..1500)),
            buggify: rng.gen_bool(0.5),
            restart_all_at_heal: rng.gen_bool(0.5),
            move_ms: if rng.gen_bool(0.5) {
                (300, 1500)
            } else {
                (1000, 4000)
            },
            move_back: rng.gen_range(0.0..0.6),
        }
    }

    /// The draw as it was before swarm testing: the same random draws in the same
    /// order, the first 11 kinds in the order the nemesis used to number them.
    fn classic() -> Scenario {
        let mut rng = thread_rng();
        // FAULTS' first 11, in the order the old nemesis numbered them.
        let kinds = [0, 1, 2, 3, 4, 5, 6, 9, 7, 8, 10].map(|i| FAULTS[i]);
        Scenario {
            brokers: rng.gen_range(3..=5),
            partitions: rng.gen_range(1..=3),
            producers: rng.gen_range(2..=3),
            consumers: rng.gen_range(1..=2),
            faults: kinds.into_iter().map(|k| (k, 1)).collect(),
            interval_ms: (300, 1500),
            buggify: false,
            restart_all_at_heal: true,
            move_ms: (1000, 4000),
            move_back: 0.0,
        }
    }

    fn describe(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(f, w)| format!("{f}x{w}"))
            .collect();
        format!(
            "cluster brokers={} partitions={} rf=3 min-isr=2 producers={} consumers={} buggify={} pace={}-{}ms moves={}-{}ms back={:.2} heal={} faults=[{}]",
            self.brokers,
            self.partitions,
            self.producers,
            self.consumers,
            self.buggify,
            self.interval_ms.0,
            self.interval_ms.1,
            self.move_ms.0,
            self.move_ms.1,
            self.move_back,
            if self.restart_all_at_heal { "restart-all" } else { "restart-some" },
            faults.join(",")
        )
    }

    fn pick(&self) -> &'static str {
        let total: u32 = self.faults.iter().map(|(_, w)| w).sum();
        let mut at = thread_rng().gen_range(0..total.max(1));
        for (f, w) in &self.faults {
            if at < *w {
                return f;
            }
            at -= w;
        }
        self.faults[0].0
    }
}

/// A broker as its node last started it: (incarnation, the broker).
type Started = (u64, Weak<Broker>);

/// The live brokers, as their nodes started them, for the monitor to look inside.
#[derive(Clone, Default)]
struct Registry {
    brokers: Arc<Mutex<BTreeMap<i32, Started>>>,
    /// Nodes that halted or could not start, for the supervisor to restart.
    halted: Arc<Mutex<Vec<i32>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Registry {
    fn halted(&self, node: i32) {
        self.halted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(node);
        self.wake.notify_one();
    }

    fn take_halted(&self) -> Vec<i32> {
        std::mem::take(&mut *self.halted.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn register(&self, node: i32, broker: &Arc<Broker>) {
        let mut g = self.brokers.lock().unwrap_or_else(|p| p.into_inner());
        let incarnation = g.get(&node).map_or(0, |(i, _)| i + 1);
        g.insert(node, (incarnation, Arc::downgrade(broker)));
    }

    /// (node, incarnation, broker) for every broker alive now.
    fn live(&self) -> Vec<(i32, u64, Arc<Broker>)> {
        let g = self.brokers.lock().unwrap_or_else(|p| p.into_inner());
        g.iter()
            .filter_map(|(n, (i, w))| w.upgrade().map(|b| (*n, *i, b)))
            .collect()
    }
}

/// Runs one cluster seed to completion.
pub fn run_cluster_seed(seed: u64, opts: &Options) -> SeedResult {
    plant(&opts.bugs);
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    let opts = opts.clone();
    rt.block_on(simulate(seed, opts))
}

async fn simulate(seed: u64, opts: Options) -> SeedResult {
    let scenario = Scenario::draw(&opts);
    // The project's buggify points only: madsim's own (1-5 s delays on a tenth of
    // connects) are left off here.
    sluice_core::sim::enable_buggify(scenario.buggify);
    let rec = Recorder::new();
    rec.trace(&format!("scenario {}", scenario.describe()));
    let handle = Handle::current();
    let registry = Registry::default();
    let voters: Vec<String> = (1..=scenario.brokers)
        .map(|n| format!("{n}@10.0.0.{n}:{CONTROLLER_PORT}"))
        .collect();
    let voters = voters.join(",");
    let mut brokers = BTreeMap::new();
    let links = Links::default();
    for n in 1..=scenario.brokers {
        let disk = SimDisk::new(seed ^ (0x5eed_d15c + n as u64));
        let skew = Arc::new(AtomicI64::new(thread_rng().gen_range(-5_000..5_000)));
        let net = links.network(n);
        let id = start_broker(&handle, &rec, &registry, n, &voters, (&disk, &skew, net));
        brokers.insert(n, (id, disk, skew));
    }

    // The supervisor: a node that halted (or could not start) is restarted a second
    // later, as a service manager would. It sleeps until told, so a run in which no
    // node halts keeps its schedule.
    {
        let (registry, ids) = (
            registry.clone(),
            brokers
                .iter()
                .map(|(n, (id, ..))| (*n, *id))
                .collect::<BTreeMap<i32, NodeId>>(),
        );
        madsim::task::spawn(async move {
            let handle = Handle::current();
            loop {
                registry.wake.notified().await;
                for n in registry.take_halted() {
                    sleep(Duration::from_secs(1)).await;
                    handle.kill(ids[&n]);
                    handle.restart(ids[&n]);
                }
            }
        });
    }

    // The topic, once every broker has registered.
    let setup = handle.create_node().name("setup").ip(ip(100)).build();
    let (n, partitions) = (scenario.brokers, scenario.partitions);
    let _ = setup
        .spawn(async move {
            while create_topic(n, partitions).await.is_err() {
                sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    rec.trace("topic created");

    let violations = Arc::new(Mutex::new(Vec::<Anomaly>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let monitor_node = handle.create_node().name("monitor").ip(ip(101)).build();
    let monitor = monitor_node.spawn(monitor(registry.clone(), violations.clone(), stop.clone()));

    let mut clients = Vec::new();
    let mut producers = Vec::new();
    for p in 0..scenario.producers {
        let node = handle
            .create_node()
            .name(format!("producer-{p}"))
            .ip(ip(110 + p as u8))
            .build();
        clients.push(node.id());
        let idempotent = thread_rng().gen_bool(0.5);
        producers.push(node.spawn(producer(
            rec.clone(),
            p,
            idempotent,
            opts.sends_per_producer,
            scenario.brokers,
            partitions,
        )));
    }
    let mut consumers = Vec::new();
    for c in 0..scenario.consumers {
        let node = handle
            .create_node()
            .name(format!("consumer-{c}"))
            .ip(ip(120 + c as u8))
            .build();
        clients.push(node.id());
        consumers.push(node.spawn(consumer(
            rec.clone(),
            100 + c,
            scenario.brokers,
            partitions,
            stop.clone(),
        )));
    }

    let done = Arc::new(AtomicBool::new(false));
    let broker_ids: BTreeMap<i32, NodeId> = brokers.iter().map(|(n, (id, ..))| (*n, *id)).collect();
    let nemesis = madsim::task::spawn(nemesis(
        rec.clone(),
        scenario.clone(),
        broker_ids.clone(),
        brokers
            .iter()
            .map(|(n, (_, d, s))| (*n, (d.clone(), s.clone())))
            .collect(),
        links.clone(),
        done.clone(),
    ));
    let mover = (scenario.brokers > 3).then(|| {
        let (rec, done) = (rec.clone(), done.clone());
        let node = handle.create_node().name("mover").ip(ip(102)).build();
        let cut_after = scenario
            .faults
            .iter()
            .any(|(f, _)| *f == "move-then-cut")
            .then(|| broker_ids.clone());
        node.spawn(mover(rec, scenario.clone(), done, cut_after))
    });
    for p in producers {
        let _ = p.await;
    }
    rec.trace("producers done: healing");
    done.store(true, Ordering::SeqCst);
    let mut faults = nemesis.await.unwrap_or_default();
    if let Some(m) = mover {
        let moved = m.await.unwrap_or_default();
        if moved > 0 {
            faults.insert("reassign", moved);
        }
    }

    // Heal: faults cleared, links restored, every broker restarted in turn.
    let net = NetSim::current();
    for (n, (id, disk, _)) in &brokers {
        disk.set_faults(Faults::default());
        net.unclog_node(*id);
        for (m, (other, ..)) in &brokers {
            if m != n {
                net.unclog_link(*id, *other);
            }
        }
        for c in &clients {
            net.unclog_link(*c, *id);
            net.unclog_link(*id, *c);
        }
    }
    // Every broker restarted in turn, or only some (possibly none): a heal must not
    // depend on restarts to converge.
    let mut restarted = Vec::new();
    for (n, (id, ..)) in &brokers {
        if scenario.restart_all_at_heal || thread_rng().gen_bool(0.3) {
            handle.kill(*id);
            handle.restart(*id);
            restarted.push(*n);
            sleep(Duration::from_millis(300)).await;
        }
    }
    rec.trace(&format!(
        "heal: faults cleared, brokers {restarted:?} restarted"
    ));
    sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for c in consumers {
        let _ = c.await;
    }

    let reader = handle.create_node().name("reader").ip(ip(130)).build();
    let (rec2, router) = (rec.clone(), Router::new("reader", scenario.brokers));
    let liveness = reader
        .spawn(read_to_end(rec2, partitions, router))
        .await
        .unwrap_or_else(|_| Some("final reader panicked".into()));
    // Replicas agree once every follower has caught up.
    let (reg, v) = (registry.clone(), violations.clone());
    let agreement = reader
        .spawn(async move { replicas_agree(&reg, &v, partitions).await })
        .await
        .unwrap_or_else(|_| Some("replica comparison panicked".into()));
    let _ = monitor.await;
    if std::env::var_os("SLUICE_SIM_RAFT_DUMP").is_some() {
        for (n, (_, disk, _)) in &brokers {
            let d: &dyn sluice_core::env::Disk = disk;
            let _ = d;
            if let Ok(image) = sluice_storage::raft_store::replay(disk) {
                for p in 0..partitions {
                    eprintln!(
                        "broker-{n} replayed {TOPIC}-{p}: {:?}",
                        image.partition(TOPIC, p)
                    );
                }
            }
            match sluice_storage::raft_store::describe(disk) {
                Ok((entries, snap)) => {
                    eprintln!("broker-{n}: snapshot at {snap:?}");
                    for (i, e) in entries {
                        eprintln!("broker-{n} {i} {e}");
                    }
                }
                Err(e) => eprintln!("broker-{n}: {e}"),
            }
        }
    }

    let (ops, trace) = rec.snapshot();
    let mut report = check_all(&ops);
    let found = std::mem::take(&mut *violations.lock().unwrap_or_else(|p| p.into_inner()));
    for kind in [LEADER_EPOCH, HW_REGRESSED, REPLICA_DIVERGENCE] {
        report.push(
            kind,
            found.iter().filter(|a| a.kind == kind).cloned().collect(),
        );
    }
    let history = history::to_jsonl(&ops);
    SeedResult::new(
        seed,
        scenario.describe(),
        &ops,
        faults,
        report,
        liveness.or(agreement),
        history,
        trace,
    )
}

const LEADER_EPOCH: &str = "leader-epoch";
const HW_REGRESSED: &str = "hw-regressed";
const REPLICA_DIVERGENCE: &str = "replica-divergence";

/// A cluster node: the same `Node::start` as `sluice server`, as one of the voters.
fn start_broker(
    handle: &Handle,
    rec: &Recorder,
    registry: &Registry,
    node: i32,
    voters: &str,
    (disk, skew, net): (&SimDisk, &Arc<AtomicI64>, LinkedNetwork),
) -> NodeId {
    let (rec, registry, disk, skew) = (rec.clone(), registry.clone(), disk.clone(), skew.clone());
    let net = Arc::new(net);
    let voters = voters.to_string();
    handle
        .create_node()
        .name(format!("broker-{node}"))
        .ip(ip(node as u8))
        .init(move || {
            let (rec, registry, disk, skew) =
                (rec.clone(), registry.clone(), disk.clone(), skew.clone());
            let (voters, net) = (voters.clone(), net.clone());
            async move {
                let env = Env {
                    clock: Arc::new(SimClock::new(skew)),
                    net,
                    disk: Arc::new(disk),
                    tasks: Arc::new(InlineTasks),
                    rng: Arc::new(SeededRandom::new(thread_rng().gen())),
                };
                let config = BrokerConfig {
                    node_id: node,
                    listen: format!("0.0.0.0:{KAFKA_PORT}"),
                    advertised_host: format!("10.0.0.{node}"),
                    advertised_port: KAFKA_PORT,
                    data_dir: "sim".into(),
                    controller_quorum_voters: voters,
                    log_segment_bytes: 16 << 10,
                    log_index_interval_bytes: 512,
                    broker_session_timeout_ms: 1_500,
                    broker_heartbeat_interval_ms: 250,
                    replica_lag_time_max_ms: 1_500,
                    replica_fetch_wait_max_ms: 100,
                    offsets_topic_num_partitions: 2,
                    transaction_state_log_num_partitions: 2,
                    log_retention_ms: -1,
                    ..BrokerConfig::default()
                };
                match Node::start(env, config).await {
                    Ok(started) => {
                        registry.register(node, &started.broker);
                        rec.trace(&format!("broker-{node}: started"));
                        // A node halts when its metadata log fails; its supervisor (the
                        // simulator, as systemd would) restarts it.
                        let why = started.failed().await;
                        rec.trace(&format!("broker-{node}: halted: {why}"));
                        started.stop();
                        registry.halted(node);
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        rec.trace(&format!("broker-{node}: failed to start: {e}"));
                        registry.halted(node);
                    }
                }
            }
        })
        .build()
        .id()
}

async fn connect(addr: &str, id: &str) -> Result<Client, String> {
    match timeout(REQUEST_TIMEOUT, Client::connect(&TcpNetwork, addr, id)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

async fn create_topic(brokers: i32, partitions: i32) -> Result<(), String> {
    let mut c = connect(&kafka_addr(1), "setup").await?;
    let meta = timeout(REQUEST_TIMEOUT, c.call(MetadataRequest::default(), 12))
        .await
        .map_err(|_| "timeout")?
        .map_err(|e| e.to_string())?;
    if (meta.brokers.len() as i32) < brokers {
        return Err("not every broker registered yet".into());
    }
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_num_partitions(partitions)
            .with_replication_factor(3)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("min.insync.replicas"))
                .with_value(Some(StrBytes::from_static_str("2")))])]);
    let r = timeout(REQUEST_TIMEOUT * 3, c.call(req, 7))
        .await
        .map_err(|_| "timeout")?
        .map_err(|e| e.to_string())?;
    match r.topics.first().map(|t| t.error_code) {
        Some(0) | Some(36) => Ok(()),
        other => Err(format!("create topic: {other:?}")),
    }
}

/// Reassigns partitions while the nemesis works (clusters of 4 and 5): every few
/// seconds one partition is moved to 3 brokers drawn at random, through any broker.
/// Returns how many moves were accepted.
///
/// With `cut_after` (the fault kind move-then-cut), half of the accepted moves are
/// followed at once by isolating one broker of the move's target for a while: a
/// partition in the middle of a reassignment.
async fn mover(
    rec: Recorder,
    scenario: Scenario,
    done: Arc<AtomicBool>,
    cut_after: Option<BTreeMap<i32, NodeId>>,
) -> u32 {
    let (brokers, partitions) = (scenario.brokers, scenario.partitions);
    let mut accepted = 0;
    // The last move, to undo at once now and then: (partition, replicas before it).
    let mut back: Option<(i32, Vec<i32>)> = None;
    let mut placed: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    while !done.load(Ordering::SeqCst) {
        // A move back comes about when the move it undoes has completed.
        let (lo, hi) = if back.is_some() {
            (300, 2500)
        } else {
            scenario.move_ms
        };
        sleep(Duration::from_millis(thread_rng().gen_range(lo..hi))).await;
        if done.load(Ordering::SeqCst) {
            break;
        }
        let (p, target) = match back.take() {
            Some(undo) => undo,
            None => {
                let mut all: Vec<i32> = (1..=brokers).collect();
                let mut target = Vec::new();
                while target.len() < 3 {
                    target.push(all.remove(thread_rng().gen_range(0..all.len())));
                }
                let p = thread_rng().gen_range(0..partitions);
                if scenario.move_back > 0.0 && thread_rng().gen_bool(scenario.move_back) {
                    back = placed.get(&p).map(|before| (p, before.clone()));
                }
                (p, target)
            }
        };
        let via = thread_rng().gen_range(1..=brokers);
        let Ok(mut c) = connect(&kafka_addr(via), "mover").await else {
            continue;
        };
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(p)
                    .with_replicas(Some(
                        target.iter().map(|b| BrokerId(*b)).collect(),
                    ))])]);
        if let Ok(Ok(r)) = timeout(REQUEST_TIMEOUT, c.call(req, 0)).await {
            let code = r
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .map_or(-1, |p| p.error_code);
            if code == 0 {
                accepted += 1;
                placed.insert(p, target.clone());
                rec.trace(&format!("mover: {TOPIC}-{p} to {target:?}"));
                if let Some(ids) = cut_after.as_ref().filter(|_| thread_rng().gen_bool(0.5)) {
                    let victim = target[thread_rng().gen_range(0..target.len())];
                    rec.trace(&format!("nemesis: move-then-cut broker-{victim}"));
                    let net = NetSim::current();
                    net.clog_node(ids[&victim]);
                    sleep(Duration::from_millis(thread_rng().gen_range(300..3000))).await;
                    net.unclog_node(ids[&victim]);
                }
            }
        }
    }
    accepted
}

/// A client that follows partition leadership: connections per broker, leaders from
/// Metadata, refreshed whenever a broker says it does not lead. As Kafka clients do
/// since KIP-320, it remembers the highest leader epoch it saw per partition, ignores
/// metadata older than that (a zombie leader's own view), and fetches naming it, so a
/// leader of an older epoch fences the fetch instead of answering from stale state.
struct Router {
    id: String,
    brokers: i32,
    clients: BTreeMap<i32, Client>,
    leaders: BTreeMap<i32, i32>,
    epochs: BTreeMap<i32, i32>,
}

impl Router {
    fn new(id: &str, brokers: i32) -> Router {
        Router {
            id: id.to_string(),
            brokers,
            clients: BTreeMap::new(),
            leaders: BTreeMap::new(),
            epochs: BTreeMap::new(),
        }
    }

    async fn client(&mut self, node: i32) -> Option<&mut Client> {
        if !self.clients.contains_key(&node) {
            let c = connect(&kafka_addr(node), &self.id).await.ok()?;
            self.clients.insert(node, c);
        }
        self.clients.get_mut(&node)
    }

    /// Asks the brokers for the leaders, from a random one on, until one answers.
    async fn refresh(&mut self) {
        let first = thread_rng().gen_range(0..self.brokers);
        for i in 0..self.brokers {
            let node = 1 + (first + i) % self.brokers;
            let Some(c) = self.client(node).await else {
                continue;
            };
            let all = MetadataRequest::default().with_topics(None);
            match timeout(REQUEST_TIMEOUT, c.call(all, 12)).await {
                Ok(Ok(meta)) => {
                    let ours = meta
                        .topics
                        .iter()
                        .filter(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC));
                    for t in ours {
                        for p in &t.partitions {
                            let known = self.epochs.get(&p.partition_index).copied();
                            if known.is_some_and(|e| p.leader_epoch < e) {
                                continue;
                            }
                            self.epochs.insert(p.partition_index, p.leader_epoch);
                            self.leaders.insert(p.partition_index, p.leader_id.0);
                        }
                    }
                    return;
                }
                _ => {
                    self.clients.remove(&node);
                }
            }
        }
    }

    /// The leader's connection for `partition`, refreshing metadata while it is
    /// unknown or unreachable (a few times, then `None`).
    async fn leader(&mut self, partition: i32) -> Option<(i32, &mut Client)> {
        let mut found = None;
        for _ in 0..10 {
            if self.leaders.get(&partition).is_none_or(|l| *l < 0) {
                self.refresh().await;
            }
            match self.leaders.get(&partition).copied().filter(|l| *l >= 0) {
                Some(l) if self.client(l).await.is_some() => {
                    found = Some(l);
                    break;
                }
                Some(l) => self.failed(l),
                None => {}
            }
            sleep(Duration::from_millis(200)).await;
        }
        let leader = found?;
        let c = self.clients.get_mut(&leader)?;
        Some((leader, c))
    }

    /// Forgets what it knew of `node` after an error.
    fn failed(&mut self, node: i32) {
        self.clients.remove(&node);
        self.leaders.clear();
    }
}

/// Error codes that prove a produce wrote nothing: refused before the append.
/// (NOT_LEADER_OR_FOLLOWER is not one: it also answers an append whose leader lost
/// its leadership before the in-sync replicas had it, which may yet be committed.)
fn definitely_not_written(code: i16) -> bool {
    matches!(code, 2 | 3 | 10 | 19 | 21 | 45 | 47 | 87)
}

/// Sends single-record batches with acks=all to the leader of a random partition.
/// An idempotent producer resends a batch whose outcome it does not know, with the
/// same sequence, possibly to a new leader: it must be stored once.
async fn producer(
    rec: Recorder,
    process: u64,
    idempotent: bool,
    sends: usize,
    brokers: i32,
    partitions: i32,
) {
    let node = format!("producer-{process}");
    let mut router = Router::new(&node, brokers);
    let mut producer_id: Option<i64> = None;
    let mut next = vec![0i32; partitions as usize];
    for n in 0..sends {
        let partition = thread_rng().gen_range(0..partitions);
        let value = format!(
            "{process}-{n}:{}",
            ".".repeat(thread_rng().gen_range(0..300))
        );
        let mut op = Op::new(Kind::Invoke, F::Send, &node, process, partition);
        op.acks = Some(-1);
        op.value = Some(value.clone());
        rec.record(op.clone());
        let message = Message {
            key: None,
            value: Some(Bytes::from(value)),
            timestamp: n as i64,
        };
        let attempts = if idempotent { 10 } else { 1 };
        let mut outcome: Option<Result<i64, i16>> = None;
        let mut unknown = false;
        for attempt in 0..attempts {
            if attempt > 0 {
                sleep(Duration::from_millis(thread_rng().gen_range(100..400))).await;
            }
            if idempotent && producer_id.is_none() {
                let Some((leader, c)) = router.leader(partition).await else {
                    continue;
                };
                let req = InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000);
                match timeout(REQUEST_TIMEOUT, c.call(req, 4)).await {
                    Ok(Ok(r)) if r.error_code == 0 => {
                        producer_id = Some(r.producer_id.0);
                        next.iter_mut().for_each(|s| *s = 0);
                    }
                    other => {
                        op.error = Some(format!("no producer id: {other:?}"));
                        router.failed(leader);
                        continue;
                    }
                }
            }
            let sequence = producer_id
                .filter(|_| idempotent)
                .map(|producer_id| Sequence {
                    producer_id,
                    epoch: 0,
                    first: next[partition as usize],
                });
            op.producer = sequence
                .as_ref()
                .filter(|_| idempotent)
                .map(|s| (s.producer_id, s.epoch, s.first));
            let Ok(batch) =
                encode_producer_batch(std::slice::from_ref(&message), Compression::None, sequence)
            else {
                break;
            };
            let Some((leader, c)) = router.leader(partition).await else {
                op.error = Some("no reachable leader".into());
                continue;
            };
            let req = produce_request(TOPIC, -1, 1500, [(partition, batch)]);
            match timeout(REQUEST_TIMEOUT, c.call(req, 9)).await {
                Ok(Ok(r)) => {
                    let Some(p) = r
                        .responses
                        .first()
                        .and_then(|t| t.partition_responses.first())
                    else {
                        router.failed(leader);
                        unknown = true;
                        continue;
                    };
                    if p.error_code == 0 {
                        outcome = Some(Ok(p.base_offset));
                        break;
                    }
                    op.error = Some(format!("error code {}", p.error_code));
                    router.leaders.clear();
                    if definitely_not_written(p.error_code) {
                        outcome = Some(Err(p.error_code));
                    } else {
                        unknown = true;
                        outcome = None;
                    }
                }
                Ok(Err(e)) => {
                    op.error = Some(e.to_string());
                    router.failed(leader);
                    unknown = true;
                    outcome = None;
                }
                Err(_) => {
                    op.error = Some("timed out".into());
                    router.failed(leader);
                    unknown = true;
                    outcome = None;
                }
            }
        }
        match outcome {
            Some(Ok(offset)) => {
                op.kind = Kind::Ok;
                op.offset = Some(offset);
                op.error = None;
                next[partition as usize] += 1;
            }
            _ if unknown => {
                op.kind = Kind::Info;
                // Where this partition's sequence stands is unknown: start afresh.
                producer_id = None;
            }
            _ => op.kind = Kind::Fail,
        }
        rec.record(op);
        sleep(Duration::from_millis(thread_rng().gen_range(0..20))).await;
    }
}

/// Reads every partition from its leader, round robin, recording each poll.
async fn consumer(
    rec: Recorder,
    process: u64,
    brokers: i32,
    partitions: i32,
    stop: Arc<AtomicBool>,
) {
    let node = format!("consumer-{}", process - 100);
    let router = Router::new(&node, brokers);
    consume(rec, &node, process, partitions, stop, router).await;
}

impl Poller for Router {
    /// One fetch from the partition's leader: the records and the high watermark.
    async fn poll(
        &mut self,
        partition: i32,
        offset: i64,
    ) -> Result<(Vec<(i64, String)>, i64), String> {
        let epoch = self.epochs.get(&partition).copied().unwrap_or(-1);
        let (leader, c) = self.leader(partition).await.ok_or("no leader")?;
        let mut req = fetch_request(TOPIC, [(partition, offset)], 100, 64 << 10, 32 << 10);
        for t in &mut req.topics {
            for p in &mut t.partitions {
                p.current_leader_epoch = epoch;
            }
        }
        let r = match timeout(REQUEST_TIMEOUT, c.call(req, 12)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.failed(leader);
                return Err(e.to_string());
            }
            Err(_) => {
                self.failed(leader);
                return Err("timed out".into());
            }
        };
        let pd = r
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or("empty fetch response")?;
        if pd.error_code != 0 {
            self.leaders.clear();
            return Err(format!("error code {}", pd.error_code));
        }
        let records =
            decode_batches(pd.records.unwrap_or_default(), offset).map_err(|e| e.to_string())?;
        Ok((
            records
                .into_iter()
                .map(|r| {
                    let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                    (r.offset, v.into_owned())
                })
                .collect(),
            pd.high_watermark,
        ))
    }
}

/// Looks inside every live broker every 20 ms. Leader epochs: no two brokers lead a
/// partition in the same epoch, and the epoch a replica knows never goes back within
/// one run of its broker. (A broker may learn of its own leadership after another
/// learned of a later one: metadata reaches brokers at their own pace, and the high
/// watermark, not the epoch order of learning, is what keeps that safe.) High
/// watermarks: within one run of a broker, a replica's never goes back.
async fn monitor(registry: Registry, violations: Arc<Mutex<Vec<Anomaly>>>, stop: Arc<AtomicBool>) {
    // (topic, partition, epoch) -> the broker that led it.
    let mut led: BTreeMap<(String, i32, i32), i32> = BTreeMap::new();
    // (broker, incarnation, topic, partition) -> (leader epoch known, high watermark),
    // and the log they were seen on: a replica a reassignment removed and added back
    // has a new log and starts afresh. (Holding the log keeps its identity unique.)
    type Seen = (i32, i64, Arc<sluice_storage::PartitionLog>);
    let mut seen: BTreeMap<(i32, u64, String, i32), Seen> = BTreeMap::new();
    let report = |kind: &'static str, detail: String| {
        let mut v = violations.lock().unwrap_or_else(|p| p.into_inner());
        if v.iter().filter(|a| a.kind == kind).count() < 10 {
            v.push(Anomaly {
                kind,
                ops: Vec::new(),
                detail,
            });
        }
    };
    while !stop.load(Ordering::SeqCst) {
        for (node, incarnation, broker) in registry.live() {
            for replica in broker.replicas() {
                let meta = replica.meta();
                let (topic, p) = (replica.topic.clone(), replica.partition);
                if replica.is_leader() {
                    let first = *led
                        .entry((topic.clone(), p, meta.leader_epoch))
                        .or_insert(node);
                    if first != node {
                        report(
                            LEADER_EPOCH,
                            format!(
                                "{topic}-{p} epoch {}: led by broker {first} and by broker {node}",
                                meta.leader_epoch
                            ),
                        );
                    }
                }
                let hw = replica.log.high_watermark();
                let key = (node, incarnation, topic.clone(), p);
                if seen
                    .get(&key)
                    .is_some_and(|(.., log)| !Arc::ptr_eq(log, &replica.log))
                {
                    seen.remove(&key);
                }
                if let Some((epoch, old_hw, _)) = seen.get(&key).cloned() {
                    if meta.leader_epoch < epoch {
                        report(
                            LEADER_EPOCH,
                            format!(
                                "{topic}-{p} on broker {node}: leader epoch {epoch} then {}",
                                meta.leader_epoch
                            ),
                        );
                    }
                    if hw < old_hw {
                        report(
                            HW_REGRESSED,
                            format!(
                                "{topic}-{p} on broker {node}: high watermark {old_hw} then {hw}"
                            ),
                        );
                    }
                }
                let entry = seen
                    .entry(key)
                    .or_insert((meta.leader_epoch, hw, replica.log.clone()));
                entry.0 = entry.0.max(meta.leader_epoch);
                entry.1 = entry.1.max(hw);
            }
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// After the heal: every replica of a partition holds the same batches below the
/// partition's high watermark (waiting up to 30 s for followers to catch up).
async fn replicas_agree(
    registry: &Registry,
    violations: &Arc<Mutex<Vec<Anomaly>>>,
    partitions: i32,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = registry.live();
        let mut pending = None;
        let mut diverged = Vec::new();
        for p in 0..partitions {
            let replicas: Vec<(i32, Arc<sluice_storage::PartitionLog>)> = live
                .iter()
                .filter_map(|(n, _, b)| b.partition(TOPIC, p).map(|l| (*n, l)))
                .collect();
            let Some(hw) = live
                .iter()
                .filter_map(|(_, _, b)| b.replica(TOPIC, p).filter(|r| r.is_leader()))
                .map(|r| r.log.high_watermark())
                .next()
            else {
                pending = Some(format!("{TOPIC}-{p} has no leader"));
                continue;
            };
            if replicas.iter().any(|(_, l)| l.local_durable_end() < hw) {
                let ends: Vec<String> = replicas
                    .iter()
                    .map(|(n, l)| {
                        let views = live
                            .iter()
                            .find(|(m, ..)| m == n)
                            .map(|(_, _, b)| {
                                (
                                    b.image().partition(TOPIC, p).map(|s| s.leader_epoch),
                                    b.replica(TOPIC, p).map(|r| r.meta().leader_epoch),
                                    b.controller.subscribe().borrow().index,
                                    b.controller
                                        .subscribe()
                                        .borrow()
                                        .image
                                        .partition(TOPIC, p)
                                        .map(|s| s.leader_epoch),
                                    b.controller.leader(),
                                )
                            });
                        format!(
                            "broker-{n} end {} durable {} hw {} (metadata epoch, replica epoch: {views:?})",
                            l.log_end_offset(),
                            l.local_durable_end(),
                            l.high_watermark()
                        )
                    })
                    .collect();
                pending = Some(format!(
                    "{TOPIC}-{p}: a follower is behind the high watermark {hw} ({})",
                    ends.join(", ")
                ));
                continue;
            }
            let copies: Vec<(i32, Result<Vec<u8>, String>)> = replicas
                .iter()
                .map(|(n, l)| (*n, read_upto(l, hw)))
                .collect();
            let Some((first_node, Ok(first))) = copies.first().cloned() else {
                continue;
            };
            for (n, copy) in &copies[1..] {
                match copy {
                    Ok(c) if *c == first => {}
                    Ok(c) => {
                        let at = first_difference(&first, c);
                        diverged.push(format!(
                            "{TOPIC}-{p}: brokers {first_node} and {n} hold different batches below the high watermark {hw}, from offset {at}"
                        ))
                    }
                    Err(e) => pending = Some(e.clone()),
                }
            }
        }
        if !diverged.is_empty() {
            let mut v = violations.lock().unwrap_or_else(|p| p.into_inner());
            v.extend(diverged.into_iter().map(|detail| Anomaly {
                kind: REPLICA_DIVERGENCE,
                ops: Vec::new(),
                detail,
            }));
            return None;
        }
        match pending {
            None => return None,
            Some(why) if Instant::now() > deadline => {
                return Some(format!("replicas did not converge within 30 s: {why}"))
            }
            Some(_) => sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The base offset of the first batch at which two copies differ.
fn first_difference(a: &[u8], b: &[u8]) -> i64 {
    let mut pos = 0;
    while pos + 12 <= a.len().min(b.len()) {
        let size =
            12 + u32::from_be_bytes([a[pos + 8], a[pos + 9], a[pos + 10], a[pos + 11]]) as usize;
        let end = (pos + size).min(a.len());
        if b.get(pos..end) != Some(&a[pos..end]) {
            break;
        }
        pos = end;
    }
    let at = if pos + 8 <= a.len() { a } else { b };
    at.get(pos..pos + 8)
        .map_or(-1, |o| i64::from_be_bytes(o.try_into().unwrap_or_default()))
}

/// A replica's batches below `hw`, byte for byte as stored (leader epochs included:
/// followers copy the leader's batches as they are).
fn read_upto(log: &sluice_storage::PartitionLog, hw: i64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < hw {
        let read = log
            .read_replica(offset, 1 << 20)
            .map_err(|e| e.to_string())?;
        let mut pos = 0;
        let bytes = read.batches;
        if bytes.is_empty() {
            return Err(format!("no batch at {offset}"));
        }
        while pos + 61 <= bytes.len() {
            let size = 12
                + u32::from_be_bytes([
                    bytes[pos + 8],
                    bytes[pos + 9],
                    bytes[pos + 10],
                    bytes[pos + 11],
                ]) as usize;
            let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap_or_default());
            if base >= hw || pos + size > bytes.len() {
                break;
            }
            out.extend_from_slice(&bytes[pos..pos + size]);
            let last_delta = i32::from_be_bytes([
                bytes[pos + 23],
                bytes[pos + 24],
                bytes[pos + 25],
                bytes[pos + 26],
            ]);
            offset = base + i64::from(last_delta) + 1;
            pos += size;
        }
    }
    Ok(out)
}

/// A broker other than `n`, drawn at random.
fn another(ids: &[i32], n: i32) -> i32 {
    let others: Vec<i32> = ids.iter().copied().filter(|m| *m != n).collect();
    others[thread_rng().gen_range(0..others.len())]
}

/// Faults, one broker at a time, each undone before the next.
async fn nemesis(
    rec: Recorder,
    scenario: Scenario,
    brokers: BTreeMap<i32, NodeId>,
    disks: BTreeMap<i32, (SimDisk, Arc<AtomicI64>)>,
    links: Links,
    done: Arc<AtomicBool>,
) -> BTreeMap<&'static str, u32> {
    let mut counts = BTreeMap::new();
    let handle = Handle::current();
    let net = NetSim::current();
    let pause = |lo: u64, hi: u64| sleep(Duration::from_millis(thread_rng().gen_range(lo..hi)));
    let ids: Vec<i32> = brokers.keys().copied().collect();
    let (lo, hi) = scenario.interval_ms;
    while !done.load(Ordering::SeqCst) {
        pause(lo, hi).await;
        if done.load(Ordering::SeqCst) {
            break;
        }
        let fault = scenario.pick();
        if fault == "move-then-cut" {
            // The mover does this one, right after a move it made.
            continue;
        }
        let n = ids[thread_rng().gen_range(0..ids.len())];
        let id = brokers[&n];
        let (disk, skew) = &disks[&n];
        rec.trace(&format!("nemesis: {fault} broker-{n}"));
        match fault {
            "crash-many" => {
                // Power loss of a majority, or of every broker at once.
                let all = thread_rng().gen_bool(0.3);
                let count = if all { ids.len() } else { ids.len() / 2 + 1 };
                let mut hit: Vec<i32> = ids.clone();
                while hit.len() > count {
                    hit.remove(thread_rng().gen_range(0..hit.len()));
                }
                rec.trace(&format!("nemesis: power loss of brokers {hit:?}"));
                for b in &hit {
                    handle.kill(brokers[b]);
                    disks[b].0.crash();
                }
                pause(100, 2000).await;
                for b in &hit {
                    handle.restart(brokers[b]);
                }
            }
            "split" => {
                // A minority (1 up to half of the brokers) cut off from the rest, both
                // ways; clients still reach everyone.
                let size = thread_rng().gen_range(1..=ids.len() / 2);
                let mut minority: Vec<i32> = Vec::new();
                while minority.len() < size {
                    let b = ids[thread_rng().gen_range(0..ids.len())];
                    if !minority.contains(&b) {
                        minority.push(b);
                    }
                }
                minority.sort_unstable();
                rec.trace(&format!(
                    "nemesis: brokers {minority:?} split from the rest"
                ));
                let pairs: Vec<(NodeId, NodeId)> = minority
                    .iter()
                    .flat_map(|a| {
                        ids.iter()
                            .filter(|b| !minority.contains(b))
                            .map(|b| (brokers[a], brokers[b]))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                for (a, b) in &pairs {
                    net.clog_link(*a, *b);
                    net.clog_link(*b, *a);
                }
                pause(500, 4000).await;
                for (a, b) in &pairs {
                    net.unclog_link(*a, *b);
                    net.unclog_link(*b, *a);
                }
            }
            "disk-full" => {
                disk.set_faults(full_soon(disk));
                pause(200, 1500).await;
                disk.set_faults(Faults::default());
            }
            "corrupt-read" => {
                disk.set_faults(corrupt_reads());
                pause(200, 1500).await;
                disk.set_faults(Faults::default());
            }
            "crash" => {
                handle.kill(id);
                disk.crash();
                pause(100, 2000).await;
                handle.restart(id);
            }
            "kill" => {
                handle.kill(id);
                pause(100, 2000).await;
                handle.restart(id);
            }
            "pause" => {
                // A zombie: it may still think it leads when it wakes.
                handle.pause(id);
                pause(500, 4000).await;
                handle.resume(id);
            }
            "isolate" => {
                net.clog_node(id);
                pause(500, 4000).await;
                net.unclog_node(id);
            }
            "drop-inbound" => {
                net.clog_node_in(id);
                pause(500, 3000).await;
                net.unclog_node_in(id);
            }
            "drop-outbound" => {
                net.clog_node_out(id);
                pause(500, 3000).await;
                net.unclog_node_out(id);
            }
            "cut-broker-link" => {
                let m = another(&ids, n);
                let both = thread_rng().gen_bool(0.5);
                net.clog_link(id, brokers[&m]);
                if both {
                    net.clog_link(brokers[&m], id);
                }
                pause(500, 3000).await;
                net.unclog_link(id, brokers[&m]);
                net.unclog_link(brokers[&m], id);
            }
            "cut-controller-link" | "cut-replication-link" => {
                // Only the quorum's connections, or only the brokers', between this
                // node and another, one way or both.
                let m = another(&ids, n);
                let port = if fault == "cut-controller-link" {
                    CONTROLLER_PORT
                } else {
                    KAFKA_PORT
                };
                let there = format!("10.0.0.{m}:{port}");
                let here = format!("10.0.0.{n}:{port}");
                let both = thread_rng().gen_bool(0.5);
                links.cut(n, &there);
                if both {
                    links.cut(m, &here);
                }
                pause(500, 3000).await;
                links.heal(n, &there);
                links.heal(m, &here);
            }
            "fsync-fail" => {
                disk.set_faults(Faults {
                    fail_sync: true,
                    ..Faults::default()
                });
                pause(100, 600).await;
                handle.kill(id);
                disk.set_faults(Faults::default());
                disk.crash();
                handle.restart(id);
            }
            _ => {
                let jump = thread_rng().gen_range(-3_600_000..3_600_000);
                skew.fetch_add(jump, Ordering::Relaxed);
            }
        }
        *counts.entry(fault).or_insert(0) += 1;
    }
    counts
}
