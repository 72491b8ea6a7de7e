//! The records of `__consumer_offsets`, in Kafka's own key and value schemas (offset
//! commit key v1 / value v3, group metadata key v2 / value v3), so the topic reads the
//! same as a Kafka broker's. A record with no value is a tombstone.
//!
//! KIP-848 consumer groups use Kafka's record types 3 and 5–8 (group epoch, member
//! subscription, target assignment epoch, target assignment of a member, current
//! assignment of a member), with their values in Kafka's flexible (compact) encoding.
//! Kafka's type 4 (subscribed topics' metadata) is not written: the coordinator
//! recomputes it after a load and bumps the group epoch once.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One record of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Metadata {
        group: String,
        value: Option<GroupMetadata>,
    },
    /// A record of a KIP-848 consumer group.
    Consumer {
        group: String,
        record: ConsumerRecord,
    },
}

/// A topic id with partitions: what KIP-848 assignments are made of.
pub type Assignment = BTreeMap<[u8; 16], BTreeSet<i32>>;

/// The records of a KIP-848 consumer group (`None` is a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerRecord {
    /// Key type 3: the group epoch.
    GroupEpoch(Option<i32>),
    /// Key type 5: a member's subscription and client facts.
    Member {
        member_id: String,
        value: Option<MemberSubscription>,
    },
    /// Key type 6: the epoch of the target assignment.
    TargetEpoch(Option<i32>),
    /// Key type 7: a member's target assignment.
    Target {
        member_id: String,
        value: Option<Assignment>,
    },
    /// Key type 8: a member's current epoch and assignment.
    Current {
        member_id: String,
        value: Option<CurrentAssignment>,
    },
}

