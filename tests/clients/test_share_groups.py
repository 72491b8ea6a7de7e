"""Share groups (KIP-932, queues for Kafka) with librdkafka's ShareConsumer, unmodified:
consumers of one group share partitions and each record goes to one of them;
records are acknowledged (accepted, released, rejected), redelivered when released,
when their acquisition lock runs out or when their holder leaves, archived after the
delivery limit, and what was acknowledged survives a kill -9 of the broker."""
import json
import time

import pytest
from confluent_kafka import AcknowledgeType, ShareConsumer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from helpers import create_topic, produce_confluent, wait_for

FAST = {"SLUICE_GROUP_SHARE_HEARTBEAT_INTERVAL_MS": "500"}


@pytest.fixture
def fast_broker(make_broker):
    b = make_broker(extra_env=FAST).start()
    yield b
    b.stop()
    assert "panicked" not in b.output(), b.output()


def share_consumer(bootstrap, group, **extra):
    conf = {"bootstrap.servers": bootstrap, "group.id": group}
    conf.update(extra)
    return ShareConsumer(conf)


def set_group_configs(bootstrap, group, **configs):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entries = [
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()
    ]
    fs = admin.incremental_alter_configs([ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)])
    for f in fs.values():
        f.result()


def poll_into(consumers, seconds, sink, until=None):
    """Polls every consumer in turn, recording (consumer, partition, offset,
    delivery count); stops early once `until()` holds."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        for i, c in enumerate(consumers):
            for m in c.poll(0.2):
                assert m.error() is None, m.error()
                sink.append((i, m.partition(), m.offset(), m.delivery_count()))
        if until is not None and until():
            return


def test_share_consumers_split_the_records_and_each_is_delivered_once(fast_broker):
    create_topic(fast_broker.bootstrap, "queue", 2)
    set_group_configs(fast_broker.bootstrap, "sg", share_auto_offset_reset="earliest")
    produce_confluent(fast_broker.bootstrap, "queue", [(None, b"v%d" % i) for i in range(600)], acks="all")
    # Three consumers on two partitions: a partition is read by two of them at once.
    cs = [
        share_consumer(fast_broker.bootstrap, "sg", **{"client.id": f"c{i}", "max.poll.records": 25}) for i in range(3)
    ]
    try:
        for c in cs:
            c.subscribe(["queue"])
        seen = []
        poll_into(cs, 60, seen, until=lambda: len(seen) >= 600)
        delivered = [(p, o) for _, p, o, _ in seen]
        assert len(set(delivered)) == 600, f"{len(set(delivered))} distinct of 600"
        assert len(delivered) == 600, "a record was delivered twice with implicit acknowledgement"
        assert all(n == 1 for *_, n in seen)
        readers = {i for i, _, _, _ in seen}
        assert len(readers) >= 2, f"only consumers {readers} got records"

        # The Python admin client has no share-group calls: ListGroups through the CLI.
        listed = fast_broker.cli("group", "list").stdout
        assert "sg\tStable\tshare\tshare" in listed, listed
        # ShareGroupDescribe and DescribeShareGroupOffsets through the CLI.
        view = json.loads(fast_broker.cli("group", "describe", "sg", "--format", "json").stdout)
        assert (view["protocol_type"], view["protocol"], len(view["members"])) == ("share", "simple", 3), view
        parts = {(p["topic"], p["partition"]): p for p in view["partitions"]}
        assert set(parts) == {("queue", 0), ("queue", 1)}, view
        assert sum(p["log_end_offset"] for p in parts.values()) == 600, view
        for p in parts.values():
            assert 0 <= p["committed_offset"] <= p["log_end_offset"], p
            assert p["member_id"], p
    finally:
        for c in cs:
            c.close()


def test_released_records_come_back_and_rejected_ones_do_not(fast_broker):
    create_topic(fast_broker.bootstrap, "acks", 1)
    set_group_configs(fast_broker.bootstrap, "ackers", share_auto_offset_reset="earliest")
    produce_confluent(fast_broker.bootstrap, "acks", [(None, b"v%d" % i) for i in range(10)], acks="all")
    c = share_consumer(fast_broker.bootstrap, "ackers", **{"share.acknowledgement.mode": "explicit"})
    try:
        c.subscribe(["acks"])
        first = []
        deadline = time.time() + 30
        while len(first) < 10 and time.time() < deadline:
            batch = list(c.poll(0.5))
            for m in batch:
                # Even offsets accepted, 1 and 3 released, the rest rejected.
                kind = AcknowledgeType.ACCEPT
                if m.offset() % 2:
                    kind = AcknowledgeType.RELEASE if m.offset() in (1, 3) else AcknowledgeType.REJECT
                c.acknowledge(m, kind)
                first.append((m.offset(), m.delivery_count()))
            if batch:
                c.commit_sync()
        assert sorted(first) == [(o, 1) for o in range(10)]
        again = []
        deadline = time.time() + 30
        while len(again) < 2 and time.time() < deadline:
            for m in c.poll(0.5):
                again.append((m.offset(), m.delivery_count()))
                c.acknowledge(m, AcknowledgeType.ACCEPT)
            c.commit_sync()
        assert sorted(again) == [(1, 2), (3, 2)], "released records come back with delivery count 2"
        assert list(c.poll(2)) == [], "accepted and rejected records are not delivered again"
    finally:
        c.close()


def test_a_record_held_too_long_or_by_a_member_that_leaves_goes_to_another(fast_broker):
    create_topic(fast_broker.bootstrap, "locks", 1)
    set_group_configs(
        fast_broker.bootstrap, "lockers", share_auto_offset_reset="earliest", share_record_lock_duration_ms="2000"
    )
    produce_confluent(fast_broker.bootstrap, "locks", [(None, b"v%d" % i) for i in range(5)], acks="all")
    a = share_consumer(fast_broker.bootstrap, "lockers", **{"share.acknowledgement.mode": "explicit"})
    b = share_consumer(fast_broker.bootstrap, "lockers")
    try:
        a.subscribe(["locks"])
        held = []
        wait_for(lambda: held.extend(m.offset() for m in a.poll(0.5)) or len(held) == 5, 30, "a holds all five")
        # a never acknowledges: after the 2 s lock the records go to b, delivered again.
        b.subscribe(["locks"])
        seen = []
        poll_into([b], 30, seen, until=lambda: len(seen) >= 5)
        assert sorted((o, n) for _, _, o, n in seen) == [(o, 2) for o in range(5)]
        # The next poll acknowledges them (implicit mode; librdkafka's close does not).
        assert list(b.poll(1)) == []
    finally:
        b.close()
        a.close()
    # A member that leaves gives its records back at once.
    produce_confluent(fast_broker.bootstrap, "locks", [(None, b"w%d" % i) for i in range(3)], acks="all")
    c = share_consumer(fast_broker.bootstrap, "lockers", **{"share.acknowledgement.mode": "explicit"})
    c.subscribe(["locks"])
    got = []
    wait_for(lambda: got.extend(m.offset() for m in c.poll(0.5)) or len(got) == 3, 30, "c holds the new three")
    # Closing with nothing acknowledged releases them (the session's final request).
    started = time.time()
    c.close()
    d = share_consumer(fast_broker.bootstrap, "lockers")
    try:
        d.subscribe(["locks"])
        seen = []
        poll_into([d], 20, seen, until=lambda: len(seen) >= 3)
        assert sorted(o for _, _, o, _ in seen) == [5, 6, 7]
        assert time.time() - started < 15, "released on close, not by the 30 s default lock"
    finally:
        d.close()


def test_acknowledged_records_stay_acknowledged_across_a_kill_9(fast_broker):
    create_topic(fast_broker.bootstrap, "durable", 1)
    set_group_configs(fast_broker.bootstrap, "keepers", share_auto_offset_reset="earliest")
    produce_confluent(fast_broker.bootstrap, "durable", [(None, b"v%d" % i) for i in range(20)], acks="all")
    c = share_consumer(fast_broker.bootstrap, "keepers", **{"share.acknowledgement.mode": "explicit"})
    c.subscribe(["durable"])
    acked = set()
    deadline = time.time() + 30
    while len(acked) < 10 and time.time() < deadline:
        for m in c.poll(0.5):
            if m.offset() < 10:
                c.acknowledge(m, AcknowledgeType.ACCEPT)
                acked.add(m.offset())
            else:
                c.acknowledge(m, AcknowledgeType.RELEASE)
        c.commit_sync()
    assert acked == set(range(10))
    # commit_sync returned: the acknowledgements are durable. The broker dies at once.
    fast_broker.kill9()
    c.close()
    fast_broker.start()
    d = share_consumer(fast_broker.bootstrap, "keepers")
    try:
        d.subscribe(["durable"])
        seen = []
        poll_into([d], 40, seen, until=lambda: len(seen) >= 10)
        offsets = sorted(o for _, _, o, _ in seen)
        assert offsets == list(range(10, 20)), offsets
    finally:
        d.close()
