/**
 * The Finnhub trade websocket, as Finnhub's API docs and its maintainers describe it: one
 * subscribe message per symbol on every (re)connect, frames holding many trades of
 * several symbols, pings, error frames, and a server that closes connections on
 * purpose. The client reconnects in a loop with capped, jittered backoff; only a
 * 401 at the handshake (a bad token) ends it.
 *
 * The frame reader is shared with replay (recording.ts), so a recorded session is
 * read as it was live: same validation, same duplicate check, same counts. Only the
 * live client refuses symbols it did not subscribe to: a recording does not say
 * which those were.
 */

import { redact } from "../config.ts";
import { formatClock } from "../lib/format_old.ts";
import { sleep } from "./status.ts";
import {
  isRecord,
  LIVE_WINDOW,
  type Rejection,
  type Trade,
  validateFinnhubTrade,
} from "../lib/trade.ts";

/** Why a frame or a trade in it was refused. */
export type FrameRejection =
  | Rejection
  | "unknown-type"
  | "bad-frame"
  | "binary-frame"
  | "duplicate-frame"
  | "unsubscribed-symbol";

export type Frame =
  | { readonly type: "trade"; readonly data: readonly unknown[] }
  | { readonly type: "ping" }
  | { readonly type: "error"; readonly msg: string }
  | { readonly type: "rejected"; readonly kind: FrameRejection };

/** Parses one text frame; the trades in it are still `unknown` (see readFrame). */
export function parseFrame(text: string): Frame {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Malformed JSON, and nesting deep enough to overflow the parser's stack.
    return { type: "rejected", kind: "not-json" };
  }
  if (!isRecord(parsed)) return { type: "rejected", kind: "not-an-object" };
  switch (parsed.type) {
    case "trade":
      return Array.isArray(parsed.data)
        ? { type: "trade", data: parsed.data }
        : { type: "rejected", kind: "bad-frame" };
    case "ping":
      return { type: "ping" };
    case "error":
      return {
        type: "error",
        msg: typeof parsed.msg === "string" ? parsed.msg : "(an error frame without a message)",
      };
    default:
      return { type: "rejected", kind: "unknown-type" };
  }
}

export interface FrameHandlers {
  /** Valid trades of one frame, in the frame's order. */
  onTrades(trades: Trade[], receivedAt: number): void;
  /** A refused frame or trade; `sample` is the offending text, for the log. */
  onReject(kind: FrameRejection, sample: string): void;
  onError?(msg: string): void;
}

/** Finnhub has sent the same message three times [#143]: a repeat this soon is not a trade. */
export const DUPLICATE_WINDOW_MS = 10_000;
const DUPLICATE_MEMORY = 4096;
/**
 * Characters of frame text kept for the duplicate check. Without this bound a few
 * thousand big frames (a busy market, or a hostile server) would hold hundreds of
 * megabytes; past it the oldest frames are forgotten first.
 */
export const DUPLICATE_MEMORY_CHARS = 4 * 1024 * 1024;

/**
 * Turns raw frames into validated trades and counted rejections. Trades carry no
 * id, so duplicates are recognised only as a whole trade frame repeated, byte for
 * byte, within DUPLICATE_WINDOW_MS; such frames are counted as "duplicate-frame".
 * With `subscribed` (the live client), a valid trade of any other symbol is refused
 * as "unsubscribed-symbol": a server pushing symbols nobody asked for must not fill
 * the topic, nor the per-symbol maps that live as long as the process.
 */
export function createFrameReader(handlers: FrameHandlers, subscribed?: ReadonlySet<string>) {
  const recent = new Map<string, number>();
  let recentChars = 0;
  const forgetOldest = () => {
    const oldest = recent.keys().next().value!;
    recent.delete(oldest);
    recentChars -= oldest.length;
  };
  /** `receivedAt`: when the frame arrived (live) or was recorded (replay). */
  return (text: unknown, receivedAt: number): void => {
    if (typeof text !== "string") {
      handlers.onReject("binary-frame", "(a binary frame)");
      return;
    }
    const frame = parseFrame(text);
    switch (frame.type) {
      case "rejected":
        handlers.onReject(frame.kind, text);
        return;
      case "ping": // keeps the connection alive (see the dead timer); nothing to hand on
        return;
      case "error":
        handlers.onError?.(frame.msg);
        return;
      case "trade": {
        const seenAt = recent.get(text);
        if (seenAt !== undefined && receivedAt - seenAt <= DUPLICATE_WINDOW_MS) {
          handlers.onReject("duplicate-frame", text);
          return;
        }
        if (seenAt !== undefined) {
          recent.delete(text);
          recentChars -= text.length;
        }
        // Frames are remembered in arrival order: drop the expired ones from the front.
        while (
          recent.size > 0 && receivedAt - recent.values().next().value! > DUPLICATE_WINDOW_MS
        ) {
          forgetOldest();
        }
        if (text.length <= DUPLICATE_MEMORY_CHARS) {
          recent.set(text, receivedAt);
          recentChars += text.length;
          while (recent.size > DUPLICATE_MEMORY || recentChars > DUPLICATE_MEMORY_CHARS) {
            forgetOldest();
          }
        }
        const window = { ...LIVE_WINDOW, now: receivedAt };
        const trades: Trade[] = [];
        for (const raw of frame.data) {
          const result = validateFinnhubTrade(raw, window);
          if (typeof result === "string") handlers.onReject(result, sampleOf(raw));
          else if (subscribed && !subscribed.has(result.symbol)) {
            handlers.onReject("unsubscribed-symbol", sampleOf(raw));
          } else trades.push(result);
        }
        if (trades.length > 0) handlers.onTrades(trades, receivedAt);
      }
    }
  };
}

