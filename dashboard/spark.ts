/**
 * The watchlist's sparklines and the compare view's lines: per symbol, the last
 * price every `SPARK_STEP_MS` over the last `SPARK_POINTS` steps, sent once in each
 * snapshot. By trade time, as the candles are: the newest step is the one of the
 * newest trade the aggregator has, so a replay or a delayed feed draws its own
 * last minutes (the wall clock would draw nothing, or a line shifted by the delay). The page carries them on from the stats every push already has, so
 * they cost no extra push; at 100 symbols a snapshot grows by about 55 kB (tests/spark_test.ts).
 */

import type { Aggregator } from "../consumer/candles.ts";
import { closesBySlot } from "../consumer/plot.ts";

export const SPARK_STEP_MS = 5_000;
export const SPARK_POINTS = 60;

/** Sparklines of every symbol: the step, the newest slot and the closes (null before a symbol's first trade). */
export interface Sparks {
  readonly stepMs: number;
  /** The newest slot: its start is `end * stepMs`. */
  readonly end: number;
  readonly lines: Record<string, (number | null)[]>;
}

/**
 * The closes up to the newest trade time of any symbol, drawn from the widest kept
 * interval that divides the step (1 s candles). Before the first trade: no lines.
 */
export function sparks(
  aggregator: Pick<Aggregator, "symbols" | "intervals" | "candles" | "stats">,
): Sparks {
  const symbols = aggregator.symbols();
  const newest = Math.max(...symbols.map((symbol) => aggregator.stats(symbol)?.lastTime ?? 0), 0);
  const end = Math.floor(newest / SPARK_STEP_MS);
  const fits = aggregator.intervals().filter((interval) => SPARK_STEP_MS % interval === 0);
  const lines: Record<string, (number | null)[]> = {};
  if (fits.length === 0) return { stepMs: SPARK_STEP_MS, end, lines };
  const source = Math.max(...fits);
  const from = (end - SPARK_POINTS + 1) * SPARK_STEP_MS;
  for (const symbol of symbols) {
    // Candles from a little before the window carry their close in (60 slots back).
    const candles = aggregator.candles(symbol, source, from - 60 * source);
    const closes = closesBySlot(candles, SPARK_STEP_MS, end, SPARK_POINTS);
    lines[symbol] = closes.map((close) => close ?? null);
  }
  return { stepMs: SPARK_STEP_MS, end, lines };
}
