//! The records of `__transaction_state`, in Kafka's schemas (key version 0: the
//! transactional id; value version 0: producer id and epoch, timeout, state, the
//! partitions in the transaction, timestamps). No value is a tombstone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::TxnState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: Vec<(String, i32)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub value: Option<TxnValue>,
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn need(b: &[u8], n: usize) -> Result<(), String> {
    if b.len() < n {
        Err(format!(
            "truncated transaction record: {n} bytes wanted, {} left",
            b.len()
        ))
    } else {
        Ok(())
    }
}

fn get_str(b: &mut &[u8]) -> Result<String, String> {
    need(b, 2)?;
    let len = usize::try_from(b.get_i16()).map_err(|_| "null string".to_string())?;
    need(b, len)?;
    let s = String::from_utf8(b[..len].to_vec()).map_err(|_| "string is not UTF-8".to_string())?;
    b.advance(len);
    Ok(s)
}

impl TxnState {
    /// Kafka's status byte.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
        }
    }

    fn from_id(id: i8) -> Result<TxnState, String> {
        Ok(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            other => return Err(format!("unknown transaction state {other}")),
        })
    }
}

impl TxnRecord {
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        key.put_i16(0);
        put_str(&mut key, &self.transactional_id);
        let value = self.value.as_ref().map(|v| {
            let mut b = BytesMut::new();
            b.put_i16(0);
            b.put_i64(v.producer_id);
            b.put_i16(v.epoch);
            b.put_i32(v.timeout_ms);
            b.put_i8(v.state.id());
            let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
            for (t, p) in &v.partitions {
                match topics.last_mut() {
                    Some((last, ps)) if *last == t.as_str() => ps.push(*p),
                    _ => topics.push((t, vec![*p])),
                }
            }
            b.put_i32(topics.len() as i32);
            for (t, ps) in topics {
                put_str(&mut b, t);
                b.put_i32(ps.len() as i32);
                for p in ps {
                    b.put_i32(p);
                }
            }
            b.put_i64(v.last_update_ms);
            b.put_i64(v.start_ms);
            b.freeze()
        });
        (key.freeze(), value)
    }

    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<TxnRecord, String> {
        let mut k = key;
        need(k, 2)?;
        let version = k.get_i16();
        if version != 0 {
            return Err(format!("unknown __transaction_state key version {version}"));
        }
        let transactional_id = get_str(&mut k)?;
        let value = match value {
            None => None,
            Some(mut v) => {
                need(v, 2 + 8 + 2 + 4 + 1 + 4)?;
                let _version = v.get_i16();
                let producer_id = v.get_i64();
                let epoch = v.get_i16();
                let timeout_ms = v.get_i32();
                let state = TxnState::from_id(v.get_i8())?;
                let topics = v.get_i32();
                let mut partitions = Vec::new();
                for _ in 0..topics.max(0) {
                    let t = get_str(&mut v)?;
                    need(v, 4)?;
                    let n = v.get_i32();
                    for _ in 0..n.max(0) {
                        need(v, 4)?;
                        partitions.push((t.clone(), v.get_i32()));
                    }
                }
                need(v, 16)?;
                Some(TxnValue {
                    producer_id,
                    epoch,
                    timeout_ms,
                    state,
                    partitions,
                    last_update_ms: v.get_i64(),
                    start_ms: v.get_i64(),
                })
            }
        };
        Ok(TxnRecord {
            transactional_id,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncation_is_an_error() {
        let r = TxnRecord {
            transactional_id: "tx".into(),
            value: Some(TxnValue {
                producer_id: 9,
                epoch: 3,
                timeout_ms: 60_000,
                state: TxnState::PrepareCommit,
                partitions: vec![("a".into(), 0), ("a".into(), 2), ("b".into(), 1)],
                last_update_ms: 5,
                start_ms: 4,
            }),
        };
        let (k, v) = r.encode();
        assert_eq!(TxnRecord::decode(&k, v.as_deref()).unwrap(), r);
        let v = v.unwrap();
        for cut in 0..v.len() {
            assert!(TxnRecord::decode(&k, Some(&v[..cut])).is_err());
        }
    }
}
