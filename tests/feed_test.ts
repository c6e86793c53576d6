/**
 * The feed topic: the codec and schema/feed.v1.json agree; a viewer turns heartbeats
 * and gaps into the words every view shows; and, against a real broker, a dashboard
 * reads the feed of a real producer: live, silent within a few heartbeats of a
 * SIGKILL (a dead producer is not a quiet market), stopped after a clean stop.
 */

import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020.js";
import { FeedLog, MAX_SHOWN_GAPS, summarizeFeed } from "../consumer/feed.ts";
import { quietReason } from "../lib/market_hours.ts";
import {
  decodeFeed,
  encodeFeed,
  feedKey,
  type FeedRecord,
  feedTopicOf,
  type Gap,
  type Heartbeat,
} from "../lib/feed.ts";
import { type FeedSink, feedSink, FeedWriter } from "../producer/feed.ts";
import { sleep } from "../lib/async.ts";
import { BROKERS, withTopic } from "./helpers/kafka.ts";
import { readFeed, startDashboardConsumer, startProducer, waitUntil } from "./helpers/processes.ts";

const schema = JSON.parse(
  await Deno.readTextFile(new URL("../schema/feed.v1.json", import.meta.url)),
);
const check = new Ajv2020({ strict: true, allErrors: true }).compile(schema);
const errors = (value: unknown) =>
  check(value) ? [] : (check.errors ?? []).map((e) => `${e.instancePath || "$"} ${e.message}`);

const NOW = Date.UTC(2026, 11, 1, 15, 0, 0); // Tuesday 10:00 in New York: the market is open

function beat(overrides: Partial<Heartbeat> = {}): Heartbeat {
  return {
    v: 1,
    kind: "heartbeat",
    producer: "market-stream-0a1b2c3d",
    source: "finnhub",
    at: NOW - 1_000,
    everyMs: 5_000,
    state: "live",
    since: NOW - 3_600_000,
    symbols: ["AAPL", "BINANCE:BTCUSDT"],
    lastFrameAt: NOW - 1_100,
    lastPingAt: NOW - 30_000,
    lastTradeAt: { AAPL: NOW - 1_100, "BINANCE:BTCUSDT": NOW - 1_200 },
    counts: {
      received: 1_000,
      acked: 998,
      queued: 2,
      dropped: 0,
      rejected: { "bad-price": 1 },
      reconnects: 2,
    },
    ...overrides,
  };
}

function gap(n: number, overrides: Partial<Gap> = {}): Gap {
  return {
    v: 1,
    kind: "gap",
    producer: "market-stream-0a1b2c3d",
    source: "finnhub",
    n,
    reason: "disconnected",
    detail: 'closed by server, code 1001 "server restart"',
    from: NOW - 600_000,
    to: NOW - 586_000,
    tradeFrom: NOW - 600_050,
    tradeTo: NOW - 586_050,
    symbols: ["AAPL", "BINANCE:BTCUSDT"],
    ...overrides,
  };
}

function logOf(records: FeedRecord[]): FeedLog {
  const log = new FeedLog();
  for (const record of records) log.apply(encodeFeed(record));
  return log;
}

Deno.test("feed records: the codec's output is valid against schema/feed.v1.json", () => {
  const samples: FeedRecord[] = [
    beat(),
    beat({ state: "refused", detail: "Invalid status code: 503", lastFrameAt: null }),
    beat({ source: "sim", lastPingAt: null, lastFrameAt: null, lastTradeAt: {} }),
    gap(1),
    gap(2, { reason: "queue-full", dropped: 1234, symbols: ["AAPL"] }),
    gap(3, { reason: "kafka-unreachable", symbols: [] }),
  ];
  for (const record of samples) {
    const text = encodeFeed(record);
    assert.deepEqual(errors(JSON.parse(text)), [], text);
    assert.deepEqual(decodeFeed(text), record);
  }
  assert.equal(feedKey(beat()), "heartbeat/market-stream-0a1b2c3d");
  assert.equal(feedKey(gap(7)), "gap/market-stream-0a1b2c3d/7");
});

Deno.test("feed records: the schema and decodeFeed refuse the same broken records", () => {
  const broken: unknown[] = [
    { ...beat(), v: 2 },
    { ...beat(), state: "asleep" },
    { ...beat(), everyMs: 0 },
    { ...beat(), lastTradeAt: { AAPL: "soon" } },
    { ...beat(), counts: { ...beat().counts, acked: -1 } },
    { ...beat(), source: "live" },
    { ...gap(1), reason: "weather" },
    { ...gap(1), n: "1" },
    { ...gap(1), symbols: "AAPL" },
    { ...beat(), kind: "trade" },
    { symbol: "AAPL", price: 1, volume: 1, time: NOW, v: 1, source: "sim" }, // a trade
  ];
  for (const record of broken) {
    const text = JSON.stringify(record);
    assert.notDeepEqual(errors(record), [], `schema accepts ${text}`);
    assert.equal(decodeFeed(text), null, `decodeFeed accepts ${text}`);
  }
});

