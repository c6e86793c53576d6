/**
 * The bounded queue in front of Kafka. Sources hand it whole frames; one sender
 * loop takes everything waiting (up to a batch limit) and sends it in one request,
 * so batches grow by themselves under load and no trade waits for another's ack.
 *
 * Only one send is in flight, and trades reach Kafka in the order they were
 * received. The kafkajs producer is idempotent and retries a lost broker itself,
 * inside one send, reusing its sequence numbers: those retries cannot write a trade
 * twice. That guarantee ends with the send. A send that rejects may already have
 * written part of its batch (one partition leader answered, another failed), and
 * sending the batch again makes new records. So:
 * - a rejection kafkajs marks `retriable: false` (a record too large, a denied
 *   topic) is final: the queue stops, says why once, and keeps the trades, which
 *   the producer reports as not delivered. Sending again would fail the same way.
 * - any other rejection is retried with exactly the failed batch, no more: kafkajs
 *   hands its partitions' sequence numbers back after a failed request, so a broker
 *   that wrote the batch before the connection died recognises the copy and keeps
 *   one. A bigger batch from the same first sequence is refused for good
 *   (OUT_OF_ORDER_SEQUENCE_NUMBER: the fault suite's broker kill found it). A batch
 *   that partly reached another leader is written again there, so every trade in a
 *   batch sent again is still counted as possibly duplicated.
 * While the broker is away the queue fills; past its capacity new trades are
 * dropped, counted and logged, never silently. The Kafka side (the idempotent
 * producer, the sink, connecting) is kafka_producer.ts.
 */

import type { Message } from "kafkajs";
import { sleep } from "../lib/async.ts";
import { formatCount } from "../lib/format.js";
import {
  encodeTrade,
  HEADER_RECEIVED_AT,
  HEADER_SOURCE,
  type Source,
  type Trade,
} from "../lib/trade.ts";
import { createLimiter } from "./status.ts";

/**
 * Where batches go: kafkaSink in production, anything with the same shape in tests.
 * `send` rejects with an error whose `retriable` is false when sending again cannot help.
 */
export interface Sink {
  send(messages: Message[]): Promise<void>;
}

/** A rejection that sending again cannot fix: kafkajs marks these `retriable: false`. */
function isFinal(error: unknown): boolean {
  return typeof error === "object" && error !== null &&
    (error as { retriable?: unknown }).retriable === false;
}

/** The records of one frame: key = symbol, timestamp = trade time, both headers. */
export function toMessages(
  trades: readonly Trade[],
  source: Source,
  receivedAt: number,
): Message[] {
  // One headers object per frame: every trade in it was received at the same time.
  const headers = { [HEADER_RECEIVED_AT]: String(receivedAt), [HEADER_SOURCE]: source };
  return trades.map((trade) => ({
    key: trade.symbol,
    value: encodeTrade(trade, source),
    timestamp: String(trade.time),
    headers,
  }));
}

export interface PublisherOptions {
  /** Most trades held in memory; beyond it new trades are dropped (and counted). */
  readonly capacity: number;
  /** Most trades per send. */
  readonly maxBatch?: number;
  /**
   * Most bytes per send. Kafka refuses a record batch over `message.max.bytes`
   * (1 MB by default), and with one partition a whole send is one batch.
   */
  readonly maxBatchBytes?: number;
  readonly log: (line: string) => void;
  /** Called once when a send fails for good (see isFinal); nothing is sent after it. */
  readonly onFailed?: (reason: string) => void;
  /** Trades dropped for want of room (after they are counted). */
  readonly onDropped?: (trades: readonly Trade[], receivedAt: number) => void;
  /**
   * Kafka was away as the queue saw it: from the start of the first failed (or
   * slow) send to the end of the next good one. The trades waited, in order.
   */
  readonly onOutage?: (outage: { from: number; to: number; detail: string }) => void;
}

