"""Consumer groups with real clients: balancing, failover, committed offsets."""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import create_topic as create, wait_for

MEMBER = Path(__file__).with_name("group_member.py")


def create_topic(broker, name, partitions):
    create(broker.bootstrap, name, partitions)


def produce(broker, topic, values, partitions=None):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": False, "linger.ms": 5})
    acked = []

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value().decode()))

    for i, v in enumerate(values):
        kw = {} if partitions is None else {"partition": i % partitions}
        p.produce(topic, v.encode(), on_delivery=on_delivery, **kw)
        p.poll(0)
    assert p.flush(60) == 0
    return acked


class Member:
    def __init__(self, broker, tmp_path, name, group, topic, **kw):
        self.out = tmp_path / f"{name}.jsonl"
        args = [sys.executable, str(MEMBER), "--bootstrap", broker.bootstrap, "--group", group,
                "--topic", topic, "--out", str(self.out)]
        for k, v in kw.items():
            args += [f"--{k.replace('_', '-')}", v]
        self.proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)

    def events(self):
        if not self.out.exists():
            return []
        lines = self.out.read_text().splitlines()
        return [json.loads(l) for l in lines if l.endswith("}")]

    def assignment(self):
        a = [e for e in self.events() if "assign" in e]
        return a[-1]["assign"] if a else []

    def records(self):
        return [e for e in self.events() if "v" in e]

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def balanced(members, partitions):
    """Each member owns a share, the shares are disjoint and cover every partition."""
    shares = [m.assignment() for m in members]
    flat = [p for s in shares for p in s]
    return all(shares) and sorted(flat) == list(range(partitions))


@pytest.mark.parametrize("client,assignor", [
    ("confluent", "range"),
    ("confluent", "roundrobin"),
    ("confluent", "cooperative-sticky"),
    ("kafka-python", "range"),
    ("kafka-python", "roundrobin"),
])
def test_three_members_share_six_partitions_and_take_over_from_a_killed_one(broker, tmp_path, client, assignor):
    topic = f"shared-{client}-{assignor}"
    create_topic(broker, topic, 6)
    produce(broker, topic, [f"before-{i}" for i in range(600)], partitions=6)
    members = [Member(broker, tmp_path, f"m{i}", "workers", topic, client=client, assignor=assignor) for i in range(3)]
    try:
        wait_for(lambda: balanced(members, 6), 60, "three members to split six partitions")
        # Keep producing while one member is killed.
        acked, stop = [], threading.Event()

        def keep_producing():
            i = 0
            while not stop.is_set():
                acked.extend(produce(broker, topic, [f"during-{i + j}" for j in range(50)], partitions=6))
                i += 50
                time.sleep(0.05)

        producer = threading.Thread(target=keep_producing)
        producer.start()
        time.sleep(1)
        victim, survivors = members[2], members[:2]
        victim.kill9()
        killed_at = time.time()
        wait_for(lambda: balanced(survivors, 6), 60, "the survivors to take over the killed member's partitions")
        took_over = max(e["t"] for m in survivors for e in m.events() if "assign" in e) - killed_at
        print(f"\n{client}/{assignor}: partitions moved {took_over:.1f}s after kill -9 (session.timeout.ms=6000)")
        assert took_over < 20
        time.sleep(1)
        stop.set()
        producer.join()
        # Commit-after-process: nothing acknowledged is skipped across the rebalance.
        want = {v for _, _, v in acked} | {f"before-{i}" for i in range(600)}

        def all_processed():
            seen = {r["v"] for m in members for r in m.records()}
            return want <= seen
        wait_for(all_processed, 60, "every record to be processed by some member")
    finally:
        for m in members:
            m.stop()


def consumer(broker, group, **kw):
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000}
    conf.update(kw)
    return Consumer(conf)


def poll_n(c, n, timeout=30):
    got, deadline = [], time.time() + timeout
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    return got


def test_group_resumes_from_committed_offsets_after_broker_kill9(broker):
    create_topic(broker, "resume", 3)
    produce(broker, "resume", [str(i) for i in range(300)], partitions=3)
    c = consumer(broker, "resumers")
    c.subscribe(["resume"])
    first = poll_n(c, 150)
    assert len(first) == 150
    # Manual commit of what was processed, with a metadata string.
    done = {}
    for m in first:
        done[m.partition()] = m.offset() + 1
    c.commit(offsets=[TopicPartition("resume", p, o, metadata=f"upto-{o}") for p, o in done.items()],
             asynchronous=False)
    c.close()
    broker.kill9()
    broker.start()
    c = consumer(broker, "resumers")
    committed = c.committed([TopicPartition("resume", p) for p in range(3)], timeout=30)
    for tp in committed:
        assert tp.offset == done.get(tp.partition, -1001), tp
        if tp.partition in done:
            assert tp.metadata == f"upto-{done[tp.partition]}"
    c.subscribe(["resume"])
    rest = poll_n(c, 150)
    c.close()
    assert len(rest) == 150
    firsts = {}
    for m in rest:
        firsts.setdefault(m.partition(), m.offset())
    for p, o in firsts.items():
        assert o == done.get(p, 0)
    seen = sorted(int(m.value()) for m in first + rest)
    assert seen == list(range(300))


