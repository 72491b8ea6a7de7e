//! A small Kafka client on the same protocol crate and the `Network` seam: used by the
//! CLI, the benchmark and (later) the simulated workloads. Requests may be pipelined:
//! `send` writes one, `receive` reads the next response in order.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, ProduceRequest, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_core::env::{Network, Stream};
use sluice_storage::batch::BatchHeader;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::frame;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame: {0}")]
    Frame(#[from] frame::FrameError),
    #[error("connection closed by the broker")]
    Closed,
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("the broker does not serve {0:?}")]
    Unsupported(ApiKey),
    #[error("correlation id mismatch: sent {sent}, got {got}")]
    Correlation { sent: i32, got: i32 },
}

pub struct Client {
    stream: Box<dyn Stream>,
    next_correlation: i32,
    in_flight: VecDeque<(i32, ApiKey, i16)>,
    /// The broker's version range per API key.
    versions: BTreeMap<i16, (i16, i16)>,
    client_id: String,
}

impl Client {
    /// Connects and learns the broker's API versions.
    pub async fn connect(
        net: &dyn Network,
        addr: &str,
        client_id: &str,
    ) -> Result<Client, ClientError> {
        let stream = net
            .connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.into(),
                source,
            })?;
        let mut client = Client {
            stream,
            next_correlation: 1,
            in_flight: VecDeque::new(),
            versions: BTreeMap::new(),
            client_id: client_id.into(),
        };
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp = client.call(req, 3).await?;
        if resp.error_code != 0 {
            return Err(ClientError::Protocol(format!(
                "ApiVersions failed with error {}",
                resp.error_code
            )));
        }
        client.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(client)
    }

    /// The highest version both sides speak, capped at `ours`.
    pub fn version(&self, api: ApiKey, ours: i16) -> Result<i16, ClientError> {
        let &(min, max) = self
            .versions
            .get(&(api as i16))
            .ok_or(ClientError::Unsupported(api))?;
        let v = max.min(ours);
        if v < min {
            return Err(ClientError::Unsupported(api));
        }
        Ok(v)
    }

    /// Writes a request without waiting for its response.
    pub async fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<i32, ClientError> {
        let api = ApiKey::try_from(R::KEY)
            .map_err(|_| ClientError::Protocol("unknown api key".into()))?;
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut buf = BytesMut::with_capacity(128);
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .and_then(|()| req.encode(&mut buf, version))
            .map_err(|e| ClientError::Protocol(format!("encode {api:?}: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await?;
        // AsyncWrite only promises delivery after a flush (the simulated TCP buffers).
        self.stream.flush().await?;
        Ok(correlation_id)
    }

    /// Notes that a response is expected for a request sent with [`Client::send`].
    pub fn expect(&mut self, correlation_id: i32, api: ApiKey, version: i16) {
        self.in_flight.push_back((correlation_id, api, version));
    }

    /// Reads the next response, which must be for request type `R`.
    pub async fn receive<R: Request>(&mut self) -> Result<R::Response, ClientError> {
        let (sent, api, version) = self
            .in_flight
            .pop_front()
            .ok_or_else(|| ClientError::Protocol("no request in flight".into()))?;
        let mut frame = frame::read_frame(&mut self.stream, 1 << 30)
            .await?
            .ok_or(ClientError::Closed)?
            .freeze();
        let header_version = if api == ApiKey::ApiVersions {
            0
        } else {
            api.response_header_version(version)
        };
        let header = ResponseHeader::decode(&mut frame, header_version)
            .map_err(|e| ClientError::Protocol(format!("response header: {e}")))?;
        if header.correlation_id != sent {
            return Err(ClientError::Correlation {
                sent,
                got: header.correlation_id,
            });
        }
        R::Response::decode(&mut frame, version)
            .map_err(|e| ClientError::Protocol(format!("decode {api:?} v{version}: {e}")))
    }

    /// Sends a request and waits for its response.
    pub async fn call<R: Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let api = ApiKey::try_from(R::KEY)
            .map_err(|_| ClientError::Protocol("unknown api key".into()))?;
        let id = self.send(&req, version).await?;
        self.expect(id, api, version);
        self.receive::<R>().await
    }

    /// Sends raw bytes (for tests of malformed input) and reads one raw frame back.
    pub async fn raw(&mut self, bytes: &[u8]) -> Result<Option<Bytes>, ClientError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut body = vec![0u8; (&len[..]).get_i32().max(0) as usize];
        self.stream.read_exact(&mut body).await?;
        Ok(Some(body.into()))
    }
}

/// A Produce request for one topic: a batch per partition.
pub fn produce_request(
    topic: &str,
    acks: i16,
    timeout_ms: i32,
    batches: impl IntoIterator<Item = (i32, Bytes)>,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(
                batches
                    .into_iter()
                    .map(|(p, records)| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(records))
                    })
                    .collect(),
            )])
}

/// A (sessionless) Fetch request for one topic from the given (partition, offset)
/// positions: answered at once when data is there, else after `max_wait_ms`.
pub fn fetch_request(
    topic: &str,
    positions: impl IntoIterator<Item = (i32, i64)>,
    max_wait_ms: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                positions
                    .into_iter()
                    .map(|(p, offset)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )])
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
}

/// Encodes messages as one v2 record batch.
pub fn encode_batch(messages: &[Message], compression: Compression) -> Result<Bytes, ClientError> {
    encode_producer_batch(messages, compression, None)
}

