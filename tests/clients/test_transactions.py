"""Transactions with real clients: exactly-once consume-transform-produce, aborts
invisible to read_committed readers, zombie fencing, a broker kill -9 mid-transaction."""

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from helpers import consume_all, create_topic, produce_confluent


def txn_producer(broker, txn_id, **kw):
    conf = {"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id, "linger.ms": 5}
    conf.update(kw)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def read_committed(broker, topic, partitions, expected, timeout=30):
    return consume_all(broker.bootstrap, topic, partitions, expected, timeout=timeout,
                       isolation="read_committed")


def test_consume_transform_produce_is_exactly_once_with_aborts_in_between(broker):
    create_topic(broker.bootstrap, "ctp-in", 3)
    create_topic(broker.bootstrap, "ctp-out", 3)
    produce_confluent(broker.bootstrap, "ctp-in", [(b"%d" % i, b"%d" % i) for i in range(1000)], acks="all")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ctp", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "session.timeout.ms": 6000})
    c.subscribe(["ctp-in"])
    p = txn_producer(broker, "ctp-tx")
    done, rounds, aborted = 0, 0, 0
    deadline = time.time() + 120
    while done < 1000 and time.time() < deadline:
        msgs = [m for m in c.consume(100, 1.0) if not m.error()]
        if not msgs:
            continue
        rounds += 1
        if rounds % 3 == 0:
            # A transaction that fails half way: its output must never be seen.
            p.begin_transaction()
            for m in msgs:
                p.produce("ctp-out", b"garbage-" + m.value(), partition=m.partition())
            p.abort_transaction(30)
            aborted += 1
        p.begin_transaction()
        for m in msgs:
            p.produce("ctp-out", b"out-" + m.value(), partition=m.partition())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
        p.commit_transaction(30)
        done += len(msgs)
    assert done == 1000 and aborted > 0
    committed = c.committed([TopicPartition("ctp-in", q) for q in range(3)], timeout=30)
    c.close()
    out = read_committed(broker, "ctp-out", 3, 1000)
    values = sorted(v for _, _, _, v in out)
    assert values == sorted(b"out-%d" % i for i in range(1000)), "each input exactly once, no aborted output"
    # In order: each output partition follows its input partition.
    for part in range(3):
        seq = [int(v[4:]) for p_, _, _, v in sorted(out) if p_ == part]
        assert seq == sorted(seq), f"output partition {part} out of order"
    ends = {q: hi for q in range(3)
            for lo, hi in [Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x"})
                           .get_watermark_offsets(TopicPartition("ctp-in", q), timeout=10)]}
    assert {tp.partition: tp.offset for tp in committed} == ends, "input offsets committed with the output"


def test_a_new_producer_fences_the_zombie_and_its_open_transaction_is_aborted(broker):
    create_topic(broker.bootstrap, "fence", 1)
    zombie = txn_producer(broker, "fence-tx")
    zombie.begin_transaction()
    for i in range(10):
        zombie.produce("fence", b"zombie-%d" % i)
    assert zombie.flush(10) == 0
    successor = txn_producer(broker, "fence-tx")
    successor.begin_transaction()
    for i in range(5):
        successor.produce("fence", b"ok-%d" % i)
    successor.commit_transaction(30)
    with pytest.raises(KafkaException) as e:
        zombie.commit_transaction(10)
    assert e.value.args[0].fatal() or "fenc" in str(e.value).lower(), e.value
    got = sorted(v for _, _, _, v in read_committed(broker, "fence", 1, 5))
    assert got == [b"ok-%d" % i for i in range(5)]


def test_broker_kill9_mid_transaction_then_the_successor_aborts_it(broker):
    create_topic(broker.bootstrap, "k9tx", 2)
    p = txn_producer(broker, "k9-tx")
    p.begin_transaction()
    for i in range(100):
        p.produce("k9tx", b"first-%d" % i, partition=i % 2)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(100):
        p.produce("k9tx", b"lost-%d" % i, partition=i % 2)
    assert p.flush(10) == 0
    broker.kill9()
    broker.start()
    successor = txn_producer(broker, "k9-tx")
    successor.begin_transaction()
    for i in range(10):
        successor.produce("k9tx", b"second-%d" % i, partition=i % 2)
    successor.commit_transaction(30)
    got = sorted(v for _, _, _, v in read_committed(broker, "k9tx", 2, 110))
    assert got == sorted([b"first-%d" % i for i in range(100)] + [b"second-%d" % i for i in range(10)])
    # read_uncommitted readers see the aborted records too (the markers tell them apart).
    everything = consume_all(broker.bootstrap, "k9tx", 2, 210)
    assert len(everything) == 210


def test_kafka_python_transactions(broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP

    create_topic(broker.bootstrap, "kp-tx-in", 1)
    create_topic(broker.bootstrap, "kp-tx-out", 1)
    produce_confluent(broker.bootstrap, "kp-tx-in", [(None, b"%d" % i) for i in range(20)], acks="all")
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="kp-tx")
    p.init_transactions()
    p.begin_transaction()
    for i in range(5):
        p.send("kp-tx-out", b"aborted-%d" % i)
    p.abort_transaction()
    c = KafkaConsumer("kp-tx-in", bootstrap_servers=broker.bootstrap, group_id="kp-tx-group",
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      isolation_level="read_committed")
    seen = []
    deadline = time.time() + 30
    while len(seen) < 20 and time.time() < deadline:
        for tp, records in c.poll(timeout_ms=500).items():
            seen.extend(records)
    assert len(seen) == 20
    p.begin_transaction()
    for r in seen:
        p.send("kp-tx-out", b"out-" + r.value)
    p.send_offsets_to_transaction({KTP("kp-tx-in", 0): __import__("kafka").structs.OffsetAndMetadata(20, "", -1)},
                                  c.config["group_id"])
    p.commit_transaction()
    c.close()
    reader = KafkaConsumer("kp-tx-out", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                           isolation_level="read_committed", consumer_timeout_ms=5000)
    values = sorted(m.value for m in reader)
    reader.close()
    assert values == sorted(b"out-%d" % i for i in range(20))
    c2 = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="kp-tx-group")
    assert c2.committed(KTP("kp-tx-in", 0)) == 20
    c2.close()
