/**
 * `deno task demo`: the whole pipeline with one command.
 *
 * 1. Makes sure a broker runs: reuses the one at KAFKA_BROKERS, or starts the local
 *    one with the launcher (`deno task kafka`).
 *    Creates the topic if it is missing (with kafka.ts, as the producer does).
 * 2. Starts the dashboard (`deno task dashboard`) and, once it listens, the producer
 *    (`deno task produce`: the simulated market without FINNHUB_TOKEN, Finnhub with
 *    one), each as its own process with exactly the permissions its task grants.
 * 3. Prints the dashboard's URL, and the children's lines, prefixed with their name.
 * 4. Ctrl+C (or SIGTERM) stops what it started: the producer flushes, the consumer
 *    commits, and a broker the demo started is stopped again (unless --keep-broker).
 */

import { configOrExit, exitWithError, parseHostPort, redact } from "../config.ts";
import { probeKafka } from "./broker/native.ts";
import { createKafka, ensureTopic } from "../lib/kafka.ts";

const USAGE = `usage: deno task demo [--keep-broker]

  --keep-broker  leave a broker this demo started running after Ctrl+C
  --help         this text`;

/** How long the children get to flush and commit before they are killed. */
const STOP_DEADLINE_MS = 20_000;
const URL_WAIT_MS = 60_000;

/**
 * The argv of a deno.json task, so a child runs with that task's flags and nothing
 * more. Only a plain `deno run …` line is accepted: no shell operators or quotes.
 */
