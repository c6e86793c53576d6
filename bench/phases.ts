/**
 * Each measurement of `deno task bench`, as one function: ours (the real scripts,
 * spawned with their tasks' flags) and the baselines, on fresh topics. Every run
 * is checked (exit code, records on the topic) before its figure is trusted.
 */

import {
  busyPercent,
  cpuTimes,
  type Finished,
  quantile,
  rssSlopeMbPerMin,
  type Running,
  spawnWatched,
  waitForLine,
} from "./lib.ts";
import { type Push, pushLatencies, receivedAtByKey, watchPushes } from "./sse_probe.ts";
import { createMarket } from "../market_sim.ts";
import { toFinnhubFrame } from "../recording.ts";

export interface Context {
  /** The repository: children run here, with relative paths as their tasks expect. */
  readonly root: string;
  readonly brokers: string;
  readonly python: string;
  /** `key<TAB>value` lines, encodeTrade output of the simulated market (relative to root). */
  readonly recordsFile: string;
  readonly recordsInFile: number;
  readonly seed: number;
  readonly symbols: readonly string[];
  /** Task argv (`deno run <flags>`), without the script. */
  readonly argv: {
    readonly produce: string[];
    readonly consume: string[];
    readonly dashboard: string[];
    /** For bench/kafkajs_baseline.ts. */
    readonly kafkajs: string[];
  };
  /** Environment every child gets (brokers, no colour). */
  readonly env: Record<string, string>;
  newTopic(partitions: number): Promise<string>;
  newGroup(): string;
  /** Records on a topic: the sum of its partitions' end offsets. */
  recordsOn(topic: string): Promise<number>;
  readonly log: (line: string) => void;
  /** Children of the bench, so a Ctrl+C can stop them. */
  readonly children: Set<Running>;
}

export interface Throughput {
  readonly client: string;
  readonly records: number;
  readonly seconds: number;
  /** Records per second, or null when the run failed. */
  readonly rate: number | null;
  readonly peakRssMb?: number | null;
  /** The whole machine's CPU use during the run, percent of all cores. */
  readonly machineBusyPercent: number;
  readonly error?: string;
}

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

const number = (text: string) => Number(text.replaceAll(",", ""));

/** `acked N (R/s)` and `dropped N` of producer.ts's summary line. */
export function parseProducerSummary(
  lines: readonly string[],
): { acked: number; rate: number; dropped: number } | null {
  const line = lines.find((l) => l.startsWith("summary: "));
  const match = line && /acked ([\d,]+) \(([\d,]+)\/s\)/.exec(line);
  if (!line || !match) return null;
  const dropped = /dropped ([\d,]+)/.exec(line);
  return {
    acked: number(match[1]),
    rate: number(match[2]),
    dropped: dropped ? number(dropped[1]) : 0,
  };
}

export interface ConsumerSummary {
  records: number;
  seconds: number;
  rate: number;
  samples: number;
  p50: number | null;
  p99: number | null;
  p999: number | null;
}

