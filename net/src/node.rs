//! The node entry point: the binary and the simulator both start a broker here.

use std::sync::Arc;

use sluice_core::config::BrokerConfig;
use sluice_core::env::Env;
use thiserror::Error;
use tokio::sync::watch;
use tracing::warn;

use crate::broker::{Broker, BrokerError};
use crate::server;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("opening data directory {dir}: {source}")]
    Open { dir: String, source: BrokerError },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A running broker.
pub struct Node {
    pub broker: Arc<Broker>,
    /// The address the main listener bound (its port is real even when 0 was asked).
    pub local_addr: String,
    shutdown: watch::Sender<bool>,
}

impl Node {
    /// Opens the data directory (recovering every log) and starts serving.
    pub async fn start(env: Env, mut config: BrokerConfig) -> Result<Node, NodeError> {
        let listener =
            env.net
                .listen(&config.listen)
                .await
                .map_err(|source| NodeError::Listen {
                    addr: config.listen.clone(),
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| config.listen.clone());
        // Port 0 asks for any port: advertise the one we got.
        if config.advertised_port == 0 {
            if let Some(port) = local_addr.rsplit(':').next().and_then(|p| p.parse().ok()) {
                config.advertised_port = port;
            }
        }
        let broker =
            Broker::open(env.clone(), config.clone()).map_err(|source| NodeError::Open {
                dir: config.data_dir.clone(),
                source,
            })?;
        let (shutdown, rx) = watch::channel(false);
        // "localhost" may resolve to ::1 first: serve it there too when we can.
        if config.advertised_host == "localhost" {
            if let Some(port) = config.listen.strip_prefix("127.0.0.1:") {
                let v6 = if port == "0" {
                    format!("[::1]:{}", config.advertised_port)
                } else {
                    format!("[::1]:{port}")
                };
                match env.net.listen(&v6).await {
                    Ok(l) => env.spawn(server::serve(broker.clone(), l, rx.clone())),
                    Err(e) => warn!(addr = %v6, error = %e, "not serving IPv6 loopback"),
                }
            }
        }
        tracing::info!(addr = %local_addr, cluster_id = %broker.cluster_id, node = broker.config.node_id, "sluice broker listening");
        env.spawn(server::serve(broker.clone(), listener, rx.clone()));
        broker.txns.start(&broker);
        env.spawn(group_timer(broker.clone(), rx.clone()));
        env.spawn(retention_timer(broker.clone(), rx));
        Ok(Node {
            broker,
            local_addr,
            shutdown,
        })
    }

    /// Stops accepting and closes connections. Acknowledged data is already durable.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// How often group sessions and rebalance deadlines are checked.
const GROUP_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Ticks the group and transaction coordinators, and every `log.cleaner.backoff.ms` cleans
/// `__consumer_offsets`.
async fn group_timer(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let clean_every = (broker.config.log_cleaner_backoff_ms / GROUP_TICK.as_millis() as u64).max(1);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            () = broker.env.clock.sleep(GROUP_TICK) => {
                broker.groups.tick();
                broker.txns.tick(&broker);
            }
        }
        ticks += 1;
        if ticks.is_multiple_of(clean_every) {
            broker.groups.clean().await;
        }
    }
}

/// Applies retention every `log.retention.check.interval.ms`.
async fn retention_timer(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let every = std::time::Duration::from_millis(broker.config.log_retention_check_interval_ms);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            () = broker.env.clock.sleep(every) => broker.apply_retention(),
        }
    }
}
