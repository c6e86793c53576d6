/**
 * `deno task bench`: the pipeline measured against a native client (kcat, i.e.
 * librdkafka), the classic Python stack (kafka-python) and kafkajs used naively (and
 * bare: the client alone, the ceiling for anything built on it), in the same
 * run, on the same broker, on fresh topics, with the same records.
 *
 *   deno task bench            the full run (a few minutes), writes tools/bench/results.json
 *   deno task bench --quick    small counts, well under a minute (CI runs it)
 *   deno task bench --long     the full run, with a 10-minute memory run at 5,000/s
 *   --only=producer,consumer,latency,sse,memory   some measurements only
 *   --out=FILE                 where the JSON goes
 *   --repeat=N                 rounds of each throughput run, best counts (default
 *                              2; 1 with --quick)
 *
 * Ours is always the real scripts, spawned with their deno.json tasks' flags:
 * producer.ts (`--source=sim --rate=max|N --limit=N`) and consumer.ts (`--limit=N`,
 * which stops after N records and prints records/s and latency quantiles, or
 * `--dashboard`, read through its SSE stream). See tools/bench/throughput.ts and tools/bench/live.ts
 * for each run, tools/bench/table.ts for the rows of the report.
 */

import { DEFAULTS, loadConfig, readEnv } from "../../config.ts";
import { createKafka } from "../../lib/kafka.ts";
import { KAFKA_VERSION, probeKafka } from "../broker/launcher.ts";
import { readTasks, taskCommand } from "../demo.ts";
import { createMarket } from "../../producer/market_sim.ts";
import { encodeTrade } from "../../lib/trade.ts";
import { formatCount } from "../../lib/format_old.ts";
import {
  busyProcesses,
  describeMachine,
  type OtherLoad,
  PYTHON,
  type Running,
  watchOthers,
} from "./lib.ts";
import type { Context } from "./context.ts";
import {
  consumeKafkajsBare,
  consumeKafkaPython,
  consumeKcat,
  consumeOurs,
  prefilledTopic,
  produceKafkajs,
  produceKafkaPython,
  produceKcat,
  produceOurs,
  type Throughput,
} from "./throughput.ts";
import { type Latency, latencyAt, memoryAt, ssePushAt } from "./live.ts";
import { latencyRow, memoryRows, renderTable, type Row, throughputRow } from "./table.ts";

export interface Plan {
  readonly mode: "quick" | "full" | "long";
  /** Records in the bench file: what ours and kcat produce, and the consumer's topic. */
  readonly records: number;
  readonly pythonRecords: number;
  readonly naiveRecords: number;
  readonly latencyRates: readonly number[];
  readonly latencySeconds: number;
  readonly sseRate: number;
  readonly sseSeconds: number;
  readonly memoryRate: number;
  readonly memorySeconds: number;
  /** Rounds of every throughput run; each client's best round counts (others share the machine). */
  readonly repeat: number;
}

const FULL: Plan = {
  mode: "full",
  records: 1_000_000,
  pythonRecords: 200_000,
  naiveRecords: 10_000,
  latencyRates: [1_000, 10_000, 50_000],
  latencySeconds: 20,
  sseRate: 1_000,
  sseSeconds: 20,
  memoryRate: 5_000,
  memorySeconds: 60,
  repeat: 2,
};

export const PLANS: Readonly<Record<Plan["mode"], Plan>> = {
  quick: {
    mode: "quick",
    records: 20_000,
    pythonRecords: 5_000,
    naiveRecords: 500,
    latencyRates: [1_000, 10_000, 50_000],
    latencySeconds: 2,
    sseRate: 1_000,
    sseSeconds: 3,
    memoryRate: 5_000,
    memorySeconds: 3,
    repeat: 1,
  },
  full: FULL,
  // The full run, plus memory watched for 10 minutes.
  long: { ...FULL, mode: "long", memorySeconds: 600 },
};

const PHASES = ["producer", "consumer", "latency", "sse", "memory"] as const;
type Phase = typeof PHASES[number];

export interface Flags {
  plan: Plan;
  out: string;
  only: ReadonlySet<Phase>;
}

