/**
 * The local broker launcher behind `deno task kafka`, `kafka:stop`, `kafka:status`.
 *
 * 1. If KAFKA_BROKERS already answers as Kafka, reuse it.
 * 2. Else, if a Docker engine answers, `docker compose -p market-stream -f docker/compose.yml up -d --wait`.
 * 3. Else run Apache Kafka natively (native.ts): resolve the pinned jars from Maven
 *    Central (tools/broker/pom.xml), format KRaft storage once, start `kafka.Kafka` as
 *    its own JVM with its pid, data and logs under `.kafka/` at the project root.
 *
 * A mistake the user can fix (a bad KAFKA_BROKERS, a host the task may not reach, a
 * port taken by something else, Docker or Java and Maven missing) is one line on
 * stderr and exit code 2. A broker that does not come up is exit code 1, with the
 * last lines of its log. `status` exits 0 when Kafka answers, 1 when not.
 */

import { fileURLToPath } from "node:url";
import { loadConfig, parseHostPort, readEnv } from "../../config.ts";
import { sleep } from "../../lib/async.ts";
import { exitCodeFor, parseFlags, UsageError } from "../../lib/cli.ts";
import { isLoopback, netAccessProblem } from "../../lib/net.ts";
import {
  KAFKA_HOME,
  KAFKA_VERSION,
  lastLines,
  type NativeBroker,
  probeKafka,
  relative,
  requireJavaAndMaven,
  run,
  START_TIMEOUT_MS,
  startNativeBroker,
} from "./native.ts";

const USAGE = `usage: deno task kafka | kafka:status | kafka:stop
       (deno run … tools/broker/launcher.ts start|status|stop)

  start   make sure a broker answers at KAFKA_BROKERS (default 127.0.0.1:9092)
  status  what answers where; exit code 0 when Kafka answers
  stop    stop the broker this project started`;

const STATE_FILE = new URL("broker.json", KAFKA_HOME);
const DATA_DIR = new URL("data/", KAFKA_HOME);
const LOG_FILE = new URL("logs/server.log", KAFKA_HOME);
const COMPOSE_FILE = new URL("../../docker/compose.yml", import.meta.url);
/** The compose project (and volume prefix); given here, as Compose v1 knows no `name:` key. */
const COMPOSE_PROJECT = "market-stream";
const EXAMPLE = "127.0.0.1:9092";

/** What the launcher left behind, so stop and status know what they own. */
interface BrokerState {
  mode: "native" | "docker";
  port: number;
  pid?: number;
  startedAt: string;
}

/** The state file, or undefined when there is none (or it is not one the launcher wrote). */
async function readState(): Promise<BrokerState | undefined> {
  let state: Partial<BrokerState> | null;
  try {
    state = JSON.parse(await Deno.readTextFile(STATE_FILE));
  } catch {
    return undefined;
  }
  const known = (state?.mode === "native" || state?.mode === "docker") &&
    Number.isSafeInteger(state.port) && typeof state.startedAt === "string";
  return known ? state as BrokerState : undefined;
}

/** True if `pid` is a live JVM running our broker (a reused pid is not ours). */
async function isOurBroker(pid: number): Promise<boolean> {
  const result = await run("ps", ["-p", String(pid), "-o", "command="]);
  return result !== undefined && result.code === 0 && result.output.includes("kafka.Kafka") &&
    result.output.includes(".kafka/server.properties");
}

async function writeState(state: BrokerState): Promise<void> {
  await Deno.mkdir(KAFKA_HOME, { recursive: true });
  await Deno.writeTextFile(STATE_FILE, JSON.stringify(state, null, 2) + "\n");
}

/** KAFKA_BROKERS, checked against the task's permissions. */
function brokers(): readonly string[] {
  const config = loadConfig(readEnv());
  const denied = netAccessProblem("KAFKA_BROKERS", config.brokers);
  if (denied) throw new UsageError(denied);
  return config.brokers;
}

async function startNative(port: number): Promise<void> {
  await requireJavaAndMaven();
  let broker: NativeBroker;
  try {
    broker = await startNativeBroker({
      port,
      dir: KAFKA_HOME,
      async onSpawn(pid) {
        await writeState({ mode: "native", port, pid, startedAt: new Date().toISOString() });
        console.log(
          `Starting Apache Kafka ${KAFKA_VERSION} natively on 127.0.0.1:${port} (pid ${pid})…`,
        );
      },
    });
  } catch (error) {
    await Deno.remove(STATE_FILE).catch(() => {});
    throw error;
  }
  // Let the JVM outlive this script.
  broker.detach();
  console.log(
    `Kafka is up at 127.0.0.1:${port}. Logs: ${relative(LOG_FILE)}  Stop: deno task kafka:stop`,
  );
}

async function dockerAnswers(): Promise<boolean> {
  const result = await run("docker", ["info", "--format", "{{.ServerVersion}}"], {
    timeoutMs: 5_000,
  });
  return result !== undefined && result.code === 0;
}

async function startDocker(port: number): Promise<void> {
  console.log(`Starting apache/kafka:${KAFKA_VERSION} with docker compose…`);
  const result = await run(
    "docker",
    ["compose", "-p", COMPOSE_PROJECT, "-f", fileURLToPath(COMPOSE_FILE), "up", "-d", "--wait"],
    {
      timeoutMs: START_TIMEOUT_MS * 2,
    },
  );
  if (!result || result.code !== 0) {
    throw new Error(`docker compose up failed:\n${lastLines(result?.output ?? "")}`);
  }
  await writeState({ mode: "docker", port, startedAt: new Date().toISOString() });
  console.log(`Kafka is up at 127.0.0.1:${port} (docker). Stop: deno task kafka:stop`);
}

