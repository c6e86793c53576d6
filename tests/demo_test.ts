/**
 * `deno task demo` outside the happy path (browser_test.ts runs the happy path):
 * the children get exactly their tasks' flags, and mistakes end in one clear line.
 */

import assert from "node:assert/strict";
import { readTasks, taskCommand } from "../tools/demo.ts";

Deno.test("the demo starts each child with the flags of its own task", async () => {
  const tasks = await readTasks();
  for (
    const [task, script] of [
      ["produce", "producer.ts"],
      ["dashboard", "consumer.ts"],
      ["kafka", "broker.ts"],
      ["kafka:stop", "broker.ts"],
      ["demo", "demo.ts"],
    ]
  ) {
    const argv = taskCommand(tasks, task);
    assert.deepEqual(argv.slice(0, 2), ["deno", "run"], task);
    assert.ok(argv.includes("--no-prompt"), `${task} fails loudly instead of prompting`);
    assert.ok(argv.includes(script), `${task} runs ${script}`);
  }
  assert.ok(taskCommand(tasks, "dashboard").includes("--dashboard"));
  assert.throws(() => taskCommand(tasks, "nope"), /no task "nope"/);
  assert.throws(
    () => taskCommand({ x: "deno run a.ts && rm -rf /" }, "x"),
    /not a plain deno command/,
  );
  assert.throws(() => taskCommand({ x: "node a.js" }, "x"), /does not start with "deno run"/);
});

async function runDemo(args: string[], env: Record<string, string>) {
  const argv = taskCommand(await readTasks(), "demo");
  const output = await new Deno.Command(argv[0], {
    args: [...argv.slice(1), ...args],
    env,
    stdin: "null",
  }).output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr).replace(/.*--env-file.*\n/, ""),
  };
}

Deno.test("demo: a wrong flag is one line and exit code 2", async () => {
  const { code, stderr } = await runDemo(["--bogus"], {});
  assert.equal(code, 2);
  assert.match(stderr, /^error: unknown argument "--bogus"\n/);
  assert.ok(!stderr.includes("    at "), "no stack trace");
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
