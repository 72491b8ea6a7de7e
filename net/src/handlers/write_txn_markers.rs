//! WriteTxnMarkers: a transaction coordinator on another broker has this broker, the
//! partitions' leader, write its commit or abort markers.

use std::sync::Arc;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ResponseKind, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::broker::Broker;
use crate::txns::write_local_markers;

pub async fn handle(broker: Arc<Broker>, req: WriteTxnMarkersRequest) -> ResponseKind {
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let partitions: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
            .collect();
        let results = write_local_markers(
            &broker,
            m.producer_id.0,
            m.producer_epoch,
            m.transaction_result,
            &partitions,
        )
        .await;
        let topics = m
            .topics
            .iter()
            .map(|t| {
                let name = t.name.to_string();
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        results
                            .iter()
                            .filter(|((topic, _), _)| *topic == name)
                            .map(|((_, p), code)| {
                                WritableTxnMarkerPartitionResult::default()
                                    .with_partition_index(*p)
                                    .with_error_code(*code)
                            })
                            .collect(),
                    )
            })
            .collect();
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    ResponseKind::WriteTxnMarkers(WriteTxnMarkersResponse::default().with_markers(markers))
}
