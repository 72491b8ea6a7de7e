//! Request dispatch: one module per API. A handler does its synchronous work (such
//! as appending) at once, in request order, and may return a future for the part that
//! waits (durability, long polls), so a connection can pipeline requests.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use sluice_core::env::BoxFuture;

use crate::broker::Broker;

mod admin;
mod alter_configs;
mod api_versions;
mod delete_records;
mod describe;
mod elect;
mod fetch;
mod find_coordinator;
mod groups;
mod init_producer_id;
mod list_offsets;
pub mod log_dirs;
mod metadata;
mod offset_for_leader_epoch;
mod offsets;
mod produce;
mod quorum;
mod reassign;
mod share;
mod txn;
mod write_txn_markers;

pub use api_versions::{supported_versions, unsupported_version_response};

/// What a request yields.
#[allow(clippy::large_enum_variant)] // built once per request, moved once
pub enum Reply {
    /// A response ready now.
    Now(ResponseKind),
    /// A response once the future completes.
    Later(BoxFuture<'static, ResponseKind>),
    /// No response at all (acks=0 produce).
    Silent,
}

/// Who sent a request, as group members are described.
pub struct Client {
    /// The request header's client id.
    pub id: String,
    /// The peer's address as Kafka shows it ("/127.0.0.1").
    pub host: String,
    /// The listener the request came in on: Metadata, FindCoordinator and
    /// DescribeCluster answer with the brokers' endpoints of that listener.
    pub listener: Arc<str>,
}

/// Handles one decoded request.
pub fn handle(
    broker: &Arc<Broker>,
    client: &Client,
    api_key: ApiKey,
    version: i16,
    request: RequestKind,
) -> Reply {
    match request {
        RequestKind::ApiVersions(_) => Reply::Now(api_versions::handle()),
        RequestKind::Metadata(r) => metadata::handle(broker, client, r, version),
        RequestKind::DescribeTopicPartitions(r) => {
            Reply::Now(metadata::describe_topic_partitions(broker, r))
        }
        RequestKind::Produce(r) => produce::handle(broker, r),
        RequestKind::Fetch(r) => fetch::handle(broker, r),
        RequestKind::ListOffsets(r) => Reply::Now(list_offsets::handle(broker, r, version)),
        RequestKind::CreateTopics(r) => {
            Reply::Later(Box::pin(admin::create_topics(broker.clone(), r)))
        }
        RequestKind::DeleteTopics(r) => {
            Reply::Later(Box::pin(admin::delete_topics(broker.clone(), r, version)))
        }
        RequestKind::CreatePartitions(r) => {
            Reply::Later(Box::pin(admin::create_partitions(broker.clone(), r)))
        }
        RequestKind::DescribeConfigs(r) => Reply::Now(describe::describe_configs(broker, r)),
        RequestKind::DescribeCluster(_) => Reply::Now(describe::describe_cluster(broker, client)),
        RequestKind::DescribeLogDirs(r) => Reply::Now(log_dirs::handle(broker, r)),
        RequestKind::FindCoordinator(r) => find_coordinator::handle(broker, client, r, version),
        RequestKind::InitProducerId(r) => init_producer_id::handle(broker, r),
        RequestKind::AddPartitionsToTxn(r) => txn::add_partitions(broker, r),
        RequestKind::AddOffsetsToTxn(r) => txn::add_offsets(broker, r),
        RequestKind::EndTxn(r) => txn::end(broker, r),
        RequestKind::TxnOffsetCommit(r) => txn::txn_offset_commit(broker, r),
        RequestKind::JoinGroup(r) => groups::join(broker, client, r, version),
        RequestKind::SyncGroup(r) => groups::sync(broker, r, version),
        RequestKind::Heartbeat(r) => Reply::Now(groups::heartbeat(broker, r)),
        RequestKind::LeaveGroup(r) => groups::leave(broker, r, version),
        RequestKind::DescribeGroups(r) => Reply::Now(groups::describe(broker, r, version)),
        RequestKind::ListGroups(r) => Reply::Now(groups::list(broker, r)),
        RequestKind::DeleteGroups(r) => groups::delete(broker, r),
        RequestKind::OffsetCommit(r) => offsets::commit(broker, r, version),
        RequestKind::OffsetFetch(r) => Reply::Now(offsets::fetch(broker, r, version)),
        RequestKind::OffsetDelete(r) => offsets::delete(broker, r),
        RequestKind::WriteTxnMarkers(r) => {
            Reply::Later(Box::pin(write_txn_markers::handle(broker.clone(), r)))
        }
        RequestKind::AlterPartitionReassignments(r) => {
            Reply::Later(Box::pin(reassign::alter(broker.clone(), r)))
        }
        RequestKind::ListPartitionReassignments(r) => Reply::Now(reassign::list(broker, r)),
        RequestKind::IncrementalAlterConfigs(r) => {
            Reply::Later(Box::pin(alter_configs::handle(broker.clone(), r)))
        }
        RequestKind::ElectLeaders(r) => {
            Reply::Later(Box::pin(elect::handle(broker.clone(), r, version)))
        }
        RequestKind::DescribeQuorum(r) => Reply::Now(quorum::handle(broker, r, version)),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            groups::consumer_group_heartbeat(broker, client, r)
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            Reply::Now(groups::consumer_group_describe(broker, r))
        }
        RequestKind::ShareGroupHeartbeat(r) => share::heartbeat(broker, client, r),
        RequestKind::ShareGroupDescribe(r) => Reply::Now(share::describe(broker, r)),
        RequestKind::ShareFetch(r) => share::fetch(broker, r),
        RequestKind::ShareAcknowledge(r) => share::acknowledge(broker, r),
        RequestKind::ReadShareGroupState(r) => Reply::Now(share::read_state(broker, r)),
        RequestKind::WriteShareGroupState(r) => share::write_state(broker, r),
        RequestKind::DescribeShareGroupOffsets(r) => share::describe_offsets(broker, r),
        RequestKind::DescribeProducers(r) => Reply::Now(txn::describe_producers(broker, r)),
        RequestKind::ListTransactions(r) => Reply::Now(txn::list_transactions(broker, r)),
        RequestKind::DescribeTransactions(r) => Reply::Now(txn::describe_transactions(broker, r)),
        RequestKind::AlterConfigs(r) => {
            Reply::Later(Box::pin(alter_configs::replace(broker.clone(), r)))
        }
        RequestKind::DeleteRecords(r) => delete_records::handle(broker, r),
        RequestKind::OffsetForLeaderEpoch(r) => {
            Reply::Now(offset_for_leader_epoch::handle(broker, r))
        }
        other => {
            // supported_versions() gates dispatch, so this is a programmer error.
            tracing::error!(
                ?api_key,
                "no handler for {:?}",
                std::mem::discriminant(&other)
            );
            Reply::Silent
        }
    }
}