/** A send slower than this counts as an outage too: kafkajs retried a lost broker inside it. */
const SLOW_SEND_MS = 5_000;

const LOG_INTERVAL_MS = 5_000;
/** Bytes a record costs beyond its key and value: headers, timestamp, framing. */
const RECORD_OVERHEAD = 64;

/**
 * The queue and its one sender loop. Sources call `enqueue` with each frame's
 * trades; the loop sends what is waiting, in order, until `close`.
 */
export class Publisher {
  readonly #sink: Sink;
  readonly #options: PublisherOptions;
  readonly #maxBatch: number;
  readonly #maxBatchBytes: number;
  /** Queue length below which `waitForRoom` lets a fast source go on. */
  readonly #lowWater: number;
  readonly #shown = createLimiter(LOG_INTERVAL_MS);
  readonly #stopped = new AbortController();
  #queue: Message[] = [];
  /** Index of the first message not yet acknowledged. */
  #head = 0;
  #pumping = false;
  #failure: string | undefined;
  /**
   * Trades at the head of the queue that were in a failed send (Kafka may hold some
   * of them already), and how many of those were counted as possibly duplicated.
   */
  #unsure = 0;
  #unsureCounted = 0;
  #waiters: (() => void)[] = [];
  readonly stats = {
    accepted: 0,
    acked: 0,
    dropped: 0,
    sendErrors: 0,
    batches: 0,
    /** Trades sent again after a failed send: Kafka may hold them twice. */
    possiblyDuplicated: 0,
  };

  constructor(sink: Sink, options: PublisherOptions) {
    this.#sink = sink;
    this.#options = options;
    this.#maxBatch = options.maxBatch ?? 2500;
    this.#maxBatchBytes = options.maxBatchBytes ?? 900_000;
    this.#lowWater = Math.min(options.capacity / 2, this.#maxBatch * 4);
  }

  /** Trades waiting in the queue or in flight. */
  queued(): number {
    return this.#queue.length - this.#head;
  }

  /** Why sending stopped for good (a final send error); undefined while it goes on. */
  get failure(): string | undefined {
    return this.#failure;
  }

