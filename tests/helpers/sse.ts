/**
 * A test's view of the dashboard's event stream: events parsed by
 * `eventsource-parser` (the parser the bench uses too) with their JSON data,
 * ClientView keeps candles the way the page (app.js) does, and stuckClient is a
 * browser tab that stopped reading.
 */

import assert from "node:assert/strict";
import { createParser } from "eventsource-parser";
import { withTimeout } from "../../lib/async.ts";
import type { ConsumerStatus, SymbolStats } from "../../consumer/candles.ts";
import type { CandleRow } from "../../dashboard/wire.ts";

export type Row = CandleRow;

/** The data of a snapshot or delta event, as the hub sends it. */
export interface Frame {
  symbol: string | null;
  interval: number;
  rev: number;
  candles: Row[];
  stats: SymbolStats[];
  status: ConsumerStatus;
  streams: number;
  now: number;
  /** Snapshots: the window, the candles sent before it (hub.ts), and the intervals there are. */
  window?: number;
  warmup?: number;
  intervals?: number[];
  /** Deltas: the revision the candles changed after. */
  from?: number;
}

export interface Event {
  id: string;
  /** "snapshot" or "delta"; "message" when the event names none. */
  event: string;
  data: Frame;
  /** The data field as it came over the wire, before JSON.parse. */
  raw: string;
}

/** The aggregator revision an event id names (`<boot>-<revision>`). */
export function revisionOf(id: string): number {
  const match = /^[0-9a-f]{8}-(\d+)$/.exec(id);
  assert.ok(match, `"${id}" is not an event id`);
  return Number(match[1]);
}

/** Bytes of an event stream in, events out (in order), as EventSource parses them. */
export function eventParser(onEvent: (event: Event) => void): (chunk: Uint8Array) => void {
  const decoder = new TextDecoder();
  const parser = createParser({
    onEvent: ({ id, event, data }) =>
      onEvent({ id: id ?? "", event: event ?? "message", data: JSON.parse(data), raw: data }),
  });
  return (chunk) => parser.feed(decoder.decode(chunk, { stream: true }));
}

/** Reads events from a response body one at a time. */
export class EventReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #events: Event[] = [];
  readonly #feed = eventParser((event) => this.#events.push(event));
  /** Bytes read so far. */
  bytes = 0;

  constructor(response: Response) {
    assert.equal(response.status, 200);
    this.#reader = response.body!.getReader();
  }

  /** The next event; throws when none comes in `timeoutMs` or the stream ends. */
  async next(timeoutMs = 5000): Promise<Event> {
    const deadline = Date.now() + timeoutMs;
    while (this.#events.length === 0) {
      const read = await withTimeout(this.#reader.read(), Math.max(0, deadline - Date.now()));
      if (read.done) throw new Error("stream ended");
      this.bytes += read.value.byteLength;
      this.#feed(read.value);
    }
    return this.#events.shift()!;
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel();
  }
}

/** What app.js keeps: candles by time, replaced whole by every newer copy. */
export class ClientView {
  readonly rows = new Map<number, Row>();
  snapshots = 0;

  apply(event: Event): void {
    if (event.event === "snapshot") {
      this.rows.clear();
      this.snapshots++;
    }
    for (const row of event.data.candles) this.rows.set(row[0], row);
  }

  sorted(): Row[] {
    return [...this.rows.values()].sort((a, b) => a[0] - b[0]);
  }
}

/** An HTTP/1.1 client that sends a request and then reads nothing, like a stuck tab. */
export async function stuckClient(url: string, path: string): Promise<Deno.TcpConn> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const request =
    `GET ${path} HTTP/1.1\r\nhost: ${hostname}:${port}\r\naccept: text/event-stream\r\n\r\n`;
  await conn.write(new TextEncoder().encode(request));
  return conn;
}

/** Reads a raw connection until `pattern` has been seen `times` times; returns the bytes read. */
export async function readUntil(
  conn: Deno.TcpConn,
  pattern: string,
  times: number,
  timeoutMs: number,
): Promise<number> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(1 << 16);
  let carry = "";
  let seen = 0;
  let bytes = 0;
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    while (seen < times) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) throw new Error(`saw "${pattern}" ${seen} times, not ${times}`);
      bytes += n;
      const text = carry + decoder.decode(buffer.subarray(0, n), { stream: true });
      for (let at = text.indexOf(pattern); at >= 0; at = text.indexOf(pattern, at + 1)) seen++;
      carry = text.slice(-(pattern.length - 1));
    }
  } finally {
    clearTimeout(timer);
  }
  return bytes;
}
