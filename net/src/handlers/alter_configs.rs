//! IncrementalAlterConfigs: topic configs, and the broker configs that can change while
//! the cluster runs (the replication throttles), through the metadata quorum.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use sluice_core::cluster::metadata::{Command, ConfigResource, MetadataError};

use crate::broker::{Broker, BrokerError};
use crate::codes;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

pub async fn handle(broker: Arc<Broker>, req: IncrementalAlterConfigsRequest) -> ResponseKind {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let result = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let outcome = match command(&r.resource_type, r.resource_name.as_str(), &r.configs) {
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

type Configs = [kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig];

/// The metadata command for one resource's changes, or the error to answer.
fn command(resource_type: &i8, name: &str, configs: &Configs) -> Result<Command, (i16, String)> {
    let resource = match *resource_type {
        RESOURCE_TOPIC => ConfigResource::Topic(name.to_string()),
        RESOURCE_BROKER if name.is_empty() => ConfigResource::Broker(None),
        RESOURCE_BROKER => match name.parse() {
            Ok(id) => ConfigResource::Broker(Some(id)),
            Err(_) => {
                return Err((
                    codes::INVALID_REQUEST,
                    format!("'{name}' is not a broker id"),
                ))
            }
        },
        other => {
            return Err((
                codes::INVALID_REQUEST,
                format!("resource type {other} has no configs to alter here"),
            ))
        }
    };
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
            (op, _) => {
                return Err((
                    codes::INVALID_CONFIG,
                    format!(
                    "operation {op} (append/subtract) does not apply to {key}, which is not a list"
                ),
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
        BrokerError::Metadata(MetadataError::NotDynamic(_)) => codes::INVALID_CONFIG,
        BrokerError::Controller(_) => codes::REQUEST_TIMED_OUT,
        _ => codes::INVALID_REQUEST,
    }
}
