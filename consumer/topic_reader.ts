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

import type {
  Admin,
  Consumer,
  EachBatchPayload,
  IHeaders,
  Kafka,
  KafkaMessage,
  Producer,
} from "kafkajs";
import { Partitioners } from "kafkajs";
import { type Config, validateTopic } from "../config.ts";
import { sleep, unlessAborted } from "../lib/async.ts";
import { checkAccess, createKafka, ensureTopic } from "../lib/kafka.ts";
import { HEADER_RECEIVED_AT, type Rejection } from "../lib/trade.ts";
import {
  applyBatch,
  type ConsumerCounts,
  emptyCounts,
  lagByPartition,
  type ReaderState,
} from "./apply.ts";
import type { Aggregator, ConsumerStatus } from "./candles.ts";
import { type LatencyHistogram, LatencyWindow, parseReceivedAt } from "./latency.ts";

const LAG_POLL_MS = 3_000;

export interface ConsumerOptions {
  readonly config: Config;
  readonly aggregator: Aggregator;
  /** Seek every partition to this trade time (ms) on start. */
  readonly fromMs: number;
  /** Forward undecodable records as they are to `<topic>.dlq`. */
  readonly dlq?: boolean;
  readonly signal: AbortSignal;
  /**
   * Called after each applied batch with the symbols it touched; `live`: every record
   * on the topic at the start was applied and handed here before this batch, or this
   * batch completes them and its last record came after the start (alerts).
   */
  readonly onBatch?: (symbols: ReadonlySet<string>, live: boolean) => void;
  readonly lagPollMs?: number;
  /** Also records every latency here: a whole run's quantiles (--limit's summary). */
  readonly latencyLog?: LatencyHistogram;
}

export interface RunningConsumer {
  status(): ConsumerStatus;
  counts(): Readonly<ConsumerCounts>;
  /** Partitions this member holds, of the topic's total (fewer when the group is shared). */
  assignment(): { assigned: number; partitions: number };
  /** Every record on the topic at the start is applied and handed to onBatch: history read. */
  caughtUp(): boolean;
  /** Records behind the log end per partition, at the latest poll (empty before it). */
  partitionLag(): ReadonlyMap<number, number>;
  /** Wall times (ms) when the first fetch was sent and the latest batch was done. */
  batchTimes(): { first: number | null; lastDone: number | null };
  /** Resolves once stopped (the signal aborted) with every applied offset committed; rejects on a fatal error. */
  readonly stopped: Promise<void>;
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
  const reader = new TopicReader(options);
  await reader.start();
  return reader;
}

class TopicReader implements RunningConsumer {
  readonly #options: ConsumerOptions;
  readonly #topic: string;
  readonly #admin: Admin;
  readonly #consumer: Consumer;
  readonly #kafka: Kafka;
  /** The dead-letter producer, with --dlq. */
  #dlq: Producer | undefined;
  readonly #state: ReaderState;
  readonly #startedAt = Date.now();
  readonly #latency = new LatencyWindow(60);
  /** Per partition, the first offset with trade time >= fromMs: where this run starts. */
  readonly #seekOffsets = new Map<number, number>();
  /** The partitions this member holds since the latest join. */
  #assigned = new Set<number>();
  #partitions = 0;
  #connected = false;
  #lag: number | null = null;
  #partitionLag: ReadonlyMap<number, number> = new Map();
  /** Per partition, its end offset at the start: the history this run reads before it is live. */
  #historyEnds: Map<number, number> | undefined;
  /** Per partition, the next offset whose batch onBatch has had. */
  readonly #handed = new Map<number, number>();
  #caughtUp = false;
  #lastTradeAt: number | null = null;
  #firstFetchAt: number | null = null;
  #lastBatchDoneAt: number | null = null;
  #fatal: Error | undefined;
  /** The commit of the seek points once joined; batches commit after it. */
  #startCommitted: Promise<void> = Promise.resolve();
  readonly #joined = Promise.withResolvers<void>();
  /** Aborted by the stop signal or a crash that kafkajs does not restart from. */
  readonly #halt = new AbortController();
  stopped: Promise<void> = Promise.resolve();

