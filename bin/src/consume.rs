//! `sluice consume`: prints one line per record, `partition<TAB>offset<TAB>key<TAB>value`
//! unless `--format` says otherwise (kcat's `%p %o %k %v %T %h ...`).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kafka_protocol::messages::ApiKey;
use sluice_net::client::{decode_batches, fetch_request, Consumed};

use crate::Bootstrap;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub topic: String,
    /// Start at the earliest offset (default: the latest).
    #[arg(long, conflicts_with = "from_time")]
    pub from_beginning: bool,
    /// Start at the first record with a timestamp at or after this one (milliseconds
    /// since the epoch; ListOffsets by time).
    #[arg(long, value_name = "MS", conflicts_with = "offset")]
    pub from_time: Option<i64>,
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
    /// How to print each record, as kcat's -f: %t topic, %p partition, %o offset,
    /// %k key, %v value, %T timestamp (ms), %h headers (k=v,...), %K key length, %S
    /// value length, %% a percent sign; \t and \n escapes. A newline follows each.
    #[arg(long, value_name = "TEMPLATE", default_value = "%p\\t%o\\t%k\\t%v")]
    pub format: String,
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
    let mut start = crate::topic::offsets(
        &mut client,
        &args.topic,
        count,
        if args.from_beginning { -2 } else { -1 },
    )
    .await?;
    if let Some(ms) = args.from_time {
        // No record at or after that time: start at the end.
        let by_time = crate::topic::offsets(&mut client, &args.topic, count, ms.max(0)).await?;
        for (s, t) in start.iter_mut().zip(by_time) {
            if t >= 0 {
                *s = t;
            }
        }
    }
    let template = Template::parse(&args.format)?;
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
                    let line = template.render(&args.topic, pd.partition_index, &r);
                    writeln!(out, "{line}")?;
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

/// A `--format` template: literal text and record fields.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
    KeyLength,
    ValueLength,
}

#[derive(Debug, PartialEq, Eq)]
struct Template(Vec<Piece>);

impl Template {
    fn parse(format: &str) -> Result<Template> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            let field = match c {
                '%' => match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('v') => Piece::Value,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    Some('K') => Piece::KeyLength,
                    Some('S') => Piece::ValueLength,
                    Some('%') => {
                        text.push('%');
                        continue;
                    }
                    other => bail!(
                        "--format: unknown field %{} (fields: %t %p %o %k %v %T %h %K %S %%)",
                        other.map(String::from).unwrap_or_default()
                    ),
                },
                '\\' => {
                    match chars.next() {
                        Some('t') => text.push('\t'),
                        Some('n') => text.push('\n'),
                        Some(other) => text.push(other),
                        None => text.push('\\'),
                    }
                    continue;
                }
                c => {
                    text.push(c);
                    continue;
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(field);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template(pieces))
    }

    fn render(&self, topic: &str, partition: i32, r: &Consumed) -> String {
        let text = |b: &Option<bytes::Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(-1, |b| b.len() as i64);
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Topic => out.push_str(topic),
                Piece::Partition => out.push_str(&partition.to_string()),
                Piece::Offset => out.push_str(&r.offset.to_string()),
                Piece::Key => out.push_str(&text(&r.key)),
                Piece::Value => out.push_str(&text(&r.value)),
                Piece::Timestamp => out.push_str(&r.timestamp.to_string()),
                Piece::Headers => {
                    let headers: Vec<String> = r
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{k}={}", text(v)))
                        .collect();
                    out.push_str(&headers.join(","));
                }
                Piece::KeyLength => out.push_str(&len(&r.key).to_string()),
                Piece::ValueLength => out.push_str(&len(&r.value).to_string()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_like_kcat() {
        let r = Consumed {
            offset: 7,
            timestamp: 1_700_000_000_000,
            key: Some(bytes::Bytes::from_static(b"k")),
            value: None,
            headers: vec![
                ("a".into(), Some(bytes::Bytes::from_static(b"1"))),
                ("b".into(), None),
            ],
        };
        let t = Template::parse("%t/%p@%o %k=%v [%h] %K %S %T 100%%\\t.").unwrap();
        assert_eq!(
            t.render("orders", 2, &r),
            "orders/2@7 k= [a=1,b=] 1 -1 1700000000000 100%\t."
        );
        assert_eq!(
            Template::parse("%p\\t%o\\t%k\\t%v")
                .unwrap()
                .render("x", 0, &r),
            "0\t7\tk\t"
        );
        assert!(Template::parse("%z")
            .unwrap_err()
            .to_string()
            .contains("%z"));
    }
}
