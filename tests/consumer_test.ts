/**
 * consumer.ts against the real broker: trades produced with the shared codec are
 * read back from a time and give exactly the reference's candles; a restart of the
 * same group rebuilds them without counting anything twice or missing anything;
 * garbage records are counted, skipped and forwarded as they are to `<topic>.dlq`;
 * a partition lost to another member and regained resumes where this run stood;
 * and the CLI stops cleanly on SIGTERM with its offsets committed.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type Admin, type Kafka, Partitioners } from "kafkajs";
import { Aggregator } from "../consumer/candles.ts";
import { loadConfig } from "../config.ts";
import { parseConsumerFlags as parseFlags, resolveFrom } from "../consumer/flags.ts";
import { UsageError } from "../lib/cli.ts";
import { lines as linesOf } from "../lib/lines.ts";
import { ROOT, scriptArgs } from "../tools/scripts.ts";
import { startConsumer } from "../consumer/topic_reader.ts";
import { encodeTrade, HEADER_RECEIVED_AT, HEADER_SOURCE, type TradeRecord } from "../lib/trade.ts";
import { assertCandlesEqual, generateTrades, reference } from "./helpers/candles_reference.ts";
import { BROKERS, uniqueName, withTopic } from "./helpers/kafka.ts";
import { freePort } from "./helpers/ports.ts";

const INTERVALS = [1_000, 60_000];

async function produce(
  kafka: Kafka,
  topic: string,
  trades: readonly TradeRecord[],
  partitionOf?: (symbol: string) => number,
) {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    for (let i = 0; i < trades.length; i += 1_000) {
      await producer.send({
        topic,
        acks: -1,
        messages: trades.slice(i, i + 1_000).map((trade) => ({
          key: trade.symbol,
          partition: partitionOf?.(trade.symbol),
          value: encodeTrade(trade, trade.source),
          timestamp: String(trade.time),
          headers: { [HEADER_RECEIVED_AT]: String(Date.now()), [HEADER_SOURCE]: trade.source },
        })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

/** Records no codec accepts, each with the Rejection it must be counted as. */
const GARBAGE: { value: string | Buffer | null; kind: string }[] = [
  { value: "not json", kind: "not-json" },
  {
    value: '{"v":2,"symbol":"AAPL","price":1,"volume":1,"time":1,"source":"sim"}',
    kind: "bad-version",
  },
  {
    value: '{"v":1,"symbol":"AAPL","price":-1,"volume":1,"time":1,"source":"sim"}',
    kind: "bad-price",
  },
  { value: Buffer.from([0xff, 0xfe, 0x7b]), kind: "not-json" },
  { value: "[1,2,3]", kind: "not-an-object" },
];