  constructor(options: ConsumerOptions) {
    this.#options = options;
    this.#topic = options.config.topic;
    if (options.dlq) validateTopic(`${this.#topic}.dlq`);
    const kafka = createKafka(options.config, "consumer");
    this.#admin = kafka.admin();
    // A short fetch wait keeps Ctrl+C prompt: stopping waits for the fetch in flight.
    // 2 MB per partition (kafkajs: 1 MB) reads history a quarter faster (deno task
    // bench: 1M records, ~190k -> ~250k/s; RSS while catching up ~235 -> ~310 MB).
    this.#consumer = kafka.consumer({
      groupId: options.config.groupId,
      sessionTimeout: 10_000,
      maxWaitTimeInMs: 500,
      maxBytesPerPartition: 2 * 1024 * 1024,
    });
    this.#kafka = kafka;
    this.#state = { aggregator: options.aggregator, counts: emptyCounts(), nextToApply: new Map() };
    options.signal.addEventListener("abort", () => this.#halt.abort(), { once: true });
  }

  /** Connects, joins and starts reading; see startConsumer. */
  async start(): Promise<void> {
    try {
      // kafkajs retries a broker that does not answer for seconds; a stop must not wait.
      if (await unlessAborted(this.#connect(), this.#options.signal) === "stopped") {
        throw new StoppedError("stopped before Kafka answered");
      }
    } catch (error) {
      await this.#disconnect();
      throw error;
    }
    this.#listen();
    await this.#consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.#eachBatch(payload),
    });
    this.stopped = this.#watch();
    await Promise.race([this.#joined.promise, this.stopped]);
    if (!this.#options.signal.aborted && !this.#fatal) this.#commitSeekPoints();
  }

  status(): ConsumerStatus {
    const now = Date.now();
    const { aggregator } = this.#options;
    const counts = this.#state.counts;
    return {
      connected: this.#connected,
      lag: this.#lag,
      latencyP50Ms: this.#latency.quantile(0.5, now),
      latencyP99Ms: this.#latency.quantile(0.99, now),
      // The market's rate by trade time (a replay at 100k records/s is not a trade rate).
      tradesPerSecond: aggregator.symbols().reduce(
        (sum, symbol) => sum + aggregator.stats(symbol, now)!.tradesPerSecond,
        0,
      ),
      applied: counts.applied,
      rejected: counts.rejected + counts.symbolCap,
      tooLate: counts.tooLate,
      tooEarly: counts.tooEarly,
      lastTradeAt: this.#lastTradeAt,
    };
  }

  counts(): Readonly<ConsumerCounts> {
    return this.#state.counts;
  }

  assignment(): { assigned: number; partitions: number } {
    return { assigned: this.#assigned.size, partitions: this.#partitions };
  }

  caughtUp(): boolean {
    return this.#caughtUp;
  }

  partitionLag(): ReadonlyMap<number, number> {
    return this.#partitionLag;
  }

  batchTimes(): { first: number | null; lastDone: number | null } {
    return { first: this.#firstFetchAt, lastDone: this.#lastBatchDoneAt };
  }

  /** The topic (and the DLQ's), the seek points, then the group. */
  async #connect(): Promise<void> {
    const { config, fromMs, dlq } = this.#options;
    const admin = this.#admin;
    await checkAccess(config); // a refused certificate or password: one line, exit 2
    await admin.connect();
    const { partitions, replicationFactor } = config;
    await ensureTopic(admin, { topic: this.#topic, partitions, replicationFactor });
    if (dlq) {
      await ensureTopic(admin, { topic: `${this.#topic}.dlq`, partitions, replicationFactor });
      this.#dlq = this.#kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
      await this.#dlq.connect();
    }
    const offsets = await admin.fetchTopicOffsetsByTimestamp(this.#topic, fromMs);
    for (const { partition, offset } of offsets) this.#seekOffsets.set(partition, Number(offset));
    const ends = await admin.fetchTopicOffsets(this.#topic);
    this.#historyEnds = new Map(ends.map(({ partition, high }) => [partition, Number(high)]));
    this.#partitions = offsets.length;
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topic: this.#topic });
  }

  #disconnect(): Promise<unknown> {
    return Promise.allSettled([
      this.#admin.disconnect(),
      this.#consumer.disconnect(),
      this.#dlq?.disconnect(),
    ]);
  }

  #listen(): void {
    const consumer = this.#consumer;
    const { events } = consumer;
    // --limit's clock starts when the first fetch is sent, not at the first batch:
    // kafkajs decodes a whole fetch (2 MB a partition) before handing over its first batch.
    consumer.on(events.FETCH_START, () => {
      this.#firstFetchAt ??= Date.now();
    });
    consumer.on(events.GROUP_JOIN, ({ payload }) => {
      this.#connected = true;
      const held = payload.memberAssignment[this.#topic] ?? [];
      this.#assigned = new Set(held);
      // Emitted before kafkajs fetches for the new assignment, so these seeks take
      // effect first (see "Not missed within a run" at the top).
      for (const partition of held) {
        const at = this.#state.nextToApply.get(partition) ?? this.#seekOffsets.get(partition);
        if (at !== undefined) consumer.seek({ topic: this.#topic, partition, offset: String(at) });
      }
      this.#checkCaughtUp(); // no history to read
      this.#joined.resolve();
    });
    for (const event of [events.STOP, events.DISCONNECT]) {
      consumer.on(event, () => (this.#connected = false));
    }
    consumer.on(events.CRASH, ({ payload }) => {
      this.#connected = false;
      if (payload.restart) return;
      this.#fatal = payload.error;
      this.#halt.abort();
      this.#joined.reject(payload.error);
    });
  }

  /**
   * The group's commit from an earlier run says nothing about this one: commit the
   * seek points of the partitions no batch has reached yet (batches commit after).
   */
  #commitSeekPoints(): void {
    const untouched = [...this.#assigned].filter((partition) =>
      !this.#state.nextToApply.has(partition) && this.#seekOffsets.has(partition)
    );
    this.#startCommitted = this.#consumer.commitOffsets(
      untouched.map((partition) => ({
        topic: this.#topic,
        partition,
        offset: String(this.#seekOffsets.get(partition)),
      })),
    ).catch((error) => console.error(`warning: could not commit the start offsets: ${error}`));
  }

  async #eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, commitOffsetsIfNecessary, isStale } = payload;
    if (isStale()) return; // a seek is pending for this partition: this batch is from before it
    const wasLive = this.#caughtUp;
    const { partition } = batch;
    const last = batch.lastOffset();
    const result = applyBatch(this.#state, {
      partition,
      messages: batch.messages,
      lastOffset: Number(last),
      now: Date.now(),
      onApplied: (message) => this.#recordLatency(message),
    });
    if (this.#dlq && result.refused.length > 0) await this.#forward(result.refused, partition);
    if (result.applied > 0) this.#lastTradeAt = Date.now();
    resolveOffset(last);
    // History read is decided per batch, before the commit: a commit refused in a
    // rebalance must not leave a batch applied but never handed on (the group then
    // seeks past it). The batch that completes the history is live when its last
    // record is (only the last price of a batch is evaluated).
    const next = this.#state.nextToApply.get(partition)!;
    this.#handed.set(partition, next);
    this.#checkCaughtUp();
    const live = wasLive ||
      (this.#caughtUp && Number(last) >= (this.#historyEnds?.get(partition) ?? 0));
    if (this.#options.onBatch && result.touched.size > 0) {
      this.#options.onBatch(result.touched, live);
    }
    // Committed only now that the batch is applied (see the comment at the top); the
    // next offset to apply, so a redelivered batch never moves the commit back. After
    // the seek points' commit, which must not land after it.
    await this.#startCommitted;
    await commitOffsetsIfNecessary({
      topics: [{ topic: this.#topic, partitions: [{ partition, offset: String(next) }] }],
    });
    this.#lastBatchDoneAt = Date.now();
  }

  /** Every held partition handed to onBatch up to where it ended at the start. */
  #checkCaughtUp(): void {
    const ends = this.#historyEnds;
    if (this.#caughtUp || ends === undefined) return;
    // No partition held: nothing to read, live at once (the "no trade" rules run).
    this.#caughtUp = [...this.#assigned].every((partition) =>
      (this.#handed.get(partition) ?? this.#seekOffsets.get(partition) ?? 0) >=
        (ends.get(partition) ?? 0)
    );
  }

  /**
   * Latency is the pipeline's: records the producer received before this consumer
   * started are history being replayed, and their age says nothing. It is taken when
   * each record is applied, not when its batch began: a big batch would otherwise
   * hide its own processing time.
   */
  #recordLatency(message: KafkaMessage): void {
    const receivedAt = parseReceivedAt(message.headers?.[HEADER_RECEIVED_AT]);
    if (receivedAt < this.#startedAt) return;
    const appliedAt = Date.now();
    this.#latency.record(appliedAt - receivedAt, appliedAt);
    this.#options.latencyLog?.record(appliedAt - receivedAt);
  }

  /** Undecodable records, as they are, to `<topic>.dlq`: counted and reported, never fatal. */
  async #forward(dead: { message: KafkaMessage; kind: Rejection }[], partition: number) {
    const counts = this.#state.counts;
    try {
      await this.#dlq!.send({
        topic: `${this.#topic}.dlq`,
        acks: -1,
        messages: dead.map(({ message, kind }) => ({
          key: message.key,
          value: message.value,
          timestamp: message.timestamp,
          headers: {
            ...(message.headers as IHeaders | undefined),
            "dlq-reason": kind,
            "dlq-origin": `${this.#topic}/${partition}/${message.offset}`,
          },
        })),
      });
      counts.dlqForwarded += dead.length;
    } catch (error) {
      // The charts go on; the count shows the loss.
      counts.dlqFailed += dead.length;
      console.error(
        `warning: could not forward ${dead.length} records to ${this.#topic}.dlq: ${error}`,
      );
    }
  }

  async #pollLag(): Promise<void> {
    const { groupId } = this.#options.config;
    const [committed, ends] = await Promise.all([
      this.#admin.fetchOffsets({ groupId, topics: [this.#topic] }),
      this.#admin.fetchTopicOffsets(this.#topic),
    ]);
    const done = new Map<number, number>();
    for (const { partition, offset } of committed[0]?.partitions ?? []) {
      done.set(partition, Number(offset));
    }
    this.#partitionLag = lagByPartition(ends, {
      nextToApply: this.#state.nextToApply,
      seekOffsets: this.#seekOffsets,
      committed: done,
      assigned: this.#assigned,
    });
    this.#lag = [...this.#partitionLag.values()].reduce((sum, lag) => sum + lag, 0);
  }

  /** Polls the lag until the signal aborts or the consumer crashes; then leaves the group. */
  async #watch(): Promise<void> {
    const halt = this.#halt.signal;
    try {
      await unlessAborted(this.#joined.promise, halt);
      while (!halt.aborted) {
        await this.#pollLag().catch(() => (this.#lag = null));
        await sleep(this.#options.lagPollMs ?? LAG_POLL_MS, halt);
      }
    } finally {
      // stop() waits for the batch in flight, which commits what it applied; then
      // disconnect() leaves the group, so a restart rejoins without waiting.
      await this.#consumer.stop().catch(() => {});
      await this.#disconnect();
    }
    if (this.#fatal) throw this.#fatal;
  }
}