def test_auto_commit_and_offset_reset_latest(broker):
    create_topic(broker, "auto", 2)
    produce(broker, "auto", [f"old-{i}" for i in range(100)])
    c = consumer(broker, "auto-committers", **{"enable.auto.commit": True, "auto.commit.interval.ms": 200})
    c.subscribe(["auto"])
    assert len(poll_n(c, 100)) == 100
    time.sleep(1)
    c.close()
    view = json.loads(broker.cli("group", "describe", "auto-committers", "--format", "json").stdout)
    assert sum(p["committed_offset"] for p in view["partitions"]) == 100
    assert view["total_lag"] == 0
    # A new group reading from "latest" sees only what is produced after it joined.
    late = consumer(broker, "latecomers", **{"auto.offset.reset": "latest"})
    late.subscribe(["auto"])
    # Probe until the consumer is positioned (it sees a probe), then produce.
    seen = []

    def sees_a_probe():
        produce(broker, "auto", ["probe"])
        seen.extend(poll_n(late, 1, timeout=0.5))
        return bool(seen)
    wait_for(sees_a_probe, 30, "the new group's consumer to start at 'latest'")
    produce(broker, "auto", [f"new-{i}" for i in range(10)])
    # Probes produced before the one seen may still be ahead of the new records.
    got = [m.value().decode() for m in seen]
    deadline = time.time() + 30
    while sum(v.startswith("new-") for v in got) < 10 and time.time() < deadline:
        got += [m.value().decode() for m in poll_n(late, 1, timeout=1)]
    late.close()
    assert not [v for v in got if v.startswith("old-")], "latest must skip what was there"
    assert sorted(v for v in got if v.startswith("new-")) == sorted(f"new-{i}" for i in range(10))


def test_kafka_python_auto_commit_round_trips(broker):
    from kafka import KafkaConsumer, TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata

    create_topic(broker, "kp-groups", 2)
    produce(broker, "kp-groups", [str(i) for i in range(200)])
    c = KafkaConsumer("kp-groups", bootstrap_servers=broker.bootstrap, group_id="kp",
                      auto_offset_reset="earliest", enable_auto_commit=True, auto_commit_interval_ms=200,
                      consumer_timeout_ms=5000)
    assert len(list(c)) == 200
    # An explicit commit with a metadata string; close() must not overwrite it.
    c.commit({KTP("kp-groups", 0): OffsetAndMetadata(c.position(KTP("kp-groups", 0)), "meta-kp", -1)})
    c.close(autocommit=False)
    c2 = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="kp")
    total = sum(c2.committed(KTP("kp-groups", p)) or 0 for p in range(2))
    meta = c2._coordinator.fetch_committed_offsets([KTP("kp-groups", 0)])[KTP("kp-groups", 0)].metadata
    c2.close()
    assert total == 200
    assert meta == "meta-kp"


def test_kcat_balanced_consumer_commits(broker):
    create_topic(broker, "kc", 3)
    produce(broker, "kc", [str(i) for i in range(300)], partitions=3)
    r = subprocess.run(["kcat", "-b", broker.bootstrap, "-G", "kcat-group", "-c", "300", "-q",
                        "-X", "auto.offset.reset=earliest", "-f", "%s\n", "kc"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(int(v) for v in r.stdout.split()) == list(range(300))
    view = json.loads(broker.cli("group", "describe", "kcat-group", "--format", "json").stdout)
    assert sum(p["committed_offset"] or 0 for p in view["partitions"]) == 300


def test_static_member_restart_keeps_its_partitions_without_a_rebalance(broker, tmp_path):
    create_topic(broker, "static", 4)
    a = Member(broker, tmp_path, "a", "statics", "static", instance_id="inst-a")
    b = Member(broker, tmp_path, "b", "statics", "static", instance_id="inst-b")
    try:
        wait_for(lambda: balanced([a, b], 4), 60, "two static members to split four partitions")
        mine = b.assignment()
        changes_of_a = len([e for e in a.events() if "assign" in e])
        b.kill9()
        b = Member(broker, tmp_path, "b2", "statics", "static", instance_id="inst-b")
        wait_for(lambda: b.assignment() == mine, 30, "the restarted static member to get its partitions back")
        time.sleep(2)
        assert len([e for e in a.events() if "assign" in e]) == changes_of_a, "a was not rebalanced"
    finally:
        a.stop()
        b.stop()


def test_group_cli_lists_describes_resets_and_deletes(broker):
    create_topic(broker, "cli-g", 2)
    produce(broker, "cli-g", [str(i) for i in range(40)], partitions=2)
    c = consumer(broker, "cli-group")
    c.subscribe(["cli-g"])
    assert len(poll_n(c, 40)) == 40
    c.commit(asynchronous=False)
    listed = json.loads(broker.cli("group", "list", "--format", "json").stdout)
    assert {"group": "cli-group", "state": "Stable", "protocol_type": "consumer", "group_type": "classic"} in listed
    view = json.loads(broker.cli("group", "describe", "cli-group", "--format", "json").stdout)
    assert len(view["members"]) == 1
    assert sorted(p for _, p in view["members"][0]["assignment"]) == [0, 1]
    assert [(p["committed_offset"], p["log_end_offset"], p["lag"]) for p in view["partitions"]] == [(20, 20, 0)] * 2
    # An active group's offsets cannot be reset or the group deleted.
    r = broker.cli("group", "reset-offsets", "cli-group", "--topic", "cli-g", "--to-earliest", "--execute", check=False)
    assert r.returncode != 0 and "active members" in r.stderr
    assert "members" in broker.cli("group", "delete", "cli-group", check=False).stderr
    c.close()
    broker.cli("group", "reset-offsets", "cli-group", "--topic", "cli-g", "--shift-by", "-5", "--execute")
    view = json.loads(broker.cli("group", "describe", "cli-group", "--format", "json").stdout)
    assert view["state"] == "Empty" and view["total_lag"] == 10
    broker.cli("group", "delete", "cli-group")
    listed = json.loads(broker.cli("group", "list", "--format", "json").stdout)
    assert all(g["group"] != "cli-group" for g in listed)
