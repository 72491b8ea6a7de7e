#![cfg(not(madsim))]
//! Random and truncated frames never panic the request decoder: they decode or fail
//! with an error.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind};
use proptest::prelude::*;
use sluice_net::frame::parse_request;
use sluice_net::handlers::supported_versions;

// As in the binary: hostile array counts must not abort the process.
#[global_allocator]
static ALLOC: sluice_net::guard_alloc::GuardedAlloc = sluice_net::guard_alloc::GuardedAlloc;

const SERVED: [i16; 11] = [0, 1, 2, 3, 10, 18, 19, 20, 32, 37, 60];

fn decode(frame: Bytes) {
    if let Ok(req) = parse_request(frame) {
        if let Some((min, max)) = supported_versions(req.api_key) {
            let v = req.header.request_api_version;
            if (min..=max).contains(&v) {
                let mut body = req.body;
                let _ = RequestKind::decode(req.api_key, &mut body, v);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode(Bytes::from(bytes));
    }

    #[test]
    fn served_headers_with_random_bodies_never_panic(
        key in proptest::sample::select(SERVED.to_vec()),
        version in 0i16..14,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut f = BytesMut::new();
        f.put_i16(key);
        f.put_i16(version);
        f.put_i32(7);
        f.put_i16(-1);
        f.put_slice(&body);
        decode(f.freeze());
    }

    #[test]
    fn truncations_of_a_valid_request_never_panic(cut in 0usize..200) {
        let _ = ApiKey::Produce;
        let req = valid_produce();
        decode(req.slice(..cut.min(req.len())));
    }
}

fn valid_produce() -> Bytes {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(9)
        .with_correlation_id(1)
        .encode(&mut b, 2)
        .unwrap();
    ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from_static(&[1; 80])))])])
        .encode(&mut b, 9)
        .unwrap();
    b.freeze()
}
