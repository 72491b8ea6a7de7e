//! `sluice bench`: drives a broker over the Kafka protocol and prints its throughput
//! and latency beside this machine's limits measured in the same run: sequential
//! write bandwidth with an fdatasync per MiB, and loopback TCP throughput.
//!
//! Load: `--connections` producer connections, each pipelining up to `--inflight`
//! Produce requests of one pre-encoded batch per partition, so the load generator
//! costs little and the broker is what is measured. Without `--bootstrap` a broker
//! is started in-process on a temporary data directory.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sluice_core::config::BrokerConfig;
use sluice_net::client::{
    decode_batches, encode_batch, fetch_request, produce_request, Client, Message,
};
use sluice_net::node::Node;
use sluice_net::runtime::production_env;
use sluice_net::tcp::TcpNetwork;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// An external broker to measure (default: start one in-process).
    #[arg(long)]
    bootstrap: Option<String>,
    /// Seconds per produce measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Partitions of the benchmark topics.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Producer connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Produce requests in flight per connection.
    #[arg(long, default_value_t = 4)]
    inflight: usize,
    /// Replication factor of the benchmark topics. Every partition is led by the
    /// measured broker (the others follow), so one address takes all the load.
    #[arg(long, default_value_t = 1)]
    replication_factor: i16,
    /// Bytes of records per batch.
    #[arg(long, default_value_t = 256 * 1024)]
    batch_bytes: usize,
    /// Also write the results as a Markdown table to this file.
    #[arg(long)]
    markdown: Option<std::path::PathBuf>,
    /// Measure the log cleaner instead: a pass's MB/s and memory, and produce to a
    /// compacted topic while it runs against produce to a delete topic.
    #[arg(long)]
    compaction: bool,
}

/// Wall-clock milliseconds: records carry real timestamps (retention judges by them).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How the benchmark producer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    /// An idempotent producer: a producer id per connection, sequences per partition.
    Idempotent,
    /// Transactions of `TXN_REQUESTS` produce requests each, committed.
    Transactional,
}

/// Produce requests per benchmark transaction.
const TXN_REQUESTS: usize = 8;

struct Row {
    name: String,
    msgs_per_s: f64,
    mb_per_s: f64,
    note: String,
}