impl ConsumerRecord {
    pub fn is_tombstone(&self) -> bool {
        match self {
            ConsumerRecord::GroupEpoch(v) | ConsumerRecord::TargetEpoch(v) => v.is_none(),
            ConsumerRecord::Member { value, .. } => value.is_none(),
            ConsumerRecord::Target { value, .. } => value.is_none(),
            ConsumerRecord::Current { value, .. } => value.is_none(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberSubscription {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub topic_names: Vec<String>,
    pub topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// Set for a member that speaks the classic protocol inside a consumer group
    /// (KIP-848's online migration): Kafka's tagged field 0 of the record.
    pub classic: Option<ClassicMemberMetadata>,
}

/// What a classic-protocol member of a consumer group joined with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassicMemberMetadata {
    pub session_timeout_ms: i32,
    /// The JoinGroup protocols (name, embedded subscription), in the member's order.
    pub protocols: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentAssignment {
    pub epoch: i32,
    pub previous_epoch: i32,
    /// Kafka's MemberState byte: 0 stable, 1 unrevoked, 2 unreleased partitions.
    pub state: i8,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

impl GroupRecord {
    pub fn group(&self) -> &str {
        match self {
            GroupRecord::Offset { group, .. }
            | GroupRecord::Metadata { group, .. }
            | GroupRecord::Consumer { group, .. } => group,
        }
    }

    /// The record's key and value (`None` for a tombstone).
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                key.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut key, group);
                put_str(&mut key, topic);
                key.put_i32(*partition);
                let value = value.as_ref().map(|v| {
                    let mut b = BytesMut::new();
                    b.put_i16(OFFSET_VALUE_VERSION);
                    b.put_i64(v.offset);
                    b.put_i32(v.leader_epoch);
                    put_str(&mut b, &v.metadata);
                    b.put_i64(v.commit_timestamp_ms);
                    b.freeze()
                });
                (key.freeze(), value)
            }
            GroupRecord::Metadata { group, value } => {
                key.put_i16(GROUP_KEY_VERSION);
                put_str(&mut key, group);
                let value = value.as_ref().map(|g| {
                    let mut b = BytesMut::new();
                    b.put_i16(GROUP_VALUE_VERSION);
                    put_str(&mut b, &g.protocol_type);
                    b.put_i32(g.generation);
                    put_nullable_str(&mut b, g.protocol.as_deref());
                    put_nullable_str(&mut b, g.leader.as_deref());
                    b.put_i64(-1); // current_state_timestamp: not kept
                    b.put_i32(g.members.len() as i32);
                    for m in &g.members {
                        put_str(&mut b, &m.member_id);
                        put_nullable_str(&mut b, m.instance_id.as_deref());
                        put_str(&mut b, &m.client_id);
                        put_str(&mut b, &m.client_host);
                        b.put_i32(m.rebalance_timeout_ms);
                        b.put_i32(m.session_timeout_ms);
                        put_bytes(&mut b, &m.subscription);
                        put_bytes(&mut b, &m.assignment);
                    }
                    b.freeze()
                });
                (key.freeze(), value)
            }
            GroupRecord::Consumer { group, record } => encode_consumer(group, record),
        }
    }

    /// Parses a record read back from the log.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<GroupRecord, String> {
        let mut k = key;
        let version = get_i16(&mut k)?;
        match version {
            0 | OFFSET_KEY_VERSION => {
                let group = get_str(&mut k)?;
                let topic = get_str(&mut k)?;
                let partition = get_i32(&mut k)?;
                let value = match value {
                    None => None,
                    Some(mut v) => {
                        let vv = get_i16(&mut v)?;
                        let offset = get_i64(&mut v)?;
                        let leader_epoch = if vv >= 3 { get_i32(&mut v)? } else { -1 };
                        let metadata = get_str(&mut v)?;
                        let commit_timestamp_ms = get_i64(&mut v)?;
                        Some(OffsetValue {
                            offset,
                            leader_epoch,
                            metadata,
                            commit_timestamp_ms,
                        })
                    }
                };
                Ok(GroupRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            GROUP_KEY_VERSION => {
                let group = get_str(&mut k)?;
                let value = match value {
                    None => None,
                    Some(mut v) => {
                        let vv = get_i16(&mut v)?;
                        if vv != GROUP_VALUE_VERSION {
                            return Err(format!("group metadata value version {vv}"));
                        }
                        let protocol_type = get_str(&mut v)?;
                        let generation = get_i32(&mut v)?;
                        let protocol = get_nullable_str(&mut v)?;
                        let leader = get_nullable_str(&mut v)?;
                        let _state_timestamp = get_i64(&mut v)?;
                        let count = get_i32(&mut v)?;
                        let mut members = Vec::new();
                        for _ in 0..count.max(0) {
                            members.push(MemberMetadata {
                                member_id: get_str(&mut v)?,
                                instance_id: get_nullable_str(&mut v)?,
                                client_id: get_str(&mut v)?,
                                client_host: get_str(&mut v)?,
                                rebalance_timeout_ms: get_i32(&mut v)?,
                                session_timeout_ms: get_i32(&mut v)?,
                                subscription: get_bytes(&mut v)?,
                                assignment: get_bytes(&mut v)?,
                            });
                        }
                        Some(GroupMetadata {
                            protocol_type,
                            generation,
                            protocol,
                            leader,
                            members,
                        })
                    }
                };
                Ok(GroupRecord::Metadata { group, value })
            }
            3 | 5..=8 => decode_consumer(version, k, value),
            v => Err(format!("unknown __consumer_offsets key version {v}")),
        }
    }
}

fn encode_consumer(group: &str, record: &ConsumerRecord) -> (Bytes, Option<Bytes>) {
    let mut key = BytesMut::new();
    let mut value = BytesMut::new();
    value.put_i16(0); // every value schema is at version 0
    let present = match record {
        ConsumerRecord::GroupEpoch(epoch) | ConsumerRecord::TargetEpoch(epoch) => {
            let kind = if matches!(record, ConsumerRecord::GroupEpoch(_)) {
                3
            } else {
                6
            };
            key.put_i16(kind);
            put_str(&mut key, group);
            epoch.map(|e| value.put_i32(e)).is_some()
        }
        ConsumerRecord::Member {
            member_id,
            value: v,
        } => {
            key.put_i16(5);
            put_str(&mut key, group);
            put_str(&mut key, member_id);
            v.as_ref()
                .map(|m| {
                    put_compact_str(&mut value, m.instance_id.as_deref());
                    put_compact_str(&mut value, m.rack_id.as_deref());
                    put_compact_str(&mut value, Some(&m.client_id));
                    put_compact_str(&mut value, Some(&m.client_host));
                    put_uvarint(&mut value, m.topic_names.len() as u64 + 1);
                    for t in &m.topic_names {
                        put_compact_str(&mut value, Some(t));
                    }
                    put_compact_str(&mut value, m.topic_regex.as_deref());
                    value.put_i32(m.rebalance_timeout_ms);
                    put_compact_str(&mut value, m.server_assignor.as_deref());
                    if let Some(c) = &m.classic {
                        // Tagged field 0: ClassicMemberMetadata.
                        let mut field = BytesMut::new();
                        field.put_i32(c.session_timeout_ms);
                        put_uvarint(&mut field, c.protocols.len() as u64 + 1);
                        for (name, metadata) in &c.protocols {
                            put_compact_str(&mut field, Some(name));
                            put_uvarint(&mut field, metadata.len() as u64 + 1);
                            field.put_slice(metadata);
                            field.put_u8(0);
                        }
                        field.put_u8(0);
                        put_uvarint(&mut value, 1);
                        put_uvarint(&mut value, 0);
                        put_uvarint(&mut value, field.len() as u64);
                        value.put_slice(&field);
                    }
                })
                .is_some()
        }
        ConsumerRecord::Target {
            member_id,
            value: v,
        } => {
            key.put_i16(7);
            put_str(&mut key, group);
            put_str(&mut key, member_id);
            v.as_ref().map(|a| put_assignment(&mut value, a)).is_some()
        }
        ConsumerRecord::Current {
            member_id,
            value: v,
        } => {
            key.put_i16(8);
            put_str(&mut key, group);
            put_str(&mut key, member_id);
            v.as_ref()
                .map(|c| {
                    value.put_i32(c.epoch);
                    value.put_i32(c.previous_epoch);
                    value.put_i8(c.state);
                    put_assignment(&mut value, &c.assigned);
                    put_assignment(&mut value, &c.pending_revocation);
                })
                .is_some()
        }
    };
    let tagged = matches!(
        record,
        ConsumerRecord::Member {
            value: Some(MemberSubscription {
                classic: Some(_),
                ..
            }),
            ..
        }
    );
    if !tagged {
        value.put_u8(0); // no tagged fields
    }
    (key.freeze(), present.then(|| value.freeze()))
}

fn decode_consumer(kind: i16, mut k: &[u8], value: Option<&[u8]>) -> Result<GroupRecord, String> {
    let group = get_str(&mut k)?;
    let member_id = if kind >= 5 && kind != 6 {
        get_str(&mut k)?
    } else {
        String::new()
    };
    let mut v = match value {
        Some(mut v) => {
            let version = get_i16(&mut v)?;
            if version != 0 {
                return Err(format!(
                    "consumer group record type {kind} value version {version}"
                ));
            }
            Some(v)
        }
        None => None,
    };
    let record = match (kind, v.as_mut()) {
        (3, v) => ConsumerRecord::GroupEpoch(v.map(get_i32).transpose()?),
        (6, v) => ConsumerRecord::TargetEpoch(v.map(get_i32).transpose()?),
        (5, v) => ConsumerRecord::Member {
            member_id,
            value: v
                .map(|v| -> Result<MemberSubscription, String> {
                    let instance_id = get_compact_str(v)?;
                    let rack_id = get_compact_str(v)?;
                    let client_id = get_compact_str(v)?.unwrap_or_default();
                    let client_host = get_compact_str(v)?.unwrap_or_default();
                    let n = get_len(v)?;
                    let mut topic_names = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        topic_names.push(get_compact_str(v)?.unwrap_or_default());
                    }
                    Ok(MemberSubscription {
                        instance_id,
                        rack_id,
                        client_id,
                        client_host,
                        topic_names,
                        topic_regex: get_compact_str(v)?,
                        rebalance_timeout_ms: get_i32(v)?,
                        server_assignor: get_compact_str(v)?,
                        classic: get_classic(v)?,
                    })
                })
                .transpose()?,
        },
        (7, v) => ConsumerRecord::Target {
            member_id,
            value: v.map(get_assignment).transpose()?,
        },
        (_, v) => ConsumerRecord::Current {
            member_id,
            value: v
                .map(|v| -> Result<CurrentAssignment, String> {
                    Ok(CurrentAssignment {
                        epoch: get_i32(v)?,
                        previous_epoch: get_i32(v)?,
                        state: {
                            need(v, 1)?;
                            v.get_i8()
                        },
                        assigned: get_assignment(v)?,
                        pending_revocation: get_assignment(v)?,
                    })
                })
                .transpose()?,
        },
    };
    Ok(GroupRecord::Consumer { group, record })
}

/// The tagged fields closing a member record: field 0 is ClassicMemberMetadata,
/// others are skipped.
fn get_classic(v: &mut &[u8]) -> Result<Option<ClassicMemberMetadata>, String> {
    let mut classic = None;
    for _ in 0..get_uvarint(v)? {
        let tag = get_uvarint(v)?;
        let size = usize::try_from(get_uvarint(v)?).map_err(|_| "tag too large".to_string())?;
        need(v, size)?;
        let mut field = &v[..size];
        v.advance(size);
        if tag != 0 {
            continue;
        }
        let session_timeout_ms = get_i32(&mut field)?;
        let mut protocols = Vec::new();
        for _ in 0..get_len(&mut field)? {
            let name = get_compact_str(&mut field)?.unwrap_or_default();
            let len = get_len(&mut field)?;
            let metadata = Bytes::copy_from_slice(&field[..len]);
            field.advance(len);
            get_uvarint(&mut field)?; // the protocol's tagged fields: none known
            protocols.push((name, metadata));
        }
        classic = Some(ClassicMemberMetadata {
            session_timeout_ms,
            protocols,
        });
    }
    Ok(classic)
}

fn put_uvarint(b: &mut BytesMut, mut n: u64) {
    while n >= 0x80 {
        b.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    b.put_u8(n as u8);
}

fn get_uvarint(b: &mut &[u8]) -> Result<u64, String> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        need(b, 1)?;
        let byte = b.get_u8();
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err("varint too long".into())
}

/// A compact array's or string's length (stored plus one; zero is null).
fn get_len(b: &mut &[u8]) -> Result<usize, String> {
    let n = get_uvarint(b)?;
    let n = usize::try_from(n.saturating_sub(1)).map_err(|_| "length too large".to_string())?;
    // Every element takes at least a byte: a longer count is corrupt.
    if n > b.len() {
        return Err(format!("length {n} past the record's end"));
    }
    Ok(n)
}

fn put_compact_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            put_uvarint(b, s.len() as u64 + 1);
            b.put_slice(s.as_bytes());
        }
        None => put_uvarint(b, 0),
    }
}

