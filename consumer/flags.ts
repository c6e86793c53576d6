/**
 * The consumer's command line, checked before anything connects: a mistake is one
 * line and exit code 2.
 */

import { parseDuration, parseFlags, parseTime, positive, UsageError } from "../lib/cli.ts";
import { formatInterval } from "../lib/format.js";

export interface Flags {
  /** An absolute time (ms) or a span back from now (ms); undefined: the default. */
  readonly from?: { readonly at: number } | { readonly ago: number };
  readonly intervalMs: number;
  readonly overlay: boolean;
  readonly dashboard: boolean;
  readonly dlq: boolean;
  readonly everyMs?: number;
  /** Stop after this many records and print a summary (benchmarks). */
  readonly limit?: number;
  readonly help: boolean;
}

export const USAGE = `usage: deno task consume [flags]
  --from=SPAN|TIME  replay from a span back (30s, 15m, 2h) or an ISO time
                    (2026-01-05T14:30:00Z); default: the window the chart shows
                    (15m for plain lines, 1h with --dashboard)
  --interval=SPAN   candle interval the terminal charts (default 1s; 1m is kept too)
  --overlay         all symbols on one chart as % change
  --every=SPAN      redraw / print period (default 250ms on a terminal, 5s otherwise)
  --dlq             forward undecodable records as they are to <topic>.dlq
  --dashboard       serve the live page on DASHBOARD_HOST:DASHBOARD_PORT instead
                    (deno task dashboard: the task whose permissions allow it)
  --limit=N         stop after N records (applied, rejected, too late or early) and print a
                    summary line: records/s and latency p50/p99/p99.9 (benchmarks)
  --help            this text
keys on a terminal: ←/→ (PgUp/PgDn, n/p) page through the symbols, +/- change the
  interval (1s 5s 15s 1m 5m 15m), q stops`;

const SPEC = {
  from: { type: "string" },
  interval: { type: "string" },
  overlay: { type: "boolean" },
  every: { type: "string" },
  dlq: { type: "boolean" },
  dashboard: { type: "boolean" },
  limit: { type: "string" },
  help: { type: "boolean" },
} as const;

/** A span with its unit (500ms, 30s, 15m, 2h) between `min` and `max` ms. */
function span(flag: string, text: string, min: number, max: number): number {
  const ms = parseDuration(text);
  if (ms === undefined || !/[a-z]$/.test(text)) {
    throw new UsageError(`--${flag}: "${text}" is not a span like 500ms, 30s, 15m or 2h`);
  }
  if (ms < min || ms > max) {
    throw new UsageError(
      `--${flag}: "${text}" is not from ${formatInterval(min)} to ${formatInterval(max)}`,
    );
  }
  return ms;
}

function from(text: string | undefined): Flags["from"] {
  if (text === undefined) return undefined;
  if (!/^\d{4}-/.test(text)) return { ago: span("from", text, 1_000, 30 * 24 * 3600_000) };
  const at = parseTime(text);
  if (at === undefined) {
    throw new UsageError(`--from: "${text}" is not an ISO time like 2026-01-05T14:30:00Z`);
  }
  return { at };
}

export function parseConsumerFlags(args: readonly string[]): Flags {
  const v = parseFlags(args, SPEC);
  const intervalMs = v.interval === undefined
    ? 1_000
    : span("interval", v.interval, 1_000, 3600_000);
  if (intervalMs % 1_000 !== 0) throw new UsageError("--interval must be whole seconds");
  const flags: Flags = {
    from: from(v.from),
    intervalMs,
    overlay: v.overlay ?? false,
    dashboard: v.dashboard ?? false,
    dlq: v.dlq ?? false,
    everyMs: v.every === undefined ? undefined : span("every", v.every, 50, 3600_000),
    limit: v.limit === undefined ? undefined : positive("limit", v.limit, { integer: true }),
    help: v.help ?? false,
  };
  if (flags.dashboard && flags.overlay) {
    throw new UsageError("--overlay is for the terminal view, not --dashboard");
  }
  return flags;
}

/** The session start: the flag's time, or `defaultSpanMs` back from now. */
export function resolveFrom(flags: Flags, now: number, defaultSpanMs: number): number {
  const from = flags.from;
  const at = from === undefined ? now - defaultSpanMs : "at" in from ? from.at : now - from.ago;
  if (at > now) throw new UsageError(`--from is in the future (${new Date(at).toISOString()})`);
  return at;
}
