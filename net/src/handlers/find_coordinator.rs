//! FindCoordinator: the coordinator of a group or transactional id is the leader of
//! its internal-topic partition (the topic is created on first use); from v6
//! (KIP-932) a share partition's `group:topicId:partition` key names the leader of its
//! `__share_group_state` partition, the share-group state store.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use sluice_core::cluster::metadata::NO_LEADER;

use super::{Client, Reply};
use crate::broker::Broker;
use crate::codes;
use crate::internal::{partition_for, OFFSETS_TOPIC, TXN_TOPIC};
use crate::shares::SHARE_STATE_TOPIC;
use sluice_core::share::ShareKey;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;
const SHARE: i8 = 2;

pub fn handle(
    broker: &Arc<Broker>,
    client: &Client,
    req: FindCoordinatorRequest,
    version: i16,
) -> Reply {
    let broker = broker.clone();
    let listener = client.listener.clone();
    Reply::Later(Box::pin(async move {
        let check = |key: &StrBytes| -> Result<(), (i16, &'static str)> {
            match req.key_type {
                GROUP | TRANSACTION => {}
                SHARE if version >= 6 => {
                    if ShareKey::parse_coordinator_key(key).is_none() {
                        return Err((
                            codes::INVALID_REQUEST,
                            "a share key is group:topicId:partition",
                        ));
                    }
                }
                _ => {
                    return Err((
                        codes::INVALID_REQUEST,
                        "key type must be 0 (group), 1 (transaction) or, from v6, 2 (share)",
                    ))
                }
            }
            if key.is_empty() {
                return Err((codes::INVALID_REQUEST, "the key must not be empty"));
            }
            Ok(())
        };
        let keys: Vec<StrBytes> = if version >= 4 {
            req.coordinator_keys.clone()
        } else {
            vec![req.key.clone()]
        };
        let mut found = Vec::with_capacity(keys.len());
        for key in &keys {
            found.push(match check(key) {
                Ok(()) => locate(&broker, &listener, req.key_type, key).await,
                Err((code, why)) => Err((code, why.to_string())),
            });
        }
        if version >= 4 {
            let coordinators = keys
                .into_iter()
                .zip(found)
                .map(|(key, f)| {
                    let entry = Coordinator::default().with_key(key);
                    match f {
                        Ok((node, host, port)) => entry
                            .with_node_id(BrokerId(node))
                            .with_host(StrBytes::from_string(host))
                            .with_port(port),
                        Err((code, why)) => entry
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_string(why))),
                    }
                })
                .collect();
            return ResponseKind::FindCoordinator(
                FindCoordinatorResponse::default().with_coordinators(coordinators),
            );
        }
        let response = match found.pop() {
            Some(Ok((node, host, port))) => FindCoordinatorResponse::default()
                .with_node_id(BrokerId(node))
                .with_host(StrBytes::from_string(host))
                .with_port(port),
            Some(Err((code, why))) => FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_error_message((version >= 1).then(|| StrBytes::from_string(why)))
                .with_node_id(BrokerId(-1))
                .with_port(-1),
            None => FindCoordinatorResponse::default().with_error_code(codes::INVALID_REQUEST),
        };
        ResponseKind::FindCoordinator(response)
    }))
}

/// How long FindCoordinator waits for a new internal topic to be created and led.
const CREATE_WAIT: Duration = Duration::from_secs(5);

/// The leader of the key's internal-topic partition: (node, host, port). The topic is
/// created on first use; the answer waits for it (up to [`CREATE_WAIT`]).
async fn locate(
    broker: &Broker,
    listener: &str,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, i32), (i16, String)> {
    let c = &broker.config;
    let (topic, partitions, segment_bytes) = match key_type {
        GROUP => (
            OFFSETS_TOPIC,
            c.offsets_topic_num_partitions,
            c.offsets_topic_segment_bytes,
        ),
        TRANSACTION => (
            TXN_TOPIC,
            c.transaction_state_log_num_partitions,
            c.transaction_state_log_segment_bytes,
        ),
        _ => (
            SHARE_STATE_TOPIC,
            c.share_coordinator_state_topic_num_partitions,
            c.offsets_topic_segment_bytes,
        ),
    };
    let deadline = broker.env.clock.monotonic() + CREATE_WAIT;
    loop {
        let image = broker.image();
        if let Some(t) = image.topics.get(topic) {
            let p = partition_for(key, t.partitions.len());
            let leader = t.partitions.get(p).map_or(NO_LEADER, |ps| ps.leader);
            let local_ready = leader != c.node_id || broker.partition(topic, p as i32).is_some();
            let endpoint = image
                .brokers
                .get(&leader)
                .and_then(|b| b.registration.endpoint(listener));
            if let (true, Some((host, port))) = (local_ready, endpoint) {
                return Ok((leader, host.to_string(), i32::from(port)));
            }
        } else {
            // Starts the creation (or finds it under way).
            let _ = broker.internal_topic(topic, partitions, segment_bytes);
        }
        if broker.env.clock.monotonic() >= deadline {
            return Err((
                codes::COORDINATOR_NOT_AVAILABLE,
                format!("the coordinator for '{key}' is not available yet"),
            ));
        }
        broker.env.clock.sleep(Duration::from_millis(20)).await;
    }
}
