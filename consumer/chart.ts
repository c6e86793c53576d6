/**
 * The terminal view, as pure functions: (data, size, now) -> the frame text, so a
 * test can hold a frame against a snapshot. consumer/terminal.ts owns the terminal
 * (cursor, alternate screen, redraw timer); nothing here touches it.
 *
 * Layout: a header line (consumer state), then per symbol a legend line and a panel
 * of candle closes (or, with `overlay`, one chart of every symbol as % change over
 * the window), then a time axis. Every line fits `size.columns`. The x axis is time:
 * one column per candle interval, the newest at the right, so all panels line up; a
 * symbol that had not traded yet at the left edge starts where its first trade is,
 * and a quiet symbol's line stays flat at its last price. Numbers read as on the
 * web page: both format with lib/format.js.
 */

import {
  axisDecimals,
  formatAge,
  formatClock,
  formatCompact,
  formatInterval,
  formatMs,
  formatPct,
  formatPrice,
  formatRate,
  MISSING,
  priceDecimals,
  sourceMark,
} from "../lib/format.js";
import type { Candle, ConsumerStatus, SymbolStats } from "./candles.ts";
import type { FeedSummary } from "./feed.ts";
import { closesBySlot, GAP_MARK, paint, plotSeries, rowStep, timeAxis } from "./plot.ts";

/** What the chart reads of the aggregation; the Aggregator is one. */
export interface Aggregation {
  symbols(): string[];
  candles(symbol: string, intervalMs: number, fromMs?: number): readonly Candle[];
  stats(symbol: string, now?: number): SymbolStats | undefined;
}

export interface ChartData {
  readonly aggregation: Aggregation;
  readonly status: ConsumerStatus;
  readonly topic: string;
  /** The candle interval the chart plots: one column each. */
  readonly intervalMs: number;
  readonly overlay: boolean;
  /** ANSI colours on or off (off for snapshots and NO_COLOR). */
  readonly color: boolean;
  /** Minutes east of UTC for clock labels (the local zone; 0 in tests). */
  readonly utcOffsetMinutes: number;
  /** Extra header notes, e.g. "partitions 2/3: group shared". */
  readonly notes?: readonly string[];
  /** The producer's feed (consumer/feed.ts): in the header, and gaps on the time axis. */
  readonly feed?: FeedSummary;
  /**
   * The candle intervals the aggregation keeps. A chart interval it does not keep is
   * drawn from the widest kept one that divides it (5 s from 1 s candles, 5 m from 1 m).
   */
  readonly keptIntervalsMs?: readonly number[];
  /**
   * Keys are on (an interactive terminal): the symbols are shown a page at a time, and
   * the last line before the axis is a one-line hint of the keys instead of "+N more".
   */
  readonly paging?: { readonly page: number };
}

/** The intervals the terminal's +/- keys step through. */
export const INTERVAL_CHOICES_MS: readonly number[] = Object.freeze([
  1_000,
  5_000,
  15_000,
  60_000,
  300_000,
  900_000,
]);

/** The chart interval `step` choices after `current` (the ends hold). */
export function stepInterval(current: number, step: number): number {
  const choices = [...new Set([...INTERVAL_CHOICES_MS, current])].sort((a, b) => a - b);
  const index = choices.indexOf(current) + step;
  return choices[Math.max(0, Math.min(choices.length - 1, index))];
}

/** The kept candle interval a chart of `intervalMs` is drawn from. */
function candleSource(intervalMs: number, kept: readonly number[] | undefined): number {
  const fits = (kept ?? []).filter((k) => intervalMs % k === 0);
  return fits.length === 0 ? intervalMs : Math.max(...fits);
}

/** Feed states that are news: shown in bold, never dropped for room. */
const ALARMING = new Set([
  "silent",
  "stopped",
  "reconnecting",
  "refused",
  "pings-only",
  "unknown",
]);

export interface Size {
  readonly columns: number;
  readonly rows: number;
}

