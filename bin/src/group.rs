//! `sluice group list|describe|delete|reset-offsets|seek|offset-delete`, like Kafka's
//! kafka-consumer-groups.sh. Group requests go to the group's coordinator; groups of
//! either protocol (classic, KIP-848 consumer) are described.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use bytes::Buf;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerProtocolAssignment, DeleteGroupsRequest,
    DescribeGroupsRequest, DescribeShareGroupOffsetsRequest, GroupId, ListGroupsRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, ShareGroupDescribeRequest,
    TopicName,
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
        /// To the first record with a timestamp at or after this one (ms since the
        /// epoch; the log end where there is none).
        #[arg(long, group = "to", value_name = "MS")]
        to_time: Option<i64>,
        #[arg(long)]
        execute: bool,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Move a group's committed offsets on a topic now (rpk's `group seek`): as
    /// reset-offsets --execute.
    Seek {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        #[arg(long, group = "to", value_name = "MS")]
        to_time: Option<i64>,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Delete a group's committed offsets of a topic (all its partitions, or those
    /// given); refused while the group's members subscribe to the topic.
    OffsetDelete {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, value_delimiter = ',')]
        partitions: Option<Vec<i32>>,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
}

/// Where reset-offsets and seek move a partition's committed offset.
#[derive(Debug, Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    ShiftBy(i64),
    Time(i64),
}

impl Target {
    fn pick(
        earliest: bool,
        latest: bool,
        offset: Option<i64>,
        shift: Option<i64>,
        time: Option<i64>,
    ) -> Result<Target> {
        Ok(match (earliest, latest, offset, shift, time) {
            (true, ..) => Target::Earliest,
            (_, true, ..) => Target::Latest,
            (_, _, Some(o), ..) => Target::Offset(o),
            (_, _, _, Some(d), _) => Target::ShiftBy(d),
            (.., Some(t)) => Target::Time(t),
            _ => bail!(
                "say where to: --to-earliest, --to-latest, --to-offset, --to-time or --shift-by"
            ),
        })
    }
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
    /// `classic`, `consumer` (KIP-848) or `share` (KIP-932).
    group_type: String,
}

#[derive(Serialize)]
struct MemberView {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    host: String,
    assignment: Vec<(String, i32)>,
    /// A member speaking the classic protocol inside a KIP-848 group (migrating).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    classic_protocol: bool,
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
    /// A KIP-848 group's epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<i32>,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberView>,
    partitions: Vec<PartitionView>,
    total_lag: i64,
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::List { format, bootstrap } => {
            // Each broker lists the groups it coordinates: ask them all.
            let mut client = bootstrap.connect().await?;
            let v = client.version(ApiKey::Metadata, 12)?;
            let meta = client
                .call(
                    kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![])),
                    v,
                )
                .await?;
            let mut groups: Vec<Listed> = Vec::new();
            for b in &meta.brokers {
                let addr = crate::resolve(&format!("{}:{}", b.host.as_str(), b.port));
                let mut c = Client::connect(&sluice_net::tcp::TcpNetwork, &addr, "sluice-cli")
                    .await
                    .with_context(|| format!("cannot reach broker {} at {addr}", b.node_id.0))?;
                let v = c.version(ApiKey::ListGroups, 5)?;
                let resp = c.call(ListGroupsRequest::default(), v).await?;
                check(resp.error_code, "listing groups")?;
                groups.extend(resp.groups.iter().map(|g| Listed {
                    group: g.group_id.to_string(),
                    state: g.group_state.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    group_type: g.group_type.to_string(),
                }));
            }
            groups.sort_by(|a, b| a.group.cmp(&b.group));
            groups.dedup_by(|a, b| a.group == b.group);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&groups)?),
                Format::Text => {
                    for g in groups {
                        println!(
                            "{}\t{}\t{}\t{}",
                            g.group, g.state, g.protocol_type, g.group_type
                        );
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
            let mut coordinator = bootstrap.coordinator(&group).await?;
            let view = describe(&mut client, &mut coordinator, &group).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&view)?),
                Format::Text => print_view(&view),
            }
        }
        Command::Delete { group, bootstrap } => {
            let mut client = bootstrap.coordinator(&group).await?;
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
            topic,
            to_earliest,
            to_latest,
            to_offset,
            shift_by,
            to_time,
            execute,
            bootstrap,
        } => {
            let to = Target::pick(to_earliest, to_latest, to_offset, shift_by, to_time)?;
            reset(&bootstrap, &group, &topic, to, execute).await?;
        }
        Command::Seek {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_time,
            bootstrap,
        } => {
            let to = Target::pick(to_earliest, to_latest, to_offset, None, to_time)?;
            reset(&bootstrap, &group, &topic, to, true).await?;
        }
        Command::OffsetDelete {
            group,
            topic: name,
            partitions,
            bootstrap,
        } => {
            let mut client = bootstrap.connect().await?;
            let parts = match partitions {
                Some(p) => p,
                None => (0..topic::partitions(&mut client, &name).await?).collect(),
            };
            let mut coordinator = bootstrap.coordinator(&group).await?;
            let req = OffsetDeleteRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s(&name)))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| {
                                OffsetDeleteRequestPartition::default().with_partition_index(*p)
                            })
                            .collect(),
                    )]);
            let resp = coordinator.call(req, 0).await?;
            check(resp.error_code, &format!("deleting offsets of '{group}'"))?;
            for t in &resp.topics {
                for p in &t.partitions {
                    check(
                        p.error_code,
                        &format!(
                            "deleting the offset of {}-{}",
                            t.name.as_str(),
                            p.partition_index
                        ),
                    )?;
                }
            }
            println!(
                "deleted the committed offsets of {} partition(s) of {name} for group {group}",
                parts.len()
            );
        }
    }
    Ok(())
}

