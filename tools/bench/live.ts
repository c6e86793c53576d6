/**
 * Live measurements of `deno task bench`: producer and consumer running together at a
 * set rate, for end-to-end latency, memory, and the dashboard's SSE push latency. Every
 * run is checked (exit codes, records read against records acked) before its figure
 * is trusted.
 */

import {
  busyPercent,
  cpuTimes,
  type Finished,
  quantile,
  rssSlopeMbPerMin,
  spawnWatched,
  waitForLine,
} from "./lib.ts";
import { type Push, pushLatencies, receivedAtByKey, watchPushes } from "./sse_probe.ts";
import { type Context, failure, parseConsumerSummary, parseProducerSummary } from "./context.ts";
import { createMarket } from "../../producer/market_sim.ts";
import { toFinnhubFrame } from "../../producer/recording.ts";

export interface Latency {
  readonly rate: number;
  /** Trades per second the producer reached (acked / its run time). */
  readonly achievedRate: number | null;
  /** Trades the producer dropped (its queue full: the pipeline could not keep the rate). */
  readonly dropped: number;
  readonly samples: number;
  readonly p50: number | null;
  readonly p99: number | null;
  readonly p999: number | null;
  readonly producerPeakRssMb: number | null;
  readonly consumerPeakRssMb: number | null;
  readonly machineBusyPercent: number;
  readonly error?: string;
}

export interface Memory {
  readonly rate: number;
  readonly seconds: number;
  readonly producer: { peakMb: number | null; slopeMbPerMin: number | null; samples: number[] };
  readonly consumer: { peakMb: number | null; slopeMbPerMin: number | null; samples: number[] };
  readonly machineBusyPercent: number;
  readonly error?: string;
}

/**
 * What feeds the producer: the simulated market at an average rate (bursty, like a
 * market), or a recording of it replayed at a steady rate.
 */
export type Feed = { readonly sim: number } | { readonly replay: string };

function producerArgs(ctx: Context, feed: Feed, count: number, topic: string): string[] {
  const source = "sim" in feed
    ? ["--source=sim", `--rate=${feed.sim}`, `--seed=${ctx.seed}`]
    : [`--replay=${feed.replay}`];
  return [
    ...ctx.argv.produce,
    "producer.ts",
    ...source,
    `--limit=${count}`,
    `--topic=${topic}`,
    "--status-interval=0",
  ];
}

/** Frames of the recording format (recording.ts) every this many ms. */
const STEADY_FRAME_MS = 5;

/**
 * A recording of the simulated market at exactly `rate` trades per second: a
 * frame every 5 ms, the trades spread evenly. Marked `sim`, so are its records.
 */
export async function writeSteadyRecording(
  path: string,
  symbols: readonly string[],
  seed: number,
  rate: number,
  seconds: number,
): Promise<number> {
  const start = Date.now();
  const market = createMarket({ symbols, seed, rate, start });
  const frames = Math.round(seconds * 1000 / STEADY_FRAME_MS);
  const perFrame = rate * STEADY_FRAME_MS / 1000;
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const encoder = new TextEncoder();
  let made = 0;
  let chunk = "";
  for (let i = 0; i < frames; i++) {
    const at = start + i * STEADY_FRAME_MS;
    const trades = [];
    for (const end = Math.round((i + 1) * perFrame); made < end; made++) {
      trades.push({ ...market.next(), time: at });
    }
    if (trades.length > 0) {
      chunk += JSON.stringify({ at, source: "sim", frame: toFinnhubFrame(trades) }) + "\n";
    }
    if (chunk.length > 1_000_000 || i === frames - 1) {
      const bytes = encoder.encode(chunk);
      for (let written = 0; written < bytes.length;) {
        written += await file.write(bytes.subarray(written));
      }
      chunk = "";
    }
  }
  return made;
}

