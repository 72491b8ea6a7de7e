//! `sluice cluster status`: the brokers, the controller quorum leader, and the
//! partitions that are under-replicated (ISR smaller than the replicas) or offline
//! (no leader). `sluice cluster reassign`: moves replicas off a broker being removed,
//! onto added brokers, or as told, with throttled catch-up. `sluice cluster info`: the
//! cluster id, controller and brokers (DescribeCluster). `sluice cluster config
//! get|set`: broker configs (DescribeConfigs, IncrementalAlterConfigs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, IncrementalAlterConfigsRequest,
    ListPartitionReassignmentsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;
use sluice_core::cluster::metadata::{
    plan_balance, plan_removal, BrokerRegistration, BrokerState, MetadataImage, Move,
    PartitionState, TopicImage, DYNAMIC_BROKER_CONFIGS,
};
use sluice_net::client::Client;

use crate::group::Format;
use crate::Bootstrap;

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print a broker's configs (every one, or those named) with their source.
    Get {
        /// Config names; none for all.
        names: Vec<String>,
        /// The broker to ask (default: the one bootstrapped to).
        #[arg(long)]
        broker: Option<i32>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Set dynamic broker configs for the whole cluster (KEY=VALUE), or remove them
    /// (KEY= with no value) so the default applies again.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show the cluster id, the controller and the brokers.
    Info {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Read or change broker configs.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Show brokers, the controller and partition health.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Move partition replicas between brokers while they stay online (Kafka's
    /// kafka-reassign-partitions). Waits until the move is done unless --no-wait.
    Reassign {
        /// Move every replica off this broker (before removing it).
        #[arg(long, conflicts_with_all = ["balance", "topic", "cancel"])]
        remove_broker: Option<i32>,
        /// Spread replicas evenly over the live brokers (after adding brokers).
        #[arg(long, conflicts_with_all = ["topic", "cancel"])]
        balance: bool,
        /// Move one partition of this topic to --replicas.
        #[arg(long, requires_all = ["partition", "replicas"])]
        topic: Option<String>,
        #[arg(long)]
        partition: Option<i32>,
        /// The new replicas, preferred leader first (e.g. 2,3,4).
        #[arg(long, value_delimiter = ',')]
        replicas: Option<Vec<i32>>,
        /// Cancel the reassignments in progress.
        #[arg(long)]
        cancel: bool,
        /// Limit catch-up traffic to this many bytes/s per broker while moving
        /// (leader. and follower.replication.throttled.rate), removed when done.
        #[arg(long)]
        throttle: Option<u64>,
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
        /// Return once the move has started.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Info { format, bootstrap } => info(format, bootstrap).await,
        Command::Config {
            command:
                ConfigCommand::Get {
                    names,
                    broker,
                    format,
                    bootstrap,
                },
        } => config_get(names, broker, format, bootstrap).await,
        Command::Config {
            command: ConfigCommand::Set { pairs, bootstrap },
        } => config_set(pairs, bootstrap).await,
        Command::Status { format, bootstrap } => status(format, bootstrap).await,
        Command::Reassign {
            remove_broker,
            balance,
            topic,
            partition,
            replicas,
            cancel,
            throttle,
            dry_run,
            no_wait,
            bootstrap,
        } => {
            let mut client = bootstrap.connect().await?;
            let ongoing = list_reassignments(&mut client).await?;
            if cancel {
                return cancel_all(&mut client, ongoing).await;
            }
            if !ongoing.is_empty() {
                bail!(
                    "a reassignment of {} partition(s) is in progress; wait for it or --cancel it",
                    ongoing.len()
                );
            }
            let image = image_of(&metadata(&mut client).await?);
            let moves = match (remove_broker, balance, topic) {
                (Some(broker), _, _) => plan_removal(&image, broker)?,
                (None, true, _) => plan_balance(&image),
                (None, false, Some(topic)) => vec![Move {
                    topic,
                    partition: partition.unwrap_or_default(),
                    replicas: replicas.unwrap_or_default(),
                }],
                _ => bail!("say what to move: --remove-broker N, --balance, or --topic/--partition/--replicas"),
            };
            for m in &moves {
                let from = image
                    .partition(&m.topic, m.partition)
                    .map(|p| format!("{:?}", p.replicas))
                    .unwrap_or_else(|| "?".into());
                println!("{}-{}	{from} -> {:?}", m.topic, m.partition, m.replicas);
            }
            if moves.is_empty() {
                println!("nothing to move");
                return Ok(());
            }
            if dry_run {
                return Ok(());
            }
            if let Some(rate) = throttle {
                set_throttle(&mut client, Some(rate)).await?;
            }
            start_moves(&mut client, &moves).await?;
            if no_wait {
                println!("{} partition(s) moving", moves.len());
                return Ok(());
            }
            let started = Instant::now();
            loop {
                let left = list_reassignments(&mut client).await?;
                if left.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if throttle.is_some() {
                set_throttle(&mut client, None).await?;
            }
            println!(
                "{} partition(s) moved in {:.1} s",
                moves.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

async fn metadata(client: &mut Client) -> Result<MetadataResponse> {
    let version = client.version(ApiKey::Metadata, 12)?;
    client
        .call(MetadataRequest::default().with_topics(None), version)
        .await
        .context("Metadata request")
}

/// The part of the cluster's metadata a reassignment plan needs, from a Metadata answer.
fn image_of(meta: &MetadataResponse) -> MetadataImage {
    let mut image = MetadataImage::default();
    for b in &meta.brokers {
        let registration = BrokerRegistration {
            node_id: b.node_id.0,
            host: b.host.to_string(),
            port: u16::try_from(b.port).unwrap_or(0),
            rack: b.rack.as_ref().map(|r| r.to_string()),
            endpoints: Default::default(),
        };
        image.brokers.insert(
            b.node_id.0,
            BrokerState {
                registration,
                fenced: false,
            },
        );
    }
    for t in &meta.topics {
        let Some(name) = t.name.as_ref() else {
            continue;
        };
        let mut partitions: Vec<_> = t.partitions.iter().collect();
        partitions.sort_by_key(|p| p.partition_index);
        let partitions = partitions
            .into_iter()
            .map(|p| PartitionState {
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                partition_epoch: 0,
                adding: Vec::new(),
                removing: Vec::new(),
            })
            .collect();
        image.topics.insert(
            name.to_string(),
            TopicImage {
                id: *t.topic_id.as_bytes(),
                configs: BTreeMap::new(),
                partitions,
            },
        );
    }
    image
}

/// The partitions whose reassignment is in progress, as (topic, partition).
async fn list_reassignments(client: &mut Client) -> Result<Vec<(String, i32)>> {
    let version = client.version(ApiKey::ListPartitionReassignments, 0)?;
    let resp = client
        .call(
            ListPartitionReassignmentsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(None),
            version,
        )
        .await
        .context("ListPartitionReassignments request")?;
    if resp.error_code != 0 {
        bail!(
            "listing reassignments failed: {}",
            sluice_net::codes::describe(resp.error_code)
        );
    }
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect())
}

async fn alter_reassignments(
    client: &mut Client,
    moves: Vec<(String, i32, Option<Vec<i32>>)>,
) -> Result<()> {
    let version = client.version(ApiKey::AlterPartitionReassignments, 1)?;
    let mut topics: BTreeMap<String, Vec<ReassignablePartition>> = BTreeMap::new();
    for (topic, partition, replicas) in moves {
        topics.entry(topic).or_default().push(
            ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect())),
        );
    }
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_allow_replication_factor_change(version >= 1)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let resp = client
        .call(req, version)
        .await
        .context("AlterPartitionReassignments request")?;
    if resp.error_code != 0 {
        bail!(
            "reassignment refused: {} {}",
            sluice_net::codes::describe(resp.error_code),
            resp.error_message.as_deref().unwrap_or("")
        );
    }
    let mut failed = Vec::new();
    for t in &resp.responses {
        for p in &t.partitions {
            if p.error_code != 0 {
                failed.push(format!(
                    "{}-{}: {} {}",
                    t.name.as_str(),
                    p.partition_index,
                    sluice_net::codes::describe(p.error_code),
                    p.error_message.as_deref().unwrap_or("")
                ));
            }
        }
    }
    if !failed.is_empty() {
        bail!("reassignment refused for {}", failed.join("; "));
    }
    Ok(())
}

async fn start_moves(client: &mut Client, moves: &[Move]) -> Result<()> {
    let moves = moves
        .iter()
        .map(|m| (m.topic.clone(), m.partition, Some(m.replicas.clone())))
        .collect();
    alter_reassignments(client, moves).await
}

async fn cancel_all(client: &mut Client, ongoing: Vec<(String, i32)>) -> Result<()> {
    if ongoing.is_empty() {
        println!("no reassignment in progress");
    } else {
        let n = ongoing.len();
        alter_reassignments(
            client,
            ongoing.into_iter().map(|(t, p)| (t, p, None)).collect(),
        )
        .await?;
        println!("cancelled the reassignment of {n} partition(s)");
    }
    set_throttle(client, None).await
}

async fn info(format: Format, bootstrap: Bootstrap) -> Result<()> {
    use kafka_protocol::messages::DescribeClusterRequest;
    let mut client = bootstrap.connect().await?;
    let v = client.version(ApiKey::DescribeCluster, 1)?;
    let r = client
        .call(DescribeClusterRequest::default(), v)
        .await
        .context("DescribeCluster request")?;
    if r.error_code != 0 {
        bail!(
            "describing the cluster failed: {}",
            sluice_net::codes::describe(r.error_code)
        );
    }
    let brokers: Vec<_> = r
        .brokers
        .iter()
        .map(|b| {
            json!({
                "node_id": b.broker_id.0,
                "host": b.host.to_string(),
                "port": b.port,
                "rack": b.rack.as_ref().map(|r| r.to_string()),
            })
        })
        .collect();
    let view = json!({
        "cluster_id": r.cluster_id.to_string(),
        "controller": r.controller_id.0,
        "brokers": brokers,
    });
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        Format::Text => {
            println!("cluster {}", r.cluster_id.as_str());
            println!("controller {}", r.controller_id.0);
            println!("id\thost\tport\track");
            for b in &r.brokers {
                println!(
                    "{}\t{}\t{}\t{}",
                    b.broker_id.0,
                    b.host.as_str(),
                    b.port,
                    b.rack.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

async fn config_get(
    names: Vec<String>,
    broker: Option<i32>,
    format: Format,
    bootstrap: Bootstrap,
) -> Result<()> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;
    let mut client = bootstrap.connect().await?;
    let id = match broker {
        Some(id) => id,
        None => {
            let v = client.version(ApiKey::DescribeCluster, 1)?;
            let r = client
                .call(
                    kafka_protocol::messages::DescribeClusterRequest::default(),
                    v,
                )
                .await?;
            // The broker bootstrapped to: the one whose address we dialled, else the
            // first listed.
            let want = crate::resolve(&bootstrap.bootstrap);
            r.brokers
                .iter()
                .find(|b| crate::resolve(&format!("{}:{}", b.host.as_str(), b.port)) == want)
                .or(r.brokers.first())
                .map(|b| b.broker_id.0)
                .context("the cluster lists no broker")?
        }
    };
    let v = client.version(ApiKey::DescribeConfigs, 4)?;
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_string(id.to_string()))
            .with_configuration_keys((!names.is_empty()).then(|| {
                names
                    .iter()
                    .map(|n| StrBytes::from_string(n.clone()))
                    .collect()
            }))]);
    let r = client
        .call(req, v)
        .await
        .context("DescribeConfigs request")?;
    let res = r
        .results
        .first()
        .context("empty DescribeConfigs response")?;
    if res.error_code != 0 {
        bail!(
            "reading broker {id}'s configs failed: {} {}",
            sluice_net::codes::describe(res.error_code),
            res.error_message.as_deref().unwrap_or("")
        );
    }
    for n in &names {
        if !res.configs.iter().any(|c| c.name.as_str() == n) {
            bail!("broker {id} has no config named '{n}'");
        }
    }
    let source = |s: i8| match s {
        1 => "dynamic-topic",
        2 => "dynamic-broker",
        3 => "dynamic-default-broker",
        4 => "static-broker",
        5 => "default",
        _ => "unknown",
    };
    match format {
        Format::Json => {
            let configs: serde_json::Map<String, serde_json::Value> = res
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        json!({
                            "value": c.value.as_ref().map(|v| v.to_string()),
                            "source": source(c.config_source),
                            "read_only": c.read_only,
                        }),
                    )
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "broker": id, "configs": configs }))?
            );
        }
        Format::Text => {
            for c in &res.configs {
                println!(
                    "{}={}\t({})",
                    c.name.as_str(),
                    c.value.as_deref().unwrap_or(""),
                    source(c.config_source)
                );
            }
        }
    }
    Ok(())
}

