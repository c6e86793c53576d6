/**
 * Reads the trade topic in a consumer group into an Aggregator (candles.ts): joins
 * the group, seeks every partition to a trade time, applies each batch once, commits
 * what it applied, and reports counts, lag and latency. consumer.ts is the script
 * around it (flags, views); the benchmarks and tests start it directly.
 *
 * Restarts, offsets and history: why nothing is counted twice or missed.
 * The aggregation lives in memory, so every start rebuilds it from Kafka, the source
 * of truth. A start seeks every partition to the first offset whose timestamp (the
 * trade time) is >= `from`, and the Aggregator counts any trade before `from` as too
 * late. So a run's state is exactly "every record on the topic with trade time >=
 * from", whatever happened before it:
 * - Not doubled across restarts: a new process starts from empty state, so the
 *   records it replays (including ones the previous run had applied and committed)
 *   are applied once, in this process.
 * - Not missed across restarts: Kafka's time index gives the earliest offset with
 *   timestamp >= from, so every record in the session lies at or after the seek
 *   point, however long the process was down (as long as retention keeps it).
 *   Records between the last committed offset and the seek point are older than the
 *   window and were never part of this session.
 * - Not missed within a run: the reader remembers, per partition, the next offset it
 *   has not applied, and every time the group is joined (the start, a rebalance,
 *   kafkajs's own restart after a retriable crash, which drops pending seeks, or a
 *   partition regained from another member) it seeks each partition it holds there,
 *   or to the session's seek point before the partition's first batch. kafkajs on its
 *   own would resume from the group's commit, which can be another member's, past
 *   what this run applied.
 * - Not doubled within a run: a batch delivered again anyway (fetched before a seek
 *   took effect, or after a failed commit) skips what was applied and counts it as
 *   "redelivered"; a redelivered batch never moves that next offset back.
 * The committed offsets are therefore not a resume point for the charts (the seek is);
 * once joined the reader commits its seek points, then after each batch the next
 * offset to apply, so they record how far this run has applied: what lag means to
 * the tools that read it (`kafka-consumer-groups.sh --describe`) and to the header.
 * One caveat: the group id comes from KAFKA_GROUP_ID, and two running viewers with the
 * same group split the partitions between them, each charting only its share; the
 * header says so ("partitions 2/3"): give each viewer its own group id.
 */

import {
  type EachBatchPayload,
  type IHeaders,
  type KafkaMessage,
  Partitioners,
  type Producer,
} from "kafkajs";
import { type Config, validateTopic } from "../config.ts";
import { createKafka, ensureTopic } from "../lib/kafka.ts";
import { decodeTrade, HEADER_RECEIVED_AT, type Rejection } from "../lib/trade.ts";
import { Buffer, isAscii } from "node:buffer";
import type { Aggregator, ConsumerStatus } from "./candles.ts";
import { type LatencyHistogram, LatencyWindow, parseReceivedAt } from "./latency.ts";

export const LAG_POLL_MS = 3_000;

export interface ConsumerCounts {
  applied: number;
  /** Records the codec refused (also forwarded to the DLQ with --dlq). */
  rejected: number;
  rejectedByKind: Partial<Record<Rejection, number>>;
  tooLate: number;
  /** Records dated more than MAX_AHEAD_MS after this consumer's clock. */
  tooEarly: number;
  /** Records of a new symbol past the Aggregator's symbol cap. */
  symbolCap: number;
  /** Records delivered again after they were applied, skipped. */
  redelivered: number;
  dlqForwarded: number;
  dlqFailed: number;
}

export function emptyCounts(): ConsumerCounts {
  return {
    applied: 0,
    rejected: 0,
    rejectedByKind: {},
    tooLate: 0,
    tooEarly: 0,
    symbolCap: 0,
    redelivered: 0,
    dlqForwarded: 0,
    dlqFailed: 0,
  };
}

export interface ConsumerOptions {
  readonly config: Config;
  readonly aggregator: Aggregator;
  /** Seek every partition to this trade time (ms) on start. */
  readonly fromMs: number;
  /** Forward undecodable records as they are to `<topic>.dlq`. */
  readonly dlq?: boolean;
  readonly signal: AbortSignal;
  /** Called after each applied batch with the symbols it touched. */
  readonly onBatch?: (symbols: ReadonlySet<string>) => void;
  readonly lagPollMs?: number;
  /** Also records every latency here: a whole run's quantiles (--limit's summary). */
  readonly latencyLog?: LatencyHistogram;
}

