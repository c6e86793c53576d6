/**
 * Live measurements of `deno task bench`: producer and consumer running together at a
 * set rate, for end-to-end latency and memory (the dashboard's are in dashboard.ts). Every
 * run is checked (exit codes, records read against records acked) before its figure
 * is trusted.
 */

import { createMarket } from "../../producer/market_sim.ts";
import { toFinnhubFrame } from "../../producer/recording.ts";
import {
  busyPercent,
  cpuTimes,
  type Finished,
  rssSlopeMbPerMin,
  waitForLine,
  writeChunks,
} from "./lib.ts";
import { type Context, failure, parseConsumerSummary, parseProducerSummary } from "./context.ts";

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

/** A live run: trades at `rate` per second for `seconds`. */
export interface LiveRun {
  readonly rate: number;
  readonly seconds: number;
}

/**
 * What feeds the producer: the simulated market at an average rate (bursty, like a
 * market), or a recording of it replayed at a steady rate.
 */
export type Feed = { readonly sim: number } | { readonly replay: string };

export function producerArgs(
  ctx: Context,
  run: { feed: Feed; count: number; topic: string },
): string[] {
  const { feed, count, topic } = run;
  const source = "sim" in feed
    ? ["--source=sim", `--rate=${feed.sim}`, `--seed=${ctx.seed}`]
    : [`--replay=${feed.replay}`];
  return [
    ...ctx.argv.produce,
    ...source,
    `--limit=${count}`,
    `--topic=${topic}`,
    "--status-interval=0",
  ];
}

/** Frames of the recording format (recording.ts) every this many ms. */
const STEADY_FRAME_MS = 5;

/**
 * A recording of the simulated market at exactly `rate` trades per second: a frame
 * every 5 ms, the trades spread evenly, in chunks of about 1 MB. Marked `sim`, so are
 * its records. `made.count` is the number of trades once it is written.
 */
function* steadyFrames(ctx: Context, run: LiveRun, made: { count: number }): Generator<string> {
  const start = Date.now();
  const market = createMarket({ symbols: ctx.symbols, seed: ctx.seed, rate: run.rate, start });
  const frames = Math.round(run.seconds * 1000 / STEADY_FRAME_MS);
  const perFrame = run.rate * STEADY_FRAME_MS / 1000;
  let chunk = "";
  for (let i = 0; i < frames; i++) {
    const at = start + i * STEADY_FRAME_MS;
    const trades = [];
    for (const end = Math.round((i + 1) * perFrame); made.count < end; made.count++) {
      trades.push({ ...market.next(), time: at });
    }
    if (trades.length > 0) {
      chunk += JSON.stringify({ at, source: "sim", frame: toFinnhubFrame(trades) }) + "\n";
    }
    if (chunk.length > 1_000_000 || i === frames - 1) {
      yield chunk;
      chunk = "";
    }
  }
}

/** A steady recording for `run` in the bench's folder, removed on dispose. */
async function steadyFeed(ctx: Context, run: LiveRun) {
  const path = `${ctx.outDir}/steady-${crypto.randomUUID().slice(0, 8)}.ndjson`;
  const made = { count: 0 };
  await writeChunks(`${ctx.root}${path}`, steadyFrames(ctx, run, made));
  return {
    feed: { replay: path },
    count: made.count,
    [Symbol.asyncDispose]: () => Deno.remove(`${ctx.root}${path}`).catch(() => {}),
  };
}

/** A consumer with --limit, started and joined; then the producer with `feed`. */
async function pipeline(
  ctx: Context,
  run: { feed: Feed; rate: number; count: number; rssEveryMs?: number },
) {
  const { feed, rate, count, rssEveryMs = 200 } = run;
  const topic = await ctx.newTopic(3);
  const timeoutMs = 90_000 + count / rate * 3_000;
  const consumer = ctx.spawn("deno", [...ctx.argv.consume, `--limit=${count}`], {
    env: { KAFKA_TOPIC: topic, KAFKA_GROUP_ID: ctx.newGroup() },
    timeoutMs,
    rssEveryMs,
  });
  try {
    await waitForLine(consumer, (line) => line.startsWith("ready: "), 60_000);
  } catch (error) {
    consumer.kill("SIGTERM");
    await consumer.finished;
    throw new Error(`consumer.ts did not join: ${(error as Error).message}`);
  }
  const before = await cpuTimes();
  const producer = ctx.spawn("deno", producerArgs(ctx, { feed, count, topic }), {
    timeoutMs,
    rssEveryMs,
  });
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

/** received-at -> applied, at a steady `rate` (a replayed recording of the simulated market). */
export async function latencyAt(ctx: Context, run: LiveRun): Promise<Latency> {
  const { rate } = run;
  await using steady = await steadyFeed(ctx, run);
  const count = steady.count;
  let result;
  try {
    result = await pipeline(ctx, { feed: steady.feed, rate, count });
  } catch (error) {
    return failedLatency(rate, (error as Error).message);
  }
  const { produced, consumed, busy } = result;
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
export async function memoryAt(ctx: Context, run: LiveRun): Promise<Memory> {
  const { rate, seconds } = run;
  const count = Math.round(rate * seconds);
  const rssEveryMs = seconds > 60 ? 1_000 : 250;
  let result;
  try {
    result = await pipeline(ctx, { feed: { sim: rate }, rate, count, rssEveryMs });
  } catch (error) {
    const none = { peakMb: null, slopeMbPerMin: null, samples: [] };
    const message = (error as Error).message;
    return { rate, seconds, producer: none, consumer: none, machineBusyPercent: 0, error: message };
  }
  const { produced, consumed, busy } = result;
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

/** A Latency with no figures: for a run that failed (`error`), or to fill in. */
export function failedLatency(rate: number, error?: string): Latency {
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
