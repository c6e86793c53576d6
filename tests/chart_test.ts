/**
 * The terminal frame for a fixed data set and fixed terminal sizes equals the
 * snapshots in tests/snapshots/ (kept without colour, so a reviewer can read them),
 * every line fits the width, and the coloured frame is the same text plus colour.
 * After a deliberate change to the view: UPDATE_SNAPSHOTS=1 deno task test, then
 * read the diff of tests/snapshots/ before committing it.
 */

import assert from "node:assert/strict";
import { Aggregator, type ConsumerStatus } from "../consumer/candles.ts";
import { type ChartData, renderFrame, type Size, stepInterval } from "../consumer/chart.ts";
import { plainLines } from "../consumer/plain.ts";
import { parseKeys } from "../consumer/terminal.ts";
import { FeedLog, summarizeFeed } from "../consumer/feed.ts";
import { closesBySlot } from "../consumer/plot.ts";
import { encodeFeed, type FeedRecord } from "../lib/feed.ts";
import type { Source } from "../lib/trade.ts";

const NOW = Date.UTC(2026, 0, 5, 14, 30, 0, 400);
const SNAPSHOTS = new URL("./snapshots/", import.meta.url);
const UPDATE = Deno.env.get("UPDATE_SNAPSHOTS") === "1";

/** Four symbols over the last ~3 minutes: a trend, a simulated zig-zag, a late starter, one gone quiet. */
function fixture(): Aggregator {
  const aggregator = new Aggregator({
    intervalsMs: [1_000, 60_000],
    maxCandles: 3_600,
    maxSymbols: 10,
  });
  const add = (symbol: string, source: Source, price: number, volume: number, ago: number) =>
    aggregator.apply({ symbol, source, price, volume, time: NOW - ago });
  for (let s = 180; s >= 1; s--) {
    add("AAPL", "finnhub", 190 + (180 - s) * 0.01 + Math.sin(s / 7) * 0.2, 100 + s, s * 1000);
    add(
      "BINANCE:BTCUSDT",
      "sim",
      67_000 + ((s % 40) < 20 ? s % 20 : 20 - (s % 20)) * 12.5,
      0.25,
      s * 1000 + 300,
    );
    if (s <= 70) add("OANDA:EUR_USD", "replay", 1.0831 + (70 - s) * 0.00002, 0, s * 1000 + 500);
    if (s >= 120) add("QUIET", "finnhub", 12 + (s % 5) * 0.01, 10, s * 1000);
  }
  return aggregator;
}

function status(): ConsumerStatus {
  return {
    connected: true,
    lag: 0,
    latencyP50Ms: 3,
    latencyP99Ms: 48,
    tradesPerSecond: 3.5,
    applied: 500,
    rejected: 2,
    tooLate: 1,
    tooEarly: 0,
    lastTradeAt: NOW - 1000,
  };
}

