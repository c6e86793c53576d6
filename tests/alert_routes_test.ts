/**
 * Alerts around the engine: /api/alerts refusing what it must before any write (the
 * page's origin, the token gate, symbol case), fired alerts riding on the pushes and
 * on a resync snapshot, the rules topic refusing a record under another rule's key,
 * and a slow alerts topic (a real broker) holding its firings.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { KafkaMessage } from "kafkajs";
import { sleep } from "../lib/async.ts";
import { loadConfig } from "../config.ts";
import {
  alertKey,
  type AlertRule,
  alertsTopicOf,
  type FiredAlert,
  parseAlertSpecs,
} from "../lib/alert_rules.ts";
import { AlertEngine } from "../consumer/alerts.ts";
import {
  type Alerting,
  recordApplier,
  startAlerting,
  startAlertTopics,
} from "../consumer/alert_topics.ts";
import { startConsumer } from "../consumer/topic_reader.ts";
import { encodeTrade } from "../lib/trade.ts";
import { Aggregator, type ConsumerStatus } from "../consumer/candles.ts";
import type { FeedSummary } from "../consumer/feed.ts";
import { Hub } from "../dashboard/hub.ts";
import { alertsRoute, MAX_BODY_BYTES } from "../dashboard/alert_routes.ts";
import { pageRule, setup, T0 } from "./helpers/alerts.ts";
import { withDashboard } from "./helpers/dashboard.ts";
import { BROKERS, uniqueName, withTopic } from "./helpers/kafka.ts";
import { waitUntil } from "./helpers/processes.ts";
import { EventReader } from "./helpers/sse.ts";

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
  const early = await post(good);
  assert.deepEqual(
    [early.status, await early.text()],
    [503, "history is still being read; try again in a moment\n"],
    "no rule is made before the history is read",
  );
  engine.goLive();
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

/** A dashboard's options serving `engine`'s alerts (its topics are not used by these tests). */
const served = (engine: AlertEngine) => ({
  alerts: { engine, topics: {}, stop: () => Promise.resolve() } as unknown as Alerting,
});

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
  await withDashboard(aggregator, served(engine), async (dashboard) => {
    const trade = (price: number) => {
      aggregator.apply({ symbol: "AAPL", price, volume: 1, time: Date.now(), source: "sim" });
      engine.evaluate(["AAPL"]);
      dashboard.notify(["AAPL"]);
    };
    trade(189);
    const reader = new EventReader(await fetch(new URL("/events?symbol=AAPL", dashboard.url)));
    type Pushed = {
      alerts?: FiredAlert[];
      stats: { symbol: string; last: number }[];
      feed?: unknown;
    };
    const snapshot = (await reader.next()).data as Pushed;
    assert.equal(snapshot.alerts, undefined, "the snapshot carries none");
    trade(191);
    const carrying: Pushed[] = [];
    const until = Date.now() + 1_200; // past a heartbeat (1 s)
    while (Date.now() < until) {
      const data = (await reader.next()).data as Pushed;
      if (data.alerts) carrying.push(data);
    }
    await reader.cancel();
    assert.deepEqual(carrying.map((data) => data.alerts!.map((a) => a.words)), [[
      "AAPL crossed above 190 at 191",
    ]]);
    // On the push of the trade that crossed (its stats say 191), not a heartbeat (feed).
    assert.deepEqual(carrying[0].stats.map((line) => [line.symbol, line.last]), [["AAPL", 191]]);
    assert.equal(carrying[0].feed, undefined, "a delta, not a heartbeat");
  });
});

