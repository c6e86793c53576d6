/**
 * The local broker launcher behind `deno task kafka`, `kafka:stop`, `kafka:status`.
 *
 * 1. If KAFKA_BROKERS already answers as Kafka, reuse it.
 * 2. Else, if a Docker engine answers, `docker compose -f docker/compose.yml up -d --wait`.
 * 3. Else run Apache Kafka natively: resolve the pinned jars from Maven Central
 *    (broker/pom.xml), format KRaft storage once, start `kafka.Kafka` as its own JVM
 *    with its pid, data and logs under `.kafka/`.
 *
 * Every failure is one line on stderr and exit code 2.
 */

import { configOrExit, exitWithError, netAccessProblem, parseHostPort } from "../../config.ts";
import {
  BrokerStartError,
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

// Until every importer names broker_native.ts itself.
export { KAFKA_VERSION, type NativeBroker, probeKafka, startNativeBroker };

const HOME = new URL("../../.kafka/", import.meta.url);
const STATE_FILE = new URL("broker.json", HOME);
const DATA_DIR = new URL("data/", HOME);
const LOG_FILE = new URL("logs/server.log", HOME);
const COMPOSE_FILE = new URL("../../docker/compose.yml", import.meta.url);

/** What the launcher left behind, so stop and status know what they own. */
interface BrokerState {
  mode: "native" | "docker";
  port: number;
  pid?: number;
  startedAt: string;
}

async function readState(): Promise<BrokerState | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(STATE_FILE)) as BrokerState;
  } catch {
    return undefined;
  }
}

/** True if `pid` is a live JVM running our broker (a reused pid is not ours). */
async function isOurBroker(pid: number): Promise<boolean> {
  const result = await run("ps", ["-p", String(pid), "-o", "command="]);
  return result !== undefined && result.code === 0 && result.output.includes("kafka.Kafka") &&
    result.output.includes(".kafka/server.properties");
}

function isLocalHost(host: string): boolean {
  return ["127.0.0.1", "localhost", "[::1]"].includes(host);
}

async function startNative(port: number): Promise<void> {
  await requireJavaAndMaven();
  let broker: NativeBroker;
  try {
    broker = await startNativeBroker({
      port,
      dir: HOME,
      async onSpawn(pid) {
        const state: BrokerState = {
          mode: "native",
          port,
          pid,
          startedAt: new Date().toISOString(),
        };
        await Deno.writeTextFile(STATE_FILE, JSON.stringify(state, null, 2) + "\n");
        console.log(
          `Starting Apache Kafka ${KAFKA_VERSION} natively on 127.0.0.1:${port} (pid ${pid})…`,
        );
      },
    });
  } catch (error) {
    await Deno.remove(STATE_FILE).catch(() => {});
    if (error instanceof BrokerStartError) exitWithError(error.message);
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
    ["compose", "-f", COMPOSE_FILE.pathname, "up", "-d", "--wait"],
    {
      timeoutMs: START_TIMEOUT_MS * 2,
    },
  );
  if (!result || result.code !== 0) {
    exitWithError(`docker compose up failed:\n${lastLines(result?.output ?? "")}`);
  }
  await Deno.mkdir(HOME, { recursive: true });
  const state: BrokerState = { mode: "docker", port, startedAt: new Date().toISOString() };
  await Deno.writeTextFile(STATE_FILE, JSON.stringify(state, null, 2) + "\n");
  console.log(`Kafka is up at 127.0.0.1:${port} (docker). Stop: deno task kafka:stop`);
}

/** `deno task kafka`: make sure a broker answers at KAFKA_BROKERS. */
export async function start(): Promise<void> {
  const config = configOrExit();
  const denied = netAccessProblem("KAFKA_BROKERS", config.brokers);
  if (denied) exitWithError(denied);
  for (const broker of config.brokers) {
    const { host, port } = parseHostPort(broker, "KAFKA_BROKERS", "127.0.0.1:9092");
    if (await probeKafka(host, port) === "kafka") {
      const state = await readState();
      const ours = state?.port === port && isLocalHost(host)
        ? ` (started by this project, ${state.mode})`
        : "";
      console.log(`Kafka already answers at ${broker}${ours}; reusing it.`);
      return;
    }
  }
  const { host, port } = parseHostPort(config.brokers[0], "KAFKA_BROKERS", "127.0.0.1:9092");
  if (!isLocalHost(host)) {
    exitWithError(
      `no Kafka answers at KAFKA_BROKERS=${
        config.brokers.join(",")
      }, and the launcher only starts ` +
        "a local broker: start yours, or unset KAFKA_BROKERS to use 127.0.0.1:9092",
    );
  }
  for (const taken of [port, port + 1]) {
    if (await probeKafka("127.0.0.1", taken) !== "closed") {
      exitWithError(
        `port ${taken} is taken by something that is not Kafka: stop it (find it with ` +
          `\`ss -ltnp 'sport = :${taken}'\`) or set KAFKA_BROKERS=127.0.0.1:<another port>`,
      );
    }
  }
  if (port === 9092 && await dockerAnswers()) await startDocker(port);
  else await startNative(port);
}

