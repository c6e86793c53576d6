/**
 * The producer's side of Kafka: the idempotent producer and its partitioner, the
 * sink the queue (publisher.ts) sends through, and connecting (the topic and its
 * feed topic made sure of, the login checked) before any trade is taken.
 */

import { type ICustomPartitioner, type Kafka, Partitioners, type Producer } from "kafkajs";
import type { Config } from "../config.ts";
import { unlessAborted } from "../lib/async.ts";
import { UsageError } from "../lib/cli.ts";
import { FEED_TOPIC_CONFIG, feedTopicOf } from "../lib/feed.ts";
import { checkAccess, createKafka, ensureTopic } from "../lib/kafka.ts";
import type { Sink } from "./publisher.ts";

/**
 * kafkajs's default partitioner (murmur2 of the key, as the Java client), remembered
 * per key. It hashes with 64-bit Long arithmetic and copies the key into a Buffer on
 * every message: about 7 % of the producer's CPU (profiled), for a few symbols.
 * Same partitions as the default; forgotten when the partition count changes.
 */
export const cachedDefaultPartitioner: ICustomPartitioner = () => {
  const partitioner = Partitioners.DefaultPartitioner();
  const cache = new Map<string, number>();
  let partitions = -1;
  return (args) => {
    const { message, partitionMetadata } = args;
    if (typeof message.key !== "string" || (message.partition ?? null) !== null) {
      return partitioner(args);
    }
    if (partitionMetadata.length !== partitions || cache.size > 10_000) {
      partitions = partitionMetadata.length;
      cache.clear();
    }
    let partition = cache.get(message.key);
    if (partition === undefined) cache.set(message.key, partition = partitioner(args));
    return partition;
  };
};

/** The idempotent producer: acks from all in-sync replicas, kafkajs retrying without end. */
export function createIdempotentProducer(kafka: Kafka): Producer {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: cachedDefaultPartitioner,
    // Retries never stop (the idempotent producer's default), but stay short, so
    // sending resumes within seconds of the broker's return.
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 2_000 },
  });
}

const CLIENT_BUGS = new Set(["RangeError", "ReferenceError", "SyntaxError", "TypeError"]);

/** The innermost cause of a kafkajs error: its retry layers wrap what actually failed. */
function rootCause(error: Error): Error {
  let root = error;
  for (let depth = 0; depth < 10 && root.cause instanceof Error; depth++) root = root.cause;
  return root;
}

/** True when sending again cannot help: Kafka said no, or the client itself failed. */
function refusedForGood(error: Error): boolean {
  const root = rootCause(error);
  if (CLIENT_BUGS.has(root.name)) return true;
  return root.name === "KafkaJSProtocolError" &&
    (root as { retriable?: unknown }).retriable === false;
}

export function kafkaSink(producer: Producer, topic: string): Sink {
  return {
    async send(messages) {
      try {
        await producer.send({ topic, messages, acks: -1 });
      } catch (error) {
        // kafkajs retries what it can inside the send, without end (see above), and
        // what it gives up on comes out with `retriable` false. Final only when Kafka
        // itself refused the records (a protocol error: a record too large, a denied
        // topic) or the client broke (a TypeError). A broker away for longer than the
        // client's connect retries (~10 s) comes out as "not retriable" too, wrapping a
        // connection error: that one is retried here, or a broker restart would stop
        // the queue for good (the fault suite's broker kill found it).
        if (error instanceof Error && refusedForGood(error)) {
          throw Object.assign(new Error(error.message, { cause: error }), { retriable: false });
        }
        throw Object.assign(error instanceof Error ? error : new Error(String(error)), {
          retriable: true,
        });
      }
    },
  };
}

export interface Connected {
  readonly kafka: Kafka;
  readonly producer: Producer;
  readonly topic: "created" | "found";
  /** Why the feed topic could not be made sure of (the trades go on without it). */
  readonly feedProblem?: string;
}

/**
 * Makes sure the topic and its feed topic exist, then connects the idempotent producer: both before
 * any trade is taken. "stopped" when the signal aborts first (kafkajs retries an
 * absent broker for about ten seconds, and docker stop kills after ten).
 */
export async function connectProducer(
  config: Config,
  signal: AbortSignal,
): Promise<Connected | "stopped"> {
  const kafka = createKafka(config, "producer");
  const producer = createIdempotentProducer(kafka);
  const connect = async (): Promise<Connected> => {
    const admin = kafka.admin();
    await admin.connect();
    const { topic, partitions, replicationFactor } = config;
    const state = await ensureTopic(admin, { topic, partitions, replicationFactor });
    // The feed topic is for viewers: a cluster that will not let us create it (an ACL)
    // costs the feed, never the trades.
    const feedProblem = await ensureTopic(admin, {
      topic: feedTopicOf(topic),
      partitions: 1,
      replicationFactor,
      configEntries: FEED_TOPIC_CONFIG,
    }).then(() => undefined, (error) => error instanceof Error ? error.message : String(error));
    await admin.disconnect();
    await producer.connect();
    return {
      kafka,
      producer,
      topic: state === "created" ? "created" : "found",
      feedProblem,
    };
  };
  try {
    return await unlessAborted(checkAccess(config).then(connect), signal);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `cannot reach Kafka at ${config.brokers.join(",")}: ${reason} ` +
        `(start the local broker with: deno task kafka)`,
    );
  }
}
