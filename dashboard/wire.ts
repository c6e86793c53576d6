/**
 * What the page receives, whichever route carries it: a candle as one row, in the
 * one order both `/events` and `/api/candles` use (and a CSV export will), and JSON
 * that no value can turn into markup.
 */

import type { Candle } from "../consumer/candles.ts";

/** The order of a candle row's fields; `/api/candles` sends it along as `fields`. */
export const CANDLE_FIELDS = [
  "time",
  "open",
  "high",
  "low",
  "close",
  "volume",
  "vwap",
  "trades",
] as const;

/** A candle on the wire: `time` is the candle's start (ms); `vwap` is null without volume. */
export type CandleRow = [
  time: number,
  open: number,
  high: number,
  low: number,
  close: number,
  volume: number,
  vwap: number | null,
  trades: number,
];

/** The one place a candle becomes a row. */
export function candleRow(candle: Candle): CandleRow {
  const { start, open, high, low, close, volume, vwap, trades } = candle;
  return [start, open, high, low, close, volume, vwap, trades];
}

/**
 * Candles as a JSON array of rows. Numbers only, so plain JSON.stringify is already
 * safe for a page (a non-finite number becomes null, as in any JSON).
 */
export function candleRowsJson(candles: readonly Candle[]): string {
  return JSON.stringify(candles.map(candleRow));
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
