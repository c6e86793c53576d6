/**
 * The terminal view, as pure functions: (data, size, now) -> the frame text, so a
 * test can hold a frame against a snapshot. consumer.ts owns the terminal (cursor,
 * alternate screen, redraw timer); nothing here touches it.
 *
 * Layout: a header line (consumer state), then per symbol a legend line and an
 * asciichart panel of candle closes (or, with `overlay`, one chart of every symbol
 * as % change over the window), then a time axis. Every line fits `size.columns`.
 * The x axis is time: one column per candle interval, the newest at the right, so
 * all panels line up; a symbol that had not traded yet at the left edge starts
 * where its first trade is, and a quiet symbol's line stays flat at its last price.
 */

import asciichartModule from "asciichart";
import type { Candle, ConsumerStatus, SymbolStats } from "./candles.ts";
import { formatAge, formatClock } from "../lib/format_old.ts";

interface PlotConfig {
  min: number;
  max: number;
  height: number;
  offset: number;
  colors?: (string | undefined)[];
  format: (value: number) => string;
}
// asciichart ships no types: this is the one function used, as its source defines it.
const asciichart = asciichartModule as { plot(series: number[][], cfg: PlotConfig): string };

/** What the chart reads; the Aggregator is one. */
export interface ChartSource {
  symbols(): string[];
  candles(symbol: string, intervalMs: number, fromMs?: number): readonly Candle[];
  stats(symbol: string, now?: number): SymbolStats | undefined;
}

export interface ChartData {
  readonly source: ChartSource;
  readonly status: ConsumerStatus;
  readonly topic: string;
  /** The candle interval the chart plots: one column each. */
  readonly intervalMs: number;
  readonly overlay: boolean;
  /** ANSI colours on or off (off for snapshots and NO_COLOR). */
  readonly color: boolean;
  /** Minutes east of UTC for clock labels (the local zone; 0 in tests). */
  readonly utcOffsetMinutes: number;
  /** Extra header notes, e.g. "partitions 2/3 (group shared)". */
  readonly notes?: readonly string[];
}

export interface Size {
  readonly columns: number;
  readonly rows: number;
}

export const MIN_SIZE: Size = { columns: 40, rows: 6 };

const RESET = "\x1b[0m";
const PALETTE = [
  "\x1b[36m", // cyan
  "\x1b[33m", // yellow
  "\x1b[35m", // magenta
  "\x1b[32m", // green
  "\x1b[94m", // light blue
  "\x1b[91m", // light red
  "\x1b[96m", // light cyan
  "\x1b[93m", // light yellow
];
const GREEN = "\x1b[32m";
const RED = "\x1b[31m";
const DIM = "\x1b[2m";
const BOLD_YELLOW = "\x1b[1;33m";

function paint(text: string, code: string, on: boolean): string {
  return on ? code + text + RESET : text;
}

