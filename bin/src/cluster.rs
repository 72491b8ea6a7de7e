//! `sluice cluster status`: the brokers, the controller quorum leader, and the
//! partitions that are under-replicated (ISR smaller than the replicas) or offline
//! (no leader).

use anyhow::{Context, Result};
use kafka_protocol::messages::MetadataRequest;
use serde_json::json;

use crate::group::Format;
use crate::Bootstrap;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show brokers, the controller and partition health.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
}

pub async fn run(command: Command) -> Result<()> {
    let Command::Status { format, bootstrap } = command;
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
