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
