"""The sluice command line against the real broker."""


def test_topic_produce_consume_round_trip(broker):
    assert "created topic cli with 3 partition(s)" in broker.cli("topic", "create", "cli", "--partitions", "3").stdout
    assert "cli" in broker.cli("topic", "list").stdout.split()
    r = broker.cli("topic", "create", "cli", check=False)
    assert r.returncode != 0 and "already exists" in r.stderr
    lines = "".join(f"key{i % 5}:value {i}\n" for i in range(300))
    for acks in ["0", "1", "all"]:
        broker.cli("produce", "cli", "--acks", acks, stdin=lines)
    out = broker.cli("consume", "cli", "--from-beginning", "--max-messages", "900").stdout.splitlines()
    assert len(out) == 900
    rows = [l.split("\t") for l in out]
    keys = {}
    for p, o, k, v in rows:
        keys.setdefault(k, set()).add(p)
    assert all(len(ps) == 1 for ps in keys.values())
    part = rows[0][0]
    off = broker.cli("consume", "cli", "--partition", part, "--offset", "2", "--max-messages", "1").stdout
    assert off.split("\t")[:2] == [part, "2"]
    desc = broker.cli("topic", "describe", "cli").stdout
    assert "3 partition(s)" in desc and "max.message.bytes=1048588" in desc
    broker.cli("produce", "cli", "--partition", "2", "--no-keys", stdin="a:b\n")
    last = broker.cli("consume", "cli", "--partition", "2", "--offset", "0", "--idle-timeout-ms", "500").stdout.splitlines()[-1]
    assert last.split("\t")[2:] == ["", "a:b"]
    broker.cli("topic", "delete", "cli")
    assert "cli" not in broker.cli("topic", "list").stdout.split()
    r = broker.cli("consume", "nope", "--max-messages", "1", check=False)
    assert r.returncode != 0 and "nope" in r.stderr