function sampleOf(raw: unknown): string {
  try {
    return JSON.stringify(raw) ?? String(raw);
  } catch {
    return String(raw);
  }
}

/** The Finnhub URL with the token in its query, as the server wants it. Never log it. */
export function finnhubUrl(base: string, token: string): string {
  const url = new URL(base);
  url.searchParams.set("token", token);
  return url.toString();
}

/** A refused token: configuration, not a network blip. The producer exits with code 2. */
export class FinnhubAuthError extends Error {
  override name = "FinnhubAuthError";
}

export interface Backoff {
  /** First delay after a lost connection, ms. */
  readonly baseMs: number;
  /** The longest delay, ms. */
  readonly capMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 500, capMs: 30_000 };

/** Exponential backoff with "equal jitter": half the step fixed, half random, capped. */
export function backoffDelay(attempt: number, backoff: Backoff, random = Math.random): number {
  const step = Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + random() * step / 2);
}

export interface FinnhubOptions {
  /** Base URL without the token, e.g. wss://ws.finnhub.io. */
  readonly url: string;
  readonly token: string;
  readonly symbols: readonly string[];
  readonly signal: AbortSignal;
  readonly onTrades: (trades: Trade[], receivedAt: number) => void;
  readonly onReject: (kind: FrameRejection, sample: string) => void;
  /** Every raw frame as received, before any check (for --record). */
  readonly onRawFrame?: (text: string, receivedAt: number) => void;
  /** One line per event; the client redacts the token before calling it. */
  readonly log: (line: string) => void;
  /** No frame at all, not even a ping, for this long: the connection is dead. */
  readonly deadAfterMs?: number;
  /** A symbol without trades this long on a live connection is reported as silent. */
  readonly silentAfterMs?: number;
  readonly backoff?: Backoff;
}

/** What the status line shows about the connection. */
export interface FinnhubState {
  connected: boolean;
  /** When the current connection opened, or the last one was lost. */
  since: number;
  subscribed: number;
  reconnects: number;
  /** When each subscribed symbol last traded (no other symbol gets in). */
  readonly lastTradeAt: Map<string, number>;
}

/** A connection that lived this long, or carried trades, resets the backoff. */
const HEALTHY_MS = 30_000;
/** The server closing this soon after opening hints at a second client using the key [#158]. */
const EARLY_CLOSE_MS = 10_000;

interface Outcome {
  opened: boolean;
  openedAt: number;
  gotTrades: boolean;
  reason: string;
  authFailed: boolean;
}

/**
 * Connects, subscribes and reads until `signal` aborts. Rejects with
 * FinnhubAuthError on a 401; every other failure reconnects.
 */
