/**
 * The sparklines a snapshot carries (dashboard/spark.ts): the last price every 5 s
 * over the last five minutes, null before a symbol's first trade, a quiet symbol
 * flat at its last price, and a fixed number of points however long the run. All by
 * trade time, the server's and the page's (dashboard/static/watchlist.js SparkStore).
 */

import assert from "node:assert/strict";
import { Aggregator } from "../consumer/candles.ts";
import { SPARK_POINTS, SPARK_STEP_MS, sparks } from "../dashboard/spark.ts";
import { SparkStore } from "../dashboard/static/watchlist.js";

Deno.test("sparklines: the close of each 5 s step, null before the first trade, bounded", () => {
  const now = Math.floor(Date.now() / SPARK_STEP_MS) * SPARK_STEP_MS;
  const aggregator = new Aggregator({
    intervalsMs: [1_000, 60_000],
    maxCandles: 3_600,
    maxSymbols: 10,
  });
  const trade = (symbol: string, price: number, ago: number) =>
    aggregator.apply({ symbol, source: "sim", price, volume: 1, time: now - ago });
  for (let s = 3_600; s >= 0; s--) trade("LONG", 100 + s, s * 1000); // an hour, a trade a second
  trade("LATE", 5, 12_000); // its first trade 12 s ago, in the slot 15..10 s ago
  trade("LATE", 6, 11_000);
  trade("QUIET", 7, 200_000); // nothing since 200 s ago

  const { stepMs, end, lines } = sparks(aggregator);
  assert.equal(stepMs, SPARK_STEP_MS);
  assert.equal(end, now / SPARK_STEP_MS);
  for (const line of Object.values(lines)) assert.equal(line.length, SPARK_POINTS);
  // The last trade of each step: the newest starts now (its trade is now's), the one
  // before ends with the trade 1 s ago, the oldest (295..290 s ago) with 291 s ago's.
  assert.deepEqual(lines.LONG.slice(-3), [106, 101, 100]);
  assert.equal(lines.LONG[0], 391);
  assert.deepEqual(lines.LATE.slice(-5), [null, 6, 6, 6, 6]);
  assert.ok(lines.LATE.slice(0, -4).every((v) => v === null));
  assert.equal(lines.QUIET.at(-1), 7, "a quiet symbol stays at its last price");
  assert.equal(lines.QUIET.filter((v) => v === null).length, SPARK_POINTS - 41);
});

Deno.test("sparklines of 100 symbols (the symbol cap) add under 64 kB to a snapshot", () => {
  const now = Math.floor(Date.now() / SPARK_STEP_MS) * SPARK_STEP_MS;
  const aggregator = new Aggregator({
    intervalsMs: [1_000, 60_000],
    maxCandles: 3_600,
    maxSymbols: 100,
  });
  for (let i = 0; i < 100; i++) {
    for (let s = 600; s >= 0; s--) {
      const price = 65_000 + i * 37.13 + Math.sin(s / 9) * 40 + (s % 7) * 0.01;
      aggregator.apply({
        symbol: `BINANCE:SYM${i}USDT`,
        source: "sim",
        price: Number(price.toFixed(2)),
        volume: 1,
        time: now - s * 1000,
      });
    }
  }
  const bytes = JSON.stringify(sparks(aggregator)).length;
  console.log(`sparklines of 100 symbols: ${bytes} bytes`);
  assert.ok(bytes < 64_000, `${bytes} bytes`);
});

Deno.test("sparklines by trade time: a replay of January draws its own last minutes, and the page carries them on", () => {
  const aggregator = new Aggregator({ intervalsMs: [1_000], maxCandles: 3_600, maxSymbols: 10 });
  const t0 = Date.UTC(2026, 0, 5, 14, 30); // a recorded open, long before the wall clock
  const trade = (symbol: string, price: number, time: number) =>
    aggregator.apply({ symbol, source: "replay", price, volume: 1, time }, time);
  for (let s = 0; s < 600; s++) trade("AAPL", 190 + s / 100, t0 + s * 1000);
  trade("MSFT", 400, t0 + 400_000); // quiet since: flat at its price up to AAPL's newest

  const replay = sparks(aggregator);
  assert.equal(replay.end, Math.floor((t0 + 599_000) / SPARK_STEP_MS), "the newest trade's step");
  assert.deepEqual(replay.lines.AAPL.slice(-2), [195.94, 195.99]);
  assert.ok(replay.lines.AAPL.every((v) => v !== null), "five full minutes, none empty");
  assert.deepEqual(replay.lines.MSFT.slice(-1), [400]);

  // The page: seeded by the snapshot, then the stats of a push 3 s of trade time on.
  const store = new SparkStore();
  store.seed(replay);
  const stats = { ...aggregator.stats("AAPL")!, last: 196.5, lastTime: t0 + 602_000 };
  store.add([stats]);
  assert.equal(store.end, replay.end + 1, "one step on, by trade time");
  const line = store.lines.get("AAPL")!;
  assert.equal(line.length, SPARK_POINTS);
  assert.deepEqual(line.slice(-3), [195.94, 195.99, 196.5]);
  assert.ok(line.every((v: number | null) => v !== null), "still full");
  assert.equal(store.times().at(-1), (replay.end + 1) * SPARK_STEP_MS);
});
