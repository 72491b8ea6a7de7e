"""confluent-kafka (librdkafka) against the real broker."""

import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions

from helpers import by_partition, consume_all, create_topic, produce_confluent

N = 100_000


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_100k_records_read_back_exactly_in_partition_order(broker, acks):
    topic = f"acks-{acks}"
    create_topic(broker.bootstrap, topic, 4)
    records = [(f"k{i % 97}".encode(), f"v{i}".encode()) for i in range(N)]
    acked = produce_confluent(broker.bootstrap, topic, records, acks)
    assert len(acked) == N
    got = consume_all(broker.bootstrap, topic, 4, N)
    assert len(got) == N, f"read {len(got)} of {N}"
    assert sorted(v for *_, v in got) == sorted(v for _, v in records)
    for p, recs in by_partition(got).items():
        offsets = [o for o, _, _ in recs]
        assert offsets == list(range(len(recs))), f"partition {p} offsets not dense"
        # Per-partition order is the order the producer sent them in.
        sent = [int(v[1:]) for _, _, v in recs]
        assert sent == sorted(sent), f"partition {p} out of order"
    if acks != 0:
        # Every acknowledged offset holds the acknowledged record.
        stored = {(p, o): v for p, o, _, v in got}
        assert all(stored[(p, o)] == v for p, o, _, v in acked)


def test_same_key_same_partition(broker):
    create_topic(broker.bootstrap, "keys", 6)
    records = [(f"user-{i % 50}".encode(), b"x") for i in range(5000)]
    acked = produce_confluent(broker.bootstrap, "keys", records, "all", partitioner="murmur2_random")
    where = {}
    for p, _, k, _ in acked:
        where.setdefault(k, set()).add(p)
    assert all(len(ps) == 1 for ps in where.values())
    assert len({next(iter(ps)) for ps in where.values()}) > 1, "keys should spread over partitions"
    # The same partitions the sluice CLI (Kafka's murmur2) picks.
    out = broker.cli("produce", "keys", stdin="user-7:y\n")
    assert out.returncode == 0
    got = consume_all(broker.bootstrap, "keys", 6, 5001)
    p7 = {p for p, _, k, v in got if k == b"user-7"}
    assert len(p7) == 1


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_codecs(broker, codec):
    topic = f"codec-{codec}"
    create_topic(broker.bootstrap, topic, 2)
    records = [(None, (f"{codec}-{i}-" + "x" * (i % 300)).encode()) for i in range(20_000)]
    produce_confluent(broker.bootstrap, topic, records, "all", compression=codec)
    got = consume_all(broker.bootstrap, topic, 2, len(records))
    assert sorted(v for *_, v in got) == sorted(v for _, v in records)
    # Stored as received: the batches on disk carry the codec in their attributes.
    codec_id = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[codec]
    # The sticky partitioner may put every batch in one partition: read both.
    codecs = set()
    for seg_path in broker.data_dir.glob(f"{topic}-*/*.log"):
        seg, pos = seg_path.read_bytes(), 0
        while pos + 61 <= len(seg):
            codecs.add(seg[pos + 22] & 0x07)
            pos += 12 + int.from_bytes(seg[pos + 8:pos + 12], "big")
    assert codec_id in codecs, codecs


def test_list_offsets_by_timestamp(broker):
    create_topic(broker.bootstrap, "times", 1)
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    base = 1_700_000_000_000
    for i in range(100):
        p.produce("times", value=f"r{i}".encode(), timestamp=base + i * 1000)
        if i % 10 == 9:
            p.flush()
    p.flush()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "t"})
    for ts, want in [(base, 0), (base + 41_500, 42), (base + 99_000, 99), (base - 5, 0), (base + 200_000, -1)]:
        [tp] = c.offsets_for_times([TopicPartition("times", 0, ts)], timeout=10)
        assert tp.error is None
        assert tp.offset == want, (ts, tp.offset, want)
    low, high = c.get_watermark_offsets(TopicPartition("times", 0), timeout=10)
    assert (low, high) == (0, 100)
    c.close()


def test_admin_create_partitions_and_configs(broker):
    create_topic(broker.bootstrap, "adm", 2, **{"retention.ms": "3600000"})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_partitions([NewPartitions("adm", 5)])["adm"].result(10)
    md = admin.list_topics(timeout=10)
    assert len(md.topics["adm"].partitions) == 5
    res = admin.describe_configs([ConfigResource("topic", "adm")])
    cfg = list(res.values())[0].result(10)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["max.message.bytes"].value == "1048588"
    fut = admin.create_partitions([NewPartitions("adm", 3)])["adm"]
    with pytest.raises(Exception, match="INVALID_PARTITIONS|partitions"):
        fut.result(10)
    admin.delete_topics(["adm"])["adm"].result(10)
    assert "adm" not in admin.list_topics(timeout=10).topics


