"""Durability and bad input against the real broker process: kill -9, corrupt
segments, a full disk, hostile frames."""

import os
import socket
import struct
import subprocess
import threading
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from helpers import consume_all, consume_to_end, create_topic, produce_confluent


def stream_through_kill9(broker, topic, idempotent, at_least, at_most):
    """Produces to `topic` (acks=all) while the broker is killed with -9 and started
    again; returns the deliveries that succeeded and failed, and how many were sent."""
    create_topic(broker.bootstrap, topic, 3)
    acked, failed = [], []

    def done(err, msg):
        (failed if err else acked).append((msg.partition(), msg.offset(), msg.value()))

    p = Producer({
        "bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2,
        "enable.idempotence": idempotent, "message.timeout.ms": 60000, "retry.backoff.ms": 100,
        "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 200,
    })
    killed = threading.Event()

    def killer():
        time.sleep(1.5)
        broker.kill9()
        killed.set()
        time.sleep(1.0)
        broker.start()

    t = threading.Thread(target=killer)
    t.start()
    i = 0
    while (not killed.is_set() or i < at_least) and i < at_most:
        try:
            p.produce(topic, key=b"%d" % (i % 3), value=b"r%d" % i, on_delivery=done)
            i += 1
        except BufferError:
            pass
        p.poll(0 if i % 1000 else 0.001)
    t.join()
    assert p.flush(90) == 0
    assert killed.is_set()
    return acked, failed, i


def test_kill9_mid_acks_all_stream_loses_nothing_acknowledged(broker):
    acked, _, _ = stream_through_kill9(broker, "k9", False, 200_000, 400_000)
    assert len(acked) > 10_000, "the stream must be well under way when the broker dies"
    stored = {}
    for part, off, _, val in consume_to_end(broker.bootstrap, "k9", 3):
        stored[(part, off)] = val
    missing = [(p_, o, v) for p_, o, v in acked if stored.get((p_, o)) != v]
    assert not missing, f"{len(missing)} acknowledged records missing or changed, e.g. {missing[:3]}"
    # Nothing that was never sent appears.
    assert all(v.startswith(b"r") for v in stored.values())


def batches(path):
    data = path.read_bytes()
    pos, out = 0, []
    while pos + 12 <= len(data):
        base, length = struct.unpack(">qi", data[pos:pos + 12])
        out.append((base, pos, 12 + length))
        pos += 12 + length
    return out


def test_corrupt_segment_is_truncated_and_reported_never_served(broker):
    create_topic(broker.bootstrap, "rot", 1)
    for chunk in range(10):
        produce_confluent(broker.bootstrap, "rot", [(None, b"c%d-%d" % (chunk, i)) for i in range(100)], "all")
    broker.stop()
    seg = next((broker.data_dir / "rot-0").glob("*.log"))
    found = batches(seg)
    assert len(found) >= 5
    base, pos, size = found[-3]
    with open(seg, "r+b") as f:
        f.seek(pos + size - 5)
        byte = f.read(1)
        f.seek(pos + size - 5)
        f.write(bytes([byte[0] ^ 0xFF]))
    broker.start()
    out = broker.output()
    assert "truncating log at the last valid batch" in out and "CRC" in out
    got = consume_all(broker.bootstrap, "rot", 1, base, timeout=10)
    assert [o for _, o, _, _ in got] == list(range(base))
    # New writes continue densely from the truncation point.
    acked = produce_confluent(broker.bootstrap, "rot", [(None, b"after")], "all")
    assert acked[0][1] == base


def test_full_disk_fails_produce_with_storage_error_and_broker_stays_up(make_broker, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    broker = make_broker(data_dir=mnt / "data")
    try:
        broker.start()
        create_topic(broker.bootstrap, "full", 1)
        acked = produce_confluent(broker.bootstrap, "full", [(None, b"early-%d" % i) for i in range(100)], "all")
        errors = []
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": False,
                      "message.timeout.ms": 5000, "retries": 0})
        for i in range(8000):
            p.produce("full", value=b"x" * 1000, on_delivery=lambda e, m: errors.append(e) if e else None)
            p.poll(0)
        p.flush(30)
        assert errors, "a 3 MiB disk cannot take 8 MB"
        assert any(e.code() == KafkaError.KAFKA_STORAGE_ERROR for e in errors), {e.code() for e in errors}
        assert broker.alive()
        got = consume_all(broker.bootstrap, "full", 1, 100, timeout=10)
        assert [v for *_, v in got[:100]] == [v for *_, v in acked]
        assert "panicked" not in broker.output()
    finally:
        broker.stop()
        subprocess.run(["umount", "-l", str(mnt)])


