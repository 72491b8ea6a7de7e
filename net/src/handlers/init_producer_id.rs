//! InitProducerId: a fresh producer id (epoch 0) for an idempotent producer (ids are
//! never reused, across restarts too: see `Broker::new_producer_id`); for a
//! transactional id, the transaction coordinator's id and a new epoch that fences
//! the previous producer (aborting what it left open).

use std::sync::Arc;

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use super::Reply;
use crate::broker::Broker;
use crate::codes;

fn answer(result: Result<(i64, i16), i16>) -> ResponseKind {
    ResponseKind::InitProducerId(match result {
        Ok((id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(code) => InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    })
}

pub fn handle(broker: &Arc<Broker>, req: InitProducerIdRequest) -> Reply {
    match req.transactional_id.as_ref().map(|t| t.to_string()) {
        Some(id) if id.is_empty() => Reply::Now(answer(Err(codes::INVALID_REQUEST))),
        Some(id) => {
            let broker = broker.clone();
            Reply::Later(Box::pin(async move {
                let r = broker
                    .txns
                    .init_producer_id(&broker, &id, req.transaction_timeout_ms)
                    .await;
                answer(match r {
                    Ok(Ok(ids)) => Ok(ids),
                    Ok(Err(e)) => Err(codes::txn_error(e)),
                    Err(_) => Err(codes::COORDINATOR_NOT_AVAILABLE),
                })
            }))
        }
        // An idempotent producer always gets a new id (also when it names its old
        // one to bump the epoch, KIP-360): nothing is fenced without a
        // transactional id.
        None => {
            let broker = broker.clone();
            Reply::Later(Box::pin(async move {
                answer(
                    broker
                        .new_producer_id()
                        .await
                        .map(|id| (id, 0))
                        .map_err(|e| {
                            tracing::warn!(error = %e, "cannot allocate a producer id");
                            codes::COORDINATOR_NOT_AVAILABLE
                        }),
                )
            }))
        }
    }
}
