//! `sluice group list|describe|delete|reset-offsets`, like Kafka's
//! kafka-consumer-groups.sh.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use bytes::Buf;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, GroupId,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde::Serialize;
use sluice_net::client::Client;

use crate::topic;
use crate::Bootstrap;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List consumer groups with their state.
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Show a group's members and assignments, and per partition the committed
    /// offset, log end offset and lag.
    Describe {
        group: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Delete a group that has no members, with its committed offsets.
    Delete {
        group: String,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Move a group's committed offsets on a topic. Shows the plan; --execute
    /// applies it (the group must have no active members).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// To each partition's log start.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// To each partition's log end.
        #[arg(long, group = "to")]
        to_latest: bool,
        /// To this offset (clamped to the log).
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        /// By this many records from the committed offset (clamped to the log).
        #[arg(long, group = "to", allow_hyphen_values = true)]
        shift_by: Option<i64>,
        #[arg(long)]
        execute: bool,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn check(code: i16, what: &str) -> Result<()> {
    let why = match code {
        0 => return Ok(()),
        15 | 14 => "the group coordinator is not available",
        25 | 22 => "the group has active members; stop its consumers first",
        68 => "the group still has members",
        69 => "no such group",
        3 => "unknown topic or partition",
        _ => "",
    };
    let name = sluice_net::codes::describe(code);
    if why.is_empty() {
        bail!("{what} failed: {name}")
    }
    bail!("{what} failed: {why} ({name})")
}

#[derive(Serialize)]
struct Listed {
    group: String,
    state: String,
    protocol_type: String,
}

#[derive(Serialize)]
struct MemberView {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    host: String,
    assignment: Vec<(String, i32)>,
}

#[derive(Serialize)]
struct PartitionView {
    topic: String,
    partition: i32,
    committed_offset: Option<i64>,
    log_end_offset: i64,
    lag: Option<i64>,
    member_id: Option<String>,
}

#[derive(Serialize)]
struct GroupView {
    group: String,
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberView>,
    partitions: Vec<PartitionView>,
    total_lag: i64,
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::List { format, bootstrap } => {
            let mut client = bootstrap.connect().await?;
            let v = client.version(ApiKey::ListGroups, 5)?;
            let resp = client.call(ListGroupsRequest::default(), v).await?;
            check(resp.error_code, "listing groups")?;
            let groups: Vec<Listed> = resp
                .groups
                .iter()
                .map(|g| Listed {
                    group: g.group_id.to_string(),
                    state: g.group_state.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                })
                .collect();
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&groups)?),
                Format::Text => {
                    for g in groups {
                        println!("{}\t{}\t{}", g.group, g.state, g.protocol_type);
                    }
                }
            }
        }
        Command::Describe {
            group,
            format,
            bootstrap,
        } => {
            let mut client = bootstrap.connect().await?;
            let view = describe(&mut client, &group).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&view)?),
                Format::Text => print_view(&view),
            }
        }
        Command::Delete { group, bootstrap } => {
            let mut client = bootstrap.connect().await?;
            let v = client.version(ApiKey::DeleteGroups, 2)?;
            let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&group))]);
            let resp = client.call(req, v).await?;
            for r in &resp.results {
                check(r.error_code, &format!("deleting group '{group}'"))?;
            }
            println!("deleted group {group}");
        }
        Command::ResetOffsets {
            group,
            topic: name,
            to_earliest,
            to_latest,
            to_offset,
            shift_by,
            execute,
            bootstrap,
        } => {
            let mut client = bootstrap.connect().await?;
            let count = topic::partitions(&mut client, &name).await?;
            let start = topic::offsets(&mut client, &name, count, -2).await?;
            let end = topic::offsets(&mut client, &name, count, -1).await?;
            let committed = fetch_offsets(&mut client, &group).await?;
            let mut plan = Vec::new();
            for p in 0..count {
                let (lo, hi) = (start[p as usize], end[p as usize]);
                let current = committed.get(&(name.clone(), p)).copied();
                let target = if to_earliest {
                    lo
                } else if to_latest {
                    hi
                } else if let Some(o) = to_offset {
                    o
                } else if let Some(d) = shift_by {
                    current.unwrap_or(lo) + d
                } else {
                    bail!("say where to: --to-earliest, --to-latest, --to-offset or --shift-by");
                };
                plan.push((p, current, target.clamp(lo, hi)));
            }
            println!("partition\tcurrent\tnew");
            for (p, current, target) in &plan {
                let current = current.map_or("-".to_string(), |c| c.to_string());
                println!("{p}\t{current}\t{target}");
            }
            if !execute {
                println!("(dry run: add --execute to apply)");
                return Ok(());
            }
            let v = client.version(ApiKey::OffsetCommit, 8)?;
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(&name)))
                    .with_partitions(
                        plan.iter()
                            .map(|(p, _, target)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*target)
                            })
                            .collect(),
                    )]);
            let resp = client.call(req, v).await?;
            for t in &resp.topics {
                for p in &t.partitions {
                    check(
                        p.error_code,
                        &format!("resetting {}-{}", t.name.as_str(), p.partition_index),
                    )?;
                }
            }
            println!(
                "reset {} partition(s) of {name} for group {group}",
                plan.len()
            );
        }
    }
    Ok(())
}

