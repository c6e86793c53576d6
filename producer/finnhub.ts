/**
 * The Finnhub trade websocket, as Finnhub's API docs and its maintainers describe it: one
 * subscribe message per symbol on every (re)connect, frames holding many trades of
 * several symbols, pings, error frames, and a server that closes connections on
 * purpose. The client reconnects in a loop with capped, jittered backoff; only a
 * 401 at the handshake (a bad token) ends it. Frames are read by frames.ts.
 */

import { sleep } from "../lib/async.ts";
import { UsageError } from "../lib/cli.ts";
import { formatAge, formatClock } from "../lib/format.js";
import { quietReason } from "../lib/market_hours.ts";
import { redact } from "../lib/redact.ts";
import type { Trade } from "../lib/trade.ts";
import { createFrameReader, type FrameRejection } from "./frames.ts";

/** The Finnhub URL with the token in its query, as the server wants it. Never log it. */
function finnhubUrl(base: string, token: string): string {
  const url = new URL(base);
  url.searchParams.set("token", token);
  return url.toString();
}

/** A refused token: configuration, not a network blip (exit code 2). */
export class FinnhubAuthError extends UsageError {
  override name = "FinnhubAuthError";
}

export interface Backoff {
  /** First delay after a lost connection, ms. */
  readonly baseMs: number;
  /** The longest delay, ms. */
  readonly capMs: number;
}

const DEFAULT_BACKOFF: Backoff = { baseMs: 500, capMs: 30_000 };

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
  /**
   * A lost connection is subscribed again: trades of every symbol may be missing
   * from `from` (wall ms: the close, or the last frame of a connection gone silent)
   * to `to` (subscribed again). `detail` says why, in words.
   */
  readonly onGap?: (gap: { from: number; to: number; detail: string }) => void;
  /** No frame at all, not even a ping, for this long: the connection is dead. */
  readonly deadAfterMs?: number;
  /** A symbol without trades this long on a live connection is reported as silent. */
  readonly silentAfterMs?: number;
  readonly backoff?: Backoff;
}

/**
 * The connection in one word, for the feed's heartbeat: before the first open,
 * open, lost (waiting to connect again), or the last attempt failed to open.
 */
export type Phase = "connecting" | "live" | "reconnecting" | "refused";

/** What the status line and the feed's heartbeat show about the connection. */
export interface FinnhubState {
  connected: boolean;
  phase: Phase;
  /** When the phase began (wall ms). */
  phaseSince: number;
  /** Why the phase is what it is (a close, a refusal); "" when live. */
  detail: string;
  /** Wall times of the last frame of any kind, and of the last ping. */
  lastFrameAt: number | null;
  lastPingAt: number | null;
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
  /** From when trades may be missing: the close, or the last frame of a silent connection. */
  lostFrom: number;
  gotTrades: boolean;
  reason: string;
  authFailed: boolean;
}

/**
 * Connects, subscribes and reads until `signal` aborts. `run` rejects with
 * FinnhubAuthError on a 401; every other failure reconnects.
 */
export class FinnhubClient {
  readonly state: FinnhubState = {
    connected: false,
    phase: "connecting",
    phaseSince: Date.now(),
    detail: "",
    lastFrameAt: null,
    lastPingAt: null,
    since: Date.now(),
    subscribed: 0,
    reconnects: 0,
    lastTradeAt: new Map(),
  };
  readonly #options: FinnhubOptions;
  readonly #deadAfterMs: number;
  readonly #silentAfterMs: number;
  readonly #shownUrl: string;
  readonly #read: ReturnType<typeof createFrameReader>;
  /** Trades arrived on the current connection. */
  #gotTrades = false;
  /** The last error frame shown: the server may repeat it on every subscribe. */
  #lastError = "";
  #silentShown = "";
  /** When the last open connection was lost (its Outcome.lostFrom); 0 before the first. */
  #lostAt = 0;
  #lostReason = "";
  /** Attempts that failed to open since the last loss, and the last one's reason. */
  #refusals = 0;
  #lastRefusal = "";

