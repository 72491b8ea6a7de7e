//! The cluster's metadata: brokers, topics, partition replicas, leaders, ISRs and
//! epochs. It is the state machine behind the controller quorum: every node applies the
//! same committed [`Command`]s in the same order and so holds the same image.
//!
//! Commands carry their own preconditions (an ISR change names the epochs it was
//! decided on), so the log is the only place where decisions are serialized: a stale
//! command is refused when applied, identically on every node.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::sim::{planted, Bug};
use crate::topics::{self, Topic, TopicError};

/// No leader: every in-sync replica is fenced.
pub const NO_LEADER: i32 = -1;

/// How a broker is reached, as it registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// The advertised endpoint of the inter-broker (first) listener.
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Every client listener's advertised endpoint by listener name (Kafka answers
    /// Metadata with the endpoints of the listener a request came in on). Empty in
    /// registrations from before several listeners were served: then `host:port`
    /// stands for every listener.
    #[serde(default)]
    pub endpoints: BTreeMap<String, (String, u16)>,
}

impl BrokerRegistration {
    /// Where clients of listener `name` reach this broker, if it has that listener.
    pub fn endpoint(&self, name: &str) -> Option<(&str, u16)> {
        if self.endpoints.is_empty() {
            return Some((&self.host, self.port));
        }
        self.endpoints.get(name).map(|(h, p)| (h.as_str(), *p))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    pub registration: BrokerRegistration,
    /// Missed its heartbeats: leads nothing and is out of every ISR it could leave.
    pub fenced: bool,
}

/// One partition's replication state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The assigned replicas, the preferred leader first.
    pub replicas: Vec<i32>,
    pub leader: i32,
    /// Bumped at every leader change; fences the old leader's writes.
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// Bumped at every change of this record; an ISR change must name the current one.
    pub partition_epoch: i32,
    /// A reassignment in progress (KIP-455): replicas being added, which catch up as
    /// followers, and replicas to drop once every target replica is in the ISR. The
    /// target is `replicas` without `removing`.
    #[serde(default)]
    pub adding: Vec<i32>,
    #[serde(default)]
    pub removing: Vec<i32>,
}

impl PartitionState {
    /// The replicas a reassignment in progress moves to (the replicas when none is).
    pub fn target(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }

    /// The replicas before the reassignment in progress.
    fn original(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }

    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The ISR members that are among `replicas`.
    fn isr_within(&self, replicas: &[i32]) -> Vec<i32> {
        self.isr
            .iter()
            .copied()
            .filter(|r| replicas.contains(r))
            .collect()
    }

    /// Makes `replicas` the assigned replicas, the ISR kept within them (unless none of
    /// it is). A leader not among them hands over to the first live in-sync one. The
    /// leader epoch is bumped whenever a replica leaves the list, the leader or not
    /// (as Kafka's controller does, PartitionChangeBuilder's
    /// triggerLeaderEpochBumpForReplicaReassignmentIfNeeded): a fetch the removed
    /// replica still has in flight is then fenced, and cannot be taken for the progress
    /// of a fresh replica on the same broker if a later move adds it back.
    fn set_replicas(&mut self, replicas: Vec<i32>, live: &BTreeSet<i32>) {
        let isr = self.isr_within(&replicas);
        if !isr.is_empty() {
            self.isr = isr;
        }
        let removes = self.replicas.iter().any(|r| !replicas.contains(r));
        let hands_over = !replicas.contains(&self.leader);
        if hands_over {
            self.leader = replicas
                .iter()
                .copied()
                .find(|r| self.isr.contains(r) && live.contains(r))
                .unwrap_or(NO_LEADER);
        }
        if hands_over || (removes && !planted(Bug::RemovedReplicaKeepsEpoch)) {
            self.leader_epoch += 1;
        }
        self.replicas = replicas;
        self.partition_epoch += 1;
    }

    /// Makes `replicas` the assignment and ends any reassignment.
    fn assign(&mut self, replicas: Vec<i32>, live: &BTreeSet<i32>) {
        self.adding.clear();
        self.removing.clear();
        self.set_replicas(replicas, live);
    }

