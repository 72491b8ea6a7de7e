"""The log's life cycle with real clients: a compacted topic refuses records without a
key (Kafka's INVALID_RECORD), the rest of the request unaffected; the log cleaner
leaves a reader from the start exactly the newest value of every live key (100
updates to each of 200 keys, then tombstones), offsets kept, also across kill -9
while it works; `sluice topic alter-config` sets and removes topic configs through
IncrementalAlterConfigs."""

import time

import pytest
from confluent_kafka import KafkaError, Producer

from helpers import create_topic, produce_confluent


def produce_one(bootstrap, topic, key, value):
    """Produces one record; the delivery error, or None."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                  "retries": 0})
    outcome = []
    p.produce(topic, key=key, value=value, on_delivery=lambda err, msg: outcome.append(err))
    p.flush(30)
    assert outcome, "no delivery report"
    return outcome[0]


def test_a_compacted_topic_refuses_records_without_a_key(broker):
    create_topic(broker.bootstrap, "table", 1, **{"cleanup.policy": "compact"})
    assert produce_one(broker.bootstrap, "table", b"k1", b"v1") is None
    err = produce_one(broker.bootstrap, "table", None, b"no key")
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
    # A tombstone has a key and a null value: accepted.
    assert produce_one(broker.bootstrap, "table", b"k1", None) is None
    # Topics that only delete take records without keys as always.
    create_topic(broker.bootstrap, "events", 1)
    assert produce_one(broker.bootstrap, "events", None, b"no key") is None
    out = broker.cli("topic", "describe", "table").stdout
    row = out.splitlines()[2].split("\t")
    assert row[:5] == ["0", "1", "0", "2", "2"] and int(row[5]) > 0, out
    # Only the active segment: nothing the cleaner may touch yet, nothing dirty.
    assert row[6] == "0.00", out
    out = broker.cli("topic", "describe", "events").stdout
    assert out.splitlines()[2].split("\t")[6] == "-", "no dirty ratio for a delete topic"


def test_alter_config_sets_and_removes_topic_configs(broker):
    create_topic(broker.bootstrap, "tuned", 1)
    out = broker.cli("topic", "alter-config", "tuned", "--set", "retention.ms=60000",
                     "--set", "cleanup.policy=compact").stdout
    assert "altered" in out, out
    described = broker.cli("topic", "describe", "tuned").stdout
    assert "retention.ms=60000 (set on topic)" in described, described
    assert "cleanup.policy=compact (set on topic)" in described, described
    # Enforced at once: the topic compacts now, so a record without a key is refused.
    err = produce_one(broker.bootstrap, "tuned", None, b"no key")
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err

    broker.cli("topic", "alter-config", "tuned", "--delete", "retention.ms")
    described = broker.cli("topic", "describe", "tuned").stdout
    assert "retention.ms=604800000\n" in described, described

    bad = broker.cli("topic", "alter-config", "tuned", "--set", "no.such.config=1", check=False)
    assert bad.returncode != 0 and "no.such.config" in bad.stderr, bad.stderr
    bad = broker.cli("topic", "alter-config", "tuned", check=False)
    assert bad.returncode != 0 and "nothing to change" in bad.stderr, bad.stderr


KEYS = 200
UPDATES = 100
DELETED = 20  # keys 0..19 end with a tombstone


def compacting_broker(tmp_path):
    from conftest import Broker, free_port
    return Broker(tmp_path / "data", free_port(),
                  extra_env={"SLUICE_LOG_CLEANER_BACKOFF_MS": "200"}).start()


def read_from_start(bootstrap, topic, timeout=30):
    """Every record of partition 0 from the start: [(offset, key, value)]."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-reader",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, low)])
        out, deadline = [], time.time() + timeout
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                if c.position([TopicPartition(topic, 0)])[0].offset >= high:
                    break
                continue
            out.append((m.offset(), m.key(), m.value()))
            if m.offset() + 1 >= high:
                break
        return out
    finally:
        c.close()


def write_updates(bootstrap, topic, client):
    """UPDATES rounds over KEYS keys, then tombstones for the first DELETED keys; the
    newest value of each key (None: deleted)."""
    newest = {}
    records = []
    for u in range(UPDATES):
        for k in range(KEYS):
            records.append((f"key-{k}".encode(), f"value-{k}-{u}".encode()))
    for k in range(DELETED):
        records.append((f"key-{k}".encode(), None))
    for key, value in records:
        newest[key] = value
    if client == "confluent":
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20})
        for key, value in records:
            while True:
                try:
                    p.produce(topic, key=key, value=value)
                    break
                except BufferError:
                    p.poll(0.1)
        assert p.flush(60) == 0
    else:
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
        for key, value in records:
            p.send(topic, key=key, value=value)
        p.flush(60)
        p.close()
    return newest


