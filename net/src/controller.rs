//! The controller: the metadata quorum on openraft, its RPC over the `Network` seam,
//! and broker liveness (registration, heartbeats, fencing).
//!
//! Every node is a voter (combined mode). Any node may ask for a change: it is
//! forwarded to the quorum leader, written to the metadata log and applied by every
//! node's state machine ([`MetadataImage::apply`]). Heartbeats are not logged: the
//! quorum leader keeps them in memory and fences a broker that misses them for
//! `broker.session.timeout.ms`; a fenced broker registers again when it sees that.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use sluice_core::cluster::metadata::{
    preferred_elections, Applied, BrokerRegistration, Command, MetadataError, MetadataImage,
};
use sluice_core::cluster::raft::MetadataRaft;
use sluice_core::config::BrokerConfig;
use sluice_core::env::{Env, Stream};
use sluice_storage::raft_store::{self, MetadataMachine, RaftLogStore};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{info, warn};

type NodeId = u64;

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("no controller quorum leader is reachable: {0}")]
    Unavailable(String),
    #[error("opening the metadata log: {0}")]
    Storage(#[from] io::Error),
    #[error("the metadata quorum stopped: {0}")]
    Fatal(String),
}

/// Requests between controllers.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    AppendEntries(AppendEntriesRequest<MetadataRaft>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<MetadataRaft>),
    /// A change for the quorum leader to write.
    Write(Command),
    /// A broker is alive.
    Heartbeat {
        node_id: i32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The outcome and the metadata log index it was written at; or why it was not.
    Write(Result<(Result<Applied, MetadataError>, u64), String>),
    Heartbeat(Result<(), String>),
}

/// Largest controller RPC frame accepted.
const MAX_FRAME: usize = 64 << 20;

async fn send_frame(stream: &mut Box<dyn Stream>, value: &impl Serialize) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    stream.write_all(&buf).await?;
    stream.flush().await
}

