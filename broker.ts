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

import { configOrExit, exitWithError, parseHostPort } from "./config.ts";

export const KAFKA_VERSION = "4.4.0";
const HOME = new URL("./.kafka/", import.meta.url);
const STATE_FILE = new URL("broker.json", HOME);
const DATA_DIR = new URL("data/", HOME);
const LOG_FILE = new URL("logs/server.log", HOME);
const CLASSPATH_FILE = new URL("classpath.txt", HOME);
const POM_FILE = new URL("./broker/pom.xml", import.meta.url);
const COMPOSE_FILE = new URL("./docker/compose.yml", import.meta.url);
const START_TIMEOUT_MS = 90_000;

/** What the launcher left behind, so stop and status know what they own. */
interface BrokerState {
  mode: "native" | "docker";
  port: number;
  pid?: number;
  startedAt: string;
}

/** What listens on a port: Kafka, nothing, or something else. */
export type Probe = "kafka" | "closed" | "other";

const ANSWER_TIMEOUT_MS = 2_000;

/**
 * Sends one ApiVersions v0 request, the first thing every Kafka client sends, and
 * checks that the answer carries our correlation id. Raw bytes instead of kafkajs:
 * it is fast, silent, and tells "not Kafka" apart from "nothing there".
 */
export async function probeKafka(host: string, port: number): Promise<Probe> {
  const hostname = host.replace(/^\[|\]$/g, "");
  let conn: Deno.TcpConn;
  try {
    conn = await withTimeout(Deno.connect({ hostname, port }), ANSWER_TIMEOUT_MS);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error;
    return "closed";
  }
  try {
    const clientId = new TextEncoder().encode("probe");
    const request = new Uint8Array(4 + 10 + clientId.length);
    const view = new DataView(request.buffer);
    view.setInt32(0, request.length - 4);
    view.setInt16(4, 18); // api key: ApiVersions
    view.setInt16(6, 0); // api version 0: every Kafka since 0.10 answers it
    view.setInt32(8, 0x6b61666b); // correlation id
    view.setInt16(12, clientId.length);
    request.set(clientId, 14);
    await withTimeout(conn.write(request), ANSWER_TIMEOUT_MS);
    const answer = new Uint8Array(8);
    let filled = 0;
    while (filled < answer.length) {
      const n = await withTimeout(conn.read(answer.subarray(filled)), ANSWER_TIMEOUT_MS);
      if (n === null) return "other";
      filled += n;
    }
    return new DataView(answer.buffer).getInt32(4) === 0x6b61666b ? "kafka" : "other";
  } catch {
    return "other";
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Runs a command to completion; a missing program is `undefined`, not an exception. */
async function run(
  program: string,
  args: string[],
  options: { timeoutMs?: number } = {},
): Promise<{ code: number; output: string } | undefined> {
  try {
    const command = new Deno.Command(program, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: options.timeoutMs ? AbortSignal.timeout(options.timeoutMs) : undefined,
    });
    const { code, stdout, stderr } = await command.output();
    const text = new TextDecoder();
    return { code, output: text.decode(stdout) + text.decode(stderr) };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    if (error instanceof Deno.errors.NotCapable) throw error;
    return { code: -1, output: String(error) };
  }
}

function lastLines(text: string, count = 8): string {
  return text.trimEnd().split("\n").slice(-count).join("\n");
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

function serverProperties(port: number, dataDir: URL): string {
  const data = decodeURIComponent(dataDir.pathname);
  return [
    "# Written by broker.ts: a single KRaft node for local runs and tests.",
    "process.roles=broker,controller",
    "node.id=1",
    `controller.quorum.voters=1@127.0.0.1:${port + 1}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${port + 1}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    "controller.listener.names=CONTROLLER",
    "inter.broker.listener.name=PLAINTEXT",
    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    `log.dirs=${data}`,
    "num.partitions=3",
    // One node: every internal topic has one replica.
    "offsets.topic.replication.factor=1",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "share.coordinator.state.topic.replication.factor=1",
    "share.coordinator.state.topic.min.isr=1",
    // Tests create many short-lived groups: no need to wait 3 s for more members.
    "group.initial.rebalance.delay.ms=0",
    "",
  ].join("\n");
}

/** A KRaft cluster id: 16 random bytes, base64url without padding. */
function randomClusterId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

async function requireJavaAndMaven(): Promise<void> {
  const java = await run("java", ["-version"]);
  const maven = await run("mvn", ["-v"]);
  if (!java || !maven) {
    const missing = [!java && "Java 17+", !maven && "Maven"].filter(Boolean).join(" and ");
    exitWithError(
      `no Docker engine answers and ${missing} ${java || maven ? "is" : "are"} not installed: ` +
        "install Docker, or Java 17 and Maven (Debian: apt-get install openjdk-17-jdk-headless maven)",
    );
  }
  const major = Number(/version "(\d+)/.exec(java.output)?.[1] ?? 0);
  if (major < 17) {
    exitWithError(
      `Kafka ${KAFKA_VERSION} needs Java 17 or newer, found ${major || "an unknown version"}`,
    );
  }
}

async function resolveClasspath(): Promise<string> {
  const pomTime = (await Deno.stat(POM_FILE)).mtime?.getTime() ?? 0;
  try {
    const cached = await Deno.stat(CLASSPATH_FILE);
    if ((cached.mtime?.getTime() ?? 0) >= pomTime) {
      return (await Deno.readTextFile(CLASSPATH_FILE)).trim();
    }
  } catch { /* not resolved yet */ }
  console.log(`Resolving Apache Kafka ${KAFKA_VERSION} jars from Maven Central (first run only)…`);
  const result = await run("mvn", [
    "-q",
    "-B",
    "-f",
    POM_FILE.pathname,
    "dependency:build-classpath",
    `-Dmdep.outputFile=${CLASSPATH_FILE.pathname}`,
  ]);
  if (!result || result.code !== 0) {
    throw new BrokerStartError(
      `Maven could not resolve the Kafka jars:\n${lastLines(result?.output ?? "")}`,
    );
  }
  // Maven leaves an unchanged file untouched: mark it fresh, or every start resolves again.
  const now = new Date();
  await Deno.utime(CLASSPATH_FILE, now, now);
  return (await Deno.readTextFile(CLASSPATH_FILE)).trim();
}

async function formatStorage(classpath: string, dataDir: URL, properties: URL): Promise<void> {
  try {
    await Deno.stat(new URL("meta.properties", dataDir));
    return; // formatted on an earlier run: keep the topics
  } catch { /* first run */ }
  const result = await run("java", [
    "-cp",
    classpath,
    "kafka.tools.StorageTool",
    "format",
    "-t",
    randomClusterId(),
    "-c",
    decodeURIComponent(properties.pathname),
  ]);
  if (!result || result.code !== 0) {
    throw new BrokerStartError(
      `formatting Kafka storage failed:\n${lastLines(result?.output ?? "")}`,
    );
  }
}

async function readLog(logFile: URL): Promise<string> {
  try {
    return await Deno.readTextFile(logFile);
  } catch {
    return "";
  }
}

async function waitForKafka(port: number, isAlive: () => boolean): Promise<boolean> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let lastReport = Date.now();
  while (Date.now() < deadline) {
    if (await probeKafka("127.0.0.1", port) === "kafka") return true;
    if (!isAlive()) return false;
    if (Date.now() - lastReport >= 10_000) {
      lastReport = Date.now();
      console.log(
        `  still waiting for the broker (${Math.round((deadline - Date.now()) / 1000)} s left)…`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return false;
}

/** A native broker started by startNativeBroker: its JVM, and the means to end it. */
export interface NativeBroker {
  readonly pid: number;
  readonly port: number;
  /** Resolves when the JVM has exited. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Sends `signal` (SIGTERM by default) and waits for the JVM to exit. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  /** Lets the JVM outlive this process (the CLI); the broker is then stopped by pid. */
  detach(): void;
}

export interface NativeBrokerOptions {
  /** PLAINTEXT port; the controller listens on port + 1. */
  readonly port: number;
  /** Holds server.properties, data/ (formatted on first start) and logs/server.log. */
  readonly dir: string | URL;
  /** Jar classpath; default: the one cached in .kafka/classpath.txt (resolved if stale). */
  readonly classpath?: string;
  /** More server properties, e.g. shorter timeouts for tests; they override the defaults. */
  readonly properties?: Readonly<Record<string, string | number>>;
  /** Called with the pid once the JVM is spawned, before it answers. */
  readonly onSpawn?: (pid: number) => Promise<void> | void;
}

/** Why a native broker did not come up; the message ends with the last lines of its log. */
export class BrokerStartError extends Error {
  override name = "BrokerStartError";
}

/**
 * Starts one KRaft node on 127.0.0.1:`port` with its files under `dir`, and resolves
 * once it answers as Kafka. Restarting on the same `dir` keeps its topics. The CLI
 * uses `.kafka/`; the fault tests start a private one they can kill.
 */
export async function startNativeBroker(options: NativeBrokerOptions): Promise<NativeBroker> {
  const dir = options.dir instanceof URL
    ? options.dir.href
    : new URL(options.dir, `file://${Deno.cwd()}/`).href;
  const home = new URL(dir.endsWith("/") ? dir : `${dir}/`);
  const dataDir = new URL("data/", home);
  const logFile = new URL("logs/server.log", home);
  const propertiesFile = new URL("server.properties", home);
  const { port } = options;
  await Deno.mkdir(new URL("logs/", home), { recursive: true });
  await Deno.mkdir(dataDir, { recursive: true });
  const classpath = options.classpath ?? await resolveClasspath();
  const extra = Object.entries(options.properties ?? {}).map(([key, value]) => `${key}=${value}\n`);
  await Deno.writeTextFile(propertiesFile, serverProperties(port, dataDir) + extra.join(""));
  await formatStorage(classpath, dataDir, propertiesFile);
  await Deno.writeTextFile(logFile, ""); // each start gets a fresh log
  const child = new Deno.Command("java", {
    args: [
      "-Xms256m",
      "-Xmx1g",
      "-XX:+UseG1GC",
      "-Djava.awt.headless=true",
      `-Dorg.slf4j.simpleLogger.logFile=${decodeURIComponent(logFile.pathname)}`,
      "-Dorg.slf4j.simpleLogger.showDateTime=true",
      "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss,SSS",
      "-cp",
      classpath,
      "kafka.Kafka",
      decodeURIComponent(propertiesFile.pathname),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let alive = true;
  const exited = child.status.then((status) => {
    alive = false;
    return status;
  });
  // The JVM's own stderr (a bad classpath, an unsupported flag) says why it died.
  let stderr = "";
  const stderrDone = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (stderr = (stderr + chunk).slice(-8192)) }),
  ).catch(() => {});
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    try {
      if (alive) child.kill(signal);
    } catch { /* exited meanwhile */ }
    const status = await exited;
    await stderrDone;
    return status;
  };
  await options.onSpawn?.(child.pid);

  if (!(await waitForKafka(port, () => alive))) {
    const wasAlive = alive;
    const { code } = await stop("SIGKILL");
    const why = wasAlive
      ? `did not answer within ${START_TIMEOUT_MS / 1000} s`
      : `exited with code ${code}`;
    throw new BrokerStartError(
      `the broker ${why}; last lines of ${relative(logFile)}:\n${
        lastLines(stderr + (await readLog(logFile)), 12)
      }`,
    );
  }
  return {
    pid: child.pid,
    port,
    exited,
    stop,
    detach() {
      // Its stderr is closed along with us.
      child.unref();
      child.stderr.cancel().catch(() => {});
    },
  };
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

function relative(url: URL): string {
  return decodeURIComponent(url.pathname).replace(
    decodeURIComponent(new URL("./", import.meta.url).pathname),
    "",
  );
}

/** `deno task kafka`: make sure a broker answers at KAFKA_BROKERS. */
export async function start(): Promise<void> {
  const config = configOrExit();
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
