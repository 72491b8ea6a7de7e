//! `sluice server`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use sluice_net::node::Node;
use sluice_net::runtime::production_env;
use tracing::info;

use crate::config;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (Kafka's `listeners`).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Data directory (Kafka's `log.dirs`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Config file of Kafka config names: TOML (`num.partitions = 3`) or Kafka's
    /// `server.properties` format (`num.partitions=3`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id in a cluster (Kafka's `node.id`).
    #[arg(long, value_name = "ID")]
    node_id: Option<i32>,
    /// The cluster's controller voters, `id@host:port,...` (Kafka's
    /// `controller.quorum.voters`); this node listens for the others at its own entry.
    #[arg(long, value_name = "VOTERS")]
    controller_quorum_voters: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let mut layers = Vec::new();
    if let Some(path) = &args.config {
        layers.push(config::read_file(path)?);
    }
    layers.push(config::from_env(std::env::vars()));
    let mut flags = std::collections::BTreeMap::new();
    if let Some(listen) = &args.listen {
        flags.insert("listeners".to_string(), listen.clone());
    }
    if let Some(dir) = &args.data_dir {
        flags.insert("log.dirs".to_string(), dir.display().to_string());
    }
    if let Some(id) = args.node_id {
        flags.insert("node.id".to_string(), id.to_string());
    }
    if let Some(voters) = &args.controller_quorum_voters {
        flags.insert("controller.quorum.voters".to_string(), voters.clone());
    }
    layers.push(flags);
    let built = config::build_noting(&layers).context("invalid configuration")?;
    for note in &built.ignored {
        tracing::warn!("config {note}");
    }
    let config = built.config;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir))?;
    let env = production_env(&config.data_dir);
    let node = Node::start(env, config.clone())
        .await
        .context("starting the broker")?;
    info!(
        listen = %node.local_addr,
        advertised = %format!("{}:{}", config.advertised_host, config.advertised_port),
        data_dir = %config.data_dir,
        "ready"
    );
    tokio::select! {
        biased;
        signal = shutdown_signal() => signal?,
        why = node.failed() => {
            node.stop();
            anyhow::bail!("halting: the metadata log failed ({why}); restart the broker once its disk is healthy");
        }
    }
    info!("shutting down");
    node.stop();
    Ok(())
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        biased;
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
