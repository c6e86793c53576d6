/**
 * The candle and VWAP code against the reference in candles_reference.ts, on
 * generated trades with out-of-order and equal times, v = 0 updates, a symbol that
 * goes quiet, and trades older than the kept window.
 */

import assert from "node:assert/strict";
import { Aggregator, MAX_AHEAD_MS, RateWindow } from "../consumer/candles.ts";
import {
  bucketValue,
  latencyBucket,
  LatencyHistogram,
  LatencyWindow,
  parseReceivedAt,
} from "../consumer/latency.ts";
import type { TradeRecord } from "../lib/trade.ts";
import {
  assertCandlesEqual,
  close,
  generateTrades,
  reference,
} from "./helpers/candles_reference.ts";

function feed(aggregator: Aggregator, trades: readonly TradeRecord[]) {
  const counts = { applied: 0, "too-late": 0, "too-early": 0, "symbol-cap": 0 };
  for (const trade of trades) counts[aggregator.apply(trade)]++;
  return counts;
}

Deno.test("candles equal the reference on 20,000 generated trades", async (t) => {
  const intervals = [1_000, 60_000];
  const trades = generateTrades(20_000, 7);
  for (
    const [maxCandles, label] of [[20, "a 20-candle ring"], [3_600, "the default ring"]] as const
  ) {
    await t.step(label, () => {
      const aggregator = new Aggregator({ intervalsMs: intervals, maxCandles, maxSymbols: 10 });
      const counts = feed(aggregator, trades);
      const ref = reference(trades, intervals, maxCandles, 10);
      assert.equal(counts.applied, ref.applied.length);
      assert.equal(counts["too-late"], ref.tooLate);
      if (maxCandles === 20) assert.ok(ref.tooLate > 500, "the data has trades past the window");
      else assert.equal(ref.tooLate, 0);
      assert.equal(aggregator.revision(), ref.applied.length);
      assert.deepEqual(aggregator.symbols(), ref.symbols);
      for (const symbol of ref.symbols) {
        for (const interval of intervals) {
          const expected = ref.candles(symbol, interval);
          assert.ok(expected.length > 0);
          assertCandlesEqual(
            aggregator.candles(symbol, interval),
            expected,
            `${symbol}/${interval}`,
          );
        }
        const stats = aggregator.stats(symbol)!;
        const expected = ref.session(symbol);
        assert.equal(stats.last, expected.last, `${symbol} last`);
        assert.equal(stats.lastTime, expected.lastTime);
        assert.equal(stats.trades, expected.trades);
        close(stats.change, expected.change, `${symbol} change`);
        close(stats.volume, expected.volume, `${symbol} volume`);
        close(stats.sessionVwap, expected.sessionVwap, `${symbol} session VWAP`);
      }
    });
  }
  await t.step("a quiet symbol keeps its candles and stops moving", () => {
    const aggregator = new Aggregator({ intervalsMs: intervals, maxCandles: 20, maxSymbols: 10 });
    feed(aggregator, trades);
    const quiet = aggregator.stats("QUIET")!;
    const busy = aggregator.stats("AAPL")!;
    assert.ok(busy.lastTime - quiet.lastTime > 60_000, "QUIET stopped well before the end");
    assert.equal(quiet.source, "sim");
    assert.ok(aggregator.candles("QUIET", 1_000).length > 0);
    assert.equal(quiet.tradesPerSecond, 0);
  });
});

Deno.test("candles from a session start equal the reference, and the symbol cap is counted", () => {
  const trades = generateTrades(5_000, 11);
  const fromMs = trades[2_000].time;
  const aggregator = new Aggregator({
    intervalsMs: [1_000, 60_000],
    maxCandles: 3_600,
    maxSymbols: 2,
    fromMs,
  });
  const counts = feed(aggregator, trades);
  const ref = reference(trades, [1_000, 60_000], 3_600, 2, fromMs);
  assert.equal(counts["too-late"], ref.tooLate);
  assert.equal(counts["symbol-cap"], ref.capped);
  assert.ok(ref.capped > 0 && ref.tooLate > 1_000);
  assert.deepEqual(aggregator.symbols(), ref.symbols);
  for (const symbol of ref.symbols) {
    assertCandlesEqual(aggregator.candles(symbol, 1_000), ref.candles(symbol, 1_000), symbol);
  }
});