pub async fn run(args: Args) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("sluice-bench-{}", std::process::id()));
    let mut rows = Vec::new();

    let disk = fsync_bandwidth(&tmp.join("fsync-probe"), 256 << 20)?;
    rows.push(Row {
        name: "raw disk: sequential write, fdatasync per 1 MiB".into(),
        msgs_per_s: 0.0,
        mb_per_s: disk,
        note: String::new(),
    });
    if args.compaction {
        std::fs::create_dir_all(&tmp)?;
        let measured = crate::bench_compaction::run(&tmp, args.seconds, disk).await;
        let _ = std::fs::remove_dir_all(&tmp);
        let mut out = format!(
            "| measurement | result |\n|---|---|\n| raw disk: sequential write, fdatasync per 1 MiB | {disk:.0} MB/s |\n"
        );
        for (name, result) in measured?.rows {
            out.push_str(&format!("| {name} | {result} |\n"));
        }
        print!("{out}");
        if let Some(path) = &args.markdown {
            std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(());
    }
    let tcp = loopback_bandwidth(1 << 30).await?;
    rows.push(Row {
        name: "raw loopback TCP, one stream".into(),
        msgs_per_s: 0.0,
        mb_per_s: tcp,
        note: String::new(),
    });

    let (addr, node) = match &args.bootstrap {
        Some(b) => (b.replace("localhost", "127.0.0.1"), None),
        None => {
            std::fs::create_dir_all(&tmp)?;
            let config = BrokerConfig {
                listen: "127.0.0.1:0".into(),
                advertised_host: "127.0.0.1".into(),
                advertised_port: 0,
                data_dir: tmp.join("data").display().to_string(),
                ..BrokerConfig::default()
            };
            std::fs::create_dir_all(&config.data_dir)?;
            let node = Node::start(production_env(&config.data_dir), config).await?;
            (node.local_addr.clone(), Some(node))
        }
    };

    let mut plain_all_1k = 0.0;
    for (size, acks) in [(100usize, 1i16), (100, -1), (1024, 1), (1024, -1)] {
        let topic = format!("bench-{size}-{}", if acks == 1 { "1" } else { "all" });
        create_topic(&addr, &topic, args.partitions, args.replication_factor).await?;
        let (msgs, bytes, secs) =
            produce_load(&addr, &topic, size, acks, Mode::Plain, &args).await?;
        if size == 1024 && acks == -1 {
            plain_all_1k = msgs as f64 / secs;
        }
        let mb = bytes as f64 / secs / 1e6;
        let note = if acks == -1 && size == 1024 {
            format!("{:.0}% of raw fsync'd disk", 100.0 * mb / disk)
        } else {
            String::new()
        };
        rows.push(Row {
            name: format!(
                "produce {size} B records, acks={}",
                if acks == 1 { "1" } else { "all" }
            ),
            msgs_per_s: msgs as f64 / secs,
            mb_per_s: mb,
            note,
        });
        if size == 1024 && acks == -1 {
            let (msgs, bytes, secs) = consume_all(&addr, &topic, args.partitions).await?;
            rows.push(Row {
                name: format!("consume {size} B records from the beginning"),
                msgs_per_s: msgs as f64 / secs,
                mb_per_s: bytes as f64 / secs / 1e6,
                note: String::new(),
            });
        }
        // Each measurement starts without the previous one's dirty pages and files.
        delete_topic(&addr, &topic).await?;
    }
    for (mode, label) in [
        (Mode::Idempotent, "idempotent".to_string()),
        (
            Mode::Transactional,
            format!("transactional, {TXN_REQUESTS} requests per transaction"),
        ),
    ] {
        let topic = format!("bench-1024-{mode:?}").to_lowercase();
        create_topic(&addr, &topic, args.partitions, args.replication_factor).await?;
        let (msgs, bytes, secs) = produce_load(&addr, &topic, 1024, -1, mode, &args).await?;
        let rate = msgs as f64 / secs;
        rows.push(Row {
            name: format!("produce 1024 B records, acks=all, {label}"),
            msgs_per_s: rate,
            mb_per_s: bytes as f64 / secs / 1e6,
            note: format!("{:.0}% of plain acks=all", 100.0 * rate / plain_all_1k),
        });
        delete_topic(&addr, &topic).await?;
    }
    create_topic(&addr, "bench-latency", 1, args.replication_factor).await?;
    let (p50, p99, p999, rate) = latency(&addr, "bench-latency", 2000, 4000).await?;

    let mut out = String::new();
    out.push_str("| measurement | msgs/s | MB/s | note |\n|---|---:|---:|---|\n");
    for r in &rows {
        let msgs = if r.msgs_per_s > 0.0 {
            format!("{:.0}", r.msgs_per_s)
        } else {
            "—".into()
        };
        out.push_str(&format!(
            "| {} | {} | {:.1} | {} |\n",
            r.name, msgs, r.mb_per_s, r.note
        ));
    }
    out.push_str(&format!(
        "\nproduce→consume latency (acks=all, 1 record per request at {rate:.0} msg/s): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms\n",
        p50, p99, p999
    ));
    print!("{out}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(node) = node {
        node.stop();
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// MB/s of sequential 1 MiB writes, each followed by fdatasync.
fn fsync_bandwidth(path: &std::path::Path, total: usize) -> Result<f64> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0xA5u8; 1 << 20];
    let t = Instant::now();
    for _ in 0..total / chunk.len() {
        f.write_all(&chunk)?;
        f.sync_data()?;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(path)?;
    Ok(total as f64 / secs / 1e6)
}

/// MB/s through one loopback TCP connection.
async fn loopback_bandwidth(total: usize) -> Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let sink = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0usize;
        loop {
            let r = s.read(&mut buf).await?;
            if r == 0 {
                return Ok::<usize, std::io::Error>(n);
            }
            n += r;
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    let chunk = vec![1u8; 256 << 10];
    let t = Instant::now();
    for _ in 0..total / chunk.len() {
        c.write_all(&chunk).await?;
    }
    c.shutdown().await?;
    let got = sink.await??;
    Ok(got as f64 / t.elapsed().as_secs_f64() / 1e6)
}

async fn connect(addr: &str) -> Result<Client> {
    Ok(Client::connect(&TcpNetwork, addr, "sluice-bench").await?)
}

/// Creates a topic whose partitions are all led by the broker at `addr`, with
/// `replication_factor - 1` followers each on the other brokers.
async fn create_topic(
    addr: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> Result<()> {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic,
    };
    use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, MetadataRequest};
    let mut c = connect(addr).await?;
    let meta = c
        .call(MetadataRequest::default().with_topics(None), 12)
        .await?;
    let port: i32 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(-1);
    let me = meta
        .brokers
        .iter()
        .find(|b| b.port == port)
        .map(|b| b.node_id.0)
        .context("the measured broker is not in its own metadata")?;
    let others: Vec<i32> = meta
        .brokers
        .iter()
        .map(|b| b.node_id.0)
        .filter(|n| *n != me)
        .collect();
    let followers = usize::try_from(replication_factor - 1).unwrap_or(0);
    if followers > others.len() {
        bail!("replication factor {replication_factor} needs {followers} other brokers; the cluster has {}", others.len());
    }
    let assignments = (0..partitions)
        .map(|p| {
            let mut replicas = vec![BrokerId(me)];
            replicas
                .extend((0..followers).map(|i| BrokerId(others[(p as usize + i) % others.len()])));
            CreatableReplicaAssignment::default()
                .with_partition_index(p)
                .with_broker_ids(replicas)
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(assignments)]);
    let r = c.call(req, 7).await?;
    let code = r.topics[0].error_code;
    if code != 0 && code != 36 {
        bail!("creating {topic}: Kafka error {code}");
    }
    Ok(())
}

