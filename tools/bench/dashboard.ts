/**
 * The dashboard phase of `deno task bench`: `consumer.ts --dashboard` with alert
 * rules on (ALERTS), several SSE clients on different symbols, intervals and
 * windows, and the simulated market at a set rate. Per client: pushes (the most in
 * any 1 s, and the mean), push latency (a trade's `received-at` -> the first push
 * that counts it), alerts it was pushed, trades applied against those acked; and
 * the dashboard's RSS over the run (peak and slope).
 *
 * A push is one event (snapshot or delta). The bound is counted on the server's own
 * clock: every push carries the `now` it was built at. Arrival times bunch up when
 * the reader is late (the bench shares the cores too), so they are kept beside it.
 */

import { sleep } from "../../lib/async.ts";
import { alertsTopicOf, parseAlertSpecs } from "../../lib/alert_rules.ts";
import { lines } from "../../lib/lines.ts";
import { profileFor } from "../../producer/market_sim.ts";
import { type Context, failure, parseProducerSummary } from "./context.ts";
import {
  busyPercent,
  cpuTimes,
  type Finished,
  quantile,
  rssSlopeMbPerMin,
  type Running,
  waitForLine,
} from "./lib.ts";
import { failedLatency, type Latency, type LiveRun, producerArgs } from "./live.ts";
import {
  busiestSpan,
  type Push,
  pushLatencies,
  receivedAtByKey,
  watchPushes,
} from "./sse_probe.ts";

/** What one SSE client follows: as the page asks for it (`/events?symbol=&interval=&window=`). */
export interface ClientSpec {
  readonly symbol: string;
  readonly intervalMs: number;
  readonly window: string;
}

export interface ClientResult extends ClientSpec {
  readonly pushes: number;
  /** The most pushes in any 1 s by the server's send time (`now`): the bound. */
  readonly maxPerSecond: number;
  /** The same by the time the client read them. */
  readonly maxPerSecondArrived: number;
  /** Time between the pushes of the busiest 1 s, by send time (ms). */
  readonly busiestGapsMs: readonly number[];
  /** Pushes per second while the producer ran. */
  readonly meanPerSecond: number;
  readonly p50: number | null;
  readonly p99: number | null;
  readonly p999: number | null;
  /** Fired alerts the pushes carried. */
  readonly alerts: number;
  /** Trades applied by the consumer, as the client's last counts say. */
  readonly applied: number;
}

/** The real page in Chromium (page_probe.ts), following the first client's symbol and window. */
export interface PageResult {
  /** The indicators the page drew ("SMA 20,EMA 50,BB,RSI"). */
  readonly studies: string;
  readonly pushes: number;
  readonly maxPerSecond: number;
  readonly maxPerSecondArrived: number;
  readonly busiestGapsMs: readonly number[];
  readonly meanPerSecond: number;
  /** What the page asked the server for while the trades came, by path (its stream was open). */
  readonly requests: Readonly<Record<string, number>>;
}

export interface DashboardRun extends LiveRun {
  readonly rules: number;
  readonly achievedRate: number | null;
  readonly acked: number | null;
  readonly dropped: number;
  /** Records on `<topic>.alerts`: every alert the consumer fired. */
  readonly alertsOnTopic: number | null;
  readonly clients: readonly ClientResult[];
  /** The page's own count (null: not asked for, or it failed; `error` says why). */
  readonly page: PageResult | null;
  /** The slowest client's latency (the highest p99): the row's figure. */
  readonly latency: Latency;
  readonly dashboard: { peakMb: number | null; slopeMbPerMin: number | null; samples: number[] };
  readonly producerPeakRssMb: number | null;
  readonly machineBusyPercent: number;
  readonly error?: string;
}

/** The clients of the phase: the page's four windows, both intervals, four symbols. */
export function benchClients(symbols: readonly string[]): ClientSpec[] {
  const pick = (i: number) => symbols[i % symbols.length];
  return [
    { symbol: pick(0), intervalMs: 1_000, window: "1m" },
    { symbol: pick(3), intervalMs: 1_000, window: "5m" },
    { symbol: pick(1), intervalMs: 1_000, window: "15m" },
    { symbol: pick(4), intervalMs: 60_000, window: "1h" },
  ];
}

