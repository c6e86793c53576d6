import assert from "node:assert/strict";
import { quietReason } from "../lib/market_hours.ts";
import {
  backoffDelay,
  FinnhubAuthError,
  FinnhubClient,
  type FinnhubOptions,
} from "../producer/finnhub.ts";
import { createFrameReader, type FrameRejection, parseFrame } from "../producer/frames.ts";
import type { Trade } from "../lib/trade.ts";
import { FakeFinnhub } from "./helpers/fake_finnhub.ts";

const SYMBOLS = ["AAPL", "BINANCE:BTCUSDT", "IC MARKETS:1"];

/** A client against `fake`, collecting what it hands on; stop() ends it. */
function harness(fake: FakeFinnhub, overrides: Partial<FinnhubOptions> = {}) {
  const controller = new AbortController();
  const trades: Trade[] = [];
  const rejects: FrameRejection[] = [];
  const raw: string[] = [];
  const logs: string[] = [];
  const client = new FinnhubClient({
    url: fake.url,
    token: fake.token,
    symbols: SYMBOLS,
    signal: controller.signal,
    onTrades: (batch) => trades.push(...batch),
    onReject: (kind) => rejects.push(kind),
    onRawFrame: (text) => raw.push(text),
    log: (line) => logs.push(line),
    backoff: { baseMs: 20, capMs: 200 },
    ...overrides,
  });
  const running = client.run();
  return {
    client,
    trades,
    rejects,
    raw,
    logs,
    running,
    async stop() {
      controller.abort();
      await running;
      for (const line of logs) assert.ok(!line.includes(fake.token), `token leaked: ${line}`);
    },
  };
}

