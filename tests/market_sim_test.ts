import assert from "node:assert/strict";
import { createMarket, profileFor, runSim } from "../producer/market_sim.ts";
import type { Trade } from "../lib/trade.ts";

const SYMBOLS = ["AAPL", "MSFT", "BINANCE:BTCUSDT", "OANDA:EUR_USD", "ACME"];
const START = 1_700_000_000_000;

function take(seed: number, n: number, rate = 1000): Trade[] {
  const market = createMarket({ symbols: SYMBOLS, seed, rate, start: START });
  return Array.from({ length: n }, () => market.next());
}

Deno.test("the same seed gives the same market; another seed another one", () => {
  const a = take(42, 5000);
  assert.deepEqual(take(42, 5000), a);
  const b = take(43, 5000);
  assert.notDeepEqual(b.map((trade) => trade.price), a.map((trade) => trade.price));
});

Deno.test("prices stay positive and on each symbol's tick; volumes look like the asset", () => {
  const trades = take(7, 200_000, 100_000);
  const seen = new Set<string>();
  let lastTime = 0;
  for (const trade of trades) {
    seen.add(trade.symbol);
    assert.ok(trade.price > 0, `price ${trade.price}`);
    const { tick, kind } = profileFor(trade.symbol);
    const ticks = trade.price / tick;
    assert.ok(
      Math.abs(ticks - Math.round(ticks)) < 1e-6,
      `${trade.symbol} ${trade.price} off tick`,
    );
    // The price prints as the tick grid does: no 189.52000000000001.
    const decimals = String(trade.price).split(".")[1]?.length ?? 0;
    assert.ok(decimals <= String(tick).split(".")[1].length, `${trade.price}`);
    assert.ok(trade.time >= lastTime, "time never goes back");
    lastTime = trade.time;
    if (kind === "fx") assert.equal(trade.volume, 0, "FX sends price updates (v = 0)");
    if (kind === "stock") assert.ok(Number.isInteger(trade.volume) && trade.volume >= 1);
    if (kind === "crypto") assert.ok(trade.volume > 0 && trade.volume < 1000);
  }
  assert.equal(seen.size, SYMBOLS.length, "every symbol trades");
  const btc = trades.filter((trade) => trade.symbol === "BINANCE:BTCUSDT");
  assert.ok(btc.some((trade) => !Number.isInteger(trade.volume)), "fractional coins");
  const start = profileFor("BINANCE:BTCUSDT").price;
  assert.ok(btc.every((trade) => Math.abs(trade.price / start - 1) < 0.2), "no absurd jumps");
});

Deno.test("symbols have bursts and quiet spells, and the average rate is the one asked", () => {
  const rate = 1000;
  const market = createMarket({ symbols: SYMBOLS, seed: 1, rate, start: 0 });
  const seconds = 600;
  const perSecond = new Map<string, number[]>(SYMBOLS.map((s) => [s, new Array(seconds).fill(0)]));
  let count = 0;
  for (;;) {
    const trade = market.next();
    if (trade.time >= seconds * 1000) break;
    perSecond.get(trade.symbol)![Math.floor(trade.time / 1000)]++;
    count++;
  }
  assert.ok(Math.abs(count / seconds / rate - 1) < 0.35, `average ${count / seconds}/s`);
  const aapl = perSecond.get("AAPL")!.toSorted((a, b) => a - b);
  const median = aapl[seconds / 2];
  assert.ok(aapl[seconds - 1] > 3 * median, `a burst: ${aapl[seconds - 1]} vs median ${median}`);
  assert.ok(aapl[0] < median / 3, `a quiet spell: ${aapl[0]} vs median ${median}`);
});

Deno.test("generating is fast enough for 100,000+ trades a second", () => {
  const started = performance.now();
  take(3, 300_000, 100_000);
  const perSecond = 300_000 / ((performance.now() - started) / 1000);
  assert.ok(perSecond > 300_000, `only ${Math.round(perSecond)} trades/s`);
});

Deno.test("runSim keeps the asked pace, and at max follows backpressure", async (t) => {
  await t.step("paced: about rate x elapsed, stamped near now", async () => {
    const controller = new AbortController();
    const trades: Trade[] = [];
    const started = Date.now();
    const running = runSim({
      symbols: SYMBOLS,
      seed: 5,
      rate: 400,
      signal: controller.signal,
      onTrades: (batch) => trades.push(...batch),
      log: () => {},
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    controller.abort();
    await running;
    const elapsed = (Date.now() - started) / 1000;
    assert.ok(
      Math.abs(trades.length / elapsed / 400 - 1) < 0.3,
      `${trades.length} in ${elapsed} s`,
    );
    assert.ok(trades.every((trade) => trade.time >= started && trade.time <= Date.now()));
  });

  await t.step("max: batches until the consumer says stop", async () => {
    const controller = new AbortController();
    let received = 0;
    let waits = 0;
    const made = await runSim({
      symbols: SYMBOLS,
      seed: 5,
      rate: "max",
      signal: controller.signal,
      onTrades: (batch) => {
        received += batch.length;
        if (received >= 50_000) controller.abort();
      },
      backpressure: () => {
        waits++;
        return Promise.resolve();
      },
      log: () => {},
    });
    assert.equal(made, received);
    assert.ok(received >= 50_000);
    assert.equal(waits, received / 5000, "backpressure is asked before every batch");
  });
});