/**
 * ALERTS for the run, 40 rules a symbol: levels 0.05 % apart up to 0.45 % either
 * side of the simulated market's start price, each with a rule for both directions
 * (the random walk crosses the near ones over and over), three moves and a no-trade.
 */
export function benchAlertSpecs(symbols: readonly string[]): string {
  const specs: string[] = [];
  for (const symbol of symbols) {
    const { price, tick } = profileFor(symbol);
    const decimals = Math.max(0, Math.round(-Math.log10(tick)));
    for (let k = -9; k <= 9; k++) {
      if (k === 0) continue;
      const level = (price * (1 + k * 0.0005)).toFixed(decimals);
      specs.push(`${symbol}>${level}`, `${symbol}<${level}`);
    }
    specs.push(`${symbol}~0.05%/10s`, `${symbol}~0.1%/1m`, `${symbol}~0.2%/5m`, `${symbol}!1m`);
  }
  return specs.join(",");
}

/** The dashboard's URL, once its consumer has joined: from then on every trade is charted. */
async function dashboardUrl(dashboard: Running): Promise<string> {
  const line = await waitForLine(dashboard, (l) => l.startsWith("dashboard: "), 60_000);
  const url = line.slice("dashboard: ".length).trim();
  const deadline = Date.now() + 60_000;
  while ((await fetch(`${url}healthz`).then((r) => (r.body?.cancel(), r.status))) !== 200) {
    if (Date.now() > deadline) throw new Error("the dashboard never reported a connected consumer");
    await sleep(100);
  }
  return url;
}

/** Trades the pushes have counted so far: the last count of each symbol, summed. */
function tradesPushed(pushes: readonly Push[]): number {
  const last = new Map<string, number>();
  for (const push of pushes) for (const [symbol, n] of push.trades) last.set(symbol, n);
  return [...last.values()].reduce((sum, n) => sum + n, 0);
}

interface Client {
  readonly spec: ClientSpec;
  readonly pushes: Push[];
  readonly reading: Promise<void>;
}

/** Opens the clients' streams and waits for each one's snapshot. */
async function openClients(url: string, specs: readonly ClientSpec[], signal: AbortSignal) {
  const clients: Client[] = specs.map((spec) => {
    const pushes: Push[] = [];
    const query = new URLSearchParams({
      symbol: spec.symbol,
      interval: String(spec.intervalMs),
      window: spec.window,
    });
    const reading = watchPushes(`${url}events?${query}`, {
      signal,
      onPush: (push) => pushes.push(push),
    });
    reading.catch(() => {}); // a failed stream is reported where it is awaited
    return { spec, pushes, reading };
  });
  const until = Date.now() + 15_000;
  while (clients.some((c) => c.pushes.length === 0)) {
    if (Date.now() > until) throw new Error("an SSE client got no snapshot in 15 s");
    await sleep(50);
  }
  return clients;
}

/** Waits until every client counted `acked` trades, or nothing moved for 10 s. */
async function drain(clients: readonly Client[], acked: number): Promise<void> {
  let counted = -1;
  let movedAt = Date.now();
  while (Date.now() - movedAt < 10_000) {
    const least = Math.min(...clients.map((c) => tradesPushed(c.pushes)));
    if (least >= acked) return;
    if (least > counted) [counted, movedAt] = [least, Date.now()];
    await sleep(100);
  }
}

/**
 * How often pushes came: the most in any 1 s (sent and read), the mean while trades
 * came. The stream's first event, the snapshot that answers the request, is not
 * counted: the first push may follow it sooner than 50 ms.
 */
function pushRates(
  events: readonly { at: number; sentAt: number | null }[],
  from: number,
  to: number,
) {
  const pushes = events.slice(1);
  const sent = pushes.map((p) => p.sentAt ?? p.at);
  const during = sent.filter((t) => t >= from && t <= to).length;
  const busiest = busiestSpan(sent, 1_000);
  return {
    pushes: pushes.length,
    maxPerSecond: busiest.length,
    maxPerSecondArrived: busiestSpan(pushes.map((p) => p.at), 1_000).length,
    busiestGapsMs: busiest.slice(1).map((t, i) => t - busiest[i]),
    meanPerSecond: Math.round(during / Math.max(0.001, (to - from) / 1000) * 10) / 10,
  };
}