async fn delete_topic(addr: &str, topic: &str) -> Result<()> {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::DeleteTopicsRequest;
    let mut c = connect(addr).await?;
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteTopicState::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.into()))))]);
    c.call(req, 6).await?;
    Ok(())
}

/// Produces for `args.seconds`; returns (records, record bytes, seconds).
/// Stamps a batch with a producer's id, epoch, first sequence (and the
/// transactional flag), recomputing its CRC.
fn stamp(batch: &[u8], producer_id: i64, epoch: i16, seq: i32, transactional: bool) -> Bytes {
    let mut b = batch.to_vec();
    if transactional {
        let attributes = i16::from_be_bytes([b[21], b[22]]) | 0x10;
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
    }
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// A producer id (and epoch) for the benchmark: idempotent, or for a transactional id.
async fn producer_id(c: &mut Client, transactional_id: Option<String>) -> Result<(i64, i16)> {
    use kafka_protocol::messages::{InitProducerIdRequest, TransactionalId};
    let req = InitProducerIdRequest::default()
        .with_transactional_id(transactional_id.map(|t| TransactionalId(StrBytes::from_string(t))))
        .with_transaction_timeout_ms(60_000);
    let r = c.call(req, 4).await?;
    if r.error_code != 0 {
        bail!("InitProducerId failed with Kafka error {}", r.error_code);
    }
    Ok((r.producer_id.0, r.producer_epoch))
}

/// A connection to the transaction coordinator of `txn_id` (FindCoordinator).
async fn coordinator(addr: &str, txn_id: &str) -> Result<Client> {
    use kafka_protocol::messages::FindCoordinatorRequest;
    let mut c = connect(addr).await?;
    let req = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(txn_id.to_string()))
        .with_key_type(1);
    let r = c.call(req, 3).await?;
    if r.error_code != 0 {
        bail!("FindCoordinator failed with Kafka error {}", r.error_code);
    }
    let host = r.host.replace("localhost", "127.0.0.1");
    connect(&format!("{host}:{}", r.port)).await
}

async fn txn_call<R: kafka_protocol::protocol::Request>(
    c: &mut Client,
    req: R,
    code: impl Fn(&R::Response) -> i16,
) -> Result<()> {
    let r = c.call(req, 3).await?;
    match code(&r) {
        0 => Ok(()),
        e => bail!("transaction request failed with Kafka error {e}"),
    }
}

