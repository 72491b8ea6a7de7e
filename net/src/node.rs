//! The node entry point: the binary and the simulator both start a broker here.

use std::sync::Arc;

use std::time::Duration;

use sluice_core::cluster::metadata::BrokerRegistration;
use sluice_core::config::BrokerConfig;
use sluice_core::env::{Env, Listener};
use thiserror::Error;
use tokio::sync::watch;
use tracing::warn;

use crate::broker::{Broker, BrokerError};
use crate::controller::{parse_voters, Controller, ControllerError};
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
    #[error("config 'controller.quorum.voters': {0}")]
    Voters(String),
    #[error("starting the metadata quorum: {0}")]
    Controller(#[from] ControllerError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// A running broker.
pub struct Node {
    pub broker: Arc<Broker>,
    /// The address the main listener bound (its port is real even when 0 was asked).
    pub local_addr: String,
    shutdown: watch::Sender<bool>,
}

impl Node {
    /// Starts this node's metadata quorum voter, registers this broker through the
    /// quorum, opens the data directory (recovering every log assigned here) and
    /// starts serving. A single node (no `controller.quorum.voters`) is its own quorum;
    /// a cluster node returns once a quorum has formed and taken its registration.
    pub async fn start(env: Env, mut config: BrokerConfig) -> Result<Node, NodeError> {
        let (listener, local_addr) =
            bind(&env, &config.listen, &mut config.advertised_port).await?;
        // The other client listeners, bound now so that a taken port stops the start,
        // as do TLS settings that cannot be loaded.
        let tls = config.ssl.as_ref().map(crate::tls::acceptor).transpose()?;
        let mut extra = Vec::new();
        for l in &mut config.extra_listeners {
            let (bound, _) = bind(&env, &l.listen, &mut l.advertised_port).await?;
            let acceptor = if l.tls { tls.clone() } else { None };
            extra.push((Arc::<str>::from(l.name.as_str()), bound, acceptor));
        }
        let (shutdown, rx) = watch::channel(false);
        let mut voters =
            parse_voters(&config.controller_quorum_voters).map_err(NodeError::Voters)?;
        let mut controller_listener = None;
        if voters.is_empty() {
            voters.insert(config.node_id, String::new());
        } else {
            let Some(addr) = voters.get(&config.node_id).cloned() else {
                return Err(NodeError::Voters(format!(
                    "node.id {} is not one of the voters",
                    config.node_id
                )));
            };
            // Bound before the voter starts, so peers' first calls queue rather than fail.
            controller_listener = Some(
                env.net
                    .listen(&addr)
                    .await
                    .map_err(|source| NodeError::Listen { addr, source })?,
            );
        }
        let controller = Controller::start(env.clone(), &config, voters).await?;
        if let Some(listener) = controller_listener {
            env.spawn(serve_controller(controller.clone(), listener, rx.clone()));
        }
        controller.wait_caught_up().await?;
        let registration = BrokerRegistration {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: config.advertised_port,
            rack: config.broker_rack.clone(),
            endpoints: std::iter::once((
                config.listener_name.clone(),
                (config.advertised_host.clone(), config.advertised_port),
            ))
            .chain(config.extra_listeners.iter().map(|l| {
                (
                    l.name.clone(),
                    (l.advertised_host.clone(), l.advertised_port),
                )
            }))
            .collect(),
        };
        let proposed_id =
            crate::broker::local_cluster_id(&env, config.node_id).map_err(|source| {
                NodeError::Open {
                    dir: config.data_dir.clone(),
                    source,
                }
            })?;
        let rebalance_every = config
            .auto_leader_rebalance_enable
            .then(|| Duration::from_secs(config.leader_imbalance_check_interval_seconds));
        env.spawn(controller.clone().run_fencing(rebalance_every, rx.clone()));
        // Registering goes through the quorum, and its answer waits until this node
        // has applied it: the metadata it then acts on is current, not what it
        // replayed from its own log (in which it may still lead partitions that have
        // moved on). A cluster node waits here until a quorum has formed.
        controller.register(&registration, &proposed_id).await;
        env.spawn(controller.clone().run_broker(
            registration,
            proposed_id,
            Duration::from_millis(config.broker_heartbeat_interval_ms),
            rx.clone(),
        ));
        let broker = Broker::open(env.clone(), config.clone(), controller.clone(), rx.clone())
            .map_err(|source| NodeError::Open {
                dir: config.data_dir.clone(),
                source,
            })?;
        env.spawn(follow_metadata(broker.clone(), rx.clone()));
        env.spawn(isr_maintenance(broker.clone(), rx.clone()));
        let main_name = Arc::<str>::from(config.listener_name.as_str());
        // "localhost" may resolve to ::1 first: serve it there too when we can.
        if config.advertised_host == "localhost" {
            if let Some(port) = config.listen.strip_prefix("127.0.0.1:") {
                let v6 = if port == "0" {
                    format!("[::1]:{}", config.advertised_port)
                } else {
                    format!("[::1]:{port}")
                };
                match env.net.listen(&v6).await {
                    Ok(l) => env.spawn(server::serve(
                        broker.clone(),
                        main_name.clone(),
                        l,
                        None,
                        rx.clone(),
                    )),
                    Err(e) => warn!(addr = %v6, error = %e, "not serving IPv6 loopback"),
                }
            }
        }
        tracing::info!(addr = %local_addr, listener = %main_name, cluster_id = %broker.cluster_id(), node = broker.config.node_id, "sluice broker listening");
        env.spawn(server::serve(
            broker.clone(),
            main_name.clone(),
            listener,
            None,
            rx.clone(),
        ));
        for (name, bound, acceptor) in extra {
            let addr = bound.local_addr().unwrap_or_default();
            let tls = acceptor.is_some();
            tracing::info!(%addr, listener = %name, tls, "sluice broker listening");
            env.spawn(server::serve(
                broker.clone(),
                name,
                bound,
                acceptor,
                rx.clone(),
            ));
        }
        broker.txns.start(&broker);
        env.spawn(group_timer(broker.clone(), rx.clone()));
        env.spawn(retention_timer(broker.clone(), rx.clone()));
        if broker.config.log_cleaner_enable {
            for _ in 0..broker.config.log_cleaner_threads {
                env.spawn(cleaner(broker.clone(), rx.clone()));
            }
        }
        Ok(Node {
            broker,
            local_addr,
            shutdown,
        })
    }

    /// Resolves when the node can no longer work and must halt (its metadata quorum
    /// member stopped on a storage error), with the reason.
    pub async fn failed(&self) -> String {
        self.broker.controller.stopped().await
    }

    /// Stops accepting and closes connections. Acknowledged data is already durable.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Accepts controller connections from the other voters.
async fn serve_controller(
    controller: Arc<Controller>,
    mut listener: Box<dyn Listener>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                controller.shutdown().await;
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let c = controller.clone();
                    tokio::spawn(c.serve(stream, shutdown.clone()));
                }
                Err(e) => warn!(error = %e, "controller listener"),
            }
        }
    }
}

