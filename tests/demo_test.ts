/**
 * `deno task demo` with the demo task's permission set: each child runs its script
 * as its task does (its permission set, `.env`) and one signal stops them all;
 * mistakes end in one clear line. browser_test.ts runs the page end to end.
 */

import assert from "node:assert/strict";
import { lines } from "../lib/lines.ts";
import { ROOT } from "../tools/scripts.ts";
import { BROKERS, requireBroker, testKafka, uniqueName } from "./helpers/kafka.ts";
import { freePort } from "./helpers/ports.ts";

/** The demo as its task runs it, less `--env-file` (a developer's .env must not steer it). */
function startDemo(args: string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", "-P=demo", "tools/demo.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = { stdout: "", stderr: "" };
  const waiting: { pattern: RegExp; found: (match: RegExpExecArray) => void }[] = [];
  const collect = async (stream: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
    for await (const line of lines(stream)) {
      output[into] += `${line}\n`;
      for (const { pattern, found } of waiting) {
        const match = pattern.exec(line);
        if (match) found(match);
      }
    }
  };
  const done = Promise.all([collect(child.stdout, "stdout"), collect(child.stderr, "stderr")])
    .then(() => child.status);
  /** The first line from now on that matches `pattern`; rejects when the demo ends first. */
  const line = (pattern: RegExp) => {
    const seen = Promise.withResolvers<RegExpExecArray>();
    waiting.push({ pattern, found: seen.resolve });
    done.then(() => seen.reject(new Error(`the demo ended:\n${output.stdout}${output.stderr}`)));
    return seen.promise;
  };
  return { child, output, line, done };
}

async function runDemo(args: string[], env: Record<string, string>) {
  const demo = startDemo(args, env);
  const { code } = await demo.done;
  return { code, ...demo.output };
}

interface Process {
  readonly pid: number;
  readonly ppid: number;
  readonly args: string;
}

/** Every process on the machine, with its parent and its command line (from ps). */
async function processes(): Promise<Process[]> {
  const { stdout } = await new Deno.Command("ps", { args: ["-e", "-o", "pid=,ppid=,args="] })
    .output();
  return new TextDecoder().decode(stdout).trim().split("\n").map((line) => {
    const [, pid, ppid, args] = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line)!;
    return { pid: Number(pid), ppid: Number(ppid), args };
  });
}

/** Every process below `pid`. */
async function descendants(pid: number): Promise<Process[]> {
  const all = await processes();
  const found: Process[] = [];
  for (let parents = new Set([pid]); parents.size > 0;) {
    const next = all.filter((p) => parents.has(p.ppid));
    found.push(...next);
    parents = new Set(next.map((p) => p.pid));
  }
  return found;
}

Deno.test("the demo runs each child as its task does, and one signal stops them all", async () => {
  await requireBroker();
  const topic = uniqueName("demo-test");
  const demo = startDemo([], {
    KAFKA_BROKERS: BROKERS,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP_ID: uniqueName("demo-test"),
    DASHBOARD_HOST: "127.0.0.1",
    DASHBOARD_PORT: String(freePort()),
    SOURCE: "sim",
    FINNHUB_TOKEN: "",
  });
  const url = demo.line(/market-stream is running: (\S+)/);
  const producing = demo.line(/^producer\s*│ producer: /);
  let tree: Process[] = [];
  try {
    // Running: the page is served, and the producer has started (and taken its signals).
    const page = await fetch((await url)[1]);
    assert.equal(page.status, 200);
    await page.body?.cancel();
    await producing;
    tree = await descendants(demo.child.pid);
    // Its children: each script with its task's permission set and .env.
    const scripts = tree.filter((p) => p.ppid === demo.child.pid).map((p) => p.args).sort();
    assert.equal(scripts.length, 2, scripts.join("\n"));
    assert.match(scripts[0], / -P=dashboard --env-file .*consumer\.ts --dashboard$/);
    assert.match(scripts[1], / -P=produce --env-file .*producer\.ts$/);
  } finally {
    demo.child.kill("SIGINT");
    const status = await demo.done;
    const admin = testKafka().admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
    assert.equal(status.code, 0, demo.output.stderr);
  }
  assert.match(demo.output.stdout, /demo: stopped$/m);
  const left = await processes();
  const alive = tree.filter((p) => left.some((q) => q.pid === p.pid && q.args === p.args));
  assert.deepEqual(alive, [], "every child and every script below it has exited");
});

Deno.test("demo: a wrong flag is one line and exit code 2", async () => {
  const { code, stderr } = await runDemo(["--bogus"], {});
  assert.equal(code, 2);
  assert.equal(stderr, "error: unknown flag --bogus (see --help)\n");
});

Deno.test("demo: a port that is not Kafka is named, and nothing is started", async () => {
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen: () => {} },
    () => new Response("not kafka"),
  );
  try {
    const { code, stderr, stdout } = await runDemo([], {
      KAFKA_BROKERS: `127.0.0.1:${server.addr.port}`,
    });
    assert.equal(code, 2, stderr);
    assert.equal(
      stderr,
      `error: 127.0.0.1:${server.addr.port} answers, but not as Kafka: set KAFKA_BROKERS\n`,
    );
    assert.ok(!stdout.includes("producer"), "no child was started");
  } finally {
    controller.abort();
    await server.finished;
  }
});
