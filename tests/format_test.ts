/** format.ts: the one rule for counts, ages and clock times that every view shares. */

import assert from "node:assert/strict";
import { formatAge, formatClock, formatCount } from "../lib/format.js";

Deno.test("counts get thousands separators and no fraction", () => {
  assert.equal(formatCount(0), "0");
  assert.equal(formatCount(1_234_567.8), "1,234,568");
  assert.equal(formatCount(-2_500), "-2,500");
});

Deno.test("ages: one unit ladder, always rounded down", () => {
  const cases: [number, string][] = [
    [-50, "0.0s"], // clock skew: never a negative age
    [0, "0.0s"],
    [9_960, "9.9s"], // not "10.0s"
    [10_000, "10s"],
    [90_000, "90s"], // the producer's and the chart's views used to disagree here
    [119_999, "119s"],
    [120_000, "2m"],
    [7_199_999, "119m"],
    [7_200_000, "2h"],
    [47 * 3_600_000, "47h"],
    [3 * 86_400_000 + 5, "3d"],
  ];
  for (const [ms, text] of cases) assert.equal(formatAge(ms), text, `${ms} ms`);
  assert.equal(formatAge(NaN), "0.0s");
});

Deno.test("clock times at a given offset, or the machine's zone", () => {
  const t = Date.UTC(2026, 0, 5, 14, 30, 7);
  assert.equal(formatClock(t, 0), "14:30:07");
  assert.equal(formatClock(t, 60), "15:30:07");
  assert.equal(formatClock(t, -330, false), "09:00");
  assert.equal(formatClock(t), new Date(t).toTimeString().slice(0, 8));
});
