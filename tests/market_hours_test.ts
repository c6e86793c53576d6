/**
 * Market hours from the clock: US regular hours (09:30–16:00 America/New_York,
 * Mon–Fri) across both daylight-saving changes, weekends and the minute
 * boundaries; the forex week; crypto around the clock; unknown venues unknown.
 * And the page's session marks (lib/calendar.js, the same calendar) across both changes.
 */

import assert from "node:assert/strict";
import {
  closedReason,
  forexSession,
  formatNewYork,
  marketOf,
  sessionOf,
  usSession,
} from "../lib/market_hours.ts";
import { usSessionMarks } from "../lib/calendar.js";

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => new Date(ms!).toISOString();

Deno.test("symbols are told apart by venue: US stocks, crypto, forex, unknown", () => {
  const cases: [string, string][] = [
    ["AAPL", "us-stock"],
    ["BRK.B", "us-stock"],
    ["BINANCE:BTCUSDT", "crypto"],
    ["COINBASE:ETH-USD", "crypto"],
    ["OANDA:EUR_USD", "forex"],
    ["IC MARKETS:1", "forex"],
    ["XETRA:SAP", "unknown"],
    ["aapl", "unknown"],
  ];
  for (const [symbol, market] of cases) assert.equal(marketOf(symbol), market, symbol);
});

Deno.test("US regular hours: the open and close minutes, in winter (EST, UTC-5)", () => {
  // Tuesday 2026-12-01: 09:30 EST is 14:30 UTC, 16:00 EST is 21:00 UTC.
  const before = usSession(at("2026-12-01T14:29:59Z"));
  assert.equal(before.open, false);
  assert.equal(iso(before.next), "2026-12-01T14:30:00.000Z");
  const open = usSession(at("2026-12-01T14:30:00Z"));
  assert.equal(open.open, true);
  assert.equal(iso(open.next), "2026-12-01T21:00:00.000Z");
  assert.equal(usSession(at("2026-12-01T20:59:59Z")).open, true);
  const after = usSession(at("2026-12-01T21:00:00Z"));
  assert.equal(after.open, false);
  assert.equal(iso(after.next), "2026-12-02T14:30:00.000Z", "the next morning");
});

Deno.test("US regular hours: in summer (EDT, UTC-4) the same local minutes", () => {
  assert.equal(usSession(at("2026-07-15T13:29:59Z")).open, false);
  assert.equal(usSession(at("2026-07-15T13:30:00Z")).open, true);
  assert.equal(usSession(at("2026-07-15T19:59:59Z")).open, true);
  assert.equal(usSession(at("2026-07-15T20:00:00Z")).open, false);
});

Deno.test("US regular hours: the weekend, and both daylight-saving changes", () => {
  // Friday 2026-03-06 16:00 EST closes; clocks go forward on Sunday 2026-03-08, so
  // Monday opens at 09:30 EDT = 13:30 UTC, an hour earlier in UTC than Friday.
  const friday = usSession(at("2026-03-06T21:00:00Z"));
  assert.equal(friday.open, false);
  assert.equal(iso(friday.next), "2026-03-09T13:30:00.000Z");
  assert.equal(formatNewYork(friday.next!), "Mon 09:30 ET");
  assert.equal(usSession(at("2026-03-07T15:00:00Z")).open, false, "Saturday midday");
  assert.equal(usSession(at("2026-03-08T15:00:00Z")).open, false, "Sunday midday");
  // Clocks go back on Sunday 2026-11-01: Friday closes at 20:00 UTC (EDT), Monday
  // opens at 14:30 UTC (EST).
  assert.equal(usSession(at("2026-10-30T19:59:59Z")).open, true);
  const fall = usSession(at("2026-10-30T20:00:00Z"));
  assert.equal(fall.open, false);
  assert.equal(iso(fall.next), "2026-11-02T14:30:00.000Z");
  assert.equal(usSession(at("2026-11-02T14:29:59Z")).open, false);
  assert.equal(usSession(at("2026-11-02T14:30:00Z")).open, true);
  // During the skipped and the repeated hour itself, a Sunday: closed, opens Monday.
  assert.equal(iso(usSession(at("2026-03-08T07:30:00Z")).next), "2026-03-09T13:30:00.000Z");
  assert.equal(iso(usSession(at("2026-11-01T06:30:00Z")).next), "2026-11-02T14:30:00.000Z");
});