Deno.test("VWAP, v = 0 updates, late and equal-time trades in one candle, by hand", () => {
  const aggregator = new Aggregator({ intervalsMs: [1_000], maxCandles: 5, maxSymbols: 5 });
  const t0 = 1_700_000_000_000;
  const trade = (price: number, volume: number, time: number): TradeRecord => ({
    symbol: "X",
    price,
    volume,
    time,
    source: "finnhub",
  });
  aggregator.apply(trade(10, 100, t0 + 500));
  aggregator.apply(trade(20, 300, t0 + 900));
  // VWAP = (10*100 + 20*300) / 400 = 17.5; an average of p*v would be nonsense.
  assert.equal(aggregator.candles("X", 1_000)[0].vwap, 17.5);
  aggregator.apply(trade(30, 0, t0 + 950)); // price update: moves close/high, not VWAP
  aggregator.apply(trade(5, 50, t0 + 100)); // late: becomes the open of its own candle
  aggregator.apply(trade(40, 0, t0 + 1_200)); // next candle, price only
  aggregator.apply(trade(31, 10, t0 + 950)); // same time as the close: latest arrival wins
  const [first, second] = aggregator.candles("X", 1_000);
  assert.deepEqual(
    { ...first },
    {
      start: t0,
      open: 5,
      high: 31,
      low: 5,
      close: 31,
      volume: 460,
      trades: 5,
      vwap: (1000 + 6000 + 250 + 310) / 460,
      revision: 6,
    },
  );
  assert.equal(second.vwap, null, "a candle of price updates only has no VWAP");
  assert.equal(second.volume, 0);
  assert.equal(second.close, 40);
  assert.deepEqual(
    Object.keys(JSON.parse(JSON.stringify(first))).sort(),
    ["close", "high", "low", "open", "revision", "start", "trades", "volume", "vwap"],
    "a serialised candle carries the public fields only",
  );
  const stats = aggregator.stats("X", t0 + 2_500)!;
  assert.equal(stats.last, 40);
  assert.equal(stats.change, 35); // first price by trade time is 5
  assert.equal(stats.changePct, 700);
  assert.equal(stats.sessionVwap, (1000 + 6000 + 250 + 310) / 460);
  // Five candles later, the first candle has left the ring: a trade for it is too late.
  assert.equal(aggregator.apply(trade(50, 1, t0 + 5_000)), "applied");
  assert.equal(aggregator.apply(trade(99, 1, t0 + 999)), "too-late");
  assert.equal(aggregator.revision(), 7);
  assert.deepEqual(aggregator.candles("X", 1_000).map((c) => c.start), [t0 + 1_000, t0 + 5_000]);
  assert.deepEqual(aggregator.candles("X", 1_000, t0 + 2_000).map((c) => c.start), [t0 + 5_000]);
});

Deno.test("a record dated far ahead is refused, and the symbol keeps updating", () => {
  // One record written by hand (kcat) with a time in 2100 used to move the newest
  // candle slot that far ahead: every real trade after it was "too-late" for good.
  const aggregator = new Aggregator({
    intervalsMs: [1_000, 60_000],
    maxCandles: 600,
    maxSymbols: 5,
  });
  const now = Date.UTC(2026, 0, 5, 15, 0, 0);
  const trade = (price: number, time: number): TradeRecord => ({
    symbol: "AAPL",
    price,
    volume: 1,
    time,
    source: "finnhub",
  });
  assert.equal(aggregator.apply(trade(100, now - 5_000), now), "applied");
  assert.equal(aggregator.apply(trade(150, Date.UTC(2100, 0, 1)), now), "too-early");
  assert.equal(aggregator.apply(trade(150, now + MAX_AHEAD_MS + 1), now), "too-early");
  // A producer clock a little ahead is not an attack: within the bound, applied.
  assert.equal(aggregator.apply(trade(102, now + MAX_AHEAD_MS), now), "applied");
  assert.equal(aggregator.apply(trade(101, now - 1_000), now + 1_000), "applied");
  const stats = aggregator.stats("AAPL", now)!;
  assert.equal(stats.last, 102);
  assert.equal(stats.trades, 3);
  assert.deepEqual(
    aggregator.candles("AAPL", 1_000).map((c) => c.start),
    [now - 5_000, now - 1_000, now + MAX_AHEAD_MS],
  );
  // A new symbol's first record is checked too (it would set the symbol's window).
  assert.equal(
    aggregator.apply({ ...trade(1, Date.UTC(2100, 0, 1)), symbol: "NEW" }, now),
    "too-early",
  );
  assert.deepEqual(aggregator.symbols(), ["AAPL"]);
});