async fn config_set(pairs: Vec<String>, bootstrap: Bootstrap) -> Result<()> {
    let mut changes = Vec::new();
    for pair in &pairs {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("'{pair}' is not KEY=VALUE"))?;
        changes.push((k.to_string(), (!v.is_empty()).then(|| v.to_string())));
    }
    let mut client = bootstrap.connect().await?;
    alter_broker_configs(&mut client, changes).await?;
    for pair in pairs {
        println!("set {pair}");
    }
    Ok(())
}

/// Sets (or with `None` removes) the cluster-wide replication throttles.
async fn set_throttle(client: &mut Client, rate: Option<u64>) -> Result<()> {
    let changes = DYNAMIC_BROKER_CONFIGS
        .iter()
        .map(|name| (name.to_string(), rate.map(|r| r.to_string())))
        .collect();
    alter_broker_configs(client, changes)
        .await
        .context("setting the replication throttle")
}

/// Sets (`Some`) or removes (`None`) cluster-wide dynamic broker configs.
async fn alter_broker_configs(
    client: &mut Client,
    changes: Vec<(String, Option<String>)>,
) -> Result<()> {
    let version = client.version(ApiKey::IncrementalAlterConfigs, 1)?;
    let configs = changes
        .into_iter()
        .map(|(name, value)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(name))
                .with_config_operation(if value.is_some() { 0 } else { 1 })
                .with_value(value.map(StrBytes::from_string))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str(""))
            .with_configs(configs),
    ]);
    let resp = client
        .call(req, version)
        .await
        .context("IncrementalAlterConfigs request")?;
    if let Some(r) = resp.responses.iter().find(|r| r.error_code != 0) {
        bail!(
            "altering broker configs failed: {} {}",
            sluice_net::codes::describe(r.error_code),
            r.error_message.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

async fn status(format: Format, bootstrap: Bootstrap) -> Result<()> {
    let mut client = bootstrap.connect().await?;
    let version = client.version(kafka_protocol::messages::ApiKey::Metadata, 12)?;
    let meta = client
        .call(MetadataRequest::default().with_topics(None), version)
        .await
        .context("Metadata request")?;
    let brokers: Vec<_> = meta
        .brokers
        .iter()
        .map(|b| {
            json!({
                "node_id": b.node_id.0,
                "host": b.host.to_string(),
                "port": b.port,
                "rack": b.rack.as_ref().map(|r| r.to_string()),
            })
        })
        .collect();
    let mut partitions = 0usize;
    let mut under = Vec::new();
    let mut offline = Vec::new();
    for t in &meta.topics {
        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        for p in &t.partitions {
            partitions += 1;
            let entry = json!({
                "topic": name,
                "partition": p.partition_index,
                "leader": p.leader_id.0,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                "isr": p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
            });
            if p.leader_id.0 < 0 {
                offline.push(entry);
            } else if p.isr_nodes.len() < p.replica_nodes.len() {
                under.push(entry);
            }
        }
    }
    let status = json!({
        "cluster_id": meta.cluster_id.as_ref().map(|c| c.to_string()),
        "controller": meta.controller_id.0,
        "brokers": brokers,
        "partitions": partitions,
        "under_replicated": under,
        "offline": offline,
    });
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Format::Text => {
            println!(
                "cluster {}  controller {}",
                status["cluster_id"].as_str().unwrap_or("-"),
                meta.controller_id.0
            );
            println!("brokers ({}):", meta.brokers.len());
            for b in &meta.brokers {
                let rack = b
                    .rack
                    .as_ref()
                    .map(|r| format!(" rack {r}"))
                    .unwrap_or_default();
                println!("  {}\t{}:{}{rack}", b.node_id.0, b.host, b.port);
            }
            println!(
                "partitions {partitions}, under-replicated {}, offline {}",
                under.len(),
                offline.len()
            );
            for (what, list) in [("under-replicated", &under), ("offline", &offline)] {
                for e in list {
                    println!(
                        "  {what}\t{}-{}\tleader {}\treplicas {}\tisr {}",
                        e["topic"].as_str().unwrap_or(""),
                        e["partition"],
                        e["leader"],
                        e["replicas"],
                        e["isr"]
                    );
                }
            }
        }
    }
    Ok(())
}