/// Moves (or, without `execute`, plans to move) a group's committed offsets of a topic.
async fn reset(
    bootstrap: &Bootstrap,
    group: &str,
    name: &str,
    to: Target,
    execute: bool,
) -> Result<()> {
    let mut client = bootstrap.connect().await?;
    let count = topic::partitions(&mut client, name).await?;
    let start = topic::offsets(&mut client, name, count, -2).await?;
    let end = topic::offsets(&mut client, name, count, -1).await?;
    let by_time = match to {
        Target::Time(ms) => Some(topic::offsets(&mut client, name, count, ms.max(0)).await?),
        _ => None,
    };
    let mut coordinator = bootstrap.coordinator(group).await?;
    let committed = fetch_offsets(&mut coordinator, group).await?;
    let mut plan = Vec::new();
    for p in 0..count {
        let (lo, hi) = (start[p as usize], end[p as usize]);
        let current = committed.get(&(name.to_string(), p)).copied();
        let target = match to {
            Target::Earliest => lo,
            Target::Latest => hi,
            Target::Offset(o) => o,
            Target::ShiftBy(d) => current.unwrap_or(lo) + d,
            // No record at or after that time: the log end.
            Target::Time(_) => by_time
                .as_ref()
                .map(|t| t[p as usize])
                .filter(|o| *o >= 0)
                .unwrap_or(hi),
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
    let v = coordinator.version(ApiKey::OffsetCommit, 8)?;
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(name)))
            .with_partitions(
                plan.iter()
                    .map(|(p, _, target)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*target)
                    })
                    .collect(),
            )]);
    let resp = coordinator.call(req, v).await?;
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

