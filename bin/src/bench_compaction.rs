//! `sluice bench --compaction` (issue 16): the log cleaner's throughput and memory, and
//! what cleaning costs producers.
//!
//! - A cleaner pass over a log written for the purpose (keyed 100 B records, 100,000
//!   keys), timed, with the offset map's accounted memory and the process's peak RSS
//!   growth during the pass (Linux: VmHWM after resetting it through `clear_refs`),
//!   with the default `log.cleaner.dedupe.buffer.size` and with one too small for the
//!   keys (the pass then cleans only as far as the map reaches).
//! - Keyed 1 KiB acks=all produce to a compacted topic while the broker's cleaner runs
//!   throughout (`min.cleanable.dirty.ratio=0.01`, 8 MiB segments, the cleaner looking
//!   every 100 ms), against the same produce to a `delete` topic in the same run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sluice_core::config::BrokerConfig;
use sluice_net::client::{encode_batch, produce_request, Client, Message};
use sluice_net::node::Node;
use sluice_net::runtime::production_env;
use sluice_net::tcp::TcpNetwork;
use sluice_storage::{CleanConfig, LogConfig, PartitionLog};

/// Distinct keys of the cleaner measurement.
const KEYS: usize = 100_000;
/// Bytes of records written for the cleaner measurement.
const DIRTY_BYTES: usize = 128 << 20;

pub struct Measured {
    pub rows: Vec<(String, String)>,
}

pub async fn run(tmp: &std::path::Path, seconds: u64, disk_mb_s: f64) -> Result<Measured> {
    let mut rows = Vec::new();
    for (label, buffer) in [
        (
            "default log.cleaner.dedupe.buffer.size (128 MiB)",
            128usize << 20,
        ),
        ("log.cleaner.dedupe.buffer.size of 1 MiB", 1 << 20),
    ] {
        let dir = tmp.join(format!("clean-{buffer}"));
        std::fs::create_dir_all(&dir)?;
        let p = pass(&dir, buffer).await?;
        let mb_s = p.mapped as f64 / p.secs / 1e6;
        let io_mb_s = (p.read + p.written) as f64 / p.secs / 1e6;
        rows.push((
            format!("cleaner pass, {label}"),
            format!(
                "{:.0} MB of {} keys written; the pass mapped {:.0} MB and cleaned to offset {} of {} in {:.2} s: {mb_s:.0} MB/s of dirty log; IO (read {:.0} MB + written {:.1} MB) {io_mb_s:.0} MB/s, {:.0}% of raw fsync'd disk; offset map {:.1} MB; peak RSS +{:.1} MB",
                DIRTY_BYTES as f64 / 1e6,
                KEYS,
                p.mapped as f64 / 1e6,
                p.end,
                p.log_end,
                p.secs,
                p.read as f64 / 1e6,
                p.written as f64 / 1e6,
                100.0 * io_mb_s / disk_mb_s,
                p.map_bytes as f64 / 1e6,
                p.peak_rss_growth as f64 / 1e6,
            ),
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    let data = tmp.join("while-cleaning");
    std::fs::create_dir_all(&data)?;
    let config = BrokerConfig {
        listen: "127.0.0.1:0".into(),
        advertised_host: "127.0.0.1".into(),
        advertised_port: 0,
        data_dir: data.display().to_string(),
        log_cleaner_backoff_ms: 100,
        ..BrokerConfig::default()
    };
    let node = Node::start(production_env(&config.data_dir), config).await?;
    let addr = node.local_addr.clone();
    let mut rates = Vec::new();
    for policy in ["delete", "compact"] {
        let topic = format!("bench-keyed-{policy}");
        create(&addr, &topic, policy).await?;
        let (msgs, secs) = produce_keyed(&addr, &topic, seconds).await?;
        let size = dir_bytes(&data.join(format!("{topic}-0")));
        rates.push(msgs as f64 / secs);
        rows.push((
            format!("produce 1 KiB keyed records, acks=all, cleanup.policy={policy}"),
            format!(
                "{:.0} msgs/s, {:.1} MB/s; {:.0} MB on disk after",
                msgs as f64 / secs,
                msgs as f64 * 1024.0 / secs / 1e6,
                size as f64 / 1e6
            ),
        ));
    }
    rows.push((
        "produce while the cleaner runs".into(),
        format!(
            "{:.0}% of the same produce to a delete topic",
            100.0 * rates[1] / rates[0]
        ),
    ));
    node.stop();
    let _ = std::fs::remove_dir_all(&data);
    Ok(Measured { rows })
}

struct Pass {
    mapped: u64,
    read: u64,
    written: u64,
    map_bytes: usize,
    end: i64,
    log_end: i64,
    secs: f64,
    peak_rss_growth: u64,
}

/// Writes DIRTY_BYTES of keyed records to a fresh log and times one cleaner pass.
async fn pass(dir: &std::path::Path, dedupe_buffer_bytes: usize) -> Result<Pass> {
    let env = production_env(&dir.display().to_string());
    let config = LogConfig {
        segment_bytes: 16 << 20,
        segment_ms: u64::MAX / 2,
        index_interval_bytes: 4096,
    };
    let log = PartitionLog::open(env, std::path::Path::new("t-0"), config)?;
    let value = Bytes::from(vec![b'v'; 100]);
    let mut k = 0usize;
    let mut written = 0usize;
    while written < DIRTY_BYTES {
        let msgs: Vec<Message> = (0..1000)
            .map(|_| {
                k = (k + 7919) % KEYS;
                Message {
                    key: Some(Bytes::from(format!("key-{k:06}"))),
                    value: Some(value.clone()),
                    timestamp: 0,
                }
            })
            .collect();
        let batch = encode_batch(&msgs, Compression::None)?;
        written += batch.len();
        log.append(&batch)?;
    }
    log.wait_durable(log.log_end_offset()).await?;
    let rss_before = rss_kb("VmRSS");
    reset_peak_rss();
    let cfg = CleanConfig {
        now_ms: 0,
        delete_retention_ms: 86_400_000,
        min_compaction_lag_ms: 0,
        dedupe_buffer_bytes,
        io_max_bytes_per_second: f64::INFINITY,
    };
    let began = Instant::now();
    let cleaner = log.clone();
    let stats = tokio::task::spawn_blocking(move || cleaner.clean(&cfg))
        .await??
        .context("the cleaner found nothing to clean")?;
    let secs = began.elapsed().as_secs_f64();
    let peak = rss_kb("VmHWM");
    Ok(Pass {
        mapped: stats.bytes_mapped,
        read: stats.bytes_read,
        written: stats.bytes_written,
        map_bytes: stats.map_bytes,
        end: stats.end,
        log_end: log.log_end_offset(),
        secs,
        peak_rss_growth: peak.saturating_sub(rss_before) * 1024,
    })
}

/// A line of /proc/self/status in kB (0 where there is none).
fn rss_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn create(addr: &str, topic: &str, policy: &str) -> Result<()> {
    let mut c = Client::connect(&TcpNetwork, addr, "sluice-bench").await?;
    let configs = [
        ("cleanup.policy", policy),
        ("segment.bytes", "8388608"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ]
    .into_iter()
    .map(|(k, v)| {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str(k))
            .with_value(Some(StrBytes::from_string(v.to_string())))
    })
    .collect();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs)]);
    let r = c.call(req, 7).await?;
    let code = r.topics[0].error_code;
    if code != 0 {
        bail!("creating {topic}: Kafka error {code}");
    }
    Ok(())
}

