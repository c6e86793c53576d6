/**
 * `deno task consume`: reads the trade topic in a consumer group, builds candles,
 * VWAP and rates, and shows them as terminal charts, plain lines when stdout is not
 * a terminal, or a live web page with `--dashboard`: one aggregation, whichever view.
 *
 *   deno task consume [--from=15m|2026-01-05T14:30:00Z] [--interval=1s] [--overlay]
 *                     [--every=250ms] [--dlq] [--limit=N]
 *   deno task dashboard
 *
 * The steps: flags and config (consumer/flags.ts), the aggregation
 * (consumer/candles.ts), the topic reader that feeds it (consumer/topic_reader.ts),
 * the feed reader beside it (consumer/feed.ts: the producer's heartbeats and gaps),
 * the view (consumer/terminal.ts, or dashboard/server.ts), then the stopped line.
 * SIGINT/SIGTERM stop reading and commit; a second Ctrl-C quits at once. Exit 0 on
 * a clean stop; 1 when Kafka cannot be read or the view failed; 2 for a bad flag,
 * bad config or a host the task's permissions leave out.
 */

import { type Config, loadConfig, readEnv } from "./config.ts";
import { exitCodeFor, stopOnSignals, UsageError } from "./lib/cli.ts";
import { redact } from "./lib/redact.ts";
import { checkAccess } from "./lib/kafka.ts";
import { recordsRead } from "./consumer/apply.ts";
import {
  Aggregator,
  DEFAULT_INTERVALS_MS,
  DEFAULT_MAX_CANDLES,
  DEFAULT_MAX_SYMBOLS,
} from "./consumer/candles.ts";
import type { ChartData } from "./consumer/chart.ts";
import { type FeedSummary, startFeedReader, summarizeFeed } from "./consumer/feed.ts";
import { type Flags, parseConsumerFlags, resolveFrom, USAGE } from "./consumer/flags.ts";
import { LatencyHistogram } from "./consumer/latency.ts";
import { limitSummary, stoppedLine } from "./consumer/report.ts";
import {
  leaveScreen,
  showCharts,
  showLines,
  showStatus,
  type ViewOptions,
} from "./consumer/terminal.ts";
import {
  type ConsumerOptions,
  type RunningConsumer,
  startConsumer,
  StoppedError,
} from "./consumer/topic_reader.ts";
import { consumerFamilies } from "./consumer/metrics.ts";
import { type Alerting, startAlerting } from "./consumer/alert_topics.ts";
import type { FiredAlert } from "./lib/alert_rules.ts";
import { type Dashboard, loadTls, serveDashboard, type Tls } from "./dashboard/server.ts";

/** The dashboard's page: the dashboard task may read it, the consume task may not. */
const PAGE = new URL("./dashboard/static/", import.meta.url);

/** A stuck broker must not hold the terminal: this long after a stop, the process leaves. */
const STOP_DEADLINE_MS = 10_000;

type View = "dashboard" | "charts" | "lines";

export async function main(args: readonly string[]): Promise<number> {
  try {
    const flags = parseConsumerFlags(args);
    if (flags.help) {
      console.log(USAGE);
      return 0;
    }
    return await consume(flags, loadConfig(readEnv()));
  } catch (error) {
    return exitCodeFor(error);
  }
}

