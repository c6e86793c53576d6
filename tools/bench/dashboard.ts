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
import { formatInterval } from "../../lib/format.js";
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
import { type Latency, type LiveRun, producerArgs } from "./live.ts";
import {
  maxPushesIn,
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

export interface DashboardRun extends LiveRun {
  readonly rules: number;
  readonly achievedRate: number | null;
  readonly acked: number | null;
  readonly dropped: number;
  /** Records on `<topic>.alerts`: every alert the consumer fired. */
  readonly alertsOnTopic: number | null;
  readonly clients: readonly ClientResult[];
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

/** The figures of one client once its pushes and the records are all in. */
function clientResult(
  client: Client,
  run: { received: ReadonlyMap<string, readonly number[]>; from: number; to: number },
): ClientResult & { missing: number } {
  const { pushes, spec } = client;
  const sent = pushes.map((p) => p.sentAt ?? p.at);
  const during = sent.filter((t) => t >= run.from && t <= run.to).length;
  const { latencies, missing } = pushLatencies(pushes, run.received);
  return {
    ...spec,
    pushes: pushes.length,
    maxPerSecond: maxPushesIn(sent, 1_000),
    maxPerSecondArrived: maxPushesIn(pushes.map((p) => p.at), 1_000),
    meanPerSecond: Math.round(during / Math.max(0.001, (run.to - run.from) / 1000) * 10) / 10,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    p999: quantile(latencies, 0.999),
    alerts: pushes.reduce((sum, p) => sum + p.alerts, 0),
    applied: tradesPushed(pushes),
    missing,
  };
}

/** One line a client for the log: what the report's table holds, per client. */
export function describeClient(c: ClientResult, acked: number | null): string {
  const latency = c.p99 === null ? "no latency" : `p50/p99 ${c.p50}/${c.p99} ms`;
  return `${c.symbol} ${formatInterval(c.intervalMs)}/${c.window}: ${c.pushes} pushes, ` +
    `at most ${c.maxPerSecond} in 1 s (${c.maxPerSecondArrived} as read), mean ` +
    `${c.meanPerSecond}/s; ${latency}; ${c.alerts} alerts; ` +
    `${c.applied} of ${acked ?? "?"} acked trades applied`;
}

/**
 * The dashboard with alerts on and `clients` reading it while the simulated market
 * runs at `rate` (bursts included) for `seconds`.
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
  const base = { rate, seconds, rules, alertsOnTopic: null, clients: [], dropped: 0 };
  try {
    const url = await dashboardUrl(dashboard);
    const clients = await openClients(url, run.clients, watching.signal);
    const before = await cpuTimes();
    const from = Date.now();
    const args = producerArgs(ctx, { feed: { sim: rate }, count, topic });
    produced = await ctx.spawn("deno", args, { timeoutMs: 90_000 + seconds * 3_000 }).finished;
    const to = Date.now();
    const busy = busyPercent(before, await cpuTimes());
    const summary = parseProducerSummary(produced.stdout);
    if (produced.code !== 0 || summary === null) throw new Error(failure(produced, "producer.ts"));
    await drain(clients, summary.acked);
    watching.abort();
    await Promise.all(clients.map((c) => c.reading));
    const alertsOnTopic = await ctx.recordsOn(alertsTopicOf(topic)).catch(() => null);
    const stopped = await stop(dashboard);
    const received = await receivedAtOf(ctx, topic, summary.acked);
    const results = clients.map((c) => clientResult(c, { received, from, to }));
    const missing = results.filter((r) => r.missing > 0)
      .map((r) => `${r.symbol} ${r.window}: ${r.missing} trades never reached a push`);
    const slowest = results.reduce((a, b) => (b.p99 ?? 0) > (a.p99 ?? 0) ? b : a);
    // RSS while the trades came: the first tenth (at most a minute) is start-up.
    const inRun = stopped.rss.filter((s) => s.t <= (to - spawnedAt) / 1000);
    const warm = (from - spawnedAt) / 1000 + Math.min(60, seconds / 10);
    return {
      ...base,
      achievedRate: summary.rate,
      acked: summary.acked,
      dropped: summary.dropped,
      alertsOnTopic,
      clients: results.map(({ missing: _, ...result }) => result),
      latency: {
        rate,
        achievedRate: summary.rate,
        dropped: summary.dropped,
        samples: summary.acked - slowest.missing,
        p50: slowest.p50,
        p99: slowest.p99,
        p999: slowest.p999,
        producerPeakRssMb: produced.peakRssMb,
        consumerPeakRssMb: stopped.peakRssMb,
        machineBusyPercent: busy,
      },
      dashboard: {
        peakMb: stopped.peakRssMb,
        slopeMbPerMin: rssSlopeMbPerMin(inRun, warm),
        samples: stopped.rss.map((s) => Math.round(s.mb)),
      },
      producerPeakRssMb: produced.peakRssMb,
      machineBusyPercent: busy,
      error: missing.length > 0 ? missing.join("; ") : undefined,
    };
  } catch (error) {
    watching.abort();
    const stopped = await stop(dashboard);
    const message = error instanceof Error ? error.message : String(error);
    return {
      ...base,
      achievedRate: null,
      acked: null,
      latency: { ...noLatency(rate), error: message },
      dashboard: { peakMb: stopped.peakRssMb, slopeMbPerMin: null, samples: [] },
      producerPeakRssMb: produced?.peakRssMb ?? null,
      machineBusyPercent: 0,
      error: message,
    };
  }
}

function noLatency(rate: number): Latency {
  return {
    rate,
    achievedRate: null,
    dropped: 0,
    samples: 0,
    p50: null,
    p99: null,
    p999: null,
    producerPeakRssMb: null,
    consumerPeakRssMb: null,
    machineBusyPercent: 0,
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
