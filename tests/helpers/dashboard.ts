/**
 * The dashboard server in process, for tests that ask it over HTTP: a consumer
 * status to report, a server on a free loopback port stopped (and awaited) after
 * the test's body, and the trades, aggregator and candle rows the tests compare.
 */

import { Aggregator, type ConsumerStatus } from "../../consumer/candles.ts";
import type { TradeRecord } from "../../lib/trade.ts";
import type { Row } from "./sse.ts";
import { type Dashboard, serveDashboard } from "../../dashboard/server.ts";

/** A connected consumer with nothing to report; `overrides` set what a test looks at. */
export function consumerStatus(overrides: Partial<ConsumerStatus> = {}): ConsumerStatus {
  return {
    connected: true,
    lag: 0,
    latencyP50Ms: 2,
    latencyP99Ms: 9,
    tradesPerSecond: 10,
    applied: 1,
    rejected: 0,
    tooLate: 0,
    tooEarly: 0,
    lastTradeAt: Date.now(),
    ...overrides,
  };
}

/** `serveDashboard` on 127.0.0.1 and a free port for the length of `body`. */
export async function withDashboard<T>(
  aggregator: Aggregator,
  options: Partial<Parameters<typeof serveDashboard>[0]>,
  body: (dashboard: Dashboard) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const dashboard = serveDashboard({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    aggregator,
    status: () => consumerStatus(),
    ...options,
  });
  try {
    return await body(dashboard);
  } finally {
    controller.abort();
    await dashboard.finished;
  }
}

/** A symbol that is markup, for the escaping tests. */
export const XSS = "<img src=x onerror=alert(1)>";
export const T0 = Date.UTC(2025, 0, 6, 14, 30);

export function trade(symbol: string, price: number, volume: number, time: number): TradeRecord {
  return { symbol, price, volume, time, source: "sim" };
}

export function newAggregator(): Aggregator {
  return new Aggregator({ intervalsMs: [1000, 60_000], maxCandles: 3600, maxSymbols: 100 });
}

/** The aggregator's candles as rows: [time, open, high, low, close, volume, vwap, trades]. */
export function expected(aggregator: Aggregator, symbol: string, from = -Infinity): Row[] {
  return aggregator.candles(symbol, 1000, from).map((
    c,
  ) => [c.start, c.open, c.high, c.low, c.close, c.volume, c.vwap, c.trades]);
}

/** GET /events?`query` of `dashboard`. */
export function events(dashboard: Dashboard, query: string, init: RequestInit = {}) {
  return fetch(new URL(`events?${query}`, dashboard.url), init);
}
