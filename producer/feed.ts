/**
 * The feed writer: what the producer sees of its source goes to the feed topic
 * (lib/feed.ts), so viewers can tell a quiet market from a broken pipeline.
 * A heartbeat every few seconds, and a gap event for every stretch in which trades
 * may be missing (a lost connection, trades dropped from a full queue) or were held
 * back (Kafka away). A clean stop writes a last heartbeat in state "stopped"; a
 * producer that dies writes nothing, and viewers call it silent.
 *
 * It has its own small kafkajs producer, apart from the trades' idempotent one, so
 * it can never delay or reorder a trade. A heartbeat that cannot be written is
 * skipped (the next one replaces it); gap events wait for the next beat, at most
 * MAX_PENDING of them.
 */

import { type Kafka, type Message, Partitioners } from "kafkajs";
import { sleep, unlessAborted, withTimeout } from "../lib/async.ts";
import {
  encodeFeed,
  type FeedCounts,
  feedKey,
  type FeedRecord,
  type FeedState,
  type Gap,
  type GapReason,
  type Heartbeat,
} from "../lib/feed.ts";
import type { Source, Trade } from "../lib/trade.ts";
import type { FinnhubState } from "./finnhub.ts";
import { type Counters, createLimiter } from "./status.ts";

/** Gap events held while Kafka is away; beyond it the oldest are dropped (and said). */
const MAX_PENDING = 1_000;
/** Symbols named in one gap event. */
const MAX_GAP_SYMBOLS = 100;
/** A run of dropped trades ends when none was dropped for this long. */
const DROP_RUN_IDLE_MS = 1_000;
/**
 * A write not acknowledged by then counts as failed: its gaps stay in the backlog for
 * the next beat. (A send to a broker that died mid-request can wait for kafkajs's
 * 30 s request timeout, and every beat meanwhile would be skipped.) A gap written
 * twice this way is one gap to a viewer: its key and number repeat.
 */
const WRITE_TIMEOUT_MS = 5_000;

/** The heartbeat's changing part, read at every beat. */
export type Beat = Pick<
  Heartbeat,
  "state" | "since" | "detail" | "symbols" | "lastFrameAt" | "lastPingAt" | "lastTradeAt" | "counts"
>;

/** Where feed records go: feedSink in production, anything with its shape in tests. */
export interface FeedSink {
  connect(): Promise<void>;
  send(messages: Message[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * A small kafkajs producer of its own for the feed topic: a few retries, then the
 * send fails and the writer tries again with the next beat.
 */
export function feedSink(kafka: Kafka, topic: string): FeedSink {
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1_000 },
  });
  return {
    connect: () => producer.connect(),
    send: async (messages) => void await producer.send({ topic, acks: -1, messages }),
    close: () => producer.disconnect(),
  };
}

export interface FeedWriterOptions {
  readonly sink: FeedSink;
  /** The feed topic, for the log. */
  readonly topic: string;
  /** This producer run, e.g. "market-stream-1a2b3c4d". */
  readonly producer: string;
  readonly source: Source;
  readonly everyMs: number;
  readonly beat: () => Beat;
  /**
   * The feed's delay now: receive time minus trade time of the latest trade. A gap's
   * wall times less this are its trade times.
   */
  readonly delayMs: () => number;
  readonly log: (line: string) => void;
}

interface DropRun {
  from: number;
  to: number;
  count: number;
  tradeFrom: number;
  tradeTo: number;
  readonly symbols: Set<string>;
}

export class FeedWriter {
  readonly #options: FeedWriterOptions;
  readonly #shown = createLimiter(30_000);
  /** Gap records not yet acknowledged, oldest first, with their numbers. */
  #pending: { n: number; message: Message }[] = [];
  #n = 0;
  #drops: DropRun | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #writing: Promise<unknown> | undefined;
  #closed = false;
  /** Gaps recorded, and gap events lost to a full backlog. */
  readonly stats = { gaps: 0, lost: 0, beats: 0 };

  constructor(options: FeedWriterOptions) {
    this.#options = options;
  }

