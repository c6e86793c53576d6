/**
 * Alert rules and their evaluation, without Kafka: the ALERTS grammar and the JSON
 * checks (lib/alert_rules.ts); crossings that fire once and re-arm, a restart that
 * meets history again, a replay that fires as live, the % window (long ones from the
 * 1 m candles), "no trade" once per silent spell from the open, firings held until
 * the alerts topic is read (consumer/alerts.ts). The routes, pushes and topics:
 * tests/alert_routes_test.ts.
 */

import assert from "node:assert/strict";
import { loadConfig } from "../config.ts";
import { alertKey, type FiredAlert, parseAlertSpecs, ruleFromJson } from "../lib/alert_rules.ts";
import { pageRule, rule, setup, T0 } from "./helpers/alerts.ts";

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

Deno.test("a restart that reads history in one batch or several: still beyond is no crossing, one while down is", () => {
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
  // The same history in two batches: the first ends before the last firing (at 104,
  // armed), the second holds it: the state is taken when the prices reach it.
  const batches = setup([made], { history: true });
  batches.engine.noteFired(fired);
  batches.engine.release();
  for (const prices of [[100, 104], [106, 107]]) {
    for (const price of prices) {
      batches.apply("AAPL", price, T0 + [100, 104, 106, 107].indexOf(price) * 1000);
    }
    batches.engine.evaluate(["AAPL"]);
  }
  batches.engine.goLive();
  assert.deepEqual(batches.fired, [], "no second firing, however the history is cut");
  // Without the firing on record, the rule (armed at 100 when made) crossed while down.
  const down = setup([made], { history: true });
  down.engine.release();
  history(down, [100, 104, 106, 107]);
  assert.deepEqual(down.fired.map((a) => a.price), [107]);
  // The rules topic read late, after the history: the rule takes its state from when
  // it was made (100, armed), not from the current price; the next batch fires.
  const late = setup([], { history: true });
  late.engine.release();
  history(late, [100, 104, 106]);
  late.engine.setRule(made);
  late.engine.goLive();
  late.trade("AAPL", 107, T0 + 3_000);
  assert.deepEqual(late.fired.map((a) => a.price), [107], "the crossing while down");
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
  // Trades resume (arriving 0.2 s after their trade time), then stop.
  run.trade("MSFT", 401, morning + 12 * 60_000 - 200, morning + 12 * 60_000);
  run.engine.checkSilence(morning + 21 * 60_000);
  assert.equal(msft().length, 1, "trades ended the spell");
  run.engine.checkSilence(morning + 22 * 60_000);
  assert.equal(msft().length, 2, "a new spell fires again");
  assert.equal(msft()[1].tradeTime, morning + 12 * 60_000 - 200, "keyed by the trade's time");
  // Halted: the next day's session is a new spell, however old the last trade.
  run.engine.checkSilence(morning + 86_400_000 + 10 * 60_000);
  assert.equal(msft().length, 3);
});

Deno.test("restart safety: firings held until the alerts topic is read, pruned with their rule", () => {
  const run = setup([rule("AAPL>190"), rule("AAPL>195")], { history: true });
  run.engine.setRule(rule("AAPL>192"));
  run.engine.goLive();
  run.trade("AAPL", 189, T0);
  run.trade("AAPL", 196, T0 + 1_000);
  assert.equal(run.fired.length, 0, "held");
  run.engine.removeRule("cfg:AAPL>192"); // deleted while held: never fires
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

Deno.test("no trade: a rule set while its symbol trades waits; every viewer and a restart key a spell alike", () => {
  const at = Date.UTC(2026, 0, 8, 15, 30); // 10:30 New York, a Thursday: open
  const silent = rule("MSFT!10m");
  // MSFT trades every second; a rule set now fires nothing at once.
  const one = setup([]);
  for (let s = 0; s < 5; s++) one.trade("MSFT", 400, at + s * 1000, at + s * 1000 + 300);
  one.engine.setRule(silent);
  one.engine.checkSilence(at + 4_800);
  assert.equal(one.fired.length, 0, "trading: no silence");
  one.engine.checkSilence(at + 4_300 + 10 * 60_000);
  assert.deepEqual(one.fired.map((a) => a.tradeTime), [at + 4_000], "keyed by the last trade");
  // Another viewer gets the same trades later (its own batches): the same key.
  const two = setup([silent]);
  for (let s = 0; s < 5; s++) two.trade("MSFT", 400, at + s * 1000, at + s * 1000 + 900);
  two.engine.checkSilence(at + 4_900 + 10 * 60_000);
  assert.deepEqual(two.fired.map(alertKey), one.fired.map(alertKey));

  // Crypto, never a trade: the first run fires once; a restart is the same spell.
  const eth = rule("BINANCE:ETHUSDT!1m");
  const first = setup([eth], { history: true });
  first.engine.release();
  first.engine.goLive(at);
  first.engine.checkSilence(at + 61_000);
  assert.deepEqual(first.fired.map((a) => a.tradeTime), [at]);
  const again = setup([eth], { history: true });
  again.engine.noteFired(first.fired[0]); // the alerts topic
  again.engine.release();
  again.engine.goLive(at + 5 * 60_000);
  again.engine.checkSilence(at + 7 * 60_000);
  assert.equal(again.fired.length, 0, "no trade since the last firing: the same spell");
  again.trade("BINANCE:ETHUSDT", 3000, at + 8 * 60_000, at + 8 * 60_000);
  again.engine.checkSilence(at + 9 * 60_000 + 1);
  assert.deepEqual(again.fired.map((a) => a.tradeTime), [at + 8 * 60_000], "a new spell");
});
