//! The cluster: the metadata every node agrees on through the controller quorum, and
//! the types that run that quorum on openraft.

pub mod metadata;
pub mod raft;
pub mod throttle;
