/**
 * Alert rules and their evaluation, without Kafka but for the last test (a slow alerts topic): the ALERTS grammar and the JSON
 * checks (lib/alert_rules.ts), crossings that fire once and re-arm, a restart that
 * meets history again, the % window, "no trade" only while the market is open
 * (consumer/alerts.ts), and /api/alerts refusing what it must before any write.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { sleep } from "../lib/async.ts";
import { loadConfig } from "../config.ts";
import {
  alertKey,
  type AlertRule,
  alertsTopicOf,
  type FiredAlert,
  parseAlertSpecs,
  ruleFromJson,
} from "../lib/alert_rules.ts";
import { AlertEngine } from "../consumer/alerts.ts";
import { type Alerting, recordApplier, startAlertTopics } from "../consumer/alert_topics.ts";
import { BROKERS, withTopic } from "./helpers/kafka.ts";
import { waitUntil } from "./helpers/processes.ts";
import type { KafkaMessage } from "kafkajs";
import { Aggregator, type ConsumerStatus } from "../consumer/candles.ts";
import type { FeedSummary } from "../consumer/feed.ts";
import { Hub } from "../dashboard/hub.ts";
import { alertsRoute, MAX_BODY_BYTES } from "../dashboard/alert_routes.ts";
import { serveDashboard } from "../dashboard/server.ts";
import { EventReader } from "./helpers/sse.ts";

Deno.test("ALERTS grammar: levels, moves, silences; one line per mistake", () => {
  const rules = parseAlertSpecs("AAPL>190, AAPL<185,BINANCE:BTCUSDT~2%/5m,MSFT!10m");
  assert.deepEqual(rules.map((rule) => ({ ...rule })), [
    { id: "cfg:AAPL>190", symbol: "AAPL", createdAt: 0, kind: "above", level: 190 },
    { id: "cfg:AAPL<185", symbol: "AAPL", createdAt: 0, kind: "below", level: 185 },
    {
      id: "cfg:BINANCE:BTCUSDT~2%/5m",
      symbol: "BINANCE:BTCUSDT",
      createdAt: 0,
      kind: "move",
      percent: 2,
      windowMs: 300_000,
    },
    { id: "cfg:MSFT!10m", symbol: "MSFT", createdAt: 0, kind: "silent", spanMs: 600_000 },
  ]);
  assert.deepEqual(parseAlertSpecs(""), []);
  const bad: [string, RegExp][] = [
    ["AAPL=190", /^ALERTS: "AAPL=190" is not a rule: SYMBOL>LEVEL/],
    ["AAPL>abc", /^ALERTS: level: a price above 0, not NaN/],
    ["AAPL>-1", /level: a price above 0/],
    ["AAPL~2/5m", /a move is SYMBOL~PERCENT%\/WINDOW/],
    ["AAPL~0%/5m", /percent: a number above 0/],
    ["AAPL!soon", /"soon" is not a duration/],
    ["AAPL!100ms", /spanMs: a span from 1 s to 24 h/],
    ["AAPL>1,AAPL>1", /names a rule twice/],
  ];
  for (const [text, message] of bad) {
    assert.throws(() => loadConfig({ ALERTS: text }), (error: Error) => {
      assert.match(error.message, message);
      assert.equal(error.message.split("\n").length, 1);
      assert.equal(error.name, "ConfigError");
      return true;
    });
  }
});

Deno.test("rule JSON: exactly the fields of its kind", () => {
  const base = { id: "r-1", symbol: "AAPL", createdAt: 1 };
  assert.equal(ruleFromJson({ ...base, kind: "above", level: 190 }).kind, "above");
  assert.throws(() => ruleFromJson({ ...base, kind: "up", level: 1 }), /kind: one of above/);
  assert.throws(() => ruleFromJson({ ...base, kind: "above" }), /level: a number/);
  assert.throws(
    () => ruleFromJson({ ...base, kind: "above", level: 1, spanMs: 1000 }),
    /spanMs: not a field of a above rule/,
  );
  assert.throws(() => ruleFromJson({ ...base, kind: "above", level: "1" }), /level: a number/);
  assert.throws(() => ruleFromJson([1]), /not a JSON object/);
});

const T0 = Date.now() - 3600_000;

/** An engine over a fresh aggregation; released and live unless `history`. */
function setup(rules: AlertRule[], options: { history?: boolean; maxCandles?: number } = {}) {
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

const rule = (spec: string) => parseAlertSpecs(spec)[0];
/** A rule as the page makes it: its symbol's last trade time when it was made. */
const pageRule = (spec: string, armedAt: number | null) => ({
  ...parseAlertSpecs(spec)[0],
  id: "r-1",
  createdAt: Date.now(),
  armedAt,
});

Deno.test("a crossing fires once, re-arms after crossing back, and a restart fires only on a new crossing", () => {
  const above = rule("AAPL>190");
  const first = setup([above]);
  const prices = [189, 189.5, 190.2, 191, 190.5, 189.9, 190, 188, 192];
  prices.forEach((price, i) => first.trade("AAPL", price, T0 + i * 1000));
  // 190.2 crosses; 191, 190.5 stay above; 189.9 re-arms; 190 crosses (>=); 188; 192 again.
  assert.deepEqual(first.fired.map((a) => a.price), [190.2, 190, 192]);
  assert.equal(first.fired[0].words, "AAPL crossed above 190 at 190.2");
  assert.equal(first.fired[0].tradeTime, T0 + 2000);
  assert.equal(first.fired[0].source, "sim");

  // Restart: the same history again, knowing the last firing (the alerts topic).
  const again = setup([above], { history: true });
  again.engine.noteFired(first.fired.at(-1)!);
  again.engine.release();
  prices.forEach((price, i) => again.trade("AAPL", price, T0 + i * 1000));
  again.engine.goLive();
  assert.equal(again.fired.length, 0, "history does not fire again");
  again.trade("AAPL", 185, T0 + 20_000);
  again.trade("AAPL", 190.1, T0 + 21_000);
  assert.deepEqual(again.fired.map((a) => a.price), [190.1], "a new crossing fires");

  // A page rule read back at a restart: crossings before it was made are history.
  const below = setup([pageRule("AAPL<185", T0 + 5_000)]);
  below.trade("AAPL", 184, T0);
  below.trade("AAPL", 186, T0 + 1_000);
  below.trade("AAPL", 184, T0 + 2_000); // before the rule was made
  below.trade("AAPL", 186, T0 + 6_000);
  below.trade("AAPL", 184.5, T0 + 7_000);
  assert.deepEqual(below.fired.map((a) => a.price), [184.5]);
  assert.deepEqual(below.engine.since(0).alerts.map((a) => a.price), [184.5]);
});

Deno.test("a restart that reads history in one batch: still beyond is no crossing, one while down is", () => {
  const made = pageRule("AAPL>105", T0);
  // The history as one batch: every trade applied, one evaluation.
  const history = (run: ReturnType<typeof setup>, prices: number[]) => {
    prices.forEach((price, i) => run.apply("AAPL", price, T0 + i * 1000));
    run.engine.evaluate(["AAPL"]);
  };
  const fired = { rule: made, tradeTime: T0 + 2_000 } as FiredAlert;
  // Fired at 106; the consumer restarts with the price still above.
  const again = setup([made], { history: true });
  again.engine.noteFired(fired);
  again.engine.release();
  history(again, [100, 104, 106, 107]);
  assert.deepEqual(again.fired, [], "the last firing's state: no second firing");
  // Without the firing on record, the rule (armed at 100 when made) crossed while down.
  const down = setup([made], { history: true });
  down.engine.release();
  history(down, [100, 104, 106, 107]);
  assert.deepEqual(down.fired.map((a) => a.price), [107]);
});

Deno.test("an ALERTS rule that never fired: history before the start is silent", () => {
  const run = setup([rule("AAPL>190"), rule("aapl>180")], { history: true });
  run.engine.release();
  run.trade("AAPL", 189, T0);
  run.trade("AAPL", 191, T0 + 1_000); // history: on the topic before this process started
  run.engine.goLive();
  assert.deepEqual(run.warned, [
    'warning: alert "aapl crosses above 180": no trade of aapl, but of AAPL: symbols are ' +
    "case-sensitive, as the feed sends them",
  ]);
  run.trade("AAPL", 189, T0 + 11_000);
  run.trade("AAPL", 191, T0 + 12_000);
  assert.deepEqual(run.fired.map((a) => a.tradeTime), [T0 + 12_000]);
});

Deno.test("a replayed recording (dated last week) fires as it would have live", () => {
  const week = Date.now() - 7 * 86_400_000;
  const run = setup([rule("AAPL>190")]);
  run.trade("AAPL", 189, week);
  run.trade("AAPL", 191, week + 1_000);
  assert.deepEqual(run.fired.map((a) => a.tradeTime), [week + 1_000], "an ALERTS rule");
  // A rule made in the page during the replay: armed at the replay's own time.
  run.engine.setRule(pageRule("AAPL<188", run.engine.lastTradeTime("AAPL")));
  run.trade("AAPL", 187, week + 2_000);
  assert.deepEqual(run.fired.map((a) => a.price), [191, 187], "a page rule");
});

Deno.test("a rule made while the price is on one side fires on the very next crossing", () => {
  const run = setup([]);
  run.trade("AAPL", 189, T0);
  run.engine.setRule(pageRule("AAPL>190", run.engine.lastTradeTime("AAPL")));
  run.trade("AAPL", 191, T0 + 1_000);
  assert.deepEqual(run.fired.map((a) => a.price), [191]);
  // Made while already beyond: waits for a crossing.
  run.engine.setRule({ ...pageRule("AAPL>190.5", T0 + 1_000), id: "r-2" });
  run.trade("AAPL", 192, T0 + 2_000);
  assert.equal(run.fired.length, 1);
});

Deno.test("a move of X % within a window fires once and re-arms under it", () => {
  const run = setup([rule("BINANCE:BTCUSDT~2%/10s")]);
  const s = "BINANCE:BTCUSDT";
  run.trade(s, 100, T0);
  run.trade(s, 101, T0 + 5_000);
  run.trade(s, 101.5, T0 + 9_000); // 1.5 % from 100
  assert.equal(run.fired.length, 0);
  run.trade(s, 102.2, T0 + 9_500); // 2.2 % from the price 10 s before
  assert.equal(run.fired.length, 1);
  assert.match(run.fired[0].words, /^BINANCE:BTCUSDT moved \+2\.20 % within 10s \(to 102\.2\)$/);
  run.trade(s, 102.5, T0 + 9_800); // still beyond: no second firing
  run.trade(s, 103, T0 + 12_000); // from 101 (T0+5 s): 1.98 %, under 2 % but not under 1 %
  run.trade(s, 103.5, T0 + 13_000); // 2.5 %: not re-armed, so no firing
  assert.equal(run.fired.length, 1);
  run.trade(s, 102.5, T0 + 18_000); // 10 s window now starts at 101.5: 0.99 %, re-armed
  run.trade(s, 99, T0 + 19_000); // from 102.2 (T0+9.5 s): -3.1 %
  assert.deepEqual(run.fired.map((a) => a.price), [102.2, 99]);
});

Deno.test("a move window longer than the 1 s candles kept is read from the 1 m candles", () => {
  // 60 candles kept: the 1 s ones reach back a minute, the 1 m ones an hour.
  const run = setup([rule("AAPL~2%/3m")], { maxCandles: 60 });
  const start = Math.floor(T0 / 60_000) * 60_000;
  run.trade("AAPL", 100, start);
  for (let s = 1; s <= 90; s++) run.trade("AAPL", 101, start + s * 1000);
  run.trade("AAPL", 103, start + 120_000); // 3 % from 100 (2 min before), 1.98 % from 101
  assert.deepEqual(run.fired.map((a) => a.price), [103]);
});

Deno.test("no trade for a span: from the session's open, once per silent spell", () => {
  // A Wednesday: US regular hours 09:30-16:00 New York (14:30-21:00 UTC in January).
  const closed = Date.UTC(2026, 0, 7, 22, 0);
  const run = setup([rule("MSFT!10m"), rule("BINANCE:ETHUSDT!1m")], { history: true });
  const msft = () => run.fired.filter((a) => a.symbol === "MSFT");
  run.engine.release();
  run.trade("MSFT", 400, closed - 3600_000, closed - 3600_000);
  run.engine.goLive(closed);
  run.engine.checkSilence(closed);
  run.engine.checkSilence(closed + 20 * 60_000);
  assert.deepEqual(run.fired.map((a) => a.symbol), ["BINANCE:ETHUSDT"], "crypto never closes");
  // The next morning: the silence counts from the open (14:30), even for a check that
  // starts late (a consumer started at 14:35), not from the first check.
  const morning = Date.UTC(2026, 0, 8, 14, 30);
  run.engine.checkSilence(morning + 5 * 60_000);
  run.engine.checkSilence(morning + 9 * 60_000);
  assert.equal(msft().length, 0);
  run.engine.checkSilence(morning + 10 * 60_000);
  run.engine.checkSilence(morning + 11 * 60_000);
  assert.equal(msft().length, 1, "once per spell");
  assert.match(msft()[0].words, /^MSFT no trade for 10m in trading hours \(last trade /);
  assert.equal(msft()[0].tradeTime, morning, "keyed by the spell's start");
  // Trades resume (arriving now, whatever their trade time: a replay), then stop.
  run.trade("MSFT", 401, T0, morning + 12 * 60_000);
  run.engine.checkSilence(morning + 21 * 60_000);
  assert.equal(msft().length, 1, "trades ended the spell");
  run.engine.checkSilence(morning + 22 * 60_000);
  assert.equal(msft().length, 2, "a new spell fires again");
  // Halted: the next day's session is a new spell, however old the last trade.
  run.engine.checkSilence(morning + 86_400_000 + 10 * 60_000);
  assert.equal(msft().length, 3);
});

Deno.test("restart safety: firings held until the alerts topic is read, pruned with their rule", () => {
  const run = setup([rule("AAPL>190"), rule("AAPL>195")], { history: true });
  run.engine.goLive();
  run.trade("AAPL", 189, T0);
  run.trade("AAPL", 196, T0 + 1_000);
  assert.equal(run.fired.length, 0, "held");
  // The topic, read late, had the first one: only the other fires.
  run.engine.noteFired({ rule: rule("AAPL>190"), tradeTime: T0 + 1_000 } as FiredAlert);
  run.engine.release();
  assert.deepEqual(run.fired.map((a) => a.rule.id), ["cfg:AAPL>195"]);
  // A deleted rule forgets its firings: made again (its id reused), it fires again.
  run.engine.setRule(pageRule("MSFT>190", null));
  run.engine.noteFired({ rule: pageRule("MSFT>190", null), tradeTime: T0 + 5_000 } as FiredAlert);
  run.engine.removeRule("r-1");
  run.engine.setRule(pageRule("MSFT>190", null));
  run.trade("MSFT", 189, T0 + 1_000);
  run.trade("MSFT", 191, T0 + 2_000);
  assert.deepEqual(run.fired.map((a) => a.price), [196, 191]);
  assert.equal(alertKey(run.fired[0]), `cfg:AAPL>195@${T0 + 1_000}`);
});

Deno.test("/api/alerts refuses another origin, a bad body, an oversize body before any write", async () => {
  const aggregator = new Aggregator({ intervalsMs: [1_000], maxCandles: 60, maxSymbols: 10 });
  const engine = new AlertEngine({ prices: aggregator, fire: () => {} });
  aggregator.apply({ symbol: "AAPL", price: 189, volume: 1, time: Date.now(), source: "sim" });
  const refuse = () => Promise.reject(new Error("no write expected"));
  const alerting = {
    engine,
    topics: { putRule: refuse, deleteRule: refuse },
    stop: () => Promise.resolve(),
  } as unknown as Alerting;
  const post = (body: string, headers: Record<string, string> = {}) =>
    alertsRoute(
      new Request("http://127.0.0.1:8080/api/alerts", {
        method: "POST",
        body,
        headers: {
          host: "127.0.0.1:8080",
          "content-type": "application/json",
          origin: "http://127.0.0.1:8080",
          ...headers,
        },
      }),
      alerting,
    );
  const good = JSON.stringify({ symbol: "AAPL", kind: "above", level: 190 });
  const cases: [Promise<Response>, number, RegExp][] = [
    [post(good, { origin: "http://evil.example" }), 403, /another origin/],
    [post(good, { "sec-fetch-site": "cross-site" }), 403, /cross-site request/],
    [post(good, { "content-type": "text/plain" }), 400, /Content-Type: application\/json/],
    [post("{"), 400, /not JSON/],
    [post(JSON.stringify({ symbol: "AAPL", kind: "above" })), 400, /level: a number/],
    [
      post(JSON.stringify({ id: "x", symbol: "AAPL", kind: "above", level: 1 })),
      400,
      /id: set by the server/,
    ],
    [post(JSON.stringify({ symbol: "AAPL", kind: "silent", spanMs: 5 })), 400, /spanMs: a span/],
    [post("x".repeat(MAX_BODY_BYTES + 1)), 413, /over 4096 bytes/],
    [
      post(JSON.stringify({ symbol: "aapl", kind: "above", level: 1 })),
      400,
      /^\{"error":"symbol: no trade of aapl, but of AAPL: symbols are case-sensitive"\}$/,
    ],
    [
      post(JSON.stringify({ symbol: "AAPL", kind: "move", percent: 2, windowMs: "soon" })),
      400,
      /windowMs: \\"soon\\" is not a span/,
    ],
    [
      post(JSON.stringify({ symbol: "AAPL", kind: "move", percent: 2, windowMs: "5m" })),
      503, // read as 300000 ms and checked: only the Kafka write failed
      /could not write the rule to Kafka/,
    ],
  ];
  for (const [answer, status, message] of cases) {
    const response = await answer;
    const body = await response.text();
    assert.equal(response.status, status, body);
    assert.match(body, message);
  }
  assert.deepEqual(engine.rules(), [], "nothing was set");
  const answer = await post(good);
  assert.equal(answer.status, 503, "a Kafka write that fails is not a rule");
  await answer.body?.cancel();
  assert.deepEqual(engine.rules(), []);
});

/** A dashboard serving `engine`'s alerts (its topics are not used by these tests). */
function alertDashboard(
  engine: AlertEngine,
  options: { aggregator: Aggregator; token?: string; signal: AbortSignal },
) {
  return serveDashboard({
    hostname: "127.0.0.1",
    port: 0,
    signal: options.signal,
    aggregator: options.aggregator,
    status: () => ({
      connected: true,
      lag: 0,
      latencyP50Ms: null,
      latencyP99Ms: null,
      tradesPerSecond: 0,
      applied: 0,
      rejected: 0,
      tooLate: 0,
      tooEarly: 0,
      lastTradeAt: null,
    }),
    token: options.token,
    alerts: { engine, topics: {}, stop: () => Promise.resolve() } as unknown as Alerting,
  });
}

/** An engine with AAPL>190, read up and live, over an empty aggregation. */
function liveEngine() {
  const aggregator = new Aggregator({ intervalsMs: [1_000], maxCandles: 60, maxSymbols: 10 });
  const engine = new AlertEngine({ prices: aggregator, fire: () => {} });
  engine.setRule(parseAlertSpecs("AAPL>190")[0]);
  engine.release();
  engine.goLive();
  return { aggregator, engine };
}

Deno.test("a fired alert rides on the next push, once, with no push of its own", async () => {
  const { aggregator, engine } = liveEngine();
  const halt = new AbortController();
  const dashboard = alertDashboard(engine, { aggregator, signal: halt.signal });
  const trade = (price: number) => {
    aggregator.apply({ symbol: "AAPL", price, volume: 1, time: Date.now(), source: "sim" });
    engine.evaluate(["AAPL"]);
    dashboard.notify(["AAPL"]);
  };
  try {
    trade(189);
    const reader = new EventReader(await fetch(new URL("/events?symbol=AAPL", dashboard.url)));
    const alertsOf = (event: { data: unknown }) =>
      (event.data as { alerts?: FiredAlert[] }).alerts?.map((a) => a.words);
    assert.equal(alertsOf(await reader.next()), undefined, "the snapshot carries none");
    trade(191);
    const carried: string[][] = [];
    const until = Date.now() + 1_200; // past a heartbeat (1 s)
    while (Date.now() < until) {
      const words = alertsOf(await reader.next());
      if (words) carried.push(words);
    }
    assert.deepEqual(carried, [["AAPL crossed above 190 at 191"]]);
    await reader.cancel();
    // The trade's delta and the heartbeat or two: the alert added none.
    assert.ok(dashboard.metrics().pushes <= 3, `${dashboard.metrics().pushes} pushes`);
  } finally {
    halt.abort();
    await dashboard.finished;
  }
});

Deno.test("/api/alerts on a shared dashboard: the token gate first, then the origin", async () => {
  const aggregator = new Aggregator({ intervalsMs: [1_000], maxCandles: 60, maxSymbols: 10 });
  const engine = new AlertEngine({ prices: aggregator, fire: () => {} });
  engine.setRule(parseAlertSpecs("AAPL>190")[0]);
  const token = "alerts-test-token-9c2e41b7";
  const halt = new AbortController();
  const dashboard = alertDashboard(engine, { aggregator, token, signal: halt.signal });
  const url = new URL("/api/alerts", dashboard.url);
  const call = async (init: RequestInit) => {
    const response = await fetch(url, init);
    return { status: response.status, body: await response.text() };
  };
  const bearer = { authorization: `Bearer ${token}` };
  try {
    const json = { "content-type": "application/json" };
    assert.equal((await call({ method: "POST", headers: json, body: "{}" })).status, 401);
    assert.equal((await call({ method: "DELETE" })).status, 401);
    const listed = await call({ headers: bearer });
    assert.equal(listed.status, 200);
    assert.deepEqual(JSON.parse(listed.body).rules.map((r: AlertRule) => r.id), ["cfg:AAPL>190"]);
    const foreign = await call({
      method: "POST",
      headers: { ...bearer, ...json, origin: "https://evil.example" },
      body: "{}",
    });
    assert.equal(foreign.status, 403);
    const bad = await call({ method: "POST", headers: { ...bearer, ...json }, body: "{}" });
    assert.deepEqual([bad.status, JSON.parse(bad.body).error], [
      400,
      "kind: one of above, below, move, silent",
    ]);
    const fixed = await call({ method: "DELETE", headers: bearer });
    assert.match(fixed.body, /id: missing/);
    const cfg = await fetch(new URL("/api/alerts?id=cfg:AAPL%3E190", dashboard.url), {
      method: "DELETE",
      headers: bearer,
    });
    assert.equal(cfg.status, 400);
    assert.match(await cfg.text(), /comes from ALERTS/);
    const put = await call({ method: "PUT", headers: bearer });
    assert.equal(put.status, 405);
  } finally {
    halt.abort();
    await dashboard.finished;
  }
});

Deno.test("a client resynced after missing frames still gets each alert once", async () => {
  const { aggregator, engine } = liveEngine();
  const hub = new Hub({
    aggregator,
    status: () => ({}) as ConsumerStatus,
    feed: () => ({}) as FeedSummary,
    pushIntervalMs: 1,
    heartbeatMs: 60_000,
    clientBufferBytes: 1, // past the snapshot, every frame is dropped until it is read
    maxStreams: 2,
    alerts: (seq) => engine.since(seq),
  });
  const flushed = () => new Promise((resolve) => setTimeout(resolve, 20));
  const trade = async (price: number, time: number) => {
    aggregator.apply({ symbol: "AAPL", price, volume: 1, time, source: "sim" });
    engine.evaluate(["AAPL"]);
    hub.notify(["AAPL"]);
    await flushed();
  };
  await trade(189, T0);
  const stream = hub.open(
    { symbol: "AAPL", explicit: true, intervalMs: 1_000, windowMs: 60_000 },
    null,
  );
  assert.ok(stream !== "full");
  const reader = stream.getReader();
  try {
    await trade(191, T0 + 1_000); // fires; its push is dropped (the snapshot is unread)
    await trade(189.5, T0 + 2_000);
    await trade(191.2, T0 + 3_000); // fires while the client is behind
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /^retry: 1000\nid: .*\nevent: snapshot\n/);
    await trade(191.5, T0 + 4_000); // the client has read: a snapshot again
    const second = new TextDecoder().decode((await reader.read()).value);
    assert.match(second, /event: snapshot/);
    const words = [...second.matchAll(/"words":"([^"]*)"/g)].map((m) => m[1]);
    assert.deepEqual(words, ["AAPL crossed above 190 at 191", "AAPL crossed above 190 at 191.2"]);
    assert.equal(hub.metrics().resyncs, 1);
  } finally {
    await reader.cancel();
    hub.close();
  }
});

Deno.test("a rules-topic record whose key is not its rule's id is refused and counted", () => {
  const run = setup([]);
  const apply = recordApplier(run.engine, "t.alerts");
  const errors: string[] = [];
  const error = console.error;
  console.error = (line: string) => errors.push(line);
  const record = (key: string, value: object | null, offset: number) =>
    apply("t.alert-rules", {
      key: Buffer.from(key),
      value: value === null ? null : Buffer.from(JSON.stringify(value)),
      offset: String(offset),
    } as unknown as KafkaMessage);
  try {
    record("r-1", pageRule("AAPL>190", null), 0);
    record("r-2", { ...pageRule("AAPL>1", null), id: "r-3" }, 1);
    record("r-4", { ...pageRule("AAPL>2", null), id: "r-1" }, 2); // would replace r-1
  } finally {
    console.error = error;
  }
  assert.deepEqual(run.engine.rules().map((r) => [r.id, r.kind === "above" && r.level]), [
    ["r-1", 190],
  ]);
  assert.deepEqual(errors, [
    'warning: t.alert-rules: record 1 has key "r-2" but rule "r-3": refused (1 so far)',
    'warning: t.alert-rules: record 2 has key "r-4" but rule "r-1": refused (2 so far)',
  ]);
});

Deno.test("an alerts topic slow to read: one line, and the firing it holds does not fire twice", async () => {
  await withTopic(1, async (topic, kafka, admin) => {
    const config = loadConfig({ KAFKA_BROKERS: BROKERS, KAFKA_TOPIC: topic, ALERTS: "AAPL>190" });
    const above = config.alerts[0];
    // Made as the consumer would (one partition), before the consumer's start.
    await admin.createTopics({ topics: [{ topic: alertsTopicOf(topic), numPartitions: 1 }] });
    const producer = kafka.producer();
    await producer.connect();
    const old = { rule: above, tradeTime: T0 + 1_000 } as FiredAlert;
    await producer.send({
      topic: alertsTopicOf(topic),
      messages: [{ key: alertKey(old), value: JSON.stringify(old) }],
    });
    await producer.disconnect();
    const run = setup([above], { history: true });
    const halt = new AbortController();
    const errors: string[] = [];
    const error = console.error;
    console.error = (line: string) => errors.push(line);
    try {
      // Given 1 ms, the topic is not read in time: the trades go on, the firings wait.
      const topics = startAlertTopics({
        config,
        engine: run.engine,
        signal: halt.signal,
        readRules: false,
        loadMs: 1,
      });
      await topics.loaded;
      run.engine.goLive(); // caught up with the trades, say: the crossing would fire
      run.trade("AAPL", 189, T0);
      run.trade("AAPL", 191, T0 + 1_000); // the crossing already on the topic
      await waitUntil(
        "the alerts topic read",
        () => Promise.resolve(run.engine.counts.silenced + run.fired.length > 0),
      );
      assert.deepEqual(run.fired, [], "the held firing was on the topic: dropped");
      assert.match(
        errors[0],
        /^warning: alerts: test-.*\.alerts not read within 0\.001 s: alerts are held until they are/,
      );
      assert.equal(errors.length, 1);
      await sleep(600); // the reader's first fetches settle: a stop then leaves nothing behind
      halt.abort();
      await topics.stopped;
    } finally {
      console.error = error;
      halt.abort();
      await admin.deleteTopics({ topics: [alertsTopicOf(topic)] }).catch(() => {});
    }
  });
});