    /// Ends the reassignment in progress once every target replica is in sync.
    fn complete_reassignment(&mut self, live: &BTreeSet<i32>) {
        let target = self.target();
        if self.reassigning() && target.iter().all(|r| self.isr.contains(r)) {
            self.assign(target, live);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub id: [u8; 16],
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionState>,
}

impl TopicImage {
    /// The registry's view of the topic.
    pub fn topic(&self) -> Topic {
        Topic {
            id: self.id,
            partitions: self.partitions.len() as i32,
            configs: self.configs.clone(),
        }
    }
}

/// A change to the metadata, as written to the controller's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker (re)registers: it is unfenced and leads the partitions left without a
    /// leader whose ISR it is in.
    RegisterBroker(BrokerRegistration),
    /// A broker missed its heartbeats: its leaderships move to other in-sync replicas
    /// and it leaves every ISR it is not the last member of.
    FenceBroker {
        node_id: i32,
    },
    CreateTopic {
        name: String,
        id: [u8; 16],
        configs: BTreeMap<String, String>,
        /// Replicas of each partition, from [`place_replicas`].
        replicas: Vec<Vec<i32>>,
    },
    CreatePartitions {
        name: String,
        replicas: Vec<Vec<i32>>,
    },
    DeleteTopic {
        name: String,
    },
    /// A partition's leader changes its ISR (Kafka's AlterPartition).
    AlterIsr {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// Moves leadership to `leader`, which must be an unfenced ISR member (preferred
    /// leader election).
    ElectLeader {
        topic: String,
        partition: i32,
        leader: i32,
    },
    /// Reserves `count` producer ids for a broker; the answer is the first.
    AllocateProducerIds {
        count: i64,
    },
    /// Names the cluster; only the first naming counts.
    SetClusterId {
        cluster_id: String,
    },
    /// Starts moving a partition to `target` replicas, or with `None` cancels the move
    /// in progress (AlterPartitionReassignments).
    Reassign {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Sets and deletes dynamic configs of a topic or of brokers (IncrementalAlterConfigs).
    AlterConfigs {
        resource: ConfigResource,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
}

/// What dynamic configs belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// One broker's, or with `None` every broker's default.
    Broker(Option<i32>),
    /// A consumer group's (KIP-848 group configs).
    Group(String),
}

/// The broker configs that can change while the cluster runs.
pub const DYNAMIC_BROKER_CONFIGS: [&str; 2] = [
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
];

/// What an applied command answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Done,
    /// The new state of the partition an ISR change or election touched.
    Partition(PartitionState),
    ProducerIds {
        first: i64,
    },
}

#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("partition {0}-{1} does not exist")]
    UnknownPartition(String, i32),
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    #[error("broker {0} is not the leader of {1}-{2} at that epoch")]
    NotLeader(i32, String, i32),
    #[error("partition epoch {got} is stale, the current one is {current}")]
    StalePartitionEpoch { got: i32, current: i32 },
    #[error("invalid ISR {0:?}: {1}")]
    InvalidIsr(Vec<i32>, String),
    #[error("invalid replica assignment {0:?}: {1}")]
    InvalidAssignment(Vec<i32>, String),
    #[error("no reassignment of {0}-{1} is in progress")]
    NoReassignment(String, i32),
    #[error("config {0} cannot be changed on a running broker")]
    NotDynamic(String),
}

/// The metadata every node holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub brokers: BTreeMap<i32, BrokerState>,
    pub topics: BTreeMap<String, TopicImage>,
    /// The first producer id no broker has reserved yet.
    pub next_producer_id: i64,
    /// The cluster's id, as the first broker to register proposed it.
    pub cluster_id: String,
    /// Dynamic broker configs by broker id; key -1 holds the cluster-wide defaults.
    #[serde(default)]
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// Group configs by group id (`consumer.session.timeout.ms`, ...).
    #[serde(default)]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<Topic> {
        self.topics.get(name).map(TopicImage::topic)
    }

    pub fn topic_by_id(&self, id: [u8; 16]) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.as_str())
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)
    }

    /// Unfenced brokers with their racks, by node id.
    pub fn live_brokers(&self) -> Vec<(i32, Option<String>)> {
        self.brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(id, b)| (*id, b.registration.rack.clone()))
            .collect()
    }

    /// The live brokers' endpoints of listener `name` with their racks (a broker without
    /// that listener is left out, as Kafka does).
    pub fn live_endpoints(&self, name: &str) -> Vec<(i32, &str, u16, Option<&str>)> {
        self.brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .filter_map(|(id, b)| {
                let (host, port) = b.registration.endpoint(name)?;
                Some((*id, host, port, b.registration.rack.as_deref()))
            })
            .collect()
    }

    pub fn is_live(&self, node: i32) -> bool {
        self.brokers.get(&node).is_some_and(|b| !b.fenced)
    }

    fn live_set(&self) -> BTreeSet<i32> {
        self.live_brokers().into_iter().map(|b| b.0).collect()
    }

    /// A dynamic broker config as it applies to `node`: its own value, else the
    /// cluster-wide default.
    pub fn broker_config(&self, node: i32, name: &str) -> Option<&str> {
        [node, -1]
            .iter()
            .find_map(|k| self.broker_configs.get(k)?.get(name))
            .map(String::as_str)
    }

    /// Applies a committed command. A refused command changes nothing.
    pub fn apply(&mut self, command: &Command) -> Result<Applied, MetadataError> {
        match command {
            Command::RegisterBroker(reg) => {
                self.brokers.insert(
                    reg.node_id,
                    BrokerState {
                        registration: reg.clone(),
                        fenced: false,
                    },
                );
                let node = reg.node_id;
                self.each_partition(|p| {
                    if p.leader == NO_LEADER && p.isr.contains(&node) {
                        p.leader = node;
                        p.leader_epoch += 1;
                        p.partition_epoch += 1;
                    }
                });
                Ok(Applied::Done)
            }
            Command::FenceBroker { node_id } => {
                let node = *node_id;
                let live: BTreeSet<i32> = self
                    .brokers
                    .iter()
                    .filter(|(id, b)| !b.fenced && **id != node)
                    .map(|(id, _)| *id)
                    .collect();
                let broker = self
                    .brokers
                    .get_mut(&node)
                    .ok_or(MetadataError::UnknownBroker(node))?;
                broker.fenced = true;
                self.each_partition(|p| {
                    let mut changed = false;
                    if p.isr.contains(&node) && p.isr.len() > 1 {
                        p.isr.retain(|r| *r != node);
                        changed = true;
                    }
                    if p.leader == node {
                        // The next leader comes from the ISR only: unclean election is off.
                        let candidates = if planted(Bug::ElectOutsideIsr) {
                            &p.replicas
                        } else {
                            &p.isr
                        };
                        p.leader = candidates
                            .iter()
                            .copied()
                            .find(|r| live.contains(r))
                            .unwrap_or(NO_LEADER);
                        if !planted(Bug::EpochNotBumped) {
                            p.leader_epoch += 1;
                        }
                        changed = true;
                    }
                    if changed {
                        p.partition_epoch += 1;
                    }
                });
                Ok(Applied::Done)
            }
            Command::CreateTopic {
                name,
                id,
                configs,
                replicas,
            } => {
                topics::validate_name(name)?;
                topics::check_stored_configs(configs)?;
                if self.topics.contains_key(name) {
                    return Err(TopicError::Exists(name.clone()).into());
                }
                if replicas.is_empty() {
                    return Err(TopicError::InvalidPartitions(0).into());
                }
                let partitions = replicas
                    .iter()
                    .map(|r| self.new_partition(r))
                    .collect::<Result<_, _>>()?;
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        id: *id,
                        configs: configs.clone(),
                        partitions,
                    },
                );
                Ok(Applied::Done)
            }
            Command::CreatePartitions { name, replicas } => {
                let added: Vec<PartitionState> = replicas
                    .iter()
                    .map(|r| self.new_partition(r))
                    .collect::<Result<_, _>>()?;
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| TopicError::Unknown(name.clone()))?;
                if added.is_empty() {
                    return Err(TopicError::PartitionsCannotShrink {
                        topic: name.clone(),
                        current: topic.partitions.len() as i32,
                        requested: topic.partitions.len() as i32,
                    }
                    .into());
                }
                topic.partitions.extend(added);
                Ok(Applied::Done)
            }
            Command::DeleteTopic { name } => {
                self.topics
                    .remove(name)
                    .ok_or_else(|| TopicError::Unknown(name.clone()))?;
                Ok(Applied::Done)
            }
            Command::AlterIsr {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let live = self.live_set();
                let p = self.partition_mut(topic, *partition)?;
                if p.leader != *leader || p.leader_epoch != *leader_epoch {
                    return Err(MetadataError::NotLeader(*leader, topic.clone(), *partition));
                }
                if p.partition_epoch != *partition_epoch {
                    return Err(MetadataError::StalePartitionEpoch {
                        got: *partition_epoch,
                        current: p.partition_epoch,
                    });
                }
                if !isr.contains(leader) {
                    return Err(MetadataError::InvalidIsr(
                        isr.clone(),
                        "leader not in it".into(),
                    ));
                }
                let mut seen = BTreeSet::new();
                if !isr
                    .iter()
                    .all(|r| p.replicas.contains(r) && seen.insert(*r))
                {
                    return Err(MetadataError::InvalidIsr(
                        isr.clone(),
                        "not distinct replicas".into(),
                    ));
                }
                // A fenced broker may not join: it would hold back the high watermark.
                if isr.iter().any(|r| !p.isr.contains(r) && !live.contains(r)) {
                    return Err(MetadataError::InvalidIsr(
                        isr.clone(),
                        "fenced broker added".into(),
                    ));
                }
                p.isr = isr.clone();
                p.partition_epoch += 1;
                p.complete_reassignment(&live);
                Ok(Applied::Partition(p.clone()))
            }
            Command::ElectLeader {
                topic,
                partition,
                leader,
            } => {
                let live = self.is_live(*leader);
                let p = self.partition_mut(topic, *partition)?;
                if !live || !p.isr.contains(leader) {
                    return Err(MetadataError::InvalidIsr(
                        p.isr.clone(),
                        "the new leader must be a live ISR member".into(),
                    ));
                }
                if p.leader != *leader {
                    p.leader = *leader;
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
                Ok(Applied::Partition(p.clone()))
            }
            Command::SetClusterId { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
                Ok(Applied::Done)
            }
            Command::AllocateProducerIds { count } => {
                let first = self.next_producer_id;
                self.next_producer_id += (*count).max(1);
                Ok(Applied::ProducerIds { first })
            }
            Command::Reassign {
                topic,
                partition,
                target,
            } => {
                let live = self.live_set();
                if let Some(target) = target {
                    self.check_assignment(target)?;
                }
                let p = self.partition_mut(topic, *partition)?;
                match target {
                    None if !p.reassigning() => {
                        return Err(MetadataError::NoReassignment(topic.clone(), *partition))
                    }
                    None => {
                        let original = p.original();
                        p.assign(original, &live);
                    }
                    Some(target) => {
                        // A new target replaces one in progress: it starts from the
                        // replicas before that one.
                        let original = p.original();
                        let mut replicas = target.clone();
                        replicas.extend(original.iter().filter(|r| !target.contains(r)));
                        // The ISR keeps only replicas still assigned (a leader that
                        // was being added and is no longer hands over).
                        if p.isr_within(&replicas).is_empty() {
                            return Err(MetadataError::InvalidAssignment(
                                target.clone(),
                                "it would leave no in-sync replica".into(),
                            ));
                        }
                        p.adding = target
                            .iter()
                            .copied()
                            .filter(|r| !original.contains(r))
                            .collect();
                        p.removing = original
                            .iter()
                            .copied()
                            .filter(|r| !target.contains(r))
                            .collect();
                        p.set_replicas(replicas, &live);
                        p.complete_reassignment(&live);
                    }
                }
                Ok(Applied::Partition(p.clone()))
            }
            Command::AlterConfigs {
                resource,
                set,
                delete,
            } => {
                let merged = |base: &BTreeMap<String, String>| {
                    let mut configs = base.clone();
                    configs.extend(set.clone());
                    configs.retain(|k, _| !delete.contains(k));
                    configs
                };
                match resource {
                    ConfigResource::Topic(name) => {
                        let topic = self
                            .topics
                            .get_mut(name)
                            .ok_or_else(|| TopicError::Unknown(name.clone()))?;
                        let configs = merged(&topic.configs);
                        topics::check_stored_configs(&configs)?;
                        topic.configs = configs;
                    }
                    ConfigResource::Broker(node) => {
                        if let Some(name) = set
                            .keys()
                            .chain(delete)
                            .find(|k| !DYNAMIC_BROKER_CONFIGS.contains(&k.as_str()))
                        {
                            return Err(MetadataError::NotDynamic(name.clone()));
                        }
                        let key = node.unwrap_or(-1);
                        let configs = merged(&self.broker_configs.remove(&key).unwrap_or_default());
                        if !configs.is_empty() {
                            self.broker_configs.insert(key, configs);
                        }
                    }
                    ConfigResource::Group(group) => {
                        let configs = merged(&self.group_configs.remove(group).unwrap_or_default());
                        // Checked at the door; the log replays what was accepted.
                        if !configs.is_empty() {
                            self.group_configs.insert(group.clone(), configs);
                        }
                    }
                }
                Ok(Applied::Done)
            }
        }
    }

    /// A replica list to move to: distinct, registered brokers.
    fn check_assignment(&self, replicas: &[i32]) -> Result<(), MetadataError> {
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        if replicas.is_empty() || distinct.len() != replicas.len() {
            return Err(MetadataError::InvalidAssignment(
                replicas.to_vec(),
                "replicas must be distinct and at least one".into(),
            ));
        }
        if let Some(r) = replicas.iter().find(|r| !self.brokers.contains_key(r)) {
            return Err(MetadataError::InvalidAssignment(
                replicas.to_vec(),
                format!("broker {r} is not registered"),
            ));
        }
        Ok(())
    }

    fn new_partition(&self, replicas: &[i32]) -> Result<PartitionState, MetadataError> {
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        if replicas.is_empty() || distinct.len() != replicas.len() {
            return Err(TopicError::InvalidReplicationFactor(replicas.len() as i16).into());
        }
        if let Some(r) = replicas.iter().find(|r| !self.brokers.contains_key(r)) {
            return Err(MetadataError::UnknownBroker(*r));
        }
        let leader = replicas
            .iter()
            .copied()
            .find(|r| self.is_live(*r))
            .unwrap_or(NO_LEADER);
        Ok(PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 0,
            isr: replicas.to_vec(),
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        })
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionState, MetadataError> {
        let unknown = || MetadataError::UnknownPartition(topic.to_string(), partition);
        self.topics
            .get_mut(topic)
            .ok_or_else(unknown)?
            .partitions
            .get_mut(usize::try_from(partition).map_err(|_| unknown())?)
            .ok_or_else(unknown)
    }

    fn each_partition(&mut self, mut f: impl FnMut(&mut PartitionState)) {
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                f(p);
            }
        }
    }
}