async function until(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

Deno.test("parseFrame tells trades, pings, errors and junk apart", () => {
  assert.deepEqual(parseFrame('{"type":"ping"}'), { type: "ping" });
  assert.deepEqual(parseFrame('{"type":"error","msg":"x"}'), { type: "error", msg: "x" });
  assert.deepEqual(parseFrame('{"type":"trade","data":[]}'), { type: "trade", data: [] });
  assert.deepEqual(parseFrame("{nope"), { type: "rejected", kind: "not-json" });
  assert.deepEqual(parseFrame("[1]"), { type: "rejected", kind: "not-an-object" });
  assert.deepEqual(parseFrame('{"type":"news"}'), { type: "rejected", kind: "unknown-type" });
  assert.deepEqual(parseFrame('{"type":"trade","data":{}}'), {
    type: "rejected",
    kind: "bad-frame",
  });
  // Nesting deep enough to overflow a recursive parser is junk, not a crash.
  const deep = "[".repeat(200_000) + "]".repeat(200_000);
  assert.equal(parseFrame(deep).type, "rejected");
});

Deno.test("the frame reader keeps v=0 and conditions, and refuses bad trades one by one", () => {
  const now = Date.now();
  const trades: Trade[] = [];
  const rejects: FrameRejection[] = [];
  const read = createFrameReader({
    onTrades: (batch) => trades.push(...batch),
    onReject: (kind) => rejects.push(kind),
  });
  const frame = JSON.stringify({
    type: "trade",
    data: [
      { s: "OANDA:EUR_USD", p: 1.0851, t: now, v: 0 },
      { s: "AAPL", p: 189.52, t: now, v: 100, c: ["1", "12"] },
      { s: "AAPL", p: -1, t: now, v: 1 },
      { s: "AAPL", p: 1, t: now - 30 * 86_400_000, v: 1 },
      { s: "", p: 1, t: now, v: 1 },
    ],
  });
  read(frame, now);
  assert.deepEqual(trades, [
    { symbol: "OANDA:EUR_USD", price: 1.0851, time: now, volume: 0 },
    { symbol: "AAPL", price: 189.52, time: now, volume: 100, conditions: ["1", "12"] },
  ]);
  assert.deepEqual(rejects, ["bad-price", "bad-time", "bad-symbol"]);
  // The same frame again within seconds is Finnhub repeating itself [#143].
  read(frame, now + 500);
  assert.equal(trades.length, 2);
  assert.deepEqual(rejects.at(-1), "duplicate-frame");
  // ...but not when it comes back much later (then it is the same trades again).
  read(frame, now + 60_000);
  assert.equal(trades.length, 4);
});

Deno.test("backoff grows, is jittered and capped", () => {
  const backoff = { baseMs: 500, capMs: 30_000 };
  assert.equal(backoffDelay(0, backoff, () => 0), 250);
  assert.equal(backoffDelay(0, backoff, () => 1), 500);
  assert.equal(backoffDelay(3, backoff, () => 1), 4000);
  assert.equal(backoffDelay(50, backoff, () => 1), 30_000);
  assert.equal(backoffDelay(50, backoff, () => 0), 15_000);
});

Deno.test("finnhub client against the fake server", async (t) => {
  const fake = new FakeFinnhub({ maxSymbols: 50 });
  try {
    await t.step("subscribes once per symbol and hands on multi-symbol frames", async () => {
      const h = harness(fake);
      await fake.waitForSubscribed(fake.connections + 1, SYMBOLS);
      assert.deepEqual(fake.current, SYMBOLS);
      fake.ping();
      fake.sendBinary(new Uint8Array([0xff, 0xfe, 0x7b]));
      const sent = fake.sendUnique(SYMBOLS, 6);
      await until(() => h.trades.length === 6, "6 trades");
      assert.deepEqual(h.rejects, ["binary-frame"]);
      assert.deepEqual(
        h.trades.map((trade) => [trade.symbol, trade.volume, trade.conditions]),
        sent.map((trade) => [trade.s, trade.v, trade.c]),
      );
      assert.equal(h.raw.length, 2, "the ping and the trade frame are both recorded raw");
      assert.ok(h.logs.some((line) => line.includes("subscribed to 3 symbols")));
      await h.stop();
    });

    await t.step("trades for symbols never subscribed are refused and counted", async () => {
      const h = harness(fake);
      try {
        await fake.waitForSubscribed(fake.connections + 1, SYMBOLS);
        const now = Date.now();
        // A server (or whoever speaks for it) pushing symbols nobody asked for: each
        // one would be published, and remembered for ever.
        const stray = Array.from({ length: 50 }, (_, i) => ({ s: `X${i}`, p: 1, t: now, v: i }));
        fake.sendTrades([{ s: "AAPL", p: 189.5, t: now, v: 7 }, ...stray]);
        await until(() => h.trades.length + h.rejects.length === 51, "the frame");
        assert.deepEqual(h.trades.map((trade) => trade.symbol), ["AAPL"]);
        assert.deepEqual(h.rejects, Array(50).fill("unsubscribed-symbol"));
        assert.deepEqual([...h.client.state.lastTradeAt.keys()], ["AAPL"]);
      } finally {
        await h.stop();
      }
    });

    await t.step("reconnects and resubscribes after a close and after a drop", async () => {
      const h = harness(fake);
      const first = fake.connections + 1;
      await fake.waitForSubscribed(first, SYMBOLS);
      fake.closeClients(1001, "restart");
      await fake.waitForSubscribed(first + 1, SYMBOLS);
      await fake.drop();
      await fake.waitForSubscribed(first + 2, SYMBOLS);
      await until(() => h.client.state.reconnects === 2, "2 reconnects");
      fake.sendUnique(SYMBOLS, 3);
      await until(() => h.trades.length === 3, "trades after the reconnects");
      assert.ok(h.logs.some((line) => line.includes('code 1001 "restart"')), h.logs.join("\n"));
      assert.ok(h.logs.some((line) => /reconnected after a [\d.]+ s gap/.test(line)));
      await h.stop();
    });

    await t.step("a silent connection is declared dead and replaced", async () => {
      const h = harness(fake, { deadAfterMs: 300 });
      const first = fake.connections + 1;
      await fake.waitForSubscribed(first, SYMBOLS);
      fake.silent = true;
      await fake.waitForSubscribed(first + 1, SYMBOLS);
      fake.silent = false;
      assert.ok(
        h.logs.some((line) => line.includes("no frame, not even a ping")),
        h.logs.join("\n"),
      );
      await h.stop();
    });

    await t.step("pings keep a quiet connection alive; silent symbols are named", async () => {
      const h = harness(fake, { deadAfterMs: 400, silentAfterMs: 60_000 });
      const first = fake.connections + 1;
      await fake.waitForSubscribed(first, SYMBOLS);
      fake.pingEvery(100);
      await new Promise((resolve) => setTimeout(resolve, 50));
      fake.sendUnique(["AAPL"], 1);
      await new Promise((resolve) => setTimeout(resolve, 700));
      fake.pingEvery(0);
      assert.equal(fake.connections, first, "no reconnect while pings arrive");
      const aapl = h.client.state.lastTradeAt.get("AAPL")!;
      h.client.checkSilence(aapl + 59_990);
      h.client.checkSilence(aapl + 60_000);
      h.client.checkSilence(aapl + 61_000);
      const lines = h.logs.filter((line) => line.includes("no trades for"));
      assert.equal(lines.length, 2, h.logs.join("\n"));
      // First the two that never traded, then all three once AAPL went quiet too.
      assert.match(lines[0], /subscribed to 3, no trades for BINANCE:BTCUSDT, IC MARKETS:1 since/);
      // Why, as far as the clock tells (lib/market_hours.ts): closed, or open and quiet.
      assert.match(lines[1], /no trades for any symbol since \d\d:\d\d:\d\d — /);
      assert.ok(
        lines[1].endsWith(
          `— ${quietReason(SYMBOLS, aapl + 60_000)} (or use --source=sim or --source=replay)`,
        ),
        lines[1],
      );
      await h.stop();
    });

    await t.step("error frames become one clear line naming the symbol count", async () => {
      const small = new FakeFinnhub({ maxSymbols: 2 });
      const h = harness(small);
      await small.waitForSubscribed(1, SYMBOLS);
      await until(() => h.logs.some((line) => line.includes("error from server")), "the error");
      await small.close();
      await h.stop();
      const errors = h.logs.filter((line) => line.includes("too many symbols"));
      assert.equal(errors.length, 1, h.logs.join("\n"));
      assert.match(errors[0], /asked for 3 symbols/);
    });

    await t.step("a refused token ends the client with FinnhubAuthError", async () => {
      const h = harness(fake, { token: "wrong-secret-token" });
      await assert.rejects(h.running, FinnhubAuthError);
      assert.equal(fake.unauthorized, 1);
      for (const line of h.logs) assert.ok(!line.includes("wrong-secret-token"));
    });
  } finally {
    await fake.close();
  }
});