  /** Queues one frame's trades; returns how many were dropped for want of room. */
  enqueue(trades: readonly Trade[], source: Source, receivedAt: number): number {
    if (trades.length === 0) return 0;
    const room = Math.max(0, this.#options.capacity - this.queued());
    const taken = room >= trades.length ? trades : trades.slice(0, room);
    const dropped = trades.length - taken.length;
    if (taken.length > 0) {
      for (const message of toMessages(taken, source, receivedAt)) this.#queue.push(message);
      this.stats.accepted += taken.length;
      if (!this.#pumping) {
        this.#pumping = true;
        // A microtask later, so every frame queued in this turn goes in one send.
        queueMicrotask(() => this.#pump());
      }
    }
    if (dropped > 0) {
      this.stats.dropped += dropped;
      this.#options.onDropped?.(trades.slice(taken.length), receivedAt);
      if (this.#shown("overflow")) {
        this.#options.log(
          `queue full (${formatCount(this.#options.capacity)} trades waiting for Kafka): ` +
            `dropped ${formatCount(this.stats.dropped)} trades so far`,
        );
      }
    }
    return dropped;
  }

  /**
   * Resolves once the queue is short again: a few batches, or half the capacity.
   * The "max" rates wait on it; a deeper queue would only cost memory.
   */
  waitForRoom(): Promise<void> {
    return this.#until(() => this.queued() <= this.#lowWater);
  }

  /** Resolves when everything queued is acknowledged, or sending has stopped. */
  drained(): Promise<void> {
    return this.#until(() => this.queued() === 0);
  }

  /**
   * Waits up to `timeoutMs` for the queue to drain, then stops retrying. Returns
   * how many trades Kafka did not acknowledge (0 on a clean stop).
   */
  async close(timeoutMs: number): Promise<number> {
    const timedOut = new AbortController();
    await Promise.race([this.drained(), sleep(timeoutMs, timedOut.signal)]);
    timedOut.abort();
    this.#stopped.abort();
    this.#wake();
    return this.queued();
  }

  /** Resolves once `condition` holds or sending has stopped; checked after every batch. */
  #until(condition: () => boolean): Promise<void> {
    const done = () => condition() || this.#stopped.signal.aborted;
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => done() ? resolve() : this.#waiters.push(check);
      this.#waiters.push(check);
    });
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter();
  }

  /** The next batch from the head: at most maxBatch trades and maxBatchBytes. */
  #nextBatch(): Message[] {
    // After a failed send, exactly that batch again (see the top of this file).
    const most = this.#unsure > 0 ? this.#unsure : this.#maxBatch;
    const end = Math.min(this.#queue.length, this.#head + most);
    let bytes = 0;
    let i = this.#head;
    while (i < end) {
      const message = this.#queue[i];
      bytes += (message.value as string).length + (message.key as string).length + RECORD_OVERHEAD;
      if (bytes > this.#maxBatchBytes && i > this.#head) break;
      i++;
    }
    return this.#queue.slice(this.#head, i);
  }

  /** The sender loop: one send in flight, the same trades again after a failure. */
  async #pump(): Promise<void> {
    let failures = 0;
    /** The first failed send of an outage: when it started, and why it failed. */
    let outage: { from: number; detail: string } | undefined;
    while (this.queued() > 0 && !this.#stopped.signal.aborted) {
      const batch = this.#nextBatch();
      // After a failed send, the batch is that send's trades: sent again.
      if (this.#unsure > this.#unsureCounted) {
        this.stats.possiblyDuplicated += this.#unsure - this.#unsureCounted;
        this.#unsureCounted = this.#unsure;
      }
      const startedAt = Date.now();
      try {
        await this.#sink.send(batch);
      } catch (error) {
        failures++;
        this.stats.sendErrors++;
        this.#unsure = batch.length;
        outage ??= {
          from: startedAt,
          detail: error instanceof Error ? error.message : String(error),
        };
        if (this.#failedForGood(error, batch.length)) break;
        await sleep(Math.min(2_000, 100 * 2 ** Math.min(failures, 5)), this.#stopped.signal);
        continue;
      }
      const endedAt = Date.now();
      if (outage === undefined && endedAt - startedAt >= SLOW_SEND_MS) {
        outage = {
          from: startedAt,
          detail: `a send took ${Math.round((endedAt - startedAt) / 1000)} s`,
        };
      }
      if (outage !== undefined) this.#options.onOutage?.({ ...outage, to: endedAt });
      outage = undefined;
      failures = 0;
      this.#unsure = this.#unsureCounted = 0;
      this.#head += batch.length;
      this.stats.acked += batch.length;
      this.stats.batches++;
      // Drop sent messages now and then, not on every batch: slicing is O(queue).
      if (this.#head > 20_000 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      this.#wake();
    }
    this.#pumping = false;
    this.#wake();
  }

  /** Says why a send failed; true (and sending stops) when retrying cannot help. */
  #failedForGood(error: unknown, batchLength: number): boolean {
    const reason = error instanceof Error ? error.message : String(error);
    const waiting = formatCount(this.queued());
    if (!isFinal(error)) {
      if (this.#shown("send-error")) {
        this.#options.log(
          `kafka: send failed (${waiting} trades waiting, kept in order): ${reason}; ` +
            `retrying (a batch sent again may be partly duplicated)`,
        );
      }
      return false;
    }
    this.#failure = reason;
    this.#options.log(
      `kafka: send failed and cannot be retried: ${reason}; stopped sending ` +
        `(${waiting} trades not delivered; Kafka may hold some of the ` +
        `${formatCount(batchLength)} in the failed send)`,
    );
    this.#stopped.abort();
    this.#options.onFailed?.(reason);
    return true;
  }
}
