"""A 3-node cluster of real `sluice server` processes on loopback: a topic with
replication factor 3 keeps every acks=all record through `kill -9` of a partition
leader and then of the controller, while a confluent-kafka producer writes and a
consumer group reads; the time from kill to new leader is measured."""

import json
import subprocess
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BIN, Broker, free_port
from helpers import produce_confluent, wait_for

SESSION_MS = 6000


def start_cluster(tmp_path, n=3, extra_env=None):
    voters = ",".join(f"{i}@127.0.0.1:{free_port()}" for i in range(1, n + 1))
    brokers = []
    for i in range(1, n + 1):
        env = {
            "SLUICE_NODE_ID": str(i),
            "SLUICE_CONTROLLER_QUORUM_VOTERS": voters,
            "SLUICE_BROKER_SESSION_TIMEOUT_MS": str(SESSION_MS),
            "SLUICE_BROKER_HEARTBEAT_INTERVAL_MS": "500",
            **(extra_env or {}),
        }
        brokers.append(Broker(tmp_path / f"node{i}", free_port(), extra_env=env))
    for b in brokers:
        b.data_dir.mkdir(parents=True)
        b.launch()
    for b in brokers:
        b.wait_listening()
    return brokers


def status(broker):
    r = subprocess.run(
        [str(BIN), "cluster", "status", "--format", "json", "--bootstrap", broker.bootstrap],
        capture_output=True, text=True, timeout=30,
    )
    return json.loads(r.stdout) if r.returncode == 0 else None


def partition_leader(bootstrap, topic, partition):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=10)
    p = md.topics[topic].partitions[partition]
    return p.leader, list(p.isrs), md.controller_id


