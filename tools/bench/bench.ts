/**
 * `deno task bench`: the pipeline measured against a native client (kcat, i.e.
 * librdkafka), the classic Python stack (kafka-python) and kafkajs used naively (and
 * bare: the client alone, the ceiling for anything built on it), in the same
 * run, on the same broker, on fresh topics, with the same records.
 *
 * Ours is always the real scripts, run with their tasks' permission sets
 * (tools/scripts.ts): producer.ts (`--source=sim --rate=max|N --limit=N`, or
 * `--replay` of a steady recording) and consumer.ts (`--limit=N`, which stops after
 * N records and prints records/s and latency quantiles, or `--dashboard`, read
 * through its SSE stream). The steps: the plan, the tools, the context
 * (context.ts), each phase (throughput.ts, live.ts), the report (table.ts).
 *
 * Exit codes: 0 when every run worked, 1 when one failed (or Kafka or a baseline
 * tool is missing), 2 for a bad flag, 130 when stopped by a signal (nothing written).
 */

import kafkajs from "kafkajs/package.json" with { type: "json" };
import { type Config, loadConfig, parseHostPort, readEnv } from "../../config.ts";
import { exitCodeFor, parseFlags, positive, stopOnSignals, UsageError } from "../../lib/cli.ts";
import { formatCount } from "../../lib/format.js";
import { KAFKA_VERSION, probeKafka } from "../broker/native.ts";
import { ROOT } from "../scripts.ts";
import { type Context, type OpenContext, openContext, OUT_DIR } from "./context.ts";
import {
  type BusyProcess,
  busyProcesses,
  describeMachine,
  type Machine,
  type OtherLoad,
  PYTHON,
  watchOthers,
} from "./lib.ts";
import { type Latency, latencyAt, memoryAt } from "./live.ts";
import { benchClients, dashboardAt } from "./dashboard.ts";
import {
  dashboardLines,
  dashboardRows,
  latencyRow,
  memoryRows,
  renderTable,
  type Row,
  throughputRow,
} from "./table.ts";
import {
  consumeKafkajsBare,
  consumeKafkaPython,
  consumeKcat,
  consumeOurs,
  type ConsumeRun,
  prefilledTopic,
  produceKafkajs,
  produceKafkaPython,
  produceKcat,
  produceOurs,
  type ProduceRun,
  type Throughput,
} from "./throughput.ts";

const USAGE = `usage: deno task bench [--quick | --long] [--only=PHASES] [--out=FILE] [--repeat=N]

  (none)        the full run (a few minutes), writes tools/bench/results.json
  --quick       small counts, well under a minute (CI runs it)
  --long        the full run, with 10-minute dashboard and memory runs
  --only=LIST   some measurements only: producer,consumer,latency,sse,memory
                (sse: the dashboard with alerts and SSE clients, at 10,000 trades/s)
  --out=FILE    where the JSON goes (default: tools/bench/results.json; with --quick
                ${OUT_DIR}/results-quick.json, so a quick run never overwrites the committed
                results); the bench task may write only those two places
  --repeat=N    rounds of each throughput run, best counts (1-9; default 2, 1 with --quick)
  --help        this text`;

interface Plan {
  readonly mode: "quick" | "full" | "long";
  /** Records in the bench file: what ours and kcat produce, and the consumer's topic. */
  readonly records: number;
  readonly pythonRecords: number;
  readonly naiveRecords: number;
  readonly latencyRates: readonly number[];
  readonly latencySeconds: number;
  /** The dashboard (sse) phase: its simulated market's rate, and how long it runs. */
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
  sseRate: 10_000,
  sseSeconds: 300,
  memoryRate: 5_000,
  memorySeconds: 60,
  repeat: 2,
};

const PLANS: Readonly<Record<Plan["mode"], Plan>> = {
  quick: {
    mode: "quick",
    records: 20_000,
    pythonRecords: 5_000,
    naiveRecords: 500,
    latencyRates: [1_000, 10_000, 50_000],
    latencySeconds: 2,
    sseRate: 10_000,
    sseSeconds: 3,
    memoryRate: 5_000,
    memorySeconds: 3,
    repeat: 1,
  },
  full: FULL,
  // The full run, with the dashboard and memory watched for 10 minutes.
  long: { ...FULL, mode: "long", sseSeconds: 600, memorySeconds: 600 },
};

const PHASES = ["producer", "consumer", "latency", "sse", "memory"] as const;
type Phase = typeof PHASES[number];

interface Flags {
  readonly plan: Plan;
  readonly out: string;
  readonly only: ReadonlySet<Phase>;
  readonly help: boolean;
}

