"""The log's life cycle with real clients: a compacted topic refuses records without a
key (Kafka's INVALID_RECORD), the rest of the request unaffected, and
`sluice topic alter-config` sets and removes topic configs through
IncrementalAlterConfigs."""

from confluent_kafka import KafkaError, Producer

from helpers import create_topic


def produce_one(bootstrap, topic, key, value):
    """Produces one record; the delivery error, or None."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                  "retries": 0})
    outcome = []
    p.produce(topic, key=key, value=value, on_delivery=lambda err, msg: outcome.append(err))
    p.flush(30)
    assert outcome, "no delivery report"
    return outcome[0]


def test_a_compacted_topic_refuses_records_without_a_key(broker):
    create_topic(broker.bootstrap, "table", 1, **{"cleanup.policy": "compact"})
    assert produce_one(broker.bootstrap, "table", b"k1", b"v1") is None
    err = produce_one(broker.bootstrap, "table", None, b"no key")
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
    # A tombstone has a key and a null value: accepted.
    assert produce_one(broker.bootstrap, "table", b"k1", None) is None
    # Topics that only delete take records without keys as always.
    create_topic(broker.bootstrap, "events", 1)
    assert produce_one(broker.bootstrap, "events", None, b"no key") is None
    out = broker.cli("topic", "describe", "table").stdout
    assert "\n0\t1\t0\t2\t2" in out, out


def test_alter_config_sets_and_removes_topic_configs(broker):
    create_topic(broker.bootstrap, "tuned", 1)
    out = broker.cli("topic", "alter-config", "tuned", "--set", "retention.ms=60000",
                     "--set", "cleanup.policy=compact").stdout
    assert "altered" in out, out
    described = broker.cli("topic", "describe", "tuned").stdout
    assert "retention.ms=60000 (set on topic)" in described, described
    assert "cleanup.policy=compact (set on topic)" in described, described
    # Enforced at once: the topic compacts now, so a record without a key is refused.
    err = produce_one(broker.bootstrap, "tuned", None, b"no key")
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err

    broker.cli("topic", "alter-config", "tuned", "--delete", "retention.ms")
    described = broker.cli("topic", "describe", "tuned").stdout
    assert "retention.ms=604800000\n" in described, described

    bad = broker.cli("topic", "alter-config", "tuned", "--set", "no.such.config=1", check=False)
    assert bad.returncode != 0 and "no.such.config" in bad.stderr, bad.stderr
    bad = broker.cli("topic", "alter-config", "tuned", check=False)
    assert bad.returncode != 0 and "nothing to change" in bad.stderr, bad.stderr