def read_back(bootstrap, topic, partitions):
    """Every record stored in the topic's partitions, read from the start until idle."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "audit", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen, idle = [], 0
    while idle < 20:
        msg = c.poll(0.5)
        if msg is None or msg.error():
            idle += 1
            continue
        idle = 0
        seen.append(msg.value().decode())
    c.close()
    return seen


def test_three_nodes_keep_acknowledged_records_through_kill9_of_leader_and_controller(tmp_path):
    brokers = start_cluster(tmp_path)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    bootstrap = ",".join(b.bootstrap for b in brokers)
    try:
        wait_for(lambda: (status(brokers[0]) or {}).get("brokers") and len(status(brokers[0])["brokers"]) == 3,
                 timeout=30, what="three registered brokers")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("orders", num_partitions=3, replication_factor=3)])["orders"].result(30)
        wait_for(lambda: partition_leader(bootstrap, "orders", 0)[0] >= 0, timeout=20, what="a leader")

        acked, errors = [], []
        stop = threading.Event()
        # Set once the producer has flushed: every acknowledgement is in `acked`.
        produced = threading.Event()

        def produce():
            p = Producer({
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 60000,
            })

            def done(err, msg):
                if err:
                    errors.append(err)
                else:
                    acked.append(msg.value().decode())

            i = 0
            while not stop.is_set():
                try:
                    p.produce("orders", key=str(i % 30), value=f"v{i}", on_delivery=done)
                    i += 1
                except BufferError:
                    p.poll(0.05)
                p.poll(0)
                time.sleep(0.002)
            p.flush(60)

        consumed, seen_by_group = [], set()

        def consume():
            c = Consumer({
                "bootstrap.servers": bootstrap,
                "group.id": "billing",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 10000,
            })
            c.subscribe(["orders"])
            # Redeliveries after a rebalance make duplicates (at least once): stop once
            # every acknowledged value has been seen, not after a count.
            while not produced.is_set() or not seen_by_group.issuperset(acked):
                msg = c.poll(0.2)
                if msg is None or msg.error():
                    if produced.is_set() and time.time() > consume.deadline:
                        break
                    continue
                consumed.append(msg.value().decode())
                seen_by_group.add(consumed[-1])
                if len(consumed) % 50 == 0:
                    try:
                        c.commit(asynchronous=False)
                    except Exception:
                        pass
            c.close()

        consume.deadline = float("inf")
        producer = threading.Thread(target=produce)
        consumer = threading.Thread(target=consume)
        producer.start()
        consumer.start()
        wait_for(lambda: len(acked) > 300, timeout=30, what="records acknowledged")

        failovers = {}
        # 1. The leader of partition 0 dies.
        leader, _, _ = partition_leader(bootstrap, "orders", 0)
        killed = time.time()
        by_id[leader].kill9()
        survivors = ",".join(b.bootstrap for i, b in by_id.items() if i != leader)
        wait_for(lambda: partition_leader(survivors, "orders", 0)[0] not in (-1, leader),
                 timeout=30, what="a new leader of orders-0")
        failovers["partition leader"] = time.time() - killed
        before = len(acked)
        wait_for(lambda: len(acked) > before + 200, timeout=30, what="writes after the leader died")
        by_id[leader].start()
        wait_for(lambda: len(partition_leader(bootstrap, "orders", 0)[1]) == 3, timeout=60,
                 what="the restarted broker back in the ISR")

        # 2. The controller (metadata quorum leader) dies.
        controller = partition_leader(bootstrap, "orders", 0)[2]
        survivors = ",".join(b.bootstrap for i, b in by_id.items() if i != controller)
        led_before = {p: partition_leader(survivors, "orders", p)[0] for p in range(3)}
        killed = time.time()
        by_id[controller].kill9()
        wait_for(lambda: partition_leader(survivors, "orders", 0)[2] not in (-1, controller),
                 timeout=30, what="a new controller")
        failovers["controller"] = time.time() - killed
        moved = [p for p, l in led_before.items() if l == controller]
        for p in moved:
            wait_for(lambda: partition_leader(survivors, "orders", p)[0] not in (-1, controller),
                     timeout=30, what=f"a new leader of orders-{p}")
        failovers["controller's partitions"] = time.time() - killed
        before = len(acked)
        wait_for(lambda: len(acked) > before + 200, timeout=30, what="writes after the controller died")
        by_id[controller].start()

        time.sleep(2)
        stop.set()
        producer.join(90)
        consume.deadline = time.time() + 60
        produced.set()
        consumer.join(120)
        print(f"failover times: {json.dumps({k: round(v, 2) for k, v in failovers.items()})}")
        print(f"acknowledged {len(acked)}, errors {len(errors)}, consumed by the group {len(consumed)} "
              f"({len(consumed) - len(set(consumed))} redelivered)")

        # Every acknowledged record is in the log exactly once.
        seen = read_back(bootstrap, "orders", 3)
        assert len(seen) == len(set(seen)), "a record is stored twice"
        missing = set(acked) - set(seen)
        assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
        # The group carried on through both kills (commit-after-process: nothing skipped).
        assert set(acked) <= set(consumed), f"{len(set(acked) - set(consumed))} records never reached the group"
        assert failovers["partition leader"] < SESSION_MS / 1000 + 10
    finally:
        for b in brokers:
            b.stop()
        for b in brokers:
            assert "panicked" not in b.output(), b.output()[-3000:]


def replicas_of(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=10)
    return {p: list(pm.replicas) for p, pm in md.topics[topic].partitions.items()}


def test_cluster_reassign_moves_every_replica_off_a_broker_while_a_producer_writes(tmp_path):
    # Four brokers: the internal topics (replication factor 3) then have somewhere to go.
    brokers = start_cluster(tmp_path, n=4)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    bootstrap = ",".join(b.bootstrap for b in brokers)
    try:
        wait_for(lambda: len((status(brokers[0]) or {}).get("brokers") or []) == 4,
                 timeout=30, what="four registered brokers")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("moves", num_partitions=3, replication_factor=2)])["moves"].result(30)
        wait_for(lambda: all(r for r in replicas_of(bootstrap, "moves").values()), timeout=20,
                 what="the topic")
        assert any(1 in r for r in replicas_of(bootstrap, "moves").values())

        acked, errors, stop = [], [], threading.Event()

        def produce():
            p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                          "linger.ms": 5, "message.timeout.ms": 60000})

            def done(err, msg):
                (errors if err else acked).append(err or msg.value().decode())

            i = 0
            while not stop.is_set():
                try:
                    p.produce("moves", value=f"m{i}:" + "x" * 200, on_delivery=done)
                    i += 1
                except BufferError:
                    p.poll(0.05)
                p.poll(0)
                time.sleep(0.001)
            p.flush(60)

        producer = threading.Thread(target=produce)
        producer.start()
        wait_for(lambda: len(acked) > 2000, timeout=30, what="records acknowledged")

        # A group commits its position: __consumer_offsets exists and moves too.
        partitions = [TopicPartition("moves", p) for p in range(3)]
        g = Consumer({"bootstrap.servers": bootstrap, "group.id": "tracker", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        g.subscribe(["moves"])
        got, deadline = 0, time.time() + 30
        while got < 500 and time.time() < deadline:
            m = g.poll(0.2)
            got += bool(m is not None and not m.error())
        g.commit(asynchronous=False)
        committed = {tp.partition: tp.offset for tp in g.committed(partitions, timeout=10)}
        g.close()
        assert sum(o for o in committed.values() if o > 0) >= 500, committed

        cli = [str(BIN), "cluster", "reassign", "--bootstrap", brokers[1].bootstrap]
        plan = subprocess.run(cli + ["--remove-broker", "1", "--dry-run"], capture_output=True,
                              text=True, timeout=30)
        assert plan.returncode == 0, plan.stderr
        assert "-> [" in plan.stdout and replicas_of(bootstrap, "moves") != {}, plan.stdout
        started = time.time()
        run = subprocess.run(cli + ["--remove-broker", "1", "--throttle", "2000000"], capture_output=True,
                             text=True, timeout=120)
        took = time.time() - started
        assert run.returncode == 0, run.stdout + run.stderr
        print(run.stdout.strip())
        print(f"reassigned off broker 1 in {took:.1f} s")
        after = replicas_of(bootstrap, "moves")
        assert all(1 not in r and len(r) == 2 for r in after.values()), after
        offsets = replicas_of(bootstrap, "__consumer_offsets")
        assert all(1 not in r and len(r) == 3 for r in offsets.values()), offsets

        # Broker 1 holds nothing now: it can go, and writes carry on.
        by_id[1].kill9()
        before = len(acked)
        wait_for(lambda: len(acked) > before + 500, timeout=30, what="writes after removing broker 1")
        stop.set()
        producer.join(90)
        assert not errors, errors[:5]

        survivors = ",".join(b.bootstrap for i, b in by_id.items() if i != 1)
        seen = read_back(survivors, "moves", 3)
        # The group's committed position survived the move and broker 1's death.
        g = Consumer({"bootstrap.servers": survivors, "group.id": "tracker", "enable.auto.commit": False})
        assert {tp.partition: tp.offset for tp in g.committed(partitions, timeout=30)} == committed
        g.close()
        print(f"acknowledged {len(acked)}, read back {len(seen)}")
        assert len(seen) == len(set(seen)), "a record is stored twice"
        missing = set(acked) - set(seen)
        assert not missing, f"{len(missing)} acknowledged records lost"
    finally:
        for b in brokers:
            b.stop()
        for b in brokers:
            assert "panicked" not in b.output(), b.output()[-3000:]


def test_topic_describe_through_any_broker_shows_each_partitions_leader(tmp_path):
    """`sluice topic describe` asked through any of three brokers asks each partition's
    leader for its log, and prints the leader the cluster's metadata names."""
    brokers = start_cluster(tmp_path)
    try:
        deadline = time.time() + 30
        while (s := status(brokers[0])) is None or len(s.get("brokers", [])) < 3:
            assert time.time() < deadline, s
            time.sleep(0.3)
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        admin.create_topics([NewTopic("spread", num_partitions=6, replication_factor=3)])["spread"].result(30)
        acked = produce_confluent(brokers[0].bootstrap, "spread", [(None, b"v%d" % i) for i in range(600)], "all")
        ends = {}
        for p, o, _, _ in acked:
            ends[p] = max(ends.get(p, -1), o + 1)
        leaders = {p: partition_leader(brokers[0].bootstrap, "spread", p)[0] for p in range(6)}
        assert len(set(leaders.values())) > 1, "leaders are spread over the brokers"
        for b in brokers:
            r = b.cli("topic", "describe", "spread")
            rows = [line.split("\t") for line in r.stdout.splitlines()[2:8]]
            got = {int(row[0]): (int(row[1]), int(row[3])) for row in rows}
            assert got == {p: (leaders[p], ends.get(p, 0)) for p in range(6)}, (b.port, got, leaders)
    finally:
        for b in brokers:
            b.stop()