/// Preferred leader election: for every partition whose preferred replica (the first)
/// is live and in the ISR but does not lead, the command that moves leadership back to
/// it (Kafka's `auto.leader.rebalance.enable`).
pub fn preferred_elections(image: &MetadataImage) -> Vec<Command> {
    let mut out = Vec::new();
    for (name, t) in &image.topics {
        for (p, ps) in t.partitions.iter().enumerate() {
            let Some(&preferred) = ps.replicas.first() else {
                continue;
            };
            if ps.leader != preferred
                && ps.isr.contains(&preferred)
                && image.is_live(preferred)
                && !ps.reassigning()
            {
                out.push(Command::ElectLeader {
                    topic: name.clone(),
                    partition: p as i32,
                    leader: preferred,
                });
            }
        }
    }
    out
}

/// One partition to move, as a reassignment plan lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
}

/// Replicas per live broker over every partition's target assignment.
fn replica_counts(image: &MetadataImage) -> BTreeMap<i32, usize> {
    let mut counts: BTreeMap<i32, usize> = image
        .live_brokers()
        .into_iter()
        .map(|(id, _)| (id, 0))
        .collect();
    for t in image.topics.values() {
        for p in &t.partitions {
            for r in p.target() {
                if let Some(c) = counts.get_mut(&r) {
                    *c += 1;
                }
            }
        }
    }
    counts
}

