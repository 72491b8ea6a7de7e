//! The Kafka wire protocol: framing, dispatch, one handler module per API, the broker
//! state they act on, the node entry point, and a small Kafka client.

pub mod broker;
pub mod budget;
pub mod client;
pub mod codes;
pub mod controller;
pub mod frame;
pub mod groups;
#[cfg(not(madsim))]
pub mod guard_alloc;
pub mod handlers;
pub mod internal;
pub mod node;
pub mod replication;
#[cfg(not(madsim))]
pub mod runtime;
pub mod server;
pub mod shares;
pub mod tcp;
pub mod tls;
pub mod txns;