async fn produce_load(
    addr: &str,
    topic: &str,
    size: usize,
    acks: i16,
    mode: Mode,
    args: &Args,
) -> Result<(u64, u64, f64)> {
    let per_batch = (args.batch_bytes / size).max(1);
    let value = Bytes::from(vec![b'x'; size]);
    let msgs: Vec<Message> = (0..per_batch)
        .map(|_| Message {
            key: None,
            value: Some(value.clone()),
            timestamp: now_ms(),
        })
        .collect();
    let batch = encode_batch(&msgs, Compression::None)?;
    let records = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for conn in 0..args.connections {
        let (addr, topic, batch, records) = (
            addr.to_string(),
            topic.to_string(),
            batch.clone(),
            records.clone(),
        );
        let (inflight, partitions) = (args.inflight, args.partitions);
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&addr).await?;
            let v = c.version(ApiKey::Produce, 10)?;
            // Each connection writes its own share of the partitions.
            let mine: Vec<i32> = (0..partitions)
                .filter(|p| *p as usize % 4 == conn % 4)
                .collect();
            let mine = if mine.is_empty() {
                vec![conn as i32 % partitions]
            } else {
                mine
            };
            let plain = produce_request(
                &topic,
                acks,
                30_000,
                mine.iter().map(|&p| (p, batch.clone())),
            );
            let txn_id = format!("bench-{conn}");
            // Transaction requests go to the transaction coordinator (in a cluster,
            // possibly another broker than the partitions' leader).
            let mut coord = match mode {
                Mode::Transactional => Some(coordinator(&addr, &txn_id).await?),
                _ => None,
            };
            let (pid, epoch) = match (mode, coord.as_mut()) {
                (Mode::Idempotent, _) => producer_id(&mut c, None).await?,
                (Mode::Transactional, Some(t)) => producer_id(t, Some(txn_id.clone())).await?,
                _ => (-1, -1),
            };
            let transactional = mode == Mode::Transactional;
            let mut seq = 0i32;
            let mut in_txn = 0usize;
            let per_request = (per_batch * mine.len()) as u64;
            let mut pending = 0usize;
            while Instant::now() < deadline || pending > 0 {
                while pending < inflight && Instant::now() < deadline && in_txn < TXN_REQUESTS {
                    let req = if mode == Mode::Plain {
                        plain.clone()
                    } else {
                        if let (true, Some(t)) = (in_txn == 0, coord.as_mut()) {
                            add_partitions(t, &txn_id, pid, epoch, &topic, &mine).await?;
                        }
                        let stamped = stamp(&batch, pid, epoch, seq, transactional);
                        seq = seq.wrapping_add(per_batch as i32);
                        let req = produce_request(
                            &topic,
                            acks,
                            30_000,
                            mine.iter().map(|&p| (p, stamped.clone())),
                        );
                        // As clients do: the leader checks the batch against the
                        // transaction (KIP-890).
                        req.with_transactional_id(transactional.then(|| {
                            kafka_protocol::messages::TransactionalId(StrBytes::from_string(
                                txn_id.clone(),
                            ))
                        }))
                    };
                    let id = c.send(&req, v).await?;
                    c.expect(id, ApiKey::Produce, v);
                    pending += 1;
                    if transactional {
                        in_txn += 1;
                    }
                }
                let r = c.receive::<ProduceRequest>().await?;
                pending -= 1;
                for p in r.responses.iter().flat_map(|t| &t.partition_responses) {
                    if p.error_code != 0 {
                        bail!("produce failed with Kafka error {}", p.error_code);
                    }
                }
                records.fetch_add(per_request, Ordering::Relaxed);
                if let (true, Some(t)) = (pending == 0 && in_txn > 0, coord.as_mut()) {
                    end_txn(t, &txn_id, pid, epoch).await?;
                    in_txn = 0;
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = t.elapsed().as_secs_f64();
    let n = records.load(Ordering::Relaxed);
    Ok((n, n * size as u64, secs))
}

async fn add_partitions(
    c: &mut Client,
    txn_id: &str,
    pid: i64,
    epoch: i16,
    topic: &str,
    partitions: &[i32],
) -> Result<()> {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TransactionalId};
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(txn_id.into())))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(partitions.to_vec())]);
    txn_call(c, req, |r| {
        r.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| &t.results_by_partition)
            .map(|p| p.partition_error_code)
            .find(|e| *e != 0)
            .unwrap_or(0)
    })
    .await
}