def test_both_localhost_spellings(broker):
    port = broker.port
    for host in ["localhost", "127.0.0.1"]:
        create_topic(f"{host}:{port}", f"spell-{host.replace('.', '_')}", 1)
        t0 = time.time()
        produce_confluent(f"{host}:{port}", f"spell-{host.replace('.', '_')}", [(None, b"x")], "all")
        assert time.time() - t0 < 5


def test_unknown_topic_is_reported(broker):
    from confluent_kafka import KafkaError, Producer

    broker_admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    md = broker_admin.list_topics("does-not-exist-yet", timeout=10)
    # Auto-creation (auto.create.topics.enable=true) made it with num.partitions=1.
    assert len(md.topics["does-not-exist-yet"].partitions) == 1
    errs = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 3000, "allow.auto.create.topics": False})
    p.produce("does-not-exist-yet", value=b"x", partition=5, on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    assert errs and errs[0] is not None
    assert errs[0].code() in (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART)


def test_topic_configs_are_enforced(broker):
    """compression.type recompresses what is stored, LogAppendTime gives every record
    the broker's time, message.timestamp.before.max.ms refuses old timestamps
    (INVALID_TIMESTAMP), and a config Sluice cannot honour is refused by name."""
    from confluent_kafka import KafkaError, KafkaException, Producer, TIMESTAMP_LOG_APPEND_TIME
    from confluent_kafka.admin import NewTopic
    create_topic(broker.bootstrap, "stamped", 1,
                 **{"message.timestamp.type": "LogAppendTime", "compression.type": "zstd"})
    create_topic(broker.bootstrap, "recent", 1, **{"message.timestamp.before.max.ms": "60000"})
    before = int(time.time() * 1000)
    outcomes = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "compression.type": "gzip"})
    for topic in ("stamped", "recent"):
        for i in range(10):
            p.produce(topic, value=b"v%d" % i, timestamp=1_000_000 + i,
                      on_delivery=lambda err, msg: outcomes.append((msg.topic(), err)))
    assert p.flush(30) == 0
    after = int(time.time() * 1000)
    errors = {t: {e.code() if e else None for tt, e in outcomes if tt == t} for t in ("stamped", "recent")}
    assert errors == {"stamped": {None}, "recent": {KafkaError.INVALID_TIMESTAMP}}, errors

    got = consume_all(broker.bootstrap, "stamped", 1, 10)
    assert [v for *_, v in got] == [b"v%d" % i for i in range(10)]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ts"})
    c.assign([TopicPartition("stamped", 0, 0)])
    m = None
    while m is None or m.error():
        m = c.poll(5)
    c.close()
    kind, ts = m.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after, (kind, ts, before, after)
    # Stored zstd (codec 4 in the batch attributes), though the producer sent gzip.
    segment = next((broker.data_dir / "stamped-0").glob("*.log")).read_bytes()
    assert segment[21:23] == b"\x00\x0c", segment[21:23].hex()  # LogAppendTime | zstd

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fut = admin.create_topics([NewTopic("unclean", 1, 1, config={"unclean.leader.election.enable": "true"})])
    with pytest.raises(KafkaException) as e:
        fut["unclean"].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert "unclean.leader.election.enable" in e.value.args[0].str()


def test_admin_describe_topics_elect_leaders_and_append_configs(broker):
    """librdkafka's admin calls for Kafka 4's surface: describe_topics, elect_leaders
    (a partition its preferred replica leads: not needed), incremental_alter_configs
    with APPEND on a list config (KIP-339)."""
    from confluent_kafka import ElectionType, KafkaError, TopicCollection
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry
    create_topic(broker.bootstrap, "adm4", 3)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    d = admin.describe_topics(TopicCollection(["adm4"]))["adm4"].result(10)
    assert [(p.id, p.leader.id) for p in d.partitions] == [(0, 1), (1, 1), (2, 1)]
    elected = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("adm4", 0)]).result(10)
    assert [e.code() for e in elected.values()] == [KafkaError.ELECTION_NOT_NEEDED]
    resource = ConfigResource("topic", "adm4", incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])
    for f in admin.incremental_alter_configs([resource]).values():
        f.result(10)
    configs = admin.describe_configs([ConfigResource("topic", "adm4")])
    assert next(iter(configs.values())).result(10)["cleanup.policy"].value == "delete,compact"