function data(overrides: Partial<ChartData> = {}): ChartData {
  return {
    aggregation: fixture(),
    status: status(),
    topic: "trades",
    intervalMs: 1_000,
    overlay: false,
    color: false,
    utcOffsetMinutes: 0,
    ...overrides,
  };
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

function assertFits(frame: string, size: Size): void {
  const lines = frame.split("\n");
  assert.ok(lines.length <= size.rows, `${lines.length} lines > ${size.rows} rows`);
  lines.forEach((line, i) => {
    const visible = line.replace(ANSI, "");
    assert.ok(visible.length <= size.columns, `line ${i} is ${visible.length} wide: ${visible}`);
    // deno-lint-ignore no-control-regex
    assert.ok(!/[\u0000-\u001a\u001c-\u001f]/.test(line), `line ${i} has a control character`);
  });
}

async function assertSnapshot(name: string, frame: string): Promise<void> {
  const file = new URL(name, SNAPSHOTS);
  if (UPDATE) await Deno.writeTextFile(file, frame + "\n");
  const expected = await Deno.readTextFile(file);
  assert.equal(frame + "\n", expected, `frame differs from tests/snapshots/${name}`);
}

/** The feed of a live Finnhub producer that lost its connection from 60 to 40 s ago. */
function feedWithGap(): ChartData["feed"] {
  const producer = "market-stream-0a1b2c3d";
  const records: FeedRecord[] = [{
    v: 1,
    kind: "gap",
    producer,
    source: "finnhub",
    n: 1,
    reason: "disconnected",
    detail: 'closed by server, code 1001 "server restart"',
    from: NOW - 60_000,
    to: NOW - 40_000,
    tradeFrom: NOW - 60_000,
    tradeTo: NOW - 40_000,
    symbols: ["AAPL", "QUIET"],
  }, {
    v: 1,
    kind: "heartbeat",
    producer,
    source: "finnhub",
    at: NOW - 2_000,
    everyMs: 5_000,
    state: "live",
    since: NOW - 40_000,
    symbols: ["AAPL", "QUIET"],
    lastFrameAt: NOW - 2_000,
    lastPingAt: null,
    lastTradeAt: { AAPL: NOW - 2_000, QUIET: NOW - 120_000 },
    counts: { received: 9, acked: 9, queued: 0, dropped: 0, rejected: {}, reconnects: 1 },
  }];
  const log = new FeedLog();
  for (const record of records) log.apply(encodeFeed(record));
  return summarizeFeed(log, { now: NOW, from: NOW - 3600_000 });
}

const CASES: [string, Size, Partial<ChartData>][] = [
  ["panels_120x40.txt", { columns: 120, rows: 40 }, {}],
  ["panels_100x16_feed_gap.txt", { columns: 100, rows: 16 }, { feed: feedWithGap() }],
  ["panels_80x14.txt", { columns: 80, rows: 14 }, {}],
  ["panels_80x10_more.txt", { columns: 80, rows: 10 }, {}],
  ["overlay_100x24.txt", { columns: 100, rows: 24 }, { overlay: true }],
  // With keys on (stdin a terminal): a page of symbols and the hint line.
  ["panels_80x10_keys_page2.txt", { columns: 80, rows: 10 }, { paging: { page: 1 } }],
  ["panels_100x16_keys_5s.txt", { columns: 100, rows: 16 }, {
    paging: { page: 0 },
    intervalMs: 5_000,
    keptIntervalsMs: [1_000, 60_000],
  }],
  ["overlay_80x9_keys_page2.txt", { columns: 80, rows: 9 }, {
    overlay: true,
    paging: { page: 1 },
  }],
];

Deno.test("the frame equals its snapshot and fits the terminal", async (t) => {
  for (const [name, size, overrides] of CASES) {
    await t.step(name, async () => {
      const frame = renderFrame(data(overrides), size, NOW);
      assertFits(frame, size);
      await assertSnapshot(name, frame);
    });
  }
});

Deno.test("the coloured frame is the plain frame plus one colour per symbol", () => {
  for (const overlay of [false, true]) {
    const size = { columns: 120, rows: 40 };
    const plain = renderFrame(data({ overlay }), size, NOW);
    const colored = renderFrame(data({ overlay, color: true }), size, NOW);
    assertFits(colored, size);
    assert.equal(colored.replace(ANSI, ""), plain);
    // each symbol's legend and its series share a colour, and the colours differ
    const codes = ["\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m"];
    for (const code of codes) {
      const uses = colored.split(code).length - 1;
      assert.ok(uses >= 2, `${JSON.stringify(code)} used ${uses} times (overlay ${overlay})`);
    }
  }
});

Deno.test("the frame marks simulated and replayed data, and the age of the last trade", () => {
  const frame = renderFrame(data(), { columns: 120, rows: 40 }, NOW);
  const legend = (symbol: string) =>
    frame.split("\n").find((line) => line.includes(`■ ${symbol}`))!;
  assert.match(legend("BINANCE:BTCUSDT"), /SIMULATED/);
  assert.match(legend("OANDA:EUR_USD"), /REPLAY/);
  assert.doesNotMatch(legend("AAPL"), /SIMULATED|REPLAY/);
  assert.match(legend("QUIET"), /2m ago/);
  // even at the narrowest width the mark survives
  const narrow = renderFrame(data(), { columns: 40, rows: 40 }, NOW);
  assert.match(narrow, /BINANCE:BTCUSDT {2}SIMULATED/);
});

Deno.test("every size from tiny to wide fits, and a small terminal says so", () => {
  for (const columns of [39, 40, 41, 57, 80, 133, 200]) {
    for (const rows of [5, 6, 7, 9, 13, 24, 50]) {
      for (const overlay of [false, true]) {
        const size = { columns, rows };
        const frame = renderFrame(data({ overlay, color: true }), size, NOW);
        assertFits(frame, size);
        if (columns < 40 || rows < 6) assert.match(frame, /^terminal too small/);
        for (const page of [0, 1, 7, -1]) {
          assertFits(renderFrame(data({ overlay, paging: { page } }), size, NOW), size);
        }
      }
    }
  }
});

Deno.test("no trades yet: the frame says what it waits for", () => {
  const empty = new Aggregator({ intervalsMs: [1_000], maxCandles: 10, maxSymbols: 10 });
  const frame = renderFrame(data({ aggregation: empty }), { columns: 80, rows: 20 }, NOW);
  assert.match(frame, /waiting for trades on trades/);
  assert.match(frame, /deno task produce/);
});

Deno.test("closes carry across slots without trades, and start at the first trade", () => {
  const candle = (start: number, close: number) => ({
    start,
    open: close,
    high: close,
    low: close,
    close,
    volume: 1,
    trades: 1,
    vwap: close,
    revision: 1,
  });
  const candles = [candle(1_000, 1), candle(5_000, 5), candle(7_000, 7)];
  assert.deepEqual(closesBySlot(candles, 1_000, 8, 6), [1, 1, 5, 5, 7, 7]);
  assert.deepEqual(closesBySlot(candles.slice(1), 1_000, 8, 6), [undefined, undefined, 5, 5, 7, 7]);
});

Deno.test("plain lines: one per symbol and one for the consumer, key=value", () => {
  const lines = plainLines(data(), NOW);
  assert.equal(lines.length, 5);
  assert.match(lines[0], /consumer topic=trades connected=true lag=0 p50_ms=3 p99_ms=48/);
  const btc = lines.find((line) => line.includes(`symbol="BINANCE:BTCUSDT"`))!;
  assert.match(btc, /source=sim SIMULATED$/);
  assert.match(btc, / volume=45 trades=180 /);
});

Deno.test("the producer's feed: in the header, the gap marked on the time axis, on plain lines", () => {
  const withFeed = data({ feed: feedWithGap() });
  const frame = renderFrame(withFeed, { columns: 200, rows: 40 }, NOW);
  const [header] = frame.split("\n");
  assert.match(header, /Finnhub live · 1 reconnect today/);
  assert.match(header, /× 1 gap, last 40s ago/);
  // One column a second: the gap from 60 to 40 s ago is 21 marks, ending 40 columns
  // before the newest (the axis labels may cover a few of them).
  const axis = frame.split("\n").at(-1)!;
  const end = axis.length - 1 - 40;
  assert.ok(axis.slice(end - 20, end + 1).split("").filter((c) => c === "×").length >= 12, axis);
  assert.ok(!axis.slice(0, end - 20).includes("×") && !axis.slice(end + 1).includes("×"), axis);
  const lines = plainLines(withFeed, NOW);
  assert.match(
    lines[0],
    / feed=live feed_heartbeat_age_s=2\.0 feed_gaps=1 feed_text="Finnhub live · 1 reconnect today"/,
  );
  const quiet = lines.find((line) => line.includes(`symbol="QUIET"`))!;
  assert.match(quiet, / feed_stale=true feed_gapped=true/);
  assert.doesNotMatch(plainLines(data(), NOW)[0], /feed=/, "no feed read: no feed fields");
});

Deno.test("records dated ahead of the clock are shown, on the header and the plain line", () => {
  const refused = data({ status: { ...status(), tooEarly: 4 } });
  assert.match(plainLines(refused, NOW)[0], / too_late=1 too_early=4( |$)/);
  assert.match(renderFrame(refused, { columns: 200, rows: 40 }, NOW), /too early 4/);
  assert.doesNotMatch(renderFrame(data(), { columns: 200, rows: 40 }, NOW), /too early/);
});

Deno.test("keys page through every symbol, each once, and the hint says where they are", () => {
  const size = { columns: 80, rows: 10 }; // two panels a page
  const seen: string[] = [];
  for (const page of [0, 1]) {
    const frame = renderFrame(data({ paging: { page } }), size, NOW);
    seen.push(...[...frame.matchAll(/■ (\S+)/g)].map((match) => match[1]));
    assert.match(frame.split("\n").at(-2)!, /^symbols [13]–[24] of 4 · ←\/→ page · /);
    assert.doesNotMatch(frame, /more:/);
  }
  assert.deepEqual(seen, ["AAPL", "BINANCE:BTCUSDT", "OANDA:EUR_USD", "QUIET"]);
  // The pages wrap around, both ways.
  const at = (page: number) => renderFrame(data({ paging: { page } }), size, NOW);
  assert.equal(at(2), at(0));
  assert.equal(at(-1), at(1));
  // All symbols on one page: the hint has no paging keys.
  const tall = renderFrame(data({ paging: { page: 0 } }), { columns: 100, rows: 40 }, NOW);
  assert.match(tall.split("\n").at(-2)!, /^symbols 1–4 of 4 · \+\/- interval \(1s\) · q quit$/);
});

Deno.test("keys: what a read of stdin means, and the interval steps", () => {
  assert.deepEqual(parseKeys("n p q"), ["next", "next", "previous", "next", "quit"]);
  assert.deepEqual(parseKeys("\x1b[6~\x1b[5~\x1b[C\x1b[D+-"), [
    "next",
    "previous",
    "next",
    "previous",
    "longer",
    "shorter",
  ]);
  assert.deepEqual(parseKeys("\x1b[15~x\x1b[Hq"), ["quit"], "other keys are skipped");
  assert.equal(stepInterval(1_000, 1), 5_000);
  assert.equal(stepInterval(60_000, -1), 15_000);
  assert.equal(stepInterval(1_000, -1), 1_000, "the ends hold");
  assert.equal(stepInterval(900_000, 1), 900_000);
  assert.equal(stepInterval(2_000, 1), 5_000, "a --interval off the list joins it");
});
