/**
 * schema/trade.v1.json is what other tools (kcat, a Python consumer, ksqlDB) are
 * told about the topic: it must describe exactly what encodeTrade writes and what
 * decodeTrade accepts.
 */

import assert from "node:assert/strict";
import type { Source } from "../lib/trade.ts";
import {
  decodeTrade,
  encodeTrade,
  isRejection,
  LIVE_WINDOW,
  type Trade,
  validateFinnhubTrade,
} from "../lib/trade.ts";

interface Schema {
  type?: string;
  required?: string[];
  additionalProperties?: boolean;
  properties?: Record<string, Schema>;
  items?: Schema;
  const?: unknown;
  enum?: unknown[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  exclusiveMinimum?: number;
  maxItems?: number;
}

const schema: Schema = JSON.parse(
  await Deno.readTextFile(new URL("../schema/trade.v1.json", import.meta.url)),
);

/** The subset of JSON Schema the file uses; an unknown keyword fails the test. */
const KEYWORDS = new Set([
  "$schema",
  "$id",
  "title",
  "description",
  "type",
  "required",
  "additionalProperties",
  "properties",
  "items",
  "const",
  "enum",
  "minLength",
  "maxLength",
  "minimum",
  "exclusiveMinimum",
  "maxItems",
]);

function validate(value: unknown, s: Schema, path = "$"): string[] {
  for (const key of Object.keys(s)) assert.ok(KEYWORDS.has(key), `unsupported keyword ${key}`);
  const errors: string[] = [];
  const fail = (message: string) => errors.push(`${path}: ${message}`);
  if ("const" in s && value !== s.const) fail(`is not ${JSON.stringify(s.const)}`);
  if (s.enum && !s.enum.includes(value)) fail(`is not one of ${s.enum.join(", ")}`);
  switch (s.type) {
    case "object":
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return [...errors, `${path}: is not an object`];
      }
      break;
    case "array":
      if (!Array.isArray(value)) return [...errors, `${path}: is not an array`];
      break;
    case "string":
      if (typeof value !== "string") return [...errors, `${path}: is not a string`];
      break;
    case "number":
      if (typeof value !== "number" || !Number.isFinite(value)) {
        return [...errors, `${path}: is not a number`];
      }
      break;
    case "integer":
      if (!Number.isInteger(value)) return [...errors, `${path}: is not an integer`];
      break;
  }
  if (typeof value === "string") {
    if (s.minLength !== undefined && value.length < s.minLength) fail("is too short");
    if (s.maxLength !== undefined && value.length > s.maxLength) fail("is too long");
  }
  if (typeof value === "number") {
    if (s.minimum !== undefined && value < s.minimum) fail(`is below ${s.minimum}`);
    if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum) {
      fail(`is not above ${s.exclusiveMinimum}`);
    }
  }
  if (Array.isArray(value)) {
    if (s.maxItems !== undefined && value.length > s.maxItems) fail("has too many items");
    if (s.items) {
      value.forEach((item, i) => errors.push(...validate(item, s.items!, `${path}[${i}]`)));
    }
  }
  if (s.type === "object") {
    const object = value as Record<string, unknown>;
    for (const key of s.required ?? []) if (!(key in object)) fail(`lacks ${key}`);
    for (const [key, item] of Object.entries(object)) {
      const sub = s.properties?.[key];
      if (sub) errors.push(...validate(item, sub, `${path}.${key}`));
      else if (s.additionalProperties === false) fail(`has unknown field ${key}`);
    }
  }
  return errors;
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
    assert.deepEqual(validate(value, schema), [], encodeTrade(trade, source));
  }
});

Deno.test("the schema's required and optional fields are exactly those encodeTrade writes", () => {
  const always = Object.keys(JSON.parse(encodeTrade(SAMPLES[1][0], "sim")));
  const all = Object.keys(JSON.parse(encodeTrade(SAMPLES[0][0], "sim")));
  assert.deepEqual([...schema.required!].sort(), always.sort());
  assert.deepEqual(Object.keys(schema.properties!).sort(), all.sort());
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
    assert.notDeepEqual(validate(record, schema), [], `schema accepts ${text}`);
    assert.ok(isRejection(decodeTrade(text)), `decodeTrade accepts ${text}`);
  }
  assert.deepEqual(validate(good, schema), []);
  assert.ok(!isRejection(decodeTrade(JSON.stringify(good))));
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
