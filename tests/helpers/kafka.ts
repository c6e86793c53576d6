/**
 * Shared by the integration tests: the broker they run against (the one
 * `deno task test` made sure of), unique names, and topics that clean up after
 * themselves. There is no skip: a test that needs the broker fails when it is
 * missing, and says how to start it.
 */

import { type Admin, type Kafka, type Producer } from "kafkajs";
import { loadConfig } from "../../config.ts";
import { feedTopicOf } from "../../lib/feed.ts";
import { createKafka } from "../../lib/kafka.ts";
import { encodeTrade, HEADER_RECEIVED_AT, HEADER_SOURCE, type Trade } from "../../lib/trade.ts";
import { probeKafka } from "../../tools/broker/native.ts";

export const BROKERS = Deno.env.get("KAFKA_BROKERS") ?? "127.0.0.1:9092";

export function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

export async function requireBroker(): Promise<void> {
  const [host, port] = BROKERS.split(",")[0].split(":");
  if (await probeKafka(host, Number(port)) !== "kafka") {
    throw new Error(`no Kafka at ${BROKERS}: start one with \`deno task kafka\``);
  }
}

export function testKafka(suffix = "test"): Kafka {
  return createKafka(loadConfig({ KAFKA_BROKERS: BROKERS }), suffix);
}

/** Creates a fresh topic, runs `body`, and deletes the topic whatever happens. */
export async function withTopic<T>(
  partitions: number,
  body: (topic: string, kafka: Kafka, admin: Admin) => Promise<T>,
): Promise<T> {
  await requireBroker();
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  const topic = uniqueName("test");
  try {
    await admin.createTopics({
      topics: [{ topic, numPartitions: partitions }],
      waitForLeaders: true,
    });
    return await body(topic, kafka, admin);
  } finally {
    // The feed topic and the DLQ too, if a script made them.
    const made = new Set(await admin.listTopics().catch(() => []));
    const topics = [topic, feedTopicOf(topic), `${topic}.dlq`].filter((name) => made.has(name));
    await admin.deleteTopics({ topics }).catch(() => {});
    await admin.disconnect();
  }
}

/**
 * Writes simulated `trades` to `topic` as the producer would (keyed by symbol, the
 * trade time as the timestamp), 5,000 a request; `receivedAt` stamps the header the
 * latency is measured from (default: each trade's own time).
 */
export async function sendTrades(
  producer: Producer,
  topic: string,
  trades: readonly Trade[],
  receivedAt?: number,
): Promise<void> {
  for (let i = 0; i < trades.length; i += 5000) {
    await producer.send({
      topic,
      messages: trades.slice(i, i + 5000).map((trade) => ({
        key: trade.symbol,
        value: encodeTrade(trade, "sim"),
        timestamp: String(trade.time),
        headers: {
          [HEADER_RECEIVED_AT]: String(receivedAt ?? trade.time),
          [HEADER_SOURCE]: "sim",
        },
      })),
    });
  }
}
