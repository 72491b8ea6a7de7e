"""Helpers shared by the client tests."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap, name, partitions, **config):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)])
    fut[name].result(30)


def produce_confluent(bootstrap, topic, records, acks, compression="none", partitioner=None):
    """records: list of (key, value). Returns the acknowledged (partition, offset, key, value)."""
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": str(acks),
        "linger.ms": 5,
        "compression.type": compression,
        "enable.idempotence": False,
    }
    if partitioner:
        conf["partitioner"] = partitioner
    p = Producer(conf)
    acked, errors = [], []

    def done(err, msg):
        if err:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    for i, (k, v) in enumerate(records):
        while True:
            try:
                p.produce(topic, key=k, value=v, on_delivery=done)
                break
            except BufferError:
                p.poll(0.05)
        if i % 5000 == 0:
            p.poll(0)
    assert p.flush(60) == 0, "messages left unflushed"
    assert not errors, errors[:5]
    return acked


def consume_all(bootstrap, topic, partitions, expected, timeout=60, isolation="read_uncommitted"):
    """Reads every partition from offset 0 until `expected` records arrived."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "unused-assign-only",
        "enable.auto.commit": False,
        "isolation.level": isolation,
        "fetch.wait.max.ms": 100,
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + timeout
    while len(out) < expected and time.time() < deadline:
        for m in c.consume(10000, 0.5):
            assert not m.error(), m.error()
            out.append((m.partition(), m.offset(), m.key(), m.value()))
    c.close()
    return out


def consume_to_end(bootstrap, topic, partitions, timeout=120):
    """Reads every partition from offset 0 to its high watermark, as it is when the
    read starts. (A count of acknowledged records is no stop condition after a crash:
    records stored but not acknowledged before it count too.)"""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "unused-assign-only",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    })
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in range(partitions)}
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    next_offset = {p: 0 for p in range(partitions)}
    deadline = time.time() + timeout
    while any(next_offset[p] < ends[p] for p in ends) and time.time() < deadline:
        for m in c.consume(10000, 0.5):
            assert not m.error(), m.error()
            out.append((m.partition(), m.offset(), m.key(), m.value()))
            next_offset[m.partition()] = m.offset() + 1
    c.close()
    return out


def by_partition(records):
    parts = {}
    for p, o, k, v in records:
        parts.setdefault(p, []).append((o, k, v))
    return parts


def wait_for(condition, timeout, what):
    """Polls `condition` until it holds; fails naming `what` after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
