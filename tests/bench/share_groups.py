"""Share groups (KIP-932) against a classic consumer group, in one run on one broker.

Starts a release `sluice server` on a free loopback port, writes N records of 100 B
to a 6-partition topic, then drains them three ways and reports records/s and the
broker's CPU time per record for each:
  - one classic consumer (subscribe, no commits): the baseline;
(each timed from its first record to its last: the classic group's 3 s initial
rebalance delay is left out; broker CPU is counted from the subscribe);
  - one ShareConsumer, implicit acknowledgement (every record acquired, delivered,
    accepted, and its state written durably to __share_group_state);
  - two ShareConsumers in two processes.
Apache Kafka cannot be run beside it here (Kafka 4.x needs a Maven registry), so the
ratio against the classic consumer on the same broker is what this reports.

  .venv/bin/python tests/bench/share_groups.py [--records N] [--binary PATH]
"""
import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain_share(bootstrap, group, topic, want, out):
    """Reads until `want` records arrived, or none for 3 s; reports how many, and when
    the first and the last came."""
    c = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group})
    c.subscribe([topic])
    got, first, last = 0, None, time.time()
    while got < want and time.time() - last < 3:
        batch = [m for m in c.poll(0.5) if m.error() is None]
        if batch:
            got += len(batch)
            last = time.time()
            first = first or last
    c.poll(0.5)  # acknowledges the last batch (implicit mode)
    c.close()
    out.put((got, first, last))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--binary", default="target/release/sluice")
    args = ap.parse_args()
    n = args.records
    data = tempfile.mkdtemp(prefix="sluice-share-bench-")
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = subprocess.Popen(
        [args.binary, "server", "--listen", bootstrap, "--data-dir", data],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("bench", 6, 1)])["bench"].result()
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
        value = b"x" * 100
        for i in range(n):
            while True:
                try:
                    p.produce("bench", value=value)
                    break
                except BufferError:
                    p.poll(0.05)
        p.flush()
        rows = []

        # Baseline: a classic consumer group.
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "classic", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        got, cpu0, t0 = 0, cpu_seconds(broker.pid), None
        c.subscribe(["bench"])
        while got < n:
            batch = sum(1 for m in c.consume(1000, 1.0) if m.error() is None)
            if batch:
                t0 = t0 or time.time()
                got += batch
        took, cpu = time.time() - t0, cpu_seconds(broker.pid) - cpu0
        c.close()
        rows.append(("classic group, 1 consumer", got, took, cpu))

        for members in (1, 2):
            group = f"share-{members}"
            fs = admin.incremental_alter_configs([ConfigResource(ResourceType.GROUP, group, incremental_configs=[
                ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])])
            for f in fs.values():
                f.result()
            q = mp.Queue()
            cpu0, t0 = cpu_seconds(broker.pid), time.time()
            procs = [mp.Process(target=drain_share, args=(bootstrap, group, "bench", n, q)) for _ in range(members)]
            for pr in procs:
                pr.start()
            results = [q.get(timeout=900) for _ in procs]
            for pr in procs:
                pr.join()
            total = sum(g for g, _, _ in results)
            took = max(last for _, _, last in results) - min(f for _, f, _ in results if f)
            cpu = cpu_seconds(broker.pid) - cpu0
            rows.append((f"share group, {members} consumer{'s' if members > 1 else ''}", total, took, cpu))

        base = rows[0][1] / rows[0][2]
        print(f"{n:,} records of 100 B, 6 partitions, one broker (release build)\n")
        print("| readers | records | seconds | records/s | vs classic | broker CPU µs/record |")
        print("|---|---|---|---|---|---|")
        for name, got, took, cpu in rows:
            rate = got / took
            print(f"| {name} | {got:,} | {took:.1f} | {rate:,.0f} | {rate / base:.0%} | {cpu / got * 1e6:.1f} |")
    finally:
        broker.terminate()
        broker.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