/** `deno task kafka:stop`: stops only the broker this project started. */
export async function stop(): Promise<void> {
  const state = await readState();
  if (!state) {
    console.log("No broker started by this project is running.");
    return;
  }
  if (state.mode === "docker") {
    const result = await run("docker", ["compose", "-f", COMPOSE_FILE.pathname, "down"], {
      timeoutMs: 120_000,
    });
    if (!result || result.code !== 0) {
      exitWithError(`docker compose down failed:\n${lastLines(result?.output ?? "")}`);
    }
    await Deno.remove(STATE_FILE);
    console.log("Stopped the docker broker (its volume keeps the data).");
    return;
  }
  const pid = state.pid ?? 0;
  if (!(await isOurBroker(pid))) {
    await Deno.remove(STATE_FILE);
    console.log(`No broker started by this project is running (pid ${pid} is gone).`);
    return;
  }
  console.log(`Stopping the native broker (pid ${pid})…`);
  await run("kill", ["-TERM", String(pid)]);
  // A controlled shutdown flushes logs and takes a few seconds; then insist.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && await isOurBroker(pid)) {
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  if (await isOurBroker(pid)) {
    await run("kill", ["-KILL", String(pid)]);
    console.log("The broker did not stop within 30 s; killed it.");
  }
  await Deno.remove(STATE_FILE);
  console.log(`Stopped. Data stays in ${relative(DATA_DIR)} (delete it for a fresh start).`);
}

/** `deno task kafka:status`: what runs where. Exit code 0 when Kafka answers, 1 when not. */
export async function status(): Promise<number> {
  const config = configOrExit();
  const denied = netAccessProblem("KAFKA_BROKERS", config.brokers);
  if (denied) exitWithError(denied);
  const state = await readState();
  let answering = 0;
  for (const broker of config.brokers) {
    const { host, port } = parseHostPort(broker, "KAFKA_BROKERS", "127.0.0.1:9092");
    const probe = await probeKafka(host, port);
    const label = {
      kafka: "Kafka answers",
      closed: "nothing listens",
      other: "something that is not Kafka listens",
    }[probe];
    console.log(`${broker}: ${label}`);
    if (probe === "kafka") answering++;
  }
  if (state?.mode === "native") {
    const alive = await isOurBroker(state.pid ?? 0);
    console.log(
      alive
        ? `Native broker started by this project: pid ${state.pid}, port ${state.port}, since ${state.startedAt}; logs ${
          relative(LOG_FILE)
        }, data ${relative(DATA_DIR)}`
        : `A native broker was started by this project (pid ${state.pid}) but is no longer running; logs ${
          relative(LOG_FILE)
        }`,
    );
  } else if (state?.mode === "docker") {
    console.log(`Docker broker started by this project (docker compose -f docker/compose.yml ps)`);
  } else {
    console.log("No broker started by this project.");
  }
  return answering > 0 ? 0 : 1;
}

async function main(args: string[]): Promise<void> {
  const command = args[0] ?? "start";
  try {
    if (command === "start") await start();
    else if (command === "stop") await stop();
    else if (command === "status") Deno.exit(await status());
    else exitWithError(`unknown command "${command}": use start, stop or status`);
  } catch (error) {
    // The tasks allow only local addresses; a remote KAFKA_BROKERS needs a wider flag.
    if (error instanceof Deno.errors.NotCapable) {
      exitWithError(`${error.message.split(",")[0]}: widen the task's flags in deno.json`);
    }
    throw error;
  }
}

if (import.meta.main) await main(Deno.args);