/// A group described: DescribeGroups for a classic group, ConsumerGroupDescribe for a
/// KIP-848 one (DescribeGroups says GROUP_ID_NOT_FOUND for those). `client` reaches
/// any broker (metadata, log ends), `coordinator` the group's coordinator.
async fn describe(client: &mut Client, coordinator: &mut Client, group: &str) -> Result<GroupView> {
    let v = coordinator.version(ApiKey::DescribeGroups, 5)?;
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let resp = coordinator.call(req, v).await?;
    let g = resp
        .groups
        .first()
        .context("empty DescribeGroups response")?;
    let unknown = g.error_code == 69 || (g.error_code == 0 && g.group_state.as_str() == "Dead");
    if unknown {
        if let Some(view) = describe_share(client, coordinator, group).await? {
            return Ok(view);
        }
    }
    let (state, epoch, protocol_type, protocol, members) = if g.error_code == 69 {
        let v = coordinator.version(ApiKey::ConsumerGroupDescribe, 1)?;
        let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
        let resp = coordinator.call(req, v).await?;
        let g = resp
            .groups
            .first()
            .context("empty ConsumerGroupDescribe response")?;
        check(g.error_code, &format!("describing group '{group}'"))?;
        let members: Vec<MemberView> = g
            .members
            .iter()
            .map(|m| MemberView {
                member_id: m.member_id.to_string(),
                group_instance_id: m.instance_id.as_ref().map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: m
                    .assignment
                    .topic_partitions
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| (t.topic_name.to_string(), *p)))
                    .collect(),
                classic_protocol: m.member_type == 0,
            })
            .collect();
        (
            g.group_state.to_string(),
            Some(g.group_epoch),
            "consumer".to_string(),
            g.assignor_name.to_string(),
            members,
        )
    } else {
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
                classic_protocol: false,
            })
            .collect();
        (
            g.group_state.to_string(),
            None,
            g.protocol_type.to_string(),
            g.protocol_data.to_string(),
            members,
        )
    };
    let committed = fetch_offsets(coordinator, group).await?;
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
        state,
        epoch,
        protocol_type,
        protocol,
        members,
        partitions,
        total_lag,
    })
}

/// A share group (KIP-932), if `group` is one: its members (a partition may have
/// several) and per partition the share-partition start offset, where the records the
/// group has not finished begin (shown as the committed offset; the lag is what lies
/// from there to the log end).
async fn describe_share(
    client: &mut Client,
    coordinator: &mut Client,
    group: &str,
) -> Result<Option<GroupView>> {
    let Ok(v) = coordinator.version(ApiKey::ShareGroupDescribe, 1) else {
        return Ok(None);
    };
    let req = ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
    let resp = coordinator.call(req, v).await?;
    let Some(g) = resp.groups.first().filter(|g| g.error_code == 0) else {
        return Ok(None);
    };
    let members: Vec<MemberView> = g
        .members
        .iter()
        .map(|m| MemberView {
            member_id: m.member_id.to_string(),
            group_instance_id: None,
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assignment: m
                .assignment
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic_name.to_string(), *p)))
                .collect(),
            classic_protocol: false,
        })
        .collect();
    let v = coordinator.version(ApiKey::DescribeShareGroupOffsets, 0)?;
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None),
    ]);
    let offsets = coordinator.call(req, v).await?;
    let mut readers: BTreeMap<(String, i32), Vec<String>> = BTreeMap::new();
    for m in &members {
        for tp in &m.assignment {
            readers
                .entry(tp.clone())
                .or_default()
                .push(m.member_id.clone());
        }
    }
    let mut partitions = Vec::new();
    for t in offsets.groups.iter().flat_map(|g| &g.topics) {
        let name = t.topic_name.to_string();
        let count = topic::partitions(client, &name).await?;
        let end = topic::offsets(client, &name, count, -1).await?;
        for p in &t.partitions {
            let start = (p.error_code == 0 && p.start_offset >= 0).then_some(p.start_offset);
            let leo = end.get(p.partition_index as usize).copied().unwrap_or(-1);
            partitions.push(PartitionView {
                topic: name.clone(),
                partition: p.partition_index,
                committed_offset: start,
                log_end_offset: leo,
                lag: start.map(|o| (leo - o).max(0)),
                member_id: readers
                    .get(&(name.clone(), p.partition_index))
                    .map(|ms| ms.join(",")),
            });
        }
    }
    let total_lag = partitions.iter().filter_map(|p| p.lag).sum();
    Ok(Some(GroupView {
        group: group.to_string(),
        state: g.group_state.to_string(),
        epoch: Some(g.group_epoch),
        protocol_type: "share".to_string(),
        protocol: g.assignor_name.to_string(),
        members,
        partitions,
        total_lag,
    }))
}

fn print_view(v: &GroupView) {
    print!("{}", render_view(v));
}

