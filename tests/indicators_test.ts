/**
 * lib/indicators.js against independent references on the same candles, to 1e-9:
 * the `ta` package (pandas) and TA-Lib, run by tests/helpers/indicators_reference.py
 * from the virtualenv .ci/run makes (.venv, tests/helpers/requirements.txt).
 * Plus the session marks and the time zone clock the page's axes use.
 */

import assert from "node:assert/strict";
import { formatClock } from "../lib/format.js";
import { bollinger, compute, ema, readChoice, rsi, sma } from "../lib/indicators.js";
import { exchangeZone, usSessionMarks, zoneOffsetMinutes } from "../lib/calendar.js";
import { random } from "./helpers/candles_reference.ts";

const PYTHON = Deno.env.get("TA_PYTHON") ??
  new URL("../.venv/bin/python", import.meta.url).pathname;
const SCRIPT = new URL("./helpers/indicators_reference.py", import.meta.url).pathname;

/** 3,600 one-second closes of a seeded random walk around 190 (a US stock). */
function closes(count: number, seed: number): number[] {
  const next = random(seed);
  const out: number[] = [];
  let price = 190;
  for (let i = 0; i < count; i++) {
    price = Math.max(1, price + (next() - 0.5) * 0.4);
    out.push(Math.round(price * 100) / 100);
  }
  return out;
}

async function reference(close: number[]): Promise<Record<string, (number | null)[]>> {
  let child;
  try {
    child = new Deno.Command(PYTHON, { args: [SCRIPT], stdin: "piped", stdout: "piped" })
      .spawn();
  } catch {
    throw new Error(
      `no ${PYTHON}: python3 -m venv .venv && .venv/bin/pip install -r tests/helpers/requirements.txt`,
    );
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify({ close })));
  await writer.close();
  const { code, stdout } = await child.output();
  assert.equal(code, 0, "the reference script failed (see stderr above)");
  return JSON.parse(new TextDecoder().decode(stdout));
}

function assertClose(actual: (number | null)[], expected: (number | null)[], name: string) {
  assert.equal(actual.length, expected.length, `${name}: length`);
  let compared = 0;
  for (let i = 0; i < actual.length; i++) {
    const [a, e] = [actual[i], expected[i]];
    if (e === null || a === null) {
      assert.equal(a, e, `${name}[${i}]: ${a} where the reference has ${e}`);
      continue;
    }
    assert.ok(Math.abs(a - e) <= 1e-9, `${name}[${i}]: ${a} vs ${e}`);
    compared++;
  }
  assert.ok(compared > actual.length - 250, `${name}: only ${compared} values compared`);
}

Deno.test("indicators equal ta and TA-Lib to 1e-9 on 3,600 candles", async () => {
  const close = closes(3600, 12);
  const ref = await reference(close);
  const bands = bollinger(close);
  assertClose(sma(close, 20), ref.ta_sma20, "SMA(20) vs ta");
  assertClose(sma(close, 20), ref.talib_sma20, "SMA(20) vs TA-Lib");
  assertClose(sma(close, 200), ref.talib_sma200, "SMA(200) vs TA-Lib");
  assertClose(bands.middle, ref.ta_bb_middle, "Bollinger middle vs ta");
  assertClose(bands.upper, ref.ta_bb_upper, "Bollinger upper vs ta");
  assertClose(bands.lower, ref.ta_bb_lower, "Bollinger lower vs ta");
  assertClose(bands.upper, ref.talib_bb_upper, "Bollinger upper vs TA-Lib");
  assertClose(bands.lower, ref.talib_bb_lower, "Bollinger lower vs TA-Lib");
  assertClose(ema(close, 20), ref.talib_ema20, "EMA(20) vs TA-Lib");
  assertClose(ema(close, 9), ref.talib_ema9, "EMA(9) vs TA-Lib");
  assertClose(rsi(close, 14), ref.talib_rsi14, "RSI(14) vs TA-Lib");
});

Deno.test("indicators: short series, flat markets and bad periods", () => {
  assert.deepEqual(sma([1, 2], 3), [null, null]);
  assert.deepEqual(ema([1, 2, 3, 4], 3), [null, null, 2, 3]);
  assert.deepEqual(rsi([5, 5, 5, 5], 3), [null, null, null, 50]);
  assert.deepEqual(rsi([1, 2, 3, 4], 3), [null, null, null, 100]);
  assert.deepEqual(rsi([4, 3, 2, 1], 3), [null, null, null, 0]);
  assert.deepEqual(bollinger([2, 2, 2], { period: 3 }).upper, [null, null, 2]);
  assert.throws(() => sma([1], 0), /SMA: period 0 is not a whole number/);
  assert.throws(() => ema([1], 2.5), /EMA: period 2.5/);
});

Deno.test("indicator choices: stored values are checked, junk falls back", () => {
  assert.deepEqual(readChoice({ sma: 20, ema: 50, bollinger: true, rsi: true }), {
    sma: 20,
    ema: 50,
    bollinger: true,
    rsi: true,
  });
  assert.deepEqual(readChoice({ sma: "20", ema: 1, bollinger: "yes" }), {
    sma: null,
    ema: null,
    bollinger: false,
    rsi: false,
  });
  assert.deepEqual(readChoice(null), readChoice({}));
  const all = compute([1, 2, 3], { sma: 2, ema: null, bollinger: false, rsi: false });
  assert.deepEqual(all, { sma: [null, 1.5, 2.5], ema: null, bollinger: null, rsi: null });
});

Deno.test("exchange clocks: zones, offsets across DST, and US session marks", () => {
  const winter = Date.UTC(2026, 0, 5, 14, 30, 7);
  const summer = Date.UTC(2026, 6, 6, 13, 30, 7);
  assert.equal(zoneOffsetMinutes(winter, "America/New_York"), -300);
  assert.equal(zoneOffsetMinutes(summer, "America/New_York"), -240);
  assert.equal(zoneOffsetMinutes(winter, "UTC"), 0);
  assert.equal(formatClock(winter, "America/New_York"), "09:30:07");
  assert.equal(formatClock(summer, "America/New_York", false), "09:30");
  assert.equal(formatClock(winter, "UTC"), "14:30:07");
  assert.equal(exchangeZone("us-stock"), "America/New_York");
  assert.equal(exchangeZone("forex"), "America/New_York");
  assert.equal(exchangeZone("crypto"), "UTC");
  assert.equal(exchangeZone(null), "UTC");
  // Monday 5 Jan 2026 (EST) and Monday 9 Mar 2026, the first weekday of EDT.
  assert.deepEqual(usSessionMarks(winter - 3_600_000, winter + 8 * 3_600_000), [
    { at: Date.UTC(2026, 0, 5, 14, 30), kind: "open" },
    { at: Date.UTC(2026, 0, 5, 21, 0), kind: "close" },
  ]);
  const dst = Date.UTC(2026, 2, 9, 0, 0);
  assert.deepEqual(usSessionMarks(dst, dst + 86_400_000).map((m) => m.at), [
    Date.UTC(2026, 2, 9, 13, 30),
    Date.UTC(2026, 2, 9, 20, 0),
  ]);
  // A weekend holds none; a span inside the session holds none.
  assert.deepEqual(usSessionMarks(Date.UTC(2026, 0, 3), Date.UTC(2026, 0, 4, 23)), []);
  assert.deepEqual(usSessionMarks(winter, winter + 3_600_000), []);
});
