//! `sluice`: the broker and its command line.

use anyhow::Result;
use clap::{Parser, Subcommand};

/// kafka-protocol trusts array counts from the wire; see `guard_alloc`.
#[global_allocator]
static ALLOC: sluice_net::guard_alloc::GuardedAlloc = sluice_net::guard_alloc::GuardedAlloc;

mod bench;
mod bench_compaction;
mod cluster;
mod config;
mod consume;
mod group;
mod produce;
mod server;
mod topic;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible event streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker: a single node by default, or a cluster member with --node-id
    /// and --controller-quorum-voters.
    Server(server::Args),
    /// Create, list, describe or delete topics.
    Topic {
        #[command(subcommand)]
        command: topic::Command,
    },
    /// List, describe, delete consumer groups, or reset their offsets.
    Group {
        #[command(subcommand)]
        command: group::Command,
    },
    /// Produce lines from stdin; a line `key:value` carries a key.
    Produce(produce::Args),
    /// Consume records and print `partition offset key value`, tab-separated.
    Consume(consume::Args),
    /// Benchmark a broker over the Kafka protocol beside this machine's limits.
    Bench(bench::Args),
    /// Cluster health: brokers, controller, under-replicated and offline partitions.
    Cluster {
        #[command(subcommand)]
        command: cluster::Command,
    },
}

/// A CLI whose output is cut short (`sluice topic describe t | head -3`) stops quietly,
/// as a shell tool killed by SIGPIPE does (exit status 141), instead of panicking: Rust
/// ignores SIGPIPE, so `println!` meets a broken pipe as an error and panics.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Server(_)) {
        quiet_on_broken_pipe();
    }
    let filter = std::env::var("SLUICE_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Topic { command } => topic::run(command).await,
            Command::Group { command } => group::run(command).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Consume(args) => consume::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Cluster { command } => cluster::run(command).await,
        }
    })
}

/// The broker a CLI command talks to.
#[derive(clap::Args, Debug, Clone)]
pub struct Bootstrap {
    /// Broker address.
    #[arg(long, env = "SLUICE_BOOTSTRAP", default_value = "localhost:9092")]
    pub bootstrap: String,
}

impl Bootstrap {
    /// A connection to the coordinator of `group` (FindCoordinator), where group
    /// requests must go.
    pub async fn coordinator(&self, group: &str) -> Result<sluice_net::client::Client> {
        use anyhow::{bail, Context};
        use kafka_protocol::messages::FindCoordinatorRequest;
        let mut c = self.connect().await?;
        let mut last = 0;
        for _ in 0..50 {
            let req = FindCoordinatorRequest::default()
                .with_key(kafka_protocol::protocol::StrBytes::from_string(
                    group.to_string(),
                ))
                .with_key_type(0);
            let r = c.call(req, 3).await?;
            if r.error_code == 0 {
                let addr = resolve(&format!("{}:{}", r.host.as_str(), r.port));
                return sluice_net::client::Client::connect(
                    &sluice_net::tcp::TcpNetwork,
                    &addr,
                    "sluice-cli",
                )
                .await
                .with_context(|| format!("cannot reach the coordinator of '{group}' at {addr}"));
            }
            last = r.error_code;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        bail!(
            "finding the coordinator of group '{group}' failed: {}",
            sluice_net::codes::describe(last)
        )
    }

    pub async fn connect(&self) -> Result<sluice_net::client::Client> {
        use anyhow::Context;
        let addr = resolve(&self.bootstrap);
        sluice_net::client::Client::connect(&sluice_net::tcp::TcpNetwork, &addr, "sluice-cli")
            .await
            .with_context(|| format!("cannot reach a broker at {}", self.bootstrap))
    }
}

/// `localhost` resolves to IPv4 first here, matching the broker's default listener.
pub(crate) fn resolve(addr: &str) -> String {
    match addr.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => addr.to_string(),
    }
}
