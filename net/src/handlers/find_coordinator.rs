//! FindCoordinator: the coordinator of a group or transactional id is the leader of
//! its internal-topic partition, which on a single node is always this node.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::codes;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub fn handle(broker: &Arc<Broker>, req: FindCoordinatorRequest, version: i16) -> ResponseKind {
    let c = &broker.config;
    let host = StrBytes::from_string(c.advertised_host.clone());
    let port = i32::from(c.advertised_port);
    let check = |key: &StrBytes| -> Result<(), (i16, &'static str)> {
        if req.key_type != GROUP && req.key_type != TRANSACTION {
            return Err((
                codes::INVALID_REQUEST,
                "key type must be 0 (group) or 1 (transaction)",
            ));
        }
        if key.is_empty() {
            return Err((codes::INVALID_REQUEST, "the key must not be empty"));
        }
        Ok(())
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let entry = Coordinator::default().with_key(key.clone());
                match check(key) {
                    Ok(()) => entry
                        .with_node_id(BrokerId(c.node_id))
                        .with_host(host.clone())
                        .with_port(port),
                    Err((code, why)) => entry
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(Some(StrBytes::from_static_str(why))),
                }
            })
            .collect();
        return ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default().with_coordinators(coordinators),
        );
    }
    let response = match check(&req.key) {
        Ok(()) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(c.node_id))
            .with_host(host)
            .with_port(port),
        Err((code, why)) => FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message((version >= 1).then(|| StrBytes::from_static_str(why)))
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    };
    ResponseKind::FindCoordinator(response)
}
