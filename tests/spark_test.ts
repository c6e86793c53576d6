/**
 * The sparklines a snapshot carries (dashboard/spark.ts): the last price every 5 s
 * over the last five minutes, null before a symbol's first trade, a quiet symbol
 * flat at its last price, and a fixed number of points however long the run.
 */

import assert from "node:assert/strict";
import { Aggregator } from "../consumer/candles.ts";
import { SPARK_POINTS, SPARK_STEP_MS, sparks } from "../dashboard/spark.ts";

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

  const { stepMs, end, lines } = sparks(aggregator, now);
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
  const bytes = JSON.stringify(sparks(aggregator, now)).length;
  console.log(`sparklines of 100 symbols: ${bytes} bytes`);
  assert.ok(bytes < 64_000, `${bytes} bytes`);
});
