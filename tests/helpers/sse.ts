/**
 * A test's view of an SSE stream: EventReader parses events as EventSource does,
 * ClientView keeps candles the way app.js does, and stuckClient is a browser tab
 * that stopped reading.
 */

import assert from "node:assert/strict";

export type Row = [number, number, number, number, number, number, number, number | null];
export interface Event {
  id: string;
  event: string;
  // deno-lint-ignore no-explicit-any
  data: any;
  raw: string;
}

/** Reads SSE events from a response body, as EventSource would. */
export class EventReader {
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  bytes = 0;

  constructor(response: Response) {
    assert.equal(response.status, 200);
    this.#reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  }

  async next(timeoutMs = 5000): Promise<Event> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const end = this.#buffer.indexOf("\n\n");
      if (end >= 0) {
        const raw = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        if (raw.startsWith(":")) continue; // a comment
        const fields = new Map<string, string>();
        for (const line of raw.split("\n")) {
          const colon = line.indexOf(":");
          fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart());
        }
        return {
          id: fields.get("id") ?? "",
          event: fields.get("event") ?? "message",
          data: JSON.parse(fields.get("data") ?? "null"),
          raw,
        };
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const read = await Promise.race([
        this.#reader.read(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error("no SSE event in time")),
            deadline - Date.now(),
          );
        }),
      ]).finally(() => clearTimeout(timer));
      if (read.done) throw new Error("stream ended");
      this.bytes += read.value.length;
      this.#buffer += read.value;
    }
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel();
  }
}

/** What app.js keeps: candles by start, replaced whole by every newer copy. */
export class ClientView {
  readonly rows = new Map<number, Row>();
  snapshots = 0;

  apply(event: Event): void {
    if (event.event === "snapshot") {
      this.rows.clear();
      this.snapshots++;
    }
    for (const row of event.data.candles as Row[]) this.rows.set(row[0], row);
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