Deno.test("/api/alerts on a shared dashboard: the token gate first, then the origin", async () => {
  const aggregator = new Aggregator({ intervalsMs: [1_000], maxCandles: 60, maxSymbols: 10 });
  const engine = new AlertEngine({ prices: aggregator, fire: () => {} });
  engine.setRule(parseAlertSpecs("AAPL>190")[0]);
  engine.goLive();
  const token = "alerts-test-token-9c2e41b7";
  await withDashboard(aggregator, { ...served(engine), token }, async (dashboard) => {
    const url = new URL("/api/alerts", dashboard.url);
    const call = async (init: RequestInit) => {
      const response = await fetch(url, init);
      return { status: response.status, body: await response.text() };
    };
    const bearer = { authorization: `Bearer ${token}` };
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
  });
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

Deno.test("a client given its symbol in a push gets that push's alerts with its snapshot", async () => {
  const aggregator = new Aggregator({ intervalsMs: [1_000], maxCandles: 60, maxSymbols: 10 });
  const fired: FiredAlert[] = [];
  const hub = new Hub({
    aggregator,
    status: () => ({}) as ConsumerStatus,
    feed: () => ({}) as FeedSummary,
    pushIntervalMs: 1,
    heartbeatMs: 60_000,
    clientBufferBytes: 1 << 20,
    maxStreams: 2,
    alerts: (seq) => ({ seq: fired.length, alerts: fired.slice(seq) }),
  });
  // No symbol yet: the client names none, and the hub picks the first to come.
  const stream = hub.open(
    { symbol: null, explicit: false, intervalMs: 1_000, windowMs: 60_000 },
    null,
  );
  assert.ok(stream !== "full");
  const reader = stream.getReader();
  try {
    await reader.read(); // the empty snapshot
    aggregator.apply({ symbol: "AAPL", price: 191, volume: 1, time: T0, source: "sim" });
    fired.push({ rule: parseAlertSpecs("MSFT>1")[0], tradeTime: T0, words: "w1" } as FiredAlert);
    hub.notify(["AAPL"]);
    const frame = new TextDecoder().decode((await reader.read()).value);
    assert.match(frame, /event: snapshot/);
    assert.match(frame, /"alerts":\[\{[^\]]*"words":"w1"/);
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
      // kafkajs's own retries may speak too (a fresh broker's coordinator still loading).
      const ours = errors.filter((line) => !line.startsWith("kafka: "));
      assert.match(
        ours[0],
        /^warning: alerts: test-.*\.alerts not read within 0\.001 s: alerts are held until they are/,
      );
      assert.equal(ours.length, 1, ours.join("\n"));
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

Deno.test("the first crossing after the history is read fires: history-read is decided per batch", async () => {
  await withTopic(1, async (topic, kafka, admin) => {
    const config = loadConfig({
      KAFKA_BROKERS: BROKERS,
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: uniqueName("group"),
      ALERTS: "AAPL>190",
    });
    const producer = kafka.producer();
    await producer.connect();
    const send = (price: number, time: number) =>
      producer.send({
        topic,
        acks: -1,
        messages: [{
          key: "AAPL",
          value: encodeTrade({ symbol: "AAPL", price, volume: 1, time }, "sim"),
        }],
      });
    const now = Date.now();
    for (const [price, ago] of [[189, 3_000], [191, 2_000], [189, 1_000]]) {
      await send(price, now - ago);
    }
    const aggregator = new Aggregator({ intervalsMs: [1_000], maxCandles: 60, maxSymbols: 10 });
    const halt = new AbortController();
    const fired: FiredAlert[] = [];
    const alerting = startAlerting({
      config,
      prices: aggregator,
      signal: halt.signal,
      readRules: false,
      print: (alert) => fired.push(alert),
    })!;
    try {
      await alerting.topics.loaded;
      // No lag poll after the first: only the batches can tell that the history is read.
      const reader = await startConsumer({
        config,
        aggregator,
        fromMs: 0,
        signal: halt.signal,
        lagPollMs: 60_000,
        onBatch: alerting.batch,
      });
      alerting.follow(() => reader.caughtUp());
      await waitUntil("the history applied", () => reader.counts().applied >= 3);
      await send(191, Date.now()); // at once: before any lag poll or clock tick
      await waitUntil("the live crossing fired", () => fired.length > 0, 5_000);
      assert.deepEqual(fired.map((alert) => alert.price), [191]);
      assert.equal(fired[0].tradeTime > now, true, "the live crossing, not history's");
      halt.abort();
      await reader.stopped;
    } finally {
      halt.abort();
      await producer.disconnect();
      await alerting.stop();
      await admin.deleteTopics({ topics: [alertsTopicOf(topic)] }).catch(() => {});
    }
  });
});
