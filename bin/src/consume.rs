//! `sluice consume`: prints one line per record, `partition<TAB>offset<TAB>key<TAB>value`
//! unless `--format` says otherwise (kcat's `%p %o %k %v %T %h ...`). With `--group` it
//! is a member of that consumer group (KIP-848's consumer protocol: the coordinator
//! assigns the partitions), starts from the group's committed offsets and commits what
//! it printed.

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
    /// Consume as a member of this group: its partitions, from its committed offsets
    /// (else the earliest with --from-beginning, the latest otherwise), committing what
    /// is printed.
    #[arg(long, conflicts_with_all = ["partition", "offset", "from_time"])]
    pub group: Option<String>,
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
    if let Some(group) = args.group.clone() {
        return member::run(args, group).await;
    }
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

/// `consume --group`: a KIP-848 group member.
mod member {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::Write;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Result};
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{
        ApiKey, ConsumerGroupHeartbeatRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest,
        TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use sluice_net::client::{decode_batches, fetch_request, Client};
    use sluice_net::codes::describe;

    use super::{Args, Template};

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    struct Member {
        group: String,
        topic: String,
        id: String,
        epoch: i32,
        topic_id: Option<uuid::Uuid>,
        /// Owned partitions with the next offset to print and whether it is committed.
        owned: BTreeMap<i32, (i64, bool)>,
        interval: Duration,
        from_beginning: bool,
    }

    pub async fn run(args: Args, group: String) -> Result<()> {
        let mut data = args.bootstrap.connect().await?;
        let count = crate::topic::partitions(&mut data, &args.topic).await?;
        let mut coordinator = args.bootstrap.coordinator(&group).await?;
        let template = Template::parse(&args.format)?;
        let mut m = Member {
            group,
            topic: args.topic.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            epoch: 0,
            topic_id: None,
            owned: BTreeMap::new(),
            interval: Duration::from_secs(1),
            from_beginning: args.from_beginning,
        };
        let start = crate::topic::offsets(&mut data, &args.topic, count, -2).await?;
        let end = crate::topic::offsets(&mut data, &args.topic, count, -1).await?;
        let v = data.version(ApiKey::Fetch, 12)?;
        let mut printed = 0usize;
        let mut last_data = Instant::now();
        let mut next_heartbeat = Instant::now();
        let done = loop {
            if Instant::now() >= next_heartbeat {
                m.heartbeat(&mut coordinator, &start, &end).await?;
                next_heartbeat = Instant::now() + m.interval;
            }
            if m.owned.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            } else {
                let req = fetch_request(
                    &m.topic,
                    m.owned.iter().map(|(p, (o, _))| (*p, *o)),
                    200,
                    50 << 20,
                    1 << 20,
                );
                let resp = data.call(req, v).await?;
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                let mut got = false;
                'fetch: for pd in resp.responses.into_iter().flat_map(|t| t.partitions) {
                    if pd.error_code != 0 {
                        bail!(
                            "fetch from {}-{} failed: {}",
                            m.topic,
                            pd.partition_index,
                            describe(pd.error_code)
                        );
                    }
                    let Some(pos) = m.owned.get_mut(&pd.partition_index) else {
                        continue;
                    };
                    for r in decode_batches(pd.records.unwrap_or_default(), pos.0)? {
                        writeln!(out, "{}", template.render(&m.topic, pd.partition_index, &r))?;
                        *pos = (r.offset + 1, false);
                        printed += 1;
                        got = true;
                        if args.max_messages.is_some_and(|n| printed >= n) {
                            break 'fetch;
                        }
                    }
                }
                out.flush()?;
                drop(out);
                m.commit(&mut coordinator, None).await?;
                if args.max_messages.is_some_and(|n| printed >= n) {
                    break true;
                }
                if got {
                    last_data = Instant::now();
                }
            }
            if args
                .idle_timeout_ms
                .is_some_and(|ms| last_data.elapsed() > Duration::from_millis(ms))
            {
                break true;
            }
        };
        if done {
            m.leave(&mut coordinator).await;
        }
        Ok(())
    }

    impl Member {
        async fn heartbeat(&mut self, c: &mut Client, start: &[i64], end: &[i64]) -> Result<()> {
            let mut req = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_member_id(s(&self.id))
                .with_member_epoch(self.epoch)
                .with_rebalance_timeout_ms(-1)
                .with_topic_partitions(self.topic_id.map(|id| {
                    vec![TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(self.owned.keys().copied().collect())]
                }));
            if self.epoch == 0 {
                req = req
                    .with_rebalance_timeout_ms(60_000)
                    .with_subscribed_topic_names(Some(vec![TopicName(s(&self.topic))]))
                    .with_topic_partitions(Some(vec![]));
            }
            let v = c.version(ApiKey::ConsumerGroupHeartbeat, 1)?;
            let r = c.call(req, v).await?;
            match r.error_code {
                0 => {}
                // Fenced: drop everything and join again.
                25 | 110 => {
                    self.epoch = 0;
                    self.owned.clear();
                    return Ok(());
                }
                code => bail!(
                    "consumer group heartbeat of '{}' failed: {} {}",
                    self.group,
                    describe(code),
                    r.error_message.as_deref().unwrap_or_default()
                ),
            }
            self.epoch = r.member_epoch;
            self.interval = Duration::from_millis(r.heartbeat_interval_ms.max(100) as u64);
            let Some(a) = r.assignment else {
                return Ok(());
            };
            let mut target = BTreeSet::new();
            for tp in a.topic_partitions {
                self.topic_id = Some(tp.topic_id);
                target.extend(tp.partitions);
            }
            let revoked: Vec<i32> = self
                .owned
                .keys()
                .filter(|p| !target.contains(p))
                .copied()
                .collect();
            if !revoked.is_empty() {
                // Revoke: commit what was printed, then let go.
                self.commit(c, Some(&revoked)).await?;
                for p in &revoked {
                    self.owned.remove(p);
                }
            }
            let added: Vec<i32> = target
                .iter()
                .filter(|p| !self.owned.contains_key(p))
                .copied()
                .collect();
            if !added.is_empty() {
                let committed = self.committed(c, &added).await?;
                for p in added {
                    let fallback = if self.from_beginning { start } else { end };
                    let from = committed
                        .get(&p)
                        .copied()
                        .unwrap_or_else(|| fallback.get(p as usize).copied().unwrap_or(0));
                    self.owned.insert(p, (from, true));
                }
            }
            Ok(())
        }

        async fn committed(&self, c: &mut Client, parts: &[i32]) -> Result<BTreeMap<i32, i64>> {
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(&self.topic)))
                    .with_partition_indexes(parts.to_vec())]));
            let r = c.call(req, 7).await?;
            if r.error_code != 0 {
                bail!(
                    "fetching the offsets of '{}' failed: {}",
                    self.group,
                    describe(r.error_code)
                );
            }
            Ok(r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                .map(|p| (p.partition_index, p.committed_offset))
                .collect())
        }

        /// Commits the printed positions (of `only`, or every owned partition).
        async fn commit(&mut self, c: &mut Client, only: Option<&[i32]>) -> Result<()> {
            let todo: Vec<(i32, i64)> = self
                .owned
                .iter()
                .filter(|(p, (_, done))| !done && only.is_none_or(|o| o.contains(p)))
                .map(|(p, (o, _))| (*p, *o))
                .collect();
            if todo.is_empty() {
                return Ok(());
            }
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_generation_id_or_member_epoch(self.epoch)
                .with_member_id(s(&self.id))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(&self.topic)))
                    .with_partitions(
                        todo.iter()
                            .map(|(p, o)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*o)
                            })
                            .collect(),
                    )]);
            let r = c.call(req, 9).await?;
            for p in r.topics.iter().flat_map(|t| &t.partitions) {
                match p.error_code {
                    0 => {
                        if let Some(pos) = self.owned.get_mut(&p.partition_index) {
                            pos.1 = true;
                        }
                    }
                    // STALE_MEMBER_EPOCH: the next heartbeat brings the epoch.
                    113 => {}
                    code => bail!(
                        "committing {}-{} for '{}' failed: {}",
                        self.topic,
                        p.partition_index,
                        self.group,
                        describe(code)
                    ),
                }
            }
            Ok(())
        }

        async fn leave(&mut self, c: &mut Client) {
            let req = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_member_id(s(&self.id))
                .with_member_epoch(-1);
            let _ = c.call(req, 1).await;
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
