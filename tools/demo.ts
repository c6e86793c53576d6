/**
 * `deno task demo`: the whole pipeline with one command.
 *
 * 1. Makes sure a broker runs: reuses the one at KAFKA_BROKERS, or starts the local
 *    one (`deno task kafka`), and creates the topic if it is missing.
 * 2. Starts the dashboard (`deno task dashboard`) and, once it listens, the producer
 *    (`deno task produce`: the simulated market without FINNHUB_TOKEN, Finnhub with
 *    one). Each runs as its task runs it: its script with its permission set from
 *    deno.json and `.env` (tools/scripts.ts), as a child process of the demo.
 * 3. Prints the dashboard's URL, and the children's lines, prefixed with their name.
 * 4. Ctrl+C (or SIGTERM) stops what it started: the producer flushes, the consumer
 *    commits, and a broker the demo started is stopped again (unless --keep-broker).
 *    A second Ctrl+C, or a child still running after 20 s, makes the children quit
 *    at once (a second signal means that to them).
 *
 * Exit codes: 0 after a clean stop, 2 for a bad flag or variable (or a port that is
 * not Kafka), 1 when a step or a child failed.
 */

import { type Config, loadConfig, parseHostPort, readEnv } from "../config.ts";
import { unlessAborted } from "../lib/async.ts";
import { exitCodeFor, parseFlags, stopOnSignals, UsageError } from "../lib/cli.ts";
import { createKafka, ensureTopic } from "../lib/kafka.ts";
import { lines } from "../lib/lines.ts";
import { isLoopback } from "../lib/net.ts";
import { probeKafka } from "./broker/native.ts";
import { ROOT, type Script, scriptArgs } from "./scripts.ts";

const USAGE = `usage: deno task demo [--keep-broker]

  --keep-broker  leave a broker this demo started running after Ctrl+C
  --help         this text`;

const FLAGS = { "keep-broker": { type: "boolean" }, help: { type: "boolean" } } as const;

/** How long the children get to flush and commit before they are told to quit now. */
const STOP_DEADLINE_MS = 20_000;
/** How long a child told to quit now may take before it is killed. */
const KILL_AFTER_MS = 5_000;
const URL_WAIT_MS = 60_000;

export async function main(args: string[]): Promise<number> {
  try {
    const flags = parseFlags(args, FLAGS);
    if (flags.help) {
      console.log(USAGE);
      return 0;
    }
    const config = loadConfig(readEnv());
    // The second Ctrl+C: the children quit now (a second signal means that to them too).
    using stop = stopOnSignals(() => children.signalAll("SIGTERM"));
    const children = new Children(stop.signal);
    const startedBroker = await ensureBroker(config);
    if (stop.signal.aborted) return 0;
    await ensureDemoTopic(config);
    console.log(describeSource(config));
    const url = await startDashboard(children, !isLoopback(config.dashboardHost));
    if (!children.stopping.aborted) children.start("produce");
    if (url !== undefined && !children.stopping.aborted) printUrl(url, config);
    await untilAborted(children.stopping);
    const failure = await children.stop();
    if (startedBroker && !flags["keep-broker"]) await stopBroker();
    if (failure !== undefined) throw new Error(failure);
    console.log("demo: stopped");
    return 0;
  } catch (error) {
    return exitCodeFor(error);
  }
}

// ---------------------------------------------------------------------------
// The steps

/**
 * A broker at KAFKA_BROKERS: one that answers is reused; a remote one is not ours
 * to start (the children connect, and report, themselves); else the local one is
 * started with `deno task kafka`. True when this demo started it.
 */
async function ensureBroker(config: Config): Promise<boolean> {
  const first = config.brokers[0];
  const { host, port } = parseHostPort(first, "KAFKA_BROKERS", "127.0.0.1:9092");
  const probe = isLoopback(host) ? await probeKafka(host, port) : "kafka";
  if (probe === "other") {
    throw new UsageError(`${first} answers, but not as Kafka: set KAFKA_BROKERS`);
  }
  if (probe === "kafka") {
    console.log(`broker: Kafka at ${config.brokers.join(",")}`);
    return false;
  }
  console.log(`broker: none at ${first}; starting one (deno task kafka)`);
  const { code } = await startTask("kafka").done;
  if (code !== 0) {
    const message = "the broker did not start (see the lines above)";
    throw code === 2 ? new UsageError(message) : new Error(message);
  }
  return true;
}

/** The topic before the consumer: a consumer that starts first must not find none. */
async function ensureDemoTopic(config: Config): Promise<void> {
  const admin = createKafka(config, "demo").admin();
  try {
    await admin.connect();
    await ensureTopic(admin, {
      topic: config.topic,
      partitions: config.partitions,
      replicationFactor: config.replicationFactor,
    });
  } catch (error) {
    throw new Error(`cannot create topic ${config.topic}: ${String(error)}`);
  } finally {
    await admin.disconnect();
  }
}

function describeSource(config: Config): string {
  const symbols = config.symbols.join(", ");
  if (config.source === "finnhub") return `source: Finnhub live trades for ${symbols}`;
  if (config.source === "sim") {
    return `source: SIMULATED market for ${symbols} (set FINNHUB_TOKEN for live trades)`;
  }
  return `source: ${config.source} (SOURCE)`;
}

/**
 * The dashboard first: it replays the topic's recent history and listens before the
 * first new trade arrives, so the page opens full and nothing waits on a join.
 * Resolves with the URL it serves at, or undefined (stopped, or silent for 60 s).
 */
