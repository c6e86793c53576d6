import assert from "node:assert/strict";
import { createCounters, formatStatus, formatSummary } from "../producer/status.ts";

Deno.test("trades sent again after a failed send show on the status and summary lines", () => {
  const counters = createCounters();
  counters.received = counters.acked = 1_200;
  const status = () =>
    formatStatus({
      source: "finnhub",
      now: 10_000,
      counters,
      previous: { received: 0, acked: 0, at: 0 },
      symbols: ["AAPL"],
      lastTradeAt: new Map([["AAPL", 9_000]]),
    });
  // Nothing happened: no word about it.
  assert.ok(!status().includes("duplicated"), status());
  assert.ok(!formatSummary("finnhub", 10_000, counters).includes("duplicated"));
  counters.possiblyDuplicated = 1_500;
  assert.match(status(), /dropped 0 {2}possibly duplicated 1,500 {2}rejected 0/);
  assert.match(
    formatSummary("finnhub", 10_000, counters),
    /dropped 0, possibly duplicated 1,500, rejected 0/,
  );
});