  constructor(options: FinnhubOptions) {
    this.#options = options;
    this.#deadAfterMs = options.deadAfterMs ?? 150_000;
    this.#silentAfterMs = options.silentAfterMs ?? 120_000;
    this.#shownUrl = redact(finnhubUrl(options.url, options.token));
    this.#read = createFrameReader({
      onTrades: (trades, receivedAt) => {
        this.#gotTrades = true;
        for (const trade of trades) this.state.lastTradeAt.set(trade.symbol, receivedAt);
        options.onTrades(trades, receivedAt);
      },
      onReject: options.onReject,
      onError: (msg) => this.#onErrorFrame(msg),
      onPing: (receivedAt) => (this.state.lastPingAt = receivedAt),
    }, new Set(options.symbols));
  }

  /** Connects again and again until the signal aborts; throws FinnhubAuthError on a 401. */
  async run(): Promise<void> {
    const { signal } = this.#options;
    const backoff = this.#options.backoff ?? DEFAULT_BACKOFF;
    let attempt = 0;
    const silenceTimer = setInterval(
      () => this.checkSilence(Date.now()),
      Math.min(this.#silentAfterMs, 10_000),
    );
    try {
      while (!signal.aborted) {
        const outcome = await this.#connectOnce();
        if (signal.aborted) return;
        if (outcome.authFailed) {
          throw new FinnhubAuthError(
            `Finnhub refused the token (HTTP 401 at ${this.#shownUrl}): check FINNHUB_TOKEN ` +
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
          this.#log(`finnhub: connection lost after ${seconds(lived)}: ${outcome.reason}${hint}`);
          this.#lostAt = outcome.lostFrom;
          this.#lostReason = outcome.reason;
          this.#refusals = 0;
          this.#setPhase("reconnecting", outcome.reason);
        } else {
          if (attempt === 0 || attempt % 5 === 0) {
            this.#log(`finnhub: cannot connect to ${this.#shownUrl} (${outcome.reason})`);
          }
          this.#refusals++;
          this.#lastRefusal = outcome.reason;
          this.#setPhase("refused", outcome.reason);
        }
        if (!await sleep(backoffDelay(attempt++, backoff), signal)) return;
      }
    } finally {
      clearInterval(silenceTimer);
    }
  }

  /** The connection in a few words, for the status line: "connected 5m, 5 subscribed". */
  describeConnection(now: number): string {
    const { connected, since, subscribed } = this.state;
    const age = formatAge(now - since);
    return connected
      ? `connected ${age}, ${subscribed} subscribed`
      : `DISCONNECTED ${age}, reconnecting`;
  }

  /** Names symbols silent for silentAfterMs on a live connection, once per change. */
  checkSilence(now: number): void {
    const { state } = this;
    if (!state.connected) return;
    const symbols = this.#options.symbols;
    const silent = symbols.filter((symbol) =>
      now - Math.max(state.lastTradeAt.get(symbol) ?? 0, state.since) >= this.#silentAfterMs
    );
    const key = silent.join(",");
    if (key === this.#silentShown) return;
    this.#silentShown = key;
    if (silent.length === 0) return;
    const last = Math.max(0, ...silent.map((symbol) => state.lastTradeAt.get(symbol) ?? 0));
    const since = last > 0 ? formatClock(last) : `connect at ${formatClock(state.since)}`;
    const names = silent.length === symbols.length ? "any symbol" : silent.join(", ");
    this.#log(
      `finnhub: connected, subscribed to ${state.subscribed}, no trades for ${names} since ` +
        `${since} — ${quietReason(silent, now)} (or use --source=sim or --source=replay)`,
    );
  }

  /** One connection, from open to close; resolves with how it went. */
  #connectOnce(): Promise<Outcome> {
    const { signal, onRawFrame } = this.#options;
    const outcome: Outcome = {
      opened: false,
      openedAt: 0,
      lostFrom: 0,
      gotTrades: false,
      reason: "",
      authFailed: false,
    };
    return new Promise((resolve) => {
      const ws = new WebSocket(finnhubUrl(this.#options.url, this.#options.token));
      let deadTimer: ReturnType<typeof setTimeout> | undefined;
      let done = false;
      const finish = (reason: string, lostFrom = Date.now()) => {
        if (done) return;
        done = true;
        outcome.lostFrom = lostFrom;
        clearTimeout(deadTimer);
        signal.removeEventListener("abort", onAbort);
        // Detached first: nothing the old socket still delivers reaches the pipeline,
        // and closing may wait for a peer that no longer answers.
        ws.onopen =
          ws.onmessage =
          ws.onerror =
          ws.onclose =
            null;
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
          try {
            ws.close(1000);
          } catch { /* already closing */ }
        }
        this.state.connected = false;
        this.state.since = Date.now();
        outcome.reason = reason;
        outcome.gotTrades = this.#gotTrades;
        resolve(outcome);
      };
      const armDeadTimer = () => {
        clearTimeout(deadTimer);
        const after = this.#deadAfterMs;
        // Trades may be missing since the last frame, not only since the timer fired.
        deadTimer = setTimeout(
          () =>
            finish(
              `no frame, not even a ping, for ${Math.round(after / 1000)} s`,
              Math.max(this.state.lastFrameAt ?? 0, outcome.openedAt),
            ),
          after,
        );
      };
      const onAbort = () => finish("stopped");
      signal.addEventListener("abort", onAbort, { once: true });
      armDeadTimer();
      ws.onopen = () => this.#subscribe(ws, outcome);
      ws.onmessage = (event: MessageEvent) => {
        const receivedAt = Date.now();
        this.state.lastFrameAt = receivedAt;
        armDeadTimer();
        if (typeof event.data === "string") onRawFrame?.(event.data, receivedAt);
        this.#read(event.data, receivedAt);
      };
      ws.onerror = (event: Event) => {
        const message = event instanceof ErrorEvent
          ? handshakeStatus(event.message)
          : "websocket error";
        if (!outcome.opened && /\b401\b/.test(message)) outcome.authFailed = true;
        outcome.reason = message;
      };
      ws.onclose = (event: CloseEvent) => {
        finish(
          event.code === 1006 || event.code === 0
            ? outcome.reason || "closed without a close frame"
            : `closed by server, code ${event.code}${event.reason ? ` "${event.reason}"` : ""}`,
        );
      };
    });
  }

  /** Subscribes every symbol on a fresh connection (Finnhub forgets them on a reconnect). */
  #subscribe(ws: WebSocket, outcome: Outcome): void {
    const { state } = this;
    outcome.opened = true;
    outcome.openedAt = Date.now();
    this.#gotTrades = false;
    this.#lastError = "";
    for (const symbol of this.#options.symbols) {
      ws.send(JSON.stringify({ type: "subscribe", symbol }));
    }
    state.connected = true;
    state.since = outcome.openedAt;
    state.subscribed = this.#options.symbols.length;
    this.#setPhase("live", "");
    if (this.#lostAt === 0) {
      this.#log(
        `finnhub: connected to ${this.#shownUrl} and subscribed to ${state.subscribed} symbols`,
      );
      return;
    }
    state.reconnects++;
    this.#log(
      `finnhub: reconnected after a ${seconds(outcome.openedAt - this.#lostAt)} gap ` +
        `(reconnect ${state.reconnects}), subscribed again to ${state.subscribed} symbols`,
    );
    this.#options.onGap?.({ from: this.#lostAt, to: outcome.openedAt, detail: this.#gapDetail() });
    this.#lostAt = 0;
  }

  /**
   * The connection lost and not regained yet, as a gap up to `now` (the producer
   * stops): undefined when connected.
   */
  openGap(now: number): { from: number; to: number; detail: string } | undefined {
    if (this.#lostAt === 0 || this.state.connected) return undefined;
    const detail = `${this.#gapDetail()}; not connected again before the stop`;
    return { from: this.#lostAt, to: Math.max(now, this.#lostAt), detail };
  }

  /** Why the connection was lost, and the handshakes refused since. */
  #gapDetail(): string {
    const refused = this.#refusals === 0
      ? ""
      : `; then refused ${this.#refusals} time${this.#refusals > 1 ? "s" : ""} ` +
        `(${this.#lastRefusal})`;
    return this.#hide(`${this.#lostReason}${refused}`);
  }

  #setPhase(phase: Phase, detail: string): void {
    if (phase !== this.state.phase) this.state.phaseSince = Date.now();
    this.state.phase = phase;
    this.state.detail = this.#hide(detail);
  }

  #onErrorFrame(msg: string): void {
    if (msg === this.#lastError) return;
    this.#lastError = msg;
    const hint = /too many symbols/i.test(msg)
      ? ` (this connection asked for ${this.#options.symbols.length} symbols; the free plan ` +
        `allows about 50: trim SYMBOLS)`
      : "";
    this.#log(`finnhub: error from server: ${msg}${hint}`);
  }

  /** Every line, with `token=…` and the token itself (say, echoed in an error) hidden. */
  #log(line: string): void {
    this.#options.log(this.#hide(line));
  }

  #hide(text: string): string {
    const token = this.#options.token;
    const hidden = redact(text);
    return token ? hidden.replaceAll(token, "***") : hidden;
  }
}

/** Deno's "…failed to connect to WebSocket: Invalid status code: 503" reads "HTTP 503". */
function handshakeStatus(message: string): string {
  const status = /Invalid status code:? (\d{3})/.exec(message)?.[1];
  return status === undefined ? message : `HTTP ${status} at the handshake`;
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}