/** A consumer with --limit, started and joined; then the producer with `feed`. */
async function pipeline(
  ctx: Context,
  feed: Feed,
  rate: number,
  count: number,
  rssEveryMs = 200,
) {
  const topic = await ctx.newTopic(3);
  const timeoutMs = 90_000 + count / rate * 3_000;
  const consumer = spawnWatched("deno", [...ctx.argv.consume, "consumer.ts", `--limit=${count}`], {
    env: { ...ctx.env, KAFKA_TOPIC: topic, KAFKA_GROUP_ID: ctx.newGroup() },
    cwd: ctx.root,
    timeoutMs,
    rssEveryMs,
  });
  ctx.children.add(consumer);
  consumer.finished.finally(() => ctx.children.delete(consumer));
  try {
    await waitForLine(consumer, (line) => line.startsWith("ready: "), 60_000);
  } catch (error) {
    consumer.kill("SIGTERM");
    await consumer.finished;
    throw new Error(`consumer.ts did not join: ${(error as Error).message}`);
  }
  const before = await cpuTimes();
  const producer = spawnWatched("deno", producerArgs(ctx, feed, count, topic), {
    env: ctx.env,
    cwd: ctx.root,
    timeoutMs,
    rssEveryMs,
  });
  ctx.children.add(producer);
  producer.finished.finally(() => ctx.children.delete(producer));
  const produced = await producer.finished;
  // Everything is on the topic now: the consumer has a bounded time to read it. When
  // the producer dropped trades (queue full) the consumer's --limit is out of reach:
  // it is stopped once it has had the time to read what was acked.
  const summary = parseProducerSummary(produced.stdout);
  const grace = produced.code !== 0 ? 0 : summary && summary.acked < count ? 15_000 : 60_000;
  const graceTimer = setTimeout(() => consumer.kill("SIGTERM"), grace);
  const consumed = await consumer.finished;
  clearTimeout(graceTimer);
  return { produced, consumed, busy: busyPercent(before, await cpuTimes()) };
}

/** A steady recording for `rate` x `seconds` under recordings/ (the produce task reads there). */
async function steadyFeed(ctx: Context, rate: number, seconds: number) {
  const path = `recordings/bench-${crypto.randomUUID().slice(0, 8)}.ndjson`;
  const count = await writeSteadyRecording(
    `${ctx.root}${path}`,
    ctx.symbols,
    ctx.seed,
    rate,
    seconds,
  );
  return {
    feed: { replay: path },
    count,
    [Symbol.asyncDispose]: () => Deno.remove(`${ctx.root}${path}`).catch(() => {}),
  };
}

/** received-at -> applied, at a steady `rate` (a replayed recording of the simulated market). */
export async function latencyAt(ctx: Context, rate: number, seconds: number): Promise<Latency> {
  await using steady = await steadyFeed(ctx, rate, seconds);
  const count = steady.count;
  let run;
  try {
    run = await pipeline(ctx, steady.feed, rate, count);
  } catch (error) {
    return failedLatency(rate, (error as Error).message);
  }
  const { produced, consumed, busy } = run;
  const producerSummary = parseProducerSummary(produced.stdout);
  const summary = parseConsumerSummary(consumed.stdout);
  const error = produced.code !== 0 || !producerSummary
    ? failure(produced, "producer.ts")
    : consumed.code !== 0 || !summary
    ? failure(consumed, "consumer.ts")
    : summary.records !== producerSummary.acked
    ? `consumer read ${summary.records} of the ${producerSummary.acked} acked`
    : summary.samples === 0
    ? "no latency samples"
    : undefined;
  return {
    rate,
    achievedRate: producerSummary?.rate ?? null,
    dropped: producerSummary?.dropped ?? 0,
    samples: summary?.samples ?? 0,
    p50: error ? null : summary!.p50,
    p99: error ? null : summary!.p99,
    p999: error ? null : summary!.p999,
    producerPeakRssMb: produced.peakRssMb,
    consumerPeakRssMb: consumed.peakRssMb,
    machineBusyPercent: busy,
    error,
  };
}

/** RSS of both scripts with the simulated market at `rate` on average (bursts included). */
export async function memoryAt(ctx: Context, rate: number, seconds: number): Promise<Memory> {
  const count = Math.round(rate * seconds);
  const every = seconds > 60 ? 1_000 : 250;
  let run;
  try {
    run = await pipeline(ctx, { sim: rate }, rate, count, every);
  } catch (error) {
    const none = { peakMb: null, slopeMbPerMin: null, samples: [] };
    const message = (error as Error).message;
    return { rate, seconds, producer: none, consumer: none, machineBusyPercent: 0, error: message };
  }
  const { produced, consumed, busy } = run;
  const summary = parseConsumerSummary(consumed.stdout);
  const acked = parseProducerSummary(produced.stdout)?.acked;
  const error = produced.code !== 0 || acked === undefined
    ? failure(produced, "producer.ts")
    : consumed.code !== 0 || !summary
    ? failure(consumed, "consumer.ts")
    : summary.records !== acked
    ? `consumer read ${summary.records} of the ${acked} acked`
    : undefined;
  // Start-up (imports, first batches) is not growth: the slope starts after a tenth.
  const warmup = Math.min(60, seconds / 10);
  const describe = (done: Finished) => ({
    peakMb: done.peakRssMb,
    slopeMbPerMin: rssSlopeMbPerMin(done.rss, warmup),
    samples: done.rss.map((s) => Math.round(s.mb)),
  });
  return {
    rate,
    seconds,
    producer: describe(produced),
    consumer: describe(consumed),
    machineBusyPercent: busy,
    error,
  };
}