/// Moves every replica off `broker` (being removed), each to the live broker with the
/// fewest replicas that does not hold the partition yet, so replication factors stay.
pub fn plan_removal(image: &MetadataImage, broker: i32) -> Result<Vec<Move>, MetadataError> {
    let mut counts = replica_counts(image);
    counts.remove(&broker);
    let mut moves = Vec::new();
    for (name, t) in &image.topics {
        for (p, ps) in t.partitions.iter().enumerate() {
            let mut replicas = ps.target();
            let Some(at) = replicas.iter().position(|r| *r == broker) else {
                continue;
            };
            let Some((&to, _)) = counts
                .iter()
                .filter(|(id, _)| !replicas.contains(id))
                .min_by_key(|(id, c)| (**c, **id))
            else {
                return Err(MetadataError::InvalidAssignment(
                    replicas,
                    format!("no live broker can take {name}-{p}'s replica off broker {broker}"),
                ));
            };
            replicas[at] = to;
            *counts.entry(to).or_default() += 1;
            moves.push(Move {
                topic: name.clone(),
                partition: p as i32,
                replicas,
            });
        }
    }
    Ok(moves)
}

/// Evens out replicas over the live brokers (after brokers were added): while one holds
/// two or more replicas than another, one of its replicas moves to the emptier broker.
pub fn plan_balance(image: &MetadataImage) -> Vec<Move> {
    let mut counts = replica_counts(image);
    let mut assigned: BTreeMap<(String, i32), Vec<i32>> = BTreeMap::new();
    for (name, t) in &image.topics {
        for (p, ps) in t.partitions.iter().enumerate() {
            assigned.insert((name.clone(), p as i32), ps.target());
        }
    }
    let mut moved: BTreeSet<(String, i32)> = BTreeSet::new();
    while let (Some((&full, &most)), Some((&empty, &least))) = (
        counts.iter().max_by_key(|(id, c)| (**c, -**id)),
        counts.iter().min_by_key(|(id, c)| (**c, **id)),
    ) {
        if most < least + 2 {
            break;
        }
        let Some((key, replicas)) = assigned
            .iter_mut()
            .find(|(_, r)| r.contains(&full) && !r.contains(&empty))
        else {
            break;
        };
        for r in replicas.iter_mut() {
            if *r == full {
                *r = empty;
            }
        }
        moved.insert(key.clone());
        *counts.entry(full).or_default() -= 1;
        *counts.entry(empty).or_default() += 1;
    }
    moved
        .into_iter()
        .map(|key| Move {
            replicas: assigned[&key].clone(),
            topic: key.0,
            partition: key.1,
        })
        .collect()
}