fn get_compact_str(b: &mut &[u8]) -> Result<Option<String>, String> {
    let n = get_uvarint(b)?;
    if n == 0 {
        return Ok(None);
    }
    let len = usize::try_from(n - 1).map_err(|_| "length too large".to_string())?;
    need(b, len)?;
    let s = String::from_utf8(b[..len].to_vec()).map_err(|_| "string is not UTF-8".to_string())?;
    b.advance(len);
    Ok(Some(s))
}

fn put_assignment(b: &mut BytesMut, a: &Assignment) {
    put_uvarint(b, a.len() as u64 + 1);
    for (topic, partitions) in a {
        b.put_slice(topic);
        put_uvarint(b, partitions.len() as u64 + 1);
        for p in partitions {
            b.put_i32(*p);
        }
        b.put_u8(0);
    }
}

fn get_assignment(b: &mut &[u8]) -> Result<Assignment, String> {
    let mut out = Assignment::new();
    for _ in 0..get_len(b)? {
        need(b, 16)?;
        let mut topic = [0u8; 16];
        b.copy_to_slice(&mut topic);
        let mut partitions = BTreeSet::new();
        for _ in 0..get_len(b)? {
            partitions.insert(get_i32(b)?);
        }
        get_uvarint(b)?; // tagged fields of the topic: none written
        out.insert(topic, partitions);
    }
    Ok(out)
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, s: &[u8]) {
    b.put_i32(s.len() as i32);
    b.put_slice(s);
}

