import assert from "node:assert/strict";
import { createMarket } from "../producer/market_sim.ts";
import {
  openRecorder,
  parseRecordedLine,
  runReplay,
  toFinnhubFrame,
} from "../producer/recording.ts";
import type { Trade } from "../lib/trade.ts";

interface Played {
  trades: Trade[];
  receivedAt: number[];
  sources: string[];
  rejects: string[];
}

async function play(path: string, speed: number | "max", shiftTimes: boolean): Promise<Played> {
  const played: Played = { trades: [], receivedAt: [], sources: [], rejects: [] };
  await runReplay({
    path,
    speed,
    shiftTimes,
    signal: new AbortController().signal,
    onTrades(trades, receivedAt, source) {
      played.trades.push(...trades);
      for (const _ of trades) {
        played.receivedAt.push(receivedAt);
        played.sources.push(source);
      }
    },
    onReject: (kind) => played.rejects.push(kind),
  });
  return played;
}

Deno.test("a recording replays to the same trades", async (t) => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/session.ndjson`;
  const now = Date.now();
  const market = createMarket({
    symbols: ["AAPL", "BINANCE:BTCUSDT"],
    seed: 11,
    rate: 50,
    start: now - 60_000,
  });
  const batches = Array.from({ length: 20 }, () => Array.from({ length: 5 }, () => market.next()));
  const recorded: Trade[] = batches.flat();
  try {
    const live = await openRecorder(path, "finnhub", () => {});
    live.write('{"type":"ping"}', now - 60_000);
    batches.forEach((batch, i) => live.write(toFinnhubFrame(batch), now - 60_000 + i * 10));
    live.write("{broken", now - 59_000);
    live.write('{"type":"trade","data":[{"s":"AAPL","p":0,"t":1,"v":1}]}', now - 59_000);
    live.close();
    // Appending, not overwriting: a second session goes after the first.
    const sim = await openRecorder(path, "sim", () => {});
    sim.write(
      toFinnhubFrame([{ symbol: "SIMCO", price: 10, volume: 5, time: now - 58_000 }]),
      now - 58_000,
    );
    sim.close();
    await Deno.writeTextFile(path, "not a recording line\n", { append: true });

    await t.step("with the recorded times kept", async () => {
      const played = await play(path, "max", false);
      assert.deepEqual(played.trades.slice(0, recorded.length), recorded);
      assert.deepEqual(played.trades.at(-1), {
        symbol: "SIMCO",
        price: 10,
        volume: 5,
        time: now - 58_000,
      });
      assert.deepEqual(played.rejects, ["not-json", "bad-price", "bad-recording-line"]);
      assert.ok(played.sources.slice(0, -1).every((source) => source === "replay"));
      assert.equal(played.sources.at(-1), "sim", "a simulated price stays marked simulated");
    });

    await t.step("with times shifted to now, each trade keeps its lag", async () => {
      const before = Date.now();
      const played = await play(path, "max", true);
      assert.equal(played.trades.length, recorded.length + 1);
      played.trades.slice(0, recorded.length).forEach((trade, i) => {
        const original = recorded[i];
        const frameAt = now - 60_000 + Math.floor(i / 5) * 10;
        assert.deepEqual({ ...trade, time: original.time }, original);
        assert.equal(trade.time - played.receivedAt[i], original.time - frameAt);
        assert.ok(played.receivedAt[i] >= before);
      });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("replay keeps the recorded pace times --speed", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/paced.ndjson`;
  const now = Date.now();
  try {
    const recorder = await openRecorder(path, "finnhub", () => {});
    for (let i = 0; i < 5; i++) {
      const trade = { symbol: "AAPL", price: 100 + i, volume: 1, time: now + i * 1000 };
      recorder.write(toFinnhubFrame([trade]), now + i * 1000);
    }
    recorder.close();
    const started = Date.now();
    const played = await play(path, 20, true);
    const gaps = played.receivedAt.slice(1).map((at, i) => at - played.receivedAt[i]);
    // 1 s recorded gaps at 20x: 50 ms each (timers may fire a little late, never early).
    for (const gap of gaps) assert.ok(gap >= 45 && gap < 150, `gap ${gap} ms`);
    assert.ok(Date.now() - started < 1000);
    assert.deepEqual(played.trades.map((trade) => trade.price), [100, 101, 102, 103, 104]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recording lines are checked", () => {
  assert.deepEqual(parseRecordedLine('{"at":5,"frame":"x"}'), {
    at: 5,
    source: "finnhub",
    frame: "x",
  });
  assert.deepEqual(parseRecordedLine('{"at":5,"frame":"x","source":"sim"}'), {
    at: 5,
    source: "sim",
    frame: "x",
  });
  assert.equal(parseRecordedLine('{"at":"5","frame":"x"}'), "bad-recording-line");
  assert.equal(parseRecordedLine('{"at":5,"frame":{}}'), "bad-recording-line");
  assert.equal(parseRecordedLine('{"at":5,"frame":"x","source":"replay"}'), "bad-recording-line");
  assert.equal(parseRecordedLine("null"), "bad-recording-line");
});

Deno.test("a missing recording is a NotFound error the producer can word", async () => {
  await assert.rejects(
    runReplay({
      path: "/nonexistent/recording.ndjson",
      speed: "max",
      shiftTimes: true,
      signal: new AbortController().signal,
      onTrades: () => {},
      onReject: () => {},
    }),
    Deno.errors.NotFound,
  );
});

Deno.test("a recording that cannot be written says so once and reports itself failed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A pipe whose reader is gone: every write fails (EPIPE), as on a full disk.
    const fifo = `${dir}/session.ndjson`;
    await new Deno.Command("mkfifo", { args: [fifo] }).output();
    const logs: string[] = [];
    const [recorder, reader] = await Promise.all([
      openRecorder(fifo, "finnhub", (line) => logs.push(line)),
      Deno.open(fifo, { read: true }),
    ]);
    reader.close();
    assert.equal(recorder.failed, false);
    recorder.write('{"type":"ping"}', 1);
    recorder.close();
    recorder.close(); // a second close is harmless: the producer closes on every path
    assert.equal(recorder.failed, true, "the producer must not claim the file holds every frame");
    assert.equal(logs.length, 1, logs.join("\n"));
    assert.match(logs[0], /^error: recording to .* failed, recording stopped: /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
