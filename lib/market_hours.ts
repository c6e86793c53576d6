/**
 * Market hours, from the clock alone, and never claiming more than the clock knows.
 *
 * - US stocks (a plain ticker such as AAPL or BRK.B): regular hours, 09:30–16:00
 *   America/New_York, Monday to Friday. Exchange holidays and early closes are not
 *   known offline: on a holiday this says "regular hours" and the views say "no
 *   trades during trading hours: a holiday, a halt, …" instead of guessing.
 *   Pre- and post-market trades do arrive outside these hours.
 * - Crypto (BINANCE:, COINBASE:, … prefixes): around the clock.
 * - Forex (OANDA:, FXCM:, …): its week, Sunday 17:00 to Friday 17:00 New York time.
 * - Anything else: hours unknown, and said so.
 * New York's calendar and the session's minutes are lib/calendar.js's (the page's
 * session marks use the same), so both daylight-saving changes are honoured.
 */

import {
  addDays,
  type CalendarDate,
  NEW_YORK,
  US_CLOSE,
  US_OPEN,
  type WallTime,
  wallTime,
  weekdayOf,
  zoneInstant,
} from "./calendar.js";

export type Market = "us-stock" | "crypto" | "forex" | "unknown";

const CRYPTO_VENUES = new Set([
  "BINANCE",
  "BINANCEUS",
  "BITFINEX",
  "BITMEX",
  "BITSTAMP",
  "BYBIT",
  "COINBASE",
  "GEMINI",
  "HITBTC",
  "HUOBI",
  "KRAKEN",
  "KUCOIN",
  "OKEX",
  "OKX",
  "POLONIEX",
]);
const FOREX_VENUES = new Set([
  "FHFX",
  "FOREX.COM",
  "FXCM",
  "FXPRO",
  "IC MARKETS",
  "OANDA",
  "OCTAFX",
  "PEPPERSTONE",
]);

/** Which market a Finnhub symbol trades on, by its venue prefix. */
export function marketOf(symbol: string): Market {
  const colon = symbol.indexOf(":");
  if (colon < 0) return /^[A-Z][A-Z0-9.\-]{0,9}$/.test(symbol) ? "us-stock" : "unknown";
  const venue = symbol.slice(0, colon).toUpperCase();
  if (CRYPTO_VENUES.has(venue)) return "crypto";
  if (FOREX_VENUES.has(venue)) return "forex";
  return "unknown";
}

const FX_TURN = 17 * 60;
const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/** New York's calendar and clock at `ms`. */
const newYork = (ms: number): WallTime => wallTime(ms, NEW_YORK);

/** The instant (ms) of New York wall time `minutes` after midnight on `date`. */
const newYorkInstant = (date: CalendarDate, minutes: number): number =>
  zoneInstant(date, minutes, NEW_YORK);

export interface Session {
  readonly open: boolean;
  /** When it next opens (closed) or closes (open), ms; undefined around the clock. */
  readonly next?: number;
}

/** US regular hours at `now`. */
export function usSession(now: number): Session {
  const local = newYork(now);
  const weekday = local.weekday >= 1 && local.weekday <= 5;
  if (weekday && local.minutes >= US_OPEN && local.minutes < US_CLOSE) {
    return { open: true, next: newYorkInstant(local, US_CLOSE) };
  }
  for (let days = 0; days <= 7; days++) {
    const date = addDays(local, days);
    const day = weekdayOf(date);
    if (day === 0 || day === 6) continue;
    if (days === 0 && local.minutes >= US_OPEN) continue;
    return { open: false, next: newYorkInstant(date, US_OPEN) };
  }
  throw new Error("unreachable: a weekday within a week");
}

/** The forex week at `now`: Sunday 17:00 to Friday 17:00 New York time. */
export function forexSession(now: number): Session {
  const local = newYork(now);
  const { weekday, minutes } = local;
  const open = (weekday >= 1 && weekday <= 4) || (weekday === 0 && minutes >= FX_TURN) ||
    (weekday === 5 && minutes < FX_TURN);
  const target = open ? 5 : 0; // closes on Friday, opens on Sunday
  let days = (target - weekday + 7) % 7;
  if (days === 0 && minutes >= FX_TURN) days = 7;
  const date = addDays(local, days);
  return { open, next: newYorkInstant(date, FX_TURN) };
}

/** The session of a market at `now`; undefined when its hours are unknown. */
export function sessionOf(market: Market, now: number): Session | undefined {
  switch (market) {
    case "us-stock":
      return usSession(now);
    case "forex":
      return forexSession(now);
    case "crypto":
      return { open: true };
    case "unknown":
      return undefined;
  }
}

/** "Mon 09:30 ET": a New York wall time, as traders name the open. */
export function formatNewYork(ms: number): string {
  const local = newYork(ms);
  const hh = String(Math.floor(local.minutes / 60)).padStart(2, "0");
  const mm = String(local.minutes % 60).padStart(2, "0");
  return `${WEEKDAYS[local.weekday]} ${hh}:${mm} ET`;
}

export const US_HOURS = "regular US trading hours (09:30–16:00 America/New_York, Mon–Fri)";

/**
 * Why symbols of `market` may have no trades at `now`, in words; undefined when
 * their market is open (or around the clock), so silence there is news.
 */
export function closedReason(market: Market, now: number): string | undefined {
  const session = sessionOf(market, now);
  if (session === undefined) return undefined;
  if (session.open) return undefined;
  const opens = session.next === undefined ? "" : `, opens ${formatNewYork(session.next)}`;
  return market === "us-stock"
    ? `US market closed (regular hours)${opens}`
    : `forex closed for the weekend${opens}`;
}

/** Why a connected feed carries no trades, as far as the clock can tell. */
export function quietReason(symbols: readonly string[], now: number): string {
  const markets = new Set<Market>(symbols.map(marketOf));
  const closed = [...markets].map((market) => closedReason(market, now))
    .filter((reason) => reason !== undefined);
  if (closed.length > 0 && closed.length === markets.size) return closed.join("; ");
  if (markets.has("crypto")) {
    return "no trades, though crypto trades around the clock: check the symbols";
  }
  return "no trades during trading hours: a holiday, a halt, or a symbol spelled differently?";
}