export function createFinnhubClient(options: FinnhubOptions) {
  const deadAfterMs = options.deadAfterMs ?? 150_000;
  const silentAfterMs = options.silentAfterMs ?? 120_000;
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  // redact() hides `token=…`; the token alone (say, echoed in an error) is hidden too.
  const hide = (line: string) => options.token ? line.replaceAll(options.token, "***") : line;
  const log = (line: string) => options.log(hide(redact(line)));
  const shownUrl = redact(finnhubUrl(options.url, options.token));
  const state: FinnhubState = {
    connected: false,
    since: Date.now(),
    subscribed: 0,
    reconnects: 0,
    lastTradeAt: new Map(),
  };
  let gotTrades = false;
  let lastError = "";
  let silentShown = "";
  /** When the last open connection was lost; 0 before the first. */
  let lostAt = 0;

  const read = createFrameReader({
    onTrades(trades, receivedAt) {
      gotTrades = true;
      for (const trade of trades) state.lastTradeAt.set(trade.symbol, receivedAt);
      options.onTrades(trades, receivedAt);
    },
    onReject: options.onReject,
    onError(msg) {
      // One line per distinct message: the server may repeat it on every subscribe.
      if (msg === lastError) return;
      lastError = msg;
      const hint = /too many symbols/i.test(msg)
        ? ` (this connection asked for ${options.symbols.length} symbols; the free plan ` +
          `allows about 50: trim SYMBOLS)`
        : "";
      log(`finnhub: error from server: ${msg}${hint}`);
    },
  }, new Set(options.symbols));

  function connectOnce(): Promise<Outcome> {
    const outcome: Outcome = {
      opened: false,
      openedAt: 0,
      gotTrades: false,
      reason: "",
      authFailed: false,
    };
    return new Promise((resolve) => {
      const ws = new WebSocket(finnhubUrl(options.url, options.token));
      let deadTimer: ReturnType<typeof setTimeout> | undefined;
      let done = false;
      const finish = (reason: string) => {
        if (done) return;
        done = true;
        clearTimeout(deadTimer);
        options.signal.removeEventListener("abort", onAbort);
        ws.onopen =
          ws.onmessage =
          ws.onerror =
          ws.onclose =
            null;
        // Closing may wait for a peer that no longer answers; the old socket is
        // detached above, so nothing it still delivers reaches the pipeline.
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
          try {
            ws.close(1000);
          } catch { /* already closing */ }
        }
        state.connected = false;
        state.since = Date.now();
        outcome.reason = reason;
        outcome.gotTrades = gotTrades;
        resolve(outcome);
      };
      const armDeadTimer = () => {
        clearTimeout(deadTimer);
        deadTimer = setTimeout(
          () => finish(`no frame, not even a ping, for ${Math.round(deadAfterMs / 1000)} s`),
          deadAfterMs,
        );
      };
      const onAbort = () => finish("stopped");
      options.signal.addEventListener("abort", onAbort, { once: true });
      armDeadTimer();
      ws.onopen = () => {
        outcome.opened = true;
        outcome.openedAt = Date.now();
        gotTrades = false;
        lastError = "";
        for (const symbol of options.symbols) {
          ws.send(JSON.stringify({ type: "subscribe", symbol }));
        }
        state.connected = true;
        state.since = outcome.openedAt;
        state.subscribed = options.symbols.length;
        if (lostAt === 0) {
          log(`finnhub: connected to ${shownUrl} and subscribed to ${state.subscribed} symbols`);
        } else {
          state.reconnects++;
          log(
            `finnhub: reconnected after a ${seconds(outcome.openedAt - lostAt)} gap ` +
              `(reconnect ${state.reconnects}), subscribed again to ${state.subscribed} symbols`,
          );
        }
      };
      ws.onmessage = (event: MessageEvent) => {
        const receivedAt = Date.now();
        armDeadTimer();
        if (typeof event.data === "string") options.onRawFrame?.(event.data, receivedAt);
        read(event.data, receivedAt);
      };
      ws.onerror = (event: Event) => {
        const message = event instanceof ErrorEvent ? event.message : "websocket error";
        if (!outcome.opened && /\b401\b/.test(message)) outcome.authFailed = true;
        outcome.reason = message;
      };
      ws.onclose = (event: CloseEvent) => {
        const detail = event.code === 1006 || event.code === 0
          ? outcome.reason || "closed without a close frame"
          : `closed by server, code ${event.code}${event.reason ? ` "${event.reason}"` : ""}`;
        finish(detail);
      };
    });
  }

  /** Names symbols silent for silentAfterMs on a live connection, once per change. */
  function checkSilence(now: number): void {
    if (!state.connected) return;
    const silent = options.symbols.filter((symbol) =>
      now - Math.max(state.lastTradeAt.get(symbol) ?? 0, state.since) >= silentAfterMs
    );
    const key = silent.join(",");
    if (key === silentShown) return;
    silentShown = key;
    if (silent.length === 0) return;
    const last = Math.max(0, ...silent.map((symbol) => state.lastTradeAt.get(symbol) ?? 0));
    const since = last > 0 ? formatClock(last) : `connect at ${formatClock(state.since)}`;
    const names = silent.length === options.symbols.length ? "any symbol" : silent.join(", ");
    log(
      `finnhub: connected, subscribed to ${state.subscribed}, no trades for ${names} since ` +
        `${since} — market closed? (US stocks trade in market hours; BINANCE: crypto trades ` +
        `all day; or use --source=sim or --source=replay)`,
    );
  }

  async function run(): Promise<void> {
    let attempt = 0;
    const silenceTimer = setInterval(
      () => checkSilence(Date.now()),
      Math.min(silentAfterMs, 10_000),
    );
    try {
      while (!options.signal.aborted) {
        const outcome = await connectOnce();
        if (options.signal.aborted) return;
        if (outcome.authFailed) {
          throw new FinnhubAuthError(
            `Finnhub refused the token (HTTP 401 at ${shownUrl}): check FINNHUB_TOKEN ` +
              `(a free key from finnhub.io; sandbox keys are refused), or use --source=sim`,
          );
        }
        if (outcome.opened) {
          const lived = Date.now() - outcome.openedAt;
          if (lived >= HEALTHY_MS || outcome.gotTrades) attempt = 0;
          const hint = lived < EARLY_CLOSE_MS && !outcome.gotTrades
            ? " (closed soon after opening: is another client using this key? Finnhub " +
              "allows one connection per key)"
            : "";
          log(`finnhub: connection lost after ${seconds(lived)}: ${outcome.reason}${hint}`);
          lostAt = Date.now();
        } else if (attempt === 0 || attempt % 5 === 0) {
          log(`finnhub: cannot connect to ${shownUrl} (${outcome.reason})`);
        }
        if (!await sleep(backoffDelay(attempt++, backoff), options.signal)) return;
      }
    } finally {
      clearInterval(silenceTimer);
    }
  }

  return { state, run, checkSilence };
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}