export function taskCommand(tasks: Record<string, unknown>, name: string): string[] {
  const line = tasks[name];
  if (typeof line !== "string") throw new Error(`deno.json has no task "${name}"`);
  if (/[|&;<>()$`'"\\]/.test(line)) {
    throw new Error(`task "${name}" is not a plain deno command: ${line}`);
  }
  const argv = line.trim().split(/\s+/);
  if (argv[0] !== "deno" || argv[1] !== "run") {
    throw new Error(`task "${name}" does not start with "deno run": ${line}`);
  }
  return argv;
}

export async function readTasks(): Promise<Record<string, unknown>> {
  const text = await Deno.readTextFile(new URL("../deno.json", import.meta.url));
  const tasks = (JSON.parse(text) as { tasks?: unknown }).tasks;
  if (typeof tasks !== "object" || tasks === null) throw new Error("deno.json has no tasks");
  return tasks as Record<string, unknown>;
}

const colors = Deno.stdout.isTerminal() && !Deno.noColor;
const paint = (code: number, text: string) => colors ? `\x1b[${code}m${text}\x1b[0m` : text;

interface Child {
  readonly name: string;
  readonly process: Deno.ChildProcess;
  /** Resolves with the exit status once the process has ended and its output is read. */
  readonly done: Promise<Deno.CommandStatus>;
}

/** Copies a child's output line by line with its name in front; `onLine` sees each line. */
async function pipeLines(
  stream: ReadableStream<Uint8Array>,
  prefix: string,
  out: typeof console.log,
  onLine?: (line: string) => void,
): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) {
      onLine?.(line);
      // Every task loads .env when there is one; the demo's own line already said so.
      if (!line.includes("flag was used, but the environment file")) out(`${prefix}${line}`);
    }
  }
  if (rest !== "") out(`${prefix}${rest}`);
}

function spawn(name: string, argv: string[], onLine?: (line: string) => void): Child {
  const process = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const prefix = paint(name === "producer" ? 36 : 35, `${name.padEnd(9)}│ `);
  const output = Promise.all([
    pipeLines(process.stdout, prefix, console.log, onLine),
    pipeLines(process.stderr, prefix, console.error, onLine),
  ]);
  const done = output.then(() => process.status);
  return { name, process, done };
}

/** Runs a task to its end (the broker launcher), its lines shown as they come. */
async function runTask(name: string, argv: string[]): Promise<number> {
  const { code } = await spawn(name, argv).done;
  return code;
}

function kill(child: Child, signal: Deno.Signal): void {
  try {
    child.process.kill(signal);
  } catch {
    // Already gone.
  }
}

export async function main(args: string[]): Promise<void> {
  for (const arg of args) {
    if (arg === "--help") {
      console.log(USAGE);
      return;
    }
    if (arg !== "--keep-broker") exitWithError(`unknown argument "${arg}"\n${USAGE}`);
  }
  const keepBroker = args.includes("--keep-broker");
  const config = configOrExit();
  let tasks: Record<string, unknown>;
  let commands: { kafka: string[]; kafkaStop: string[]; produce: string[]; dashboard: string[] };
  try {
    tasks = await readTasks();
    commands = {
      kafka: taskCommand(tasks, "kafka"),
      kafkaStop: taskCommand(tasks, "kafka:stop"),
      produce: taskCommand(tasks, "produce"),
      dashboard: taskCommand(tasks, "dashboard"),
    };
  } catch (error) {
    exitWithError((error as Error).message);
  }

  // One AbortController for the process: Ctrl+C and SIGTERM end the demo.
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  // 1. A broker.
  const broker = parseHostPort(config.brokers[0], "KAFKA_BROKERS", "127.0.0.1:9092");
  const local = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/i.test(broker.host);
  // A remote cluster is not ours to start: the children connect (and report) themselves.
  const probe = local ? await probeKafka(broker.host, broker.port) : "kafka";
  let startedBroker = false;
  if (probe === "other") {
    exitWithError(`${config.brokers[0]} answers, but not as Kafka: set KAFKA_BROKERS`);
  } else if (probe === "kafka") {
    console.log(`broker: Kafka at ${config.brokers.join(",")}`);
  } else {
    console.log(`broker: none at ${config.brokers[0]}; starting one (deno task kafka)`);
    const code = await runTask("kafka", commands.kafka);
    if (code !== 0) exitWithError("the broker did not start (see the lines above)", code);
    startedBroker = true;
  }
  if (controller.signal.aborted) return;
  // The topic before the consumer: a consumer that starts first must not find none.
  const admin = createKafka(config, "demo").admin();
  try {
    await admin.connect();
    await ensureTopic(admin, config.topic, config.partitions, config.replicationFactor);
  } catch (error) {
    exitWithError(`cannot create topic ${config.topic}: ${redact(String(error))}`, 1);
  } finally {
    await admin.disconnect();
  }

  // 2. The producer and the dashboard.
  const live = config.source === "finnhub";
  console.log(
    live
      ? `source: Finnhub live trades for ${config.symbols.join(", ")}`
      : config.source === "sim"
      ? `source: SIMULATED market for ${
        config.symbols.join(", ")
      } (set FINNHUB_TOKEN for live trades)`
      : `source: ${config.source} (SOURCE)`,
  );
  const stopped = new Promise<void>((resolve) => {
    if (controller.signal.aborted) resolve();
    controller.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  const children: Child[] = [];
  let failed: { name: string; code: number } | undefined;
  const watch = (child: Child) => {
    children.push(child);
    child.done.then((status) => {
      if (!controller.signal.aborted) {
        failed ??= { name: child.name, code: status.code };
        controller.abort();
      }
    });
  };
  // The dashboard first: it replays the topic's recent history and listens before
  // the first new trade arrives, so the page opens full and nothing waits on a join.
  const url = Promise.withResolvers<string>();
  watch(spawn("dashboard", commands.dashboard, (line) => {
    const match = /^dashboard: (https?:\/\/\S+)/.exec(line);
    if (match) url.resolve(match[1]);
  }));
  let urlTimer: ReturnType<typeof setTimeout> | undefined;
  const address = await Promise.race([
    url.promise,
    stopped.then(() => undefined),
    new Promise<undefined>((resolve) =>
      urlTimer = setTimeout(() => resolve(undefined), URL_WAIT_MS)
    ),
  ]);
  clearTimeout(urlTimer);
  if (!controller.signal.aborted) {
    if (address === undefined) {
      console.error("note: the dashboard has not said where it listens after 60 s");
    }
    watch(spawn("producer", commands.produce));
  }

  // 3. The URL.
  if (address !== undefined && !controller.signal.aborted) {
    console.log("");
    console.log(`  ${paint(1, "market-stream is running:")} ${paint(4, address)}`);
    console.log(`  ${live ? "live Finnhub trades" : "SIMULATED prices"} · Ctrl+C stops it all`);
    console.log("");
  }

  // 4. Stop: wait for Ctrl+C (or a child that ended), then end the rest cleanly.
  await stopped;
  console.log("demo: stopping (producer flushes, consumer commits)…");
  for (const child of children) kill(child, "SIGTERM");
  const deadline = setTimeout(() => {
    console.error("demo: a child did not stop in time; killing it");
    for (const child of children) kill(child, "SIGKILL");
  }, STOP_DEADLINE_MS);
  const statuses = await Promise.all(children.map((child) => child.done));
  clearTimeout(deadline);
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);

  if (startedBroker && !keepBroker) {
    console.log("demo: stopping the broker it started (keep it with --keep-broker)");
    await runTask("kafka", commands.kafkaStop);
  }
  if (failed !== undefined) {
    exitWithError(`${failed.name} exited with code ${failed.code}; stopped the rest`, 1);
  }
  const bad = statuses.findIndex((status) => status.code !== 0);
  if (bad >= 0) {
    exitWithError(`${children[bad].name} stopped with code ${statuses[bad].code}`, 1);
  }
  console.log("demo: stopped");
}

if (import.meta.main) await main(Deno.args);
