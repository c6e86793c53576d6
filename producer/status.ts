/**
 * What the producer tells its operator: a status line every few seconds (redrawn in
 * place on a terminal, plain lines for a log collector), log lines that never
 * garble it, a final summary, and a limiter so a flood of one kind of problem
 * reads as one line per interval, with its count.
 */

import { formatAge, formatClock, formatCount } from "../lib/format.js";
import type { Source } from "../lib/trade.ts";

/** Allows one event per key per interval; counts what it held back. */
export function createLimiter(intervalMs: number) {
  const shownAt = new Map<string, number>();
  return (key: string, now = Date.now()): boolean => {
    const last = shownAt.get(key);
    if (last !== undefined && now - last < intervalMs) return false;
    if (shownAt.size > 1000) shownAt.clear();
    shownAt.set(key, now);
    return true;
  };
}

export interface Counters {
  /** Valid trades taken from the source. */
  received: number;
  /** Trades Kafka acknowledged. */
  acked: number;
  /** Trades waiting in the queue (or in flight). */
  queued: number;
  /** Trades dropped because the queue was full. */
  dropped: number;
  /** Trades sent again after a failed send, which may have written part of them. */
  possiblyDuplicated: number;
  /** Refused frames and trades, by kind. */
  readonly rejected: Map<string, number>;
  reconnects: number;
}

export function createCounters(): Counters {
  return {
    received: 0,
    acked: 0,
    queued: 0,
    dropped: 0,
    possiblyDuplicated: 0,
    rejected: new Map(),
    reconnects: 0,
  };
}

function formatRejected(rejected: ReadonlyMap<string, number>): string {
  let total = 0;
  for (const count of rejected.values()) total += count;
  if (total === 0) return "0";
  const kinds = [...rejected].sort((a, b) => b[1] - a[1])
    .map(([kind, count]) => `${kind} ${formatCount(count)}`);
  return `${formatCount(total)} (${kinds.join(", ")})`;
}

export interface StatusInput {
  readonly source: Source;
  readonly now: number;
  readonly counters: Counters;
  /** Counters at the previous status line, for the per-second rates. */
  readonly previous: { readonly received: number; readonly acked: number; readonly at: number };
  readonly symbols: readonly string[];
  readonly lastTradeAt: ReadonlyMap<string, number>;
  /** A word on the connection (finnhub), e.g. "connected 5m". */
  readonly connection?: string;
}

const MAX_AGES_SHOWN = 8;

/** One status line: rates, counts, and how long ago each symbol last traded. */
export function formatStatus(input: StatusInput): string {
  const { counters: c, previous, now } = input;
  const seconds = Math.max(0.001, (now - previous.at) / 1000);
  const rate = (total: number, before: number) => formatCount((total - before) / seconds);
  const parts = [
    formatClock(now),
    input.source,
    ...(input.connection ? [input.connection] : []),
    `recv ${rate(c.received, previous.received)}/s (${formatCount(c.received)})`,
    `acked ${rate(c.acked, previous.acked)}/s (${formatCount(c.acked)})`,
    `queued ${formatCount(c.queued)}`,
    `dropped ${formatCount(c.dropped)}`,
    ...duplicated(c),
    `rejected ${formatRejected(c.rejected)}`,
  ];
  if (input.source === "finnhub") parts.push(`reconnects ${c.reconnects}`);
  // Stalest first: a symbol that went quiet is what the operator needs to see.
  const ages = input.symbols.map((symbol) => {
    const at = input.lastTradeAt.get(symbol);
    return { symbol, age: at === undefined ? Infinity : now - at };
  }).sort((a, b) => b.age - a.age);
  const shown = ages.slice(0, MAX_AGES_SHOWN)
    .map(({ symbol, age }) => `${symbol} ${age === Infinity ? "none" : formatAge(age)}`);
  if (ages.length > MAX_AGES_SHOWN) shown.push(`+${ages.length - MAX_AGES_SHOWN} more`);
  parts.push(`last trade: ${shown.join(" ")}`);
  return parts.join("  ");
}