/// Every committed offset of a group.
async fn fetch_offsets(client: &mut Client, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
    let v = client.version(ApiKey::OffsetFetch, 7)?.min(7);
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(None);
    let resp = client.call(req, v).await?;
    check(resp.error_code, &format!("fetching offsets of '{group}'"))?;
    let mut out = BTreeMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            if p.committed_offset >= 0 {
                out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// The topic-partitions of a consumer-protocol assignment.
fn assignment_partitions(raw: &[u8]) -> Vec<(String, i32)> {
    let mut b = bytes::Bytes::copy_from_slice(raw);
    if b.len() < 2 {
        return Vec::new();
    }
    let version = b.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut b, version) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn describe(client: &mut Client, group: &str) -> Result<GroupView> {
    let v = client.version(ApiKey::DescribeGroups, 5)?;
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let resp = client.call(req, v).await?;
    let g = resp
        .groups
        .first()
        .context("empty DescribeGroups response")?;
    check(g.error_code, &format!("describing group '{group}'"))?;
    if g.group_state.as_str() == "Dead" {
        bail!("describing group '{group}' failed: no such group");
    }
    let members: Vec<MemberView> = g
        .members
        .iter()
        .map(|m| MemberView {
            member_id: m.member_id.to_string(),
            group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assignment: if g.protocol_type.as_str() == "consumer" {
                assignment_partitions(&m.member_assignment)
            } else {
                Vec::new()
            },
        })
        .collect();
    let committed = fetch_offsets(client, group).await?;
    let mut owner = BTreeMap::new();
    for m in &members {
        for tp in &m.assignment {
            owner.insert(tp.clone(), m.member_id.clone());
        }
    }
    let topics: BTreeSet<String> = committed
        .keys()
        .map(|(t, _)| t.clone())
        .chain(owner.keys().map(|(t, _)| t.clone()))
        .collect();
    let mut partitions = Vec::new();
    for t in topics {
        let Ok(count) = topic::partitions(client, &t).await else {
            continue;
        };
        let end = topic::offsets(client, &t, count, -1).await?;
        for p in 0..count {
            let key = (t.clone(), p);
            let c = committed.get(&key).copied();
            if c.is_none() && !owner.contains_key(&key) {
                continue;
            }
            let leo = end[p as usize];
            partitions.push(PartitionView {
                topic: t.clone(),
                partition: p,
                committed_offset: c,
                log_end_offset: leo,
                lag: c.map(|c| (leo - c).max(0)),
                member_id: owner.get(&key).cloned(),
            });
        }
    }
    let total_lag = partitions.iter().filter_map(|p| p.lag).sum();
    Ok(GroupView {
        group: group.to_string(),
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members,
        partitions,
        total_lag,
    })
}

fn print_view(v: &GroupView) {
    println!(
        "group {} ({}, protocol {} {}), {} member(s)",
        v.group,
        v.state,
        if v.protocol_type.is_empty() {
            "-"
        } else {
            &v.protocol_type
        },
        if v.protocol.is_empty() {
            "-"
        } else {
            &v.protocol
        },
        v.members.len()
    );
    for m in &v.members {
        let parts: Vec<String> = m
            .assignment
            .iter()
            .map(|(t, p)| format!("{t}-{p}"))
            .collect();
        println!(
            "  member {} client {} host {}{}: {}",
            m.member_id,
            m.client_id,
            m.host,
            m.group_instance_id
                .as_ref()
                .map_or(String::new(), |i| format!(" instance {i}")),
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(",")
            }
        );
    }
    println!("topic\tpartition\tcommitted\tlog-end\tlag\tmember");
    for p in &v.partitions {
        let opt = |o: Option<i64>| o.map_or("-".to_string(), |x| x.to_string());
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            p.topic,
            p.partition,
            opt(p.committed_offset),
            p.log_end_offset,
            opt(p.lag),
            p.member_id.as_deref().unwrap_or("-")
        );
    }
    println!("total lag: {}", v.total_lag);
}
