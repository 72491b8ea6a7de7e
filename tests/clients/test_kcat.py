"""kcat (Debian's, linked to the old librdkafka 2.0.2) against the real broker."""

import subprocess

import pytest

from helpers import create_topic

N = 100_000


def kcat(broker, *args, stdin=None):
    r = subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=stdin, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_and_consume_100k(broker, acks):
    topic = f"kc-{acks}"
    create_topic(broker.bootstrap, topic, 3)
    lines = "".join(f"k{i % 13}:value-{i}\n" for i in range(N))
    kcat(broker, "-P", "-t", topic, "-K:", "-X", f"acks={acks}", "-X", "linger.ms=5", stdin=lines.encode())
    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%p %o %k %s\n").decode()
    rows = [l.split(" ") for l in out.splitlines()]
    assert len(rows) == N
    assert sorted(int(v.split("-")[1]) for *_, v in rows) == list(range(N))
    per = {}
    for p, o, k, v in rows:
        per.setdefault(p, []).append((int(o), int(v.split("-")[1])))
    for p, recs in per.items():
        assert [o for o, _ in recs] == list(range(len(recs)))
        assert [v for _, v in recs] == sorted(v for _, v in recs)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_codecs(broker, codec):
    topic = f"kc-{codec}"
    create_topic(broker.bootstrap, topic, 1)
    lines = "".join(f"{codec}-{i}\n" for i in range(3000))
    kcat(broker, "-P", "-t", topic, "-z", codec, stdin=lines.encode())
    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e").decode()
    assert out == lines


def test_consume_by_partition_and_offset_and_metadata(broker):
    create_topic(broker.bootstrap, "kc-po", 2)
    kcat(broker, "-P", "-t", "kc-po", "-p", "1", stdin="".join(f"m{i}\n" for i in range(10)).encode())
    out = kcat(broker, "-C", "-t", "kc-po", "-p", "1", "-o", "7", "-e", "-f", "%o %s\n").decode()
    assert out == "7 m7\n8 m8\n9 m9\n"
    assert kcat(broker, "-C", "-t", "kc-po", "-p", "0", "-o", "beginning", "-e").decode() == ""
    md = kcat(broker, "-L", "-t", "kc-po").decode()
    assert "2 partitions" in md and "leader 1" in md
