/**
 * lib/: the rules every script shares: one flag grammar and wording, one exit code
 * per kind of mistake, one loopback rule, one line splitter.
 */

import assert from "node:assert/strict";
import { ConfigError } from "../config.ts";
import { exitCodeFor, parseFlags, positive, UsageError } from "../lib/cli.ts";
import { LineSplitter } from "../lib/lines.ts";
import { hostAndPort, isLoopback } from "../lib/net.ts";
import { type Script, scriptArgs, taskOf } from "../tools/scripts.ts";

const SPEC = { limit: { type: "string" }, help: { type: "boolean" } } as const;

Deno.test("flags: one grammar, and every mistake is one UsageError in one wording", () => {
  assert.deepEqual(parseFlags(["--limit=5", "--help"], SPEC), { limit: "5", help: true });
  assert.deepEqual(parseFlags(["--limit", "5"], SPEC), { limit: "5" });
  const cases: [string[], string][] = [
    [["--bogus"], "unknown flag --bogus (see --help)"],
    [["--limit"], "--limit needs a value (see --help)"],
    [["--limit", "--help"], "--limit needs a value (see --help)"],
    [["--help=yes"], "--help takes no value"],
    [["--limit=1", "--limit=2"], "--limit is given twice"],
    [["stray"], 'unexpected argument "stray" (see --help)'],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseFlags(args, SPEC), { name: "UsageError", message }, args.join(" "));
  }
  assert.equal(positive("limit", "200000", { integer: true }), 200_000);
  for (const bad of ["0", "-1", "1e6", "1.5", "", "x"]) {
    assert.throws(
      () => positive("limit", bad, { integer: true }),
      /is not a positive whole number/,
    );
  }
  assert.equal(positive("status-interval", "0", { allowZero: true }), 0);
});

Deno.test("a mistake the user can fix exits 2; anything else exits 1; secrets never show", () => {
  const printed: string[] = [];
  const original = console.error;
  console.error = (line: string) => printed.push(line);
  try {
    assert.equal(exitCodeFor(new UsageError("--rate: bad")), 2);
    assert.equal(exitCodeFor(new ConfigError("KAFKA_TOPIC: bad")), 2);
    assert.equal(exitCodeFor(new Error("wss://x/?token=s3cret failed")), 1);
  } finally {
    console.error = original;
  }
  assert.deepEqual(printed, [
    "error: --rate: bad",
    "error: KAFKA_TOPIC: bad",
    "error: wss://x/?token=*** failed",
  ]);
});

Deno.test("loopback: localhost, 127/8 and ::1, with or without a port", () => {
  for (const host of ["localhost", "127.0.0.1", "127.1.2.3:9092", "[::1]", "[::1]:8080", "::1"]) {
    assert.ok(isLoopback(host), host);
  }
  for (const host of ["0.0.0.0", "::", "10.0.0.1", "evil.localhost.example", "128.0.0.1:80"]) {
    assert.ok(!isLoopback(host), host);
  }
  assert.equal(hostAndPort("wss://ws.finnhub.io"), "ws.finnhub.io:443");
  assert.equal(hostAndPort("ws://127.0.0.1:8765/x"), "127.0.0.1:8765");
});

Deno.test("lines: split across chunks, the last without a newline, linear on a long line", async () => {
  const split = async (chunks: string[]) => {
    const out: string[] = [];
    await ReadableStream.from(chunks).pipeThrough(new LineSplitter())
      .pipeTo(new WritableStream({ write: (line) => void out.push(line) }));
    return out;
  };
  assert.deepEqual(await split(["a\nb", "c\n", "\nd"]), ["a", "bc", "", "d"]);
  assert.deepEqual(await split(["x\n"]), ["x"]);
  // 20,000 chunks of one line: a splitter that joins the rest onto each chunk copies
  // ~200 MB; this one joins once.
  const started = performance.now();
  const [line] = await split([...Array.from({ length: 20_000 }, () => "y".repeat(1_000)), "\n"]);
  assert.equal(line.length, 20_000_000);
  assert.ok(performance.now() - started < 2_000, `took ${performance.now() - started} ms`);
});

Deno.test("the tasks run each script exactly as the demo, the tests and the bench start it", async () => {
  const { tasks } = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const scripts: Script[] = [
    "produce",
    "consume",
    "dashboard",
    "dashboard-shared",
    "produce-remote",
    "consume-remote",
    "dashboard-remote",
  ];
  for (const script of scripts) {
    assert.equal(
      tasks[taskOf(script)],
      ["deno", ...scriptArgs(script, { envFile: true })].join(" "),
    );
  }
});

Deno.test("each -remote permission set is its local set with any host and certs/ readable", async () => {
  const { permissions } = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  );
  for (const script of ["produce", "consume", "dashboard"]) {
    const local = permissions[script];
    assert.deepEqual(permissions[`${script}-remote`], {
      ...local,
      net: true,
      read: [...local.read ?? [], "certs"],
    });
  }
});