const FLAGS = {
  quick: { type: "boolean" },
  long: { type: "boolean" },
  only: { type: "string" },
  out: { type: "string" },
  repeat: { type: "string" },
  help: { type: "boolean" },
} as const;

/** The bench's flags as a plan; a UsageError for a mistake. */
export function parseBenchFlags(args: readonly string[]): Flags {
  const flags = parseFlags(args, FLAGS);
  if (flags.quick && flags.long) throw new UsageError("--quick and --long exclude each other");
  const mode = flags.quick ? "quick" : flags.long ? "long" : "full";
  const repeat = flags.repeat === undefined
    ? PLANS[mode].repeat
    : positive("repeat", flags.repeat, { integer: true });
  if (repeat > 9) throw new UsageError(`--repeat: ${repeat} rounds is more than 9`);
  const only = flags.only?.split(",") ?? PHASES;
  for (const name of only) {
    if (!PHASES.includes(name as Phase)) {
      throw new UsageError(`--only: "${name}" is not one of ${PHASES.join(", ")}`);
    }
  }
  if (flags.out === "") throw new UsageError("--out needs a file name");
  return {
    plan: { ...PLANS[mode], repeat },
    // A quick run must not overwrite the committed results of a full one.
    out: flags.out ??
      (mode === "quick" ? `${OUT_DIR}/results-quick.json` : "tools/bench/results.json"),
    only: new Set(only as Phase[]),
    help: flags.help ?? false,
  };
}

// ---------------------------------------------------------------------------
// Before measuring: Kafka, and the baselines' tools

/** KAFKA_BROKERS (one broker), answering as Kafka. */
async function requireKafka(): Promise<Config> {
  const config = loadConfig({ KAFKA_BROKERS: readEnv().KAFKA_BROKERS });
  const broker = config.brokers[0];
  const { host, port } = parseHostPort(broker, "KAFKA_BROKERS", "127.0.0.1:9092");
  if (await probeKafka(host, port) !== "kafka") {
    throw new Error(`no Kafka at ${broker} (start it with: deno task kafka)`);
  }
  return config;
}

async function checkTools(): Promise<void> {
  const works = async (command: string, args: string[]) => {
    try {
      return (await new Deno.Command(command, { args, stdout: "null", stderr: "null" }).output())
        .success;
    } catch {
      return false;
    }
  };
  const missing: string[] = [];
  if (!await works("kcat", ["-V"])) missing.push("kcat (apt-get install kcat)");
  if (!await works(PYTHON, ["-c", "import kafka"])) {
    missing.push(`kafka-python for ${PYTHON} (apt-get install python3-kafka)`);
  }
  if (missing.length > 0) throw new Error(`the baselines need ${missing.join(" and ")}`);
}

// ---------------------------------------------------------------------------
// The phases: each measures, logs a line a run, and returns its rows

interface Measured {
  readonly rows: Row[];
  readonly runs: Record<string, unknown>;
}

function showRate(ctx: Context, what: string, run: Throughput): void {
  ctx.log(`  ${what}: ${run.error ? `FAILED (${run.error})` : `${formatCount(run.rate ?? 0)}/s`}`);
}

function showLatency(ctx: Context, run: Latency): void {
  const { error, p50, p99, p999 } = run;
  ctx.log(`  ${error ? `FAILED (${error})` : `p50/p99/p99.9 ${p50}/${p99}/${p999} ms`}`);
}

const plural = (n: number, word: string) => `${n} ${word}${n > 1 ? "s" : ""}`;

async function producerPhase(ctx: Context, plan: Plan): Promise<Measured> {
  const n = formatCount;
  const clients: [string, (run: ProduceRun) => Promise<Throughput>][] = [
    [`ours (${n(plan.records)})`, (run) => produceOurs(ctx, run)],
    [`kcat (${n(plan.records)})`, (run) => produceKcat(ctx, run)],
    [
      `kafka-python (${n(plan.pythonRecords)})`,
      (run) => produceKafkaPython(ctx, { ...run, count: plan.pythonRecords }),
    ],
    [
      `kafkajs naive (${n(plan.naiveRecords)})`,
      (run) => produceKafkajs(ctx, { ...run, mode: "naive", count: plan.naiveRecords }),
    ],
    [`kafkajs bare (${n(plan.records)})`, (run) => produceKafkajs(ctx, { ...run, mode: "bare" })],
  ];
  const measured: Measured = { rows: [], runs: {} };
  for (const partitions of [1, 3]) {
    ctx.log(`producer throughput, ${plural(partitions, "partition")}:`);
    const results: Throughput[] = [];
    // Rounds of every client in turn, so each sees the machine as the others did.
    for (let round = 1; round <= plan.repeat; round++) {
      for (const [what, produce] of clients) {
        const result = await produce({ partitions, count: plan.records });
        showRate(ctx, what, result);
        results.push(result);
      }
    }
    const id = `producer-${partitions}p`;
    measured.runs[id] = results;
    measured.rows.push(throughputRow(results, {
      id,
      label: `producer, ${plural(partitions, "partition")} (trades/s)`,
      unit: "trades/s",
      targets: { kcat: 0.5, "kafka-python": 5 },
    }));
  }
  return measured;
}

