"""aiokafka (asyncio, its own protocol code) against the real broker: produce with
every codec and read back, a consumer group that commits and resumes, an idempotent
producer, and a transaction that commits and one that aborts as read_committed sees
them."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

N = 2000


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def create(bootstrap, topic, partitions):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def read(bootstrap, topic, partitions, expected, **kw):
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         auto_offset_reset="earliest", **kw)
    await c.start()
    try:
        c.assign([TopicPartition(topic, p) for p in range(partitions)])
        out = []
        while len(out) < expected:
            batch = await c.getmany(timeout_ms=5000)
            if not batch:
                break
            for msgs in batch.values():
                out.extend((m.partition, m.offset, m.value) for m in msgs)
        return out
    finally:
        await c.stop()


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_produce_and_read_back_with_every_codec(broker, codec):
    topic = f"aio-{codec}"

    async def go():
        await create(broker.bootstrap, topic, 3)
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type=codec,
                             linger_ms=5)
        await p.start()
        try:
            futures = [await p.send(topic, key=b"k%d" % (i % 7), value=b"v%d" % i) for i in range(N)]
            meta = await asyncio.gather(*futures)
        finally:
            await p.stop()
        got = await read(broker.bootstrap, topic, 3, N)
        return meta, got

    meta, got = run(go())
    assert sorted(v for *_, v in got) == sorted(b"v%d" % i for i in range(N))
    # Offsets are dense per partition and match what the producer was told.
    for part in range(3):
        offsets = sorted(o for p, o, _ in got if p == part)
        assert offsets == list(range(len(offsets)))
    assert {(m.partition, m.offset) for m in meta} == {(p, o) for p, o, _ in got}


def test_a_group_commits_and_a_new_member_resumes_after_the_commit(broker):
    topic = "aio-group"

    async def go():
        await create(broker.bootstrap, topic, 2)
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await p.start()
        for i in range(100):
            await p.send_and_wait(topic, value=b"m%d" % i, partition=i % 2)
        c = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="aio",
                             enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        first = []
        while len(first) < 60:
            for msgs in (await c.getmany(timeout_ms=5000, max_records=60 - len(first))).values():
                first.extend(m.value for m in msgs)
        await c.commit()
        await c.stop()
        for i in range(100, 120):
            await p.send_and_wait(topic, value=b"m%d" % i, partition=i % 2)
        await p.stop()
        c = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="aio",
                             enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        rest = []
        while len(rest) < 60:
            batch = await c.getmany(timeout_ms=10000)
            assert batch, f"only {len(rest)} records after the commit"
            for msgs in batch.values():
                rest.extend(m.value for m in msgs)
        await c.stop()
        return first, rest

    first, rest = run(go())
    assert len(first) == 60 and len(rest) == 60
    assert sorted(first + rest) == sorted(b"m%d" % i for i in range(120)), "each record once"


def test_idempotent_and_transactional_producers(broker):
    topic = "aio-tx"

    async def go():
        await create(broker.bootstrap, topic, 1)
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True)
        await p.start()
        for i in range(50):
            await p.send_and_wait(topic, value=b"idem-%d" % i)
        await p.stop()
        t = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="aio-tx")
        await t.start()
        async with t.transaction():
            for i in range(10):
                await t.send(topic, value=b"committed-%d" % i)
        await t.begin_transaction()
        for i in range(10):
            await t.send(topic, value=b"aborted-%d" % i)
        await t.abort_transaction()
        async with t.transaction():
            await t.send(topic, value=b"last")
        await t.stop()
        committed = await read(broker.bootstrap, topic, 1, 61, isolation_level="read_committed")
        everything = await read(broker.bootstrap, topic, 1, 71)
        return committed, everything

    committed, everything = run(go())
    values = [v for *_, v in committed]
    assert values == [b"idem-%d" % i for i in range(50)] + [b"committed-%d" % i for i in range(10)] + [b"last"]
    assert sum(v.startswith(b"aborted-") for *_, v in everything) == 10, "read_uncommitted sees the aborted ones"
