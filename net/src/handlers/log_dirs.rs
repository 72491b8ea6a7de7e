//! DescribeLogDirs: this broker's one log directory (`log.dirs`) and the size on disk
//! of each replica it holds there, with its lag behind the high watermark (Kafka's
//! `kafka-log-dirs` and AdminClient.describeLogDirs). Total and usable bytes of the
//! volume are not measured: -1, Kafka's "unknown". A replica of a compacted topic
//! also carries its cleaner's dirty ratio in a tagged field of Sluice's own
//! ([`DIRTY_RATIO_TAG`], v2 and later), which other clients skip as unknown.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// The tagged field of a DescribeLogDirs partition that holds a compacted replica's
/// dirty ratio (an f64, big-endian): the share of its cleanable bytes not yet cleaned.
pub const DIRTY_RATIO_TAG: i32 = 10_000;

pub fn handle(broker: &Arc<Broker>, req: DescribeLogDirsRequest) -> ResponseKind {
    // None: every replica; otherwise the partitions asked for that this broker holds.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect()
    });
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for r in broker.replicas() {
        let asked = wanted
            .as_ref()
            .is_none_or(|w| w.get(&r.topic).is_some_and(|ps| ps.contains(&r.partition)));
        if !asked {
            continue;
        }
        let lag = (r.log.high_watermark() - r.log.log_end_offset()).max(0);
        let mut partition = DescribeLogDirsPartition::default()
            .with_partition_index(r.partition)
            .with_partition_size(i64::try_from(r.log.size_bytes()).unwrap_or(i64::MAX))
            .with_offset_lag(lag)
            .with_is_future_key(false);
        if let Some(ratio) = broker.dirty_ratio(&r) {
            partition.unknown_tagged_fields.insert(
                DIRTY_RATIO_TAG,
                bytes::Bytes::copy_from_slice(&ratio.to_be_bytes()),
            );
        }
        topics.entry(r.topic.clone()).or_default().push(partition);
    }
    let topics = topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = std::path::absolute(&broker.config.data_dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_results(
        vec![DescribeLogDirsResult::default()
            .with_log_dir(StrBytes::from_string(dir))
            .with_topics(topics)
            .with_total_bytes(-1)
            .with_usable_bytes(-1)],
    ))
}
