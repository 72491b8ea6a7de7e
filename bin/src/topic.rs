//! `sluice topic create|list|describe|delete|alter-config|add-partitions|trim`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, DescribeLogDirsRequest,
    IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use sluice_net::client::Client;

use crate::group::Format;
use crate::Bootstrap;

/// Kafka's ConfigResource type for a topic.
const TOPIC_RESOURCE: i8 = 2;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(long, default_value_t = -1)]
        partitions: i32,
        #[arg(long, default_value_t = -1)]
        replication_factor: i16,
        /// Topic config, e.g. --config retention.ms=3600000 (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// List topics.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Show a topic's partitions, offsets and configs.
    Describe {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Add partitions to a topic (CreatePartitions); existing keys may then map to
    /// other partitions.
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        count: i32,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Change a topic's configs (IncrementalAlterConfigs): set some, remove others
    /// (back to the broker default).
    AlterConfig {
        name: String,
        /// A config to set, e.g. --set retention.ms=3600000 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A config to remove (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Delete a partition's records below an offset (DeleteRecords): its log start
    /// offset moves there on every in-sync replica.
    Trim {
        name: String,
        #[arg(long)]
        partition: i32,
        /// The new log start offset; -1 for the high watermark (everything readable).
        #[arg(long, allow_negative_numbers = true)]
        offset: i64,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<()> {
    if code != 0 {
        let name = sluice_net::codes::describe(code);
        match message.filter(|m| !m.is_empty()) {
            Some(m) => bail!("{what} failed: {m} ({name})"),
            None => bail!("{what} failed: {name}"),
        }
    }
    Ok(())
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Create {
            name,
            partitions,
            replication_factor,
            configs,
            bootstrap,
        } => {
            let mut client = bootstrap.connect().await?;
            let configs = configs
                .iter()
                .map(|kv| {
                    let (k, v) = kv
                        .split_once('=')
                        .with_context(|| format!("--config '{kv}' is not KEY=VALUE"))?;
                    Ok(CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.into()))
                        .with_value(Some(StrBytes::from_string(v.into()))))
                })
                .collect::<Result<Vec<_>>>()?;
            let req = CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(&name))
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication_factor)
                    .with_configs(configs)]);
            let v = client.version(ApiKey::CreateTopics, 7)?;
            let resp = client.call(req, v).await?;
            for t in &resp.topics {
                check(
                    t.error_code,
                    t.error_message.as_ref(),
                    &format!("creating topic '{name}'"),
                )?;
                println!(
                    "created topic {} with {} partition(s)",
                    t.name.as_str(),
                    t.num_partitions
                );
            }
        }
        Command::List { format, bootstrap } => {
            let mut client = bootstrap.connect().await?;
            let v = client.version(ApiKey::Metadata, 12)?;
            let resp = client
                .call(MetadataRequest::default().with_topics(None), v)
                .await?;
            let mut names: Vec<String> = resp
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
                .collect();
            names.sort();
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&names)?),
                Format::Text => {
                    for n in names {
                        println!("{n}");
                    }
                }
            }
        }
        Command::Describe {
            name,
            format,
            bootstrap,
        } => {
            let mut client = bootstrap.connect().await?;
            let d = describe(&mut client, &name).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&d)?),
                Format::Text => print_description(&d),
            }
        }
        Command::AddPartitions {
            name,
            count,
            bootstrap,
        } => {
            let mut client = bootstrap.connect().await?;
            let v = client.version(ApiKey::CreatePartitions, 3)?;
            let req = CreatePartitionsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name(&name))
                    .with_count(count)]);
            let resp = client.call(req, v).await?;
            for r in &resp.results {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("adding partitions to '{name}'"),
                )?;
            }
            println!("topic {name} now has {count} partition(s)");
        }
        Command::Delete { name, bootstrap } => {
            let mut client = bootstrap.connect().await?;
            let v = client.version(ApiKey::DeleteTopics, 6)?;
            let req = if v >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic_name(&name)))
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
            }
            .with_timeout_ms(30_000);
            let resp = client.call(req, v).await?;
            for r in &resp.responses {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("deleting topic '{name}'"),
                )?;
            }
            println!("deleted topic {name}");
        }
        Command::AlterConfig {
            name,
            set,
            delete,
            bootstrap,
        } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
            }
            let mut configs = Vec::new();
            for kv in &set {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--set '{kv}' is not KEY=VALUE"))?;
                configs.push(
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k.into()))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(v.into()))),
                );
            }
            for k in &delete {
                configs.push(
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_config_operation(1),
                );
            }
            let mut client = bootstrap.connect().await?;
            let v = client.version(ApiKey::IncrementalAlterConfigs, 1)?;
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(StrBytes::from_string(name.clone()))
                    .with_configs(configs),
            ]);
            let resp = client.call(req, v).await?;
            for r in &resp.responses {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("altering the configs of topic '{name}'"),
                )?;
            }
            println!("altered the configs of topic {name}");
        }
        Command::Trim {
            name,
            partition,
            offset,
            bootstrap,
        } => {
            let mut client = bootstrap.connect().await?;
            let mut leader = leader_of(&mut client, &name, partition).await?;
            let v = leader.version(ApiKey::DeleteRecords, 2)?;
            let req = DeleteRecordsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(vec![DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(offset)])]);
            let resp = leader.call(req, v).await?;
            let p = resp
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .next()
                .context("the broker answered for no partition")?;
            check(
                p.error_code,
                None,
                &format!("trimming {name}-{partition} to offset {offset}"),
            )?;
            println!(
                "{name}-{partition} now starts at offset {}",
                p.low_watermark
            );
        }
    }
    Ok(())
}

