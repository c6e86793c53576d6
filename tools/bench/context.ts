/**
 * What every measurement of `deno task bench` gets: the Context (the broker, fresh
 * topics and groups, the records file, the commands that run our scripts, the child
 * processes it watches) and how a run of our scripts is read: their summary lines,
 * and why a child failed.
 */

import { type Admin } from "kafkajs";
import { type Config, DEFAULTS } from "../../config.ts";
import { createKafka } from "../../lib/kafka.ts";
import { encodeTrade } from "../../lib/trade.ts";
import { createMarket } from "../../producer/market_sim.ts";
import { ROOT, scriptArgs } from "../scripts.ts";
import { type Finished, PYTHON, type Running, spawnWatched, writeChunks } from "./lib.ts";

/** Where the bench writes its files, relative to the project root (gitignored). */
export const OUT_DIR = "tools/bench/out";

export interface Context {
  /** The project root: children run here, with relative paths as their tasks expect. */
  readonly root: string;
  readonly brokers: string;
  readonly python: string;
  /** Holds the records file and the replayed recordings; our scripts may read it. */
  readonly outDir: string;
  /** `key<TAB>value` lines, encodeTrade output of the simulated market (relative to root). */
  readonly recordsFile: string;
  readonly recordsInFile: number;
  readonly seed: number;
  readonly symbols: readonly string[];
  /** `deno` arguments that run each script as its task does, ready for the script's flags. */
  readonly argv: {
    readonly produce: readonly string[];
    readonly consume: readonly string[];
    readonly dashboard: readonly string[];
    /** tools/bench/kafkajs_baseline.ts with what a consumer may touch, and `outDir` to read. */
    readonly kafkajs: readonly string[];
  };
  /** Environment every child gets (brokers, no colour). */
  readonly env: Readonly<Record<string, string>>;
  /** Aborts when the bench is stopped: no new child starts, the running ones are stopped. */
  readonly signal: AbortSignal;
  newTopic(partitions: number): Promise<string>;
  newGroup(): string;
  /** Records on a topic: the sum of its partitions' end offsets. */
  recordsOn(topic: string): Promise<number>;
  /** Starts and watches a child in `root` with `env`; it is stopped with the bench. */
  spawn(command: string, args: readonly string[], options: ChildOptions): Running;
  readonly log: (line: string) => void;
}

export interface ChildOptions {
  readonly timeoutMs: number;
  readonly env?: Readonly<Record<string, string>>;
  readonly rssEveryMs?: number;
  readonly countLines?: boolean;
}

/** A Context that owns what it made: `close` deletes its topics, groups and files. */
export interface OpenContext extends Context {
  /** Sends `signal` to every running child. */
  killAll(signal: Deno.Signal): void;
  close(): Promise<void>;
}

/** The file kcat, kafka-python and the kafkajs baselines send: what ours generates, encoded. */
function* benchRecords(count: number, seed: number): Generator<string> {
  const market = createMarket({
    symbols: DEFAULTS.SYMBOLS.split(","),
    seed,
    rate: 100_000, // the simulated clock of producer.ts --rate=max
    start: Date.now(),
  });
  for (let done = 0; done < count;) {
    let chunk = "";
    const time = Date.now();
    for (let i = 0; i < 10_000 && done < count; i++, done++) {
      const trade = { ...market.next(), time };
      chunk += `${trade.symbol}\t${encodeTrade(trade, "sim")}\n`;
    }
    yield chunk;
  }
}

/**
 * Each script with its task's permission set; the producer's files are `outDir`
 * (the steady recordings it replays) instead of recordings/. The kafkajs baseline
 * gets the consumer's set, and may read `outDir` (the records file).
 */
function scriptCommands(outDir: string): Context["argv"] {
  const consume = scriptArgs("consume");
  const consumeSet = consume.slice(0, consume.indexOf("consumer.ts"));
  return {
    produce: scriptArgs("produce", { files: outDir }),
    consume,
    dashboard: scriptArgs("dashboard"),
    kafkajs: [...consumeSet, `--allow-read=${outDir}`, "tools/bench/kafkajs_baseline.ts"],
  };
}

/** Connects to `config`'s broker and writes the records file; `signal` stops the children. */
export async function openContext(options: {
  readonly config: Config;
  readonly records: number;
  readonly signal: AbortSignal;
  readonly log: (line: string) => void;
}): Promise<OpenContext> {
  const { config, signal } = options;
  const runId = crypto.randomUUID().slice(0, 8);
  const seed = 42;
  const recordsFile = `${OUT_DIR}/records-${runId}.tsv`;
  await Deno.mkdir(`${ROOT}${OUT_DIR}`, { recursive: true });
  await writeChunks(`${ROOT}${recordsFile}`, benchRecords(options.records, seed));
  const admin: Admin = createKafka(config, "bench").admin();
  await admin.connect();
  const topics: string[] = [];
  const groups: string[] = [];
  const children = new Set<Running>();
  const killAll = (sig: Deno.Signal) => children.forEach((child) => child.kill(sig));
  const onStop = () => {
    options.log("stopping: the runs are stopped, the bench topics deleted");
    killAll("SIGTERM");
  };
  signal.addEventListener("abort", onStop, { once: true });
  const env = { KAFKA_BROKERS: config.brokers[0], SYMBOLS: DEFAULTS.SYMBOLS, NO_COLOR: "1" };
  return {
    root: ROOT,
    brokers: config.brokers[0],
    python: PYTHON,
    outDir: OUT_DIR,
    recordsFile,
    recordsInFile: options.records,
    seed,
    symbols: DEFAULTS.SYMBOLS.split(","),
    argv: scriptCommands(OUT_DIR),
    env,
    signal,
    log: options.log,
    async newTopic(partitions) {
      const topic = `bench-${runId}-${topics.length + 1}`;
      topics.push(topic);
      await admin.createTopics({
        topics: [{ topic, numPartitions: partitions }],
        waitForLeaders: true,
      });
      return topic;
    },
    newGroup() {
      const group = `bench-${runId}-g${groups.length + 1}`;
      groups.push(group);
      return group;
    },
    async recordsOn(topic) {
      const offsets = await admin.fetchTopicOffsets(topic);
      return offsets.reduce((sum, { high }) => sum + Number(high), 0);
    },
    spawn(command, args, child) {
      signal.throwIfAborted();
      const running = spawnWatched(command, [...args], {
        ...child,
        env: { ...env, ...child.env },
        cwd: ROOT,
      });
      children.add(running);
      running.finished.finally(() => children.delete(running));
      return running;
    },
    killAll,
    async close() {
      signal.removeEventListener("abort", onStop);
      // Its own, and those the runs made beside them (a dashboard's <topic>.alerts).
      const made = await admin.listTopics().catch(() => topics);
      const ours = made.filter((topic) => topic.startsWith(`bench-${runId}-`));
      await admin.deleteTopics({ topics: ours }).catch(() => {});
      await admin.deleteGroups(groups).catch(() => {});
      await admin.disconnect();
      await Deno.remove(`${ROOT}${recordsFile}`).catch(() => {});
    },
  };
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

/** Why a child failed: timed out, or its exit code and the last lines it wrote on stderr. */
export function failure(done: Finished, what: string): string {
  if (done.timedOut) return `${what} timed out`;
  const tail = done.stderr.filter((l) => l.trim() !== "").slice(-2);
  return `${what} exited with code ${done.code}${tail.length ? `: ${tail.join(" | ")}` : ""}`;
}
