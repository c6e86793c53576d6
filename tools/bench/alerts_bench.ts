/**
 * What alert evaluation costs the consumer per applied batch (consumer/alerts.ts):
 * a batch touched 10 of 100 symbols; the rules are spread evenly over the symbols,
 * levels and moves alike. Only `evaluate` is timed (the trades are applied outside
 * the measurement). Run: `deno bench -q --no-prompt tools/bench/alerts_bench.ts`.
 */

import { parseAlertSpecs } from "../../lib/alert_rules.ts";
import { AlertEngine } from "../../consumer/alerts.ts";
import { Aggregator } from "../../consumer/candles.ts";

const SYMBOLS = Array.from({ length: 100 }, (_, i) => `SYM${i}`);
const TOUCHED = 10;

function setup(rules: number, kinds: readonly string[]) {
  const aggregator = new Aggregator({
    intervalsMs: [1_000, 60_000],
    maxCandles: 3_600,
    maxSymbols: 200,
  });
  const engine = new AlertEngine({ prices: aggregator, fire: () => {} });
  engine.release(); // no alerts topic here
  for (let i = 0; i < rules; i++) {
    const symbol = SYMBOLS[i % SYMBOLS.length];
    const kind = kinds[i % kinds.length];
    const spec = kind === "move"
      ? `${symbol}~${1 + (i % 7)}%/5m`
      : `${symbol}${kind}${90 + (i % 20)}`;
    engine.setRule(parseAlertSpecs(spec)[0]);
  }
  // Ten minutes of history: a trade a second per symbol.
  const now = Date.now();
  let time = now - 600_000;
  const price = (t: number) => 100 + 10 * Math.sin(t / 30_000);
  for (; time < now; time += 1_000) {
    for (const symbol of SYMBOLS) {
      aggregator.apply({ symbol, price: price(time), volume: 1, time, source: "sim" }, now);
    }
  }
  engine.goLive();
  let batch = 0;
  return (b: Deno.BenchContext) => {
    const touched = new Set<string>();
    const at = Date.now();
    for (let i = 0; i < TOUCHED; i++) {
      const symbol = SYMBOLS[(batch * TOUCHED + i) % SYMBOLS.length];
      aggregator.apply({
        symbol,
        price: price(at + batch * 997),
        volume: 1,
        time: at,
        source: "sim",
      }, at);
      touched.add(symbol);
    }
    batch++;
    b.start();
    engine.evaluate(touched, at);
    b.end();
  };
}

for (const rules of [0, 100, 1_000]) {
  Deno.bench(`${rules} level rules, a batch of ${TOUCHED} symbols`, setup(rules, [">", "<"]));
}
for (const rules of [100, 1_000]) {
  Deno.bench(
    `${rules} move rules (5m window), a batch of ${TOUCHED} symbols`,
    setup(rules, ["move"]),
  );
}
