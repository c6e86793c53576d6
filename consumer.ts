/**
 * `deno task consume`: reads the trade topic in a consumer group, builds candles,
 * VWAP and rates (candles.ts), and shows them as terminal charts (chart.ts), plain
 * lines when stdout is not a terminal, or a live web page with `--dashboard`
 * (dashboard.ts): one aggregation, whichever view.
 *
 *   deno task consume [--from=15m|2026-01-05T14:30:00Z] [--interval=1s] [--overlay]
 *                     [--every=250ms] [--dlq] [--dashboard]
 *
 * The reading (group, seek, batches, offsets, lag) is topic_reader.ts; this script
 * holds the flags, the views and the process: signals, terminal, exit codes.
 */

import {
  ConfigError,
  configOrExit,
  exitWithError,
  parseDuration,
  parseTime,
  redact,
} from "./config.ts";
import {
  Aggregator,
  DEFAULT_INTERVALS_MS,
  DEFAULT_MAX_CANDLES,
  DEFAULT_MAX_SYMBOLS,
} from "./consumer/candles.ts";
import { LatencyHistogram } from "./consumer/latency.ts";
import { type ChartData, formatInterval, plainLines, renderFrame } from "./consumer/chart.ts";
import { serveDashboard } from "./dashboard/server.ts";
import {
  type ConsumerCounts,
  type RunningConsumer,
  startConsumer,
  StoppedError,
} from "./consumer/topic_reader.ts";

const STOP_DEADLINE_MS = 10_000;

export class UsageError extends Error {
  override name = "UsageError";
}

export interface Flags {
  /** An absolute time (ms) or a span back from now (ms); undefined: the default. */
  from?: { readonly at: number } | { readonly ago: number };
  intervalMs: number;
  overlay: boolean;
  dashboard: boolean;
  dlq: boolean;
  everyMs?: number;
  /** Stop after this many records and print a summary (benchmarks). */
  limit?: number;
  help: boolean;
}

export const USAGE = `usage: deno task consume [options]
  --from=SPAN|TIME  replay from a span back (30s, 15m, 2h) or an ISO time
                    (2026-01-05T14:30:00Z); default: the window the chart shows
                    (15m for plain lines, 1h with --dashboard)
  --interval=SPAN   candle interval the terminal charts (default 1s; 1m is kept too)
  --overlay         all symbols on one chart as % change
  --every=SPAN      redraw / print period (default 250ms on a terminal, 5s otherwise)
  --dlq             forward undecodable records as they are to <topic>.dlq
  --dashboard       serve the live page (DASHBOARD_HOST:DASHBOARD_PORT) instead
  --limit=N         stop after N records (applied, rejected, too late or early) and print a
                    summary line: records/s and latency p50/p99/p99.9 (benchmarks)`;

export function parseFlags(args: readonly string[]): Flags {
  const flags: Flags = {
    intervalMs: 1_000,
    overlay: false,
    dashboard: false,
    dlq: false,
    help: false,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new UsageError(`unexpected argument "${arg}"`);
    const [, name, inline] = match;
    const value = () => {
      const text = inline ?? args[++i];
      if (text === undefined || text === "") throw new UsageError(`--${name} needs a value`);
      return text;
    };
    const span = (text: string, min: number, max: number) => {
      const ms = parseDuration(text);
      if (ms === undefined || !/[a-z]$/.test(text)) {
        throw new UsageError(`--${name}=${text}: not a span like 500ms, 30s, 15m or 2h`);
      }
      if (ms < min || ms > max) {
        throw new UsageError(
          `--${name}=${text}: must be ${formatInterval(min)} to ${formatInterval(max)}`,
        );
      }
      return ms;
    };
    switch (name) {
      case "from": {
        const text = value();
        const at = /^\d{4}-/.test(text) ? parseTime(text) : undefined;
        if (/^\d{4}-/.test(text) && at === undefined) {
          throw new UsageError(`--from=${text}: not an ISO time like 2026-01-05T14:30:00Z`);
        }
        flags.from = at !== undefined ? { at } : { ago: span(text, 1_000, 30 * 24 * 3600_000) };
        break;
      }
      case "interval": {
        flags.intervalMs = span(value(), 1_000, 3600_000);
        if (flags.intervalMs % 1_000 !== 0) {
          throw new UsageError(`--interval must be whole seconds`);
        }
        break;
      }
      case "every":
        flags.everyMs = span(value(), 50, 3600_000);
        break;
      case "limit": {
        const text = value();
        if (!/^\d{1,15}$/.test(text) || Number(text) < 1) {
          throw new UsageError(`--limit=${text}: not a positive whole number`);
        }
        flags.limit = Number(text);
        break;
      }
      case "overlay":
      case "dashboard":
      case "dlq":
      case "help":
        if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
        flags[name] = true;
        break;
      default:
        throw new UsageError(`unknown option --${name} (see --help)`);
    }
  }
  if (flags.dashboard && flags.overlay) {
    throw new UsageError("--overlay is for the terminal view, not --dashboard");
  }
  return flags;
}