Deno.test("the feed in words: live, pings only, refused, silent, stopped, unknown", () => {
  const at = (records: FeedRecord[], now = NOW) => summarizeFeed(logOf(records), { now, from: 0 });
  assert.equal(at([]).state, "unknown");
  assert.match(at([]).words, /^feed state unknown: no heartbeat/);
  // Gaps are counted as reconnects of the day (NOW's local day), and kept once.
  const live = at([gap(1), gap(1), gap(2, { from: NOW - 60_000, to: NOW - 50_000 }), beat()]);
  assert.equal(live.state, "live");
  assert.equal(live.words, "Finnhub live · 2 reconnects today");
  assert.equal(live.gaps.length, 2);
  assert.match(live.gaps[0].words, /^disconnected 14s: closed by server, code 1001/);
  assert.deepEqual(live.symbols.AAPL, {
    lastTradeAt: NOW - 1_100,
    stale: false,
    gapped: true,
    note: undefined,
  });
  assert.equal(at([beat({ source: "sim" })]).words, "simulated market live");

  const refused = at([beat({ state: "refused", detail: "Invalid status code: 503" })]);
  assert.match(
    refused.words,
    /^Finnhub refusing connections since .*\(Invalid status code: 503\)$/,
  );

  // Sunday noon in New York: US stocks closed, named with the next open.
  const sunday = Date.UTC(2026, 11, 6, 17, 0, 0);
  const pings = at(
    [beat({ state: "pings-only", at: sunday - 1_000, symbols: ["AAPL", "MSFT"] })],
    sunday,
  );
  assert.match(
    pings.words,
    /^pings only since \d\d:\d\d · US market closed \(regular hours\), opens Mon 09:30 ET$/,
  );
  assert.equal(
    quietReason(["AAPL"], NOW),
    "no trades during trading hours: a holiday, a halt, or a symbol spelled differently?",
  );
  assert.match(quietReason(["BINANCE:BTCUSDT"], sunday), /crypto trades around the clock/);

  // Three missed heartbeats: silent, and every symbol is stale; a clean stop is not silent.
  const silent = at([beat({ at: NOW - 16_000 })]);
  assert.equal(silent.state, "silent");
  assert.match(silent.words, /^producer silent for 16s \(last heartbeat/);
  assert.equal(silent.symbols.AAPL.stale, true);
  assert.equal(at([beat({ at: NOW - 14_000 })]).state, "live", "under three intervals");
  const stopped = at([beat({ at: NOW - 600_000, state: "stopped", since: NOW - 600_000 })]);
  assert.equal(stopped.state, "stopped");
  assert.match(stopped.words, /^producer stopped at /);
  // A symbol of an open market without trades for a minute is stale.
  const quiet = at([beat({ lastTradeAt: { AAPL: NOW - 120_000 } })]);
  assert.equal(quiet.symbols.AAPL.stale, true);
  assert.equal(quiet.symbols["BINANCE:BTCUSDT"].stale, true, "never traded");
});

Deno.test("the feed log: the newest heartbeat wins, junk is counted, gaps are bounded", () => {
  const log = logOf([beat({ at: NOW - 5_000 }), beat({ at: NOW - 9_000, state: "refused" })]);
  assert.equal(log.latest()?.state, "live", "an older heartbeat read later does not win");
  log.apply("not json");
  log.apply(null);
  assert.equal(log.rejected, 2);
  for (let n = 1; n <= 1_100; n++) log.apply(encodeFeed(gap(n)));
  assert.equal(log.gaps().length, 1_000);
  assert.equal(log.gaps()[0].n, 101, "the oldest go first");
  const windowed = summarizeFeed(log, { now: NOW, from: NOW - 590_000 });
  assert.equal(windowed.gaps.length, MAX_SHOWN_GAPS, "a summary carries the newest gaps only");
  assert.equal(windowed.gaps.at(-1)!.n, 1_100);
  assert.equal(summarizeFeed(log, { now: NOW, from: NOW }).gaps.length, 0);
});

Deno.test("the feed writer keeps a gap added while a write is under way for the next one", async () => {
  const sent: string[][] = [];
  let hold: Promise<void> | undefined;
  let release = () => {};
  const sink: FeedSink = {
    connect: () => Promise.resolve(),
    send: async (messages) => {
      sent.push(messages.map((message) => String(message.value)));
      await hold;
    },
    close: () => Promise.resolve(),
  };
  const writer = new FeedWriter({
    sink,
    topic: "t.feed",
    producer: "test-0a1b2c3d",
    source: "sim",
    everyMs: 40,
    beat: () => {
      const { state, since, symbols, lastFrameAt, lastPingAt, lastTradeAt, counts } = beat();
      return { state, since, symbols, lastFrameAt, lastPingAt, lastTradeAt, counts };
    },
    delayMs: () => 0,
    log: () => {},
  });
  await writer.start();
  hold = new Promise((resolve) => (release = resolve));
  const gap = (from: number) =>
    writer.gap({ reason: "kafka-unreachable", from, to: from + 1, detail: "x".repeat(2_000) });
  gap(1_000);
  await sleep(70); // a beat is under way with gap 1, held by the sink
  gap(2_000); // added while it is under way
  release();
  hold = undefined;
  await sleep(120);
  await writer.close(1_000);
  const gaps = sent.flat().map((value) => decodeFeed(value)).filter((record) =>
    record?.kind === "gap"
  ) as Gap[];
  assert.deepEqual(gaps.map((gap) => gap.n), [1, 2], "each gap written once, none lost");
  assert.equal(gaps[0].detail.length, 500, "a long reason is cut to the schema's limit");
  assert.ok(sent.flat().every((value) => decodeFeed(value) !== null), "every record decodes");
});

Deno.test("the feed writer: dropped trades become one queue-full gap; a clean close says stopped", async () => {
  await withTopic(1, async (topic, kafka, admin) => {
    await admin.createTopics({ topics: [{ topic: feedTopicOf(topic) }], waitForLeaders: true });
    const logs: string[] = [];
    const writer = new FeedWriter({
      sink: feedSink(kafka, feedTopicOf(topic)),
      topic: feedTopicOf(topic),
      producer: "test-0a1b2c3d",
      source: "sim",
      everyMs: 200,
      beat: () => ({
        state: "live",
        since: NOW,
        symbols: ["AAPL", "MSFT"],
        lastFrameAt: null,
        lastPingAt: null,
        lastTradeAt: {},
        counts: { received: 0, acked: 0, queued: 0, dropped: 30, rejected: {}, reconnects: 0 },
      }),
      delayMs: () => 250,
      log: (line) => logs.push(line),
    });
    await writer.start();
    const at = Date.now();
    const trade = (symbol: string, time: number) => ({ symbol, price: 1, volume: 1, time });
    writer.dropped([trade("AAPL", 1_000), trade("MSFT", 3_000)], at);
    writer.dropped([trade("AAPL", 2_000)], at + 40);
    writer.gap({ reason: "kafka-unreachable", from: at - 5_000, to: at, detail: "broker away" });
    await new Promise((resolve) => setTimeout(resolve, 1_600)); // the run ends after 1 s idle
    await writer.close(2_000);
    const records = await readFeed(BROKERS, topic);
    const gaps = records.filter((record): record is Gap => record.kind === "gap");
    assert.deepEqual(gaps.map((gap) => [gap.n, gap.reason]), [
      [1, "kafka-unreachable"],
      [2, "queue-full"],
    ]);
    assert.deepEqual(
      [gaps[0].from, gaps[0].to, gaps[0].tradeFrom, gaps[0].tradeTo],
      [at - 5_000, at, at - 5_250, at - 250],
      "trade times are wall times less the feed's delay",
    );
    const full = gaps[1];
    assert.equal(full.dropped, 3);
    assert.deepEqual([full.from, full.to, full.tradeFrom, full.tradeTo], [
      at,
      at + 40,
      1_000,
      3_000,
    ]);
    assert.deepEqual(full.symbols, ["AAPL", "MSFT"]);
    const beats = records.filter((record): record is Heartbeat => record.kind === "heartbeat");
    assert.ok(beats.length >= 3, `${beats.length} heartbeats`);
    assert.equal(beats.at(-1)!.state, "stopped");
    assert.deepEqual(logs, []);
  });
});

Deno.test("a dashboard reads a real producer's feed: live, silent after SIGKILL, stopped", async () => {
  await withTopic(1, async (topic) => {
    const env = { KAFKA_BROKERS: BROKERS, KAFKA_TOPIC: topic, KAFKA_GROUP_ID: `${topic}-viewer` };
    await using dashboard = await startDashboardConsumer([], env);
    const feed = async () => {
      const response = await fetch(`${dashboard.url}api/feed`);
      return await response.json();
    };
    const waitForState = async (state: string, ms: number) => {
      let last = { state: "", words: "" };
      await dashboard.explain(waitUntil(
        () => `feed state ${state} (last: ${JSON.stringify(last)})`,
        async () => (last = await feed()).state === state,
        ms,
      ));
      return last;
    };
    assert.equal((await feed()).state, "unknown");
    const producerArgs = [`--topic=${topic}`, "--rate=20", "--heartbeat=1", "--status-interval=0"];
    {
      await using producer = startProducer(producerArgs, env);
      const live = await producer.explain(waitForState("live", 30_000));
      assert.equal(live.words, "simulated market live");
      producer.kill("SIGKILL");
      const killedAt = Date.now();
      const silent = await waitForState("silent", 15_000);
      const detectedMs = Date.now() - killedAt;
      console.log(`  silent producer detected ${detectedMs} ms after SIGKILL (heartbeat 1 s)`);
      assert.match(silent.words, /^producer silent for [\d.]+s \(last heartbeat/);
      // Three heartbeat intervals, plus the one under way and the viewer's read.
      assert.ok(detectedMs <= 5_500, `detected in ${detectedMs} ms`);
    }
    await using producer = startProducer(producerArgs, env);
    await producer.explain(waitForState("live", 30_000));
    producer.kill("SIGTERM");
    assert.equal((await producer.done).code, 0);
    const stopped = await waitForState("stopped", 10_000);
    assert.match(stopped.words, /^producer stopped at \d\d:\d\d:\d\d$/);
  });
});