/** The figures of one client once its pushes and the records are all in. */
function clientResult(
  client: Client,
  run: { received: ReadonlyMap<string, readonly number[]>; from: number; to: number },
): ClientResult & { missing: number } {
  const { pushes, spec } = client;
  const { latencies, missing } = pushLatencies(pushes, run.received);
  return {
    ...spec,
    ...pushRates(pushes, run.from, run.to),
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    p999: quantile(latencies, 0.999),
    alerts: pushes.reduce((sum, p) => sum + p.alerts, 0),
    applied: tradesPushed(pushes),
    missing,
  };
}

/** Chromium on the dashboard (page_probe.ts), once its four indicators are drawn. */
async function openPage(
  ctx: Context,
  run: { url: string; spec: ClientSpec; seconds: number },
): Promise<Running> {
  const { url, spec, seconds } = run;
  const page = ctx.spawn("deno", [
    ...PAGE_PROBE,
    `--url=${url}`,
    `--symbol=${spec.symbol}`,
    `--window=${spec.window}`,
  ], { timeoutMs: 180_000 + seconds * 3_000 });
  try {
    await waitForLine(page, (line) => line === "ready", 60_000);
  } catch (error) {
    page.kill("SIGTERM");
    await page.finished;
    throw new Error(`the page in Chromium: ${(error as Error).message}`);
  }
  return page;
}

/** The page's pushes, once it is told to stop. */
async function pageResult(page: Running, from: number, to: number): Promise<PageResult> {
  const done = await stop(page);
  const line = done.stdout.findLast((l) => l.startsWith("{"));
  if (done.code !== 0 || line === undefined) throw new Error(failure(done, "page_probe.ts"));
  const { studies, pushes, requests } = JSON.parse(line) as {
    studies: string;
    pushes: [number, number | null][];
    requests: string[];
  };
  const times = pushes.map(([at, sentAt]) => ({ at, sentAt }));
  const asked: Record<string, number> = {};
  for (const path of requests) asked[path] = (asked[path] ?? 0) + 1;
  return { studies, ...pushRates(times, from, to), requests: asked };
}

/** How the page probe runs: Chromium may be started, /tmp holds its profile. */
const PAGE_PROBE = ["run", "-q", "--no-prompt", "-P=bench-page", "tools/bench/page_probe.ts"];

/**
 * The dashboard with alerts on and `clients` reading it while the simulated market
 * runs at `rate` (bursts included) for `seconds`, and the real page in Chromium.
 */