async function waitFor(what: string, condition: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function newAggregator(fromMs: number): Aggregator {
  return new Aggregator({ intervalsMs: INTERVALS, maxCandles: 3_600, maxSymbols: 100, fromMs });
}

async function committedEqualsEnd(admin: Admin, groupId: string, topic: string): Promise<void> {
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
  const ends = await admin.fetchTopicOffsets(topic);
  const byPartition = new Map(committed.partitions.map((p) => [p.partition, p.offset]));
  for (const { partition, high } of ends) {
    assert.equal(byPartition.get(partition), high, `partition ${partition} committed to the end`);
  }
}

Deno.test("the consumer rebuilds exact candles from a time, and a restart counts nothing twice", async (t) => {
  await withTopic(3, async (topic, kafka, admin) => {
    const dlqTopic = `${topic}.dlq`;
    const groupId = uniqueName("group");
    const config = loadConfig({
      KAFKA_BROKERS: BROKERS,
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: groupId,
    });
    // Trade times near now, so the broker's time-based retention keeps them.
    const first = generateTrades(3_000, 21, Date.now() - 20 * 60_000);
    const fromMs = first[600].time;
    const run = async (aggregator: Aggregator, expectApplied: number, expectRejected: number) => {
      const controller = new AbortController();
      const running = await startConsumer({
        config,
        aggregator,
        fromMs,
        dlq: true,
        signal: controller.signal,
        lagPollMs: 200,
      });
      try {
        await waitFor(
          `${expectApplied} applied and ${expectRejected} rejected`,
          () =>
            running.counts().applied >= expectApplied &&
            running.counts().rejected >= expectRejected,
        );
        await waitFor("lag 0", () => running.status().lag === 0);
        assert.ok(running.caughtUp(), "history read: alerts may go live");
        // Anything doubled would arrive by now; the counts must not have moved past.
        await new Promise((resolve) => setTimeout(resolve, 500));
      } finally {
        controller.abort();
        await running.stopped;
      }
      return running;
    };

    try {
      await produce(kafka, topic, first);
      const garbage = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
      await garbage.connect();
      // And one well-formed trade dated 2100 in its value (as kcat could write): refused as too
      // early, it must not stop AAPL's candles from moving (the second run's trades).
      const future = { symbol: "AAPL", price: 999, volume: 1, time: Date.UTC(2100, 0, 1) };
      await garbage.send({
        topic,
        messages: [
          ...GARBAGE.map(({ value }, i) => ({
            key: `junk-${i}`,
            value,
            timestamp: String(Date.now()),
          })),
          // The record's timestamp is kcat's (now): the broker refuses one over an hour ahead.
          { key: "AAPL", value: encodeTrade(future, "finnhub"), timestamp: String(Date.now()) },
        ],
      });
      await garbage.disconnect();

      const ref1 = reference(first, INTERVALS, 3_600, 100, fromMs);
      await t.step("the first run equals the reference, from the given time", async () => {
        const aggregator = newAggregator(fromMs);
        const running = await run(aggregator, ref1.applied.length, GARBAGE.length);
        const counts = running.counts();
        assert.equal(counts.applied, ref1.applied.length);
        assert.equal(counts.redelivered, 0);
        assert.equal(counts.rejected, GARBAGE.length);
        assert.equal(counts.tooEarly, 1, "the trade dated 2100");
        assert.deepEqual(counts.rejectedByKind, {
          "not-json": 2,
          "bad-version": 1,
          "bad-price": 1,
          "not-an-object": 1,
        });
        assert.ok(
          counts.tooLate > 0 && counts.tooLate <= ref1.tooLate,
          "late records after the seek point",
        );
        assert.deepEqual(aggregator.symbols(), ref1.symbols);
        for (const symbol of ref1.symbols) {
          for (const interval of INTERVALS) {
            assertCandlesEqual(
              aggregator.candles(symbol, interval),
              ref1.candles(symbol, interval),
              `${symbol}/${interval}`,
            );
          }
        }
        assert.equal(running.status().connected, false, "stopped");
        await committedEqualsEnd(admin, groupId, topic);
      });

      await t.step("garbage went to the DLQ as it was", async () => {
        const reader = kafka.consumer({ groupId: uniqueName("dlq-reader"), maxWaitTimeInMs: 200 });
        const seen: { value: Buffer | null; reason: string }[] = [];
        await reader.connect();
        try {
          await reader.subscribe({ topic: dlqTopic, fromBeginning: true });
          await reader.run({
            eachMessage: ({ message }) => {
              seen.push({ value: message.value, reason: String(message.headers?.["dlq-reason"]) });
              return Promise.resolve();
            },
          });
          await waitFor("the DLQ records", () => seen.length >= GARBAGE.length);
        } finally {
          await reader.disconnect();
        }
        const asBytes = (value: string | Buffer | null) =>
          value === null ? null : Buffer.from(value).toString("hex");
        assert.deepEqual(
          seen.map(({ value, reason }) => `${asBytes(value)} ${reason}`).sort(),
          GARBAGE.map(({ value, kind }) => `${asBytes(value)} ${kind}`).sort(),
        );
      });

      await t.step("a restart with more trades rebuilds the union, nothing twice", async () => {
        const second = generateTrades(1_500, 22, first[first.length - 1].time);
        await produce(kafka, topic, second);
        const all = [...first, ...second];
        const ref2 = reference(all, INTERVALS, 3_600, 100, fromMs);
        const aggregator = newAggregator(fromMs);
        const running = await run(aggregator, ref2.applied.length, GARBAGE.length);
        assert.equal(running.counts().applied, ref2.applied.length, "each trade applied once");
        assert.equal(running.counts().rejected, GARBAGE.length);
        assert.equal(running.counts().tooEarly, 1);
        for (const symbol of ref2.symbols) {
          for (const interval of INTERVALS) {
            assertCandlesEqual(
              aggregator.candles(symbol, interval),
              ref2.candles(symbol, interval),
              `${symbol}/${interval}`,
            );
          }
          assert.equal(aggregator.stats(symbol)!.trades, ref2.session(symbol).trades);
          assert.equal(aggregator.stats(symbol)!.last, ref2.session(symbol).last, symbol);
        }
        await committedEqualsEnd(admin, groupId, topic);
      });
    } finally {
      await admin.deleteTopics({ topics: [dlqTopic] }).catch(() => {});
    }
  });
});

Deno.test("a partition lost to another member and regained resumes where this run stood", async () => {
  await withTopic(2, async (topic, kafka, admin) => {
    const config = loadConfig({
      KAFKA_BROKERS: BROKERS,
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: uniqueName("shared"),
    });
    // Each symbol on one partition, so arrival order per symbol is the log's.
    const partitionOf = (symbol: string) => symbol === "AAPL" || symbol === "QUIET" ? 0 : 1;
    const first = generateTrades(1_500, 31, Date.now() - 10 * 60_000);
    const fromMs = first[0].time;
    await produce(kafka, topic, first, partitionOf);
    const start = (aggregator: Aggregator, signal: AbortSignal) =>
      startConsumer({ config, aggregator, fromMs, signal, lagPollMs: 200 });

    const stopA = new AbortController();
    const a = newAggregator(fromMs);
    const runningA = await start(a, stopA.signal);
    try {
      await waitFor(
        "A applies the first trades",
        () =>
          runningA.counts().applied ===
            reference(first, INTERVALS, 3_600, 100, fromMs).applied.length,
      );
      // B joins the same group and takes one partition; more trades arrive while it
      // holds it, and B applies and commits them.
      const stopB = new AbortController();
      const runningB = await start(newAggregator(fromMs), stopB.signal);
      try {
        await waitFor(
          "the partitions split",
          () => runningA.assignment().assigned === 1 && runningB.assignment().assigned === 1,
        );
        const second = generateTrades(600, 32, first[first.length - 1].time);
        await produce(kafka, topic, second, partitionOf);
        await waitFor(
          "both at the log end",
          () => runningA.status().lag === 0 && runningB.status().lag === 0,
        );
      } finally {
        stopB.abort();
        await runningB.stopped;
      }
      // A regains B's partition: the group's commit there is past what A applied,
      // so resuming from it would leave B's share of `second` out of A's charts.
      await waitFor("A holds both partitions", () => runningA.assignment().assigned === 2);
      const all = [...first, ...generateTrades(600, 32, first[first.length - 1].time)];
      const ref = reference(all, INTERVALS, 3_600, 100, fromMs);
      await waitFor(
        `A applies ${ref.applied.length}`,
        () => runningA.counts().applied >= ref.applied.length,
        15_000,
      );
      await waitFor("lag 0", () => runningA.status().lag === 0);
      assert.equal(runningA.counts().applied, ref.applied.length, "each trade applied once");
      for (const symbol of ref.symbols) {
        for (const interval of INTERVALS) {
          assertCandlesEqual(
            a.candles(symbol, interval),
            ref.candles(symbol, interval),
            `${symbol}/${interval}`,
          );
        }
      }
    } finally {
      stopA.abort();
      await runningA.stopped;
    }
    await committedEqualsEnd(admin, config.groupId, topic);
  });
});

Deno.test("the CLI prints plain lines when piped and stops cleanly on SIGTERM", async () => {
  await withTopic(1, async (topic, kafka) => {
    const trades = generateTrades(400, 5, Date.now() - 5 * 60_000);
    await produce(kafka, topic, trades);
    const expected = reference(trades, INTERVALS, 3_600, 500).applied.length;
    const child = new Deno.Command(Deno.execPath(), {
      args: [...scriptArgs("consume"), "--from=10m", "--every=100ms"],
      cwd: ROOT,
      env: {
        KAFKA_BROKERS: BROKERS,
        KAFKA_TOPIC: topic,
        KAFKA_GROUP_ID: uniqueName("cli"),
        NO_COLOR: "1",
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const lines: string[] = [];
    const reader = linesOf(child.stdout).getReader();
    try {
      while (!lines.some((line) => line.includes(` applied=${expected} `))) {
        const { value, done } = await reader.read();
        if (done) break;
        lines.push(value);
      }
      child.kill("SIGTERM");
      // The rest of that print (one line per symbol), and the last print on the stop.
      for (let r = await reader.read(); !r.done; r = await reader.read()) lines.push(r.value);
    } finally {
      reader.releaseLock();
    }
    const status = await child.status;
    const errors = await stderr;
    assert.equal(status.code, 0, errors);
    assert.ok(
      lines.some((line) => / consumer topic=\S+ connected=true /.test(line)),
      lines.join("\n"),
    );
    assert.ok(lines.some((line) => line.includes(`symbol="QUIET"`) && line.endsWith("SIMULATED")));
    assert.match(errors, new RegExp(`stopped: applied ${expected}, rejected 0`));
    assert.doesNotMatch(errors, /\n\s+at /, "no stack trace");
  });
});

Deno.test("Ctrl+C while Kafka does not answer stops at once, with one line", async () => {
  // A port nothing listens on: kafkajs would retry it for about eight seconds.
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [...scriptArgs("consume"), "--from=1m"],
    cwd: ROOT,
    env: { KAFKA_BROKERS: `127.0.0.1:${port}`, KAFKA_GROUP_ID: uniqueName("cli"), NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let errors = "";
  while (!errors.includes("consuming ")) {
    const { value, done } = await reader.read();
    if (done) break;
    errors += value;
  }
  await new Promise((resolve) => setTimeout(resolve, 500)); // connecting by now
  const signalledAt = Date.now();
  child.kill("SIGINT");
  for (let r = await reader.read(); !r.done; r = await reader.read()) errors += r.value;
  const status = await child.status;
  const took = Date.now() - signalledAt;
  assert.equal(status.code, 0, errors);
  assert.ok(took < 2_000, `exited ${took} ms after SIGINT`);
  const lines = errors.trim().split("\n").filter((line) => !line.startsWith("kafka: "));
  assert.equal(lines.length, 2, errors); // the "consuming" line, then the stop
  assert.match(lines[1], /^stopped before Kafka answered/);
  assert.doesNotMatch(errors, /\n\s+at /, "no stack trace");
});

Deno.test("flags: spans, ISO times and mistakes", () => {
  assert.deepEqual(parseFlags(["--from=15m", "--overlay"]).from, { ago: 900_000 });
  assert.deepEqual(parseFlags(["--from", "2026-01-05T14:30:00Z"]).from, {
    at: Date.UTC(2026, 0, 5, 14, 30),
  });
  assert.equal(parseFlags(["--interval=1m"]).intervalMs, 60_000);
  assert.equal(resolveFrom(parseFlags([]), 1_000_000, 60_000), 940_000);
  assert.equal(resolveFrom(parseFlags(["--from=30s"]), 1_000_000, 60_000), 970_000);
  for (
    const bad of [
      ["--from=15"],
      ["--from=yesterday"],
      ["--from=2026-13-45T00:00:00Z"],
      ["--bogus"],
      ["--overlay=1"],
      [
        "--interval=1500ms",
      ],
      ["--dashboard", "--overlay"],
      ["stray"],
    ]
  ) {
    assert.throws(() => parseFlags(bad), UsageError, bad.join(" "));
  }
  assert.throws(
    () => resolveFrom(parseFlags(["--from=2099-01-01T00:00:00Z"]), Date.now(), 0),
    /future/,
  );
});

Deno.test("the consume task refuses --dashboard in one line: its permissions cannot serve the page", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [...scriptArgs("consume"), "--dashboard"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const errors = new TextDecoder().decode(stderr);
  assert.equal(code, 2, errors);
  assert.equal(stdout.length, 0);
  assert.equal(
    errors,
    "error: --dashboard: this task may not read the page: run `deno task dashboard`\n",
  );
});