  /** Connects, writes the first heartbeat, then one every `everyMs` until close. */
  async start(): Promise<void> {
    await this.#options.sink.connect();
    await this.#write(this.#options.beat(), Math.max(WRITE_TIMEOUT_MS, this.#options.everyMs));
    if (this.#closed) return; // stopped while starting
    this.#timer = setInterval(() => this.#tick(), this.#options.everyMs);
  }

  /** A stretch without trades or with held-back trades; written with the next beat. */
  gap(event: { reason: GapReason; from: number; to: number; detail: string }): void {
    const delay = this.#options.delayMs();
    this.#add({
      ...event,
      tradeFrom: Math.max(0, event.from - delay),
      tradeTo: Math.max(0, event.to - delay),
      symbols: [],
    });
  }

  /** A lost connection: every subscribed symbol is affected. */
  disconnected(gap: { from: number; to: number; detail: string }, symbols: readonly string[]) {
    const delay = this.#options.delayMs();
    this.#add({
      reason: "disconnected",
      ...gap,
      tradeFrom: Math.max(0, gap.from - delay),
      tradeTo: Math.max(0, gap.to - delay),
      symbols: symbols.slice(0, MAX_GAP_SYMBOLS),
    });
  }

  /** Trades dropped from a full queue: gathered into one event per run of drops. */
  dropped(trades: readonly Trade[], receivedAt: number): void {
    const run = this.#drops ??= {
      from: receivedAt,
      to: receivedAt,
      count: 0,
      tradeFrom: Infinity,
      tradeTo: -Infinity,
      symbols: new Set(),
    };
    run.to = receivedAt;
    run.count += trades.length;
    for (const trade of trades) {
      if (trade.time < run.tradeFrom) run.tradeFrom = trade.time;
      if (trade.time > run.tradeTo) run.tradeTo = trade.time;
      if (run.symbols.size < MAX_GAP_SYMBOLS) run.symbols.add(trade.symbol);
    }
  }

  /**
   * Writes the last heartbeat (state "stopped") and what is pending, waiting at most
   * `timeoutMs` for Kafka; then disconnects.
   */
  async close(timeoutMs: number): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#endDropRun(Infinity);
    const deadline = Date.now() + timeoutMs;
    if (this.#writing) await unlessAborted(this.#writing, AbortSignal.timeout(timeoutMs));
    // Again until it is written or the time is up: a broker just back may refuse a
    // while (its partitions' leaders), and the last gaps must not be lost to that.
    // A feed never written to (its topic refused, say) gets one try: the stop is not
    // held up for it.
    const again = this.stats.beats > 0;
    const since = Date.now();
    do {
      const beat = { ...this.#options.beat(), state: "stopped" as const, since };
      const budget = Math.min(deadline - Date.now(), again ? Infinity : WRITE_TIMEOUT_MS);
      if (await this.#write(beat, budget)) break;
      await sleep(Math.min(250, Math.max(0, deadline - Date.now())));
    } while (again && Date.now() < deadline);
    await unlessAborted(this.#options.sink.close(), AbortSignal.timeout(2_000)).catch(() => {});
  }

  #tick(): void {
    this.#endDropRun(Date.now());
    if (this.#writing) return; // Kafka is slow: this beat is skipped, the next replaces it
    const writing = this.#write(
      this.#options.beat(),
      Math.max(WRITE_TIMEOUT_MS, this.#options.everyMs),
    );
    this.#writing = writing.then(() => (this.#writing = undefined));
  }

  #endDropRun(now: number): void {
    const run = this.#drops;
    if (run === undefined || now - run.to < DROP_RUN_IDLE_MS) return;
    this.#drops = undefined;
    this.#add({
      reason: "queue-full",
      from: run.from,
      to: run.to,
      detail: `${run.count} trades dropped: the queue was full while Kafka was slow or away`,
      tradeFrom: run.tradeFrom,
      tradeTo: run.tradeTo,
      symbols: [...run.symbols],
      dropped: run.count,
    });
  }

  #add(fields: Omit<Gap, "v" | "kind" | "producer" | "source" | "n">): void {
    const gap: Gap = {
      v: 1,
      kind: "gap",
      producer: this.#options.producer,
      source: this.#options.source,
      n: ++this.#n,
      ...fields,
    };
    this.stats.gaps++;
    this.#pending.push({ n: gap.n, message: this.#message(gap, fields.to) });
    if (this.#pending.length > MAX_PENDING) {
      this.#pending.shift();
      this.stats.lost++;
      if (this.#shown("lost")) {
        this.#options.log(`feed: ${this.stats.lost} gap events lost: Kafka away too long`);
      }
    }
  }

  #message(record: FeedRecord, at: number): Message {
    return { key: feedKey(record), value: encodeFeed(record), timestamp: String(at) };
  }

  /**
   * One request: the pending gaps and a heartbeat, given `timeoutMs`. Never throws;
   * true when Kafka took it, else says why (once per 30 s).
   */
  async #write(beat: Beat, timeoutMs: number): Promise<boolean> {
    const at = Date.now();
    const heartbeat: Heartbeat = {
      v: 1,
      kind: "heartbeat",
      producer: this.#options.producer,
      source: this.#options.source,
      at,
      everyMs: this.#options.everyMs,
      ...beat,
    };
    // Gaps added while this send is under way wait for the next one: only those sent
    // (by number: a full backlog may drop the oldest meanwhile) leave the backlog.
    const gaps = [...this.#pending];
    const lastSent = gaps.at(-1)?.n ?? 0;
    try {
      await withTimeout(
        this.#options.sink.send([...gaps.map((gap) => gap.message), this.#message(heartbeat, at)]),
        Math.max(1, timeoutMs),
      );
      this.#pending = this.#pending.filter((gap) => gap.n > lastSent);
      this.stats.beats++;
      return true;
    } catch (error) {
      if (this.#shown("send")) {
        const reason = error instanceof Error ? error.message : String(error);
        this.#options.log(
          `feed: cannot write to ${this.#options.topic} (${reason}); ` +
            `${this.#pending.length} gap events kept for the next heartbeat`,
        );
      }
      return false;
    }
  }
}

/** The counters as the heartbeat carries them. */
export function feedCounts(counters: Counters): FeedCounts {
  return {
    received: counters.received,
    acked: counters.acked,
    queued: counters.queued,
    dropped: counters.dropped,
    rejected: Object.fromEntries(counters.rejected),
    reconnects: counters.reconnects,
  };
}

/**
 * The Finnhub connection as a heartbeat state: open with trades is "live"; open with
 * no trade for `quietMs` (pings, or nothing) is "pings-only", since the last trade.
 */
export function finnhubFeedState(
  state: FinnhubState,
  options: { now: number; quietMs: number },
): Pick<Beat, "state" | "since" | "detail"> {
  if (state.phase !== "live") {
    return { state: state.phase, since: state.phaseSince, detail: state.detail || undefined };
  }
  let lastTrade = 0;
  for (const at of state.lastTradeAt.values()) if (at > lastTrade) lastTrade = at;
  const since = Math.max(lastTrade, state.phaseSince);
  return options.now - since >= options.quietMs
    ? { state: "pings-only", since }
    : { state: "live", since: state.phaseSince };
}

/** The heartbeat state of a source that has no connection (sim, replay). */
export function plainFeedState(startedAt: number): { state: FeedState; since: number } {
  return { state: "live", since: startedAt };
}
