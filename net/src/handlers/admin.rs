//! CreateTopics, DeleteTopics, CreatePartitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::config::topic_config_defaults;
use uuid::Uuid;

use sluice_core::cluster::metadata::MetadataError;

use crate::broker::{Broker, BrokerError};
use crate::codes;

/// A Kafka error code and message for a failed admin operation.
fn failure(e: &BrokerError) -> (i16, Option<StrBytes>) {
    let code = match e {
        BrokerError::Topic(t) => codes::topic_error(t),
        BrokerError::Metadata(
            MetadataError::UnknownBroker(_) | MetadataError::InvalidAssignment(..),
        ) => codes::INVALID_REPLICA_ASSIGNMENT,
        BrokerError::Controller(_) => codes::REQUEST_TIMED_OUT,
        _ => codes::KAFKA_STORAGE_ERROR,
    };
    (code, Some(StrBytes::from_string(e.to_string())))
}

pub async fn create_topics(broker: Arc<Broker>, req: CreateTopicsRequest) -> ResponseKind {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        results.push({
            let name = t.name.to_string();
            let mut partitions = if t.num_partitions == -1 {
                broker.config.num_partitions
            } else {
                t.num_partitions
            };
            let rf = if t.replication_factor == -1 {
                broker.config.default_replication_factor
            } else {
                t.replication_factor
            };
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            let mut assigned = None;
            if !t.assignments.is_empty() {
                let valid = t.num_partitions == -1
                    && t.replication_factor == -1
                    && t.assignments
                        .iter()
                        .enumerate()
                        .all(|(i, a)| a.partition_index == i as i32 && !a.broker_ids.is_empty());
                if !valid {
                    results.push(
                        result
                            .with_error_code(codes::INVALID_REPLICA_ASSIGNMENT)
                            .with_error_message(Some(StrBytes::from_static_str(
                                "replica assignments must list every partition in order, each with its brokers",
                            ))),
                    );
                    continue;
                }
                partitions = t.assignments.len() as i32;
                assigned = Some(
                    t.assignments
                        .iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect(),
                );
            }
            let configs: BTreeMap<String, String> = t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            match broker
                .create_topic_placed(&name, partitions, rf, configs, assigned, req.validate_only)
                .await
            {
                Ok((topic, rf)) => {
                    let mut all = topic_config_defaults(&broker.config)
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), (v, 5)))
                        .collect::<BTreeMap<_, _>>();
                    for (k, v) in &topic.configs {
                        all.insert(k.clone(), (v.clone(), 1));
                    }
                    result
                        .with_topic_id(Uuid::from_bytes(topic.id))
                        .with_num_partitions(topic.partitions)
                        .with_replication_factor(rf)
                        .with_configs(Some(
                            all.into_iter()
                                .map(|(k, (v, source))| {
                                    CreatableTopicConfigs::default()
                                        .with_name(StrBytes::from_string(k))
                                        .with_value(Some(StrBytes::from_string(v)))
                                        .with_config_source(source)
                                })
                                .collect(),
                        ))
                }
                Err(e) => {
                    let (code, message) = failure(&e);
                    result
                        .with_error_code(code)
                        .with_error_message(message)
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                }
            }
        });
    }
    ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results))
}

pub async fn delete_topics(
    broker: Arc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
) -> ResponseKind {
    // v6 names topics by name or id; earlier versions by name only.
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        responses.push({
            let name = name.or_else(|| broker.topic_by_id(*id.as_bytes()));
            let result = DeletableTopicResult::default().with_topic_id(id);
            let Some(name) = name else {
                responses.push(result.with_error_code(codes::UNKNOWN_TOPIC_ID));
                continue;
            };
            let result = result.with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
            if crate::internal::is_internal(&name) {
                responses.push(
                    result
                        .with_error_code(codes::INVALID_TOPIC_EXCEPTION)
                        .with_error_message(Some(StrBytes::from_static_str(
                            "internal topics cannot be deleted",
                        ))),
                );
                continue;
            }
            match broker.delete_topic(&name).await {
                Ok(()) => result,
                Err(e) => {
                    let (code, message) = failure(&e);
                    result.with_error_code(code).with_error_message(message)
                }
            }
        });
    }
    ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(responses))
}

pub async fn create_partitions(broker: Arc<Broker>, req: CreatePartitionsRequest) -> ResponseKind {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        results.push({
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            // Explicit replicas for each new partition, in order; placed over the live
            // brokers otherwise.
            let assigned: Option<Vec<Vec<i32>>> =
                t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
                    a.iter()
                        .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                });
            match broker
                .create_partitions(&t.name, t.count, assigned, req.validate_only)
                .await
            {
                Ok(()) => result,
                Err(e) => {
                    let (code, message) = failure(&e);
                    result.with_error_code(code).with_error_message(message)
                }
            }
        });
    }
    ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(results))
}