fn need(b: &[u8], n: usize) -> Result<(), String> {
    if b.len() < n {
        Err(format!(
            "truncated record: {n} bytes wanted, {} left",
            b.len()
        ))
    } else {
        Ok(())
    }
}

fn get_i16(b: &mut &[u8]) -> Result<i16, String> {
    need(b, 2)?;
    Ok(b.get_i16())
}

fn get_i32(b: &mut &[u8]) -> Result<i32, String> {
    need(b, 4)?;
    Ok(b.get_i32())
}

fn get_i64(b: &mut &[u8]) -> Result<i64, String> {
    need(b, 8)?;
    Ok(b.get_i64())
}

fn get_nullable_str(b: &mut &[u8]) -> Result<Option<String>, String> {
    let len = get_i16(b)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(b, len)?;
    let s = String::from_utf8(b[..len].to_vec()).map_err(|_| "string is not UTF-8".to_string())?;
    b.advance(len);
    Ok(Some(s))
}

fn get_str(b: &mut &[u8]) -> Result<String, String> {
    get_nullable_str(b)?.ok_or_else(|| "null where a string is required".to_string())
}

fn get_bytes(b: &mut &[u8]) -> Result<Bytes, String> {
    let len = get_i32(b)?;
    let len = usize::try_from(len).unwrap_or(0);
    need(b, len)?;
    let out = Bytes::copy_from_slice(&b[..len]);
    b.advance(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let records = [
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetValue {
                    offset: 42,
                    leader_epoch: -1,
                    metadata: "meta".into(),
                    commit_timestamp_ms: 1_700_000_000_000,
                }),
            },
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: None,
            },
            GroupRecord::Metadata {
                group: "g".into(),
                value: Some(GroupMetadata {
                    protocol_type: "consumer".into(),
                    generation: 7,
                    protocol: Some("range".into()),
                    leader: Some("m1".into()),
                    members: vec![MemberMetadata {
                        member_id: "m1".into(),
                        instance_id: Some("i1".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300_000,
                        session_timeout_ms: 45_000,
                        subscription: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"asg"),
                    }],
                }),
            },
            GroupRecord::Metadata {
                group: "g".into(),
                value: None,
            },
            GroupRecord::Consumer {
                group: "g".into(),
                record: ConsumerRecord::GroupEpoch(Some(4)),
            },
            GroupRecord::Consumer {
                group: "g".into(),
                record: ConsumerRecord::TargetEpoch(None),
            },
            GroupRecord::Consumer {
                group: "g".into(),
                record: ConsumerRecord::Member {
                    member_id: "m".into(),
                    value: Some(MemberSubscription {
                        instance_id: Some("i".into()),
                        rack_id: None,
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        topic_names: vec!["a".into(), "b".into()],
                        topic_regex: Some("t.*".into()),
                        rebalance_timeout_ms: 300_000,
                        server_assignor: Some("range".into()),
                        classic: None,
                    }),
                },
            },
            GroupRecord::Consumer {
                group: "g".into(),
                record: ConsumerRecord::Member {
                    member_id: "classic".into(),
                    value: Some(MemberSubscription {
                        client_id: "c".into(),
                        topic_names: vec!["a".into()],
                        rebalance_timeout_ms: 300_000,
                        classic: Some(ClassicMemberMetadata {
                            session_timeout_ms: 45_000,
                            protocols: vec![
                                (
                                    "cooperative-sticky".into(),
                                    Bytes::from_static(b"\0\x03sub"),
                                ),
                                ("range".into(), Bytes::new()),
                            ],
                        }),
                        ..MemberSubscription::default()
                    }),
                },
            },
            GroupRecord::Consumer {
                group: "g".into(),
                record: ConsumerRecord::Current {
                    member_id: "m".into(),
                    value: Some(CurrentAssignment {
                        epoch: 5,
                        previous_epoch: 4,
                        state: 1,
                        assigned: Assignment::from([([7; 16], BTreeSet::from([0, 2]))]),
                        pending_revocation: Assignment::from([([8; 16], BTreeSet::from([1]))]),
                    }),
                },
            },
            GroupRecord::Consumer {
                group: "g".into(),
                record: ConsumerRecord::Target {
                    member_id: "m".into(),
                    value: Some(Assignment::new()),
                },
            },
        ];
        for r in records {
            let (k, v) = r.encode();
            assert_eq!(GroupRecord::decode(&k, v.as_deref()).unwrap(), r);
        }
    }

    #[test]
    fn truncated_records_are_errors() {
        let (k, v) = GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: Some(OffsetValue {
                offset: 1,
                leader_epoch: 0,
                metadata: String::new(),
                commit_timestamp_ms: 0,
            }),
        }
        .encode();
        let v = v.unwrap();
        for cut in 0..v.len() {
            assert!(GroupRecord::decode(&k, Some(&v[..cut])).is_err());
        }
        for cut in 0..k.len() {
            assert!(GroupRecord::decode(&k[..cut], None).is_err());
        }
    }
}
