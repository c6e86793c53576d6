/**
 * Plotting for the terminal view: candle closes laid out one column per interval,
 * drawn with asciichart into lines of an exact width, and the time axis under them.
 */

// @ts-types="@types/asciichart"
import * as asciichart from "asciichart";
import { formatClock } from "../lib/format.js";
import type { Candle } from "./candles.ts";

const RESET = "\x1b[0m";

export interface PlotOptions {
  /** The value range the rows span (widened a little when it is flat). */
  readonly lo: number;
  readonly hi: number;
  /** Rows. */
  readonly height: number;
  /** Columns for the value labels on the left. */
  readonly labelWidth: number;
  readonly label: (value: number) => string;
  /** ANSI colour per series. */
  readonly codes: readonly string[];
  readonly color: boolean;
}

export interface AxisOptions {
  readonly startMs: number;
  readonly endMs: number;
  readonly intervalMs: number;
  readonly labelWidth: number;
  readonly columns: number;
  /** The terminal's width: an axis that would not fit is left out. */
  readonly width: number;
  readonly utcOffsetMinutes: number;
  /** Feed gaps (trade-time spans): their columns are marked GAP_MARK on the axis. */
  readonly gaps?: readonly { readonly tradeFrom: number; readonly tradeTo: number }[];
}

/** Marks the axis columns of a feed gap: the chart's flat line there is not a quiet market. */
export const GAP_MARK = "×";

/** The value range a plot spans: `lo`..`hi`, widened a little around a flat line. */
export function plotRange(lo: number, hi: number): [number, number] {
  if (hi - lo >= 1e-12 * Math.max(1, Math.abs(hi))) return [lo, hi];
  const pad = Math.max(Math.abs(hi) * 1e-4, 1e-8);
  return [lo - pad, hi + pad];
}

/** The value between two rows of a plot of `height` rows over `lo`..`hi`. */
export function rowStep(lo: number, hi: number, height: number): number {
  const [low, high] = plotRange(lo, hi);
  return (high - low) / Math.max(1, height - 1);
}

/** `text` in colour `code` when colour is on. */
export function paint(text: string, code: string, on: boolean): string {
  return on ? code + text + RESET : text;
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
    // Every candle that starts inside the column: the close of the last one. Candles
    // finer than the column (5 s columns from 1 s candles) merge into it.
    while (i < candles.length && candles[i].start < start + intervalMs) carry = candles[i++].close;
    out[column] = carry;
  }
  return out;
}

/**
 * Plots series that all have `columns` values (undefined only at the start) into
 * `height` lines of exactly `labelWidth + 1 + columns` columns: the label, the axis
 * (which holds the first column), then one cell per column.
 */
export function plotSeries(series: (number | undefined)[][], options: PlotOptions): string[] {
  const { height, labelWidth, label, codes, color } = options;
  const [lo, hi] = plotRange(options.lo, options.hi);
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
    colors: series.length > 1 && color ? [...codes] : undefined,
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

/** The time axis under the plots: the window's start, middle and end as clock times. */
export function timeAxis(axis: AxisOptions): string {
  const { startMs, endMs, labelWidth, columns, width, utcOffsetMinutes } = axis;
  const seconds = axis.intervalMs % 60_000 !== 0;
  const left = formatClock(startMs, utcOffsetMinutes, seconds);
  const right = formatClock(endMs, utcOffsetMinutes, seconds);
  const span = labelWidth + 1 + columns;
  if (span > width || columns < left.length + right.length + 2) return "";
  const middle = formatClock((startMs + endMs) / 2, utcOffsetMinutes, seconds);
  const line = (" ".repeat(labelWidth) + "└" + left).padEnd(span - right.length) + right;
  const center = labelWidth + 1 + Math.floor(columns / 2 - middle.length / 2);
  const labelled =
    center > labelWidth + left.length + 3 && center + middle.length < span - right.length - 2
      ? line.slice(0, center) + middle + line.slice(center + middle.length)
      : line;
  return markGaps(labelled, axis);
}

/**
 * GAP_MARK in the blank axis cells under each gap, or over its first cell when
 * labels cover all of them: a gap is never hidden, however short.
 */
function markGaps(line: string, axis: AxisOptions): string {
  const cells = [...line];
  const first = axis.labelWidth + 1; // the column of startMs
  const slotOf = (ms: number) => first + Math.floor((ms - axis.startMs) / axis.intervalMs);
  for (const gap of axis.gaps ?? []) {
    const from = Math.max(first, slotOf(gap.tradeFrom));
    const to = Math.min(first + axis.columns - 1, slotOf(gap.tradeTo));
    if (from > to) continue;
    let marked = false;
    for (let i = from; i <= to; i++) {
      if (cells[i] === " ") cells[i] = GAP_MARK;
      marked ||= cells[i] === GAP_MARK;
    }
    if (!marked) cells[from] = GAP_MARK;
  }
  return cells.join("");
}
