"""kafka-python against the real broker."""

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic

from helpers import by_partition

N = 100_000


def producer(broker, **kw):
    # Plain producers; the idempotent and transactional ones have their own tests.
    return KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False, linger_ms=5, **kw)


def consume(broker, topic, partitions, expected):
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=5000, enable_auto_commit=False)
    c.assign([TopicPartition(topic, p) for p in range(partitions)])
    c.seek_to_beginning()
    out = []
    for m in c:
        out.append((m.partition, m.offset, m.key, m.value))
        if len(out) >= expected:
            break
    c.close()
    return out


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_100k_records_at_each_acks_level(broker, acks):
    topic = f"kp-acks-{acks}"
    KafkaAdminClient(bootstrap_servers=broker.bootstrap).create_topics([NewTopic(topic, 3, 1)])
    p = producer(broker, acks=acks, batch_size=64 * 1024)
    futures = [p.send(topic, key=b"k%d" % (i % 31), value=b"v%d" % i) for i in range(N)]
    p.flush(120)
    if acks != 0:
        metas = [f.get(30) for f in futures]
        assert len(metas) == N
    got = consume(broker, topic, 3, N)
    assert len(got) == N
    assert sorted(int(v[1:]) for *_, v in got) == list(range(N))
    for part, recs in by_partition(got).items():
        assert [o for o, _, _ in recs] == list(range(len(recs)))
        sent = [int(v[1:]) for _, _, v in recs]
        assert sent == sorted(sent), f"partition {part} out of order"
    keys = {}
    for part, _, k, _ in got:
        keys.setdefault(k, set()).add(part)
    assert all(len(s) == 1 for s in keys.values()), "a key landed in two partitions"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_codecs(broker, codec):
    topic = f"kp-{codec}"
    KafkaAdminClient(bootstrap_servers=broker.bootstrap).create_topics([NewTopic(topic, 1, 1)])
    p = producer(broker, acks="all", compression_type=codec)
    values = [(f"{codec}-{i}-" + "y" * (i % 200)).encode() for i in range(5000)]
    for v in values:
        p.send(topic, value=v)
    p.flush(60)
    got = consume(broker, topic, 1, len(values))
    assert [v for *_, v in got] == values


def test_offsets_for_times_and_admin(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic("kp-t", 2, 1)])
    p = producer(broker, acks="all")
    base = 1_600_000_000_000
    for i in range(50):
        p.send("kp-t", value=b"%d" % i, partition=0, timestamp_ms=base + i * 10)
    p.flush()
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    res = c.offsets_for_times({TopicPartition("kp-t", 0): base + 255})
    assert res[TopicPartition("kp-t", 0)].offset == 26
    assert c.offsets_for_times({TopicPartition("kp-t", 0): base + 10_000})[TopicPartition("kp-t", 0)] is None
    assert c.beginning_offsets([TopicPartition("kp-t", 0)])[TopicPartition("kp-t", 0)] == 0
    assert c.end_offsets([TopicPartition("kp-t", 0)])[TopicPartition("kp-t", 0)] == 50
    c.close()
    admin.create_partitions({"kp-t": NewPartitions(4)})
    cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-t")], config_filter="all")
    assert cfg["topic"]["kp-t"]["cleanup.policy"]["value"] == "delete"
    assert "kp-t" in admin.list_topics()
    admin.delete_topics(["kp-t"])
    assert "kp-t" not in admin.list_topics()


def test_default_idempotent_producer_just_works(broker):
    """kafka-python 3 producers are idempotent by default (InitProducerId)."""
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    assert p.config["enable_idempotence"]
    futures = [p.send("kp-idem", key=b"%d" % (i % 4), value=b"v%d" % i) for i in range(10_000)]
    p.flush()
    offsets = {(f.get(10).partition, f.get(10).offset) for f in futures}
    assert len(offsets) == 10_000
    p.close()
    c = KafkaConsumer("kp-idem", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                      consumer_timeout_ms=5000)
    values = sorted(m.value for m in c)
    c.close()
    assert values == sorted(b"v%d" % i for i in range(10_000))


def test_the_version_probe_sees_kafka_4(broker):
    """kafka-python infers the broker's version from its ApiVersions answer (ListOffsets
    v10 marks Kafka 4.0) and picks its requests by it."""
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        assert c._client.check_version() >= (4, 0)
    finally:
        c.close()
