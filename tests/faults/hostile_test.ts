/**
 * Fault suite, 4: hostile input at both ends of the topic.
 * - 10,000 random and mutated frames from the fake Finnhub server (bad JSON, wrong
 *   types, huge frames, deep nesting, invalid UTF-8, NaN and negative prices, unknown
 *   types, control characters, repeated frames) mixed with valid trades: the producer
 *   stays up, only the valid trades reach Kafka, every rejection is counted by kind.
 * - Garbage records written to the same topic by another client (kcat): the consumer
 *   skips them, counts them, and keeps going with the trades after them.
 */

import assert from "node:assert/strict";
import { random } from "../helpers/candles_reference.ts";
import { FakeFinnhub, type WireTrade } from "../helpers/fake_finnhub.ts";
import {
  lastStatus,
  parseSummary,
  printTally,
  readTopic,
  rssMiB,
  startDashboardConsumer,
  startProducer,
  tally,
  waitForCount,
  waitUntil,
} from "../helpers/processes.ts";
import { sleep } from "../../lib/async.ts";
import { BROKERS, uniqueName, withTopic } from "../helpers/kafka.ts";

const SYMBOLS = ["AAPL", "MSFT", "BINANCE:BTCUSDT", "IC MARKETS:1"];
const HOSTILE = 10_000;
const SEED = 20_260_105;
const BIG_FRAMES = 400;

type Kind = string;
interface Hostile {
  /** Text frame, or bytes for a binary frame. */
  frame: string | Uint8Array;
  kind: Kind;
  /** A valid trade travelling in the same frame, which must reach Kafka. */
  valid?: WireTrade;
}

const encoder = new TextEncoder();

function utf16(text: string): Uint8Array {
  return new Uint8Array(Uint16Array.from(text, (char) => char.charCodeAt(0)).buffer);
}

/**
 * The catalogue: each entry yields one frame that the producer must refuse with
 * exactly one rejection of the given kind. `t` is a fresh valid trade to mutate,
 * `n` a number unique to the frame (so no two frames are byte-identical).
 */