/** Symbols come from the topic: control characters must not reach the terminal. */
export function printable(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

export function formatPrice(price: number, decimals = priceDecimals(price)): string {
  return price.toFixed(decimals);
}

/** Cents for most prices; more for small ones (FX, cheap coins), never past 8. */
export function priceDecimals(price: number): number {
  const abs = Math.abs(price);
  if (abs >= 100) return 2;
  if (abs >= 1) return 4;
  if (abs === 0) return 2;
  return Math.min(8, Math.max(4, 3 - Math.floor(Math.log10(abs))));
}

export function formatVolume(volume: number): string {
  const abs = Math.abs(volume);
  if (abs >= 1e9) return `${(volume / 1e9).toFixed(1)}B`;
  if (abs >= 1e6) return `${(volume / 1e6).toFixed(1)}M`;
  if (abs >= 1e4) return `${(volume / 1e3).toFixed(1)}k`;
  if (abs >= 100 || Number.isInteger(volume)) return volume.toFixed(0);
  return String(Number(volume.toPrecision(4)));
}

export function formatPct(pct: number, decimals = 2): string {
  return `${pct >= 0 ? "+" : ""}${pct.toFixed(decimals)}%`;
}

export function formatInterval(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

/** "SIMULATED" / "REPLAY" for data that is not a live market; "" for live. */
export function sourceMark(source: SymbolStats["source"]): string {
  return source === "sim" ? "SIMULATED" : source === "replay" ? "REPLAY" : "";
}

interface Part {
  readonly text: string;
  /** Higher numbers are dropped first when the line is too wide. */
  readonly drop: number;
  readonly code?: string;
}

/** Joins parts with `gap`, dropping the least important until the line fits `width`. */
function fitParts(parts: Part[], width: number, color: boolean, gap = "  "): string {
  let kept = parts;
  const plainWidth = (list: Part[]) =>
    list.reduce((sum, part) => sum + part.text.length, 0) + gap.length * (list.length - 1);
  while (plainWidth(kept) > width && kept.some((part) => part.drop > 0)) {
    const worst = Math.max(...kept.map((part) => part.drop));
    const index = kept.findLastIndex((part) => part.drop === worst);
    kept = kept.filter((_, i) => i !== index);
  }
  let room = width;
  const out: string[] = [];
  for (const part of kept) {
    const separator = out.length > 0 ? gap : "";
    if (room < separator.length + 1) break;
    const text = part.text.slice(0, room - separator.length);
    room -= separator.length + text.length;
    out.push(separator + (part.code ? paint(text, part.code, color) : text));
  }
  return out.join("");
}

function headerLine(data: ChartData, count: number, width: number, now: number): string {
  const { status } = data;
  const latency = status.latencyP50Ms === null
    ? "latency -"
    : `latency p50 ${status.latencyP50Ms}ms p99 ${status.latencyP99Ms}ms`;
  const parts: Part[] = [
    { text: `${printable(data.topic)} · ${formatInterval(data.intervalMs)} candles`, drop: 0 },
    status.connected
      ? { text: `${status.tradesPerSecond.toFixed(1)} t/s`, drop: 1 }
      : { text: "connecting…", drop: 0, code: BOLD_YELLOW },
    { text: `lag ${status.lag ?? "-"}`, drop: 2 },
    { text: latency, drop: 3 },
    { text: `${count} symbols`, drop: 6 },
    { text: `applied ${status.applied}`, drop: 7 },
    { text: `rejected ${status.rejected}`, drop: 4 },
    { text: `too late ${status.tooLate}`, drop: 5 },
    ...(status.tooEarly > 0 ? [{ text: `too early ${status.tooEarly}`, drop: 4 }] : []),
    ...(data.notes ?? []).map((note) => ({ text: note, drop: 2, code: BOLD_YELLOW })),
    { text: formatClock(now, data.utcOffsetMinutes), drop: 1 },
  ];
  return fitParts(parts, width, data.color, " · ");
}

function legendLine(
  stats: SymbolStats,
  code: string,
  width: number,
  now: number,
  color: boolean,
): string {
  const decimals = priceDecimals(stats.last);
  const mark = sourceMark(stats.source);
  const parts: Part[] = [
    { text: `■ ${printable(stats.symbol)}`, drop: 0, code },
    ...(mark ? [{ text: mark, drop: 0, code: BOLD_YELLOW }] : []),
    { text: formatPrice(stats.last, decimals), drop: 0 },
    {
      text: formatPct(stats.changePct),
      drop: 1,
      code: stats.change > 0 ? GREEN : stats.change < 0 ? RED : undefined,
    },
    {
      text: `vwap ${stats.sessionVwap === null ? "-" : formatPrice(stats.sessionVwap, decimals)}`,
      drop: 3,
    },
    { text: `vol ${formatVolume(stats.volume)}`, drop: 5 },
    { text: `${stats.tradesPerSecond.toFixed(1)} t/s`, drop: 4 },
    { text: `${formatAge(now - stats.lastTime)} ago`, drop: 2, code: DIM },
  ];
  return fitParts(parts, width, color);
}

/**
 * Candle closes at each of `columns` slots ending at `endSlot`, carrying the last
 * close across slots without trades (and in from before the window). Slots before
 * the symbol's first trade are undefined.
 */
export function closesBySlot(
  candles: readonly Candle[],
  intervalMs: number,
  endSlot: number,
  columns: number,
): (number | undefined)[] {
  const out: (number | undefined)[] = new Array(columns).fill(undefined);
  const firstStart = (endSlot - columns + 1) * intervalMs;
  let carry: number | undefined;
  let i = 0;
  while (i < candles.length && candles[i].start < firstStart) carry = candles[i++].close;
  for (let column = 0; column < columns; column++) {
    const start = firstStart + column * intervalMs;
    while (i < candles.length && candles[i].start <= start) carry = candles[i++].close;
    out[column] = carry;
  }
  return out;
}

/**
 * Plots series that all have `columns` values (undefined only at the start) into
 * `height` lines of exactly `labelWidth + 1 + columns` columns: the label, the axis
 * (which holds the first column), then one cell per column.
 */
function plot(
  series: (number | undefined)[][],
  lo: number,
  hi: number,
  height: number,
  labelWidth: number,
  label: (value: number) => string,
  codes: string[],
  color: boolean,
): string[] {
  if (hi - lo < 1e-12 * Math.max(1, Math.abs(hi))) {
    const pad = Math.max(Math.abs(hi) * 1e-4, 1e-8);
    lo -= pad;
    hi += pad;
  }
  const steps = Math.max(1, height - 1);
  // Pre-scaled to row units 1..height, so asciichart's rounding always yields
  // exactly `height` rows (and never draws its y = 0 origin mark).
  const scale = (value: number) =>
    1 + Math.min(steps, Math.max(0, (value - lo) / (hi - lo) * steps));
  const gap = Math.min(...series.map((values) => values.findIndex((v) => v !== undefined)));
  const scaled = series.map((values) => {
    const first = values.findIndex((v) => v !== undefined);
    const filled = values.slice(gap).map((v) => scale(v ?? values[first]!));
    return [filled[0], ...filled]; // the axis cell holds the first value
  });
  const lines = asciichart.plot(scaled, {
    min: 1,
    max: 1 + steps,
    height: steps,
    offset: 2,
    colors: series.length > 1 && color ? codes : undefined,
    format: (value) =>
      `${label(lo + (value - 1) / steps * (hi - lo))} `.padStart(labelWidth).slice(-labelWidth),
  }).split("\n");
  return lines.map((line) => {
    const head = line.slice(0, labelWidth);
    let axis = line.slice(labelWidth, labelWidth + 1);
    let body = line.slice(labelWidth + 1).replace(/ $/, ""); // asciichart's spare last cell
    if (series.length > 1 && color && axis === "\x1b") {
      // a coloured first-value mark on the axis: keep its escape codes whole
      const end = line.indexOf(RESET, labelWidth) + RESET.length;
      axis = line.slice(labelWidth, end);
      body = line.slice(end).replace(/ $/, "");
    }
    if (gap > 0 && axis === "┼") axis = "┤";
    const padded = " ".repeat(gap) + body;
    const painted = series.length === 1 && color && body.trim() !== ""
      ? paint(padded, codes[0], true)
      : padded;
    return head + axis + painted;
  });
}

function timeAxis(
  startMs: number,
  endMs: number,
  labelWidth: number,
  columns: number,
  width: number,
  data: ChartData,
): string {
  const seconds = data.intervalMs % 60_000 !== 0;
  const left = formatClock(startMs, data.utcOffsetMinutes, seconds);
  const right = formatClock(endMs, data.utcOffsetMinutes, seconds);
  const span = labelWidth + 1 + columns;
  if (span > width || columns < left.length + right.length + 2) return "";
  const middle = formatClock((startMs + endMs) / 2, data.utcOffsetMinutes, seconds);
  const line = (" ".repeat(labelWidth) + "└" + left).padEnd(span - right.length) + right;
  const center = labelWidth + 1 + Math.floor(columns / 2 - middle.length / 2);
  if (center > labelWidth + left.length + 3 && center + middle.length < span - right.length - 2) {
    return line.slice(0, center) + middle + line.slice(center + middle.length);
  }
  return line;
}

interface Shown {
  stats: SymbolStats;
  values: (number | undefined)[];
  code: string;
}

/** The frame: at most `size.rows` lines joined by "\n", each at most `size.columns` wide. */
export function renderFrame(data: ChartData, size: Size, now: number): string {
  const { columns: width, rows } = size;
  if (width < MIN_SIZE.columns || rows < MIN_SIZE.rows) {
    return `terminal too small: ${MIN_SIZE.columns}x${MIN_SIZE.rows} needed`.slice(0, width);
  }
  const symbols = data.source.symbols();
  const lines = [headerLine(data, symbols.length, width, now)];
  if (symbols.length === 0) {
    lines.push(
      `waiting for trades on ${printable(data.topic)}…`.slice(0, width),
      "(is the producer running? deno task produce)".slice(0, width),
    );
    return lines.join("\n");
  }
  const { intervalMs } = data;
  const body = rows - 2; // less the header and the time axis
  // How many symbols fit (panels of a legend and 2+ chart lines, or overlay legends
  // over a chart of 3+ lines), keeping a line for "+N more" when not all do.
  const count = symbols.length;
  const visible = data.overlay
    ? (count <= body - 3 ? count : body - 4)
    : (count <= Math.floor(body / 3) ? count : Math.floor((body - 1) / 3));
  const more = symbols.slice(visible);
  // Candles are read for the visible symbols only: a frame's cost does not grow
  // with symbols nobody sees.
  const all = symbols.slice(0, visible).map((symbol, i) => ({
    stats: data.source.stats(symbol, now)!,
    code: PALETTE[i % PALETTE.length],
    candles: data.source.candles(symbol, intervalMs),
  }));
  // The window ends now; if nothing traded within it, it ends at the last trade.
  const lastTrade = Math.max(...symbols.map((symbol) => data.source.stats(symbol, now)!.lastTime));
  const labelWidth = data.overlay ? 11 : Math.max(
    ...all.map(({ stats, candles }) => {
      const top = candles.reduce((max, candle) => Math.max(max, candle.high), stats.last);
      return formatPrice(top, priceDecimals(stats.last)).length + 2;
    }),
  );
  const columns = width - labelWidth - 1;
  let endSlot = Math.floor(now / intervalMs);
  if (lastTrade < (endSlot - columns + 1) * intervalMs) {
    endSlot = Math.floor(lastTrade / intervalMs);
  }
  const startMs = (endSlot - columns + 1) * intervalMs;
  const shown: Shown[] = all.map(({ stats, code, candles }) => ({
    stats,
    code,
    values: closesBySlot(candles, intervalMs, endSlot, columns),
  }));
  for (const entry of data.overlay ? shown : []) {
    lines.push(legendLine(entry.stats, entry.code, width, now, data.color));
  }
  if (data.overlay && more.length > 0) lines.push(moreLine(more, width));
  if (data.overlay) {
    const chartRows = body - visible - (more.length > 0 ? 1 : 0);
    const plotted = shown.filter((entry) => entry.values.some((v) => v !== undefined));
    if (plotted.length > 0) {
      const series = plotted.map(({ values }) => {
        const base = values.find((v) => v !== undefined)!;
        return values.map((v) => v === undefined ? undefined : (v / base - 1) * 100);
      });
      const flat = series.flat().filter((v): v is number => v !== undefined);
      const lo = Math.min(...flat);
      const hi = Math.max(...flat);
      const decimals = hi - lo < 0.1 ? 3 : 2;
      lines.push(
        ...plot(
          series,
          lo,
          hi,
          chartRows,
          labelWidth,
          (v) => formatPct(v, decimals),
          plotted.map((entry) => entry.code),
          data.color,
        ),
      );
    }
  } else {
    const height = Math.floor((body - (more.length > 0 ? 1 : 0)) / visible) - 1;
    for (const entry of shown) {
      lines.push(legendLine(entry.stats, entry.code, width, now, data.color));
      const known = entry.values.filter((v): v is number => v !== undefined);
      if (known.length === 0) {
        lines.push(...new Array(height).fill(""));
        continue;
      }
      const decimals = priceDecimals(entry.stats.last);
      lines.push(
        ...plot(
          [entry.values],
          Math.min(...known),
          Math.max(...known),
          height,
          labelWidth,
          (v) => formatPrice(v, decimals),
          [entry.code],
          data.color,
        ),
      );
    }
    if (more.length > 0) lines.push(moreLine(more, width));
  }
  while (lines.length < rows - 1) lines.push("");
  lines.push(timeAxis(startMs, endSlot * intervalMs, labelWidth, columns, width, data));
  return lines.join("\n");
}

function moreLine(rest: readonly string[], width: number): string {
  const names = rest.map(printable).join(", ");
  const text = `+${rest.length} more: ${names} (a taller terminal or --overlay shows more)`;
  return text.length <= width ? text : text.slice(0, width - 1) + "…";
}

/** The non-terminal view: one key=value line per symbol and one for the consumer. */
export function plainLines(data: ChartData, now: number): string[] {
  const stamp = new Date(now).toISOString();
  const { status } = data;
  const lines = [
    `${stamp} consumer topic=${data.topic} connected=${status.connected} lag=${status.lag ?? "-"}` +
    ` p50_ms=${status.latencyP50Ms ?? "-"} p99_ms=${status.latencyP99Ms ?? "-"}` +
    ` tps=${status.tradesPerSecond.toFixed(1)} applied=${status.applied}` +
    ` rejected=${status.rejected} too_late=${status.tooLate} too_early=${status.tooEarly}` +
    (data.notes ?? []).map((note) => ` note="${note}"`).join(""),
  ];
  for (const symbol of data.source.symbols()) {
    const stats = data.source.stats(symbol, now)!;
    const decimals = priceDecimals(stats.last);
    const mark = sourceMark(stats.source);
    lines.push(
      `${stamp} symbol=${JSON.stringify(symbol)} last=${formatPrice(stats.last, decimals)}` +
        ` change_pct=${stats.changePct.toFixed(3)}` +
        ` vwap=${stats.sessionVwap === null ? "-" : formatPrice(stats.sessionVwap, decimals)}` +
        ` volume=${Number(stats.volume.toFixed(8))} trades=${stats.trades}` +
        ` tps=${stats.tradesPerSecond.toFixed(1)}` +
        ` age_s=${((now - stats.lastTime) / 1000).toFixed(1)} source=${stats.source}` +
        (mark ? ` ${mark}` : ""),
    );
  }
  return lines;
}