Deno.test("the source mark keeps the least real source seen", () => {
  const aggregator = new Aggregator({ intervalsMs: [1_000], maxCandles: 5, maxSymbols: 5 });
  const base = { symbol: "X", price: 1, volume: 1, time: 1_000_000 };
  aggregator.apply({ ...base, source: "finnhub" });
  assert.equal(aggregator.stats("X")!.source, "finnhub");
  aggregator.apply({ ...base, source: "replay" });
  aggregator.apply({ ...base, source: "finnhub" });
  assert.equal(aggregator.stats("X")!.source, "replay");
});

Deno.test("trades per second count whole seconds by trade time", () => {
  const rate = new RateWindow(10);
  for (let s = 0; s < 12; s++) for (let i = 0; i < 5; i++) rate.add(100_000 + s * 1000 + i);
  rate.add(111_500); // the second in progress is left out
  assert.equal(rate.rate(111_900), 5);
  assert.equal(rate.rate(125_000), 0);
  rate.add(50_000); // far in the past: ignored
  assert.equal(rate.rate(111_900), 5);
});

Deno.test("latency p50/p99 over the last minute", async (t) => {
  await t.step("buckets: exact up to 100 ms, within 10 % above", () => {
    for (const ms of [0, 1, 57, 99, 100]) assert.equal(bucketValue(latencyBucket(ms)), ms);
    for (const ms of [100, 250, 999, 1_000, 4_321, 9_999, 12_345, 99_999]) {
      const value = bucketValue(latencyBucket(ms));
      assert.ok(Math.abs(value - ms) / ms <= 0.1, `${ms} -> ${value}`);
    }
    assert.equal(latencyBucket(-5), 0);
    assert.equal(bucketValue(latencyBucket(1e9)), 100_000);
  });
  await t.step("quantiles, and samples older than the window drop out", () => {
    const window = new LatencyWindow(60);
    const now = 1_700_000_000_000;
    for (let i = 1; i <= 100; i++) window.record(i <= 98 ? 3 : 2_000, now);
    window.record(500, now - 61_000); // older than a minute
    assert.equal(window.quantile(0.5, now), 3);
    assert.equal(window.quantile(0.99, now), 1_950, "2,000 ms is in (1,900, 2,000]");
    assert.equal(window.quantile(0.5, now + 61_000), null);
    assert.equal(new LatencyWindow().quantile(0.5, now), null);
  });
  await t.step(
    "cumulative buckets count latencies at or below each bound (Prometheus's le)",
    () => {
      const histogram = new LatencyHistogram();
      for (const ms of [0, 1, 1, 2, 5, 6, 100, 101, 110, 111, 2_000, 2_001, 250_000]) {
        histogram.record(ms);
      }
      assert.deepEqual(
        histogram.cumulative([1, 2, 5, 100, 110, 2_000, 100_000]),
        [3, 4, 5, 7, 9, 11, 12],
      );
      assert.equal(histogram.count, 13);
    },
  );
  await t.step("the received-at header from bytes or text", () => {
    const bytes = new TextEncoder().encode("1700000000123");
    assert.equal(parseReceivedAt(bytes), 1_700_000_000_123);
    assert.equal(parseReceivedAt("42"), 42);
    assert.equal(parseReceivedAt([bytes]), 1_700_000_000_123);
    assert.ok(Number.isNaN(parseReceivedAt(new TextEncoder().encode("12a"))));
    assert.ok(Number.isNaN(parseReceivedAt(undefined)));
  });
});
