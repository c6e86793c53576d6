/**
 * Server-sent events, the pieces the dashboard's hub is built from: the wire
 * format, and one client's outgoing stream with a bounded buffer.
 *
 * Why a bounded buffer: a browser tab in the background, or a client on a slow
 * link, stops reading. An unbounded queue would then hold every frame the server
 * ever pushed. Here a client whose queue is full misses frames and is marked
 * stale; the hub sends it a fresh snapshot once it drains, so it loses no data,
 * only intermediate states, and never holds up the other clients.
 */

import type { Aggregator, Candle, ConsumerStatus } from "../consumer/candles.ts";

const encoder = new TextEncoder();

export interface SseEvent {
  /** `id:`, what a reconnecting EventSource sends back as Last-Event-ID. */
  readonly id?: string;
  /** `event:`, the name the page listens to; unnamed events are "message". */
  readonly event?: string;
  /** One line: JSON never contains a raw line break. */
  readonly data: string;
  /** `retry:`, the reconnect delay the browser should use, ms. */
  readonly retry?: number;
}

/** One event in SSE wire format. A line break inside a field would end it early. */
export function formatEvent(event: SseEvent): string {
  for (const field of [event.id, event.event, event.data]) {
    if (field !== undefined && /[\r\n]/.test(field)) {
      throw new TypeError("an SSE field may not contain a line break");
    }
  }
  let text = "";
  if (event.retry !== undefined) text += `retry: ${event.retry}\n`;
  if (event.id !== undefined) text += `id: ${event.id}\n`;
  if (event.event !== undefined) text += `event: ${event.event}\n`;
  return `${text}data: ${event.data}\n\n`;
}

/**
 * JSON that is safe to hand to a page: `<`, `>` and `&` are escaped as `\u003c`…,
 * so no value (a symbol is user-controlled text) can ever read as markup, even if
 * some tool shows the raw body as HTML. JSON.parse gives back the same string.
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (char) => {
    return `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
}

export function encodeEvent(event: SseEvent): Uint8Array {
  return encoder.encode(formatEvent(event));
}

/** A comment line: keeps proxies from timing out an idle stream; the page ignores it. */
export const KEEPALIVE: Uint8Array = encoder.encode(": keep-alive\n\n");

/**
 * One client's stream. `send` enqueues a frame unless the queue already holds
 * `maxBufferBytes`; then the frame is dropped and the client is marked stale.
 * A frame is always accepted into an empty queue, so a snapshot larger than the
 * limit still goes out once the client has drained: the bound is
 * max(maxBufferBytes, one frame).
 */
export class SseClient {
  readonly stream: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #closed = false;
  #stale = false;
  #dropped = 0;
  readonly #maxBufferBytes: number;
  readonly #onClose: () => void;