def test_bad_server_config_is_named(tmp_path):
    import subprocess

    from conftest import BIN

    cfg = tmp_path / "bad.toml"
    cfg.write_text("num.partitions = 0\n")
    r = subprocess.run([str(BIN), "server", "--config", str(cfg), "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "num.partitions" in r.stderr


def test_a_kafka_server_properties_file_starts_a_broker(tmp_path):
    """Kafka 4's combined-mode server.properties: the client listener serves, the
    CONTROLLER listener is Sluice's own quorum, unused keys are logged as ignored."""
    from conftest import Broker, free_port
    from helpers import consume_all, create_topic, produce_confluent

    port = free_port()
    props = tmp_path / "server.properties"
    props.write_text(f"""# Kafka's quickstart, on a free port
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{free_port()}
advertised.listeners=PLAINTEXT://localhost:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
num.network.threads=3
num.io.threads=8
log.dirs={tmp_path / "kraft-logs"}
num.partitions=2
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
log.retention.hours=168
""")
    b = Broker(tmp_path / "unused", port)
    b.launch = lambda: launch_with(b, ["server", "--config", str(props)])
    b.start()
    try:
        create_topic(b.bootstrap, "props", 2)
        acked = produce_confluent(b.bootstrap, "props", [(None, b"v%d" % i) for i in range(10)], "all")
        assert len(acked) == 10
        assert len(consume_all(b.bootstrap, "props", 2, 10)) == 10
        assert (tmp_path / "kraft-logs" / "props-0").is_dir(), "log.dirs is used"
        out = b.output()
        assert "num.io.threads=8 is ignored" in out, out[-2000:]
    finally:
        b.stop()


def launch_with(broker, args):
    import os
    import subprocess

    from conftest import BIN
    broker.log = open(broker.log_path, "ab")
    broker.proc = subprocess.Popen([str(BIN), *args], stdout=broker.log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, SLUICE_LOG="info"))
    return broker


def test_a_listener_sluice_cannot_serve_stops_it_at_start(tmp_path):
    import subprocess

    from conftest import BIN

    # SSL is served on client listeners (test_security.py), not between brokers.
    for listeners, named in [("SSL://127.0.0.1:19093", "inter-broker"),
                             ("PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094", "SASL_SSL")]:
        r = subprocess.run([str(BIN), "server", "--listen", listeners, "--data-dir", str(tmp_path / "d")],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode != 0 and named in r.stderr and "not served" in r.stderr, r.stderr


def test_cli_formats_headers_times_and_added_partitions(broker):
    import json
    import time

    broker.cli("topic", "create", "fmt", "--partitions", "1")
    broker.cli("produce", "fmt", "--header", "origin=cli", "--header", "v=2", stdin="a:1\nb:2\n")
    middle = int(time.time() * 1000)
    time.sleep(0.05)
    broker.cli("produce", "fmt", stdin="c:3\n")
    out = broker.cli("consume", "fmt", "--from-beginning", "--max-messages", "3",
                     "--format", "%t|%p|%o|%k|%v|%h|%K|%S").stdout.splitlines()
    assert out == ["fmt|0|0|a|1|origin=cli,v=2|1|1", "fmt|0|1|b|2|origin=cli,v=2|1|1", "fmt|0|2|c|3||1|1"], out
    # --from-time: the first record at or after the time.
    out = broker.cli("consume", "fmt", "--from-time", str(middle), "--max-messages", "1",
                     "--format", "%o %k %T").stdout.split()
    assert out[:2] == ["2", "c"] and int(out[2]) >= middle, out
    bad = broker.cli("consume", "fmt", "--format", "%z", "--max-messages", "1", check=False)
    assert bad.returncode != 0 and "%z" in bad.stderr

    assert "now has 3 partition(s)" in broker.cli("topic", "add-partitions", "fmt", "--count", "3").stdout
    described = json.loads(broker.cli("topic", "describe", "fmt", "--format", "json").stdout)
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert described["partitions"][0]["high_watermark"] == 3
    assert any(c["name"] == "cleanup.policy" and c["value"] == "delete" for c in described["configs"])
    assert "fmt" in json.loads(broker.cli("topic", "list", "--format", "json").stdout)
    bad = broker.cli("topic", "add-partitions", "fmt", "--count", "2", check=False)
    assert bad.returncode != 0 and "INVALID_PARTITIONS" in bad.stderr


def test_cli_consumes_as_a_group_member_and_manages_group_offsets(broker):
    """`consume --group` joins with the KIP-848 protocol and commits what it prints;
    `group describe` shows such a group; `group seek --to-time` and `group
    offset-delete` move and drop its offsets."""
    import json
    import time
    broker.cli("topic", "create", "gm", "--partitions", "2")
    broker.cli("produce", "gm", "--partition", "0", stdin="".join(f"k:v{i}\n" for i in range(5)))
    mark = int(time.time() * 1000)
    time.sleep(0.05)
    broker.cli("produce", "gm", "--partition", "1", stdin="".join(f"k:w{i}\n" for i in range(5)))
    out = broker.cli("consume", "gm", "--group", "gm-g", "--from-beginning", "--max-messages", "10",
                     "--format", "%p:%o:%v").stdout.split()
    assert sorted(out) == sorted([f"0:{i}:v{i}" for i in range(5)] + [f"1:{i}:w{i}" for i in range(5)])
    view = json.loads(broker.cli("group", "describe", "gm-g", "--format", "json").stdout)
    assert view["protocol_type"] == "consumer" and view["state"] == "Empty" and view["epoch"] >= 1
    assert [(p["partition"], p["committed_offset"], p["lag"]) for p in view["partitions"]] == [(0, 5, 0), (1, 5, 0)]
    listed = json.loads(broker.cli("group", "list", "--format", "json").stdout)
    assert {"group": "gm-g", "state": "Empty", "protocol_type": "consumer", "group_type": "consumer"} in listed
    # Nothing new: a second run prints nothing and stops when idle.
    again = broker.cli("consume", "gm", "--group", "gm-g", "--idle-timeout-ms", "1500").stdout
    assert again == ""
    # Seek by time: partition 0's records all precede the mark, partition 1's follow it.
    broker.cli("group", "seek", "gm-g", "--topic", "gm", "--to-time", str(mark))
    view = json.loads(broker.cli("group", "describe", "gm-g", "--format", "json").stdout)
    assert [(p["partition"], p["committed_offset"]) for p in view["partitions"]] == [(0, 5), (1, 0)]
    out = broker.cli("consume", "gm", "--group", "gm-g", "--max-messages", "5", "--format", "%p:%v").stdout.split()
    assert out == [f"1:w{i}" for i in range(5)]
    broker.cli("group", "offset-delete", "gm-g", "--topic", "gm")
    view = json.loads(broker.cli("group", "describe", "gm-g", "--format", "json").stdout)
    assert view["partitions"] == []


def test_cli_shows_the_cluster_and_sets_dynamic_broker_configs(broker):
    import json
    info = json.loads(broker.cli("cluster", "info", "--format", "json").stdout)
    assert info["controller"] == 1 and [b["node_id"] for b in info["brokers"]] == [1]
    assert info["cluster_id"]
    text = broker.cli("cluster", "info").stdout
    assert f"cluster {info['cluster_id']}" in text
    got = json.loads(broker.cli("cluster", "config", "get", "log.retention.ms", "--format", "json").stdout)
    assert got["configs"]["log.retention.ms"] == {"value": "604800000", "source": "default", "read_only": True}
    broker.cli("cluster", "config", "set", "leader.replication.throttled.rate=5000")
    assert "leader.replication.throttled.rate=5000" in broker.cli("cluster", "config", "get", "leader.replication.throttled.rate").stdout
    broker.cli("cluster", "config", "set", "leader.replication.throttled.rate=")
    assert "=5000" not in broker.cli("cluster", "config", "get", "leader.replication.throttled.rate").stdout
    r = broker.cli("cluster", "config", "set", "num.partitions=3", check=False)
    assert r.returncode != 0 and "num.partitions" in r.stderr and "INVALID_CONFIG" in r.stderr
    r = broker.cli("cluster", "config", "get", "nope", check=False)
    assert r.returncode != 0 and "nope" in r.stderr


def test_several_listeners_all_serve_and_each_advertises_its_own_address(tmp_path):
    """`listeners` with two PLAINTEXT listeners: both serve, and Metadata,
    FindCoordinator and DescribeCluster answer with the endpoints of the listener
    asked. The INTERNAL listener advertises an address nobody listens on, so a client
    of EXTERNAL works only if every answer it gets names EXTERNAL's address."""
    import json
    import subprocess

    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient

    from conftest import BIN, Broker, free_port
    from helpers import create_topic, produce_confluent

    internal, external, nowhere = free_port(), free_port(), free_port()
    props = tmp_path / "server.properties"
    props.write_text(f"""node.id=1
listeners=INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external}
advertised.listeners=INTERNAL://127.0.0.1:{nowhere},EXTERNAL://localhost:{external}
listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT
inter.broker.listener.name=INTERNAL
log.dirs={tmp_path / "logs"}
""")
    b = Broker(tmp_path / "unused", internal)
    b.launch = lambda: launch_with(b, ["server", "--config", str(props)])
    b.start()
    try:
        inside, outside = f"127.0.0.1:{internal}", f"localhost:{external}"
        for addr, host, port in [(inside, "127.0.0.1", nowhere), (outside, "localhost", external)]:
            md = AdminClient({"bootstrap.servers": addr}).list_topics(timeout=10)
            assert [(br.host, br.port) for br in md.brokers.values()] == [(host, port)], addr
        create_topic(outside, "two-listeners", 2)
        acked = produce_confluent(outside, "two-listeners", [(None, b"v%d" % i) for i in range(20)], "all")
        assert len(acked) == 20
        c = Consumer({"bootstrap.servers": outside, "group.id": "two-listeners-g",
                      "auto.offset.reset": "earliest"})
        try:
            c.subscribe(["two-listeners"])
            got = []
            deadline = __import__("time").time() + 30
            while len(got) < 20 and __import__("time").time() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.append(m.value())
            assert len(got) == 20, "a group consumer of EXTERNAL found its coordinator there"
            c.commit(asynchronous=False)
        finally:
            c.close()
        r = subprocess.run([str(BIN), "cluster", "info", "--format", "json", "--bootstrap", outside],
                           capture_output=True, text=True, timeout=30)
        assert [(x["host"], x["port"]) for x in json.loads(r.stdout)["brokers"]] == [("localhost", external)]
        out = __import__("re").sub(r"\x1b\[[0-9;]*m", "", b.output())
        assert "listener=INTERNAL" in out and "listener=EXTERNAL" in out, out[-2000:]
    finally:
        b.stop()