def wait_compacted(bootstrap, topic, live, timeout=90):
    """Waits until a reader from the start gets exactly one record per live key (its
    newest value) and nothing of a deleted key, apart from the active segment's tail
    (the `tail` key written last); returns what it read."""
    deadline = time.time() + timeout
    while True:
        got = read_from_start(bootstrap, topic)
        offsets = [o for o, _, _ in got]
        assert offsets == sorted(set(offsets)), "offsets must increase"
        body = [(k, v) for _, k, v in got if k != b"tail"]
        if dict(body) == live and len(body) == len(live):
            return got
        if time.time() > deadline:
            raise AssertionError(f"not compacted: {len(body)} records for {len(live)} live keys")
        time.sleep(0.5)


def roll_and_mark(bootstrap, topic):
    """segment.ms rolls the segment holding the updates at the next append: the
    updates become cleanable; the marker stays in the new active segment."""
    time.sleep(1.2)
    assert produce_one(bootstrap, topic, b"tail", b"end") is None


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_compaction_keeps_the_newest_value_of_every_live_key(tmp_path, client):
    b = compacting_broker(tmp_path)
    try:
        topic = f"table-{client}"
        create_topic(b.bootstrap, topic, 1, **{
            "cleanup.policy": "compact", "segment.bytes": "65536", "segment.ms": "1000",
            "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "2000"})
        newest = write_updates(b.bootstrap, topic, client)
        live = {k: v for k, v in newest.items() if v is not None}
        roll_and_mark(b.bootstrap, topic)
        got = wait_compacted(b.bootstrap, topic, live)
        # (The cleaner may already work while the updates are written.)
        assert got[-1][1] == b"tail", got[-1]
        assert got[-1][0] == KEYS * UPDATES + DELETED, "offsets are kept"
        assert "compacted" in b.output()
        size = sum(f.stat().st_size for f in (b.data_dir / f"{topic}-0").glob("*.log"))
        assert size < 200_000, f"{size} bytes left on disk"
        # `sluice topic describe` reports the same size (DescribeLogDirs).
        row = b.cli("topic", "describe", topic).stdout.splitlines()[2].split("\t")
        assert int(row[5]) == size, (row, size)
        assert 0.0 <= float(row[6]) < 0.5, f"the cleaner keeps up: {row}"
    finally:
        b.stop()
    assert "panicked" not in b.output()


def test_a_compacted_topic_survives_kill_9_during_cleaning(tmp_path):
    b = compacting_broker(tmp_path)
    try:
        topic = "table-kill"
        create_topic(b.bootstrap, topic, 1, **{
            "cleanup.policy": "compact", "segment.bytes": "32768", "segment.ms": "1000",
            "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "2000"})
        newest = write_updates(b.bootstrap, topic, "confluent")
        live = {k: v for k, v in newest.items() if v is not None}
        roll_and_mark(b.bootstrap, topic)
        # Kill it while the cleaner works, a few times at different moments.
        for delay in (0.05, 0.15, 0.3, 0.6):
            time.sleep(delay)
            b.kill9()
            b.start()
            # Nothing acknowledged is lost: every live key still reads its newest value.
            got = read_from_start(b.bootstrap, topic)
            final = {}
            for _, k, v in got:
                if k != b"tail":
                    final[k] = v
            assert {k: v for k, v in final.items() if v is not None} == live
        wait_compacted(b.bootstrap, topic, live)
    finally:
        b.stop()
    assert "panicked" not in b.output()


def test_offsets_of_a_consumer_nobody_runs_expire_after_offsets_retention_minutes(tmp_path):
    """KIP-211: offsets.retention.minutes (1, its smallest value, here) expires
    offsets committed without a running group a minute after their commit."""
    from conftest import Broker, free_port
    from confluent_kafka import Consumer, TopicPartition
    b = Broker(tmp_path / "data", free_port(),
               extra_env={"SLUICE_OFFSETS_RETENTION_MINUTES": "1"}).start()
    try:
        create_topic(b.bootstrap, "kept", 1)
        assert produce_one(b.bootstrap, "kept", b"k", b"v") is None

        def committed(group):
            c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
            try:
                return c.committed([TopicPartition("kept", 0)], timeout=10)[0].offset
            finally:
                c.close()

        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "standalone",
                      "enable.auto.commit": False})
        c.assign([TopicPartition("kept", 0, 0)])
        c.commit(offsets=[TopicPartition("kept", 0, 1)], asynchronous=False)
        c.close()
        assert committed("standalone") == 1
        time.sleep(50)
        assert committed("standalone") == 1, "not yet a minute"
        deadline = time.time() + 30
        while committed("standalone") == 1:
            assert time.time() < deadline, "the offset never expired"
            time.sleep(1)
        assert committed("standalone") < 0, "no committed offset any more"
    finally:
        b.stop()
    assert "panicked" not in b.output()


def test_a_new_replica_copies_a_compacted_log_and_serves_it_after_failover(tmp_path):
    """On a 3-node cluster the cleaned log (thinned and emptied batches, offsets kept)
    replicates: a replica a reassignment adds copies it from the leader, and once the
    old replicas are gone it serves every live key's newest value."""
    from helpers import wait_for
    from test_cluster import partition_leader, replicas_of, start_cluster, status
    brokers = start_cluster(tmp_path, extra_env={"SLUICE_LOG_CLEANER_BACKOFF_MS": "200"})
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    bootstrap = ",".join(b.bootstrap for b in brokers)
    try:
        wait_for(lambda: len((status(brokers[0]) or {}).get("brokers") or []) == 3,
                 timeout=30, what="three registered brokers")
        brokers[0].cli("topic", "create", "table", "--partitions", "1", "--replication-factor", "2",
                       "--config", "cleanup.policy=compact", "--config", "segment.bytes=65536",
                       "--config", "segment.ms=1000", "--config", "min.cleanable.dirty.ratio=0.01",
                       "--config", "delete.retention.ms=2000")
        wait_for(lambda: len(partition_leader(bootstrap, "table", 0)[1]) == 2, timeout=30,
                 what="two in-sync replicas")
        first = replicas_of(bootstrap, "table")[0]
        (spare,) = {1, 2, 3} - set(first)
        newest = write_updates(bootstrap, "table", "confluent")
        live = {k: v for k, v in newest.items() if v is not None}
        roll_and_mark(bootstrap, "table")
        wait_compacted(bootstrap, "table", live)

        # The spare broker joins with an empty log and copies the cleaned one.
        brokers[0].cli("cluster", "reassign", "--topic", "table", "--partition", "0",
                       "--replicas", f"{spare},{first[0]}")
        wait_for(lambda: sorted(partition_leader(bootstrap, "table", 0)[1]) == sorted([spare, first[0]]),
                 timeout=60, what="the spare broker in sync")
        by_id[first[0]].kill9()
        wait_for(lambda: partition_leader(by_id[spare].bootstrap, "table", 0)[0] == spare, timeout=30,
                 what="the spare broker leading")
        got = wait_compacted(by_id[spare].bootstrap, "table", live)
        assert got[-1] == (KEYS * UPDATES + DELETED, b"tail", b"end"), got[-1]
    finally:
        for b in brokers:
            b.stop()
    for b in brokers:
        assert "panicked" not in b.output()


def earliest_offset_read(bootstrap, topic):
    """The first offset a new group with `auto.offset.reset=earliest` reads."""
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"earliest-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                return m.offset()
        raise AssertionError("no record read")
    finally:
        c.close()


def watermarks(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def wait_log_start(bootstrap, topic, done, timeout=30):
    """Waits until `done(low, high)` holds for the partition's watermarks."""
    deadline = time.time() + timeout
    while True:
        low, high = watermarks(bootstrap, topic)
        if done(low, high):
            return low, high
        if time.time() > deadline:
            raise AssertionError(f"log start {low}, high watermark {high}")
        time.sleep(0.3)


def produce_small_batches(bootstrap, topic, values):
    """Batches of 20 records, so 4 KiB segments hold several."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                  "batch.num.messages": 20})
    failed = []
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda err, msg: failed.append(err) if err else None)
        p.poll(0)
    assert p.flush(30) == 0 and not failed, failed


def test_retention_by_time_and_by_size_moves_the_log_start_and_earliest_readers_follow(tmp_path):
    from conftest import Broker, free_port
    b = Broker(tmp_path / "data", free_port(),
               extra_env={"SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS": "200"}).start()
    try:
        # By size: 1,000 records of about 120 bytes in 4 KiB segments, at most 20 KB kept.
        create_topic(b.bootstrap, "sized", 1, **{"segment.bytes": "4096", "retention.bytes": "20000"})
        # By time: records older than 1.5 s go; segment.ms rolls the idle active segment.
        create_topic(b.bootstrap, "timed", 1, **{"segment.bytes": "4096", "retention.ms": "1500",
                                                 "segment.ms": "500"})
        for topic in ("sized", "timed"):
            produce_small_batches(b.bootstrap, topic, [b"%04d" % i + b"x" * 100 for i in range(1000)])
        low, high = wait_log_start(b.bootstrap, "sized", lambda low, high: low > 0)
        assert high == 1000
        assert high - low < 400, "about 20 KB of 120-byte records is kept"
        # A new group reading from the earliest offset starts at the log start.
        assert earliest_offset_read(b.bootstrap, "sized") == low
        row = b.cli("topic", "describe", "sized").stdout.splitlines()[2].split("\t")
        assert (int(row[2]), int(row[3])) == (low, high), row
        # (The size as the broker reports it: retention may delete a file while a
        # listing of the directory is read.)
        assert int(row[5]) <= 20000 + 4096, row

        # Everything expires, the active segment too once idle: the log start reaches
        # the end, and the next record written is the first one a reader gets.
        wait_log_start(b.bootstrap, "timed", lambda low, high: low == high == 1000)
        row = b.cli("topic", "describe", "timed").stdout.splitlines()[2].split("\t")
        assert (int(row[2]), int(row[3]), int(row[5])) == (1000, 1000, 0), row
        # (Kept long enough for a new group to join and read it.)
        b.cli("topic", "alter-config", "timed", "--set", "retention.ms=3600000")
        produce_confluent(b.bootstrap, "timed", [(None, b"after")], "all")
        assert earliest_offset_read(b.bootstrap, "timed") == 1000
    finally:
        b.stop()
    assert "panicked" not in b.output()