/** The line printed on exit, whatever the exit code. */
export function formatSummary(source: Source, elapsedMs: number, c: Counters): string {
  const seconds = elapsedMs / 1000;
  return [
    `summary: source ${source}`,
    `${seconds.toFixed(1)} s`,
    `received ${formatCount(c.received)}`,
    `acked ${formatCount(c.acked)} (${formatCount(c.acked / Math.max(seconds, 0.001))}/s)`,
    `queued ${formatCount(c.queued)}`,
    `dropped ${formatCount(c.dropped)}`,
    ...duplicated(c),
    `rejected ${formatRejected(c.rejected)}`,
    `reconnects ${c.reconnects}`,
  ].join(", ");
}

/** Shown only when it happened: a rare event that must not pass unseen. */
function duplicated(c: Counters): string[] {
  return c.possiblyDuplicated > 0
    ? [`possibly duplicated ${formatCount(c.possiblyDuplicated)}`]
    : [];
}

const encoder = new TextEncoder();
const CLEAR_LINE = "\r\x1b[2K";

/**
 * Status on stdout, logs on stderr. On a terminal the status line is redrawn in
 * place and every log line first clears it, then puts it back; otherwise both are
 * plain lines.
 */
export function createConsole(tty = Deno.stdout.isTerminal()) {
  let status = "";
  let closed = false;
  const width = () => {
    try {
      return Deno.consoleSize().columns - 1;
    } catch {
      return 200;
    }
  };
  const draw = () => Deno.stdout.writeSync(encoder.encode(`${CLEAR_LINE}${status}`));
  if (tty) Deno.stdout.writeSync(encoder.encode("\x1b[?25l")); // hide the cursor
  return {
    tty,
    log(line: string): void {
      if (tty && status) Deno.stdout.writeSync(encoder.encode(CLEAR_LINE));
      console.error(line);
      if (tty && status) draw();
    },
    status(line: string): void {
      if (!tty) {
        console.log(line);
        return;
      }
      status = line.length > width() ? `${line.slice(0, width() - 1)}…` : line;
      draw();
    },
    /**
     * Ends the in-place line and shows the cursor again (once: the producer closes on
     * every path out); prints `summary` as a plain line.
     */
    close(summary?: string): void {
      if (tty && !closed) {
        Deno.stdout.writeSync(encoder.encode(`${status ? CLEAR_LINE : ""}\x1b[?25h`));
        status = "";
      }
      closed = true;
      if (summary) console.log(summary);
    },
  };
}

export type Console = ReturnType<typeof createConsole>;

export interface StatusLineOptions
  extends Omit<StatusInput, "now" | "previous" | "connection" | "symbols"> {
  /** The symbols to show, read at each line (a replay learns them as it goes). */
  readonly symbols: () => readonly string[];
  /** Seconds between lines; 0: none. */
  readonly intervalS: number;
  readonly console: Console;
  /** Brings the counters up to date just before each line. */
  readonly refresh: () => void;
  /** The connection's state in words, read at each line (finnhub only). */
  readonly connection?: () => string;
}

/** Prints a status line every `intervalS` seconds until disposed. */
export function startStatusLine(options: StatusLineOptions): Disposable {
  if (options.intervalS <= 0) return { [Symbol.dispose]() {} };
  let previous = { received: 0, acked: 0, at: Date.now() };
  const timer = setInterval(() => {
    options.refresh();
    const now = Date.now();
    options.console.status(
      formatStatus({
        ...options,
        now,
        previous,
        symbols: options.symbols(),
        connection: options.connection?.(),
      }),
    );
    previous = { received: options.counters.received, acked: options.counters.acked, at: now };
  }, options.intervalS * 1000);
  return { [Symbol.dispose]: () => clearInterval(timer) };
}