export function catalogue(t: WireTrade, n: number, next: () => number): Hostile[] {
  const frame = (data: unknown) => JSON.stringify({ type: "trade", data: [data] });
  const valid = frame(t);
  const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
  return [
    // Bad JSON, random: cut anywhere before the end, or a control byte anywhere.
    { frame: valid.slice(0, Math.floor(next() * (valid.length - 1))), kind: "not-json" },
    (() => {
      const at = Math.floor(next() * valid.length);
      const control = String.fromCharCode(Math.floor(next() * 9));
      return { frame: valid.slice(0, at) + control + valid.slice(at), kind: "not-json" };
    })(),
    { frame: valid.replace(/"p":[^,]+/, '"p":NaN'), kind: "not-json" },
    { frame: valid.replace(/"p":[^,]+/, '"p":Infinity'), kind: "not-json" },
    { frame: `{"type":"trade","data":[${n},]`, kind: "not-json" },
    // Wrong types.
    { frame: frame({ ...t, p: String(t.p) }), kind: "bad-price" },
    { frame: frame({ ...t, p: null }), kind: "bad-price" },
    { frame: frame({ ...t, v: String(t.v) }), kind: "bad-volume" },
    { frame: frame({ ...t, t: String(t.t) }), kind: "bad-time" },
    { frame: frame({ ...t, s: n }), kind: "bad-symbol" },
    { frame: frame({ ...t, c: "1" }), kind: "bad-conditions" },
    { frame: frame({ ...t, c: [n] }), kind: "bad-conditions" },
    { frame: JSON.stringify({ type: "trade", data: { n } }), kind: "bad-frame" },
    { frame: JSON.stringify({ type: "trade", data: [n] }), kind: "not-an-object" },
    { frame: JSON.stringify([{ type: "trade", data: [t] }]), kind: "not-an-object" },
    { frame: String(n), kind: "not-an-object" },
    // Impossible values.
    { frame: frame({ ...t, p: -t.p }), kind: "bad-price" },
    { frame: frame({ ...t, p: 0 }), kind: "bad-price" },
    { frame: valid.replace(/"p":[^,]+/, '"p":1e999'), kind: "bad-price" },
    { frame: frame({ ...t, v: -1 }), kind: "bad-volume" },
    { frame: frame({ ...t, t: t.t + 0.5 }), kind: "bad-time" },
    { frame: frame({ ...t, t: Math.floor(t.t / 1000) }), kind: "bad-time" }, // seconds, not ms
    { frame: frame({ ...t, t: t.t + 86_400_000 }), kind: "bad-time" },
    // Symbols no chart may print: empty, padded, too long, control characters,
    // terminal escapes, a lone surrogate (not encodable as UTF-8).
    { frame: frame({ ...t, s: "" }), kind: "bad-symbol" },
    { frame: frame({ ...t, s: ` ${t.s}` }), kind: "bad-symbol" },
    { frame: frame({ ...t, s: "X".repeat(65) }), kind: "bad-symbol" },
    { frame: frame({ ...t, s: `AA\nPL${n}` }), kind: "bad-symbol" },
    { frame: frame({ ...t, s: `\u001b[2J\u001b[31m${n}` }), kind: "bad-symbol" },
    { frame: frame({ ...t, s: `AAPL\u0000${n}` }), kind: "bad-symbol" },
    { frame: frame({ ...t, s: `\ud800${n}` }), kind: "bad-symbol" },
    // Unknown types.
    { frame: JSON.stringify({ type: "news", data: [t] }), kind: "unknown-type" },
    { frame: JSON.stringify({ type: "Trade", data: [t] }), kind: "unknown-type" },
    { frame: JSON.stringify({ data: [t], n }), kind: "unknown-type" },
    // Deep nesting.
    { frame: `{"type":"trade","n":${n},"data":[${deep(50_000)}]}`, kind: "not-an-object" },
    {
      frame: `{"type":"trade","data":[{"s":"AAPL","c":${deep(10_000)},"n":${n}}]}`,
      kind: "bad-price",
    },
    { frame: deep(100_000 + n % 100), kind: "not-an-object" },
    // Invalid UTF-8 (as a binary frame: a websocket library will not send it as text).
    { frame: new Uint8Array([0x7b, 0xff, 0xfe, 0xc0, 0x80, n & 0x7f, 0x7d]), kind: "binary-frame" },
    // A valid trade next to a broken one: the valid one goes through.
    {
      frame: JSON.stringify({ type: "trade", data: [t, { ...t, p: -1 }] }),
      kind: "bad-price",
      valid: t,
    },
  ];
}

/** Rare and large: a few of these among the 10,000. */
export function huge(t: WireTrade, n: number): Hostile[] {
  return [
    {
      frame: JSON.stringify({ type: "trade", data: [{ ...t, s: "S".repeat(2_000_000) }] }),
      kind: "bad-symbol",
    },
    { frame: `{"type":"trade","data":[${"9".repeat(1_500_000)}${n}`, kind: "not-json" },
    { frame: JSON.stringify({ type: "ping", pad: "x".repeat(1_000_000), n }), kind: "" }, // a ping: no rejection
  ];
}

