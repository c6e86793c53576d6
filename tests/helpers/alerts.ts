/** The alert tests' engine over a fresh aggregation, and rules as ALERTS and the page make them. */

import { type AlertRule, type FiredAlert, parseAlertSpecs } from "../../lib/alert_rules.ts";
import { AlertEngine } from "../../consumer/alerts.ts";
import { Aggregator } from "../../consumer/candles.ts";

export const T0 = Date.now() - 3600_000;

/** An engine over a fresh aggregation; released and live unless `history`. */
export function setup(
  rules: AlertRule[],
  options: { history?: boolean; maxCandles?: number } = {},
) {
  const maxCandles = options.maxCandles ?? 7_200;
  const aggregator = new Aggregator({ intervalsMs: [1_000, 60_000], maxCandles, maxSymbols: 10 });
  const fired: FiredAlert[] = [];
  const warned: string[] = [];
  const engine = new AlertEngine({
    prices: aggregator,
    fire: (a) => fired.push(a),
    maxCandles,
    warn: (line) => warned.push(line),
  });
  for (const rule of rules) engine.setRule(rule);
  if (!options.history) {
    engine.release();
    engine.goLive();
  }
  const apply = (symbol: string, price: number, time: number, now = Date.now()) =>
    aggregator.apply({ symbol, price, volume: 1, time, source: "sim" }, now);
  const trade = (symbol: string, price: number, time: number, now = Date.now()) => {
    apply(symbol, price, time, now);
    engine.evaluate([symbol], now);
  };
  return { engine, fired, trade, apply, warned };
}

export const rule = (spec: string) => parseAlertSpecs(spec)[0];
/** A rule as the page makes it: its symbol's last trade time when it was made. */
export const pageRule = (spec: string, armedAt: number | null) => ({
  ...parseAlertSpecs(spec)[0],
  id: "r-1",
  createdAt: Date.now(),
  armedAt,
});