async fn end_txn(c: &mut Client, txn_id: &str, pid: i64, epoch: i16) -> Result<()> {
    use kafka_protocol::messages::{EndTxnRequest, ProducerId, TransactionalId};
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(txn_id.into())))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(true);
    txn_call(c, req, |r| r.error_code).await
}

/// Fetches every partition from offset 0 to its end; returns (records, bytes, seconds).
async fn consume_all(addr: &str, topic: &str, partitions: i32) -> Result<(u64, u64, f64)> {
    let mut c = connect(addr).await?;
    let v = c.version(ApiKey::Fetch, 12)?;
    let mut offsets = vec![0i64; partitions as usize];
    let mut ends = vec![i64::MAX; partitions as usize];
    let (mut records, mut bytes) = (0u64, 0u64);
    let t = Instant::now();
    while offsets.iter().zip(&ends).any(|(o, e)| o < e) {
        let req = fetch_request(
            topic,
            (0..partitions).map(|p| (p, offsets[p as usize])),
            0,
            64 << 20,
            8 << 20,
        );
        let r = c.call(req, v).await?;
        for pd in r.responses.into_iter().flat_map(|t| t.partitions) {
            let p = pd.partition_index as usize;
            ends[p] = pd.high_watermark;
            let data = pd.records.unwrap_or_default();
            bytes += data.len() as u64;
            // Walk batch headers as a client's decoder would, without copying records.
            let mut batches = sluice_storage::batch::Batches::new(&data, true);
            for (_, h) in batches.by_ref() {
                records += h.record_count as u64;
                offsets[p] = h.next_offset();
            }
        }
    }
    Ok((records, bytes, t.elapsed().as_secs_f64()))
}

/// Produce (acks=all) → consume latency of single records sent at a steady rate.
async fn latency(
    addr: &str,
    topic: &str,
    samples: usize,
    rate_per_s: u64,
) -> Result<(f64, f64, f64, f64)> {
    let origin = Instant::now();
    let consumer_addr = addr.to_string();
    let consumer_topic = topic.to_string();
    let reader = tokio::spawn(async move {
        let mut c = connect(&consumer_addr).await?;
        let v = c.version(ApiKey::Fetch, 12)?;
        let mut offset = 0i64;
        let mut lat = Vec::with_capacity(samples);
        while lat.len() < samples {
            let req = fetch_request(&consumer_topic, [(0, offset)], 500, 1 << 20, 1 << 20);
            let r = c.call(req, v).await?;
            let now = origin.elapsed().as_micros() as i64;
            for pd in r.responses.into_iter().flat_map(|t| t.partitions) {
                for rec in decode_batches(pd.records.unwrap_or_default(), offset)? {
                    let sent: i64 =
                        std::str::from_utf8(rec.value.as_deref().unwrap_or_default())?.parse()?;
                    lat.push((now - sent) as f64 / 1000.0);
                    offset = rec.offset + 1;
                }
            }
        }
        Ok::<Vec<f64>, anyhow::Error>(lat)
    });
    let mut c = connect(addr).await?;
    let v = c.version(ApiKey::Produce, 10)?;
    let interval = Duration::from_micros(1_000_000 / rate_per_s);
    let start = Instant::now();
    let mut next = start;
    let mut pending = 0usize;
    for i in 0..samples {
        next += interval;
        tokio::time::sleep_until(next.into()).await;
        let sent = origin.elapsed().as_micros() as i64;
        let batch = encode_batch(
            &[Message {
                key: None,
                value: Some(Bytes::from(sent.to_string())),
                timestamp: i as i64,
            }],
            Compression::None,
        )?;
        let req = produce_request(topic, -1, 30_000, [(0, batch)]);
        let id = c.send(&req, v).await?;
        c.expect(id, ApiKey::Produce, v);
        pending += 1;
        // Keep the pipeline short so the send rate holds.
        while pending > 8 {
            c.receive::<ProduceRequest>().await?;
            pending -= 1;
        }
    }
    while pending > 0 {
        c.receive::<ProduceRequest>().await?;
        pending -= 1;
    }
    let rate = samples as f64 / start.elapsed().as_secs_f64();
    let mut lat = reader.await??;
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Ok((pct(0.50), pct(0.99), pct(0.999), rate))
}
