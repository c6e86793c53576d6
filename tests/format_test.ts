/**
 * lib/format.js: the one rule for prices, quantities, percentages, ages and clock
 * times that the terminal, the producer's status line and the web page all share.
 */

import assert from "node:assert/strict";
import {
  candleCsvName,
  formatAge,
  formatClock,
  formatCompact,
  formatCount,
  formatInterval,
  formatMs,
  formatPct,
  formatPrice,
  formatRate,
  formatSigned,
  priceDecimals,
  sourceMark,
} from "../lib/format.js";

Deno.test("counts get thousands separators and no fraction", () => {
  assert.equal(formatCount(0), "0");
  assert.equal(formatCount(1_234_567.8), "1,234,568");
  assert.equal(formatCount(-2_500), "-2,500");
});

Deno.test("ages: one unit ladder, always rounded down", () => {
  const cases: [number, string][] = [
    [-50, "0.0s"], // clock skew: never a negative age
    [0, "0.0s"],
    [9_960, "9.9s"], // not "10.0s"
    [10_000, "10s"],
    [90_000, "90s"], // the producer's and the chart's views used to disagree here
    [119_999, "119s"],
    [120_000, "2m"],
    [7_199_999, "119m"],
    [7_200_000, "2h"],
    [47 * 3_600_000, "47h"],
    [3 * 86_400_000 + 5, "3d"],
  ];
  for (const [ms, text] of cases) assert.equal(formatAge(ms), text, `${ms} ms`);
  assert.equal(formatAge(NaN), "0.0s");
});

Deno.test("clock times at a given offset, or the machine's zone", () => {
  const t = Date.UTC(2026, 0, 5, 14, 30, 7);
  assert.equal(formatClock(t, 0), "14:30:07");
  assert.equal(formatClock(t, 60), "15:30:07");
  assert.equal(formatClock(t, -330, false), "09:00");
  assert.equal(formatClock(t), new Date(t).toTimeString().slice(0, 8));
});

Deno.test("prices: one decimals rule and grouping for the terminal and the page", () => {
  assert.equal(formatPrice(67_412.5), "67,412.50");
  assert.equal(formatPrice(50.1234), "50.12"); // the terminal used to show 50.1234 here
  assert.equal(formatPrice(9.87654), "9.8765");
  assert.equal(formatPrice(1.08512), "1.0851");
  assert.equal(formatPrice(0.15123), "0.1512");
  assert.equal(formatPrice(0.000012345), "0.00001235");
  assert.equal(formatPrice(null), "—");
  assert.equal(formatPrice(NaN), "—");
  assert.equal(priceDecimals(10), 2);
  assert.equal(priceDecimals(9.99), 4);
});

Deno.test("changes, percentages, quantities, rates and latencies", () => {
  assert.equal(formatSigned(1.25), "+1.2500");
  assert.equal(formatSigned(-12.5), "-12.50");
  assert.equal(formatPct(0.9), "+0.90%");
  assert.equal(formatPct(-0.354), "-0.35%");
  assert.equal(formatPct(0), "0.00%");
  assert.equal(formatCompact(610), "610");
  assert.equal(formatCompact(6_752), "6,752");
  assert.equal(formatCompact(34_300), "34.3k");
  assert.equal(formatCompact(2_500_000), "2.5M");
  assert.equal(formatCompact(0.2954), "0.2954");
  assert.equal(formatRate(3.5), "3.5");
  assert.equal(formatRate(1_234), "1,234");
  assert.equal(formatMs(3), "3 ms");
  assert.equal(formatMs(1_500), "1.5 s");
  assert.equal(formatMs(null), "—");
  assert.equal(formatInterval(5 * 60_000), "5m");
  assert.equal(formatInterval(1_500), "1500ms");
});

Deno.test("simulated and replayed prices are marked; live ones are not", () => {
  assert.equal(sourceMark("sim"), "SIMULATED");
  assert.equal(sourceMark("replay"), "REPLAY");
  assert.equal(sourceMark("finnhub"), "");
});

Deno.test("a candle CSV's file name: symbol, interval, first candle; odd characters as _", () => {
  const first = Date.UTC(2026, 0, 5, 14, 30);
  assert.equal(
    candleCsvName({ symbol: "AAPL", intervalMs: 1_000, first }),
    "AAPL_1s_2026-01-05T14-30-00-000Z.csv",
  );
  assert.equal(
    candleCsvName({ symbol: "BINANCE:BTC/USDT", intervalMs: 60_000, first: first + 7 }),
    "BINANCE_BTC_USDT_1m_2026-01-05T14-30-00-007Z.csv",
  );
  assert.equal(
    candleCsvName({ symbol: '=x"y', intervalMs: 1_000, first: undefined }),
    "_x_y_1s_none.csv",
  );
});