async function consume(flags: Flags, config: Config): Promise<number> {
  if (
    flags.dashboard && Deno.permissions.querySync({ name: "read", path: PAGE }).state !== "granted"
  ) {
    throw new UsageError("--dashboard: this task may not read the page: run `deno task dashboard`");
  }
  const view: View = flags.dashboard ? "dashboard" : Deno.stdout.isTerminal() ? "charts" : "lines";
  const tls = view === "dashboard" ? dashboardChecks(config) : undefined;
  const fromMs = resolveFrom(flags, Date.now(), defaultSpanMs(view, flags));
  using stop = stopOnSignals(() => {
    if (view === "charts") leaveScreen();
    console.error("error: stopped before the offsets were committed");
    Deno.exit(130);
  });
  // The reader stops on a signal, at --limit, or when the view fails.
  const halt = haltWithDeadline(stop.signal, view);
  const aggregator = new Aggregator({
    intervalsMs: keptIntervals(flags),
    maxCandles: DEFAULT_MAX_CANDLES,
    maxSymbols: DEFAULT_MAX_SYMBOLS,
    fromMs,
  });
  console.error(
    `consuming ${config.topic} as group ${config.groupId} from ${new Date(fromMs).toISOString()}` +
      ` (brokers ${config.brokers.join(",")})`,
  );
  // The whole run's latencies: --limit's summary, and the dashboard's /metrics.
  const latencyLog = flags.limit === undefined && view !== "dashboard"
    ? undefined
    : new LatencyHistogram();
  // Alerts (consumer/alerts.ts): the dashboard reads the rules topic, consume ALERTS only.
  // A refused password or certificate is one line before the alert topics try Kafka.
  if (config.alerts.length > 0 || view === "dashboard") await checkAccess(config);
  const alerting = startAlerting({
    config,
    prices: aggregator,
    signal: halt.signal,
    readRules: view === "dashboard",
    print: (alert) => view !== "charts" && console.log(alertLine(alert)),
  });
  try {
    return await watch(flags, {
      config,
      view,
      halt,
      aggregator,
      fromMs,
      latencyLog,
      tls,
      alerting,
    });
  } finally {
    halt.abort();
    await alerting?.stop();
  }
}

/** "alert: AAPL crossed above 190 at 190.05 (trade 14:02:03Z, simulated)". */
function alertLine(alert: FiredAlert): string {
  const mark = alert.source === "sim" ? ", simulated" : alert.source === "replay" ? ", replay" : "";
  return `alert: ${alert.words} (trade ${new Date(alert.tradeTime).toISOString()}${mark})`;
}

/** Reads the trades into the aggregation and shows them until the stop; the exit code. */
async function watch(flags: Flags, run: {
  readonly config: Config;
  readonly view: View;
  readonly halt: AbortController;
  readonly aggregator: Aggregator;
  readonly fromMs: number;
  readonly latencyLog?: LatencyHistogram;
  readonly tls?: Tls;
  readonly alerting?: Alerting;
}): Promise<number> {
  const { config, view, halt, aggregator, fromMs, latencyLog, tls, alerting } = run;
  let dashboard: Dashboard | undefined;
  // What already fired is known before history is read again (no firing twice).
  await alerting?.topics.loaded;
  const reader = await read({
    config,
    aggregator,
    fromMs,
    dlq: flags.dlq,
    signal: halt.signal,
    onBatch: (symbols, live) => {
      alerting?.batch(symbols, live);
      dashboard?.notify(symbols);
    },
    latencyLog,
  });
  if (reader === "stopped") return 0;
  alerting?.follow(() => reader.caughtUp()); // history read: alerts go live
  // The producer's feed (heartbeats, gaps) is read beside the trades by its own
  // reader, once Kafka has let the trade reader in (a refused login is one line).
  const feedReader = startFeedReader({ config, signal: halt.signal });
  const feed = () => summarizeFeed(feedReader.log, { now: Date.now(), from: fromMs });

  const stopAtLimit = watchLimit(reader, flags.limit, () => halt.abort());
  if (flags.limit !== undefined) {
    const { assigned, partitions } = reader.assignment();
    console.error(`ready: group ${config.groupId} joined, ${assigned}/${partitions} partitions`);
  }
  let failure: unknown;
  try {
    failure = await show(view, {
      reader,
      aggregator,
      config,
      halt,
      feed,
      options: {
        data: () =>
          chartData({
            reader,
            aggregator,
            flags,
            config,
            feed,
            alerting: view === "charts" ? alerting : undefined,
          }),
        everyMs: flags.everyMs ?? (view === "charts" ? 250 : view === "lines" ? 5_000 : 10_000),
        done: reader.stopped,
        stop: () => halt.abort(),
      },
      onDashboard: (served) => (dashboard = served),
      tls,
      latency: latencyLog,
      alerting,
    });
  } catch (error) {
    failure = error; // the reader crashed, or the dashboard could not listen
  } finally {
    clearInterval(stopAtLimit);
    halt.abort();
    await Promise.all([reader.stopped.catch(() => {}), feedReader.stopped]);
  }
  if (failure instanceof UsageError) throw failure; // the port in use: one line, exit 2
  if (failure !== undefined && !(failure instanceof Deno.errors.BrokenPipe)) {
    throw new Error(`consumer stopped: ${redact(String(failure))}`);
  }
  console.error(stoppedLine(reader.counts(), flags.dlq ? `${config.topic}.dlq` : undefined));
  if (flags.limit !== undefined && latencyLog !== undefined) {
    console.log(limitSummary(reader.counts(), reader.batchTimes(), latencyLog));
  }
  // Stopped, offsets committed. A dashboard client that never took its last bytes
  // (the server gave up waiting for it) still holds a connection open: the entry
  // line leaves at once rather than wait for it.
  return 0;
}

