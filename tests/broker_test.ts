/**
 * The broker launcher (`deno task kafka`, `kafka:status`) as a user runs it, with
 * its task's own permission set, and the compose files it falls back to.
 */

import assert from "node:assert/strict";
import { KAFKA_VERSION, probeKafka } from "../tools/broker/native.ts";
import { ROOT } from "../tools/scripts.ts";
import { BROKERS } from "./helpers/kafka.ts";
import { freePortPair } from "./helpers/ports.ts";

/** The launcher with the permission set of its task: `kafka`, `kafka-status`, `kafka-stop`. */
async function runLauncher(args: string[], env: Record<string, string>) {
  const set = { status: "kafka-status", stop: "kafka-stop" }[args[0]] ?? "kafka";
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", `-P=${set}`, "tools/broker/launcher.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

Deno.test("probeKafka tells Kafka, nothing, and something else apart", async () => {
  const [host, port] = BROKERS.split(",")[0].split(":");
  assert.equal(await probeKafka(host, Number(port)), "kafka");
  assert.equal(await probeKafka("127.0.0.1", freePortPair()), "closed");
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("hi"),
  );
  assert.equal(await probeKafka("127.0.0.1", server.addr.port), "other");
});

Deno.test("the launcher reuses a broker that already answers", async () => {
  const result = await runLauncher(["start"], { KAFKA_BROKERS: BROKERS });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, new RegExp(`Kafka already answers at ${BROKERS}`));
});

Deno.test("launcher errors are one line and exit code 2", async (t) => {
  await t.step("a bad KAFKA_BROKERS", async () => {
    const result = await runLauncher(["start"], { KAFKA_BROKERS: "localhost:notaport" });
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      'error: KAFKA_BROKERS: "localhost:notaport" is not host:port (example: KAFKA_BROKERS=127.0.0.1:9092,127.0.0.1:9094)\n',
    );
  });
  await t.step("no Docker, no Java, no Maven", async () => {
    const result = await runLauncher(["start"], {
      KAFKA_BROKERS: `127.0.0.1:${freePortPair()}`,
      PATH: "/nonexistent",
    });
    assert.equal(result.code, 2);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.match(
      result.stderr,
      /^error: no Docker engine answers and Java 17\+ and Maven are not installed: install Docker, or Java 17 and Maven/,
    );
  });
  await t.step("the port is taken by something that is not Kafka", async () => {
    await using server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response("hi"),
    );
    const result = await runLauncher(["start"], { KAFKA_BROKERS: `127.0.0.1:${server.addr.port}` });
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      new RegExp(`^error: port ${server.addr.port} is taken by something that is not Kafka`),
    );
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
  });
  await t.step("a remote broker is outside the task's permissions: one line says so", async () => {
    const result = await runLauncher(["start"], { KAFKA_BROKERS: "kafka.invalid:9092" });
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      "error: KAFKA_BROKERS: no permission to reach kafka.invalid:9092: the local tasks reach only this machine and ws.finnhub.io; use the :remote tasks (deno task produce:remote, consume:remote, dashboard:remote)\n",
    );
  });
  await t.step("an unknown command", async () => {
    const result = await runLauncher(["restart"], {});
    assert.equal(result.code, 2);
    assert.match(result.stderr, /^error: unknown command "restart": use start, stop or status/);
  });
  await t.step("an unknown flag (stop, with its own permission set, stops nothing)", async () => {
    const result = await runLauncher(["stop", "--now"], {});
    assert.equal(result.code, 2);
    assert.equal(result.stderr, "error: unknown flag --now (see --help)\n");
    assert.equal(result.stdout, "");
  });
});

Deno.test("status says what answers where", async () => {
  const result = await runLauncher(["status"], { KAFKA_BROKERS: BROKERS });
  assert.equal(result.code, 0);
  assert.match(result.stdout, new RegExp(`^${BROKERS}: Kafka answers$`, "m"));
  const idle = await runLauncher(["status"], { KAFKA_BROKERS: `127.0.0.1:${freePortPair()}` });
  assert.equal(idle.code, 1);
  assert.match(idle.stdout, /: nothing listens$/m);
});

