/**
 * The kafkajs client as both scripts use it: one place for brokers, SASL/SSL,
 * logging, and creating the topic.
 */

import process from "node:process";
import { type Admin, Kafka, type KafkaMessage, type LogEntry, logLevel } from "kafkajs";
import type { Config } from "../config.ts";
import { unlessAborted } from "./async.ts";
import { UsageError } from "./cli.ts";
import { netAccessProblem } from "./net.ts";

let warningsFiltered = false;

/**
 * kafkajs 2.2.4 arms `setTimeout(fn, throttledUntil - Date.now())` with
 * throttledUntil = -1 when it is not throttled, and Node's timers warn about the
 * negative delay on every request batch. It is harmless (the delay becomes 1 ms):
 * once a process makes a client, that one warning is dropped and every other
 * process warning is still printed, one line each.
 */
function filterTimeoutWarnings(): void {
  if (warningsFiltered) return;
  warningsFiltered = true;
  process.removeAllListeners("warning");
  process.on("warning", (warning: Error) => {
    if (warning.name !== "TimeoutNegativeWarning") console.error(`warning: ${warning.message}`);
  });
}

const LOG_REPEAT_MS = 30_000;

/**
 * kafkajs logs a multi-line JSON object per event, and logs retriable conditions
 * (a coordinator still loading, a broker restarting) at ERROR. We print one line per
 * message, and the same message at most every 30 s, so a broker outage reads as a
 * few lines instead of a flood.
 */
function oneLineLogger() {
  const lastShown = new Map<string, number>();
  return ({ namespace, level, log }: LogEntry) => {
    if (level > logLevel.WARN) return;
    // Error answers are logged by the connection before the layer above retries
    // them (a coordinator still loading, a rebalance): that layer reports failures.
    if (namespace === "Connection" && log.message.startsWith("Response ")) return;
    if (log.message.startsWith("The group is rebalancing")) return;
    const now = Date.now();
    const key = `${log.message}|${log.error ?? ""}`;
    if (now - (lastShown.get(key) ?? 0) < LOG_REPEAT_MS) return;
    if (lastShown.size > 1000) lastShown.clear();
    lastShown.set(key, now);
    const detail = log.error ? `: ${log.error}` : "";
    console.error(`kafka: ${log.message}${detail}`);
  };
}

/**
 * The client for `config.brokers`. Throws a UsageError (exit code 2) when the task's
 * permissions do not reach them: kafkajs would retry `getaddrinfo EPERM` for seconds.
 * `quiet` makes a client that logs nothing and does not retry (checkAccess).
 */
export function createKafka(
  config: Config,
  clientIdSuffix: string,
  options: { quiet?: boolean } = {},
): Kafka {
  const denied = netAccessProblem("KAFKA_BROKERS", config.brokers);
  if (denied) throw new UsageError(denied);
  filterTimeoutWarnings();
  return new Kafka({
    clientId: `${config.clientId}-${clientIdSuffix}`,
    brokers: [...config.brokers],
    // Node's tls options, as PEM text: the CA to trust, the client certificate (mTLS).
    ssl: config.sslFiles ? { ...config.sslFiles } : config.ssl,
    sasl: config.sasl
      ? {
        // kafkajs types each mechanism separately; the three share one shape.
        mechanism: config.sasl.mechanism as "plain",
        username: config.sasl.username,
        password: config.sasl.password,
      }
      : undefined,
    connectionTimeout: 3_000,
    ...options.quiet ? { logLevel: logLevel.NOTHING, retry: { retries: 0 } } : {
      logLevel: logLevel.WARN,
      logCreator: oneLineLogger,
    },
  });
}

/**
 * What a broker's refusal of our credentials means, as the one line naming the
 * variable to fix; undefined for anything else (a broker down or still starting).
 * Built from the error's text only: it holds no password and no key.
 */
export function accessProblem(error: unknown, config: Config): UsageError | undefined {
  const reason = String(error instanceof Error ? error.message : error)
    .replace(/^Connection error: /, "");
  if (/authentication failed|SASLAuthentication/i.test(`${error} ${reason}`) && config.sasl) {
    return new UsageError(
      `KAFKA_SASL_PASSWORD: the broker refused user "${config.sasl.username}" ` +
        `(${config.sasl.mechanism.toUpperCase()} authentication failed): check ` +
        "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM",
    );
  }
  if (/not valid for|does not match|altnames/i.test(reason)) {
    return new UsageError(
      `KAFKA_BROKERS: the broker's certificate is for another host name (${reason}): name ` +
        "the brokers as their certificates do (the cluster's bootstrap address)",
    );
  }
  if (/certificate has expired|CertExpired|not yet valid/i.test(reason)) {
    return new UsageError(
      `KAFKA_BROKERS: the broker's certificate is out of its dates (${reason}): the cluster's ` +
        "operator must renew it (or this machine's clock is wrong)",
    );
  }
  if (
    /unable to (verify|get local issuer)|self[- ]signed|UnknownIssuer|invalid peer certificate/i
      .test(reason)
  ) {
    const fix = config.sslFiles?.ca
      ? "KAFKA_SSL_CA does not name the CA that signed it"
      : "set KAFKA_SSL_CA to the CA file of the cluster";
    return new UsageError(
      `KAFKA_SSL_CA: the broker's certificate is not trusted (${reason}): ${fix}`,
    );
  }
  if (
    /BadCertificate|CertificateRequired|certificate required|UnknownCA|bad certificate/i.test(
      reason,
    )
  ) {
    const fix = config.sslFiles?.cert
      ? "the broker does not accept KAFKA_SSL_CERT (signed by another CA, or expired?)"
      : "the cluster wants a client certificate (mTLS): set KAFKA_SSL_CERT and KAFKA_SSL_KEY";
    return new UsageError(
      `KAFKA_SSL_CERT: the broker refused the TLS connection (${reason}): ${fix}`,
    );
  }
  return undefined;
}