async fn recv_frame<T: for<'de> Deserialize<'de>>(stream: &mut Box<dyn Stream>) -> io::Result<T> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("controller frame of {len} bytes is over the {MAX_FRAME} limit"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One connection to a peer controller, opened on demand and dropped on error.
struct Peer {
    env: Env,
    addr: String,
    stream: tokio::sync::Mutex<Option<Box<dyn Stream>>>,
}

impl Peer {
    fn new(env: Env, addr: String) -> Peer {
        Peer {
            env,
            addr,
            stream: tokio::sync::Mutex::new(None),
        }
    }

    async fn call(&self, request: &Request, ttl: Duration) -> io::Result<Response> {
        let mut slot = self.stream.lock().await;
        let attempt = async {
            if slot.is_none() {
                *slot = Some(self.env.net.connect(&self.addr).await?);
            }
            let Some(stream) = slot.as_mut() else {
                return Err(io::Error::other("no connection"));
            };
            send_frame(stream, request).await?;
            recv_frame(stream).await
        };
        let result = tokio::select! {
            biased;
            r = attempt => r,
            () = self.env.clock.sleep(ttl) => Err(io::Error::new(io::ErrorKind::TimedOut, "controller RPC timed out")),
        };
        if result.is_err() {
            *slot = None;
        }
        result
    }
}

/// openraft's network: one [`Peer`] per target voter.
struct Network {
    env: Env,
}

struct PeerNetwork {
    target: NodeId,
    peer: Peer,
}

impl RaftNetworkFactory<MetadataRaft> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            target,
            peer: Peer::new(self.env.clone(), node.addr.clone()),
        }
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerNetwork {
    async fn call(&self, request: Request, option: &RPCOption) -> Result<Response, NetworkError> {
        self.peer
            .call(&request, option.hard_ttl())
            .await
            .map_err(|e| NetworkError::new(&e))
    }

    fn remote<E: std::error::Error>(
        &self,
        e: RaftError<NodeId, E>,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

fn unexpected() -> NetworkError {
    NetworkError::new(&io::Error::other("unexpected controller response"))
}

impl RaftNetwork<MetadataRaft> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetadataRaft>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.call(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(r) => r.map_err(|e| self.remote(e)),
            _ => Err(unexpected().into()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetadataRaft>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.call(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(r) => r.map_err(|e| self.remote(e)),
            _ => Err(unexpected().into()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(r) => r.map_err(|e| self.remote(e)),
            _ => Err(unexpected().into()),
        }
    }
}

/// Parses `controller.quorum.voters`: `id@host:port,...`.
pub fn parse_voters(text: &str) -> Result<BTreeMap<i32, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|v| {
            let (id, addr) = v
                .split_once('@')
                .ok_or_else(|| format!("voter '{v}' is not id@host:port"))?;
            let id = id
                .parse::<i32>()
                .map_err(|_| format!("voter '{v}': '{id}' is not a node id"))?;
            if !addr.contains(':') {
                return Err(format!("voter '{v}': '{addr}' has no port"));
            }
            Ok((id, addr.to_string()))
        })
        .collect()
}

/// How long an RPC to another controller may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the quorum leader looks for brokers to fence.
const FENCE_CHECK: Duration = Duration::from_millis(250);

/// The metadata quorum as one node sees it.
pub struct QuorumView {
    /// The leader's node id, -1 when none is known.
    pub leader: i32,
    pub term: i64,
    /// The end of the metadata log this node applied.
    pub high_watermark: i64,
    /// Each voter: its id, its quorum address, its log end (-1 when unknown here).
    pub voters: Vec<(i32, String, i64)>,
}

pub struct Controller {
    env: Env,
    node_id: i32,
    raft: Raft<MetadataRaft>,
    applied: watch::Receiver<raft_store::Applied>,
    peers: BTreeMap<i32, Peer>,
    /// On the quorum leader: when each broker was last heard from (monotonic).
    heartbeats: Mutex<BTreeMap<i32, Duration>>,
    session_timeout: Duration,
    /// The metadata log index known committed when this node started.
    startup_committed: u64,
}

impl Controller {
    /// Opens the metadata log and starts this node's voter. A fresh quorum initializes
    /// itself from `voters`.
    pub async fn start(
        env: Env,
        config: &BrokerConfig,
        voters: BTreeMap<i32, String>,
    ) -> Result<Arc<Controller>, ControllerError> {
        let log = RaftLogStore::open(env.disk.clone())?;
        let startup_committed = log.committed_index();
        let (machine, applied) = MetadataMachine::open(env.disk.clone())?;
        let raft_config = openraft::Config {
            cluster_name: "sluice".into(),
            heartbeat_interval: 100,
            election_timeout_min: 600,
            election_timeout_max: 1200,
            install_snapshot_timeout: 4000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(2000),
            max_in_snapshot_log_to_keep: 200,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerError::Fatal(e.to_string()))?;
        let raft = Raft::new(
            config.node_id as NodeId,
            Arc::new(raft_config),
            Network { env: env.clone() },
            log,
            machine,
        )
        .await
        .map_err(|e| ControllerError::Fatal(e.to_string()))?;
        if !raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::Fatal(e.to_string()))?
        {
            let members: BTreeMap<NodeId, BasicNode> = voters
                .iter()
                .map(|(id, addr)| (*id as NodeId, BasicNode::new(addr)))
                .collect();
            // Every voter may try; all but the first find the log started and give up.
            if let Err(e) = raft.initialize(members).await {
                info!(error = %e, "metadata quorum already initialized");
            }
        }
        let peers = voters
            .iter()
            .filter(|(id, _)| **id != config.node_id)
            .map(|(id, addr)| (*id, Peer::new(env.clone(), addr.clone())))
            .collect();
        Ok(Arc::new(Controller {
            env,
            node_id: config.node_id,
            raft,
            applied,
            peers,
            heartbeats: Mutex::new(BTreeMap::new()),
            session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
            startup_committed,
        }))
    }

    /// The latest applied metadata.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.applied.borrow().image.clone()
    }

    /// Changes of the applied metadata.
    pub fn subscribe(&self) -> watch::Receiver<raft_store::Applied> {
        self.applied.clone()
    }

    /// Resolves when this node's quorum member has stopped for good (openraft stops on
    /// a storage error, e.g. a full disk under the metadata log), with the reason.
    /// The node must then halt, as Kafka halts on a failed metadata log directory:
    /// a broker that stays up without metadata would serve stale leadership forever.
    pub async fn stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(e) = &metrics.borrow_and_update().running_state {
                return e.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the metadata quorum member shut down".into();
            }
        }
    }

    /// The metadata quorum as this node sees it (DescribeQuorum): on the leader, every
    /// voter's log end; elsewhere only this node's own.
    pub fn quorum(&self) -> QuorumView {
        let m = self.raft.metrics().borrow().clone();
        let own_end = m.last_log_index.map_or(0, |i| i as i64 + 1);
        let voters = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| {
                let end = if *id as i32 == self.node_id {
                    own_end
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map_or(-1, |log_id| log_id.index as i64 + 1)
                };
                (*id as i32, node.addr.clone(), end)
            })
            .collect();
        QuorumView {
            leader: m.current_leader.map_or(-1, |id| id as i32),
            term: m.current_term as i64,
            high_watermark: m.last_applied.map_or(0, |l| l.index as i64 + 1),
            voters,
        }
    }

    /// The node id of the quorum leader, if known.
    pub fn leader(&self) -> Option<i32> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .map(|id| id as i32)
    }

    /// Writes a command through the quorum leader (forwarding as needed), then waits
    /// until this node has applied it, so the caller sees its effect.
    pub async fn write(
        &self,
        command: Command,
    ) -> Result<Result<Applied, MetadataError>, ControllerError> {
        let deadline = self.env.clock.monotonic() + Duration::from_secs(10);
        sluice_core::buggify_sleep!(self.env, 300);
        loop {
            let last_error = match self.try_write(&command).await {
                Ok((outcome, index)) => {
                    self.wait_applied(index, deadline).await?;
                    return Ok(outcome);
                }
                Err(e) => e,
            };
            if self.env.clock.monotonic() >= deadline {
                return Err(ControllerError::Unavailable(last_error));
            }
            self.env.clock.sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_write(
        &self,
        command: &Command,
    ) -> Result<(Result<Applied, MetadataError>, u64), String> {
        match self.leader() {
            Some(leader) if leader == self.node_id => self.write_local(command.clone()).await,
            Some(leader) => {
                let peer = self
                    .peers
                    .get(&leader)
                    .ok_or("leader is not a known voter")?;
                match peer
                    .call(&Request::Write(command.clone()), RPC_TIMEOUT)
                    .await
                {
                    Ok(Response::Write(r)) => r,
                    Ok(_) => Err("unexpected controller response".into()),
                    Err(e) => Err(format!("controller {leader}: {e}")),
                }
            }
            None => Err("no leader elected".into()),
        }
    }

    async fn write_local(
        &self,
        command: Command,
    ) -> Result<(Result<Applied, MetadataError>, u64), String> {
        match self.raft.client_write(command).await {
            Ok(r) => Ok((r.data, r.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(format!("not the leader; leader is {:?}", f.leader_id))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn wait_applied(&self, index: u64, deadline: Duration) -> Result<(), ControllerError> {
        let mut rx = self.applied.clone();
        loop {
            if rx.borrow_and_update().index >= index {
                return Ok(());
            }
            let left = deadline.saturating_sub(self.env.clock.monotonic());
            tokio::select! {
                biased;
                changed = rx.changed() => if changed.is_err() {
                    return Err(ControllerError::Fatal("state machine closed".into()));
                },
                () = self.env.clock.sleep(left) => {
                    return Err(ControllerError::Unavailable(format!("metadata index {index} not applied in time")));
                }
            }
        }
    }

    /// Waits until the metadata this node had committed before it stopped is applied
    /// again (a local replay, no quorum needed).
    pub async fn wait_caught_up(&self) -> Result<(), ControllerError> {
        let deadline = self.env.clock.monotonic() + Duration::from_secs(30);
        self.wait_applied(self.startup_committed, deadline).await
    }

    /// Tells the quorum leader this broker is alive.
    async fn heartbeat(&self) -> Result<(), String> {
        sluice_core::buggify_sleep!(self.env, 400);
        match self.leader() {
            Some(leader) if leader == self.node_id => {
                self.record_heartbeat(self.node_id);
                Ok(())
            }
            Some(leader) => {
                let peer = self
                    .peers
                    .get(&leader)
                    .ok_or("leader is not a known voter")?;
                match peer
                    .call(
                        &Request::Heartbeat {
                            node_id: self.node_id,
                        },
                        RPC_TIMEOUT,
                    )
                    .await
                {
                    Ok(Response::Heartbeat(r)) => r,
                    Ok(_) => Err("unexpected controller response".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
            None => Err("no leader elected".into()),
        }
    }

    fn record_heartbeat(&self, node_id: i32) {
        let now = self.env.clock.monotonic();
        self.heartbeats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node_id, now);
    }

    /// Serves one peer connection until it closes or the node stops (peers then
    /// reconnect to whatever serves the address next, not to a stopped voter).
    pub async fn serve(
        self: Arc<Self>,
        mut stream: Box<dyn Stream>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let received = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                r = recv_frame::<Request>(&mut stream) => r,
            };
            let request = match received {
                Ok(r) => r,
                Err(e) => {
                    if e.kind() != io::ErrorKind::UnexpectedEof {
                        warn!(error = %e, "controller connection closed");
                    }
                    return;
                }
            };
            let response = match request {
                Request::AppendEntries(r) => {
                    Response::AppendEntries(self.raft.append_entries(r).await)
                }
                Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
                Request::InstallSnapshot(r) => {
                    Response::InstallSnapshot(self.raft.install_snapshot(r).await)
                }
                Request::Write(c) => Response::Write(match self.leader() {
                    Some(l) if l == self.node_id => self.write_local(c).await,
                    _ => Err("not the controller leader".into()),
                }),
                Request::Heartbeat { node_id } => Response::Heartbeat(match self.leader() {
                    Some(l) if l == self.node_id => {
                        self.record_heartbeat(node_id);
                        Ok(())
                    }
                    _ => Err("not the controller leader".into()),
                }),
            };
            if send_frame(&mut stream, &response).await.is_err() {
                return;
            }
        }
    }

    /// Names the cluster (if nobody has) and registers this broker, retrying until the
    /// quorum takes both; returns once this node has applied them.
    pub async fn register(&self, registration: &BrokerRegistration, cluster_id: &str) {
        loop {
            if self.image().cluster_id.is_empty() {
                let name = Command::SetClusterId {
                    cluster_id: cluster_id.to_string(),
                };
                if let Err(e) = self.write(name).await {
                    warn!(error = %e, "naming the cluster failed; retrying");
                    continue;
                }
            }
            match self
                .write(Command::RegisterBroker(registration.clone()))
                .await
            {
                Ok(_) => {
                    info!(node = registration.node_id, "broker registered");
                    return;
                }
                Err(e) => warn!(error = %e, "broker registration failed; retrying"),
            }
        }
    }

    /// The broker side of liveness: name the cluster if nobody has (with this node's
    /// proposed id), register (again) whenever the image does not show this broker as
    /// registered and unfenced at `registration`, and heartbeat.
    pub async fn run_broker(
        self: Arc<Self>,
        registration: BrokerRegistration,
        cluster_id: String,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if self.image().cluster_id.is_empty() {
                let name = Command::SetClusterId {
                    cluster_id: cluster_id.clone(),
                };
                if let Err(e) = self.write(name).await {
                    warn!(error = %e, "naming the cluster failed; retrying");
                }
            }
            let current = self.image().brokers.get(&registration.node_id).cloned();
            let registered = current
                .as_ref()
                .is_some_and(|b| !b.fenced && b.registration == registration);
            if !registered {
                match self
                    .write(Command::RegisterBroker(registration.clone()))
                    .await
                {
                    Ok(_) => info!(node = registration.node_id, "broker registered"),
                    Err(e) => warn!(error = %e, "broker registration failed; retrying"),
                }
            }
            if let Err(e) = self.heartbeat().await {
                tracing::debug!(error = %e, "heartbeat not delivered");
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                () = self.env.clock.sleep(interval) => {}
            }
        }
    }

    /// The quorum leader's duties: fence brokers silent for longer than
    /// `broker.session.timeout.ms` (a new leader first gives every broker a full
    /// session), and, every `leader.imbalance.check.interval.seconds`, move leadership
    /// back to preferred replicas that are in sync again.
    pub async fn run_fencing(
        self: Arc<Self>,
        rebalance_every: Option<Duration>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut leading_since: Option<Duration> = None;
        let mut last_rebalance = self.env.clock.monotonic();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                () = self.env.clock.sleep(FENCE_CHECK) => {}
            }
            let now = self.env.clock.monotonic();
            if self.leader() != Some(self.node_id) {
                leading_since = None;
                continue;
            }
            if rebalance_every.is_some_and(|e| now.saturating_sub(last_rebalance) >= e) {
                last_rebalance = now;
                for election in preferred_elections(&self.image()) {
                    if let Err(e) = self.write(election).await {
                        warn!(error = %e, "preferred leader election not written");
                    }
                }
            }
            let since = *leading_since.get_or_insert(now);
            if now.saturating_sub(since) < self.session_timeout {
                continue;
            }
            let silent: Vec<i32> = {
                let beats = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
                self.image()
                    .brokers
                    .iter()
                    .filter(|(_, b)| !b.fenced)
                    .filter(|(id, _)| {
                        let last = beats.get(id).copied().unwrap_or(since);
                        now.saturating_sub(last.max(since)) > self.session_timeout
                    })
                    .map(|(id, _)| *id)
                    .collect()
            };
            for node_id in silent {
                warn!(node = node_id, "broker missed its heartbeats: fencing it");
                if let Err(e) = self.write(Command::FenceBroker { node_id }).await {
                    warn!(node = node_id, error = %e, "fencing failed");
                }
            }
        }
    }

    /// Stops the voter.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}