const MIN_SIZE: Size = { columns: 40, rows: 6 };

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

/** Symbols come from the topic: control characters must not reach the terminal. */
function printable(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
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
    ? `latency ${MISSING}`
    : `latency p50 ${formatMs(status.latencyP50Ms)} p99 ${formatMs(status.latencyP99Ms)}`;
  const parts: Part[] = [
    { text: `${printable(data.topic)} · ${formatInterval(data.intervalMs)} candles`, drop: 0 },
    status.connected
      ? { text: `${formatRate(status.tradesPerSecond)} t/s`, drop: 1 }
      : { text: "connecting…", drop: 0, code: BOLD_YELLOW },
    { text: `lag ${status.lag === null ? MISSING : formatCompact(status.lag)}`, drop: 2 },
    { text: latency, drop: 3 },
    { text: `${count} symbols`, drop: 6 },
    { text: `applied ${formatCompact(status.applied)}`, drop: 7 },
    { text: `rejected ${formatCompact(status.rejected)}`, drop: 4 },
    { text: `too late ${formatCompact(status.tooLate)}`, drop: 5 },
    ...(status.tooEarly > 0
      ? [{ text: `too early ${formatCompact(status.tooEarly)}`, drop: 4 }]
      : []),
    ...(data.notes ?? []).map((note) => ({ text: note, drop: 2, code: BOLD_YELLOW })),
    ...feedParts(data.feed, now),
    { text: formatClock(now, data.utcOffsetMinutes), drop: 1 },
  ];
  return fitParts(parts, width, data.color, " · ");
}

/** The producer's state in words, and the gaps the axis marks. */
function feedParts(feed: FeedSummary | undefined, now: number): Part[] {
  if (feed === undefined) return [];
  const alarming = ALARMING.has(feed.state);
  const parts: Part[] = [{
    text: printable(feed.words),
    drop: alarming ? 0 : 3,
    code: alarming ? BOLD_YELLOW : DIM,
  }];
  const shown = feed.gaps.filter((gap) => gap.tradesMissing);
  if (shown.length > 0) {
    const last = shown[shown.length - 1];
    parts.push({
      text: `${GAP_MARK} ${shown.length} gap${shown.length > 1 ? "s" : ""}, last ${
        formatAge(now - last.to)
      } ago`,
      drop: 1,
      code: BOLD_YELLOW,
    });
  }
  return parts;
}

function legendLine(entry: Shown, width: number, now: number, color: boolean): string {
  const { stats, code } = entry;
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
    { text: `vwap ${formatPrice(stats.sessionVwap, decimals)}`, drop: 3 },
    { text: `vol ${formatCompact(stats.volume)}`, drop: 5 },
    { text: `${formatRate(stats.tradesPerSecond)} t/s`, drop: 4 },
    { text: `${formatAge(now - stats.lastTime)} ago`, drop: 2, code: DIM },
  ];
  return fitParts(parts, width, color);
}

/** The keys, in one line: which symbols are shown, how to page, how to change the interval. */
function hintLine(data: ChartData, layout: Layout, width: number): string {
  const { first, shown, total } = layout;
  const range = shown.length === 1
    ? `symbol ${first + 1} of ${total}`
    : `symbols ${first + 1}–${first + shown.length} of ${total}`;
  const parts: Part[] = [
    { text: range, drop: 0, code: DIM },
    ...(shown.length < total ? [{ text: "←/→ page", drop: 0, code: DIM }] : []),
    { text: `+/- interval (${formatInterval(data.intervalMs)})`, drop: 1, code: DIM },
    { text: "q quit", drop: 2, code: DIM },
  ];
  return fitParts(parts, width, data.color, " · ");
}

function moreLine(rest: readonly string[], width: number): string {
  const names = rest.map(printable).join(", ");
  const text = `+${rest.length} more: ${names} (a taller terminal or --overlay shows more)`;
  return text.length <= width ? text : text.slice(0, width - 1) + "…";
}

