/**
 * The hub: one aggregation, many browsers. Each SSE client follows one symbol at
 * one candle interval over a time window; it gets a snapshot of that window, then
 * deltas (the candles changed since the last push) with the stats of the symbols
 * that moved and the consumer's status.
 *
 * `notify` only marks symbols dirty; a timer pushes at most once per
 * `pushIntervalMs`, so the cost per client is bounded by the push rate, not the
 * trade rate. Each push is built once per (symbol, interval) and the same bytes go
 * to every client that follows it. A heartbeat pushes every `heartbeatMs` even when
 * nothing traded, so ages and the connection state stay current on the page.
 *
 * A snapshot's candles are the window and, before it, up to `WARMUP_CANDLES` more
 * (the warm-up): the page computes its indicators over all of them and draws only
 * the window, so an indicator's value at a candle does not depend on the window
 * (SMA 500 is whole from the left edge; EMA and RSI are seeded 500 candles back).
 * The snapshot names the count it used (`warmup`); the page keeps as many.
 */

import type { Aggregator, Candle, ConsumerStatus } from "../consumer/candles.ts";
import type { FeedSummary } from "../consumer/feed.ts";
import type { FiredAlert } from "../lib/alert_rules.ts";
import { encodeEvent, SseClient } from "./sse.ts";
import { candleRowsJson, safeJson } from "./wire.ts";
import { sparks } from "./spark.ts";
import { marketOf } from "../lib/market_hours.ts";
import { MAX_PERIOD } from "../lib/indicators.js";

/** Candles sent before a snapshot's window: the longest indicator period the page offers. */
export const WARMUP_CANDLES = MAX_PERIOD;

/** What the hub reads from the consumer's Aggregator (consumer/candles.ts). */
export type AggregatorView = Pick<
  Aggregator,
  "revision" | "symbols" | "intervals" | "candles" | "stats"
>;

export interface HubOptions {
  readonly aggregator: AggregatorView;
  readonly status: () => ConsumerStatus;
  /** The producer's feed: sent with snapshots and heartbeats (it changes by the second). */
  readonly feed: () => FeedSummary;
  /** Least time between two pushes to a client: 50 ms is at most 20 pushes a second. */
  readonly pushIntervalMs: number;
  /** Every stats line and the consumer status are pushed at least this often. */
  readonly heartbeatMs: number;
  /** A client that leaves this much unread misses frames and is resynced later. */
  readonly clientBufferBytes: number;
  /** Streams beyond this many are refused (503). */
  readonly maxStreams: number;
  /** Alerts fired after a sequence number: each push carries the new ones (`alerts`). */
  readonly alerts?: (seq: number) => { seq: number; alerts: readonly FiredAlert[] };
}

/** What one stream follows: a symbol's candles at one interval over a time window. */
export interface Subscription {
  /** null: the client named none and no symbol exists yet; the hub picks the first. */
  symbol: string | null;
  /** Whether the client named the symbol (only then can it resume by event id). */
  readonly explicit: boolean;
  readonly intervalMs: number;
  readonly windowMs: number;
}

export interface HubMetrics {
  streams: number;
  /** Bytes queued for clients that have not read them yet, all clients. */
  queuedBytes: number;
  opened: number;
  refused: number;
  /** Times a client stopped reading long enough to fill its buffer. */
  overflows: number;
  /** Snapshots sent to such clients once they read again. */
  resyncs: number;
  pushes: number;
}

interface Client {
  readonly sse: SseClient;
  readonly sub: Subscription;
  /** Alerts in frames it missed: its resync snapshot carries them (the page dedupes). */
  missed?: readonly FiredAlert[];
}

/**
 * The `id:` of an event is this hub's boot id and the aggregator revision. The boot
 * id guards against a restarted consumer: its revisions start again at 0, so a
 * revision from the old process would name the wrong point in the new one.
 */
function eventId(boot: string, revision: number): string {
  return `${boot}-${revision}`;
}

function parseEventId(text: string | null): { boot: string; revision: number } | null {
  const match = text === null ? null : /^([0-9a-f]{8})-(\d{1,15})$/.exec(text.trim());
  return match ? { boot: match[1], revision: Number(match[2]) } : null;
}

/** Index of the first candle with start >= from, in a list sorted by start. */
function firstFrom(candles: readonly Candle[], from: number): number {
  let low = 0;
  let high = candles.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (candles[mid].start < from) low = mid + 1;
    else high = mid;
  }
  return low;
}

