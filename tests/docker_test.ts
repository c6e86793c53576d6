/**
 * docker/: there is no Docker engine on our machines, so the container files are
 * checked the ways that need none. Every compose file must pass `docker-compose
 * config` (Debian's docker-compose), and the app's resolves to what the README
 * promises; the Dockerfile's RUN steps, its CMD and its HEALTHCHECK run here, outside
 * Docker, as the same commands, against the test broker.
 */

import assert from "node:assert/strict";
import { KAFKA_VERSION } from "../tools/broker/native.ts";
import { ROOT, scriptArgs } from "../tools/scripts.ts";
import { BROKERS, uniqueName, withTopic } from "./helpers/kafka.ts";
import { freePort } from "./helpers/ports.ts";
import { Proc, waitUntil } from "./helpers/processes.ts";

const DOCKER = `${ROOT}docker/`;
const TOKEN = "compose-test-token-0123456789";

async function output(program: string, args: string[], options: Deno.CommandOptions = {}) {
  const { code, stdout, stderr } = await new Deno.Command(program, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...options,
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

/** `docker-compose config`: the file validated and resolved, as JSON (via PyYAML). */
async function composeConfig(file: string, env: Record<string, string>) {
  const result = await output("docker-compose", ["-f", file, "config"], { cwd: DOCKER, env });
  if (result.code !== 0) return { ...result, config: undefined };
  const parse = new Deno.Command("/usr/bin/python3", {
    args: ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = parse.stdin.getWriter();
  await writer.write(new TextEncoder().encode(result.stdout));
  await writer.close();
  const parsed = await parse.output();
  assert.equal(parsed.code, 0, new TextDecoder().decode(parsed.stderr));
  return { ...result, config: JSON.parse(new TextDecoder().decode(parsed.stdout)) };
}

Deno.test("every compose file in docker/ passes docker-compose config", async () => {
  const files = [...Deno.readDirSync(DOCKER)].map(({ name }) => name)
    .filter((name) => /^compose.*\.ya?ml$/.test(name)).sort();
  assert.deepEqual(files, ["compose.app.yml", "compose.cluster.yml", "compose.yml"]);
  for (const file of files) {
    const { code, stderr } = await composeConfig(file, { DASHBOARD_TOKEN: TOKEN });
    assert.equal(code, 0, `${file}: ${stderr}`);
  }
});

Deno.test("compose.app.yml: Kafka, the producer and a token-guarded dashboard on 127.0.0.1:8080", async (t) => {
  await t.step("resolved as the README says", async () => {
    const { config } = await composeConfig("compose.app.yml", {
      DASHBOARD_TOKEN: TOKEN,
      FINNHUB_TOKEN: "",
    });
    const { kafka, producer, dashboard } = config.services;
    assert.equal(kafka.image, `apache/kafka:${KAFKA_VERSION}`, "the broker of compose.yml");
    assert.deepEqual(dashboard.ports, ["127.0.0.1:8080:8080/tcp"], "published on loopback only");
    assert.equal(dashboard.environment.DASHBOARD_HOST, "0.0.0.0");
    assert.equal(dashboard.environment.DASHBOARD_TOKEN, TOKEN);
    for (const service of [producer, dashboard]) {
      assert.equal(service.environment.KAFKA_BROKERS, "kafka:19092");
      assert.equal(service.build.dockerfile, "docker/Dockerfile");
      assert.equal(service.depends_on.kafka.condition, "service_healthy");
    }
    // The producer runs as `deno task produce:remote` does; the dashboard is the image's CMD.
    assert.deepEqual(producer.command, scriptArgs("produce-remote"));
    assert.equal(dashboard.command, undefined);
    assert.equal(producer.environment.FINNHUB_TOKEN, "", "no token: the simulated market");
  });
  await t.step(
    "FINNHUB_TOKEN from the environment (or --env-file .env) reaches the producer",
    async () => {
      const { config } = await composeConfig("compose.app.yml", {
        DASHBOARD_TOKEN: TOKEN,
        FINNHUB_TOKEN: "d0-not-a-real-key",
      });
      assert.equal(config.services.producer.environment.FINNHUB_TOKEN, "d0-not-a-real-key");
      assert.equal(config.services.dashboard.environment.FINNHUB_TOKEN, undefined);
    },
  );
  await t.step("without DASHBOARD_TOKEN it refuses to start, naming the variable", async () => {
    const { code, stderr } = await composeConfig("compose.app.yml", { DASHBOARD_TOKEN: "" });
    assert.notEqual(code, 0);
    assert.match(stderr, /set DASHBOARD_TOKEN \(at least 16 characters/);
  });
});

interface Dockerfile {
  from: string;
  user: string;
  run: string[][];
  cmd: string[];
  healthcheck: string[];
}

/** The instructions this test runs, from docker/Dockerfile (continuation lines joined). */
async function readDockerfile(): Promise<Dockerfile> {
  const text = (await Deno.readTextFile(`${DOCKER}Dockerfile`)).replace(/\\\n\s*/g, "");
  const lines = text.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
  const all = (word: string) =>
    lines.filter((line) => line.startsWith(`${word} `)).map((line) => line.slice(word.length + 1));
  const healthcheck = all("HEALTHCHECK")[0];
  return {
    from: all("FROM")[0],
    user: all("USER").at(-1) ?? "root",
    run: all("RUN").map((line) => line.split(" ")),
    cmd: JSON.parse(all("CMD")[0]),
    healthcheck: JSON.parse(healthcheck.slice(healthcheck.indexOf("CMD ") + 4)),
  };
}

Deno.test("docker/Dockerfile: pinned Deno, not root, and its steps run as they are", async (t) => {
  const dockerfile = await readDockerfile();
  const ci = await Deno.readTextFile(`${ROOT}.ci/run`);
  assert.equal(dockerfile.from, `denoland/deno:${/DENO_VERSION=(\S+)/.exec(ci)?.[1]}`);
  assert.equal(dockerfile.user, "deno");
  assert.deepEqual(dockerfile.run.map((args) => args.slice(0, 2).join(" ")), [
    "deno install",
    "deno cache",
  ]);

  await t.step("RUN deno install, with only deno.json and deno.lock (its layer)", async () => {
    const dir = await Deno.makeTempDir({ prefix: "market-stream-image-" });
    try {
      await Deno.copyFile(`${ROOT}deno.json`, `${dir}/deno.json`);
      await Deno.copyFile(`${ROOT}deno.lock`, `${dir}/deno.lock`);
      const [program, ...args] = dockerfile.run[0];
      const result = await output(program, args, { cwd: dir });
      assert.equal(result.code, 0, result.stderr);
      await Deno.stat(`${dir}/node_modules/kafkajs/package.json`);
      await Deno.stat(`${dir}/node_modules/uplot/dist/uPlot.iife.min.js`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  await t.step("RUN deno cache, on the code", async () => {
    const [program, ...args] = dockerfile.run[1];
    const result = await output(program, args, { cwd: ROOT });
    assert.equal(result.code, 0, result.stderr);
  });
  await t.step("CMD is the dashboard:remote task; HEALTHCHECK follows its /healthz", async () => {
    assert.deepEqual(dockerfile.cmd, scriptArgs("dashboard-remote"));
    await withTopic(3, async (topic) => {
      const port = freePort();
      const check = async () => {
        const [program, ...args] = dockerfile.healthcheck;
        return await output(program, args, { cwd: ROOT, env: { DASHBOARD_PORT: String(port) } });
      };
      // The image listens on 0.0.0.0; a test listens on loopback only.
      await using dashboard = new Proc(dockerfile.cmd, {
        KAFKA_BROKERS: BROKERS,
        KAFKA_TOPIC: topic,
        KAFKA_GROUP_ID: uniqueName("image"),
        DASHBOARD_HOST: "127.0.0.1",
        DASHBOARD_PORT: String(port),
      });
      await dashboard.explain(dashboard.waitFor(/dashboard: http:\/\/127\.0\.0\.1:\d+/));
      let last = { code: -1, stdout: "", stderr: "" };
      await dashboard.explain(
        waitUntil(() => `a healthy check (last: ${last.stderr})`, async () => {
          last = await check();
          return last.code === 0;
        }),
      );
      dashboard.kill("SIGTERM");
      assert.equal((await dashboard.done).code, 0, "docker stop's SIGTERM ends it cleanly");
      const down = await check();
      assert.equal(down.code, 1);
      assert.match(down.stderr, /^unhealthy: http:\/\/127\.0\.0\.1:\d+\/healthz: .+\n$/);
    });
  });
});