/** One symbol on screen: its stats, colour, axis decimals and close per column. */
interface Shown {
  readonly stats: SymbolStats;
  readonly code: string;
  /** Decimals of its axis labels: its price's, or more when its panel spans a few ticks. */
  readonly decimals: number;
  readonly values: (number | undefined)[];
}

/** Where everything goes in a frame: which symbols fit, the label column, the time window. */
interface Layout {
  readonly shown: Shown[];
  /** Symbols that did not fit (none when paging: the hint line says where they are). */
  readonly more: string[];
  /** The index of the first shown symbol, and how many there are (paging). */
  readonly first: number;
  readonly total: number;
  /** Lines between the header and the time axis. */
  readonly body: number;
  /** Chart lines under each legend (panels view). */
  readonly panelHeight: number;
  readonly labelWidth: number;
  /** Plot columns: one per candle interval. */
  readonly columns: number;
  readonly startMs: number;
  readonly endMs: number;
}

function planLayout(data: ChartData, symbols: string[], size: Size, now: number): Layout {
  const { aggregation, intervalMs } = data;
  const body = size.rows - 2; // less the header and the time axis
  // How many symbols fit (panels of a legend and 2+ chart lines, or overlay legends
  // over a chart of 3+ lines), keeping a line for "+N more" when not all do.
  // With keys on, a page of them and a line for the hint.
  const count = symbols.length;
  const paged = data.paging !== undefined;
  const visible = paged
    ? Math.min(count, Math.max(1, data.overlay ? body - 4 : Math.floor((body - 1) / 3)))
    : data.overlay
    ? (count <= body - 3 ? count : body - 4)
    : (count <= Math.floor(body / 3) ? count : Math.floor((body - 1) / 3));
  const more = paged ? [] : symbols.slice(visible);
  const pages = Math.ceil(count / visible);
  const page = paged ? ((data.paging!.page % pages) + pages) % pages : 0;
  const firstShown = page * visible;
  const panelHeight = Math.floor((body - (more.length > 0 || paged ? 1 : 0)) / visible) - 1;
  // Candles are read for the visible symbols only: a frame's cost does not grow
  // with symbols nobody sees.
  const source = candleSource(intervalMs, data.keptIntervalsMs);
  const all = symbols.slice(firstShown, firstShown + visible).map((symbol, i) => ({
    stats: aggregation.stats(symbol, now)!,
    code: PALETTE[(firstShown + i) % PALETTE.length],
    candles: aggregation.candles(symbol, source),
  }));
  // The window ends now; if nothing traded within it, it ends at the last trade.
  const lastTrade = Math.max(...symbols.map((symbol) => aggregation.stats(symbol, now)!.lastTime));
  const place = (labelWidth: number, decimals: readonly number[]) => {
    const columns = size.columns - labelWidth - 1;
    let endSlot = Math.floor(now / intervalMs);
    if (lastTrade < (endSlot - columns + 1) * intervalMs) {
      endSlot = Math.floor(lastTrade / intervalMs);
    }
    const shown = all.map(({ stats, code, candles }, i) => ({
      stats,
      code,
      decimals: decimals[i],
      values: closesBySlot(candles, intervalMs, endSlot, columns),
    }));
    const startMs = (endSlot - columns + 1) * intervalMs;
    const endMs = endSlot * intervalMs;
    return {
      shown,
      more,
      first: firstShown,
      total: count,
      body,
      panelHeight,
      labelWidth,
      columns,
      startMs,
      endMs,
    };
  };
  const widthFor = (decimals: readonly number[]) =>
    Math.max(...all.map(({ stats, candles }, i) => {
      const top = candles.reduce((max, candle) => Math.max(max, candle.high), stats.last);
      return formatPrice(top, decimals[i]).length + 2;
    }));
  const own = all.map(({ stats }) => priceDecimals(stats.last));
  if (data.overlay) return place(11, own);
  // The labels need more decimals when a panel spans only a few ticks: placed once to
  // see the window's range, and again if the labels grew wider.
  const first = place(widthFor(own), own);
  const decimals = first.shown.map(({ stats, values }) => {
    const known = values.filter((v): v is number => v !== undefined);
    if (known.length === 0) return priceDecimals(stats.last);
    const step = rowStep(Math.min(...known), Math.max(...known), panelHeight);
    return axisDecimals(stats.last, step);
  });
  const width = widthFor(decimals);
  return width === first.labelWidth && decimals.every((d, i) => d === own[i])
    ? first
    : place(width, decimals);
}