/** consumer.ts --limit's summary line. */
export function parseConsumerSummary(lines: readonly string[]): ConsumerSummary | null {
  const line = lines.find((l) => l.startsWith("summary: "));
  const read = line && /read ([\d,]+) records in ([\d.]+) s \(([\d,]+) records\/s/.exec(line);
  if (!line || !read) return null;
  const latency = /p50 ([\d.]+) ms, p99 ([\d.]+) ms, p99\.9 ([\d.]+) ms \(([\d,]+) samples\)/
    .exec(line);
  return {
    records: number(read[1]),
    seconds: Number(read[2]),
    rate: number(read[3]),
    samples: latency ? number(latency[4]) : 0,
    p50: latency ? Number(latency[1]) : null,
    p99: latency ? Number(latency[2]) : null,
    p999: latency ? Number(latency[3]) : null,
  };
}

function failure(done: Finished, what: string): string {
  if (done.timedOut) return `${what} timed out`;
  const tail = done.stderr.filter((l) => l.trim() !== "" && !l.includes("--env-file")).slice(-2);
  return `${what} exited with code ${done.code}${tail.length ? `: ${tail.join(" | ")}` : ""}`;
}

function spawn(ctx: Context, command: string, args: string[], timeoutMs: number, env = {}) {
  const running = spawnWatched(command, args, {
    env: { ...ctx.env, ...env },
    cwd: ctx.root,
    timeoutMs,
  });
  ctx.children.add(running);
  running.finished.finally(() => ctx.children.delete(running));
  return running;
}

async function checkOnTopic(
  ctx: Context,
  topic: string,
  expected: number,
): Promise<string | undefined> {
  const on = await ctx.recordsOn(topic);
  return on === expected ? undefined : `${on} records on the topic, not ${expected}`;
}

/** Generous: a tenth of the expected rate, and a minute for start-up. */
const timeoutFor = (records: number, slowRate: number) => 60_000 + records / slowRate * 1000;

// ---------------------------------------------------------------------------
// Producer throughput

export async function produceOurs(
  ctx: Context,
  partitions: number,
  count: number,
): Promise<Throughput> {
  const topic = await ctx.newTopic(partitions);
  const before = await cpuTimes();
  const done = await spawn(
    ctx,
    "deno",
    [
      ...ctx.argv.produce,
      "producer.ts",
      "--source=sim",
      "--rate=max",
      `--limit=${count}`,
      `--topic=${topic}`,
      `--seed=${ctx.seed}`,
      "--status-interval=0",
    ],
    timeoutFor(count, 2_000),
    { KAFKA_PARTITIONS: String(partitions) },
  ).finished;
  const busy = busyPercent(before, await cpuTimes());
  const summary = parseProducerSummary(done.stdout);
  const error = done.code !== 0 || !summary
    ? failure(done, "producer.ts")
    : summary.acked !== count
    ? `acked ${summary.acked}, not ${count}`
    : await checkOnTopic(ctx, topic, count);
  return {
    client: "ours",
    records: count,
    seconds: summary ? count / summary.rate : done.wallMs / 1000,
    rate: error ? null : summary!.rate,
    peakRssMb: done.peakRssMb,
    machineBusyPercent: busy,
    error,
  };
}

export async function produceKcat(
  ctx: Context,
  partitions: number,
): Promise<Throughput & { topic: string }> {
  const topic = await ctx.newTopic(partitions);
  const count = ctx.recordsInFile;
  const before = await cpuTimes();
  // Same guarantees as ours: idempotent, acks from all in-sync replicas, both headers.
  const done = await spawn(ctx, "kcat", [
    "-P",
    "-b",
    ctx.brokers,
    "-t",
    topic,
    "-K",
    "\t",
    "-X",
    "enable.idempotence=true",
    "-X",
    "acks=all",
    "-H",
    `received-at=${Date.now()}`,
    "-H",
    "source=sim",
    "-l",
    ctx.recordsFile,
  ], timeoutFor(count, 20_000)).finished;
  const busy = busyPercent(before, await cpuTimes());
  const error = done.code !== 0 ? failure(done, "kcat") : await checkOnTopic(ctx, topic, count);
  const seconds = done.wallMs / 1000;
  return {
    client: "kcat",
    records: count,
    seconds,
    rate: error ? null : count / seconds,
    peakRssMb: done.peakRssMb,
    machineBusyPercent: busy,
    error,
    topic,
  };
}

/** Runs a baseline that prints {"records", "seconds"} and checks it against the topic. */
async function jsonBaseline(
  ctx: Context,
  client: string,
  command: string,
  args: string[],
  count: number,
  topic: string | null,
  slowRate: number,
): Promise<Throughput> {
  const before = await cpuTimes();
  const done = await spawn(ctx, command, args, timeoutFor(count, slowRate)).finished;
  const busy = busyPercent(before, await cpuTimes());
  let result: { records: number; seconds: number } | undefined;
  try {
    result = JSON.parse(done.stdout.findLast((l) => l.startsWith("{")) ?? "");
  } catch { /* reported below */ }
  const error = done.code !== 0 || !result
    ? failure(done, client)
    : result.records !== count
    ? `${result.records} records, not ${count}`
    : topic
    ? await checkOnTopic(ctx, topic, count)
    : undefined;
  return {
    client,
    records: count,
    seconds: result?.seconds ?? done.wallMs / 1000,
    rate: error || !result ? null : result.records / result.seconds,
    peakRssMb: done.peakRssMb,
    machineBusyPercent: busy,
    error,
  };
}

export async function produceKafkaPython(ctx: Context, partitions: number, count: number) {
  const topic = await ctx.newTopic(partitions);
  const args = ["bench/kafka_python.py", `--brokers=${ctx.brokers}`, "produce", topic];
  return jsonBaseline(
    ctx,
    "kafka-python",
    ctx.python,
    [...args, ctx.recordsFile, String(count)],
    count,
    topic,
    500,
  );
}

/** kafkajs alone: `naive` (one awaited send per trade) or `bare` (batches, nothing else). */
export async function produceKafkajs(
  ctx: Context,
  mode: "naive" | "bare",
  partitions: number,
  count: number,
) {
  const topic = await ctx.newTopic(partitions);
  const args = [...ctx.argv.kafkajs, "bench/kafkajs_baseline.ts", mode, topic, ctx.recordsFile];
  const slowRate = mode === "naive" ? 50 : 2_000;
  return jsonBaseline(
    ctx,
    `kafkajs ${mode}`,
    "deno",
    [...args, String(count)],
    count,
    topic,
    slowRate,
  );
}

// ---------------------------------------------------------------------------
// Consumer throughput

/** A topic holding every record of the bench file (written by kcat: it is fastest). */
export async function prefilledTopic(ctx: Context, partitions: number): Promise<string> {
  const result = await produceKcat(ctx, partitions);
  if (result.error) throw new Error(`filling the consumer's topic: ${result.error}`);
  return result.topic;
}

export async function consumeOurs(ctx: Context, topic: string, count: number): Promise<Throughput> {
  const before = await cpuTimes();
  const done = await spawn(
    ctx,
    "deno",
    [...ctx.argv.consume, "consumer.ts", `--limit=${count}`],
    timeoutFor(count, 5_000),
    { KAFKA_TOPIC: topic, KAFKA_GROUP_ID: ctx.newGroup() },
  ).finished;
  const busy = busyPercent(before, await cpuTimes());
  const summary = parseConsumerSummary(done.stdout);
  const error = done.code !== 0 || !summary
    ? failure(done, "consumer.ts")
    : summary.records !== count
    ? `read ${summary.records}, not ${count}`
    : undefined;
  return {
    client: "ours",
    records: count,
    seconds: summary?.seconds ?? done.wallMs / 1000,
    rate: error ? null : summary!.rate,
    peakRssMb: done.peakRssMb,
    machineBusyPercent: busy,
    error,
  };
}

export async function consumeKcat(ctx: Context, topic: string, count: number): Promise<Throughput> {
  const before = await cpuTimes();
  const running = spawnWatched("kcat", [
    "-C",
    "-b",
    ctx.brokers,
    "-t",
    topic,
    "-o",
    "beginning",
    // Exit after the last record, as ours and kafka-python do (-e would add the
    // broker's fetch wait at the end of each partition).
    "-c",
    String(count),
    "-q",
    "-f",
    "%k\t%s\n",
  ], { env: ctx.env, cwd: ctx.root, timeoutMs: timeoutFor(count, 20_000), countLines: true });
  ctx.children.add(running);
  const done = await running.finished;
  ctx.children.delete(running);
  const busy = busyPercent(before, await cpuTimes());
  const lines = done.lines!;
  const seconds = lines.firstAt !== null && lines.lastAt !== null
    ? (lines.lastAt - lines.firstAt) / 1000
    : 0;
  const error = done.code !== 0
    ? failure(done, "kcat")
    : lines.count !== count
    ? `read ${lines.count}, not ${count}`
    : undefined;
  return {
    client: "kcat",
    records: count,
    seconds,
    rate: error || seconds <= 0 ? null : count / seconds,
    peakRssMb: done.peakRssMb,
    machineBusyPercent: busy,
    error,
  };
}

export function consumeKafkajsBare(ctx: Context, topic: string, count: number) {
  const args = [
    ...ctx.argv.kafkajs,
    "bench/kafkajs_baseline.ts",
    "bare-consume",
    topic,
    ctx.newGroup(),
  ];
  return jsonBaseline(ctx, "kafkajs bare", "deno", [...args, String(count)], count, null, 5_000);
}

export function consumeKafkaPython(ctx: Context, topic: string, count: number) {
  const args = [
    "bench/kafka_python.py",
    `--brokers=${ctx.brokers}`,
    "consume",
    topic,
    ctx.newGroup(),
  ];
  return jsonBaseline(
    ctx,
    "kafka-python",
    ctx.python,
    [...args, String(count)],
    count,
    null,
    2_000,
  );
}

// ---------------------------------------------------------------------------
// End-to-end latency, and memory

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
      rate,
      achievedRate: null,
      dropped: 0,
      samples: 0,
      p50: null,
      p99: null,
      p999: null,
      producerPeakRssMb: produced?.peakRssMb ?? null,
      consumerPeakRssMb: stopped.peakRssMb,
      machineBusyPercent: busy,
      error,
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
