/**
 * The producer as a user runs it: a separate process with the produce task's own
 * permissions, against the real broker and the fake Finnhub server. What reached
 * Kafka is read back with kcat, as any other tool would read it.
 */

import assert from "node:assert/strict";
import { FakeFinnhub, type WireTrade } from "./helpers/fake_finnhub.ts";
import { BROKERS, withTopic } from "./helpers/kafka.ts";
import {
  type Proc,
  readTopic,
  startProducer,
  tradesOf,
  waitForCount,
} from "./helpers/processes.ts";
import { startNativeBroker } from "../tools/broker/native.ts";
import { loadConfig } from "../config.ts";
import { createKafka } from "../lib/kafka.ts";
import { freePortPair } from "./helpers/ports.ts";

const SYMBOLS = ["AAPL", "BINANCE:BTCUSDT", "OANDA:EUR_USD", "IC MARKETS:1"];

async function runProducer(args: string[], env: Record<string, string> = {}) {
  const dir = await Deno.makeTempDir();
  try {
    return await startProducer(args, { KAFKA_BROKERS: BROKERS, ...env }, dir).done;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The trades on `topic` of the shared broker. */
async function readTrades(topic: string) {
  return tradesOf(await readTopic(BROKERS, topic));
}

/** Per symbol, the fake's volumes (its sequence numbers) in the order Kafka holds them. */
function bySymbol(entries: { symbol: string; volume: number }[]): Map<string, number[]> {
  const map = new Map<string, number[]>();
  for (const { symbol, volume } of entries) map.set(symbol, [...map.get(symbol) ?? [], volume]);
  return map;
}

const wireToRecord = (trade: WireTrade) => ({
  symbol: trade.s,
  price: trade.p,
  volume: trade.v,
  time: trade.t,
  ...(trade.c ? { conditions: trade.c } : {}),
});

Deno.test("finnhub -> Kafka: every trade once, in order, keyed and timestamped; replayable", async (t) => {
  const fake = new FakeFinnhub();
  const dir = await Deno.makeTempDir();
  const recording = `${dir}/session.ndjson`;
  let live: Proc | undefined;
  try {
    await withTopic(3, async (topic, _kafka, admin) => {
      live = startProducer(
        [`--topic=${topic}`, `--symbols=${SYMBOLS.join(",")}`, `--record=${recording}`],
        { FINNHUB_TOKEN: fake.token, FINNHUB_WS_URL: fake.url, KAFKA_BROKERS: BROKERS },
        dir,
      );
      await t.step("streams through junk, a server close and a dropped connection", async () => {
        await fake.waitForSubscribed(1, SYMBOLS, 20_000);
        assert.deepEqual(fake.subscribes[0], SYMBOLS, "one subscribe per symbol, in order");
        fake.ping();
        fake.sendUnique(SYMBOLS, 200); // one frame, four symbols
        fake.sendRaw("{not json");
        fake.sendRaw('{"type":"news","data":[]}');
        fake.sendRaw(`{"type":"trade","data":[{"s":"AAPL","p":-1,"t":${Date.now()},"v":1}]}`);
        fake.error("Subscribing to too many symbols");
        fake.sendTrades([{ s: "OANDA:EUR_USD", p: 1.08512, t: Date.now(), v: 0 }]);
        await waitForCount(admin, topic, () => fake.sent.length);

        fake.closeClients(1001, "restart");
        await fake.waitForSubscribed(2, SYMBOLS);
        await fake.stream({ symbols: SYMBOLS, rate: 5000, count: 3000 });
        await waitForCount(admin, topic, () => fake.sent.length);

        await fake.drop();
        await fake.waitForSubscribed(3, SYMBOLS);
        fake.sendUnique(SYMBOLS, 100);
        await waitForCount(admin, topic, () => fake.sent.length);
      });

      await t.step("SIGTERM flushes and exits 0 with a true summary", async () => {
        live!.kill("SIGTERM");
        const { code, stdout, stderr } = await live!.done;
        assert.equal(code, 0, stderr);
        const n = fake.sent.length.toLocaleString("en-US");
        assert.match(stdout, new RegExp(`received ${n}, acked ${n} .*queued 0, dropped 0`));
        assert.match(stdout, /rejected 3 \((?=.*not-json 1)(?=.*unknown-type 1)(?=.*bad-price 1)/);
        assert.match(stdout, /reconnects 2/);
        assert.match(stderr, /too many symbols \(this connection asked for 4 symbols/);
        assert.ok(!`${stdout}${stderr}`.includes(fake.token), "the token is never printed");
      });

      await t.step(
        "Kafka holds exactly what was sent: once, in order, keyed, timestamped",
        async () => {
          const kept = await readTrades(topic);
          assert.equal(kept.length, fake.sent.length, "nothing lost, nothing doubled");
          const sentByVolume = new Map(fake.sent.map((trade) => [trade.v, trade]));
          for (const { key, ts, headers, record } of kept) {
            const sent = sentByVolume.get(record.volume)!;
            assert.deepEqual(record, { ...wireToRecord(sent), source: "finnhub" });
            assert.equal(key, sent.s);
            assert.equal(ts, sent.t, "record timestamp = trade time");
            assert.equal(headers.source, "finnhub");
            assert.ok(Number(headers["received-at"]) >= sent.t);
          }
          const inKafka = bySymbol(kept.map(({ record }) => record));
          assert.deepEqual(inKafka, bySymbol(fake.sent.map((t) => ({ symbol: t.s, volume: t.v }))));
          const partitions = new Map(kept.map(({ key, partition }) => [key, partition]));
          for (const { key, partition } of kept) assert.equal(partition, partitions.get(key));
        },
      );
    });

    await t.step("the recording replays to the same trades, marked replay", async () => {
      await withTopic(1, async (topic) => {
        const replayStart = Date.now();
        // The task may read recordings only where it may write them: here, `dir`.
        const replay = startProducer(
          [`--replay=${recording}`, "--speed=max", `--topic=${topic}`, "--status-interval=0"],
          { KAFKA_BROKERS: BROKERS },
          dir,
        );
        const result = await replay.done;
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, /rejected 3 /, "the junk is refused again, and counted");
        const kept = await readTrades(topic);
        assert.deepEqual(
          kept.map(({ record }) => ({ ...record, time: 0 })),
          fake.sent.map((trade) => ({ ...wireToRecord(trade), time: 0, source: "replay" })),
        );
        for (const { ts, headers, record } of kept) {
          assert.equal(headers.source, "replay");
          assert.equal(ts, record.time);
          assert.ok(record.time >= replayStart - 5_000, "times are shifted to the replay");
        }
      });
    });
  } finally {
    if (live) {
      live.kill("SIGKILL");
      await live.done;
    }
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a refused token ends the producer with code 2 and one line, without retrying", async () => {
  const fake = new FakeFinnhub();
  try {
    await withTopic(1, async (topic) => {
      const { code, stdout, stderr } = await runProducer(
        ["--source=finnhub", `--topic=${topic}`, "--status-interval=0"],
        { FINNHUB_TOKEN: "revoked-secret-key", FINNHUB_WS_URL: fake.url },
      );
      assert.equal(code, 2);
      const errors = stderr.split("\n").filter((line) => line.startsWith("error:"));
      assert.equal(errors.length, 1, stderr);
      assert.match(errors[0], /^error: Finnhub refused the token \(HTTP 401/);
      assert.equal(fake.unauthorized, 1, "no retry loop");
      assert.ok(!`${stdout}${stderr}`.includes("revoked-secret-key"));
    });
  } finally {
    await fake.close();
  }
});

Deno.test("the simulated market: --limit trades, marked sim, repeatable with --seed", async () => {
  const run = (topic: string) =>
    runProducer([
      "--source=sim",
      "--rate=max",
      "--limit=3000",
      "--seed=7",
      `--topic=${topic}`,
      "--symbols=AAPL,BINANCE:BTCUSDT,OANDA:EUR_USD",
    ]);
  const [first, second] = await withTopic(3, (a) =>
    withTopic(3, async (b) => {
      for (const topic of [a, b]) {
        const { code, stdout, stderr } = await run(topic);
        assert.equal(code, 0, stderr);
        assert.match(stdout, /received 3,000, acked 3,000 .*queued 0, dropped 0, rejected 0/);
        assert.match(stderr, /seed 7, max rate; prices are simulated/);
      }
      return [await readTrades(a), await readTrades(b)];
    }));
  assert.equal(first.length, 3000);
  for (const { key, ts, headers, record } of first) {
    assert.equal(headers.source, "sim");
    assert.equal(record.source, "sim");
    assert.equal(key, record.symbol);
    assert.equal(ts, record.time);
  }
  const content = (kept: typeof first) =>
    kept.map(({ record }) => [record.symbol, record.price, record.volume]).sort();
  assert.deepEqual(content(second), content(first), "same seed, same market");
});

Deno.test("bad flags and settings: one line, exit code 2, before touching anything", async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--rate=fast"], {}, /^error: --rate: "fast" is not a positive number$/],
    [["--bogus"], {}, /^error: unknown flag --bogus \(see --help\)$/],
    [["--source=replay"], {}, /^error: --source=replay needs --replay=FILE/],
    [["--source=sim", "--speed=2"], {}, /^error: --speed applies to --source=replay, not sim$/],
    [["--source=finnhub"], {}, /^error: FINNHUB_TOKEN: is needed for the finnhub source/],
    [
      ["--replay=/etc/hostname"],
      {},
      /^error: --replay: cannot read "\/etc\/hostname" \(the produce task may read recordings only in recordings\//,
    ],
    [[], { KAFKA_PARTITIONS: "zero" }, /^error: KAFKA_PARTITIONS: "zero" is not a whole number/],
    // Hosts the task's permission set leaves out: at once, not as "getaddrinfo EPERM" seconds later.
    [
      ["--source=sim"],
      { KAFKA_BROKERS: "kafka.invalid:9092" },
      /^error: KAFKA_BROKERS: no permission to reach kafka\.invalid:9092: the local tasks reach only this machine and ws\.finnhub\.io; use the :remote tasks \(deno task produce:remote, consume:remote, dashboard:remote\)$/,
    ],
    [
      ["--source=finnhub"],
      { FINNHUB_TOKEN: "not-a-real-key", FINNHUB_WS_URL: "wss://finnhub.invalid/ws" },
      /^error: FINNHUB_WS_URL: no permission to reach finnhub\.invalid:443: the local tasks reach only this machine and ws\.finnhub\.io; use the :remote tasks \(deno task produce:remote, consume:remote, dashboard:remote\)$/,
    ],
  ];
  for (const [args, env, expected] of cases) {
    await t.step(args.join(" ") || JSON.stringify(env), async () => {
      const { code, stdout, stderr } = await runProducer(args, env);
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      const lines = stderr.split("\n").filter((line) => line !== "");
      assert.equal(lines.length, 1, stderr);
      assert.match(lines[0], expected);
    });
  }
});

Deno.test("a broker gone at shutdown: exit 1 naming the undelivered trades, all on disk", async () => {
  // A private broker, so this test may kill it.
  const dir = await Deno.makeTempDir();
  const port = freePortPair();
  const broker = await startNativeBroker({ port, dir: `${dir}/broker` });
  const fake = new FakeFinnhub();
  const recording = `${dir}/session.ndjson`;
  let producer: Proc | undefined;
  try {
    const brokers = `127.0.0.1:${port}`;
    producer = startProducer(
      ["--topic=outage", "--symbols=AAPL,MSFT", `--record=${recording}`, "--flush-timeout=2"],
      { FINNHUB_TOKEN: fake.token, FINNHUB_WS_URL: fake.url, KAFKA_BROKERS: brokers },
      dir,
    );
    await fake.waitForSubscribed(1, ["AAPL", "MSFT"], 20_000);
    fake.sendUnique(["AAPL", "MSFT"], 100);
    const admin = createKafka(loadConfig({ KAFKA_BROKERS: brokers }), "test").admin();
    await admin.connect();
    try {
      await waitForCount(admin, "outage", () => 100);
    } finally {
      await admin.disconnect();
    }
    await broker.stop("SIGKILL");
    fake.sendUnique(["AAPL", "MSFT"], 50);
    // The recorder flushes every 200 ms: once the frame is on disk, the producer has it.
    const deadline = Date.now() + 5000;
    while (!(await Deno.readTextFile(recording)).includes(`"v\\":${fake.sent.at(-1)!.v}`)) {
      assert.ok(Date.now() < deadline, "the last frame never reached the recording");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const stopping = Date.now();
    producer.kill("SIGTERM");
    const { code, stdout, stderr } = await producer.done;
    assert.equal(code, 1, stderr);
    assert.ok(Date.now() - stopping < 8000, "the wait for Kafka is bounded");
    assert.match(stdout, /received 150, acked 100 .*queued 50, dropped 0/);
    assert.match(
      stderr,
      /error: 50 trades were not acknowledged by Kafka within --flush-timeout=2 s \(broker unreachable\?\); every frame received is in /,
    );
    const recorded = (await Deno.readTextFile(recording)).trim().split("\n").length;
    assert.equal(recorded, 2, "both trade frames are in the recording");
  } finally {
    if (producer) {
      producer.kill("SIGKILL");
      await producer.done;
    }
    await broker.stop("SIGKILL").catch(() => {});
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
});