/**
 * With TLS or SASL set, one quick connection without retries, so that a refused
 * certificate or password is one line and exit code 2 at once instead of seconds of
 * retries. A broker that does not answer is not decided here: the caller's own
 * connection retries it as before.
 */
export async function checkAccess(config: Config): Promise<void> {
  if (!config.ssl && !config.sasl) return;
  const admin = createKafka(config, "check", { quiet: true }).admin();
  try {
    await admin.connect();
    // A TLS 1.3 server judges the client certificate after the handshake: ask something.
    await admin.describeCluster();
  } catch (error) {
    const problem = accessProblem(error, config);
    if (problem) throw problem;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/**
 * Creates the topic if it is missing. An existing topic is left as it is, but a
 * partition count that differs from the config is reported: keys would map to
 * other partitions than the config implies.
 */
export async function ensureTopic(admin: Admin, spec: {
  readonly topic: string;
  readonly partitions: number;
  readonly replicationFactor: number;
  /** Topic settings when it is created (e.g. the feed topic's compaction). */
  readonly configEntries?: readonly { name: string; value: string }[];
}): Promise<"created" | "exists"> {
  const { topic, partitions, replicationFactor } = spec;
  const created = await admin.createTopics({
    topics: [{
      topic,
      numPartitions: partitions,
      replicationFactor,
      configEntries: spec.configEntries?.map((entry) => ({ ...entry })),
    }],
    waitForLeaders: true,
  });
  if (created) return "created";
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
  const actual = metadata.topics[0]?.partitions.length ?? 0;
  if (actual !== partitions) {
    console.error(
      `note: topic ${topic} exists with ${actual} partitions, not KAFKA_PARTITIONS=${partitions}; using it as it is`,
    );
  }
  return "exists";
}

/** What readFromStart connects beside its consumer (a producer), and leaves with it. */
interface Alongside {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
}

/**
 * Reads `topics` from their start in a private consumer group (`group` and a random
 * suffix) that commits nothing, until the signal aborts: every viewer reads every
 * record, however many share a group id. `prepare` runs first with an admin (create
 * the topics, note their ends). `started` resolves once reading (and `alongside`
 * connected); `stopped` after the abort, once the group is left or LEAVE waited.
 * Never throws: a failure before the abort goes to `onProblem`.
 */
export function readFromStart(options: {
  readonly kafka: Kafka;
  readonly topics: readonly string[];
  readonly group: string;
  readonly signal: AbortSignal;
  readonly prepare?: (admin: Admin) => Promise<void>;
  readonly onMessage: (topic: string, message: KafkaMessage, partition: number) => void;
  readonly onProblem: (error: unknown) => void;
  /** How long the stop waits to leave the group. */
  readonly leaveMs: number;
  readonly alongside?: Alongside;
}): { started: Promise<void>; stopped: Promise<void> } {
  const { kafka, signal, alongside } = options;
  const consumer = kafka.consumer({
    groupId: `${options.group}.${crypto.randomUUID().slice(0, 8)}`,
    // A fetch waits at most this long for records (kafkajs: 5 s), and a stop waits for
    // the fetch in flight: so a stop can leave within a second.
    maxWaitTimeInMs: 500,
  });
  // Each step checks the stop: a stop while connecting must not leave a consumer running.
  const run = async () => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      await options.prepare?.(admin);
    } finally {
      await admin.disconnect();
    }
    await alongside?.connect();
    if (signal.aborted) return;
    await consumer.connect();
    if (signal.aborted) return;
    await consumer.subscribe({ topics: [...options.topics], fromBeginning: true });
    if (signal.aborted) return;
    await consumer.run({
      autoCommit: false,
      eachMessage: ({ topic, partition, message }) => {
        options.onMessage(topic, message, partition);
        return Promise.resolve();
      },
    });
  };
  const started = run();
  const leave = () =>
    Promise.allSettled([consumer.disconnect(), alongside?.disconnect()]).then(() => {});
  const stopped = (async () => {
    try {
      await unlessAborted(started, signal);
      if (!signal.aborted) {
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      }
    } catch (error) {
      if (!signal.aborted) options.onProblem(error);
    } finally {
      // Nothing is committed, so leaving the group is a courtesy: a member still
      // joining (the broker holds a new group's first join ~3 s) is not waited for.
      await unlessAborted(leave(), AbortSignal.timeout(options.leaveMs)).catch(() => {});
      // A step that was under way at the stop may connect after it: leave then too.
      started.finally(leave).catch(() => {});
    }
  })();
  return { started, stopped };
}
