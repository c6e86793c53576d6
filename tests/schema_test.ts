/**
 * schema/trade.v1.json is what other tools (kcat, a Python consumer, ksqlDB) are
 * told about the topic: it must describe exactly what encodeTrade writes and what
 * decodeTrade accepts. Checked with ajv, a full JSON Schema validator.
 */

import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { Source } from "../lib/trade.ts";
import {
  decodeTrade,
  encodeTrade,
  LIVE_WINDOW,
  type Trade,
  validateFinnhubTrade,
} from "../lib/trade.ts";

interface Schema {
  required: string[];
  properties: Record<string, unknown>;
}

const schema: Schema = JSON.parse(
  await Deno.readTextFile(new URL("../schema/trade.v1.json", import.meta.url)),
);

/** The real JSON Schema 2020-12 validator, strict: an unknown keyword in the file fails. */
const check = new Ajv2020({ strict: true, allErrors: true }).compile(schema);

/** What the schema finds wrong with `value`: none when it is valid. */
function validate(value: unknown): string[] {
  if (check(value)) return [];
  return (check.errors ?? []).map((error) => `${error.instancePath || "$"} ${error.message}`);
}

const SAMPLES: [Trade, Source][] = [
  [
    { symbol: "AAPL", price: 189.52, volume: 100, time: 1700000000123, conditions: ["1", "12"] },
    "finnhub",
  ],
  [{ symbol: "OANDA:EUR_USD", price: 1.08512, volume: 0, time: 1700000000124 }, "finnhub"],
  [
    { symbol: "IC MARKETS:1", price: 0.5, volume: 1.25, time: 1700000000125, conditions: [] },
    "replay",
  ],
  [{ symbol: 'we"ird\\sym', price: 65000.01, volume: 0.000123, time: 1700000000126 }, "sim"],
];

Deno.test("encodeTrade's output is valid against schema/trade.v1.json", () => {
  for (const [trade, source] of SAMPLES) {
    const value = JSON.parse(encodeTrade(trade, source));
    assert.deepEqual(validate(value), [], encodeTrade(trade, source));
  }
});

Deno.test("the schema's required and optional fields are exactly those encodeTrade writes", () => {
  const always = Object.keys(JSON.parse(encodeTrade(SAMPLES[1][0], "sim")));
  const all = Object.keys(JSON.parse(encodeTrade(SAMPLES[0][0], "sim")));
  assert.deepEqual([...schema.required].sort(), always.sort());
  assert.deepEqual(Object.keys(schema.properties).sort(), all.sort());
});

Deno.test("schema and decodeTrade refuse the same broken records", () => {
  const good = JSON.parse(encodeTrade(SAMPLES[0][0], "finnhub"));
  const broken: Record<string, unknown>[] = [
    { ...good, v: 2 },
    { ...good, symbol: "" },
    { ...good, symbol: 42 },
    { ...good, price: 0 },
    { ...good, price: "189.52" },
    { ...good, volume: -1 },
    { ...good, time: 1.5 },
    { ...good, time: "1700000000123" },
    { ...good, conditions: [1] },
    { ...good, conditions: "1" },
    { ...good, source: "live" },
    (({ price: _, ...rest }) => rest)(good),
    (({ source: _, ...rest }) => rest)(good),
  ];
  for (const record of broken) {
    const text = JSON.stringify(record);
    assert.notDeepEqual(validate(record), [], `schema accepts ${text}`);
    assert.ok(typeof decodeTrade(text) === "string", `decodeTrade accepts ${text}`);
  }
  assert.deepEqual(validate(good), []);
  assert.ok(typeof decodeTrade(JSON.stringify(good)) !== "string");
});

Deno.test("a live trade dated more than a minute ahead of the clock is refused", () => {
  // A trade 40 minutes ahead would hold the symbol's last price (and the consumer's
  // newest candle) until the clock caught up with it.
  const now = 1_700_000_000_000;
  const window = { ...LIVE_WINDOW, now };
  const at = (t: number) => validateFinnhubTrade({ s: "AAPL", p: 150, t, v: 1 }, window);
  assert.equal(at(now + 40 * 60_000), "bad-time");
  assert.equal(at(now + 60_001), "bad-time");
  assert.deepEqual(at(now + 60_000), { symbol: "AAPL", price: 150, volume: 1, time: now + 60_000 });
  assert.deepEqual(at(now - 3_600_000), {
    symbol: "AAPL",
    price: 150,
    volume: 1,
    time: now - 3_600_000,
  });
});