/// Assigns `replication_factor` replicas to each of `count` partitions numbered from
/// `first`, over `brokers` (node id, rack): leaders round-robin from a `start` offset,
/// followers on the next brokers. With racks, the broker list alternates racks first, so
/// a partition's replicas land on different racks.
pub fn place_replicas(
    brokers: &[(i32, Option<String>)],
    first: i32,
    count: i32,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<Vec<i32>>, TopicError> {
    let rf = if replication_factor == -1 {
        brokers.len().min(3)
    } else {
        usize::try_from(replication_factor).unwrap_or(0)
    };
    if rf == 0 || rf > brokers.len() {
        return Err(TopicError::InvalidReplicationFactor(replication_factor));
    }
    if count < 1 {
        return Err(TopicError::InvalidPartitions(count));
    }
    let ordered = rack_alternated(brokers);
    let n = ordered.len();
    Ok((first..first + count)
        .map(|p| {
            let lead = (start + p as usize) % n;
            (0..rf).map(|j| ordered[(lead + j) % n]).collect()
        })
        .collect())
}

/// Brokers ordered so consecutive ones are on different racks where possible.
fn rack_alternated(brokers: &[(i32, Option<String>)]) -> Vec<i32> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack
            .entry(rack.as_deref().unwrap_or(""))
            .or_default()
            .push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut out = Vec::with_capacity(brokers.len());
    for round in 0.. {
        let before = out.len();
        out.extend(by_rack.values().filter_map(|ids| ids.get(round)));
        if out.len() == before {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests;
