//! `sluice produce`: lines from stdin become records. `key:value` lines carry a key
//! (unless --no-keys); keyed records go to Kafka's murmur2 partition for the key.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::records::Compression;
use sluice_net::client::{
    encode_batch_with_headers, partition_for_key, produce_request, Client, Message,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::Bootstrap;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub topic: String,
    /// 0 (no response), 1 or all/-1 (wait for fsync).
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Send every record to this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Treat every line as a value, even if it contains ':'.
    #[arg(long)]
    pub no_keys: bool,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// A header every record carries, KEY=VALUE (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

pub fn parse_acks(acks: &str) -> Result<i16> {
    Ok(match acks {
        "0" => 0,
        "1" => 1,
        "all" | "-1" => -1,
        other => bail!("--acks must be 0, 1 or all, not '{other}'"),
    })
}

pub fn parse_compression(c: &str) -> Result<Compression> {
    Ok(match c {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => bail!("unknown compression '{other}'"),
    })
}

pub async fn run(args: Args) -> Result<()> {
    let acks = parse_acks(&args.acks)?;
    let compression = parse_compression(&args.compression)?;
    let headers = args
        .headers
        .iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--header '{kv}' is not KEY=VALUE"))?;
            Ok((k.to_string(), Some(Bytes::from(v.to_string()))))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut client = args.bootstrap.connect().await?;
    let partitions = crate::topic::partitions(&mut client, &args.topic).await?;
    let mut out = Sink {
        client,
        topic: &args.topic,
        acks,
        compression,
        headers,
    };
    if let Some(p) = args.partition {
        if p < 0 || p >= partitions {
            bail!(
                "topic '{}' has no partition {p} (it has {partitions})",
                args.topic
            );
        }
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending: BTreeMap<i32, Vec<Message>> = BTreeMap::new();
    let mut next_keyless = 0i32;
    let (mut sent, mut count) = (0usize, 0usize);
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        let (key, value) = match line.split_once(':') {
            Some((k, v)) if !args.no_keys => {
                (Some(Bytes::from(k.to_string())), Bytes::from(v.to_string()))
            }
            _ => (None, Bytes::from(line)),
        };
        let partition = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => next_keyless,
        };
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        pending.entry(partition).or_default().push(Message {
            key,
            value: Some(value),
            timestamp,
        });
        count += 1;
        if count % args.batch_size == 0 {
            next_keyless = (next_keyless + 1) % partitions;
            sent += out.flush(&mut pending).await?;
        }
    }
    sent += out.flush(&mut pending).await?;
    eprintln!("produced {sent} record(s) to {}", args.topic);
    Ok(())
}

/// Where pending records go, and how.
struct Sink<'a> {
    client: Client,
    topic: &'a str,
    acks: i16,
    compression: Compression,
    headers: Vec<(String, Option<Bytes>)>,
}

impl Sink<'_> {
    /// Sends the pending records as one Produce request and checks every partition.
    async fn flush(&mut self, pending: &mut BTreeMap<i32, Vec<Message>>) -> Result<usize> {
        let Sink {
            client,
            topic,
            acks,
            compression,
            headers,
        } = self;
        let (topic, acks, compression) = (*topic, *acks, *compression);
        if pending.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        let mut batches = Vec::new();
        for (p, msgs) in std::mem::take(pending) {
            n += msgs.len();
            batches.push((p, encode_batch_with_headers(&msgs, headers, compression)?));
        }
        let req = produce_request(topic, acks, 30_000, batches);
        let v = client.version(ApiKey::Produce, 10)?;
        if acks == 0 {
            client.send(&req, v).await?;
            return Ok(n);
        }
        let resp = client.call(req, v).await?;
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    bail!(
                        "produce to {topic}-{} failed: {}",
                        p.index,
                        sluice_net::codes::describe(p.error_code)
                    );
                }
            }
        }
        Ok(n)
    }
}