Deno.test("forex trades from Sunday 17:00 to Friday 17:00 New York time", () => {
  assert.equal(forexSession(at("2026-03-06T21:59:59Z")).open, true, "Friday 16:59:59 EST");
  const closed = forexSession(at("2026-03-06T22:00:00Z"));
  assert.equal(closed.open, false, "Friday 17:00 EST");
  assert.equal(iso(closed.next), "2026-03-08T21:00:00.000Z", "Sunday 17:00 EDT (after the change)");
  assert.equal(forexSession(at("2026-03-08T20:59:59Z")).open, false);
  const open = forexSession(at("2026-03-08T21:00:00Z"));
  assert.equal(open.open, true);
  assert.equal(iso(open.next), "2026-03-13T21:00:00.000Z", "closes Friday 17:00 EDT");
});

Deno.test("crypto is always open; unknown venues claim nothing", () => {
  assert.deepEqual(sessionOf("crypto", at("2026-03-07T12:00:00Z")), { open: true });
  assert.equal(sessionOf("unknown", at("2026-03-07T12:00:00Z")), undefined);
  assert.equal(closedReason("crypto", at("2026-03-07T12:00:00Z")), undefined);
  assert.equal(closedReason("unknown", at("2026-03-07T12:00:00Z")), undefined);
});

Deno.test("a closed US market is named with 'regular hours' and the next open", () => {
  assert.equal(
    closedReason("us-stock", at("2026-12-05T12:00:00Z")),
    "US market closed (regular hours), opens Mon 09:30 ET",
  );
  assert.equal(closedReason("us-stock", at("2026-12-01T15:00:00Z")), undefined, "open");
});

Deno.test("session marks across both daylight-saving changes agree with the hours", () => {
  // Friday 2026-03-06 (EST) to Monday 2026-03-09 (EDT); Friday 2026-10-30 (EDT) to
  // Monday 2026-11-02 (EST): the same 09:30 and 16:00, an hour apart in UTC.
  const spring = usSessionMarks(at("2026-03-06T00:00:00Z"), at("2026-03-09T23:59:59Z"));
  assert.deepEqual(spring.map((mark) => `${mark.kind} ${iso(mark.at)}`), [
    "open 2026-03-06T14:30:00.000Z",
    "close 2026-03-06T21:00:00.000Z",
    "open 2026-03-09T13:30:00.000Z",
    "close 2026-03-09T20:00:00.000Z",
  ]);
  const fall = usSessionMarks(at("2026-10-30T00:00:00Z"), at("2026-11-02T23:59:59Z"));
  assert.deepEqual(fall.map((mark) => `${mark.kind} ${iso(mark.at)}`), [
    "open 2026-10-30T13:30:00.000Z",
    "close 2026-10-30T20:00:00.000Z",
    "open 2026-11-02T14:30:00.000Z",
    "close 2026-11-02T21:00:00.000Z",
  ]);
  // Each mark is where usSession turns: open from the open on, closed from the close on.
  for (const mark of [...spring, ...fall]) {
    assert.equal(usSession(mark.at).open, mark.kind === "open", iso(mark.at));
    assert.equal(usSession(mark.at - 1).open, mark.kind === "close", iso(mark.at - 1));
  }
  // The change itself falls on a Sunday: a span of the weekend holds no mark.
  assert.deepEqual(usSessionMarks(at("2026-11-01T00:00:00Z"), at("2026-11-01T23:59:59Z")), []);
});
