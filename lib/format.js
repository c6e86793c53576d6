// @ts-check
/**
 * How numbers, ages and times read, on every screen: the terminal charts, the
 * producer's status line, the benchmark table and the web page all format with
 * these, so a price, a volume or an age never reads one way in one place and
 * another way elsewhere. A plain ES module: Deno imports it, and the dashboard
 * serves it to the browser as it is (`/format.js`). Time zones: lib/calendar.js.
 */

import { zoneOffsetMinutes } from "./calendar.js";

/** What a view shows for a value it does not have. */
export const MISSING = "—";

const countFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/**
 * A whole number with thousands separators: 1234567.8 -> "1,234,568".
 * @param {number} value
 * @returns {string}
 */
export function formatCount(value) {
  return countFormat.format(value);
}

/**
 * A quantity in little room (volumes, counts): 1234 -> "1,234", 56789 -> "56.8k",
 * 1.2e6 -> "1.2M"; small fractions keep four significant digits (0.01234).
 * @param {number | null | undefined} value
 * @returns {string}
 */
export function formatCompact(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return MISSING;
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${(value / 1e9).toFixed(1)}B`;
  if (abs >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (abs >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  if (abs >= 100 || Number.isInteger(value)) return formatCount(value);
  return String(Number(value.toPrecision(4)));
}

/**
 * Decimals that suit a price: cents from 10 up (stocks, BTC), four from 1 (FX),
 * and more for small prices (cheap coins), never past 8.
 * @param {number} price
 * @returns {number}
 */
export function priceDecimals(price) {
  const abs = Math.abs(price);
  if (abs >= 10 || abs === 0 || !Number.isFinite(abs)) return 2;
  if (abs >= 1) return 4;
  return Math.min(8, Math.max(4, 3 - Math.floor(Math.log10(abs))));
}

/**
 * Decimals for the labels of a price axis whose ticks are `step` apart: the
 * price's own, or more when the ticks are closer than that (a quiet symbol over a
 * range of a few ticks), so no two labels read the same. Never past 8.
 * @param {number} price
 * @param {number} step
 * @returns {number}
 */
export function axisDecimals(price, step) {
  const own = priceDecimals(price);
  if (!(step > 0) || !Number.isFinite(step)) return own;
  return Math.min(8, Math.max(own, Math.ceil(-Math.log10(step))));
}

/** @type {Map<number, Intl.NumberFormat>} */
const priceFormats = new Map();

/**
 * A price with a fixed number of decimals, grouped: 67412.5 -> "67,412.50".
 * @param {number | null | undefined} price
 * @param {number} [decimals] default: priceDecimals(price)
 * @returns {string}
 */
export function formatPrice(price, decimals) {
  if (price === null || price === undefined || !Number.isFinite(price)) return MISSING;
  const places = decimals ?? priceDecimals(price);
  let format = priceFormats.get(places);
  if (format === undefined) {
    format = new Intl.NumberFormat("en-US", {
      minimumFractionDigits: places,
      maximumFractionDigits: places,
    });
    priceFormats.set(places, format);
  }
  return format.format(price);
}

/**
 * A change with its sign: "+1.25", "-0.0300", "0.00".
 * @param {number} value
 * @param {number} [decimals] default: priceDecimals(value)
 * @returns {string}
 */
export function formatSigned(value, decimals) {
  if (!Number.isFinite(value)) return MISSING;
  const text = formatPrice(Math.abs(value), decimals ?? priceDecimals(value));
  return `${value > 0 ? "+" : value < 0 ? "-" : ""}${text}`;
}

/**
 * A percentage with its sign: "+1.23%", "-0.40%".
 * @param {number} pct
 * @param {number} [decimals]
 * @returns {string}
 */
export function formatPct(pct, decimals = 2) {
  return `${formatSigned(pct, decimals)}%`;
}

/**
 * How long ago, in the largest unit that keeps it readable: tenths of a second
 * below 10 s, whole seconds below 2 minutes, minutes below 2 hours, hours below
 * 2 days, then days. Always rounded down: an age never reads older than it is.
 * @param {number} ms
 * @returns {string}
 */
export function formatAge(ms) {
  if (!(ms > 0)) ms = 0;
  if (ms < 10_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)}s`;
  if (ms < 120_000) return `${Math.floor(ms / 1_000)}s`;
  if (ms < 7_200_000) return `${Math.floor(ms / 60_000)}m`;
  if (ms < 172_800_000) return `${Math.floor(ms / 3_600_000)}h`;
  return `${Math.floor(ms / 86_400_000)}d`;
}

