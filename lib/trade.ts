/**
 * The trade codec, shared by the producer (which writes records) and the consumer
 * (which reads them), so the two can never disagree about the wire format.
 *
 * A record on the topic:
 *   key        the symbol, UTF-8
 *   timestamp  the trade time, ms since the epoch (Finnhub's `t`)
 *   value      JSON, schema `schema/trade.v1.json`:
 *              {"v":1,"symbol":"AAPL","price":189.52,"volume":100,
 *               "time":1700000000123,"conditions":["1","12"],"source":"finnhub"}
 *   headers    `received-at`: when the producer received the trade (ms, decimal text)
 *              `source`: finnhub | sim | replay (same as the value's `source`)
 *
 * `volume` 0 is a price update without a trade (FX and some crypto venues);
 * `conditions` is omitted when Finnhub sent none.
 */

/** Where a trade came from: views mark sim and replay, so they never pass for a live market. */
export type Source = "finnhub" | "sim" | "replay";
export const SOURCES: readonly Source[] = ["finnhub", "sim", "replay"];

const SCHEMA_VERSION = 1;

export const HEADER_RECEIVED_AT = "received-at";
export const HEADER_SOURCE = "source";

export interface Trade {
  readonly symbol: string;
  readonly price: number;
  readonly volume: number;
  /** Trade time, ms since the epoch. */
  readonly time: number;
  readonly conditions?: readonly string[];
}

export interface TradeRecord extends Trade {
  readonly source: Source;
}

/** Why a trade was refused; each kind is counted on its own. */
export type Rejection =
  | "not-an-object"
  | "bad-symbol"
  | "bad-price"
  | "bad-volume"
  | "bad-time"
  | "bad-conditions"
  | "bad-version"
  | "bad-source"
  | "not-json";

export const MAX_SYMBOL_LENGTH = 64;

/** A JSON object (not null, not an array): what every wire message must be first. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** C0 and C1 control characters and DEL: a symbol with one could rewrite a terminal. */
const CONTROL = /\p{Cc}/u;

/** A symbol as the topic may carry it (the key of a record, a line in a terminal). */
export function checkSymbol(value: unknown): value is string {
  // isWellFormed: no lone surrogate, which UTF-8 (the record key) cannot carry.
  return typeof value === "string" && value.length > 0 && value.length <= MAX_SYMBOL_LENGTH &&
    value.trim() === value && !CONTROL.test(value) && value.isWellFormed();
}

function checkConditions(value: unknown): value is string[] | undefined {
  return value === undefined ||
    (Array.isArray(value) && value.length <= 32 &&
      value.every((code) => typeof code === "string" && code.length <= 16));
}

/**
 * Bounds for a live trade's time: Finnhub can lag by minutes, but not by days; a
 * time ahead of the clock is refused past a minute (clock skew), since a trade dated
 * ahead would hold a symbol's last price until the clock caught up with it.
 */
export interface TimeWindow {
  readonly now: number;
  readonly maxAgeMs: number;
  readonly maxAheadMs: number;
}

export const LIVE_WINDOW = { maxAgeMs: 7 * 24 * 3600_000, maxAheadMs: 60_000 } as const;

/**
 * Validates one Finnhub trade object (`{s, p, t, v, c}`) from the wire. The value
 * is `unknown` until this returns a Trade; anything else is a counted Rejection.
 */
export function validateFinnhubTrade(raw: unknown, window: TimeWindow): Trade | Rejection {
  if (!isRecord(raw)) return "not-an-object";
  const { s, p, t, v, c } = raw;
  if (!checkSymbol(s)) return "bad-symbol";
  if (typeof p !== "number" || !Number.isFinite(p) || p <= 0) return "bad-price";
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) return "bad-volume";
  if (
    typeof t !== "number" || !Number.isSafeInteger(t) || t < window.now - window.maxAgeMs ||
    t > window.now + window.maxAheadMs
  ) return "bad-time";
  if (!checkConditions(c)) return "bad-conditions";
  return c === undefined ? { symbol: s, price: p, volume: v, time: t } : {
    symbol: s,
    price: p,
    volume: v,
    time: t,
    conditions: c,
  };
}

/** The record value, built by hand: it runs once per trade, and key order is fixed. */
export function encodeTrade(trade: Trade, source: Source): string {
  const conditions = trade.conditions === undefined
    ? ""
    : `,"conditions":${JSON.stringify(trade.conditions)}`;
  return `{"v":${SCHEMA_VERSION},"symbol":${
    JSON.stringify(trade.symbol)
  },"price":${trade.price},"volume":${trade.volume},"time":${trade.time}${conditions},"source":"${source}"}`;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Decodes a record value written by encodeTrade (or by any tool that follows the
 * schema). Returns a Rejection for anything else: the caller counts it and moves on.
 */
export function decodeTrade(value: Uint8Array | string | null): TradeRecord | Rejection {
  if (value === null) return "not-json";
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof value === "string" ? value : decoder.decode(value));
  } catch {
    return "not-json";
  }
  if (!isRecord(parsed)) return "not-an-object";
  const { v, symbol, price, volume, time, conditions, source } = parsed;
  if (v !== SCHEMA_VERSION) return "bad-version";
  if (!checkSymbol(symbol)) return "bad-symbol";
  if (typeof price !== "number" || !Number.isFinite(price) || price <= 0) return "bad-price";
  if (typeof volume !== "number" || !Number.isFinite(volume) || volume < 0) return "bad-volume";
  if (typeof time !== "number" || !Number.isSafeInteger(time) || time <= 0) return "bad-time";
  if (!checkConditions(conditions)) return "bad-conditions";
  if (!SOURCES.includes(source as Source)) return "bad-source";
  const trade = { symbol, price, volume, time, source: source as Source };
  return conditions === undefined ? trade : { ...trade, conditions };
}