async function startDashboard(children: Children, shared: boolean): Promise<string | undefined> {
  const url = Promise.withResolvers<string>();
  children.start(shared ? "dashboard:shared" : "dashboard", (line) => {
    const match = /^dashboard: (https?:\/\/\S+)/.exec(line);
    if (match) url.resolve(match[1]);
  });
  const waited = AbortSignal.any([children.stopping, AbortSignal.timeout(URL_WAIT_MS)]);
  const address = await unlessAborted(url.promise, waited);
  if (address !== "stopped") return address;
  if (!children.stopping.aborted) {
    console.error("note: the dashboard has not said where it listens after 60 s");
  }
  return undefined;
}

function printUrl(url: string, config: Config): void {
  const live = config.source === "finnhub";
  console.log("");
  console.log(`  ${paint(1, "market-stream is running:")} ${paint(4, url)}`);
  console.log(`  ${live ? "live Finnhub trades" : "SIMULATED prices"} · Ctrl+C stops it all`);
  console.log("");
}

async function stopBroker(): Promise<void> {
  console.log("demo: stopping the broker it started (keep it with --keep-broker)");
  await startTask("kafka:stop").done;
}

/** Resolves once `signal` aborts. */
function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

// ---------------------------------------------------------------------------
// The children

interface Child {
  readonly name: string;
  readonly process: Deno.ChildProcess;
  /** Resolves with the exit status once the process has ended and its output is read. */
  readonly done: Promise<Deno.CommandStatus>;
  /** Stops copying its output (after a SIGKILL of `deno task kafka`, the launcher may hold it). */
  abandon(): void;
}

/** The name in front of a child's lines, where it is not the task's. */
const NAMES: Readonly<Record<string, string>> = {
  produce: "producer",
  "kafka:stop": "kafka",
  "dashboard:shared": "dashboard",
};

/** The tasks the demo starts as their scripts (tools/scripts.ts). */
const SCRIPTS: Readonly<Record<string, Script>> = {
  produce: "produce",
  dashboard: "dashboard",
  "dashboard:shared": "dashboard-shared",
};

/**
 * A child in the project root, its lines shown with its name in front: the broker
 * launcher as `deno task -q <task>`, the producer and the dashboard as their scripts
 * with their permission sets and `.env` (tools/scripts.ts), so a last-resort SIGKILL
 * reaches the script itself, not a `deno task` in front of it.
 */
function startTask(task: string, onLine?: (line: string) => void): Child {
  const name = NAMES[task] ?? task;
  const script = SCRIPTS[task];
  const process = new Deno.Command("deno", {
    args: script ? scriptArgs(script, { envFile: true }) : ["task", "-q", task],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const prefix = paint(name === "producer" ? 36 : 35, `${name.padEnd(9)}│ `);
  const reading = new AbortController();
  const copy = (stream: ReadableStream<Uint8Array>, out: typeof console.log) =>
    lines(stream).pipeTo(
      new WritableStream({
        write(line) {
          onLine?.(line);
          out(`${prefix}${line}`);
        },
      }),
      { signal: reading.signal },
    ).catch(() => {});
  const output = Promise.all([
    copy(process.stdout, console.log),
    copy(process.stderr, console.error),
  ]);
  return { name, process, done: output.then(() => process.status), abandon: () => reading.abort() };
}

/**
 * The long-running children, and the demo's end: `stopping` aborts on the process's
 * stop signal or when a child ends by itself (then the rest are stopped too).
 */
class Children {
  readonly stopping: AbortSignal;
  readonly #list: Child[] = [];
  readonly #ended = new AbortController();
  #failed?: string;

  constructor(stop: AbortSignal) {
    this.stopping = AbortSignal.any([stop, this.#ended.signal]);
  }

  start(task: string, onLine?: (line: string) => void): void {
    const child = startTask(task, onLine);
    this.#list.push(child);
    child.done.then(({ code }) => {
      if (this.stopping.aborted) return;
      this.#failed = `${child.name} exited with code ${code}; stopped the rest`;
      this.#ended.abort();
    });
  }

  signalAll(signal: Deno.Signal): void {
    for (const { process } of this.#list) {
      try {
        process.kill(signal);
      } catch { /* already gone */ }
    }
  }

  /**
   * SIGTERM to each (the producer flushes, the consumer commits); a second SIGTERM
   * after STOP_DEADLINE_MS, which the scripts take as "quit now"; SIGKILL as the
   * last resort. Resolves with what went wrong, if anything.
   */
  async stop(): Promise<string | undefined> {
    console.log("demo: stopping (producer flushes, consumer commits)…");
    this.signalAll("SIGTERM");
    const late = setTimeout(() => {
      console.error("demo: a child did not stop in time; telling it to quit now");
      this.signalAll("SIGTERM");
    }, STOP_DEADLINE_MS);
    const kill = setTimeout(() => {
      console.error("demo: a child still runs; killing it");
      this.signalAll("SIGKILL");
      for (const child of this.#list) child.abandon();
    }, STOP_DEADLINE_MS + KILL_AFTER_MS);
    const statuses = await Promise.all(this.#list.map((child) => child.done));
    clearTimeout(late);
    clearTimeout(kill);
    if (this.#failed !== undefined) return this.#failed;
    const bad = statuses.findIndex((status) => status.code !== 0);
    return bad < 0 ? undefined : `${this.#list[bad].name} stopped with code ${statuses[bad].code}`;
  }
}

function paint(code: number, text: string): string {
  return Deno.stdout.isTerminal() && !Deno.noColor ? `\x1b[${code}m${text}\x1b[0m` : text;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
