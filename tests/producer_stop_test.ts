/**
 * How the producer ends when things go wrong before or while it sends: Ctrl+C while
 * Kafka does not answer, Kafka lost between the topic check and the producer's
 * connect, a send Kafka refuses for good, a recording that cannot be written, and a
 * replay naming more symbols than the status line can follow. Each runs the produce
 * task's own command line against the real broker.
 */

import assert from "node:assert/strict";
import { ConfigResourceTypes } from "kafkajs";
import { sleep } from "../lib/async.ts";
import { startProducer } from "./helpers/processes.ts";
import { freePortPair } from "./helpers/ports.ts";
import { ROOT, scriptArgs } from "../tools/scripts.ts";
import { BROKERS, withTopic } from "./helpers/kafka.ts";

const lines = (text: string) => text.split(/\r?\n/).filter((line) => line.trim() !== "");

Deno.test("Ctrl+C while Kafka does not answer: out at once, with one line", async () => {
  await using producer = await startProducer(
    ["--source=sim", "--status-interval=0"],
    { KAFKA_BROKERS: `127.0.0.1:${freePortPair()}` },
  );
  await producer.waitFor(/^producer: /m);
  await sleep(500); // well inside kafkajs's connect retries (about 11 s in all)
  const before = producer.stderr.length;
  const signalled = Date.now();
  producer.kill("SIGINT");
  const { code, stdout, stderr } = await producer.done;
  const waited = Date.now() - signalled;
  assert.ok(waited < 2_000, `exited ${waited} ms after Ctrl+C`);
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "", "no summary: nothing was received");
  const after = lines(stderr.slice(before));
  assert.equal(after.length, 1, stderr);
  assert.equal(after[0], "stopped before Kafka answered: nothing was received, nothing is lost");
});

/**
 * A TCP relay to the broker that lets one connection through and closes the rest:
 * the producer's topic check gets through (its admin reaches the broker by the
 * address the broker advertises after the first), the producer's own connect does not.
 */
function oneConnectionRelay(target: string) {
  const [hostname, port] = target.split(",")[0].split(":");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open: Deno.Conn[] = [];
  const piping: Promise<unknown>[] = [];
  let accepted = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      if (++accepted > 1) {
        conn.close();
        continue;
      }
      const upstream = await Deno.connect({ hostname, port: Number(port) });
      open.push(conn, upstream);
      piping.push(
        conn.readable.pipeTo(upstream.writable).catch(() => {}),
        upstream.readable.pipeTo(conn.writable).catch(() => {}),
      );
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    get accepted() {
      return accepted;
    },
    async close() {
      listener.close();
      for (const conn of open) {
        try {
          conn.close();
        } catch { /* closed by its pipe */ }
      }
      await Promise.all([accepting, ...piping]);
    },
  };
}

const quote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;

Deno.test("Kafka gone before the producer connects: one line, exit 1, cursor shown again", async () => {
  await withTopic(1, async (topic) => {
    const relay = oneConnectionRelay(BROKERS);
    try {
      // On a terminal (script(1) gives it one) the producer hides the cursor.
      const command = [
        Deno.execPath(),
        ...scriptArgs("produce"),
        "--source=sim",
        `--topic=${topic}`,
      ].map(quote).join(" ");
      const output = await new Deno.Command("script", {
        args: ["-q", "-e", "-c", command, "/dev/null"],
        cwd: ROOT,
        env: { KAFKA_BROKERS: `127.0.0.1:${relay.port}`, NO_COLOR: "1", FINNHUB_TOKEN: "" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(output.stdout);
      assert.equal(output.code, 1, text);
      assert.ok(relay.accepted > 1, `the producer's connect was refused: ${text}`);
      assert.ok(text.includes("\x1b[?25l"), "the cursor was hidden");
      assert.ok(
        text.lastIndexOf("\x1b[?25h") > text.lastIndexOf("\x1b[?25l"),
        `the cursor is shown again at the end: ${JSON.stringify(text.slice(-300))}`,
      );
      const errors = lines(text).filter((line) => line.includes("error:"));
      assert.equal(errors.length, 1, text);
      assert.match(errors[0], /error: cannot reach Kafka at 127\.0\.0\.1:\d+: .*deno task kafka/);
    } finally {
      await relay.close();
    }
  });
});

Deno.test("a send Kafka refuses for good: exit 1 at once, saying why; a broken recording is not claimed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withTopic(1, async (topic, _kafka, admin) => {
      // Any batch is over this: MESSAGE_TOO_LARGE, which sending again cannot fix.
      await admin.alterConfigs({
        validateOnly: false,
        resources: [{
          type: ConfigResourceTypes.TOPIC,
          name: topic,
          configEntries: [{ name: "max.message.bytes", value: "200" }],
        }],
      });
      // A recording that breaks: its reader goes away (writes fail with EPIPE).
      const fifo = `${dir}/session.ndjson`;
      await new Deno.Command("mkfifo", { args: [fifo] }).output();
      await using producer = await startProducer(
        [
          "--source=sim",
          "--rate=max",
          "--limit=500",
          `--topic=${topic}`,
          `--record=${fifo}`,
          "--status-interval=0",
          "--flush-timeout=20",
        ],
        {},
        dir,
      );
      (await Deno.open(fifo, { read: true })).close();
      const { code, stdout, stderr, ms } = await producer.done;
      assert.equal(code, 1, stderr);
      assert.ok(ms < 15_000, `took ${ms} ms: it waited for the flush timeout`);
      assert.match(stderr, /kafka: send failed and cannot be retried: /);
      assert.ok(!stderr.includes("retrying"), stderr);
      assert.match(stdout, /received 500, acked 0 .*queued 500/);
      assert.match(stderr, /error: recording to .* failed, recording stopped/);
      const last = lines(stderr).at(-1)!;
      assert.match(
        last,
        /^error: Kafka refused the trades for good \(.+\): 500 trades not delivered/,
      );
      assert.ok(!last.includes("every frame received is in"), last);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a replay of 1,500 symbols: the status line follows 1,000 of them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const recording = `${dir}/many.ndjson`;
    const start = Date.now();
    const text = Array.from({ length: 1_500 }, (_, i) => {
      const frame = JSON.stringify({ type: "trade", data: [{ s: `S${i}`, p: 1, t: start, v: i }] });
      return JSON.stringify({ at: start + Math.floor(i / 2), source: "finnhub", frame });
    }).join("\n");
    await Deno.writeTextFile(recording, text);
    await withTopic(1, async (topic) => {
      await using producer = await startProducer(
        [`--replay=${recording}`, `--topic=${topic}`, "--status-interval=0.2"],
        {},
        dir,
      );
      const { code, stdout, stderr } = await producer.done;
      assert.equal(code, 0, stderr);
      assert.match(stdout, /received 1,500, acked 1,500/);
      const more = lines(stdout).map((line) => Number(/\+(\d+) more$/.exec(line)?.[1] ?? 0));
      assert.equal(Math.max(...more), 992, `1,000 symbols followed, 8 shown:\n${stdout}`);
      assert.match(stderr, /the status line follows the first 1,000 symbols/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
