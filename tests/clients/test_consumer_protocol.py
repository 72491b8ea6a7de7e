"""KIP-848's consumer group protocol (`group.protocol=consumer`, the default of Kafka 4
clients going forward) with librdkafka, unmodified: joins, rebalances without
stopping the world, commits, static members, regex subscriptions, ConsumerGroupDescribe,
and a restart of the broker."""
import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from helpers import create_topic, produce_confluent, wait_for

FAST = {"SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS": "500"}


@pytest.fixture
def fast_broker(make_broker):
    b = make_broker(extra_env=FAST).start()
    yield b
    b.stop()
    assert "panicked" not in b.output(), b.output()


def consumer(bootstrap, group, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    conf.update(extra)
    return Consumer(conf)


def owned(c):
    return {(tp.topic, tp.partition) for tp in c.assignment()}


def poll_all(consumers, seconds, sink=None):
    deadline = time.time() + seconds
    while time.time() < deadline:
        for c in consumers:
            m = c.poll(0.05)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            if sink is not None:
                sink.append((m.topic(), m.partition(), m.offset()))


def test_two_members_share_the_partitions_and_each_record_is_read_once(fast_broker):
    create_topic(fast_broker.bootstrap, "kip848", 6)
    produce_confluent(fast_broker.bootstrap, "kip848", [(b"k%d" % i, b"v%d" % i) for i in range(300)], acks="all")
    a = consumer(fast_broker.bootstrap, "g1", **{"client.id": "a"})
    b = consumer(fast_broker.bootstrap, "g1", **{"client.id": "b"})
    try:
        a.subscribe(["kip848"])
        seen = []
        wait_for(lambda: (poll_all([a], 0.2, seen), len(owned(a)) == 6)[1], 20, "a owns all six partitions")
        b.subscribe(["kip848"])
        both = lambda: (poll_all([a, b], 0.2, seen), len(owned(a)) == 3 and len(owned(b)) == 3)[1]
        wait_for(both, 30, "the partitions split three and three")
        assert owned(a).isdisjoint(owned(b))
        # Nothing is committed, so b starts its partitions from the earliest offset:
        # some records are read by both, and every record is read.
        wait_for(lambda: (poll_all([a, b], 0.2, seen), len(set(seen)) >= 300)[1], 30, "all 300 records read")
        assert len(set(seen)) == 300
        # Commits carry the member epoch (OffsetCommit v9) and are kept.
        positions = a.position(list(a.assignment()))
        a.commit(offsets=positions, asynchronous=False)
        committed = a.committed(list(a.assignment()), timeout=10)
        assert {(tp.partition, tp.offset) for tp in committed} == {(tp.partition, tp.offset) for tp in positions}

        admin = AdminClient({"bootstrap.servers": fast_broker.bootstrap})
        g = admin.describe_consumer_groups(["g1"])["g1"].result()
        assert str(g.type).endswith("CONSUMER"), g.type
        assert str(g.state).endswith("STABLE"), g.state
        assert sorted(len(m.assignment.topic_partitions) for m in g.members) == [3, 3]
        listed = admin.list_consumer_groups().result()
        assert any(l.group_id == "g1" and str(l.type).endswith("CONSUMER") for l in listed.valid)

        b.close()
        wait_for(lambda: (poll_all([a], 0.2), len(owned(a)) == 6)[1], 30, "a takes b's partitions back")
    finally:
        a.close()


def test_commits_survive_a_restart_and_the_group_carries_on(fast_broker):
    create_topic(fast_broker.bootstrap, "kip848r", 2)
    produce_confluent(fast_broker.bootstrap, "kip848r", [(None, b"v%d" % i) for i in range(100)], acks="all")
    admin = AdminClient({"bootstrap.servers": fast_broker.bootstrap})
    c = consumer(fast_broker.bootstrap, "g2")
    c.subscribe(["kip848r"])
    seen = []
    wait_for(lambda: (poll_all([c], 0.2, seen), len(seen) >= 100)[1], 30, "100 records read")
    c.commit(offsets=[TopicPartition("kip848r", p, 40) for p in (0, 1)], asynchronous=False)
    before = admin.describe_consumer_groups(["g2"])["g2"].result().members[0]
    # The coordinator dies with the member still in the group; the member's epoch and
    # assignment are in __consumer_offsets, so it carries on as the same member.
    fast_broker.kill9()
    fast_broker.start()
    poll_all([c], 3)
    # A new admin client: the old one's connections wait out librdkafka's reconnect backoff.
    admin = AdminClient({"bootstrap.servers": fast_broker.bootstrap})
    after = admin.describe_consumer_groups(["g2"], request_timeout=20)["g2"].result().members
    assert [m.member_id for m in after] == [before.member_id], "the member was not fenced by the restart"
    assert len(after[0].assignment.topic_partitions) == 2
    c.close()
    c = consumer(fast_broker.bootstrap, "g2")
    try:
        c.subscribe(["kip848r"])
        seen = []
        wait_for(lambda: (poll_all([c], 0.2, seen), len(seen) >= 20)[1], 60, "reads resume after the restart")
        assert min(off for _, _, off in seen) == 40, "resumed from the committed offsets"
    finally:
        c.close()


def test_a_regex_subscription_takes_matching_topics_only(fast_broker):
    for t in ("orders-eu", "orders-us", "payments"):
        create_topic(fast_broker.bootstrap, t, 1)
        produce_confluent(fast_broker.bootstrap, t, [(None, t.encode())], acks="all")
    c = consumer(fast_broker.bootstrap, "g3")
    try:
        c.subscribe(["^orders-.*"])
        seen = []
        wait_for(lambda: (poll_all([c], 0.2, seen), len(seen) >= 2)[1], 30, "both orders topics read")
        poll_all([c], 1, seen)
        assert sorted(t for t, _, _ in seen) == ["orders-eu", "orders-us"]
        admin = AdminClient({"bootstrap.servers": fast_broker.bootstrap})
        g = admin.describe_consumer_groups(["g3"])["g3"].result()
        assert {tp.topic for tp in g.members[0].assignment.topic_partitions} == {"orders-eu", "orders-us"}
    finally:
        c.close()


def test_a_static_member_comes_back_to_its_partitions(fast_broker):
    create_topic(fast_broker.bootstrap, "kip848s", 4)
    conf = {"group.instance.id": "worker-1"}
    a = consumer(fast_broker.bootstrap, "g4", **conf)
    b = consumer(fast_broker.bootstrap, "g4", **{"group.instance.id": "worker-2"})
    a.subscribe(["kip848s"])
    b.subscribe(["kip848s"])
    wait_for(lambda: (poll_all([a, b], 0.2), len(owned(a)) == 2 and len(owned(b)) == 2)[1], 30, "two and two")
    before = owned(a)
    a.close()  # a static member leaves for now (member epoch -2): its partitions wait for it
    poll_all([b], 2)
    assert len(owned(b)) == 2, "b does not take a static member's partitions while it is away"
    a = consumer(fast_broker.bootstrap, "g4", **conf)
    try:
        a.subscribe(["kip848s"])
        wait_for(lambda: (poll_all([a, b], 0.2), len(owned(a)) == 2)[1], 30, "a is back")
        assert owned(a) == before
    finally:
        a.close()
        b.close()


def classic(bootstrap, group, strategy, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "classic",
        "partition.assignment.strategy": strategy,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    conf.update(extra)
    return Consumer(conf)


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_a_live_classic_group_upgrades_and_downgrades_as_members_switch_protocol(fast_broker, strategy):
    """KIP-848's online migration: a consumer-protocol member joins a live classic
    group (the group becomes a consumer group, the classic member stays in it and
    shares the partitions), then leaves (the group turns classic again)."""
    topic, group = "mig-" + strategy, "g-mig-" + strategy
    create_topic(fast_broker.bootstrap, topic, 4)
    produce_confluent(fast_broker.bootstrap, topic, [(b"k%d" % i, b"v%d" % i) for i in range(200)], acks="all")
    admin = AdminClient({"bootstrap.servers": fast_broker.bootstrap})
    a = classic(fast_broker.bootstrap, group, strategy, **{"client.id": "classic-a"})
    b = consumer(fast_broker.bootstrap, group, **{"client.id": "modern-b"})
    seen = []
    try:
        a.subscribe([topic])
        wait_for(lambda: (poll_all([a], 0.2, seen), len(owned(a)) == 4)[1], 30, "the classic member owns all four partitions")
        g = admin.describe_consumer_groups([group])[group].result()
        assert str(g.type).endswith("CLASSIC"), g.type

        b.subscribe([topic])
        split = lambda: (poll_all([a, b], 0.2, seen), owned(a) and owned(b) and len(owned(a) | owned(b)) == 4)[1]
        wait_for(split, 60, "the classic and the consumer-protocol member share the partitions")
        assert owned(a).isdisjoint(owned(b)), (owned(a), owned(b))
        g = admin.describe_consumer_groups([group])[group].result()
        assert str(g.type).endswith("CONSUMER"), g.type
        assert sorted(m.client_id for m in g.members) == ["classic-a", "modern-b"]
        assert sorted(len(m.assignment.topic_partitions) for m in g.members) == sorted([len(owned(a)), len(owned(b))])
        text = fast_broker.cli("group", "describe", group).stdout
        classic_line = [l for l in text.splitlines() if "client classic-a" in l]
        assert classic_line and "(classic protocol)" in classic_line[0], text
        wait_for(lambda: (poll_all([a, b], 0.2, seen), len(set(seen)) >= 200)[1], 30, "all 200 records read")
        assert len(set(seen)) == 200
        # The classic member commits at its generation, which is its member epoch.
        positions = a.position(list(a.assignment()))
        a.commit(offsets=positions, asynchronous=False)
        committed = a.committed(list(a.assignment()), timeout=10)
        assert {(tp.partition, tp.offset) for tp in committed} == {(tp.partition, tp.offset) for tp in positions}

        b.close()
        b = None
        # The last consumer-protocol member left: the group is classic again, and
        # after its rebalance the classic member owns everything.
        wait_for(lambda: (poll_all([a], 0.2, seen), len(owned(a)) == 4)[1], 60, "the classic member owns all four partitions again")
        g = admin.describe_consumer_groups([group])[group].result()
        assert str(g.type).endswith("CLASSIC"), g.type
        assert [m.client_id for m in g.members] == ["classic-a"]
    finally:
        a.close()
        if b is not None:
            b.close()
