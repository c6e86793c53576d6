/**
 * What the page's indicators cost per redraw: lib/indicators.js over 3,600
 * one-second candles (an hour, the page's largest window), every indicator on.
 *
 *   deno bench -q --no-prompt tools/bench/indicators_bench.ts
 */

import { bollinger, compute, ema, rsi, sma } from "../../lib/indicators.js";

const close: number[] = [];
let price = 190;
for (let i = 0; i < 3600; i++) {
  price += Math.sin(i * 12.9898) * 0.2;
  close.push(Math.round(price * 100) / 100);
}
const all = { sma: 20, ema: 50, bollinger: true, rsi: true };

Deno.bench("all four (SMA 20, EMA 50, Bollinger 20/2, RSI 14)", { baseline: true }, () => {
  compute(close, all);
});
Deno.bench("SMA 20", () => void sma(close, 20));
Deno.bench("SMA 200", () => void sma(close, 200));
Deno.bench("EMA 50", () => void ema(close, 50));
Deno.bench("Bollinger 20, 2", () => void bollinger(close));
Deno.bench("RSI 14", () => void rsi(close, 14));