/** Records a --limit run has read: applied, refused, too late or early (skipped duplicates are not new). */
export function recordsRead(counts: Readonly<ConsumerCounts>): number {
  return counts.applied + counts.rejected + counts.tooLate + counts.tooEarly + counts.symbolCap;
}

/** The last line of a --limit run, on stdout: what `deno task bench` reads. */
export function limitSummary(
  counts: Readonly<ConsumerCounts>,
  times: { first: number | null; lastDone: number | null },
  latency: LatencyHistogram,
): string {
  const read = recordsRead(counts);
  const seconds = times.first === null || times.lastDone === null
    ? 0
    : Math.max(1, times.lastDone - times.first) / 1000;
  const rate = seconds > 0 ? Math.round(read / seconds) : 0;
  const n = (value: number) => value.toLocaleString("en-US");
  const quantiles = latency.count === 0
    ? "no samples"
    : `p50 ${latency.quantile(0.5)} ms, p99 ${latency.quantile(0.99)} ms, p99.9 ${
      latency.quantile(0.999)
    } ms (${n(latency.count)} samples)`;
  return `summary: read ${n(read)} records in ${seconds.toFixed(3)} s (${n(rate)} records/s ` +
    `from the first fetch), applied ${n(counts.applied)}, rejected ${n(counts.rejected)}, ` +
    `too late ${n(counts.tooLate)}, too early ${
      n(counts.tooEarly)
    }; latency received-at -> applied: ${quantiles}`;
}

/** The session start: the flag's time, or `defaultSpanMs` back from now. */
export function resolveFrom(flags: Flags, now: number, defaultSpanMs: number): number {
  const from = flags.from;
  const at = from === undefined ? now - defaultSpanMs : "at" in from ? from.at : now - from.ago;
  if (at > now) throw new UsageError(`--from is in the future (${new Date(at).toISOString()})`);
  return at;
}

const encoder = new TextEncoder();

function writeAll(text: string): void {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
}

// Alternate screen + hidden cursor while drawing; both undone in `finally`.
const ENTER_SCREEN = "\x1b[?1049h\x1b[?25l";
const LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l";

/** Redraws in place: home, each line then clear-to-end-of-line, then clear below. */
export function inPlace(frame: string): string {
  return "\x1b[H" + frame.replaceAll("\n", "\x1b[K\n") + "\x1b[K\x1b[J";
}