export function parseFlags(args: readonly string[]): Flags {
  let mode: Plan["mode"] = "full";
  let out: string | undefined;
  let repeat: number | undefined;
  let only: Set<Phase> = new Set(PHASES);
  for (const arg of args) {
    if (arg === "--quick" || arg === "--long") {
      if (mode !== "full") throw new Error("--quick and --long exclude each other");
      mode = arg === "--quick" ? "quick" : "long";
    } else if (arg.startsWith("--out=") && arg.length > 6) out = arg.slice(6);
    else if (/^--repeat=[1-9]$/.test(arg)) repeat = Number(arg.slice(9));
    else if (arg.startsWith("--only=")) {
      only = new Set();
      for (const name of arg.slice(7).split(",")) {
        if (!PHASES.includes(name as Phase)) {
          throw new Error(`--only: "${name}" is not one of ${PHASES.join(", ")}`);
        }
        only.add(name as Phase);
      }
    } else throw new Error(`unknown argument "${arg}" (see the top of bench.ts)`);
  }
  // A quick run must not overwrite the committed results of a full one.
  out ??= mode === "quick" ? "tools/bench/out/results-quick.json" : "tools/bench/results.json";
  return { plan: { ...PLANS[mode], repeat: repeat ?? PLANS[mode].repeat }, out, only };
}

// ---------------------------------------------------------------------------

const ROOT = new URL("../../", import.meta.url).pathname;
const OUT_DIR = "tools/bench/out";

/** The file kcat, kafka-python and naive kafkajs send: what ours generates, encoded. */
async function writeRecords(path: string, count: number, seed: number): Promise<void> {
  const market = createMarket({
    symbols: DEFAULTS.SYMBOLS.split(","),
    seed,
    rate: 100_000, // the simulated clock of producer.ts --rate=max
    start: Date.now(),
  });
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const encoder = new TextEncoder();
  for (let done = 0; done < count;) {
    let chunk = "";
    const time = Date.now();
    for (let i = 0; i < 10_000 && done < count; i++, done++) {
      const trade = { ...market.next(), time };
      chunk += `${trade.symbol}\t${encodeTrade(trade, "sim")}\n`;
    }
    const bytes = encoder.encode(chunk);
    for (let written = 0; written < bytes.length;) {
      written += await file.write(bytes.subarray(written));
    }
  }
}

/** The kafkajs version deno.json pins (`npm:kafkajs@2.2.4`). */
async function kafkajsVersion(): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  return /@([^@]+)$/.exec(config?.imports?.kafkajs ?? "")?.[1] ?? "unknown";
}

async function checkTools(): Promise<void> {
  const missing: string[] = [];
  const works = async (command: string, args: string[]) => {
    try {
      return (await new Deno.Command(command, { args, stdout: "null", stderr: "null" }).output())
        .success;
    } catch {
      return false;
    }
  };
  if (!await works("kcat", ["-V"])) missing.push("kcat (apt-get install kcat)");
  if (!await works(PYTHON, ["-c", "import kafka"])) {
    missing.push(`kafka-python for ${PYTHON} (apt-get install python3-kafka)`);
  }
  if (missing.length > 0) throw new Error(`the baselines need ${missing.join(" and ")}`);
}

