/**
 * Throughput measurements of `deno task bench`: producing and consuming as fast as
 * possible, ours (the real scripts, spawned with their tasks' flags) and the baselines
 * (kcat, kafka-python, kafkajs), on fresh topics. Every run is checked (exit code,
 * records on the topic) before its figure is trusted.
 */

import { busyPercent, cpuTimes, spawnWatched } from "./lib.ts";
import { type Context, failure, parseConsumerSummary, parseProducerSummary } from "./context.ts";

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
  const args = ["tools/bench/kafka_python.py", `--brokers=${ctx.brokers}`, "produce", topic];
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
  const args = [
    ...ctx.argv.kafkajs,
    "tools/bench/kafkajs_baseline.ts",
    mode,
    topic,
    ctx.recordsFile,
  ];
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
    "tools/bench/kafkajs_baseline.ts",
    "bare-consume",
    topic,
    ctx.newGroup(),
  ];
  return jsonBaseline(ctx, "kafkajs bare", "deno", [...args, String(count)], count, null, 5_000);
}

export function consumeKafkaPython(ctx: Context, topic: string, count: number) {
  const args = [
    "tools/bench/kafka_python.py",
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
