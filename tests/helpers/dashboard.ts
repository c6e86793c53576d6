/**
 * The dashboard server in process, for tests that ask it over HTTP: a consumer
 * status to report, and a server on a free loopback port stopped (and awaited)
 * after the test's body.
 */

import type { Aggregator, ConsumerStatus } from "../../consumer/candles.ts";
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