export interface RunningConsumer {
  status(): ConsumerStatus;
  counts(): Readonly<ConsumerCounts>;
  /** Partitions this member holds, of the topic's total (fewer when the group is shared). */
  assignment(): { assigned: number; partitions: number };
  /** Wall times (ms) when the first fetch was sent and the latest batch was done. */
  batchTimes(): { first: number | null; lastDone: number | null };
  /** Resolves once stopped (the signal aborted) with every applied offset committed; rejects on a fatal error. */
  readonly stopped: Promise<void>;
}

/** What a batch needs of a record; kafkajs's KafkaMessage has it. */
export interface BatchRecord {
  readonly offset: string;
  readonly value: Uint8Array | null;
  readonly headers?: IHeaders;
}

/**
 * A record value as text when it is plain ASCII, as encodeTrade writes it for ASCII
 * symbols: decodeTrade's fatal UTF-8 decoder is a fifth of its time, and only other
 * bytes need it (they go to it as they are). kafkajs hands values over as Buffers.
 */
function asText(value: Uint8Array | null): Uint8Array | string | null {
  return value instanceof Buffer && isAscii(value) ? value.toString("latin1") : value;
}

/** The state one reader keeps across batches. */
export interface ReaderState {
  readonly aggregator: Aggregator;
  readonly counts: ConsumerCounts;
  /** Per partition, the first offset not yet applied in this process. */
  readonly nextToApply: Map<number, number>;
}

export interface BatchResult<M extends BatchRecord> {
  applied: number;
  /** Symbols the applied records belong to. */
  touched: Set<string>;
  /** Records the codec refused, with why: the DLQ's input. */
  refused: { message: M; kind: Rejection }[];
}

/**
 * Applies one batch of one partition: skips (and counts as redelivered) what this
 * process has applied before, decodes and applies the rest at wall time `now`, counts
 * every outcome, and moves the partition's next offset past `lastOffset` (never back:
 * a batch from before what was applied must not reopen it). `onApplied` sees each
 * applied record (latency).
 */
export function applyBatch<M extends BatchRecord>(
  state: ReaderState,
  partition: number,
  messages: readonly M[],
  lastOffset: number,
  now: number,
  onApplied?: (message: M) => void,
): BatchResult<M> {
  const { aggregator, counts } = state;
  const floor = state.nextToApply.get(partition) ?? -1;
  const result: BatchResult<M> = { applied: 0, touched: new Set(), refused: [] };
  for (const message of messages) {
    if (Number(message.offset) < floor) {
      counts.redelivered++;
      continue;
    }
    const record = decodeTrade(asText(message.value));
    if (typeof record === "string") {
      counts.rejected++;
      counts.rejectedByKind[record] = (counts.rejectedByKind[record] ?? 0) + 1;
      result.refused.push({ message, kind: record });
      continue;
    }
    const outcome = aggregator.apply(record, now);
    if (outcome === "applied") {
      result.applied++;
      result.touched.add(record.symbol);
      onApplied?.(message);
    } else if (outcome === "too-late") counts.tooLate++;
    else if (outcome === "too-early") counts.tooEarly++;
    else counts.symbolCap++;
  }
  counts.applied += result.applied;
  state.nextToApply.set(partition, Math.max(floor, lastOffset + 1));
  return result;
}

/** Offsets of one partition as the admin client reports them. */
export interface PartitionEnds {
  readonly partition: number;
  readonly high: string;
  readonly low: string;
}

/**
 * Records behind the log end over all partitions. A partition this member holds
 * counts from where this run stands: its next offset to apply, or before its first
 * batch the run's seek point (an earlier run's commit says nothing about this run).
 * Another member's partition counts from the group's commit.
 */
export function lagOf(
  ends: readonly PartitionEnds[],
  nextToApply: ReadonlyMap<number, number>,
  seekOffsets: ReadonlyMap<number, number>,
  committed: ReadonlyMap<number, number>,
  assigned: ReadonlySet<number>,
): number {
  let total = 0;
  for (const { partition, high, low } of ends) {
    const start = assigned.has(partition)
      ? nextToApply.get(partition) ?? seekOffsets.get(partition) ?? committed.get(partition)
      : committed.get(partition);
    total += Math.max(0, Number(high) - (start ?? Number(low)));
  }
  return total;
}

/** The signal aborted before Kafka answered: nothing was read. */
export class StoppedError extends Error {
  override name = "StoppedError";
}

/**
 * Joins the group, seeks to `fromMs`, and applies records until the signal aborts.
 * Returns once the group is joined; throws if Kafka cannot be reached, or a
 * StoppedError at once if the signal aborts before Kafka has answered.
 */
