//! InitProducerId: a fresh producer id (epoch 0) for an idempotent producer. Ids are
//! never reused, across restarts too (see `Broker::new_producer_id`). Transactional
//! ids need the transaction coordinator, which is not served yet.

use std::sync::Arc;

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use crate::broker::Broker;
use crate::codes;

pub fn handle(broker: &Arc<Broker>, req: InitProducerIdRequest) -> ResponseKind {
    let failed = |code| {
        ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
    };
    if req.transactional_id.is_some() {
        return failed(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    // An idempotent producer always gets a new id (also when it names its old one
    // to bump the epoch, KIP-360): nothing is fenced without a transactional id.
    match broker.new_producer_id() {
        Ok(id) => ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            failed(codes::KAFKA_STORAGE_ERROR)
        }
    }
}
