// kafkajs against a running broker: `node kafkajs_check.mjs BOOTSTRAP SCENARIO`.
// Prints one JSON line with what it saw; the Python test judges it.
import { Kafka, logLevel, CompressionTypes } from "kafkajs";

const [bootstrap, scenario] = process.argv.slice(2);
const kafka = new Kafka({ clientId: "sluice-test", brokers: [bootstrap], logLevel: logLevel.ERROR });
const admin = kafka.admin();

async function readAll(topic, expected, isolation) {
  const consumer = kafka.consumer({
    groupId: `reader-${topic}-${Date.now()}`,
    readUncommitted: isolation !== "read_committed",
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, 20000);
    consumer
      .run({
        eachMessage: async ({ partition, message }) => {
          got.push([partition, Number(message.offset), message.value.toString()]);
          if (got.length >= expected) {
            clearTimeout(timer);
            resolve();
          }
        },
      })
      .catch(reject);
  });
  // Let a straggler show up if there were more than expected.
  await new Promise((r) => setTimeout(r, 500));
  await consumer.disconnect();
  return got;
}

async function plain() {
  await admin.createTopics({ topics: [{ topic: "js-plain", numPartitions: 3 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  const acked = [];
  for (let i = 0; i < 20; i++) {
    const messages = [];
    for (let j = 0; j < 50; j++) messages.push({ key: `k${(i * 50 + j) % 11}`, value: `v${i * 50 + j}` });
    const r = await producer.send({
      topic: "js-plain",
      acks: -1,
      compression: i % 2 ? CompressionTypes.GZIP : CompressionTypes.None,
      messages,
    });
    acked.push(...r);
  }
  await producer.disconnect();
  const got = await readAll("js-plain", 1000);
  return { acked: acked.length, got };
}

async function idempotent() {
  await admin.createTopics({ topics: [{ topic: "js-idem", numPartitions: 1 }], waitForLeaders: true });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  for (let i = 0; i < 10; i++) {
    await producer.send({ topic: "js-idem", acks: -1, messages: [{ value: `idem-${i}` }] });
  }
  await producer.disconnect();
  return { got: await readAll("js-idem", 10) };
}

async function transactional() {
  await admin.createTopics({ topics: [{ topic: "js-tx", numPartitions: 1 }], waitForLeaders: true });
  const producer = kafka.producer({ transactionalId: "js-tx", idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  let tx = await producer.transaction();
  await tx.send({ topic: "js-tx", messages: [{ value: "committed-0" }, { value: "committed-1" }] });
  await tx.commit();
  tx = await producer.transaction();
  await tx.send({ topic: "js-tx", messages: [{ value: "aborted-0" }] });
  await tx.abort();
  tx = await producer.transaction();
  await tx.send({ topic: "js-tx", messages: [{ value: "committed-2" }] });
  await tx.commit();
  await producer.disconnect();
  return { got: await readAll("js-tx", 3, "read_committed") };
}

async function group() {
  await admin.createTopics({ topics: [{ topic: "js-group", numPartitions: 4 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < 200; i++) messages.push({ value: `g${i}` });
  await producer.send({ topic: "js-group", acks: -1, messages });
  // Two members of one group share the partitions and read everything once.
  const seen = [];
  const members = [];
  for (let m = 0; m < 2; m++) {
    const c = kafka.consumer({ groupId: "js-group", sessionTimeout: 10000 });
    await c.connect();
    await c.subscribe({ topic: "js-group", fromBeginning: true });
    c.run({ eachMessage: async ({ partition, message }) => seen.push([m, partition, message.value.toString()]) });
    members.push(c);
  }
  const deadline = Date.now() + 30000;
  while (seen.length < 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const offsets = await admin.fetchOffsets({ groupId: "js-group", topics: ["js-group"] });
  for (const c of members) await c.disconnect();
  const committed = offsets[0].partitions.reduce((n, p) => n + Number(p.offset), 0);
  const groups = await admin.listGroups();
  return { seen, committed, groups: groups.groups.map((g) => g.groupId) };
}

const scenarios = { plain, idempotent, transactional, group };
try {
  await admin.connect();
  const out = await scenarios[scenario]();
  await admin.disconnect();
  console.log(JSON.stringify(out));
  process.exit(0);
} catch (e) {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
}