/// Keyed 1 KiB records, acks=all, 4 requests in flight on one connection, for
/// `seconds`: 16 pre-encoded batches of 128 records in turn (2,048 keys). Returns
/// (records, seconds).
async fn produce_keyed(addr: &str, topic: &str, seconds: u64) -> Result<(u64, f64)> {
    let value = Bytes::from(vec![b'x'; 1024]);
    let mut batches = Vec::new();
    for b in 0..16 {
        let msgs: Vec<Message> = (0..128)
            .map(|i| Message {
                key: Some(Bytes::from(format!("key-{b:02}-{i:03}"))),
                value: Some(value.clone()),
                timestamp: crate::bench::now_ms(),
            })
            .collect();
        batches.push(encode_batch(&msgs, Compression::None)?);
    }
    let mut c = Client::connect(&TcpNetwork, addr, "sluice-bench").await?;
    let v = c.version(ApiKey::Produce, 10)?;
    let mut records = 0u64;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let t = Instant::now();
    let (mut pending, mut n) = (0usize, 0usize);
    while Instant::now() < deadline || pending > 0 {
        while pending < 4 && Instant::now() < deadline {
            let req = produce_request(topic, -1, 30_000, [(0, batches[n % batches.len()].clone())]);
            n += 1;
            let id = c.send(&req, v).await?;
            c.expect(id, ApiKey::Produce, v);
            pending += 1;
        }
        let r = c.receive::<ProduceRequest>().await?;
        pending -= 1;
        for p in r.responses.iter().flat_map(|t| &t.partition_responses) {
            if p.error_code != 0 {
                bail!("produce failed with Kafka error {}", p.error_code);
            }
        }
        records += 128;
    }
    Ok((records, t.elapsed().as_secs_f64()))
}
