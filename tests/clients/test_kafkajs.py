"""kafkajs (Node.js, its own protocol code) against the real broker: plain producers
with and without compression, an idempotent producer, transactions read with
read_committed, and a two-member consumer group. The npm package is installed by
tests/run-all (`npm ci` in tests/clients/js)."""

import json
import subprocess
from pathlib import Path

JS = Path(__file__).parent / "js"


def kafkajs(broker, scenario):
    r = subprocess.run(["node", str(JS / "kafkajs_check.mjs"), broker.bootstrap, scenario],
                       capture_output=True, text=True, timeout=120, cwd=JS)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_plain_producer_and_consumer(broker):
    out = kafkajs(broker, "plain")
    assert out["acked"] > 0
    values = sorted(v for _, _, v in out["got"])
    assert values == sorted(f"v{i}" for i in range(1000))
    for p in range(3):
        offsets = sorted(o for pp, o, _ in out["got"] if pp == p)
        assert offsets == list(range(len(offsets))), f"partition {p}"


def test_idempotent_producer(broker):
    out = kafkajs(broker, "idempotent")
    assert [v for _, _, v in out["got"]] == [f"idem-{i}" for i in range(10)]


def test_transactions_as_read_committed_sees_them(broker):
    out = kafkajs(broker, "transactional")
    assert [v for _, _, v in out["got"]] == ["committed-0", "committed-1", "committed-2"]


def test_a_two_member_group_reads_everything_once_and_commits(broker):
    out = kafkajs(broker, "group")
    values = sorted(v for _, _, v in out["seen"])
    assert values == sorted(f"g{i}" for i in range(200)), len(values)
    assert out["committed"] == 200
    assert "js-group" in out["groups"]
