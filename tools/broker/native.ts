/**
 * Apache Kafka as a native JVM, for machines without Docker: the pinned jars
 * (tools/broker/pom.xml, resolved by Maven and cached as a classpath), KRaft storage
 * formatted once, `kafka.Kafka` started on 127.0.0.1 and awaited until it answers.
 * Also the probe that tells a Kafka broker from anything else on a port.
 *
 * launcher.ts (the `deno task kafka` CLI) starts its broker here under `.kafka/`;
 * the fault tests start private ones they can kill. Nothing here exits: a missing
 * tool is a UsageError, a broker that does not come up a BrokerStartError.
 */

import { fileURLToPath } from "node:url";
import { sleep, withTimeout } from "../../lib/async.ts";
import { UsageError } from "../../lib/cli.ts";
import { lines } from "../../lib/lines.ts";
import { ROOT } from "../scripts.ts";

export const KAFKA_VERSION = "4.4.0";
/** `.kafka/` at the project root: the launcher's broker, and the cached classpath. */
export const KAFKA_HOME = new URL(".kafka/", `file://${ROOT}`);
const CLASSPATH_FILE = new URL("classpath.txt", KAFKA_HOME);
const POM_FILE = new URL("./pom.xml", import.meta.url);
export const START_TIMEOUT_MS = 90_000;

/** What listens on a port: Kafka, nothing, or something else. */
type Probe = "kafka" | "closed" | "other";

/** A TLS listener's probe: the CA that signed it and, for mTLS, a client certificate (PEM). */
export interface ProbeTls {
  readonly caCerts: string[];
  readonly cert?: string;
  readonly key?: string;
}

const ANSWER_TIMEOUT_MS = 2_000;
/** Lines of the JVM's stderr kept for the message of a broker that did not start. */
const STDERR_LINES = 20;

/**
 * Sends one ApiVersions v0 request, the first thing every Kafka client sends, and
 * checks that the answer carries our correlation id. Raw bytes instead of kafkajs:
 * it is fast, silent, and tells "not Kafka" apart from "nothing there". With `tls`
 * it speaks TLS first (Kafka answers ApiVersions before SASL authentication).
 */
