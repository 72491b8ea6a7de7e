//! The records of `__consumer_offsets`, in Kafka's own key and value schemas (offset
//! commit key v1 / value v3, group metadata key v2 / value v3), so the topic reads the
//! same as a Kafka broker's. A record with no value is a tombstone.

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
            GroupRecord::Offset { group, .. } | GroupRecord::Metadata { group, .. } => group,
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
            v => Err(format!("unknown __consumer_offsets key version {v}")),
        }
    }
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