function failedLatency(rate: number, error: string): Latency {
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
    error,
  };
}

/** Trade received by the producer -> the dashboard's SSE push read by a client (steady rate). */
export async function ssePushAt(ctx: Context, rate: number, seconds: number): Promise<Latency> {
  await using steady = await steadyFeed(ctx, rate, seconds);
  const count = steady.count;
  const topic = await ctx.newTopic(3);
  const consumer = spawnWatched("deno", [...ctx.argv.dashboard, "consumer.ts", "--dashboard"], {
    env: {
      ...ctx.env,
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: ctx.newGroup(),
      DASHBOARD_HOST: "127.0.0.1",
      DASHBOARD_PORT: "0",
    },
    cwd: ctx.root,
    timeoutMs: 120_000 + seconds * 3_000,
  });
  ctx.children.add(consumer);
  consumer.finished.finally(() => ctx.children.delete(consumer));
  const stopWatching = new AbortController();
  const pushes: Push[] = [];
  let error: string | undefined;
  let produced: Finished | undefined;
  let busy = 0;
  try {
    const line = await waitForLine(consumer, (l) => l.startsWith("dashboard: "), 60_000);
    const url = line.slice("dashboard: ".length).trim();
    // Connected means joined: from then on, every trade produced is charted.
    const deadline = Date.now() + 60_000;
    while ((await fetch(`${url}healthz`).then((r) => (r.body?.cancel(), r.status))) !== 200) {
      if (Date.now() > deadline) {
        throw new Error("the dashboard never reported a connected consumer");
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const watching = watchPushes(`${url}events`, stopWatching.signal, (push) => pushes.push(push));
    const before = await cpuTimes();
    const producer = spawnWatched("deno", producerArgs(ctx, steady.feed, count, topic), {
      env: ctx.env,
      cwd: ctx.root,
      timeoutMs: 90_000 + seconds * 3_000,
    });
    ctx.children.add(producer);
    produced = await producer.finished;
    ctx.children.delete(producer);
    busy = busyPercent(before, await cpuTimes());
    if (produced.code !== 0) throw new Error(failure(produced, "producer.ts"));
    // The last pushes: wait until every trade is counted (or give up after 10 s).
    const total = () => {
      const last = new Map<string, number>();
      for (const push of pushes) for (const [s, n] of push.trades) last.set(s, n);
      return [...last.values()].reduce((sum, n) => sum + n, 0);
    };
    const until = Date.now() + 10_000;
    while (total() < count && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    stopWatching.abort();
    await watching;
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  } finally {
    stopWatching.abort();
    consumer.kill("SIGTERM");
  }
  const stopped = await consumer.finished;
  if (error) {
    return {
      ...failedLatency(rate, error),
      producerPeakRssMb: produced?.peakRssMb ?? null,
      consumerPeakRssMb: stopped.peakRssMb,
      machineBusyPercent: busy,
    };
  }
  const producerSummary = parseProducerSummary(produced!.stdout);
  let received: Map<string, number[]>;
  try {
    received = await receivedAtOf(ctx, topic, producerSummary?.acked ?? count);
  } catch (e) {
    received = new Map();
    error = e instanceof Error ? e.message : String(e);
  }
  const { latencies, missing } = pushLatencies(pushes, received);
  return {
    rate,
    achievedRate: producerSummary?.rate ?? null,
    dropped: producerSummary?.dropped ?? 0,
    samples: latencies.length,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    p999: quantile(latencies, 0.999),
    producerPeakRssMb: produced!.peakRssMb,
    consumerPeakRssMb: stopped.peakRssMb,
    machineBusyPercent: busy,
    error: error ?? (missing > 0 ? `${missing} trades never reached a push` : undefined),
  };
}

/** Every record's key and received-at header, read back with kcat. */
async function receivedAtOf(ctx: Context, topic: string, count: number) {
  const output = await new Deno.Command("kcat", {
    args: ["-C", "-b", ctx.brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%h\n"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const byKey = receivedAtByKey(new TextDecoder().decode(output.stdout));
  const total = [...byKey.values()].reduce((sum, list) => sum + list.length, 0);
  if (total !== count) throw new Error(`kcat read back ${total} records, not ${count}`);
  return byKey;
}
