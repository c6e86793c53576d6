/**
 * Record a live session and play it back, so charts can be built, demoed and
 * tested when the market is closed.
 *
 * A recording is NDJSON, one line per raw frame, appended as received:
 *   {"at":1700000000123,"source":"finnhub","frame":"{\"type\":\"trade\",\"data\":[…]}"}
 * `at` is the receive time (ms), `frame` the frame's exact text (pings, errors and
 * malformed frames included), `source` the live source it came from (the simulated
 * market's batches are recorded as Finnhub-shaped trade frames).
 *
 * Replay reads the frames through the same reader as the live client (same
 * validation, same duplicate check), at the recorded pace times `speed`, or as fast
 * as Kafka takes them. Records are marked `source: "replay"` — or `"sim"` when the
 * frame was simulated, because a simulated price must never pass for a real one.
 *
 * Trade times are shifted to now by default: each trade keeps its lag behind the
 * moment it was received, and that moment becomes the replay's. Live charts and
 * time windows then behave as with live data; `shiftTimes: false` (--keep-times)
 * keeps the original times instead, for studying a past session.
 */

import { sleep } from "../lib/async.ts";
import { UsageError } from "../lib/cli.ts";
import { lines } from "../lib/lines.ts";
import type { Trade } from "../lib/trade.ts";
import { createFrameReader, type FrameRejection } from "./frames.ts";

export type RecordedSource = "finnhub" | "sim";

/** Writes frames to the end of a file; buffered, flushed every 200 ms and on close. */
export async function openRecorder(
  path: string,
  source: RecordedSource,
  log: (line: string) => void,
) {
  const file = await Deno.open(path, { append: true, create: true });
  const encoder = new TextEncoder();
  let buffered: string[] = [];
  let bufferedBytes = 0;
  let failed = false;
  let closed = false;
  const flush = () => {
    if (buffered.length === 0 || failed) return;
    const chunk = encoder.encode(buffered.join(""));
    buffered = [];
    bufferedBytes = 0;
    try {
      let written = 0;
      while (written < chunk.length) written += file.writeSync(chunk.subarray(written));
    } catch (error) {
      failed = true;
      log(`error: recording to ${path} failed, recording stopped: ${(error as Error).message}`);
    }
  };
  const timer = setInterval(flush, 200);
  return {
    path,
    /** True once a write failed: the recording stopped there, and holds less than was received. */
    get failed(): boolean {
      return failed;
    },
    write(frame: string, at: number): void {
      if (failed) return;
      const line = `{"at":${at},"source":"${source}","frame":${JSON.stringify(frame)}}\n`;
      buffered.push(line);
      bufferedBytes += line.length;
      if (bufferedBytes > 256 * 1024) flush();
    },
    /** Flushes and closes; once (later calls do nothing). */
    close(): void {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      flush();
      file.close();
    },
  };
}

export type Recorder = Awaited<ReturnType<typeof openRecorder>>;

/** --record's file, opened before anything connects: a path it may not write is exit 2. */
export async function openRecording(
  path: string,
  source: RecordedSource,
  log: (line: string) => void,
): Promise<Recorder> {
  try {
    return await openRecorder(path, source, log);
  } catch (error) {
    throw new UsageError(`--record: cannot write "${path}"${recordingHint(error, "write")}`);
  }
}

/** Why a recording cannot be opened, in the user's terms. */
export function recordingHint(error: unknown, access: "read" | "write"): string {
  if (error instanceof Deno.errors.NotCapable) {
    return ` (the produce task may ${access} recordings only in recordings/: put it there, ` +
      `or widen the "${access}" permissions of the produce set in deno.json)`;
  }
  if (error instanceof Deno.errors.NotFound) return " (no such file or folder)";
  return error instanceof Error ? `: ${error.message}` : "";
}

/** The simulated market's trades as the Finnhub frame that would carry them. */
export function toFinnhubFrame(trades: readonly Trade[]): string {
  return JSON.stringify({
    type: "trade",
    data: trades.map((t) =>
      t.conditions
        ? { s: t.symbol, p: t.price, t: t.time, v: t.volume, c: t.conditions }
        : { s: t.symbol, p: t.price, t: t.time, v: t.volume }
    ),
  });
}

/** One recording line, checked; a Rejection kind when it is not one. */
export function parseRecordedLine(
  line: string,
): { at: number; source: RecordedSource; frame: string } | "bad-recording-line" {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return "bad-recording-line";
  }
  if (typeof parsed !== "object" || parsed === null) return "bad-recording-line";
  const { at, source, frame } = parsed as Record<string, unknown>;
  if (!Number.isSafeInteger(at) || (at as number) <= 0 || typeof frame !== "string") {
    return "bad-recording-line";
  }
  if (source !== undefined && source !== "finnhub" && source !== "sim") return "bad-recording-line";
  return { at: at as number, source: source ?? "finnhub", frame };
}

export interface ReplayOptions {
  readonly path: string;
  /** Multiple of the recorded pace, or "max": as fast as Kafka takes them. */
  readonly speed: number | "max";
  /** Shift trade times to now (the default), or keep the recorded ones. */
  readonly shiftTimes: boolean;
  readonly signal: AbortSignal;
  readonly onTrades: (trades: Trade[], receivedAt: number, source: "replay" | "sim") => void;
  readonly onReject: (kind: FrameRejection | "bad-recording-line", sample: string) => void;
  /** Awaited now and then at speed "max", so the queue in front of Kafka never overflows. */
  readonly backpressure?: () => Promise<void>;
}

/**
 * Plays a recording once, to the end or until `signal` aborts. Returns the number
 * of lines read. Throws Deno.errors.NotFound for a missing file (the caller words it).
 */
export async function runReplay(options: ReplayOptions): Promise<number> {
  const file = await Deno.open(options.path, { read: true });
  let source: RecordedSource = "finnhub";
  const read = createFrameReader({
    onTrades(trades, at) {
      const now = Date.now();
      const shift = options.shiftTimes ? now - at : 0;
      const out = shift === 0
        ? trades
        : trades.map((trade) => ({ ...trade, time: trade.time + shift }));
      options.onTrades(out, now, source === "sim" ? "sim" : "replay");
    },
    onReject: options.onReject,
  });
  let count = 0;
  let firstAt = 0;
  let startedAt = 0;
  try {
    for await (const line of lines(file.readable)) {
      if (options.signal.aborted) break;
      count++;
      if (line.trim() === "") continue;
      const entry = parseRecordedLine(line);
      if (entry === "bad-recording-line") {
        options.onReject(entry, line);
        continue;
      }
      if (firstAt === 0) {
        firstAt = entry.at;
        startedAt = Date.now();
      }
      if (options.speed === "max") {
        if (count % 100 === 0) {
          await options.backpressure?.();
          await sleep(0);
        }
      } else {
        const due = startedAt + (entry.at - firstAt) / options.speed;
        const wait = due - Date.now();
        if (wait > 0 && !await sleep(wait, options.signal)) break;
      }
      source = entry.source;
      read(entry.frame, entry.at);
    }
  } finally {
    // The file closes with its stream: at its end, or when leaving the loop early
    // cancels it. An error thrown before the first read leaves it to us.
    try {
      file.close();
    } catch { /* closed with its stream */ }
  }
  return count;
}
