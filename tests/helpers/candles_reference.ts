/**
 * The reference for candles.ts, shared by the unit and broker tests: generated
 * trades (seeded) and an independent computation of what the Aggregator must hold,
 * written from the rules alone (group every applied trade by slot, then compute
 * each number from scratch).
 */

import assert from "node:assert/strict";
import type { Candle } from "../../consumer/candles.ts";
import type { TradeRecord } from "../../lib/trade.ts";
import type { Source } from "../../lib/trade.ts";

/** A small seeded PRNG (mulberry32), so a failure can be replayed. */
export function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const BASE = Date.UTC(2026, 0, 5, 14, 30, 0);

/**
 * Trades in arrival order: four symbols, one of which ("QUIET") stops after the
 * first third; ~10 % arrive late by up to 40 s (past a 20-candle 1 s ring), ~10 %
 * share the previous trade's time, ~15 % are v = 0 price updates.
 */
export function generateTrades(count: number, seed: number, base = BASE): TradeRecord[] {
  const next = random(seed);
  const symbols = ["AAPL", "BINANCE:BTCUSDT", "OANDA:EUR_USD", "QUIET"];
  const prices: Record<string, number> = {
    AAPL: 190,
    "BINANCE:BTCUSDT": 67_000,
    "OANDA:EUR_USD": 1.08,
    QUIET: 12,
  };
  const out: TradeRecord[] = [];
  let clock = base;
  for (let i = 0; i < count; i++) {
    clock += Math.floor(next() * 120);
    const live = i < count / 3 ? symbols : symbols.slice(0, 3);
    const symbol = live[Math.floor(next() * live.length)];
    prices[symbol] = Math.round(prices[symbol] * (1 + (next() - 0.5) * 0.002) * 1e5) / 1e5;
    let time = clock;
    const roll = next();
    if (roll < 0.1) time = clock - Math.floor(next() * 40_000);
    else if (roll < 0.2 && out.length > 0) time = out[out.length - 1].time;
    const volume = next() < 0.15 ? 0 : Math.round(next() * 500) / 10;
    const source: Source = symbol === "QUIET" ? "sim" : "finnhub";
    out.push({ symbol, price: prices[symbol], volume, time, source });
  }
  return out;
}

interface RefCandle {
  start: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  trades: number;
  vwap: number | null;
}

/** The reference: decide what is applied by the stated rules, then build candles from lists. */
export function reference(
  trades: readonly TradeRecord[],
  intervals: readonly number[],
  maxCandles: number,
  maxSymbols: number,
  fromMs = -Infinity,
) {
  const newest = new Map<string, number[]>();
  const applied: TradeRecord[] = [];
  let tooLate = 0;
  let capped = 0;
  for (const trade of trades) {
    if (trade.time < fromMs) {
      tooLate++;
      continue;
    }
    let seen = newest.get(trade.symbol);
    if (!seen) {
      if (newest.size >= maxSymbols) {
        capped++;
        continue;
      }
      seen = intervals.map(() => -Infinity);
      newest.set(trade.symbol, seen);
    }
    const slots = intervals.map((interval) => Math.floor(trade.time / interval));
    if (slots.some((slot, i) => slot <= seen[i] - maxCandles)) {
      tooLate++;
      continue;
    }
    slots.forEach((slot, i) => (seen[i] = Math.max(seen[i], slot)));
    applied.push(trade);
  }
  const candles = (symbol: string, interval: number): RefCandle[] => {
    const own = applied.filter((trade) => trade.symbol === symbol);
    const newestSlot = Math.max(...own.map((trade) => Math.floor(trade.time / interval)));
    const groups = new Map<number, TradeRecord[]>();
    for (const trade of own) {
      const slot = Math.floor(trade.time / interval);
      if (slot <= newestSlot - maxCandles) continue;
      groups.set(slot, [...(groups.get(slot) ?? []), trade]);
    }
    return [...groups.keys()].sort((a, b) => a - b).map((slot) => {
      const group = groups.get(slot)!;
      const minTime = Math.min(...group.map((trade) => trade.time));
      const maxTime = Math.max(...group.map((trade) => trade.time));
      const volume = group.reduce((sum, trade) => sum + trade.volume, 0);
      const priceVolume = group.reduce((sum, trade) => sum + trade.price * trade.volume, 0);
      return {
        start: slot * interval,
        open: group.find((trade) => trade.time === minTime)!.price,
        high: Math.max(...group.map((trade) => trade.price)),
        low: Math.min(...group.map((trade) => trade.price)),
        close: group.findLast((trade) => trade.time === maxTime)!.price,
        volume,
        trades: group.length,
        vwap: volume > 0 ? priceVolume / volume : null,
      };
    });
  };
  const session = (symbol: string) => {
    const own = applied.filter((trade) => trade.symbol === symbol);
    const minTime = Math.min(...own.map((trade) => trade.time));
    const maxTime = Math.max(...own.map((trade) => trade.time));
    const volume = own.reduce((sum, trade) => sum + trade.volume, 0);
    const priceVolume = own.reduce((sum, trade) => sum + trade.price * trade.volume, 0);
    const first = own.find((trade) => trade.time === minTime)!.price;
    const last = own.findLast((trade) => trade.time === maxTime)!.price;
    return {
      last,
      lastTime: maxTime,
      change: last - first,
      volume,
      trades: own.length,
      sessionVwap: volume > 0 ? priceVolume / volume : null,
    };
  };
  return { applied, tooLate, capped, symbols: [...newest.keys()].sort(), candles, session };
}

export function close(actual: number | null, expected: number | null, what: string): void {
  if (actual === null || expected === null) return assert.equal(actual, expected, what);
  const scale = Math.max(1, Math.abs(expected));
  assert.ok(Math.abs(actual - expected) <= 1e-9 * scale, `${what}: ${actual} != ${expected}`);
}

export function assertCandlesEqual(actual: readonly Candle[], expected: RefCandle[], what: string) {
  assert.deepEqual(
    actual.map((c) => [c.start, c.open, c.high, c.low, c.close, c.trades]),
    expected.map((c) => [c.start, c.open, c.high, c.low, c.close, c.trades]),
    `${what}: start/open/high/low/close/trades`,
  );
  actual.forEach((candle, i) => {
    close(candle.volume, expected[i].volume, `${what} @${candle.start} volume`);
    close(candle.vwap, expected[i].vwap, `${what} @${candle.start} vwap`);
  });
}