/**
 * A candle interval or a window: "1s", "5m", "1h", "1500ms".
 * @param {number} ms
 * @returns {string}
 */
export function formatInterval(ms) {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

/**
 * HH:MM:SS (HH:MM without seconds) at a UTC offset in minutes, or in a named time
 * zone; by default the zone of the machine (or browser) at that time.
 * @param {number} ms
 * @param {number | string} [zone] minutes east of UTC, or an IANA zone name
 * @param {boolean} [withSeconds]
 * @returns {string}
 */
export function formatClock(
  ms,
  zone = -new Date(ms).getTimezoneOffset(),
  withSeconds = true,
) {
  const offset = typeof zone === "string" ? zoneOffsetMinutes(ms, zone) : zone;
  const iso = new Date(ms + offset * 60_000).toISOString();
  return iso.slice(11, withSeconds ? 19 : 16);
}

/**
 * Trades per second: one decimal below 100, then compact.
 * @param {number} rate
 * @returns {string}
 */
export function formatRate(rate) {
  return rate < 100 ? rate.toFixed(1) : formatCompact(Math.round(rate));
}

/**
 * A latency: "4 ms", "120 ms", "1.5 s".
 * @param {number | null | undefined} ms
 * @returns {string}
 */
export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return MISSING;
  return ms < 1_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * "SIMULATED" or "REPLAY" for prices that are not a live market; "" for live.
 * @param {string} source finnhub | sim | replay
 * @returns {string}
 */
export function sourceMark(source) {
  return source === "sim" ? "SIMULATED" : source === "replay" ? "REPLAY" : "";
}

/** The header line of a candle CSV, the server's export and the page's alike. */
export const CANDLE_CSV_HEADER = "time,open,high,low,close,volume,vwap,trades";

/**
 * Candle rows (time, open, high, low, close, volume, vwap, trades; dashboard/wire.ts)
 * as CSV: the header, then one line per candle, `time` as ISO 8601 UTC with
 * milliseconds (the candle's start), numbers as JavaScript writes them (the
 * shortest form that reads back the same), an empty cell for a missing VWAP.
 * Numbers only: no cell can start a spreadsheet formula, and nothing needs quoting.
 * @param {ReadonlyArray<ReadonlyArray<number | null>>} rows
 * @returns {string}
 */
export function formatCandleCsv(rows) {
  const lines = [CANDLE_CSV_HEADER];
  for (const row of rows) {
    const cells = row.map((value, i) => {
      if (value === null || !Number.isFinite(value)) return "";
      return i === 0 ? new Date(value).toISOString() : String(value);
    });
    lines.push(cells.join(","));
  }
  return `${lines.join("\r\n")}\r\n`;
}

/**
 * The file name of a candle CSV, the server's download and the page's alike: the
 * symbol (anything but letters, digits, `.`, `_` and `-` as `_`), the interval and
 * the first candle's start: "AAPL_1s_2026-01-05T14-30-00-000Z.csv", "…_none.csv"
 * without candles.
 * @param {{ symbol: string, intervalMs: number, first: number | null | undefined }} file
 * @returns {string}
 */
export function candleCsvName({ symbol, intervalMs, first }) {
  const start = first === null || first === undefined || !Number.isFinite(first)
    ? "none"
    : new Date(first).toISOString().replace(/[:.]/g, "-");
  return `${symbol.replace(/[^A-Za-z0-9._-]/g, "_")}_${formatInterval(intervalMs)}_${start}.csv`;
}
