"""DeleteRecords (KIP-107) with real clients: confluent-kafka's and kafka-python's
`delete_records` and `sluice topic trim` move a partition's log start offset; the
earliest offset, an `auto.offset.reset=earliest` consumer and a consumer positioned
below the start agree; the start survives `kill -9`; on a 3-node cluster every
in-sync replica follows it, so a new leader starts there too."""

import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTopicPartition

from helpers import create_topic, produce_confluent, wait_for
from test_cluster import partition_leader, start_cluster, status


def watermarks(bootstrap, topic, partition=0):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def first_offset_read(bootstrap, topic, start_at=None):
    """The first offset a consumer gets: from `start_at` if given (it is reset to the
    earliest when out of range), else by `auto.offset.reset=earliest` in a new group."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{time.time()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    if start_at is None:
        c.subscribe([topic])
    else:
        c.assign([TopicPartition(topic, 0, start_at)])
    deadline = time.time() + 30
    try:
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                return m.offset()
        raise AssertionError("no record read")
    finally:
        c.close()


def delete_with_confluent(bootstrap, topic, offset):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.delete_records([TopicPartition(topic, 0, offset)])
    return next(iter(fut.values())).result(30).low_watermark


def test_delete_records_moves_the_log_start_for_every_reader(broker, tmp_path):
    create_topic(broker.bootstrap, "trimmed", 1)
    produce_confluent(broker.bootstrap, "trimmed", [(None, f"v{i}".encode()) for i in range(100)], acks="all")

    assert delete_with_confluent(broker.bootstrap, "trimmed", 40) == 40
    assert watermarks(broker.bootstrap, "trimmed") == (40, 100)
    assert first_offset_read(broker.bootstrap, "trimmed") == 40
    assert first_offset_read(broker.bootstrap, "trimmed", start_at=10) == 40, "reset to the earliest"

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        result = admin.delete_records({KTopicPartition("trimmed", 0): 75})
        (meta,) = result.values()
        assert meta["low_watermark"] == 75, meta
    finally:
        admin.close()
    out = broker.cli("topic", "trim", "trimmed", "--partition", "0", "--offset", "90").stdout
    assert "now starts at offset 90" in out, out

    # The start is durable: a kill -9 and a restart keep it.
    broker.kill9()
    broker.start()
    assert watermarks(broker.bootstrap, "trimmed") == (90, 100)
    assert first_offset_read(broker.bootstrap, "trimmed") == 90

    # -1 deletes everything readable.
    assert delete_with_confluent(broker.bootstrap, "trimmed", -1) == 100
    assert watermarks(broker.bootstrap, "trimmed") == (100, 100)


def test_delete_records_refuses_what_kafka_refuses(broker):
    create_topic(broker.bootstrap, "short", 1)
    create_topic(broker.bootstrap, "table", 1, **{"cleanup.policy": "compact"})
    produce_confluent(broker.bootstrap, "short", [(None, b"x")] * 10, acks="all")

    with pytest.raises(KafkaException) as above_hw:
        delete_with_confluent(broker.bootstrap, "short", 11)
    assert above_hw.value.args[0].name() == "OFFSET_OUT_OF_RANGE"
    with pytest.raises(KafkaException) as compacted:
        delete_with_confluent(broker.bootstrap, "table", 0)
    assert compacted.value.args[0].name() == "POLICY_VIOLATION"
    r = broker.cli("topic", "trim", "short", "--partition", "0", "--offset", "50", check=False)
    assert r.returncode != 0 and "OFFSET_OUT_OF_RANGE (1)" in r.stderr, r.stderr
    assert watermarks(broker.bootstrap, "short") == (0, 10), "nothing moved"


def test_every_in_sync_replica_follows_the_log_start(tmp_path):
    brokers = start_cluster(tmp_path)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    bootstrap = ",".join(b.bootstrap for b in brokers)
    try:
        wait_for(lambda: len((status(brokers[0]) or {}).get("brokers") or []) == 3,
                 timeout=30, what="three registered brokers")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("events", num_partitions=1, replication_factor=3)])["events"].result(30)
        wait_for(lambda: len(partition_leader(bootstrap, "events", 0)[1]) == 3, timeout=30,
                 what="three in-sync replicas")
        produce_confluent(bootstrap, "events", [(None, f"e{i}".encode()) for i in range(200)], acks="all")

        # Answered once every in-sync replica moved its start there (the low watermark).
        assert delete_with_confluent(bootstrap, "events", 120) == 120

        leader, _, _ = partition_leader(bootstrap, "events", 0)
        by_id[leader].kill9()
        wait_for(lambda: partition_leader(bootstrap, "events", 0)[0] not in (-1, leader), timeout=30,
                 what="a new leader")
        survivors = ",".join(b.bootstrap for i, b in by_id.items() if i != leader)
        assert watermarks(survivors, "events") == (120, 200)
        assert first_offset_read(survivors, "events") == 120
    finally:
        for b in brokers:
            b.stop()