async function consumerPhase(ctx: Context, plan: Plan): Promise<Measured> {
  ctx.log(`consumer throughput, ${formatCount(plan.records)} records on 3 partitions:`);
  const run: ConsumeRun = { topic: await prefilledTopic(ctx, 3), count: plan.records };
  const results: Throughput[] = [];
  for (let round = 1; round <= plan.repeat; round++) {
    for (const consume of [consumeOurs, consumeKcat, consumeKafkaPython, consumeKafkajsBare]) {
      const result = await consume(ctx, run);
      showRate(ctx, result.client, result);
      results.push(result);
    }
  }
  const row = throughputRow(results, {
    id: "consumer",
    label: `consumer, ${formatCount(plan.records)} records (records/s)`,
    unit: "records/s",
    targets: { kcat: 0.5 },
  });
  return { rows: [row], runs: { consumer: results } };
}

async function latencyPhase(ctx: Context, plan: Plan): Promise<Measured> {
  const maxP99: Record<number, number> = { 1_000: 20, 10_000: 100 };
  const measured = { rows: [] as Row[], runs: { latency: [] as Latency[] } };
  for (const rate of plan.latencyRates) {
    ctx.log(`end-to-end latency at ${formatCount(rate)} trades/s for ${plan.latencySeconds} s:`);
    const result = await latencyAt(ctx, { rate, seconds: plan.latencySeconds });
    showLatency(ctx, result);
    measured.runs.latency.push(result);
    const dropped = result.dropped > 0 ? `, ${formatCount(result.dropped)} dropped` : "";
    measured.rows.push(latencyRow(result, {
      id: `e2e-${rate}`,
      label: `e2e latency, steady ${formatCount(rate)}/s (reached ${
        formatCount(result.achievedRate ?? 0)
      }/s${dropped})`,
      maxP99: maxP99[rate],
    }));
  }
  return measured;
}

async function ssePhase(ctx: Context, plan: Plan): Promise<Measured> {
  const { sseRate: rate, sseSeconds: seconds } = plan;
  const clients = benchClients(ctx.symbols);
  ctx.log(
    `dashboard with alerts, ${clients.length} SSE clients and the page in Chromium, ` +
      `sim ${formatCount(rate)} trades/s for ${seconds} s:`,
  );
  const result = await dashboardAt(ctx, { rate, seconds, clients });
  for (const line of dashboardLines(result)) ctx.log(`  ${line}`);
  // The consumer's memory plus the server's: 200 MB; flat as the memory phase judges it.
  const flatMbPerMin = seconds >= 300 ? 1 : 5;
  const limits = { maxPerSecond: 20, maxP99: 100, maxMb: 200, flatMbPerMin };
  const rows = dashboardRows(result, limits);
  return { rows, runs: { sse: result } };
}

async function memoryPhase(ctx: Context, plan: Plan): Promise<Measured> {
  const { memoryRate: rate, memorySeconds: seconds } = plan;
  ctx.log(`memory at ${formatCount(rate)} trades/s for ${seconds} s:`);
  const result = await memoryAt(ctx, { rate, seconds });
  const peak = (mb: number | null) => mb === null ? "?" : `${Math.round(mb)} MB`;
  const { producer, consumer } = result;
  ctx.log(
    `  ${
      result.error
        ? `FAILED (${result.error})`
        : `peak RSS producer ${peak(producer.peakMb)}, consumer ${peak(consumer.peakMb)}`
    }`,
  );
  const rows = memoryRows(result, { maxMb: 150, flatMbPerMin: seconds >= 300 ? 1 : 5 });
  return { rows, runs: { memory: result } };
}

const PHASE_RUNS: Readonly<Record<Phase, (ctx: Context, plan: Plan) => Promise<Measured>>> = {
  producer: producerPhase,
  consumer: consumerPhase,
  latency: latencyPhase,
  sse: ssePhase,
  memory: memoryPhase,
};