export class Hub {
  readonly #boot: string = crypto.randomUUID().slice(0, 8);
  readonly #options: HubOptions;
  readonly #clients = new Set<Client>();
  readonly #dirty = new Set<string>();
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #heartbeat: ReturnType<typeof setInterval>;
  #lastFlushAt = 0;
  /** A heartbeat came too soon after a push: the next push is one (see #beat). */
  #beatDue = false;
  /** Revision at the last push: every push carries the candles changed after it. */
  #flushedRev: number;
  #closed = false;
  /** The newest alert pushed: a push carries the alerts fired after it. */
  #alertSeq = 0;
  readonly #metrics = { opened: 0, refused: 0, overflows: 0, resyncs: 0, pushes: 0 };

  constructor(options: HubOptions) {
    this.#options = options;
    this.#flushedRev = options.aggregator.revision();
    this.#heartbeat = setInterval(() => this.#beat(), options.heartbeatMs);
  }

  metrics(): HubMetrics {
    let queuedBytes = 0;
    for (const client of this.#clients) queuedBytes += client.sse.queuedBytes;
    return { streams: this.#clients.size, queuedBytes, ...this.#metrics };
  }

  /**
   * A new stream, or "full" at the cap. With a Last-Event-ID from this hub the
   * client gets only what changed since then, else a snapshot.
   */
  open(sub: Subscription, lastEventId: string | null): ReadableStream<Uint8Array> | "full" {
    if (this.#closed || this.#clients.size >= this.#options.maxStreams) {
      this.#metrics.refused++;
      return "full";
    }
    const aggregator = this.#options.aggregator;
    if (this.#clients.size === 0) {
      // Nobody was listening: nothing since the last push needs to be sent again.
      this.#flushedRev = aggregator.revision();
      this.#dirty.clear();
      this.#alertSeq = this.#options.alerts?.(Infinity).seq ?? 0;
    }
    const client: Client = {
      sse: new SseClient(this.#options.clientBufferBytes, () => this.#clients.delete(client)),
      sub,
    };
    this.#clients.add(client);
    this.#metrics.opened++;
    if (sub.symbol === null) sub.symbol = aggregator.symbols()[0] ?? null;
    const resume = parseEventId(lastEventId);
    const revision = aggregator.revision();
    if (
      resume !== null && resume.boot === this.#boot && resume.revision <= revision && sub.explicit
    ) {
      this.#send(client, this.#deltaFrame(sub, resume.revision, revision, { first: true }));
    } else {
      this.#send(client, this.#snapshotFrame(sub));
    }
    return client.sse.stream;
  }

  /** The consumer applied records for these symbols: push soon, not once per record. */
  notify(symbols: Iterable<string>): void {
    if (this.#closed) return;
    for (const symbol of symbols) this.#dirty.add(symbol);
    if (this.#flushTimer !== undefined || this.#clients.size === 0) return;
    const wait = Math.max(0, this.#lastFlushAt + this.#options.pushIntervalMs - performance.now());
    this.#flushTimer = setTimeout(() => this.#flush(false), wait);
  }

  /** Ends every stream and stops the timers (server shutdown). */
  close(): void {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    for (const client of [...this.#clients]) client.sse.close();
  }

  /**
   * A heartbeat keeps the pushes' spacing too (a heartbeat between two pushes made 21
   * in a second at 10,000 trades/s): one due sooner than `pushIntervalMs` after the
   * last push waits for the next allowed time.
   */
  #beat(): void {
    const wait = this.#lastFlushAt + this.#options.pushIntervalMs - performance.now();
    if (wait <= 0) return this.#flush(true);
    this.#beatDue = true;
    this.#flushTimer ??= setTimeout(() => this.#flush(false), wait);
  }

  /** One push to every client: a delta, or a snapshot for a client that has none yet. */
  #flush(heartbeat: boolean): void {
    heartbeat ||= this.#beatDue;
    this.#beatDue = false;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#lastFlushAt = performance.now();
    const since = this.#flushedRev;
    const revision = this.#options.aggregator.revision();
    this.#flushedRev = revision;
    if (this.#clients.size === 0 || (!heartbeat && revision === since && this.#dirty.size === 0)) {
      this.#dirty.clear();
      return;
    }
    const frames = new Map<string, Uint8Array>();
    const fired = this.#options.alerts?.(this.#alertSeq);
    if (fired !== undefined) this.#alertSeq = fired.seq;
    const alerts = fired?.alerts.length ? fired.alerts : undefined;
    const tail = heartbeat
      ? this.#tail(this.#options.aggregator.symbols(), { feed: true, alerts })
      : this.#tail(this.#dirty, { alerts });
    this.#dirty.clear();
    for (const client of this.#clients) {
      const { sse, sub } = client;
      if (sub.symbol === null) {
        sub.symbol = this.#options.aggregator.symbols()[0] ?? null;
        if (sub.symbol !== null) {
          this.#send(client, this.#snapshotFrame(sub, alerts)); // with this push's alerts
          continue;
        }
      }
      if (sse.stale) {
        if (alerts) client.missed = [...client.missed ?? [], ...alerts].slice(-50);
        this.#resync(client);
        continue;
      }
      const key = `${sub.symbol}\u0000${sub.intervalMs}`;
      let frame = frames.get(key);
      if (frame === undefined) {
        frame = this.#deltaFrame(sub, since, revision, { tail });
        frames.set(key, frame);
      }
      if (!this.#send(client, frame) && alerts) client.missed = alerts;
    }
    this.#metrics.pushes++;
  }

  /** A client that missed frames gets a snapshot once it has read everything queued. */
  #resync(client: Client): void {
    if (
      client.sse.queuedBytes === 0 &&
      this.#send(client, this.#snapshotFrame(client.sub, client.missed))
    ) {
      client.missed = undefined;
      client.sse.markFresh();
      this.#metrics.resyncs++;
    }
  }

  /** Sends a frame; counts the moment a client starts missing frames. */
  #send(client: Client, frame: Uint8Array): boolean {
    const wasStale = client.sse.stale;
    if (client.sse.send(frame)) return true;
    if (!wasStale) this.#metrics.overflows++;
    return false;
  }

  /**
   * The part every push shares: stats of the given symbols and the consumer status;
   * the feed too in snapshots and heartbeats.
   */
  #tail(
    symbols: Iterable<string>,
    options: { feed?: boolean; alerts?: readonly FiredAlert[] } = {},
  ): string {
    const now = Date.now();
    const stats: string[] = [];
    for (const symbol of symbols) {
      const line = this.#options.aggregator.stats(symbol, now);
      if (line !== undefined) stats.push(safeJson(line));
    }
    const feed = (options.feed ? `,"feed":${safeJson(this.#options.feed())}` : "") +
      (options.alerts ? `,"alerts":${safeJson(options.alerts)}` : "");
    return `,"stats":[${stats.join(",")}],"status":${
      safeJson(this.#options.status())
    }${feed},"streams":${this.#clients.size},"now":${now}}`;
  }

  /** The subscription's window of candles, with the stats of every symbol. */
  #snapshotFrame(sub: Subscription, alerts?: readonly FiredAlert[]): Uint8Array {
    const aggregator = this.#options.aggregator;
    const revision = aggregator.revision();
    let candles: readonly Candle[] = [];
    if (sub.symbol !== null) {
      const all = aggregator.candles(sub.symbol, sub.intervalMs);
      const last = all.at(-1);
      if (last !== undefined) {
        // The window, and before it the indicators' warm-up.
        const first = firstFrom(all, last.start - sub.windowMs + sub.intervalMs);
        candles = all.slice(Math.max(0, first - WARMUP_CANDLES));
      }
    }
    // The symbol's market (lib/market_hours.ts): the page's exchange clock and session marks.
    const market = sub.symbol === null ? null : marketOf(sub.symbol);
    const data = `{"symbol":${safeJson(sub.symbol)},"market":${
      safeJson(market)
    },"interval":${sub.intervalMs},"window":${sub.windowMs},"warmup":${WARMUP_CANDLES},"intervals":${
      safeJson(aggregator.intervals())
    },"rev":${revision},"candles":${candleRowsJson(candles)},"sparks":${
      safeJson(sparks(aggregator))
    }${this.#tail(aggregator.symbols(), { feed: true, alerts })}`;
    return encodeEvent({ id: eventId(this.#boot, revision), event: "snapshot", data, retry: 1000 });
  }

  /**
   * The subscription's candles changed after `since`, as a delta event. The first
   * event of a resumed stream carries every symbol's stats and the retry delay.
   */
  #deltaFrame(
    sub: Subscription,
    since: number,
    revision: number,
    options: { first?: boolean; tail?: string },
  ): Uint8Array {
    const aggregator = this.#options.aggregator;
    const changed: Candle[] = [];
    if (sub.symbol !== null && revision !== since) {
      for (const candle of aggregator.candles(sub.symbol, sub.intervalMs)) {
        if (candle.revision > since) changed.push(candle);
      }
    }
    const tail = options.tail ??
      this.#tail(options.first ? aggregator.symbols() : [], { feed: options.first });
    const data = `{"symbol":${
      safeJson(sub.symbol)
    },"interval":${sub.intervalMs},"rev":${revision},"from":${since},"candles":${
      candleRowsJson(changed)
    }${tail}`;
    return encodeEvent({
      id: eventId(this.#boot, revision),
      event: "delta",
      data,
      retry: options.first ? 1000 : undefined,
    });
  }
}