/// A connection to the leader of `partition` of `topic`, found through `client`.
async fn leader_of(client: &mut Client, topic: &str, partition: i32) -> Result<Client> {
    let (leaders, addrs) = leaders(client, topic).await?;
    let leader = leaders
        .iter()
        .find(|(p, _)| *p == partition)
        .with_context(|| format!("topic '{topic}' has no partition {partition}"))?
        .1;
    connect_leader(&addrs, topic, partition, leader).await
}

/// A topic's partitions with their leader ids, in order, and the brokers' addresses.
async fn leaders(
    client: &mut Client,
    topic: &str,
) -> Result<(Vec<(i32, i32)>, BTreeMap<i32, String>)> {
    let v = client.version(ApiKey::Metadata, 12)?;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let meta = client.call(req, v).await?;
    let t = meta
        .topics
        .first()
        .context("the broker answered for no topic")?;
    check(t.error_code, None, &format!("looking up topic '{topic}'"))?;
    let mut leaders: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    leaders.sort_unstable();
    let addrs = meta
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    Ok((leaders, addrs))
}

/// A connection to broker `leader`, the leader of `topic`-`partition`.
async fn connect_leader(
    addrs: &BTreeMap<i32, String>,
    topic: &str,
    partition: i32,
    leader: i32,
) -> Result<Client> {
    let addr = addrs
        .get(&leader)
        .with_context(|| format!("{topic}-{partition} has no leader now (leader id {leader})"))?;
    Client::connect(&sluice_net::tcp::TcpNetwork, addr, "sluice-cli")
        .await
        .with_context(|| format!("cannot reach {topic}-{partition}'s leader at {addr}"))
}

/// One partition's ListOffsets answer (-1 latest, -2 earliest), from its leader.
async fn partition_offset(
    leader: &mut Client,
    name: &str,
    partition: i32,
    timestamp: i64,
) -> Result<i64> {
    let v = leader.version(ApiKey::ListOffsets, 7)?;
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(name))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let resp = leader.call(req, v).await?;
    let p = resp
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .next()
        .context("the broker answered for no partition")?;
    check(
        p.error_code,
        None,
        &format!("listing offsets of {name}-{partition}"),
    )?;
    Ok(p.offset)
}

/// Bytes of a partition's log on the broker asked, and for a compacted topic its
/// dirty ratio (DescribeLogDirs).
async fn log_size(broker: &mut Client, name: &str, partition: i32) -> Result<(i64, Option<f64>)> {
    let v = broker.version(ApiKey::DescribeLogDirs, 4)?;
    let req =
        DescribeLogDirsRequest::default()
            .with_topics(Some(vec![DescribableLogDirTopic::default()
                .with_topic(topic_name(name))
                .with_partitions(vec![partition])]));
    let resp = broker.call(req, v).await?;
    resp.results
        .iter()
        .flat_map(|d| &d.topics)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
        .map(|p| {
            let ratio = p
                .unknown_tagged_fields
                .get(&sluice_net::handlers::log_dirs::DIRTY_RATIO_TAG)
                .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                .map(f64::from_be_bytes);
            (p.partition_size, ratio)
        })
        .with_context(|| format!("the leader holds no log of {name}-{partition}"))
}

/// Partition count of a topic, failing with the broker's error if it has none.
pub async fn partitions(client: &mut Client, name: &str) -> Result<i32> {
    Ok(leaders(client, name).await?.0.len() as i32)
}