export async function main(args: string[]): Promise<void> {
  let flags: Flags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    if (error instanceof UsageError) exitWithError(`${error.message}\n${USAGE}`);
    throw error;
  }
  if (flags.help) {
    console.log(USAGE);
    return;
  }
  const config = configOrExit();
  const terminal = !flags.dashboard && Deno.stdout.isTerminal();
  const chartColumns = terminal ? Deno.consoleSize().columns - 12 : 0;
  const defaultSpan = flags.dashboard
    ? 3600_000
    : terminal
    ? Math.max(60, chartColumns) * flags.intervalMs
    : 15 * 60_000;
  let fromMs: number;
  try {
    fromMs = resolveFrom(flags, Date.now(), defaultSpan);
  } catch (error) {
    if (error instanceof UsageError) exitWithError(error.message);
    throw error;
  }

  const controller = new AbortController();
  const onSignal = () => controller.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  controller.signal.addEventListener("abort", () => {
    // A stuck broker must not hold the terminal: bounded time, then out.
    const timer = setTimeout(() => {
      if (terminal) writeAll(LEAVE_SCREEN);
      console.error("error: stopping took too long; exiting without a clean leave");
      Deno.exit(1);
    }, STOP_DEADLINE_MS);
    Deno.unrefTimer(timer);
  }, { once: true });

  const intervals = [...new Set([...DEFAULT_INTERVALS_MS, flags.intervalMs])];
  const aggregator = new Aggregator({
    intervalsMs: intervals,
    maxCandles: DEFAULT_MAX_CANDLES,
    maxSymbols: DEFAULT_MAX_SYMBOLS,
    fromMs,
  });
  console.error(
    `consuming ${config.topic} as group ${config.groupId} from ${new Date(fromMs).toISOString()}` +
      ` (brokers ${config.brokers.join(",")})`,
  );

  let running: RunningConsumer;
  let notify: ((symbols: ReadonlySet<string>) => void) | undefined;
  const latencyLog = flags.limit === undefined ? undefined : new LatencyHistogram();
  try {
    running = await startConsumer({
      config,
      aggregator,
      fromMs,
      dlq: flags.dlq,
      signal: controller.signal,
      onBatch: (symbols) => notify?.(symbols),
      latencyLog,
    });
  } catch (error) {
    if (error instanceof ConfigError) exitWithError(error.message);
    if (error instanceof StoppedError) {
      // kafkajs may still be retrying the connection: leave without waiting for it.
      console.error(`${error.message}: nothing was consumed`);
      Deno.exit(0);
    }
    const hint = /ECONNREFUSED|Connection/.test(String(error))
      ? " (is Kafka running? `deno task kafka` starts a local one)"
      : "";
    exitWithError(
      `cannot consume ${config.topic} from ${config.brokers.join(",")}: ${
        redact(String(error))
      }${hint}`,
      1,
    );
  }

  const view = (): ChartData => {
    const { assigned, partitions } = running.assignment();
    const counts = running.counts();
    const notes = [
      ...(assigned < partitions ? [`partitions ${assigned}/${partitions}: group shared`] : []),
      ...(counts.dlqFailed > 0 ? [`dlq failed ${counts.dlqFailed}`] : []),
      ...(counts.symbolCap > 0 ? [`symbol cap ${DEFAULT_MAX_SYMBOLS} hit`] : []),
    ];
    return {
      source: aggregator,
      status: running.status(),
      topic: config.topic,
      intervalMs: flags.intervalMs,
      overlay: flags.overlay,
      color: !Deno.noColor,
      utcOffsetMinutes: -new Date().getTimezoneOffset(),
      notes,
    };
  };

  const limit = flags.limit;
  if (limit !== undefined) {
    const { assigned, partitions } = running.assignment();
    console.error(`ready: group ${config.groupId} joined, ${assigned}/${partitions} partitions`);
  }
  // Checked a few times per batch interval; the summary's clock stops at the last batch.
  const limitTimer = limit === undefined ? undefined : setInterval(() => {
    if (recordsRead(running.counts()) >= limit) controller.abort();
  }, 20);

  let timer: ReturnType<typeof setTimeout> | undefined;
  let viewError: unknown;
  // Timer callbacks must not throw (a closed pipe would end the process uncleanly):
  // the error stops the consumer and is reported below.
  const guarded = (draw: () => void) => () => {
    try {
      draw();
    } catch (error) {
      viewError ??= error;
      controller.abort();
    }
  };
  const redraw = guarded(() =>
    writeAll(inPlace(renderFrame(view(), Deno.consoleSize(), Date.now())))
  );
  const printLines = guarded(() => writeAll(plainLines(view(), Date.now()).join("\n") + "\n"));
  const printStatus = guarded(() => writeAll(plainLines(view(), Date.now())[0] + "\n"));
  try {
    if (flags.dashboard) {
      const dashboard = serveDashboard({
        hostname: config.dashboardHost,
        port: config.dashboardPort,
        signal: controller.signal,
        aggregator,
        status: () => running.status(),
      });
      notify = (symbols) => dashboard.notify(symbols);
      console.log(`dashboard: ${dashboard.url}`);
      timer = setInterval(printStatus, flags.everyMs ?? 10_000);
      await Promise.all([running.stopped, dashboard.finished]);
    } else if (terminal) {
      writeAll(ENTER_SCREEN);
      Deno.addSignalListener("SIGWINCH", redraw);
      try {
        redraw();
        timer = setInterval(redraw, flags.everyMs ?? 250);
        await running.stopped;
      } finally {
        clearInterval(timer);
        Deno.removeSignalListener("SIGWINCH", redraw);
        writeAll(LEAVE_SCREEN);
      }
    } else {
      timer = setInterval(printLines, flags.everyMs ?? 5_000);
      await running.stopped;
      printLines();
    }
  } catch (error) {
    viewError ??= error;
  } finally {
    clearInterval(timer);
    clearInterval(limitTimer);
    controller.abort();
    await running.stopped.catch(() => {});
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  if (viewError !== undefined && !(viewError instanceof Deno.errors.BrokenPipe)) {
    exitWithError(`consumer stopped: ${redact(String(viewError))}`, 1);
  }
  const counts = running.counts();
  console.error(
    `stopped: applied ${counts.applied}, rejected ${counts.rejected}, too late ${counts.tooLate}` +
      `, too early ${counts.tooEarly}, symbol cap ${counts.symbolCap}, redelivered and skipped ${counts.redelivered}` +
      (flags.dlq
        ? `, to ${config.topic}.dlq ${counts.dlqForwarded} (failed ${counts.dlqFailed})`
        : "") +
      "; offsets committed",
  );
  if (latencyLog !== undefined) {
    console.log(limitSummary(counts, running.batchTimes(), latencyLog));
  }
  // Stopped, offsets committed. A dashboard client that never took its last bytes
  // (the server gave up waiting for it) still holds a connection open: leave now,
  // or the process would wait for it until the hard deadline and exit 1.
  Deno.exit(0);
}

if (import.meta.main) await main(Deno.args);