/**
 * The reader's stop: aborted with the process's, and by --limit or a failed view.
 * A stuck broker must not hold the terminal: STOP_DEADLINE_MS after it, the process
 * leaves.
 */
function haltWithDeadline(signal: AbortSignal, view: View): AbortController {
  const halt = new AbortController();
  signal.addEventListener("abort", () => halt.abort(), { once: true });
  halt.signal.addEventListener("abort", () => {
    const timer = setTimeout(() => {
      if (view === "charts") leaveScreen();
      console.error("error: stopping took too long; exiting without a clean leave");
      Deno.exit(1);
    }, STOP_DEADLINE_MS);
    Deno.unrefTimer(timer);
  }, { once: true });
  return halt;
}

/** Shows `view` until the reader stops; the first error of the view, if any. */
async function show(view: View, session: {
  readonly reader: RunningConsumer;
  readonly aggregator: Aggregator;
  readonly config: Config;
  readonly halt: AbortController;
  readonly feed: () => FeedSummary;
  readonly options: ViewOptions;
  readonly onDashboard: (dashboard: Dashboard) => void;
  readonly tls?: Tls;
  readonly latency?: LatencyHistogram;
  readonly alerting?: Alerting;
}): Promise<unknown> {
  if (view === "charts") return await showCharts(session.options);
  if (view === "lines") return await showLines(session.options);
  const { config, reader } = session;
  const dashboard = serveDashboard({
    hostname: config.dashboardHost,
    port: config.dashboardPort,
    signal: session.halt.signal,
    aggregator: session.aggregator,
    status: () => reader.status(),
    token: config.dashboardToken,
    tls: session.tls,
    metrics: () => consumerFamilies(reader, session.latency ?? new LatencyHistogram()),
    feed: session.feed,
    alerts: session.alerting,
  });
  session.onDashboard(dashboard);
  console.log(`dashboard: ${dashboard.url}`);
  if (config.dashboardToken !== undefined) {
    console.log(
      "dashboard: token required: open the page once as …/?token=<DASHBOARD_TOKEN>; " +
        "tools send Authorization: Bearer <DASHBOARD_TOKEN>",
    );
  }
  const [failure] = await Promise.all([showStatus(session.options), dashboard.finished]);
  return failure;
}

/**
 * Before Kafka: the task may listen where DASHBOARD_HOST says, and the certificate
 * and key read. The PEM text, with DASHBOARD_CERT.
 */
