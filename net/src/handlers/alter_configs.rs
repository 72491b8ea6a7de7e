//! IncrementalAlterConfigs: topic configs, group configs (KIP-848's
//! `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms`), and the broker
//! configs that can change while the cluster runs (the replication throttles), through
//! the metadata quorum. SET and
//! DELETE apply to any config, APPEND and SUBTRACT to list configs (KIP-339). The
//! older AlterConfigs replaces a resource's whole set: what it does not name goes back
//! to its default.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::cluster::metadata::{Command, ConfigResource, MetadataError};
use sluice_core::config::topic_config_defaults;
use sluice_core::topics::is_list;

use crate::broker::{Broker, BrokerError};
use crate::codes;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn handle(broker: Arc<Broker>, req: IncrementalAlterConfigsRequest) -> ResponseKind {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let result = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let topic = (r.resource_type == RESOURCE_TOPIC).then(|| r.resource_name.to_string());
        // A list config's value now (set on the topic, or the default), for
        // APPEND/SUBTRACT.
        let current = |key: &str| -> String {
            let set = topic
                .as_deref()
                .and_then(|t| broker.image().topics.get(t)?.configs.get(key).cloned());
            set.or_else(|| topic_config_defaults(&broker.config).get(key).cloned())
                .unwrap_or_default()
        };
        let outcome = match command(
            &r.resource_type,
            r.resource_name.as_str(),
            &r.configs,
            current,
        ) {
            Ok(command) => broker
                .alter_configs(command, req.validate_only)
                .await
                .map_err(|e| (error_code(&e), e.to_string())),
            Err(bad) => Err(bad),
        };
        responses.push(match outcome {
            Ok(()) => result,
            Err((code, message)) => result
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    ResponseKind::IncrementalAlterConfigs(
        IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}

/// AlterConfigs (legacy): each resource's configs become exactly the ones given.
pub async fn replace(broker: Arc<Broker>, req: AlterConfigsRequest) -> ResponseKind {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let result = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let name = r.resource_name.to_string();
        let mut set = BTreeMap::new();
        for c in &r.configs {
            match &c.value {
                Some(v) => set.insert(c.name.to_string(), v.to_string()),
                None => set.remove(c.name.as_str()),
            };
        }
        let outcome = match resource(r.resource_type, &name) {
            Ok(resource) => {
                // Everything set now and not named again goes.
                let delete = match &resource {
                    ConfigResource::Topic(t) => broker
                        .image()
                        .topics
                        .get(t)
                        .map(|topic| {
                            topic
                                .configs
                                .keys()
                                .filter(|k| !set.contains_key(*k))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default(),
                    ConfigResource::Broker(_) => Vec::new(),
                    ConfigResource::Group(g) => broker
                        .image()
                        .group_configs
                        .get(g)
                        .map(|c| {
                            c.keys()
                                .filter(|k| !set.contains_key(*k))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                let command = Command::AlterConfigs {
                    resource,
                    set,
                    delete,
                };
                broker
                    .alter_configs(command, req.validate_only)
                    .await
                    .map_err(|e| (error_code(&e), e.to_string()))
            }
            Err(bad) => Err(bad),
        };
        responses.push(match outcome {
            Ok(()) => result,
            Err((code, message)) => result
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
}

type Configs = [kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig];

/// The config resource a request names, or the error to answer.
fn resource(resource_type: i8, name: &str) -> Result<ConfigResource, (i16, String)> {
    match resource_type {
        RESOURCE_TOPIC => Ok(ConfigResource::Topic(name.to_string())),
        RESOURCE_GROUP if name.is_empty() => Err((
            codes::INVALID_REQUEST,
            "a group config resource needs a group id".to_string(),
        )),
        RESOURCE_GROUP => Ok(ConfigResource::Group(name.to_string())),
        RESOURCE_BROKER if name.is_empty() => Ok(ConfigResource::Broker(None)),
        RESOURCE_BROKER => match name.parse() {
            Ok(id) => Ok(ConfigResource::Broker(Some(id))),
            Err(_) => Err((
                codes::INVALID_REQUEST,
                format!("'{name}' is not a broker id"),
            )),
        },
        other => Err((
            codes::INVALID_REQUEST,
            format!("resource type {other} has no configs to alter here"),
        )),
    }
}

/// The metadata command for one resource's changes, or the error to answer.
fn command(
    resource_type: &i8,
    name: &str,
    configs: &Configs,
    current: impl Fn(&str) -> String,
) -> Result<Command, (i16, String)> {
    let resource = resource(*resource_type, name)?;
    let mut set = BTreeMap::new();
    let mut delete = Vec::new();
    for c in configs {
        let key = c.name.to_string();
        match (c.config_operation, &c.value) {
            (OP_SET, Some(v)) => {
                set.insert(key, v.to_string());
            }
            (OP_SET, None) => {
                return Err((codes::INVALID_REQUEST, format!("no value to set {key} to")))
            }
            (OP_DELETE, _) => delete.push(key),
            (op @ (OP_APPEND | OP_SUBTRACT), value) if is_list(&key) => {
                // Several operations on one key in a request build on each other.
                let now = set.get(&key).cloned().unwrap_or_else(|| current(&key));
                let mut items: Vec<String> = now
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(String::from)
                    .collect();
                for v in value
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                {
                    if v.is_empty() {
                        continue;
                    }
                    if op == OP_APPEND {
                        if !items.iter().any(|i| i == v) {
                            items.push(v.to_string());
                        }
                    } else {
                        items.retain(|i| i != v);
                    }
                }
                set.insert(key, items.join(","));
            }
            (OP_APPEND | OP_SUBTRACT, _) => {
                return Err((
                    codes::INVALID_CONFIG,
                    format!("APPEND and SUBTRACT apply to list configs; {key} is not one"),
                ))
            }
            (op, _) => {
                return Err((
                    codes::INVALID_REQUEST,
                    format!("unknown config operation {op} for {key}"),
                ))
            }
        }
    }
    Ok(Command::AlterConfigs {
        resource,
        set,
        delete,
    })
}

fn error_code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::Topic(t) => codes::topic_error(t),
        BrokerError::Metadata(MetadataError::NotDynamic(_)) | BrokerError::InvalidConfig(_) => {
            codes::INVALID_CONFIG
        }
        BrokerError::Controller(_) => codes::REQUEST_TIMED_OUT,
        _ => codes::INVALID_REQUEST,
    }
}
