//! ApiVersions: what this broker serves. Only implemented and tested versions are
//! advertised; clients change behaviour on what is listed.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};

use crate::codes;

/// (API, min version, max version) served.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::OffsetForLeaderEpoch, 0, 4),
    (ApiKey::WriteTxnMarkers, 0, 1),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::ReadShareGroupState, 0, 0),
    (ApiKey::WriteShareGroupState, 0, 0),
    (ApiKey::DescribeShareGroupOffsets, 0, 0),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

/// The served version range of an API, if it is served at all.
pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub fn handle() -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(codes::NONE)
            .with_api_keys(api_keys()),
    )
}

/// The answer to an ApiVersions request of a version newer than we know: error 35 in
/// the v0 body layout (error code, api keys array), so the client retries at a version
/// from the list. Returned as a whole frame body after the v0 response header.
pub fn unsupported_version_response(correlation_id: i32) -> Bytes {
    let keys = api_keys();
    let mut b = BytesMut::with_capacity(10 + keys.len() * 6);
    b.put_i32(correlation_id);
    b.put_i16(codes::UNSUPPORTED_VERSION);
    b.put_i32(keys.len() as i32);
    for k in &keys {
        b.put_i16(k.api_key);
        b.put_i16(k.min_version);
        b.put_i16(k.max_version);
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/compatibility.md's table of served APIs is the broker's own answer: every
    /// row's key, name and version range, no API missing and none extra.
    #[test]
    fn the_compatibility_table_is_what_apiversions_answers() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/compatibility.md"
        ))
        .unwrap();
        let mut documented: Vec<(i16, String, i16, i16)> = doc
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let key = cells.get(1)?.parse().ok()?;
                let (min, max) = match cells.get(3)?.split_once('–') {
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    None => {
                        let v = cells[3].parse().ok()?;
                        (v, v)
                    }
                };
                Some((key, cells[2].to_string(), min, max))
            })
            .collect();
        documented.sort();
        let mut served: Vec<(i16, String, i16, i16)> = SUPPORTED
            .iter()
            .map(|&(key, min, max)| (key as i16, format!("{key:?}"), min, max))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }
}