Deno.test("fault 4: hostile frames and garbage records: only valid trades pass, all counted", async (t) => {
  const fake = new FakeFinnhub();
  const next = random(SEED);
  const dir = await Deno.makeTempDir();
  try {
    await withTopic(3, async (topic, _kafka, admin) => {
      await using producer = await startProducer(
        [`--topic=${topic}`, `--symbols=${SYMBOLS.join(",")}`, "--status-interval=0.5"],
        { KAFKA_BROKERS: BROKERS, FINNHUB_TOKEN: fake.token, FINNHUB_WS_URL: fake.url },
      );
      await fake.waitForSubscribed(1, SYMBOLS, 30_000);
      const consumer = await startDashboardConsumer(
        [`--from=${new Date(Date.now() - 1_000).toISOString()}`],
        { KAFKA_BROKERS: BROKERS, KAFKA_TOPIC: topic, KAFKA_GROUP_ID: uniqueName("faults-group") },
      );
      await using _consumer = consumer;
      const health = async () =>
        (await (await fetch(new URL("/healthz", consumer.url))).json()).consumer as {
          applied: number;
          rejected: number;
          lag: number | null;
        };

      const expected = new Map<Kind, number>();
      await t.step(`${HOSTILE} hostile frames mixed with valid trades`, async () => {
        let hostile = 0;
        let frames = 0;
        const send = (item: Hostile) => {
          const ok = typeof item.frame === "string"
            ? fake.sendRaw(item.frame)
            : fake.sendBinary(item.frame);
          assert.ok(ok, "the producer is connected");
          if (item.kind !== "") expected.set(item.kind, (expected.get(item.kind) ?? 0) + 1);
          if (item.valid) fake.sent.push(item.valid);
        };
        while (hostile < HOSTILE) {
          const [trade] = fake.makeTrades(SYMBOLS, 1);
          const items = catalogue(trade, hostile, next);
          const item = frames % 1_000 === 500
            ? huge(trade, hostile)[(frames / 1_000) % 3 | 0]
            : items[Math.floor(next() * items.length)];
          send(item);
          if (item.kind !== "") hostile++;
          frames++;
          // Valid trades between them, and now and then Finnhub's repeated frame.
          if (frames % 20 === 0) {
            const sent = fake.sendUnique(SYMBOLS, 5);
            assert.equal(sent.length, 5);
            if (frames % 200 === 0) {
              send({ frame: fake.frames.at(-1)!, kind: "duplicate-frame" });
              hostile++;
            }
          }
          // Let the producer keep up, as a real socket would make us.
          if (frames % 250 === 0) await sleep(5);
        }
        // A burst of big frames, each different: memory must not keep them. Kept,
        // they grow the producer by ~930 MiB; garbage awaiting collection, by < 200.
        const rssBefore = await rssMiB(producer.child.pid);
        for (let i = 0; i < BIG_FRAMES; i++) {
          const [trade] = fake.makeTrades(SYMBOLS, 1);
          send({
            frame: JSON.stringify({
              type: "trade",
              data: [{ ...trade, p: -1, pad: "x".repeat(2e6) }],
            }),
            kind: "bad-price",
          });
          await sleep(10);
        }
        // Every frame read (a cut would lose what is still on the wire).
        const total = [...expected.values()].reduce((sum, count) => sum + count, 0);
        await waitUntil(
          () => `the producer to read ${fake.sent.length} trades and ${total} rejections`,
          () => {
            const status = lastStatus(producer.stdout);
            return status?.received === fake.sent.length && status.rejected === total;
          },
          30_000,
        );
        // Invalid UTF-8 inside a text frame: the websocket fails, the producer reconnects.
        fake.serveRawNext([
          encoder.encode('{"type":"ping"}'),
          new Uint8Array([
            ...encoder.encode('{"type":"trade","data":[{"s":"'),
            0xff,
            0xfe,
            0x22,
            0x7d,
            0x5d,
            0x7d,
          ]),
        ]);
        await fake.drop();
        await fake.waitFor(() => fake.rawConnections === 1, "the raw connection");
        await fake.waitForSubscribed(2, SYMBOLS, 20_000);
        const rssGrowth = await rssMiB(producer.child.pid) - rssBefore;
        console.log(
          `fault 4: producer memory grew ${
            rssGrowth.toFixed(0)
          } MiB over ${BIG_FRAMES} frames of 2 MB`,
        );
        assert.ok(rssGrowth < 350, `the producer kept ${rssGrowth.toFixed(0)} MiB`);
        fake.sendUnique(SYMBOLS, 100); // still up, still sending
        await waitForCount(admin, topic, () => fake.sent.length, 30_000);
      });

      const garbage: { bytes: Uint8Array; kind: string }[] = [];
      await t.step(
        "garbage records from kcat: the consumer skips, counts, keeps going",
        async () => {
          const now = Date.now();
          const good = { v: 1, symbol: "AAPL", price: 1, volume: 1, time: now, source: "finnhub" };
          const json = (value: unknown) => encoder.encode(JSON.stringify(value));
          garbage.push(
            { bytes: encoder.encode("not json"), kind: "not-json" },
            { bytes: new Uint8Array(), kind: "not-json" }, // a null value
            { bytes: new Uint8Array([0xff, 0xfe, 0x7b, 0x7d]), kind: "not-json" },
            { bytes: utf16(JSON.stringify(good)), kind: "not-json" }, // a valid record, in UTF-16
            { bytes: encoder.encode("x".repeat(900_000)), kind: "not-json" },
            {
              bytes: encoder.encode("[".repeat(100_000) + "]".repeat(100_000)),
              kind: "not-an-object",
            },
            { bytes: json([good]), kind: "not-an-object" },
            { bytes: json(null), kind: "not-an-object" },
            { bytes: json({ ...good, v: 2 }), kind: "bad-version" },
            { bytes: json({ ...good, symbol: "" }), kind: "bad-symbol" },
            { bytes: json({ ...good, symbol: "\u001b]0;pwned\u0007" }), kind: "bad-symbol" },
            { bytes: json({ ...good, symbol: "\udc00" }), kind: "bad-symbol" },
            { bytes: json({ ...good, price: "1" }), kind: "bad-price" },
            { bytes: json({ ...good, volume: -1 }), kind: "bad-volume" },
            { bytes: json({ ...good, time: 1.5 }), kind: "bad-time" },
            { bytes: json({ ...good, conditions: "1" }), kind: "bad-conditions" },
            { bytes: json({ ...good, source: "live" }), kind: "bad-source" },
          );
          const files = await Promise.all(garbage.map(async ({ bytes }, i) => {
            const file = `${dir}/garbage-${i}`;
            await Deno.writeFile(file, bytes);
            return file;
          }));
          const kcat = async (args: string[], stdin?: string) => {
            const child = new Deno.Command("kcat", {
              args: ["-P", "-b", BROKERS, "-t", topic, "-X", "message.max.bytes=2000000", ...args],
              stdin: stdin === undefined ? "null" : "piped",
              stdout: "piped",
              stderr: "piped",
            }).spawn();
            if (stdin !== undefined) {
              const writer = child.stdin.getWriter();
              await writer.write(encoder.encode(stdin));
              await writer.close();
            }
            const output = await child.output();
            assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
          };
          // Each file is one record (kcat skips the empty one: that one is a null
          // value, a tombstone, sent as "key:" with -Z).
          await kcat(files);
          await kcat(["-K", ":", "-Z"], "tombstone:");
          // Trades after the garbage.
          await fake.stream({ symbols: SYMBOLS, rate: 2_000, count: 1_000 });
          const total = fake.sent.length + garbage.length;
          await waitForCount(admin, topic, () => total, 30_000);
          let state = await health();
          await waitUntil(
            () =>
              `the consumer to apply ${fake.sent.length} and reject ${garbage.length}: ${
                JSON.stringify(state)
              }`,
            async () => {
              state = await health();
              return state.applied >= fake.sent.length && state.rejected >= garbage.length &&
                state.lag === 0;
            },
            30_000,
          );
          await sleep(500);
          state = await health();
          assert.equal(state.applied, fake.sent.length, "every valid trade, once");
          assert.equal(state.rejected, garbage.length, "every garbage record counted");
        },
      );

      producer.kill("SIGTERM");
      const result = await producer.done;
      assert.equal(result.code, 0, result.stderr);
      consumer.kill("SIGTERM");
      const stopped = await consumer.done;
      assert.equal(stopped.code, 0, stopped.stderr);

      const kept = await readTopic(BROKERS, topic);
      const counts = tally(fake.sent, kept);
      const summary = parseSummary(result.stdout);
      printTally(
        "4 (hostile input)",
        counts,
        `${summary.rejected} frames or trades rejected by the producer, ${garbage.length} ` +
          `garbage records skipped by the consumer, ${summary.reconnects} reconnect`,
      );
      assert.equal(counts.lost, 0, "lost");
      assert.equal(counts.doubled, 0, "doubled");
      assert.equal(counts.foreign, 0, "only valid trades reach Kafka");
      assert.equal(counts.undecodable, garbage.length, "the only undecodable records are kcat's");
      assert.equal(summary.received, fake.sent.length);
      assert.equal(summary.reconnects, 2, "the cut, and the invalid UTF-8");
      assert.deepEqual(
        Object.fromEntries([...summary.rejectedByKind].sort()),
        Object.fromEntries([...expected].sort()),
        "every rejection counted, by kind",
      );
      assert.match(stopped.stderr, new RegExp(`rejected ${garbage.length},`));
      assert.match(result.stderr, /connection lost .*Invalid UTF-8/);
    });
  } finally {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});