/** Runs the bench; resolves to the exit code (1 when any run failed). */
export async function run(args: readonly string[]): Promise<number> {
  let flags: Flags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    return 2;
  }
  const { plan, only } = flags;
  const config = loadConfig({ KAFKA_BROKERS: readEnv().KAFKA_BROKERS });
  const brokers = config.brokers[0];
  const [host, port] = [brokers.slice(0, brokers.lastIndexOf(":")), brokers.split(":").at(-1)];
  if (await probeKafka(host, Number(port)) !== "kafka") {
    console.error(`error: no Kafka at ${brokers} (start it with: deno task kafka)`);
    return 1;
  }
  try {
    await checkTools();
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    return 1;
  }
  const tasks = await readTasks();
  // Each task's own flags. --env-file is left out: the bench sets every variable
  // its children read, so a .env aimed at another broker cannot split the run.
  const argvOf = (task: string) => {
    const argv = taskCommand(tasks, task);
    const script = argv.findIndex((word) => word.endsWith(".ts"));
    return argv.slice(1, script).filter((flag) => flag !== "--env-file");
  };
  const consume = argvOf("consume");
  const runId = crypto.randomUUID().slice(0, 8);
  const topics: string[] = [];
  const groups: string[] = [];
  const kafka = createKafka(config, "bench");
  const admin = kafka.admin();
  await admin.connect();
  const children = new Set<Running>();
  const log = (line: string) => console.error(line);

  const onSignal = async () => {
    log("stopping: killing the runs, deleting the bench topics");
    for (const child of children) child.kill("SIGTERM");
    await admin.deleteTopics({ topics }).catch(() => {});
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  await Deno.mkdir(`${ROOT}${OUT_DIR}`, { recursive: true });
  const recordsFile = `${OUT_DIR}/records-${runId}.tsv`;
  const seed = 42;
  log(`bench (${plan.mode}): machine and what else is running…`);
  const [machine, busyBefore] = await Promise.all([
    describeMachine(KAFKA_VERSION, await kafkajsVersion()),
    busyProcesses(plan.mode === "quick" ? 500 : 2_000),
  ]);
  await writeRecords(`${ROOT}${recordsFile}`, plan.records, seed);
  const others = watchOthers(plan.mode === "quick" ? 2_000 : 5_000);
  const ctx: Context = {
    root: ROOT,
    brokers,
    python: PYTHON,
    recordsFile,
    recordsInFile: plan.records,
    seed,
    symbols: DEFAULTS.SYMBOLS.split(","),
    argv: {
      produce: argvOf("produce"),
      consume,
      dashboard: argvOf("dashboard"),
      // The kafkajs baselines need what a consumer needs (network, kafkajs' variables)
      // and to read the records file.
      kafkajs: [...consume.filter((f) => !f.startsWith("--allow-read")), `--allow-read=${OUT_DIR}`],
    },
    env: { KAFKA_BROKERS: brokers, SYMBOLS: DEFAULTS.SYMBOLS, NO_COLOR: "1" },
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
    log,
    children,
  };

  const rows: Row[] = [];
  const runs: Record<string, unknown> = {};
  let otherLoad: OtherLoad | undefined;
  const show = (what: string, run: { rate?: number | null; error?: string }) =>
    log(`  ${what}: ${run.error ? `FAILED (${run.error})` : `${formatCount(run.rate ?? 0)}/s`}`);
  try {
    if (only.has("producer")) {
      for (const partitions of [1, 3]) {
        log(`producer throughput, ${partitions} partition${partitions > 1 ? "s" : ""}:`);
        const results: Throughput[] = [];
        const measure = async (what: string, run: () => Promise<Throughput>) => {
          const result = await run();
          show(what, result);
          results.push(result);
        };
        // Rounds of every client in turn, so each sees the machine as the others did.
        for (let round = 1; round <= plan.repeat; round++) {
          await measure(
            `ours (${formatCount(plan.records)})`,
            () => produceOurs(ctx, partitions, plan.records),
          );
          await measure(`kcat (${formatCount(plan.records)})`, async () => {
            const { topic: _, ...result } = await produceKcat(ctx, partitions);
            return result;
          });
          await measure(
            `kafka-python (${formatCount(plan.pythonRecords)})`,
            () => produceKafkaPython(ctx, partitions, plan.pythonRecords),
          );
          await measure(
            `kafkajs naive (${formatCount(plan.naiveRecords)})`,
            () => produceKafkajs(ctx, "naive", partitions, plan.naiveRecords),
          );
          await measure(
            `kafkajs bare (${formatCount(plan.records)})`,
            () => produceKafkajs(ctx, "bare", partitions, plan.records),
          );
        }
        runs[`producer-${partitions}p`] = results;
        rows.push(throughputRow(
          `producer-${partitions}p`,
          `producer, ${partitions} partition${partitions > 1 ? "s" : ""} (trades/s)`,
          "trades/s",
          results,
          { kcat: 0.5, "kafka-python": 5 },
        ));
      }
    }
    if (only.has("consumer")) {
      log(`consumer throughput, ${formatCount(plan.records)} records on 3 partitions:`);
      const topic = await prefilledTopic(ctx, 3);
      const results: Throughput[] = [];
      for (let round = 1; round <= plan.repeat; round++) {
        for (
          const consume of [consumeOurs, consumeKcat, consumeKafkaPython, consumeKafkajsBare]
        ) {
          const result = await consume(ctx, topic, plan.records);
          show(result.client, result);
          results.push(result);
        }
      }
      runs.consumer = results;
      rows.push(throughputRow(
        "consumer",
        `consumer, ${formatCount(plan.records)} records (records/s)`,
        "records/s",
        results,
        { kcat: 0.5 },
      ));
    }
    if (only.has("latency")) {
      const targets: Record<number, number> = { 1_000: 20, 10_000: 100 };
      const results: Latency[] = [];
      for (const rate of plan.latencyRates) {
        log(`end-to-end latency at ${formatCount(rate)} trades/s for ${plan.latencySeconds} s:`);
        const result = await latencyAt(ctx, rate, plan.latencySeconds);
        log(
          `  ${
            result.error
              ? `FAILED (${result.error})`
              : `p50/p99/p99.9 ${result.p50}/${result.p99}/${result.p999} ms`
          }`,
        );
        results.push(result);
        rows.push(latencyRow(
          `e2e-${rate}`,
          `e2e latency, steady ${formatCount(rate)}/s (reached ${
            formatCount(result.achievedRate ?? 0)
          }/s${result.dropped > 0 ? `, ${formatCount(result.dropped)} dropped` : ""})`,
          result,
          targets[rate],
        ));
      }
      runs.latency = results;
    }
    if (only.has("sse")) {
      log(
        `dashboard push latency at ${formatCount(plan.sseRate)} trades/s for ${plan.sseSeconds} s:`,
      );
      const result = await ssePushAt(ctx, plan.sseRate, plan.sseSeconds);
      log(
        `  ${
          result.error
            ? `FAILED (${result.error})`
            : `p50/p99/p99.9 ${result.p50}/${result.p99}/${result.p999} ms`
        }`,
      );
      runs.sse = result;
      rows.push(latencyRow(
        "sse-push",
        `SSE push latency, steady ${formatCount(plan.sseRate)}/s`,
        result,
        100,
      ));
    }
    if (only.has("memory")) {
      log(`memory at ${formatCount(plan.memoryRate)} trades/s for ${plan.memorySeconds} s:`);
      const result = await memoryAt(ctx, plan.memoryRate, plan.memorySeconds);
      const peak = (mb: number | null) => mb === null ? "?" : `${Math.round(mb)} MB`;
      log(
        `  ${
          result.error
            ? `FAILED (${result.error})`
            : `peak RSS producer ${peak(result.producer.peakMb)}, consumer ${
              peak(result.consumer.peakMb)
            }`
        }`,
      );
      runs.memory = result;
      rows.push(...memoryRows(result, 150, plan.memorySeconds >= 300 ? 1 : 5));
    }
  } finally {
    otherLoad = await others.stop();
    await admin.deleteTopics({ topics }).catch(() => {});
    await admin.deleteGroups(groups).catch(() => {});
    await admin.disconnect();
    await Deno.remove(`${ROOT}${recordsFile}`).catch(() => {});
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }

  const table = renderTable(rows);
  const before = busyBefore.map((p) => `${p.name} ${p.cpuPercent}%`).join(", ") || "nothing";
  const during = otherLoad === undefined || otherLoad.windows === 0
    ? "not sampled"
    : `mean ${otherLoad.meanPercent}%, worst ${
      otherLoad.windowMs / 1000
    } s ${otherLoad.maxPercent}%` +
      ` (${
        otherLoad.byCommand.slice(0, 4).map((c) => `${c.name} ${c.meanPercent}%`).join(", ") ||
        "nothing"
      })`;
  console.log(
    `\n${table}\n\nmachine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGb} GB, ` +
      `${machine.os}; Deno ${machine.deno}, Kafka ${machine.kafka} (local, 1 broker), ` +
      `kcat ${machine.kcat} (librdkafka ${machine.librdkafka}), kafka-python ${machine.kafkaPython}\n` +
      `CPU of other processes, % of one core (the broker counts here too, whoever it served):\n` +
      `  before the run: ${before}\n  during the run: ${during}`,
  );
  const failed = rows.flatMap((row) => row.errors.map((error) => `${row.id}: ${error}`));
  for (const line of failed) console.error(`error: ${line}`);
  const results = {
    benchmark: "market-stream pipeline vs kcat, kafka-python, kafkajs (naive and bare)",
    mode: plan.mode,
    date: new Date().toISOString(),
    rerun: `deno task bench${plan.mode === "full" ? "" : ` --${plan.mode}`}`,
    machine,
    otherProcesses: { before: busyBefore, during: otherLoad },
    plan,
    rows,
    runs,
  };
  const outPath = flags.out.startsWith("/") ? flags.out : `${ROOT}${flags.out}`;
  await Deno.writeTextFile(outPath, JSON.stringify(results, null, 2) + "\n");
  console.log(`\nwrote ${flags.out}`);
  return failed.length > 0 ? 1 : 0;
}

export async function main(args: string[]): Promise<void> {
  // kafkajs keeps timers of its own: leave as soon as the report is written.
  Deno.exit(await run(args));
}

if (import.meta.main) await main(Deno.args);