/** Runs the chosen phases in order; a stop signal ends it between runs. */
async function measure(ctx: Context, flags: Flags): Promise<Measured> {
  const measured: Measured = { rows: [], runs: {} };
  for (const phase of PHASES) {
    if (!flags.only.has(phase)) continue;
    const { rows, runs } = await PHASE_RUNS[phase](ctx, flags.plan);
    ctx.signal.throwIfAborted();
    measured.rows.push(...rows);
    Object.assign(measured.runs, runs);
  }
  return measured;
}

// ---------------------------------------------------------------------------
// The report

interface Report extends Measured {
  readonly plan: Plan;
  readonly machine: Machine;
  readonly busyBefore: readonly BusyProcess[];
  readonly otherLoad: OtherLoad;
}

function describeReport(report: Report): string {
  const { machine, busyBefore, otherLoad: load } = report;
  const before = busyBefore.map((p) => `${p.name} ${p.cpuPercent}%`).join(", ") || "nothing";
  const busiest = load.byCommand.slice(0, 4).map((c) => `${c.name} ${c.meanPercent}%`);
  const during = load.windows === 0
    ? "not sampled"
    : `mean ${load.meanPercent}%, worst ${load.windowMs / 1000} s ${load.maxPercent}%` +
      ` (${busiest.join(", ") || "nothing"})`;
  return `\n${renderTable(report.rows)}\n\n` +
    `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGb} GB, ` +
    `${machine.os}; Deno ${machine.deno}, Kafka ${machine.kafka} (local, 1 broker), ` +
    `kcat ${machine.kcat} (librdkafka ${machine.librdkafka}), kafka-python ${machine.kafkaPython}\n` +
    `CPU of other processes, % of one core (the broker counts here too, whoever it served):\n` +
    `  before the run: ${before}\n  during the run: ${during}`;
}

/** Prints the table, writes the JSON to `out`; the exit code (1 when a run failed). */
async function writeReport(report: Report, out: string): Promise<number> {
  console.log(describeReport(report));
  const failed = report.rows.flatMap((row) => row.errors.map((error) => `${row.id}: ${error}`));
  for (const line of failed) console.error(`error: ${line}`);
  const { plan, machine, busyBefore, otherLoad, rows, runs } = report;
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
  const path = out.startsWith("/") ? out : `${ROOT}${out}`;
  await Deno.writeTextFile(path, JSON.stringify(results, null, 2) + "\n");
  console.log(`\nwrote ${out}`);
  return failed.length > 0 ? 1 : 0;
}

// ---------------------------------------------------------------------------

export async function main(args: string[]): Promise<number> {
  let ctx: OpenContext | undefined;
  // The second Ctrl+C: the runs are killed outright.
  using stop = stopOnSignals(() => ctx?.killAll("SIGKILL"));
  try {
    const flags = parseBenchFlags(args);
    if (flags.help) {
      console.log(USAGE);
      return 0;
    }
    const { plan } = flags;
    // Found now, not after minutes of measuring.
    if (Deno.permissions.querySync({ name: "write", path: flags.out }).state !== "granted") {
      throw new UsageError(
        `--out: the bench task may not write ${flags.out}: use tools/bench/results.json or ` +
          `a file in ${OUT_DIR}/ (or widen the "write" permissions of the bench set in deno.json)`,
      );
    }
    const config = await requireKafka();
    await checkTools();
    const log = (line: string) => console.error(line);
    log(`bench (${plan.mode}): machine and what else is running…`);
    const [machine, busyBefore] = await Promise.all([
      describeMachine(KAFKA_VERSION, kafkajs.version),
      busyProcesses(plan.mode === "quick" ? 500 : 2_000),
    ]);
    ctx = await openContext({ config, records: plan.records, signal: stop.signal, log });
    const others = watchOthers(plan.mode === "quick" ? 2_000 : 5_000);
    let measured: Measured;
    let otherLoad: OtherLoad;
    try {
      measured = await measure(ctx, flags);
    } finally {
      otherLoad = await others.stop();
      await ctx.close();
    }
    return await writeReport({ ...measured, plan, machine, busyBefore, otherLoad }, flags.out);
  } catch (error) {
    if (!stop.signal.aborted) return exitCodeFor(error);
    console.error("bench: stopped; no results written");
    return 130;
  }
}

// kafkajs keeps timers of its own: the entry line exits as soon as the report is written.
if (import.meta.main) Deno.exit(await main(Deno.args));
