//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, KIP-734), earliest
//! local (-4, KIP-405: the earliest, as nothing is tiered), latest tiered (-5,
//! KIP-1005: none, as nothing is tiered), or the first offset whose timestamp is at
//! least the one given. v10's timeout (KIP-1075) bounds remote reads: Sluice answers
//! from its local log at once.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};
use sluice_storage::{LogError, PartitionLog};

use crate::broker::Broker;
use crate::codes;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(broker: &Arc<Broker>, req: ListOffsetsRequest, version: i16) -> ResponseKind {
    // leader_epoch exists from v4; the encoder refuses it set on older versions.
    let epoch = |e: i32| if version >= 4 { e } else { -1 };
    // read_committed clients (v2+) see the last stable offset as the end.
    let committed = version >= 2 && req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let found = broker
                        .leader_replica(&name, p.partition_index, p.current_leader_epoch)
                        .and_then(|replica| replica.check_hw_caught_up().map(|()| replica))
                        .and_then(|replica| {
                            lookup(&replica.log, p.timestamp, committed)
                                .map(|found| (found, replica.meta().leader_epoch))
                                .map_err(|e| codes::log_error(&e))
                        });
                    match found {
                        Ok(((timestamp, offset), leader_epoch)) => r
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            .with_leader_epoch(epoch(if offset >= 0 { leader_epoch } else { -1 })),
                        Err(code) => r.with_error_code(code).with_timestamp(-1).with_offset(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
}

/// (timestamp, offset) for a ListOffsets query; (-1, -1) when no record qualifies.
fn lookup(log: &PartitionLog, timestamp: i64, committed: bool) -> Result<(i64, i64), LogError> {
    match timestamp {
        LATEST if committed => Ok((-1, log.last_stable_offset())),
        LATEST => Ok((-1, log.high_watermark())),
        EARLIEST | EARLIEST_LOCAL => Ok((-1, log.log_start_offset())),
        LATEST_TIERED => Ok((-1, -1)),
        MAX_TIMESTAMP => {
            let Some(batch) = log.batch_with_max_timestamp()? else {
                return Ok((-1, -1));
            };
            Ok(records(batch)?
                .into_iter()
                .fold(
                    (-1, -1),
                    |best, (ts, off)| if ts > best.0 { (ts, off) } else { best },
                ))
        }
        ts => {
            let Some(batch) = log.batch_for_timestamp(ts)? else {
                return Ok((-1, -1));
            };
            Ok(records(batch)?
                .into_iter()
                .find(|(t, _)| *t >= ts)
                .unwrap_or((-1, -1)))
        }
    }
}

/// (timestamp, offset) of each record of a stored batch, decompressing if needed
/// (by a reader that sizes nothing by the batch's claimed record count).
fn records(batch: bytes::Bytes) -> Result<Vec<(i64, i64)>, LogError> {
    let (_, _, views) = sluice_storage::compaction::records(&batch)
        .map_err(|e| LogError::Storage(format!("decode stored batch: {e}")))?;
    Ok(views.iter().map(|r| (r.timestamp, r.offset)).collect())
}