/// Applies every change of the metadata to the local replicas.
async fn follow_metadata(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut rx = broker.controller.subscribe();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            changed = rx.changed() => if changed.is_err() {
                return;
            },
        }
        sluice_core::buggify_sleep!(broker.env, 200);
        let (image, index) = {
            let applied = rx.borrow_and_update();
            (applied.image.clone(), applied.index)
        };
        if let Err(e) = broker.apply_image(image) {
            warn!(error = %e, "applying metadata");
        }
        broker.followed(index);
    }
}

/// How often leaders look for followers to drop from the ISR.
const ISR_CHECK: Duration = Duration::from_millis(500);

/// On every partition this broker leads: asks the controller to drop followers that
/// have not caught up within `replica.lag.time.max.ms`.
async fn isr_maintenance(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let max_lag = Duration::from_millis(broker.config.replica_lag_time_max_ms);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            () = broker.env.clock.sleep(ISR_CHECK) => {}
        }
        let now = broker.env.clock.monotonic();
        if sluice_core::buggify!(0.1) {
            // A late check: lagging followers stay in the ISR a round longer.
            continue;
        }
        for replica in broker.replicas() {
            if let Some(change) = replica.shrink_if_lagging(now, max_lag) {
                warn!(topic = %change.topic, partition = change.partition, isr = ?change.isr, "shrinking the ISR");
                broker.alter_isr(&replica, change).await;
            }
        }
    }
}

/// How often group sessions and rebalance deadlines are checked.
const GROUP_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Ticks the group and transaction coordinators. (Their topics are compacted by the
/// log cleaner, as Kafka's are.)
async fn group_timer(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            () = broker.env.clock.sleep(GROUP_TICK) => {
                if let Err(e) = broker.groups.sync_leadership(&broker) {
                    warn!(error = %e, "loading group state");
                }
                if let Err(e) = broker.txns.sync_leadership(&broker) {
                    warn!(error = %e, "loading transaction state");
                }
                broker.groups.tick(&broker);
                broker.txns.tick(&broker);
                // Share partitions whose locks ran out are written in the background.
                let dirty = broker.shares.tick(&broker);
                if !dirty.is_empty() {
                    let b = broker.clone();
                    broker.env.spawn(async move {
                        b.shares.persist(&b, &dirty).await;
                    });
                }
            }
        }
    }
}

/// One log cleaner (`log.cleaner.threads` of them, default 1): compacts the dirtiest
/// due log no other cleaner is working on, again at once while there is one, else
/// after `log.cleaner.backoff.ms`.
async fn cleaner(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let backoff = std::time::Duration::from_millis(broker.config.log_cleaner_backoff_ms);
    loop {
        let cleaned = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            cleaned = broker.clean_dirtiest_log() => cleaned,
        };
        if cleaned {
            continue;
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            () = broker.env.clock.sleep(backoff) => {}
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

/// Binds a client listener; port 0 asks for any port, and the one bound is then the
/// one advertised (where none was given).
async fn bind(
    env: &Env,
    addr: &str,
    advertised_port: &mut u16,
) -> Result<(Box<dyn sluice_core::env::Listener>, String), NodeError> {
    let listener = env
        .net
        .listen(addr)
        .await
        .map_err(|source| NodeError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().unwrap_or_else(|_| addr.to_string());
    if *advertised_port == 0 {
        if let Some(port) = local.rsplit(':').next().and_then(|p| p.parse().ok()) {
            *advertised_port = port;
        }
    }
    Ok((listener, local))
}
