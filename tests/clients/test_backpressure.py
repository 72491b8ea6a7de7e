"""Back pressure: producers that send faster than the broker can write are held back
by `queued.max.request.bytes`, so the broker's memory stays under the bound, and
nothing they sent is dropped."""

import socket
import struct
import threading
import time

from confluent_kafka import Consumer, TopicPartition
from kafka.record.default_records import DefaultRecordBatchBuilder

from helpers import create_topic

PARTITIONS = 8
RECORD = 1_000_000  # one record per batch, just under message.max.bytes
CONNECTIONS = 32
REQUESTS = 3  # pipelined per connection, all sent before any answer is read
BUDGET = 16 << 20


def one_record_batch():
    b = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, RECORD + 1024)
    b.append(0, int(time.time() * 1000), None, b"x" * RECORD, [])
    return bytes(b.build())


def produce_frame(topic, batch, correlation_id):
    """A Produce v3 request (acks=all) carrying `batch` to every partition."""
    client = b"flood"
    body = struct.pack(">hhih", 0, 3, correlation_id, len(client)) + client
    body += struct.pack(">hhi", -1, -1, 30_000)  # no transactional id, acks, timeout
    name = topic.encode()
    body += struct.pack(">ih", 1, len(name)) + name + struct.pack(">i", PARTITIONS)
    for p in range(PARTITIONS):
        body += struct.pack(">ii", p, len(batch)) + batch
    return struct.pack(">i", len(body)) + body


def read_exact(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        out += chunk
    return bytes(out)


def produce_errors(s):
    """Reads one Produce v3 response; returns its partitions' error codes."""
    (size,) = struct.unpack(">i", read_exact(s, 4))
    r = read_exact(s, size)
    at = 4  # correlation id
    (topics,) = struct.unpack_from(">i", r, at)
    at += 4
    codes = []
    for _ in range(topics):
        (n,) = struct.unpack_from(">h", r, at)
        at += 2 + n
        (parts,) = struct.unpack_from(">i", r, at)
        at += 4
        for _ in range(parts):
            _, code, _, _ = struct.unpack_from(">ihqq", r, at)
            at += 22
            codes.append(code)
    return codes


def flood(port, topic):
    """CONNECTIONS clients at once, each sending REQUESTS frames of PARTITIONS
    one-megabyte batches before reading any answer. Returns every error code."""
    batch = one_record_batch()
    frames = [produce_frame(topic, batch, i) for i in range(REQUESTS)]
    codes, failures = [], []
    start = threading.Barrier(CONNECTIONS)

    def client():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
                start.wait()
                for f in frames:
                    s.sendall(f)
                for _ in frames:
                    codes.extend(produce_errors(s))
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    return codes


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def end_offsets(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)]
    finally:
        c.close()


def flood_broker(make_broker, budget):
    """Floods a fresh broker with `queued.max.request.bytes=budget`; returns its peak
    RSS growth in MB, after checking that every batch was taken and is in the log."""
    b = make_broker(extra_env={"SLUICE_QUEUED_MAX_REQUEST_BYTES": str(budget)}).start()
    create_topic(b.bootstrap, "flood", PARTITIONS)
    before = peak_rss_mb(b.proc.pid)
    codes = flood(b.port, "flood")
    grown = peak_rss_mb(b.proc.pid) - before
    assert codes == [0] * (CONNECTIONS * REQUESTS * PARTITIONS), sorted(set(codes))
    assert end_offsets(b.bootstrap, "flood") == [CONNECTIONS * REQUESTS] * PARTITIONS
    b.stop()
    return grown


def test_a_flood_of_large_produce_requests_stays_within_queued_max_request_bytes(make_broker):
    # 32 connections each with 8 MB frames in flight could hold 256 MB of requests.
    bounded = flood_broker(make_broker, BUDGET)
    # The same flood without a bound, to show the load would otherwise exceed it.
    unbounded = flood_broker(make_broker, -1)
    print(f"peak RSS growth: {bounded:.0f} MB bounded by {BUDGET >> 20} MB, {unbounded:.0f} MB unbounded")
    limit = (BUDGET >> 20) + 12  # the budget, and 32 connections' buffers and tasks
    assert bounded < limit, f"peak RSS grew {bounded:.0f} MB under a {BUDGET >> 20} MB budget"
    assert unbounded > 2 * limit, f"the flood grew an unbounded broker only {unbounded:.0f} MB"
