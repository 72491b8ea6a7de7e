"""A consumer-group member run as its own process, so tests can kill -9 it.

Writes JSON lines to --out: {"assign": [partitions]} whenever its assignment
changes and {"p": partition, "o": offset, "v": value} for each record processed.
Commits only after the records are written and flushed (commit-after-process).
"""

import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    ap.add_argument("--assignor", default="range")
    ap.add_argument("--instance-id")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = open(a.out, "a", buffering=1)
    last = None

    def note_assignment(parts):
        nonlocal last
        parts = sorted(parts)
        if parts != last:
            last = parts
            out.write(json.dumps({"assign": parts, "t": time.time()}) + "\n")
            out.flush()

    if a.client == "confluent":
        from confluent_kafka import Consumer

        conf = {
            "bootstrap.servers": a.bootstrap, "group.id": a.group,
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": a.assignor,
        }
        if a.instance_id:
            conf["group.instance.id"] = a.instance_id
        c = Consumer(conf)
        c.subscribe([a.topic])
        while True:
            msgs = c.consume(num_messages=200, timeout=0.2)
            note_assignment(p.partition for p in c.assignment())
            good = [m for m in msgs if not m.error()]
            for m in good:
                out.write(json.dumps({"p": m.partition(), "o": m.offset(), "v": m.value().decode()}) + "\n")
            out.flush()
            if good:
                c.commit(asynchronous=False)
    else:
        from kafka import KafkaConsumer
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[a.assignor]
        c = KafkaConsumer(
            a.topic, bootstrap_servers=a.bootstrap, group_id=a.group,
            auto_offset_reset="earliest", enable_auto_commit=False,
            session_timeout_ms=6000, heartbeat_interval_ms=500,
            partition_assignment_strategy=[assignor],
        )
        while True:
            batches = c.poll(timeout_ms=200)
            note_assignment(tp.partition for tp in c.assignment())
            n = 0
            for tp, records in batches.items():
                for r in records:
                    out.write(json.dumps({"p": tp.partition, "o": r.offset, "v": r.value.decode()}) + "\n")
                    n += 1
            out.flush()
            if n:
                c.commit()


if __name__ == "__main__":
    sys.exit(main())