def log_start(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[0]
    finally:
        c.close()


def read_from_log_start(bootstrap, topic):
    """[(offset, value)] of partition 0 from its log start to its high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, low)])
        out, deadline = [], time.time() + 30
        while (not out or out[-1][0] + 1 < high) and time.time() < deadline:
            for m in c.consume(10000, 0.5):
                assert not m.error(), m.error()
                out.append((m.offset(), m.value()))
        assert [o for o, _ in out] == list(range(low, high)), (low, high, len(out))
        return out
    finally:
        c.close()


def fill_until_refused(bootstrap, topic):
    """Writes 1 KB records until the disk refuses them; the acknowledged offsets and
    the error codes of the refused ones."""
    acked, errors = [], []

    def done(err, msg):
        if err:
            errors.append(err.code())
        else:
            acked.append(msg.offset())
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                  "message.timeout.ms": 5000, "retries": 0, "batch.num.messages": 50})
    for i in range(8000):
        p.produce(topic, value=b"%05d" % i + b"x" * 1000, on_delivery=done)
        p.poll(0)
    p.flush(30)
    return acked, errors


def test_a_full_disk_takes_writes_again_once_delete_records_or_retention_frees_space(make_broker, tmp_path):
    """Nothing to restart: once DeleteRecords or retention deletes segments of a full
    disk, the next writes are acknowledged."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    broker = make_broker(data_dir=mnt / "data", extra_env={"SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS": "200"})
    broker.log_path = tmp_path / "broker.log"  # not on the full disk
    try:
        broker.start()
        create_topic(broker.bootstrap, "full", 1, **{"segment.bytes": "262144"})
        acked, errors = fill_until_refused(broker.bootstrap, "full")
        assert KafkaError.KAFKA_STORAGE_ERROR in errors, set(errors)
        assert acked, "some records fit"
        high = max(acked) + 1

        # DeleteRecords frees the segments below the high watermark: a megabyte
        # more is taken at once.
        broker.cli("topic", "trim", "full", "--partition", "0", "--offset", str(high))
        more = produce_confluent(broker.bootstrap, "full", [(None, b"x" * 1000)] * 1000, "all")
        assert [o for _, o, _, _ in more] == list(range(high, high + 1000))
        got = read_from_log_start(broker.bootstrap, "full")
        assert got[0][0] == high and got[-1][0] == high + 999

        # A topic whose records expire after 3 s fills the disk again; retention
        # frees it. (Its creation is written to the metadata log while there is room:
        # a metadata write on a full disk halts the node, as Kafka's does.)
        create_topic(broker.bootstrap, "expiring", 1, **{"segment.bytes": "262144", "retention.ms": "3000"})
        acked, errors = fill_until_refused(broker.bootstrap, "expiring")
        assert KafkaError.KAFKA_STORAGE_ERROR in errors, set(errors)
        deadline = time.time() + 30
        while log_start(broker.bootstrap, "expiring") == 0:
            assert time.time() < deadline, "retention deleted nothing"
            time.sleep(0.5)
        more = produce_confluent(broker.bootstrap, "expiring", [(None, b"x" * 1000)] * 500, "all")
        assert len(more) == 500
        assert broker.alive()
    finally:
        broker.stop()
        subprocess.run(["umount", "-l", str(mnt)])
    assert "panicked" not in broker.output()


def frame(api_key, version, correlation, body, flexible=False):
    header = struct.pack(">hhih", api_key, version, correlation, 4) + b"test"
    if flexible:
        header += b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def closed(sock):
    sock.settimeout(5)
    try:
        return sock.recv(4) == b""
    except ConnectionResetError:
        return True


def test_hostile_frames_close_only_their_connection(broker):
    host, port = "127.0.0.1", broker.port
    cases = [
        # Metadata v1 claiming 2^31-1 topics in a 4-byte array header.
        frame(3, 1, 1, struct.pack(">i", 0x7FFFFFFF)),
        # Produce v9 (flexible) claiming 2^32-2 topics.
        frame(0, 9, 2, b"\x00" + struct.pack(">hi", -1, 1000) + b"\xff\xff\xff\xff\x0f", flexible=True),
        # A frame far over socket.request.max.bytes.
        struct.pack(">i", 1 << 30) + b"\x00" * 16,
        # Garbage and an unknown API key.
        struct.pack(">i", 8) + os.urandom(8),
        frame(999, 0, 3, b""),
    ]
    for data in cases:
        s = socket.create_connection((host, port))
        s.sendall(data)
        assert closed(s), data[:16]
        s.close()
    assert broker.alive()
    # A newer ApiVersions than we know gets error 35 and our version list.
    s = socket.create_connection((host, port))
    s.sendall(frame(18, 99, 77, b"\x00\x00\x00", flexible=True))
    size = struct.unpack(">i", s.recv(4))[0]
    body = b""
    while len(body) < size:
        body += s.recv(size - len(body))
    corr, err, n = struct.unpack(">ihi", body[:10])
    assert (corr, err) == (77, 35) and n >= 10
    s.close()
    produce_confluent(broker.bootstrap, "still-up", [(None, b"ok")], "all")


def test_idempotent_producer_through_a_broker_kill9_writes_each_record_once_in_order(broker):
    """librdkafka's idempotent producer retries what was in flight when the broker
    died; the broker, its producer state rebuilt from the log, stores each record
    exactly once and in send order per partition."""
    acked, failed, i = stream_through_kill9(broker, "idem-k9", True, 150_000, 300_000)
    assert not failed, f"{len(failed)} deliveries failed"
    assert len(acked) == i
    stored = consume_to_end(broker.bootstrap, "idem-k9", 3)
    values = [v for _, _, _, v in stored]
    assert len(values) == len(set(values)) == i, "each record exactly once"
    per_partition = {}
    for part, _, _, v in sorted(stored):
        per_partition.setdefault(part, []).append(int(v[1:]))
    for part, seq in per_partition.items():
        assert seq == sorted(seq), f"partition {part} out of send order"
