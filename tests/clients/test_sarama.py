"""sarama (Go, Debian's golang-github-shopify-sarama-dev 1.22.1, its own protocol
code; installed by tests/run-all) against the real broker: a synchronous producer
with acks=all, plain and gzip, read back by partition consumers; a consumer group
that reads everything. (This sarama commits a group's offsets with OffsetCommit v1,
which Kafka 4 removed (KIP-896) and Sluice does not serve either: its commits are
refused, as a Kafka 4 broker refuses them.)"""

import json
import os
import subprocess
from pathlib import Path

import pytest

GO = Path(__file__).parent / "go" / "sarama_check"


@pytest.fixture(scope="module")
def sarama_bin(tmp_path_factory):
    out = tmp_path_factory.mktemp("go") / "sarama_check"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
               GOCACHE=str(out.parent / "cache"))
    r = subprocess.run(["go", "build", "-o", str(out), "."], cwd=GO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def sarama(sarama_bin, broker, scenario):
    r = subprocess.run([str(sarama_bin), broker.bootstrap, scenario], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_sync_producer_and_partition_consumers(sarama_bin, broker):
    out = sarama(sarama_bin, broker, "plain")
    for sent, got in [("acked", "got"), ("gzip", "got_gzip")]:
        acked = {(r["partition"], r["offset"], r["value"]) for r in out[sent]}
        read = {(r["partition"], r["offset"], r["value"]) for r in out[got]}
        assert acked == read, sent
        assert len(read) == len(out[sent])


def test_a_consumer_group_reads_everything(sarama_bin, broker):
    out = sarama(sarama_bin, broker, "group")
    assert sorted(r["value"] for r in out["seen"]) == sorted(f"v{i}" for i in range(200))