  constructor(maxBufferBytes: number, onClose: () => void) {
    this.#maxBufferBytes = maxBufferBytes;
    this.#onClose = onClose;
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller;
        },
        // The browser went away (tab closed, network gone): free everything.
        cancel: () => this.#finish(),
      },
      new ByteLengthQueuingStrategy({ highWaterMark: maxBufferBytes }),
    );
  }

  /** Bytes waiting for the client to read them. */
  get queuedBytes(): number {
    return this.#closed ? 0 : this.#maxBufferBytes - (this.#controller.desiredSize ?? 0);
  }

  /** True after a frame was dropped, until `markFresh`: the client needs a snapshot. */
  get stale(): boolean {
    return this.#stale;
  }

  /** Frames dropped because this client did not read. */
  get dropped(): number {
    return this.#dropped;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True when a frame of `bytes` would be accepted now. */
  canSend(bytes: number): boolean {
    if (this.#closed) return false;
    const queued = this.queuedBytes;
    return queued === 0 || queued + bytes <= this.#maxBufferBytes;
  }

  /** Enqueues a frame; false (and the client turns stale) when it was dropped. */
  send(frame: Uint8Array): boolean {
    if (this.#closed) return false;
    if (!this.canSend(frame.byteLength)) {
      this.#stale = true;
      this.#dropped++;
      return false;
    }
    this.#controller.enqueue(frame);
    return true;
  }

  /** The hub calls this after sending the snapshot that replaces what was dropped. */
  markFresh(): void {
    this.#stale = false;
  }

  /** Ends the stream from the server side (shutdown). */
  close(): void {
    if (this.#closed) return;
    try {
      this.#controller.close();
    } catch {
      // Already errored or cancelled by the reader: nothing left to close.
    }
    this.#finish();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#onClose();
  }
}

// ---------------------------------------------------------------------------
// The hub: one aggregation, many browsers.

/** What the hub reads from the consumer's Aggregator (candles.ts). */
export type AggregatorView = Pick<
  Aggregator,
  "revision" | "symbols" | "intervals" | "candles" | "stats"
>;

export interface HubOptions {
  readonly aggregator: AggregatorView;
  readonly status: () => ConsumerStatus;
  /** Least time between two pushes to a client: 50 ms is at most 20 pushes a second. */
  readonly pushIntervalMs: number;
  /** Every stats line and the consumer status are pushed at least this often. */
  readonly heartbeatMs: number;
  /** A client that leaves this much unread misses frames and is resynced later. */
  readonly clientBufferBytes: number;
  /** Streams beyond this many are refused (503). */
  readonly maxStreams: number;
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

interface Client {
  readonly sse: SseClient;
  readonly sub: Subscription;
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

/** `id:` of every event: this hub's boot id and the aggregator revision. */
export function eventId(boot: string, revision: number): string {
  return `${boot}-${revision}`;
}

/**
 * The boot id guards against a restarted consumer: its revisions start again at 0,
 * so a revision from the old process would name the wrong point in the new one.
 */
export function parseEventId(text: string | null): { boot: string; revision: number } | null {
  const match = text === null ? null : /^([0-9a-f]{8})-(\d{1,15})$/.exec(text.trim());
  return match ? { boot: match[1], revision: Number(match[2]) } : null;
}

function num(value: number | null): string {
  return value !== null && Number.isFinite(value) ? String(value) : "null";
}

/** Candles as compact rows: [start, open, high, low, close, volume, trades, vwap]. */
export function candlesJson(candles: readonly Candle[]): string {
  let out = "[";
  for (let i = 0; i < candles.length; i++) {
    const c = candles[i];
    out += `${i === 0 ? "" : ","}[${c.start},${num(c.open)},${num(c.high)},${num(c.low)},${
      num(c.close)
    },${num(c.volume)},${c.trades},${num(c.vwap)}]`;
  }
  return `${out}]`;
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

/**
 * Fans the aggregation out to SSE clients. `notify` only marks symbols dirty; a
 * timer pushes at most once per `pushIntervalMs`, so the cost per client is
 * bounded by the push rate, not the trade rate. Each push is built once per
 * (symbol, interval) and the same bytes go to every client that follows it.
 */
export class Hub {
  readonly boot: string = crypto.randomUUID().slice(0, 8);
  readonly #options: HubOptions;
  readonly #clients = new Set<Client>();
  readonly #dirty = new Set<string>();
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #heartbeat: ReturnType<typeof setInterval>;
  #lastFlushAt = 0;
  /** Revision at the last push: every push carries the candles changed after it. */
  #flushedRev: number;
  #closed = false;
  readonly #metrics = { opened: 0, refused: 0, overflows: 0, resyncs: 0, pushes: 0 };

  constructor(options: HubOptions) {
    this.#options = options;
    this.#flushedRev = options.aggregator.revision();
    this.#heartbeat = setInterval(() => this.#flush(true), options.heartbeatMs);
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
  open(sub: Subscription, lastEventId: string | null): SseClient | "full" {
    if (this.#closed || this.#clients.size >= this.#options.maxStreams) {
      this.#metrics.refused++;
      return "full";
    }
    if (this.#clients.size === 0) {
      // Nobody was listening: nothing since the last push needs to be sent again.
      this.#flushedRev = this.#options.aggregator.revision();
      this.#dirty.clear();
    }
    const client: Client = {
      sse: new SseClient(this.#options.clientBufferBytes, () => this.#clients.delete(client)),
      sub,
    };
    this.#clients.add(client);
    this.#metrics.opened++;
    if (sub.symbol === null) sub.symbol = this.#options.aggregator.symbols()[0] ?? null;
    const resume = parseEventId(lastEventId);
    const revision = this.#options.aggregator.revision();
    if (
      resume !== null && resume.boot === this.boot && resume.revision <= revision && sub.explicit
    ) {
      this.#send(client, this.#deltaFrame(client.sub, resume.revision, revision, true));
    } else {
      this.#send(client, this.#snapshotFrame(client.sub));
    }
    return client.sse;
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

  #flush(full: boolean): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#lastFlushAt = performance.now();
    const since = this.#flushedRev;
    const revision = this.#options.aggregator.revision();
    this.#flushedRev = revision;
    if (this.#clients.size === 0 || (!full && revision === since && this.#dirty.size === 0)) {
      this.#dirty.clear();
      return;
    }
    const frames = new Map<string, Uint8Array>();
    const tail = this.#tail(full ? this.#options.aggregator.symbols() : this.#dirty);
    this.#dirty.clear();
    for (const client of this.#clients) {
      const { sse, sub } = client;
      if (sub.symbol === null) {
        sub.symbol = this.#options.aggregator.symbols()[0] ?? null;
        if (sub.symbol !== null) {
          this.#send(client, this.#snapshotFrame(sub));
          continue;
        }
      }
      if (sse.stale) {
        // It missed frames: once it has read everything queued, a snapshot.
        if (sse.queuedBytes === 0 && this.#send(client, this.#snapshotFrame(sub))) {
          sse.markFresh();
          this.#metrics.resyncs++;
        }
        continue;
      }
      const key = `${sub.symbol}\u0000${sub.intervalMs}`;
      let frame = frames.get(key);
      if (frame === undefined) {
        frame = this.#deltaFrame(sub, since, revision, false, tail);
        frames.set(key, frame);
      }
      this.#send(client, frame);
    }
    this.#metrics.pushes++;
  }

  /** Sends a frame; counts the moment a client starts missing frames. */
  #send(client: Client, frame: Uint8Array): boolean {
    const wasStale = client.sse.stale;
    if (client.sse.send(frame)) return true;
    if (!wasStale) this.#metrics.overflows++;
    return false;
  }

  /** The part every push shares: stats of the given symbols and the consumer status. */
  #tail(symbols: Iterable<string>): string {
    const now = Date.now();
    const stats: string[] = [];
    for (const symbol of symbols) {
      const line = this.#options.aggregator.stats(symbol, now);
      if (line !== undefined) stats.push(safeJson(line));
    }
    return `,"stats":[${stats.join(",")}],"status":${
      safeJson(this.#options.status())
    },"streams":${this.#clients.size},"now":${now}}`;
  }

  #snapshotFrame(sub: Subscription): Uint8Array {
    const aggregator = this.#options.aggregator;
    const revision = aggregator.revision();
    let candles: readonly Candle[] = [];
    if (sub.symbol !== null) {
      const all = aggregator.candles(sub.symbol, sub.intervalMs);
      const last = all.at(-1);
      if (last !== undefined) {
        candles = all.slice(firstFrom(all, last.start - sub.windowMs + sub.intervalMs));
      }
    }
    const data = `{"symbol":${
      safeJson(sub.symbol)
    },"interval":${sub.intervalMs},"window":${sub.windowMs},"intervals":${
      safeJson(aggregator.intervals())
    },"rev":${revision},"candles":${candlesJson(candles)}${this.#tail(aggregator.symbols())}`;
    return encodeEvent({ id: eventId(this.boot, revision), event: "snapshot", data, retry: 1000 });
  }

  /** Candles of the subscription changed after `since`, as a delta event. */
  #deltaFrame(
    sub: Subscription,
    since: number,
    revision: number,
    first: boolean,
    tail?: string,
  ): Uint8Array {
    const aggregator = this.#options.aggregator;
    const changed: Candle[] = [];
    if (sub.symbol !== null && revision !== since) {
      for (const candle of aggregator.candles(sub.symbol, sub.intervalMs)) {
        if (candle.revision > since) changed.push(candle);
      }
    }
    const rest = tail ?? this.#tail(first ? aggregator.symbols() : []);
    const data = `{"symbol":${
      safeJson(sub.symbol)
    },"interval":${sub.intervalMs},"rev":${revision},"from":${since},"candles":${
      candlesJson(changed)
    }${rest}`;
    return encodeEvent({
      id: eventId(this.boot, revision),
      event: "delta",
      data,
      retry: first ? 1000 : undefined,
    });
  }
}