Deno.test("the native broker's pom pins the same Kafka as the launcher", async () => {
  const pom = await Deno.readTextFile(`${ROOT}tools/broker/pom.xml`);
  assert.equal(/<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom)?.[1], KAFKA_VERSION);
});

/** The compose files, parsed by a real YAML parser (PyYAML, Debian's python3-yaml). */
async function readCompose(name: string): Promise<{ services: Record<string, Service> }> {
  const { code, stdout, stderr } = await new Deno.Command("/usr/bin/python3", {
    args: [
      "-c",
      "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
      name,
    ],
    cwd: `${ROOT}docker/`,
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return JSON.parse(new TextDecoder().decode(stdout));
}

interface Service {
  image: string;
  ports: string[];
  environment: Record<string, string | number>;
  healthcheck?: { test: string[] };
  volumes: string[];
}

Deno.test("docker/compose.yml: one KRaft node that clients on this machine can reach", async () => {
  const { services } = await readCompose("compose.yml");
  const kafka = services.kafka;
  assert.equal(kafka.image, `apache/kafka:${KAFKA_VERSION}`, "same version as the native launcher");
  assert.deepEqual(kafka.ports, ["127.0.0.1:${KAFKA_PORT:-9092}:9092"]);
  const env = kafka.environment;
  assert.equal(env.KAFKA_PROCESS_ROLES, "broker,controller");
  assert.equal(env.KAFKA_CONTROLLER_QUORUM_VOTERS, "1@kafka:9093");
  assert.equal(env.KAFKA_LISTENERS, "HOST://:9092,INTERNAL://:19092,CONTROLLER://:9093");
  assert.equal(
    env.KAFKA_ADVERTISED_LISTENERS,
    "HOST://127.0.0.1:${KAFKA_PORT:-9092},INTERNAL://kafka:19092",
  );
  assert.ok(
    !String(env.KAFKA_ADVERTISED_LISTENERS).includes("CONTROLLER"),
    "controllers are never advertised",
  );
  for (
    const key of [
      "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
      "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ]
  ) {
    assert.equal(env[key], 1, `${key} must be 1 on a single node, or groups never start`);
  }
  assert.match(
    String(env.CLUSTER_ID),
    /^[A-Za-z0-9_-]{22}$/,
    "a KRaft cluster id is 16 bytes, base64url",
  );
  assert.ok(kafka.healthcheck, "`up --wait` needs a healthcheck");
});

Deno.test("docker/compose.cluster.yml: three brokers, replicated, each reachable from the host", async () => {
  const { services } = await readCompose("compose.cluster.yml");
  const names = Object.keys(services).sort();
  assert.deepEqual(names, ["kafka-1", "kafka-2", "kafka-3"]);
  const hostPorts = ["9092", "9094", "9096"];
  names.forEach((name, index) => {
    const { environment: env, image, ports } = services[name];
    assert.equal(image, `apache/kafka:${KAFKA_VERSION}`);
    assert.equal(env.KAFKA_NODE_ID, index + 1);
    assert.deepEqual(ports, [`127.0.0.1:${hostPorts[index]}:9092`]);
    assert.equal(
      env.KAFKA_ADVERTISED_LISTENERS,
      `HOST://127.0.0.1:${hostPorts[index]},INTERNAL://${name}:19092`,
    );
    assert.equal(
      env.KAFKA_CONTROLLER_QUORUM_VOTERS,
      "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093",
    );
    assert.equal(env.KAFKA_INTER_BROKER_LISTENER_NAME, "INTERNAL");
    assert.equal(env.KAFKA_DEFAULT_REPLICATION_FACTOR, 3);
    assert.equal(env.KAFKA_MIN_INSYNC_REPLICAS, 2);
    assert.equal(env.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR, 3);
    assert.equal(env.KAFKA_TRANSACTION_STATE_LOG_MIN_ISR, 2);
  });
  const clusterIds = new Set(names.map((name) => services[name].environment.CLUSTER_ID));
  assert.equal(clusterIds.size, 1, "all nodes belong to one cluster");
});