/** Every visible symbol as % change on one chart, under their legends. */
function overlayLines(data: ChartData, layout: Layout, width: number, now: number): string[] {
  const { shown, more } = layout;
  const lines = shown.map((entry) => legendLine(entry, width, now, data.color));
  if (more.length > 0) lines.push(moreLine(more, width));
  const plotted = shown.filter((entry) => entry.values.some((v) => v !== undefined));
  if (plotted.length === 0) return lines;
  const series = plotted.map(({ values }) => {
    const base = values.find((v) => v !== undefined)!;
    return values.map((v) => v === undefined ? undefined : (v / base - 1) * 100);
  });
  const flat = series.flat().filter((v): v is number => v !== undefined);
  const lo = Math.min(...flat);
  const hi = Math.max(...flat);
  const decimals = hi - lo < 0.1 ? 3 : 2;
  lines.push(...plotSeries(series, {
    lo,
    hi,
    height: layout.body - shown.length - (more.length > 0 || data.paging !== undefined ? 1 : 0),
    labelWidth: layout.labelWidth,
    label: (v) => formatPct(v, decimals),
    codes: plotted.map((entry) => entry.code),
    color: data.color,
  }));
  return lines;
}

/** A legend and a price panel per visible symbol. */
function panelLines(data: ChartData, layout: Layout, width: number, now: number): string[] {
  const { shown, more, panelHeight: height } = layout;
  const lines: string[] = [];
  for (const entry of shown) {
    lines.push(legendLine(entry, width, now, data.color));
    const known = entry.values.filter((v): v is number => v !== undefined);
    if (known.length === 0) {
      lines.push(...new Array(height).fill(""));
      continue;
    }
    lines.push(...plotSeries([entry.values], {
      lo: Math.min(...known),
      hi: Math.max(...known),
      height,
      labelWidth: layout.labelWidth,
      label: (v) => formatPrice(v, entry.decimals),
      codes: [entry.code],
      color: data.color,
    }));
  }
  if (more.length > 0) lines.push(moreLine(more, width));
  return lines;
}

/** The frame: at most `size.rows` lines joined by "\n", each at most `size.columns` wide. */
export function renderFrame(data: ChartData, size: Size, now: number): string {
  const { columns: width, rows } = size;
  if (width < MIN_SIZE.columns || rows < MIN_SIZE.rows) {
    return `terminal too small: ${MIN_SIZE.columns}x${MIN_SIZE.rows} needed`.slice(0, width);
  }
  const symbols = data.aggregation.symbols();
  const lines = [headerLine(data, symbols.length, width, now)];
  if (symbols.length === 0) {
    lines.push(
      `waiting for trades on ${printable(data.topic)}…`.slice(0, width),
      "(is the producer running? deno task produce)".slice(0, width),
    );
    return lines.join("\n");
  }
  const layout = planLayout(data, symbols, size, now);
  lines.push(
    ...(data.overlay ? overlayLines : panelLines)(data, layout, width, now),
  );
  const hint = data.paging === undefined ? [] : [hintLine(data, layout, width)];
  while (lines.length < rows - 1 - hint.length) lines.push("");
  lines.push(
    ...hint,
    timeAxis({
      ...layout,
      width,
      intervalMs: data.intervalMs,
      utcOffsetMinutes: data.utcOffsetMinutes,
      gaps: data.feed?.gaps.filter((gap) => gap.tradesMissing),
    }),
  );
  return lines.join("\n");
}
