/**
 * Throughput measurements of `deno task bench`: producing and consuming as fast as
 * possible, ours (the real scripts, run with their tasks' permission sets) and the
 * baselines (kcat, kafka-python, kafkajs), on fresh topics. Every run is checked
 * (exit code, records on the topic) before its figure is trusted.
 */

import { busyPercent, cpuTimes, type Finished } from "./lib.ts";
import {
  type ChildOptions,
  type Context,
  failure,
  parseConsumerSummary,
  parseProducerSummary,
} from "./context.ts";

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

/** A producer run: `count` records onto a fresh topic of `partitions`. */
export interface ProduceRun {
  readonly partitions: number;
  readonly count: number;
}

/** A consumer run: `count` records read from `topic`. */
export interface ConsumeRun {
  readonly topic: string;
  readonly count: number;
}

interface Child extends Omit<ChildOptions, "timeoutMs"> {
  readonly command: string;
  readonly args: readonly string[];
  /** Records it handles, and the slowest rate it could be expected to reach. */
  readonly count: number;
  readonly slowRate: number;
}

/**
 * Runs a child to its end: how it ended, and the machine's CPU use meanwhile. Its
 * timeout is generous: the time at a tenth of the expected rate, plus a minute.
 */
async function runChild(ctx: Context, child: Child): Promise<{ done: Finished; busy: number }> {
  const { command, args, count, slowRate, ...options } = child;
  const before = await cpuTimes();
  const timeoutMs = 60_000 + count / slowRate * 1000;
  const done = await ctx.spawn(command, args, { ...options, timeoutMs }).finished;
  return { done, busy: busyPercent(before, await cpuTimes()) };
}

async function checkOnTopic(
  ctx: Context,
  topic: string,
  expected: number,
): Promise<string | undefined> {
  const on = await ctx.recordsOn(topic);
  return on === expected ? undefined : `${on} records on the topic, not ${expected}`;
}

// ---------------------------------------------------------------------------
// Producer throughput

export async function produceOurs(ctx: Context, run: ProduceRun): Promise<Throughput> {
  const { partitions, count } = run;
  const topic = await ctx.newTopic(partitions);
  const { done, busy } = await runChild(ctx, {
    command: "deno",
    args: [
      ...ctx.argv.produce,
      "--source=sim",
      "--rate=max",
      `--limit=${count}`,
      `--topic=${topic}`,
      `--seed=${ctx.seed}`,
      "--status-interval=0",
    ],
    env: { KAFKA_PARTITIONS: String(partitions) },
    count,
    slowRate: 2_000,
  });
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

/** kcat sends the whole records file (`run.count` is its length). */
export async function produceKcat(ctx: Context, run: ProduceRun): Promise<Throughput> {
  const { topic: _, ...result } = await kcatOnto(ctx, run.partitions);
  return result;
}

/** The records file onto a fresh topic with kcat: the run, and the topic. */
async function kcatOnto(
  ctx: Context,
  partitions: number,
): Promise<Throughput & { topic: string }> {
  const topic = await ctx.newTopic(partitions);
  const count = ctx.recordsInFile;
  // Same guarantees as ours: idempotent, acks from all in-sync replicas, both headers.
  const { done, busy } = await runChild(ctx, {
    command: "kcat",
    args: [
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
    ],
    count,
    slowRate: 20_000,
  });
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

/**
 * Runs a baseline that prints {"records", "seconds"} and checks its count (and,
 * for a producer, the records on `topic`).
 */
async function jsonBaseline(
  ctx: Context,
  baseline: Child & { readonly client: string; readonly topic?: string },
): Promise<Throughput> {
  const { client, topic, count } = baseline;
  const { done, busy } = await runChild(ctx, baseline);
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

const KAFKA_PYTHON = "tools/bench/kafka_python.py";

export async function produceKafkaPython(ctx: Context, run: ProduceRun): Promise<Throughput> {
  const topic = await ctx.newTopic(run.partitions);
  const count = String(run.count);
  return jsonBaseline(ctx, {
    client: "kafka-python",
    command: ctx.python,
    args: [KAFKA_PYTHON, `--brokers=${ctx.brokers}`, "produce", topic, ctx.recordsFile, count],
    topic,
    count: run.count,
    slowRate: 500,
  });
}

/** kafkajs alone: `naive` (one awaited send per trade) or `bare` (batches, nothing else). */
export async function produceKafkajs(
  ctx: Context,
  run: ProduceRun & { readonly mode: "naive" | "bare" },
): Promise<Throughput> {
  const topic = await ctx.newTopic(run.partitions);
  return jsonBaseline(ctx, {
    client: `kafkajs ${run.mode}`,
    command: "deno",
    args: [...ctx.argv.kafkajs, run.mode, topic, ctx.recordsFile, String(run.count)],
    topic,
    count: run.count,
    slowRate: run.mode === "naive" ? 50 : 2_000,
  });
}

// ---------------------------------------------------------------------------
// Consumer throughput

/** A topic holding every record of the bench file (written by kcat: it is fastest). */
export async function prefilledTopic(ctx: Context, partitions: number): Promise<string> {
  const result = await kcatOnto(ctx, partitions);
  if (result.error) throw new Error(`filling the consumer's topic: ${result.error}`);
  return result.topic;
}

export async function consumeOurs(ctx: Context, run: ConsumeRun): Promise<Throughput> {
  const { topic, count } = run;
  const { done, busy } = await runChild(ctx, {
    command: "deno",
    args: [...ctx.argv.consume, `--limit=${count}`],
    env: { KAFKA_TOPIC: topic, KAFKA_GROUP_ID: ctx.newGroup() },
    count,
    slowRate: 5_000,
  });
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

export async function consumeKcat(ctx: Context, run: ConsumeRun): Promise<Throughput> {
  const { topic, count } = run;
  const { done, busy } = await runChild(ctx, {
    command: "kcat",
    // Exit after the last record (-c), as ours and kafka-python do (-e would add the
    // broker's fetch wait at the end of each partition).
    args: [
      ...["-C", "-b", ctx.brokers, "-t", topic, "-o", "beginning", "-c", String(count)],
      ...["-q", "-f", "%k\t%s\n"],
    ],
    countLines: true,
    count,
    slowRate: 20_000,
  });
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

export function consumeKafkajsBare(ctx: Context, run: ConsumeRun): Promise<Throughput> {
  return jsonBaseline(ctx, {
    client: "kafkajs bare",
    command: "deno",
    args: [...ctx.argv.kafkajs, "bare-consume", run.topic, ctx.newGroup(), String(run.count)],
    count: run.count,
    slowRate: 5_000,
  });
}

export function consumeKafkaPython(ctx: Context, run: ConsumeRun): Promise<Throughput> {
  const { topic, count } = run;
  return jsonBaseline(ctx, {
    client: "kafka-python",
    command: ctx.python,
    args: [KAFKA_PYTHON, `--brokers=${ctx.brokers}`, "consume", topic, ctx.newGroup(), `${count}`],
    count,
    slowRate: 2_000,
  });
}