export async function probeKafka(host: string, port: number, tls?: ProbeTls): Promise<Probe> {
  const hostname = host.replace(/^\[|\]$/g, "");
  let conn: Deno.Conn;
  try {
    const connecting: Promise<Deno.Conn> = tls
      ? Deno.connectTls({ hostname, port, ...tls })
        .then(async (conn) => (await conn.handshake(), conn))
      : Deno.connect({ hostname, port });
    conn = await withTimeout(connecting, ANSWER_TIMEOUT_MS);
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

/** Runs a command to completion; a missing program is `undefined`, not an exception. */
export async function run(
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

/** The last `count` lines of `text`, for an error message. */
export function lastLines(text: string, count = 8): string {
  return text.trimEnd().split("\n").slice(-count).join("\n");
}

function serverProperties(port: number, dataDir: URL): string {
  const data = decodeURIComponent(dataDir.pathname);
  return [
    "# Written by tools/broker/native.ts: a single KRaft node for local runs and tests.",
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

/**
 * A KRaft cluster id: 16 random bytes, base64url without padding, never starting
 * with "-" (kafka-storage would read `-t -x…` as a flag: 1 format in 64 failed).
 */
function randomClusterId(): string {
  for (;;) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const id = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
      .replace(/=+$/, "");
    if (!id.startsWith("-")) return id;
  }
}

/** Throws a UsageError naming what to install when Java 17+ or Maven is missing. */
export async function requireJavaAndMaven(): Promise<void> {
  const java = await run("java", ["-version"]);
  const maven = await run("mvn", ["-v"]);
  if (!java || !maven) {
    const missing = [!java && "Java 17+", !maven && "Maven"].filter(Boolean).join(" and ");
    throw new UsageError(
      `no Docker engine answers and ${missing} ${java || maven ? "is" : "are"} not installed: ` +
        "install Docker, or Java 17 and Maven (Debian: apt-get install openjdk-17-jdk-headless maven)",
    );
  }
  const major = Number(/version "(\d+)/.exec(java.output)?.[1] ?? 0);
  if (major < 17) {
    throw new UsageError(
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
    fileURLToPath(POM_FILE),
    "dependency:build-classpath",
    `-Dmdep.outputFile=${fileURLToPath(CLASSPATH_FILE)}`,
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

async function formatStorage(
  classpath: string,
  node: { dataDir: URL; propertiesFile: URL; formatArgs: readonly string[] },
): Promise<void> {
  const { dataDir, propertiesFile: properties } = node;
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
    ...node.formatArgs,
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

async function waitForKafka(
  node: { port: number; probeTls?: ProbeTls },
  isAlive: () => boolean,
): Promise<boolean> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let lastReport = Date.now();
  while (Date.now() < deadline) {
    if (await probeKafka("127.0.0.1", node.port, node.probeTls) === "kafka") return true;
    if (!isAlive()) return false;
    if (Date.now() - lastReport >= 10_000) {
      lastReport = Date.now();
      console.log(
        `  still waiting for the broker (${Math.round((deadline - Date.now()) / 1000)} s left)…`,
      );
    }
    await sleep(250);
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
  /** More `kafka-storage format` arguments, e.g. `--add-scram` for SCRAM users. */
  readonly formatArgs?: readonly string[];
  /** When `port` speaks TLS (listeners overridden in `properties`): how to probe it. */
  readonly probeTls?: ProbeTls;
  /** Called with the pid once the JVM is spawned, before it answers. */
  readonly onSpawn?: (pid: number) => Promise<void> | void;
}

/** Why a native broker did not come up; the message ends with the last lines of its log. */
export class BrokerStartError extends Error {
  override name = "BrokerStartError";
}

/** A node: its port, and its files under its home folder. */
interface Node {
  readonly port: number;
  readonly dataDir: URL;
  readonly logFile: URL;
  readonly propertiesFile: URL;
  readonly formatArgs: readonly string[];
  readonly probeTls?: ProbeTls;
}

/** Makes the node's folders, writes its properties, formats its storage once, empties its log. */
async function prepareNode(options: NativeBrokerOptions, classpath: string): Promise<Node> {
  const dir = options.dir instanceof URL
    ? options.dir.href
    : new URL(options.dir, `file://${Deno.cwd()}/`).href;
  const home = new URL(dir.endsWith("/") ? dir : `${dir}/`);
  const node = {
    port: options.port,
    dataDir: new URL("data/", home),
    logFile: new URL("logs/server.log", home),
    propertiesFile: new URL("server.properties", home),
    formatArgs: options.formatArgs ?? [],
    probeTls: options.probeTls,
  };
  await Deno.mkdir(new URL("logs/", home), { recursive: true });
  await Deno.mkdir(node.dataDir, { recursive: true });
  const extra = Object.entries(options.properties ?? {}).map(([key, value]) => `${key}=${value}\n`);
  await Deno.writeTextFile(
    node.propertiesFile,
    serverProperties(node.port, node.dataDir) + extra.join(""),
  );
  await formatStorage(classpath, node);
  await Deno.writeTextFile(node.logFile, ""); // each start gets a fresh log
  return node;
}

/** `kafka.Kafka` as a child JVM, the last lines of its stderr kept. */
function spawnKafka(node: Node, classpath: string) {
  const child = new Deno.Command("java", {
    args: [
      "-Xms256m",
      "-Xmx1g",
      "-XX:+UseG1GC",
      "-Djava.awt.headless=true",
      `-Dorg.slf4j.simpleLogger.logFile=${decodeURIComponent(node.logFile.pathname)}`,
      "-Dorg.slf4j.simpleLogger.showDateTime=true",
      "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss,SSS",
      "-cp",
      classpath,
      "kafka.Kafka",
      decodeURIComponent(node.propertiesFile.pathname),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const jvm = { alive: true, stderr: [] as string[] };
  const exited = child.status.then((status) => {
    jvm.alive = false;
    return status;
  });
  // The JVM's own stderr (a bad classpath, an unsupported flag) says why it died.
  const reading = new AbortController();
  const stderrDone = lines(child.stderr).pipeTo(
    new WritableStream({
      write(line) {
        jvm.stderr.push(line.slice(0, 1_000));
        if (jvm.stderr.length > STDERR_LINES) jvm.stderr.shift();
      },
    }),
    { signal: reading.signal },
  ).catch(() => {});
  const broker: NativeBroker = {
    pid: child.pid,
    port: node.port,
    exited,
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        if (jvm.alive) child.kill(signal);
      } catch { /* exited meanwhile */ }
      const status = await exited;
      await stderrDone;
      return status;
    },
    detach() {
      // Its stderr is no longer read: the JVM logs to its log file.
      child.unref();
      reading.abort();
    },
  };
  return { jvm, broker };
}

/**
 * Starts one KRaft node on 127.0.0.1:`port` with its files under `dir`, and resolves
 * once it answers as Kafka. Restarting on the same `dir` keeps its topics. The CLI
 * uses `.kafka/`; the fault tests start a private one they can kill.
 */
export async function startNativeBroker(options: NativeBrokerOptions): Promise<NativeBroker> {
  const classpath = options.classpath ?? await resolveClasspath();
  const node = await prepareNode(options, classpath);
  const { jvm, broker } = spawnKafka(node, classpath);
  await options.onSpawn?.(broker.pid);
  if (await waitForKafka(node, () => jvm.alive)) return broker;
  const wasAlive = jvm.alive;
  const { code } = await broker.stop("SIGKILL");
  const why = wasAlive
    ? `did not answer within ${START_TIMEOUT_MS / 1000} s`
    : `exited with code ${code}`;
  throw new BrokerStartError(
    `the broker ${why}; last lines of ${relative(node.logFile)}:\n${
      lastLines([...jvm.stderr, await readLog(node.logFile)].join("\n"), 12)
    }`,
  );
}

/** A path inside the project as the user would type it (`.kafka/logs/server.log`). */
export function relative(url: URL): string {
  return decodeURIComponent(url.pathname).replace(decodeURIComponent(ROOT), "");
}
