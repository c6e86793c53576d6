/**
 * Proof that kafkajs under Deno works against the broker we ship (Apache Kafka 4.x,
 * which dropped many old protocol versions): 10,000 keyed messages through a
 * 3-partition topic, read by a two-member consumer group, every key in order,
 * nothing missing, nothing doubled.
 */

import assert from "node:assert/strict";
import { type Consumer, Partitioners } from "kafkajs";
import { uniqueName, withTopic } from "./helpers/kafka.ts";

const MESSAGES = 10_000;
const KEYS = 25;

Deno.test("kafkajs round-trips 10,000 keyed messages through a 3-partition topic in a group", async () => {
  await withTopic(3, async (topic, kafka) => {
    const groupId = uniqueName("group");
    const consumers: Consumer[] = [kafka.consumer({ groupId }), kafka.consumer({ groupId })];
    const received = new Map<string, number[]>();
    const partitionsByMember = consumers.map(() => new Set<number>());
    let total = 0;
    let resolveAll!: () => void;
    const allReceived = new Promise<void>((resolve) => (resolveAll = resolve));
    const producer = kafka.producer({
      idempotent: true,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    try {
      // Both members must have joined before anything is produced: a rebalance while
      // reading may legitimately redeliver, and this test allows no doubles.
      const assignment = consumers.map(() => 0);
      consumers.forEach((consumer, member) =>
        consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
          assignment[member] = payload.memberAssignment[topic]?.length ?? 0;
        })
      );
      for (const [member, consumer] of consumers.entries()) {
        await consumer.connect();
        await consumer.subscribe({ topic, fromBeginning: true });
        await consumer.run({
          eachBatch: ({ batch }) => {
            partitionsByMember[member].add(batch.partition);
            for (const message of batch.messages) {
              const key = message.key!.toString();
              const list = received.get(key) ?? [];
              list.push(Number(message.value!.toString()));
              received.set(key, list);
              total++;
            }
            if (total >= MESSAGES) resolveAll();
            return Promise.resolve();
          },
        });
      }
      await waitFor(() =>
        assignment.every((count) => count > 0) && assignment[0] + assignment[1] === 3
      );

      await producer.connect();
      const messages = Array.from({ length: MESSAGES }, (_, i) => ({
        key: `key-${i % KEYS}`,
        value: String(i),
      }));
      for (let i = 0; i < MESSAGES; i += 1_000) {
        await producer.send({ topic, messages: messages.slice(i, i + 1_000) });
      }
      await withDeadline(allReceived, 30_000, () => `only ${total} of ${MESSAGES} arrived`);
      // Anything doubled would arrive after the last expected message: give it a moment.
      await new Promise((resolve) => setTimeout(resolve, 500));

      assert.equal(total, MESSAGES, "nothing doubled");
      assert.equal(received.size, KEYS);
      for (let key = 0; key < KEYS; key++) {
        const expected = Array.from({ length: MESSAGES / KEYS }, (_, i) => key + i * KEYS);
        assert.deepEqual(received.get(`key-${key}`), expected, `key-${key}: all, once, in order`);
      }
      const members = partitionsByMember.filter((partitions) => partitions.size > 0).length;
      assert.equal(members, 2, "both group members received partitions");
    } finally {
      await producer.disconnect();
      for (const consumer of consumers) await consumer.disconnect();
    }
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the group to settle");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function withDeadline(promise: Promise<void>, ms: number, why: () => string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(why())), ms);
  });
  try {
    await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