/// `group describe`'s text: the group, its members, then its partitions with lag.
fn render_view(v: &GroupView) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let _ = writeln!(
        out,
        "group {} ({}{}, protocol {} {}), {} member(s)",
        v.group,
        v.state,
        v.epoch.map_or(String::new(), |e| format!(" at epoch {e}")),
        dash(&v.protocol_type),
        dash(&v.protocol),
        v.members.len()
    );
    for m in &v.members {
        let parts: Vec<String> = m
            .assignment
            .iter()
            .map(|(t, p)| format!("{t}-{p}"))
            .collect();
        let _ = writeln!(
            out,
            "  member {} client {} host {}{}{}: {}",
            m.member_id,
            m.client_id,
            m.host,
            m.group_instance_id
                .as_ref()
                .map_or(String::new(), |i| format!(" instance {i}")),
            if m.classic_protocol {
                " (classic protocol)"
            } else {
                ""
            },
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(",")
            }
        );
    }
    // A share group commits nothing: its column is where its unfinished records begin.
    let column = if v.protocol_type == "share" {
        "start"
    } else {
        "committed"
    };
    let _ = writeln!(out, "topic\tpartition\t{column}\tlog-end\tlag\tmember");
    for p in &v.partitions {
        let opt = |o: Option<i64>| o.map_or("-".to_string(), |x| x.to_string());
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            p.topic,
            p.partition,
            opt(p.committed_offset),
            p.log_end_offset,
            opt(p.lag),
            p.member_id.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(out, "total lag: {}", v.total_lag);
    out
}

#[cfg(test)]
mod snapshots {
    use super::*;

    fn partition(p: i32, committed: Option<i64>, end: i64, member: Option<&str>) -> PartitionView {
        PartitionView {
            topic: "orders".into(),
            partition: p,
            committed_offset: committed,
            log_end_offset: end,
            lag: committed.map(|c| end - c),
            member_id: member.map(str::to_string),
        }
    }

    #[test]
    fn group_describe_text_for_a_share_group() {
        let v = GroupView {
            group: "workers".into(),
            state: "Stable".into(),
            epoch: Some(3),
            protocol_type: "share".into(),
            protocol: "simple".into(),
            members: vec![
                MemberView {
                    member_id: "w-1".into(),
                    group_instance_id: None,
                    client_id: "worker".into(),
                    host: "/10.0.0.5".into(),
                    assignment: vec![("orders".into(), 0)],
                    classic_protocol: false,
                },
                MemberView {
                    member_id: "w-2".into(),
                    group_instance_id: None,
                    client_id: "worker".into(),
                    host: "/10.0.0.6".into(),
                    assignment: vec![("orders".into(), 0)],
                    classic_protocol: false,
                },
            ],
            partitions: vec![partition(0, Some(90), 100, Some("w-1,w-2"))],
            total_lag: 10,
        };
        insta::assert_snapshot!(render_view(&v));
    }

    #[test]
    fn group_describe_text_for_a_consumer_protocol_group() {
        let v = GroupView {
            group: "billing".into(),
            state: "Stable".into(),
            epoch: Some(7),
            protocol_type: "consumer".into(),
            protocol: "uniform".into(),
            members: vec![
                MemberView {
                    member_id: "m-1".into(),
                    group_instance_id: Some("worker-1".into()),
                    client_id: "billing-app".into(),
                    host: "/10.0.0.5".into(),
                    assignment: vec![("orders".into(), 0), ("orders".into(), 1)],
                    classic_protocol: false,
                },
                MemberView {
                    member_id: "m-2".into(),
                    group_instance_id: None,
                    client_id: "billing-app".into(),
                    host: "/10.0.0.6".into(),
                    assignment: vec![],
                    classic_protocol: true,
                },
            ],
            partitions: vec![
                partition(0, Some(40), 52, Some("m-1")),
                partition(1, None, 8, Some("m-1")),
            ],
            total_lag: 12,
        };
        insta::assert_snapshot!(render_view(&v));
    }

    #[test]
    fn group_describe_text_for_an_empty_classic_group() {
        let v = GroupView {
            group: "old".into(),
            state: "Empty".into(),
            epoch: None,
            protocol_type: "consumer".into(),
            protocol: String::new(),
            members: vec![],
            partitions: vec![partition(0, Some(10), 10, None)],
            total_lag: 0,
        };
        insta::assert_snapshot!(render_view(&v));
    }
}
