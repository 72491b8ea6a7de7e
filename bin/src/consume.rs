//! `sluice consume`: prints `partition<TAB>offset<TAB>key<TAB>value` per record.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kafka_protocol::messages::ApiKey;
use sluice_net::client::{decode_batches, fetch_request};

use crate::Bootstrap;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub topic: String,
    /// Start at the earliest offset (default: the latest).
    #[arg(long)]
    pub from_beginning: bool,
    /// Only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    pub offset: Option<i64>,
    /// Stop after this many records.
    #[arg(long)]
    pub max_messages: Option<usize>,
    /// Stop when nothing arrives for this long.
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

pub async fn run(args: Args) -> Result<()> {
    let mut client = args.bootstrap.connect().await?;
    let count = crate::topic::partitions(&mut client, &args.topic).await?;
    let parts: Vec<i32> = match args.partition {
        Some(p) if p < 0 || p >= count => bail!(
            "topic '{}' has no partition {p} (it has {count})",
            args.topic
        ),
        Some(p) => vec![p],
        None => (0..count).collect(),
    };
    let start = crate::topic::offsets(
        &mut client,
        &args.topic,
        count,
        if args.from_beginning { -2 } else { -1 },
    )
    .await?;
    let mut positions: Vec<(i32, i64)> = parts
        .iter()
        .map(|&p| (p, args.offset.unwrap_or(start[p as usize])))
        .collect();
    let v = client.version(ApiKey::Fetch, 12)?;
    let mut printed = 0usize;
    let mut last_data = Instant::now();
    let stdout = std::io::stdout();
    loop {
        let req = fetch_request(
            &args.topic,
            positions.iter().copied(),
            500,
            50 << 20,
            1 << 20,
        );
        let resp = client.call(req, v).await?;
        let mut got = false;
        let mut out = stdout.lock();
        for t in resp.responses {
            for pd in t.partitions {
                if pd.error_code != 0 {
                    bail!(
                        "fetch from {}-{} failed: {}",
                        args.topic,
                        pd.partition_index,
                        sluice_net::codes::describe(pd.error_code)
                    );
                }
                let Some(pos) = positions.iter_mut().find(|(p, _)| *p == pd.partition_index) else {
                    continue;
                };
                for r in decode_batches(pd.records.unwrap_or_default(), pos.1)? {
                    let text = |b: &Option<bytes::Bytes>| {
                        b.as_ref()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default()
                    };
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}",
                        pd.partition_index,
                        r.offset,
                        text(&r.key),
                        text(&r.value)
                    )?;
                    pos.1 = r.offset + 1;
                    printed += 1;
                    got = true;
                    if args.max_messages.is_some_and(|m| printed >= m) {
                        out.flush()?;
                        return Ok(());
                    }
                }
            }
        }
        out.flush()?;
        if got {
            last_data = Instant::now();
        } else if args
            .idle_timeout_ms
            .is_some_and(|ms| last_data.elapsed() > Duration::from_millis(ms))
        {
            return Ok(());
        }
    }
}