function dashboardChecks(config: Config): Tls | undefined {
  const host = config.dashboardHost;
  const name = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  if (Deno.permissions.querySync({ name: "net", host: name }).state !== "granted") {
    throw new UsageError(
      `DASHBOARD_HOST: this task may not listen on ${host}: \`deno task dashboard\` listens ` +
        "on loopback, `deno task dashboard:shared` on every interface (DASHBOARD_HOST=0.0.0.0), " +
        "`deno task dashboard:remote` anywhere; beyond loopback with DASHBOARD_TOKEN",
    );
  }
  return config.dashboardTls && loadTls(config.dashboardTls);
}

/** How far back a run starts unless --from says: the window its view shows. */
function defaultSpanMs(view: View, flags: Flags): number {
  if (view === "dashboard") return 3600_000;
  if (view === "lines") return 15 * 60_000;
  const columns = Deno.consoleSize().columns - 12;
  return Math.max(60, columns) * flags.intervalMs;
}

/** The reader, joined; "stopped" if the stop came before Kafka answered. */
async function read(options: ConsumerOptions): Promise<RunningConsumer | "stopped"> {
  const { config } = options;
  try {
    return await startConsumer(options);
  } catch (error) {
    if (error instanceof StoppedError) {
      // kafkajs may still be retrying the connection: the entry line leaves without it.
      console.error(`${error.message}: nothing was consumed`);
      return "stopped";
    }
    if (error instanceof UsageError) throw error;
    const hint = /ECONNREFUSED|Connection/.test(String(error))
      ? " (is Kafka running? `deno task kafka` starts a local one)"
      : "";
    throw new Error(
      `cannot consume ${config.topic} from ${config.brokers.join(",")}: ${error}${hint}`,
    );
  }
}

/** With --limit, stops the run once that many records are read (checked every 20 ms). */
function watchLimit(reader: RunningConsumer, limit: number | undefined, stop: () => void) {
  if (limit === undefined) return undefined;
  // Checked a few times per batch interval; the summary's clock stops at the last batch.
  return setInterval(() => {
    if (recordsRead(reader.counts()) >= limit) stop();
  }, 20);
}

/** The candle intervals the aggregation keeps: the defaults and --interval. */
function keptIntervals(flags: Flags): number[] {
  return [...new Set([...DEFAULT_INTERVALS_MS, flags.intervalMs])];
}

/** What the terminal views draw, read fresh at each redraw. */
function chartData(parts: {
  readonly reader: RunningConsumer;
  readonly aggregator: Aggregator;
  readonly flags: Flags;
  readonly config: Config;
  readonly feed: () => FeedSummary;
  readonly alerting?: Alerting;
}): ChartData {
  const { reader, aggregator, flags, config } = parts;
  const { assigned, partitions } = reader.assignment();
  const counts = reader.counts();
  const notes = [
    ...(assigned < partitions ? [`partitions ${assigned}/${partitions}: group shared`] : []),
    ...(counts.dlqFailed > 0 ? [`dlq failed ${counts.dlqFailed}`] : []),
    ...(counts.symbolCap > 0 ? [`symbol cap ${DEFAULT_MAX_SYMBOLS} hit`] : []),
    // The alerts of the last minute: a line in the chart view.
    ...(parts.alerting?.engine.since(0).alerts ?? [])
      .filter((alert) => Date.now() - alert.firedAt < 60_000).slice(-2)
      .map((alert) => `alert: ${alert.words}`),
  ];
  return {
    aggregation: aggregator,
    status: reader.status(),
    topic: config.topic,
    intervalMs: flags.intervalMs,
    keptIntervalsMs: keptIntervals(flags),
    overlay: flags.overlay,
    color: !Deno.noColor,
    utcOffsetMinutes: -new Date().getTimezoneOffset(),
    notes,
    feed: parts.feed(),
  };
}

// kafkajs keeps timers of its own, and a dashboard client may hold a connection:
// the run is over, so leave now.
if (import.meta.main) Deno.exit(await main(Deno.args));