export async function dashboardAt(
  ctx: Context,
  run: LiveRun & { readonly clients: readonly ClientSpec[] },
): Promise<DashboardRun> {
  const { rate, seconds } = run;
  const count = Math.round(rate * seconds);
  const alerts = benchAlertSpecs(ctx.symbols);
  const rules = parseAlertSpecs(alerts).length;
  const topic = await ctx.newTopic(3);
  const spawnedAt = Date.now();
  const dashboard = ctx.spawn("deno", ctx.argv.dashboard, {
    env: {
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: ctx.newGroup(),
      DASHBOARD_HOST: "127.0.0.1",
      DASHBOARD_PORT: "0",
      ALERTS: alerts,
    },
    timeoutMs: 180_000 + seconds * 3_000,
    rssEveryMs: seconds > 60 ? 1_000 : 250,
  });
  const watching = new AbortController();
  let produced: Finished | undefined;
  let page: Running | undefined;
  const base = { rate, seconds, rules, alertsOnTopic: null, clients: [], page: null, dropped: 0 };
  try {
    const url = await dashboardUrl(dashboard);
    const clients = await openClients(url, run.clients, watching.signal);
    page = await openPage(ctx, { url, spec: run.clients[0], seconds });
    const before = await cpuTimes();
    const from = Date.now();
    const args = producerArgs(ctx, { feed: { sim: rate }, count, topic });
    produced = await ctx.spawn("deno", args, { timeoutMs: 90_000 + seconds * 3_000 }).finished;
    const to = Date.now();
    const busy = busyPercent(before, await cpuTimes());
    const summary = parseProducerSummary(produced.stdout);
    if (produced.code !== 0 || summary === null) throw new Error(failure(produced, "producer.ts"));
    await drain(clients, summary.acked);
    const pageRun = page && await pageResult(page, from, to);
    watching.abort();
    await Promise.all(clients.map((c) => c.reading));
    const alertsOnTopic = await ctx.recordsOn(alertsTopicOf(topic)).catch(() => null);
    const stopped = await stop(dashboard);
    const received = await receivedAtOf(ctx, topic, summary.acked);
    return runResult({
      base: { ...base, alertsOnTopic, page: pageRun ?? null, machineBusyPercent: busy },
      summary,
      produced,
      stopped,
      clients: clients.map((c) => clientResult(c, { received, from, to })),
      // RSS while the trades came: the first tenth (at most a minute) is start-up.
      rss: {
        from: (from - spawnedAt) / 1000 + Math.min(60, seconds / 10),
        to: (to - spawnedAt) / 1000,
      },
    });
  } catch (error) {
    watching.abort();
    if (page) await stop(page);
    const stopped = await stop(dashboard);
    const message = error instanceof Error ? error.message : String(error);
    return {
      ...base,
      achievedRate: null,
      acked: null,
      latency: failedLatency(rate, message),
      dashboard: { peakMb: stopped.peakRssMb, slopeMbPerMin: null, samples: [] },
      producerPeakRssMb: produced?.peakRssMb ?? null,
      machineBusyPercent: 0,
      error: message,
    };
  }
}

/** The run's figures once the clients, the page and the records are all in. */
function runResult(run: {
  base: Omit<
    DashboardRun,
    "achievedRate" | "acked" | "clients" | "latency" | "dashboard" | "producerPeakRssMb"
  >;
  summary: NonNullable<ReturnType<typeof parseProducerSummary>>;
  produced: Finished;
  stopped: Finished;
  clients: (ClientResult & { missing: number })[];
  /** Seconds since the dashboard started: the span its RSS slope is taken over. */
  rss: { from: number; to: number };
}): DashboardRun {
  const { base, summary, produced, stopped, clients } = run;
  const missing = clients.filter((r) => r.missing > 0)
    .map((r) => `${r.symbol} ${r.window}: ${r.missing} trades never reached a push`);
  const slowest = clients.reduce((a, b) => (b.p99 ?? 0) > (a.p99 ?? 0) ? b : a);
  const { p50, p99, p999 } = slowest;
  return {
    ...base,
    achievedRate: summary.rate,
    acked: summary.acked,
    dropped: summary.dropped,
    clients: clients.map(({ missing: _, ...result }) => result),
    latency: {
      ...failedLatency(base.rate),
      achievedRate: summary.rate,
      dropped: summary.dropped,
      samples: summary.acked - slowest.missing,
      ...{ p50, p99, p999 },
      producerPeakRssMb: produced.peakRssMb,
      consumerPeakRssMb: stopped.peakRssMb,
      machineBusyPercent: base.machineBusyPercent,
    },
    dashboard: {
      peakMb: stopped.peakRssMb,
      slopeMbPerMin: rssSlopeMbPerMin(stopped.rss.filter((s) => s.t <= run.rss.to), run.rss.from),
      samples: stopped.rss.map((s) => Math.round(s.mb)),
    },
    producerPeakRssMb: produced.peakRssMb,
    error: missing.length > 0 ? missing.join("; ") : undefined,
  };
}

function stop(child: Running): Promise<Finished> {
  child.kill("SIGTERM");
  return child.finished;
}

/** Every record's key and received-at header, read back with kcat. */
async function receivedAtOf(ctx: Context, topic: string, count: number) {
  const kcat = new Deno.Command("kcat", {
    args: ["-C", "-b", ctx.brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%h\n"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const byKey = await receivedAtByKey(lines(kcat.stdout));
  await kcat.status;
  const total = [...byKey.values()].reduce((sum, list) => sum + list.length, 0);
  if (total !== count) throw new Error(`kcat read back ${total} records, not ${count}`);
  return byKey;
}