/// Encodes messages as one v2 record batch, every record carrying `headers`.
pub fn encode_batch_with_headers(
    messages: &[Message],
    headers: &[(String, Option<Bytes>)],
    compression: Compression,
) -> Result<Bytes, ClientError> {
    encode_records(messages, headers, compression, None, false)
}

/// An idempotent producer's place in a partition: producer id, epoch, and the
/// sequence number of the batch's first record (-1: none, as for the offsets a
/// transaction commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    pub producer_id: i64,
    pub epoch: i16,
    pub first: i32,
}

/// Encodes messages as one v2 record batch, stamped with the producer's sequence
/// when it is idempotent.
pub fn encode_producer_batch(
    messages: &[Message],
    compression: Compression,
    producer: Option<Sequence>,
) -> Result<Bytes, ClientError> {
    encode_records(messages, &[], compression, producer, false)
}

/// Encodes messages as one v2 batch of a producer's transaction.
pub fn encode_transactional_batch(
    messages: &[Message],
    compression: Compression,
    producer: Sequence,
) -> Result<Bytes, ClientError> {
    encode_records(messages, &[], compression, Some(producer), true)
}

fn encode_records(
    messages: &[Message],
    headers: &[(String, Option<Bytes>)],
    compression: Compression,
    producer: Option<Sequence>,
    transactional: bool,
) -> Result<Bytes, ClientError> {
    let records: Vec<Record> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.map_or(-1, |p| p.producer_id),
            producer_epoch: producer.map_or(-1, |p| p.epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder groups records whose offset - sequence is constant.
            sequence: producer
                .map_or(0, |p| p.first.max(0))
                .wrapping_add(i as i32),
            timestamp: m.timestamp,
            key: m.key.clone(),
            value: m.value.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| ClientError::Protocol(format!("encode batch: {e}")))?;
    if producer.is_none_or(|p| p.first < 0) {
        sluice_storage::batch::clear_base_sequence(&mut buf);
    }
    Ok(buf.freeze())
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// The record's headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl From<Record> for Consumed {
    fn from(r: Record) -> Self {
        Consumed {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// Decodes fetched batches, skipping records below `from` and control records, and
/// checking every batch's CRC (as the Java client's check.crcs does). A trailing
/// partial batch is ignored.
pub fn decode_batches(data: Bytes, from: i64) -> Result<Vec<Consumed>, ClientError> {
    let mut out = Vec::new();
    for_each_record(data, |h, r| {
        if !r.control && r.offset >= from {
            let mut c = Consumed::from(r);
            // A LogAppendTime batch's records all carry the broker's time, which only
            // the batch's max timestamp holds (as Kafka's clients read it).
            if h.attributes & 0x08 != 0 {
                c.timestamp = h.max_timestamp;
            }
            out.push(c);
        }
    })?;
    Ok(out)
}

/// Calls `f` with each whole batch's header and records (control records included),
/// after checking the batch's CRC. A trailing partial batch is ignored.
pub fn for_each_record(
    mut data: Bytes,
    mut f: impl FnMut(&BatchHeader, Record),
) -> Result<(), ClientError> {
    while data.len() >= 12 {
        let size = 12 + (&data[8..12]).get_i32().max(0) as usize;
        if data.len() < size {
            break;
        }
        let mut one = data.split_to(size);
        let header = sluice_storage::batch::validate(&one)
            .map_err(|e| ClientError::Protocol(format!("fetched batch: {e}")))?;
        let set = RecordBatchDecoder::decode(&mut one)
            .map_err(|e| ClientError::Protocol(format!("decode records: {e}")))?;
        for r in set.records {
            f(&header, r);
        }
    }
    Ok(())
}

/// Decodes a read_committed fetch as Kafka's consumers do: records of the aborted
/// transactions listed (producer id, first offset) are dropped from their first
/// offset up to their abort marker; control records are never returned.
pub fn decode_committed(
    data: Bytes,
    from: i64,
    aborted: &[(i64, i64)],
) -> Result<Vec<Consumed>, ClientError> {
    let mut pending: Vec<(i64, i64)> = aborted.to_vec();
    pending.sort_by_key(|&(_, first)| std::cmp::Reverse(first));
    let mut skipping: std::collections::BTreeSet<i64> = Default::default();
    let mut out = Vec::new();
    for_each_record(data, |h, r| {
        while pending
            .last()
            .is_some_and(|&(_, first)| first <= h.last_offset())
        {
            if let Some((pid, _)) = pending.pop() {
                skipping.insert(pid);
            }
        }
        if h.is_control() {
            skipping.remove(&h.producer_id);
        } else if !(h.is_transactional() && skipping.contains(&h.producer_id)) && r.offset >= from {
            out.push(Consumed::from(r));
        }
    })?;
    Ok(out)
}

/// Kafka's default partitioner hash (murmur2), so keys land where the Java client and
/// kafka-python would put them.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const SEED: u32 = 0x9747_b28c;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let msgs: Vec<Message> = (0..5)
                .map(|i| Message {
                    key: Some(Bytes::from(format!("k{i}"))),
                    value: Some(Bytes::from(vec![b'v'; i * 10])),
                    timestamp: 1000 + i as i64,
                })
                .collect();
            let batch = encode_batch(&msgs, c).unwrap();
            let header = sluice_storage::batch::validate_produced(&batch).unwrap();
            assert_eq!(header.record_count, 5);
            let back = decode_batches(batch, 2).unwrap();
            assert_eq!(back.len(), 3);
            assert_eq!(back[0].key.as_deref(), Some(&b"k2"[..]));
            assert_eq!(back[2].timestamp, 1004);
        }
    }
}