/** `deno task kafka`: make sure a broker answers at KAFKA_BROKERS. */
async function start(): Promise<number> {
  const list = brokers();
  for (const broker of list) {
    const { host, port } = parseHostPort(broker, "KAFKA_BROKERS", EXAMPLE);
    if (await probeKafka(host, port) === "kafka") {
      const state = await readState();
      const ours = state?.port === port && isLoopback(host)
        ? ` (started by this project, ${state.mode})`
        : "";
      console.log(`Kafka already answers at ${broker}${ours}; reusing it.`);
      return 0;
    }
  }
  const { host, port } = parseHostPort(list[0], "KAFKA_BROKERS", EXAMPLE);
  if (!isLoopback(host)) {
    throw new UsageError(
      `no Kafka answers at KAFKA_BROKERS=${list.join(",")}, and the launcher only starts ` +
        "a local broker: start yours, or unset KAFKA_BROKERS to use 127.0.0.1:9092",
    );
  }
  for (const taken of [port, port + 1]) {
    if (await probeKafka("127.0.0.1", taken) !== "closed") {
      throw new UsageError(
        `port ${taken} is taken by something that is not Kafka: stop it (find it with ` +
          `\`ss -ltnp 'sport = :${taken}'\`) or set KAFKA_BROKERS=127.0.0.1:<another port>`,
      );
    }
  }
  if (port === 9092 && await dockerAnswers()) await startDocker(port);
  else await startNative(port);
  return 0;
}

/** `deno task kafka:stop`: stops only the broker this project started. */
async function stop(): Promise<number> {
  const state = await readState();
  if (!state) {
    console.log("No broker started by this project is running.");
    return 0;
  }
  if (state.mode === "docker") {
    const result = await run("docker", [
      "compose",
      "-p",
      COMPOSE_PROJECT,
      "-f",
      fileURLToPath(COMPOSE_FILE),
      "down",
    ], {
      timeoutMs: 120_000,
    });
    if (!result || result.code !== 0) {
      throw new Error(`docker compose down failed:\n${lastLines(result?.output ?? "")}`);
    }
    await Deno.remove(STATE_FILE);
    console.log("Stopped the docker broker (its volume keeps the data).");
    return 0;
  }
  const pid = state.pid ?? 0;
  if (!(await isOurBroker(pid))) {
    await Deno.remove(STATE_FILE);
    console.log(`No broker started by this project is running (pid ${pid} is gone).`);
    return 0;
  }
  console.log(`Stopping the native broker (pid ${pid})…`);
  await run("kill", ["-TERM", String(pid)]);
  // A controlled shutdown flushes logs and takes a few seconds; then insist.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && await isOurBroker(pid)) await sleep(200);
  if (await isOurBroker(pid)) {
    await run("kill", ["-KILL", String(pid)]);
    console.log("The broker did not stop within 30 s; killed it.");
  }
  await Deno.remove(STATE_FILE);
  console.log(`Stopped. Data stays in ${relative(DATA_DIR)} (delete it for a fresh start).`);
  return 0;
}

/** `deno task kafka:status`: what runs where. Exit code 0 when Kafka answers, 1 when not. */
async function status(): Promise<number> {
  const list = brokers();
  const state = await readState();
  let answering = 0;
  for (const broker of list) {
    const { host, port } = parseHostPort(broker, "KAFKA_BROKERS", EXAMPLE);
    const probe = await probeKafka(host, port);
    const label = {
      kafka: "Kafka answers",
      closed: "nothing listens",
      other: "something that is not Kafka listens",
    }[probe];
    console.log(`${broker}: ${label}`);
    if (probe === "kafka") answering++;
  }
  const log = relative(LOG_FILE);
  if (state?.mode === "native") {
    console.log(
      await isOurBroker(state.pid ?? 0)
        ? `Native broker started by this project: pid ${state.pid}, port ${state.port}, ` +
          `since ${state.startedAt}; logs ${log}, data ${relative(DATA_DIR)}`
        : `A native broker was started by this project (pid ${state.pid}) but is no longer ` +
          `running; logs ${log}`,
    );
  } else if (state?.mode === "docker") {
    console.log(
      `Docker broker started by this project (docker compose -p market-stream -f docker/compose.yml ps)`,
    );
  } else {
    console.log("No broker started by this project.");
  }
  return answering > 0 ? 0 : 1;
}

const COMMANDS: Readonly<Record<string, () => Promise<number>>> = { start, stop, status };

export async function main(args: string[]): Promise<number> {
  try {
    const [command = "start", ...rest] = args;
    if (command === "--help" || parseFlags(rest, { help: { type: "boolean" } }).help) {
      console.log(USAGE);
      return 0;
    }
    const handler = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!handler) throw new UsageError(`unknown command "${command}": use start, stop or status`);
    return await handler();
  } catch (error) {
    // A path or program the task's permission set leaves out.
    if (error instanceof Deno.errors.NotCapable) {
      return exitCodeFor(
        new UsageError(`${error.message.split(",")[0]}: widen the task's permissions in deno.json`),
      );
    }
    return exitCodeFor(error);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