/// Offsets of every partition for a ListOffsets timestamp (-1 latest, -2 earliest).
pub async fn offsets(
    client: &mut Client,
    name: &str,
    count: i32,
    timestamp: i64,
) -> Result<Vec<i64>> {
    let v = client.version(ApiKey::ListOffsets, 7)?;
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(name))
            .with_partitions(
                (0..count)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let resp = client.call(req, v).await?;
    let mut out = vec![-1; count as usize];
    for t in &resp.topics {
        for p in &t.partitions {
            check(
                p.error_code,
                None,
                &format!("listing offsets of {name}-{}", p.partition_index),
            )?;
            if let Some(slot) = out.get_mut(p.partition_index as usize) {
                *slot = p.offset;
            }
        }
    }
    Ok(out)
}

/// A topic as `topic describe` shows it.
#[derive(Serialize)]
struct Description {
    topic: String,
    partitions: Vec<PartitionRow>,
    configs: Vec<ConfigRow>,
}

#[derive(Serialize)]
struct PartitionRow {
    partition: i32,
    leader: i32,
    log_start: i64,
    high_watermark: i64,
    /// Offsets, not records: a compacted log has fewer records than offsets.
    offsets: i64,
    size_bytes: i64,
    /// Only compacted topics have one.
    dirty_ratio: Option<f64>,
}

#[derive(Serialize)]
struct ConfigRow {
    name: String,
    value: String,
    set_on_topic: bool,
}

fn print_description(d: &Description) {
    print!("{}", render_description(d));
}

/// `topic describe`'s text: the partitions as a table, then the configs.
fn render_description(d: &Description) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "topic {}: {} partition(s)",
        d.topic,
        d.partitions.len()
    );
    out.push_str(
        "partition\tleader\tlog-start\thigh-watermark\toffsets\tsize-bytes\tdirty-ratio\n",
    );
    for p in &d.partitions {
        let dirty = p.dirty_ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{dirty}",
            p.partition, p.leader, p.log_start, p.high_watermark, p.offsets, p.size_bytes
        );
    }
    out.push_str("configs:\n");
    for c in &d.configs {
        let source = if c.set_on_topic {
            " (set on topic)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {}={}{source}", c.name, c.value);
    }
    out
}

async fn describe(client: &mut Client, name: &str) -> Result<Description> {
    let (leaders, addrs) = leaders(client, name).await?;
    let mut partitions = Vec::with_capacity(leaders.len());
    // Each partition as its leader has it (in a cluster, another broker's): one
    // connection per leader.
    let mut connections: BTreeMap<i32, Client> = BTreeMap::new();
    for (p, leader_id) in leaders {
        let leader = match connections.entry(leader_id) {
            std::collections::btree_map::Entry::Occupied(c) => c.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(connect_leader(&addrs, name, p, leader_id).await?)
            }
        };
        let start = partition_offset(leader, name, p, -2).await?;
        let end = partition_offset(leader, name, p, -1).await?;
        let (size, dirty) = log_size(leader, name, p).await?;
        partitions.push(PartitionRow {
            partition: p,
            leader: leader_id,
            log_start: start,
            high_watermark: end,
            offsets: end - start,
            size_bytes: size,
            dirty_ratio: dirty,
        });
    }
    let v = client.version(ApiKey::DescribeConfigs, 4)?;
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(None)]);
    let resp = client.call(req, v).await?;
    let mut configs = Vec::new();
    for r in &resp.results {
        check(r.error_code, r.error_message.as_ref(), "describing configs")?;
        for c in &r.configs {
            configs.push(ConfigRow {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                set_on_topic: c.config_source == 1,
            });
        }
    }
    Ok(Description {
        topic: name.to_string(),
        partitions,
        configs,
    })
}

#[cfg(test)]
mod snapshots {
    use super::*;

    #[test]
    fn topic_describe_text() {
        let d = Description {
            topic: "orders".into(),
            partitions: vec![
                PartitionRow {
                    partition: 0,
                    leader: 1,
                    log_start: 0,
                    high_watermark: 120,
                    offsets: 120,
                    size_bytes: 9_480,
                    dirty_ratio: None,
                },
                PartitionRow {
                    partition: 1,
                    leader: 2,
                    log_start: 40,
                    high_watermark: 95,
                    offsets: 55,
                    size_bytes: 4_102,
                    dirty_ratio: Some(0.375),
                },
            ],
            configs: vec![
                ConfigRow {
                    name: "cleanup.policy".into(),
                    value: "compact,delete".into(),
                    set_on_topic: true,
                },
                ConfigRow {
                    name: "retention.ms".into(),
                    value: "604800000".into(),
                    set_on_topic: false,
                },
            ],
        };
        insta::assert_snapshot!(render_description(&d));
    }
}