export async function startConsumer(options: ConsumerOptions): Promise<RunningConsumer> {
  const { config, aggregator, signal } = options;
  const topic = config.topic;
  const dlqTopic = `${topic}.dlq`;
  if (options.dlq) validateTopic(dlqTopic);
  const kafka = createKafka(config, "consumer");
  const admin = kafka.admin();
  // A short fetch wait keeps Ctrl+C prompt: stopping waits for the fetch in flight.
  // 2 MB per partition (kafkajs: 1 MB) reads history a quarter faster (deno task
  // bench: 1M records, ~190k -> ~250k/s; RSS while catching up ~235 -> ~310 MB).
  const consumer = kafka.consumer({
    groupId: config.groupId,
    sessionTimeout: 10_000,
    maxWaitTimeInMs: 500,
    maxBytesPerPartition: 2 * 1024 * 1024,
  });
  let producer: Producer | undefined;
  const counts = emptyCounts();
  const state: ReaderState = { aggregator, counts, nextToApply: new Map() };
  const startedAt = Date.now();
  const latency = new LatencyWindow(60);
  const seekOffsets = new Map<number, number>();
  let connected = false;
  let lag: number | null = null;
  let lastTradeAt: number | null = null;
  let firstFetchAt: number | null = null;
  let lastBatchDoneAt: number | null = null;
  /** The partitions this member holds since the latest join. */
  let assigned = new Set<number>();
  let partitions = 0;
  let fatal: Error | undefined;
  /** The commit of the seek points once joined; batches commit after it. */
  let startCommitted: Promise<void> = Promise.resolve();

  const aborted = new Promise<"stopped">((resolve) => {
    if (signal.aborted) resolve("stopped");
    signal.addEventListener("abort", () => resolve("stopped"), { once: true });
  });
  const ready = (async () => {
    await admin.connect();
    await ensureTopic(admin, topic, config.partitions, config.replicationFactor);
    if (options.dlq) {
      await ensureTopic(admin, dlqTopic, config.partitions, config.replicationFactor);
      producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
      await producer.connect();
    }
    const offsets = await admin.fetchTopicOffsetsByTimestamp(topic, options.fromMs);
    for (const { partition, offset } of offsets) seekOffsets.set(partition, Number(offset));
    partitions = offsets.length;
    await consumer.connect();
    await consumer.subscribe({ topic });
    return "ready" as const;
  })();
  const disconnectAll = () =>
    Promise.allSettled([admin.disconnect(), consumer.disconnect(), producer?.disconnect()]);
  try {
    // kafkajs retries a broker that does not answer for seconds; a stop must not wait.
    if (await Promise.race([ready, aborted]) === "stopped") {
      ready.catch(() => {}); // its retries end on their own; nothing waits for them
      throw new StoppedError("stopped before Kafka answered");
    }
  } catch (error) {
    await disconnectAll();
    throw error;
  }

  // --limit's clock starts when the first fetch is sent, not at the first batch:
  // kafkajs decodes a whole fetch (2 MB a partition) before handing over its first batch.
  consumer.on(consumer.events.FETCH_START, () => {
    firstFetchAt ??= Date.now();
  });
  const joined = Promise.withResolvers<void>();
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    connected = true;
    const held = payload.memberAssignment[topic] ?? [];
    assigned = new Set(held);
    // Emitted before kafkajs fetches for the new assignment, so these seeks take
    // effect first (see "Not missed within a run" at the top).
    for (const partition of held) {
      const at = state.nextToApply.get(partition) ?? seekOffsets.get(partition);
      if (at !== undefined) consumer.seek({ topic, partition, offset: String(at) });
    }
    joined.resolve();
  });
  for (const event of [consumer.events.STOP, consumer.events.DISCONNECT]) {
    consumer.on(event, () => (connected = false));
  }
  const crashed = Promise.withResolvers<void>();
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    connected = false;
    if (!payload.restart) {
      fatal = payload.error;
      crashed.resolve();
      joined.reject(payload.error);
    }
  });

  async function forward(dead: { message: KafkaMessage; kind: Rejection }[], partition: number) {
    try {
      await producer!.send({
        topic: dlqTopic,
        acks: -1,
        messages: dead.map(({ message, kind }) => ({
          key: message.key,
          value: message.value,
          timestamp: message.timestamp,
          headers: {
            ...(message.headers as IHeaders | undefined),
            "dlq-reason": kind,
            "dlq-origin": `${topic}/${partition}/${message.offset}`,
          },
        })),
      });
      counts.dlqForwarded += dead.length;
    } catch (error) {
      // Counted and reported, never fatal: the charts go on, the count shows the loss.
      counts.dlqFailed += dead.length;
      console.error(`warning: could not forward ${dead.length} records to ${dlqTopic}: ${error}`);
    }
  }

  // Latency is the pipeline's: records the producer received before this consumer
  // started are history being replayed, and their age says nothing. It is taken when
  // each record is applied, not when its batch began: a big batch would otherwise
  // hide its own processing time.
  const recordLatency = (message: KafkaMessage) => {
    const receivedAt = parseReceivedAt(message.headers?.[HEADER_RECEIVED_AT]);
    if (receivedAt >= startedAt) {
      const appliedAt = Date.now();
      latency.record(appliedAt - receivedAt, appliedAt);
      options.latencyLog?.record(appliedAt - receivedAt);
    }
  };

  async function eachBatch(
    { batch, resolveOffset, commitOffsetsIfNecessary, isStale }: EachBatchPayload,
  ): Promise<void> {
    if (isStale()) return; // a seek is pending for this partition: this batch is from before it
    const partition = batch.partition;
    const now = Date.now();
    const last = batch.lastOffset();
    const result = applyBatch(
      state,
      partition,
      batch.messages,
      Number(last),
      now,
      recordLatency,
    );
    if (producer && result.refused.length > 0) await forward(result.refused, partition);
    if (result.applied > 0) lastTradeAt = now;
    resolveOffset(last);
    // Committed only now that the batch is applied (see the comment at the top); the
    // next offset to apply, so a redelivered batch never moves the commit back. After
    // the seek points' commit, which must not land after it.
    await startCommitted;
    const next = String(state.nextToApply.get(partition));
    await commitOffsetsIfNecessary({
      topics: [{ topic, partitions: [{ partition, offset: next }] }],
    });
    lastBatchDoneAt = Date.now();
    if (options.onBatch && result.touched.size > 0) options.onBatch(result.touched);
  }

  await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch });

  async function pollLag(): Promise<void> {
    const [committed, ends] = await Promise.all([
      admin.fetchOffsets({ groupId: config.groupId, topics: [topic] }),
      admin.fetchTopicOffsets(topic),
    ]);
    const done = new Map<number, number>();
    for (const { partition, offset } of committed[0]?.partitions ?? []) {
      done.set(partition, Number(offset));
    }
    lag = lagOf(ends, state.nextToApply, seekOffsets, done, assigned);
  }

  const stopped = (async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([joined.promise, aborted]);
      while (!signal.aborted && !fatal) {
        await pollLag().catch(() => (lag = null));
        await Promise.race([
          aborted,
          crashed.promise,
          new Promise((resolve) => (timer = setTimeout(resolve, options.lagPollMs ?? LAG_POLL_MS))),
        ]);
        clearTimeout(timer);
      }
    } finally {
      clearTimeout(timer);
      // stop() waits for the batch in flight, which commits what it applied; then
      // disconnect() leaves the group, so a restart rejoins without waiting.
      await consumer.stop().catch(() => {});
      await disconnectAll();
    }
    if (fatal) throw fatal;
  })();

  await Promise.race([joined.promise, stopped]);
  if (!signal.aborted && !fatal) {
    // The group's commit from an earlier run says nothing about this one: commit the
    // seek points of the partitions no batch has reached yet (batches commit after).
    const untouched = [...assigned].filter((p) => !state.nextToApply.has(p) && seekOffsets.has(p));
    startCommitted = consumer.commitOffsets(
      untouched.map((partition) => ({
        topic,
        partition,
        offset: String(seekOffsets.get(partition)),
      })),
    ).catch((error) => console.error(`warning: could not commit the start offsets: ${error}`));
  }

  return {
    status: () => {
      const now = Date.now();
      return {
        connected,
        lag,
        latencyP50Ms: latency.quantile(0.5, now),
        latencyP99Ms: latency.quantile(0.99, now),
        // The market's rate by trade time (a replay at 100k records/s is not a trade rate).
        tradesPerSecond: aggregator.symbols().reduce(
          (sum, symbol) => sum + aggregator.stats(symbol, now)!.tradesPerSecond,
          0,
        ),
        applied: counts.applied,
        rejected: counts.rejected + counts.symbolCap,
        tooLate: counts.tooLate,
        tooEarly: counts.tooEarly,
        lastTradeAt,
      };
    },
    counts: () => counts,
    assignment: () => ({ assigned: assigned.size, partitions }),
    batchTimes: () => ({ first: firstFetchAt, lastDone: lastBatchDoneAt }),
    stopped,
  };
}
