// Feed gaps on the page's lines: which gaps a chart shows, and where its lines break.
// One filter and one breaker for every line (price and VWAP, the indicator overlays,
// the RSI pane, the compare chart), so no chart draws a gap as a quiet market.

import { formatAge } from "./format.js";

/**
 * The feed gaps (consumer/feed.ts, sent as `feed.gaps`) in which trades of any of
 * `symbols` may be missing (a Kafka delay lost none: not shown), with their length
 * for the band's label. A gap that names no symbol is every symbol's.
 * @param {any} feed the FeedSummary of the last snapshot or heartbeat, or null
 * @param {readonly (string | null)[]} symbols
 */
export function feedGaps(feed, symbols) {
  const gaps = feed?.gaps ?? [];
  return gaps.filter((gap) =>
    gap.tradesMissing &&
    (gap.symbols.length === 0 || gap.symbols.some((s) => symbols.includes(s)))
  ).map((gap) => ({ ...gap, length: formatAge(gap.to - gap.from) }));
}

/**
 * Columns aligned with `times` (sorted), broken at each gap. A point stands for
 * [time, time + width): one whose whole span lies inside a gap becomes null (a
 * price carried on through it is not a price seen), as does one at a gap's middle,
 * and a gap that nulls no point gets a null point at its middle, so a line with
 * `spanGaps: false` stops at the gap and starts again after it. Without gaps, the
 * columns as given.
 * @param {{ times: readonly number[], columns: readonly (readonly (number | null)[])[], width: number }} line
 * @param {readonly { tradeFrom: number, tradeTo: number }[]} gaps
 * @returns {{ times: number[], columns: (number | null)[][] }}
 */
export function breakAtGaps({ times, columns, width }, gaps) {
  if (gaps.length === 0) return { times: [...times], columns: [...columns] };
  // By middle: overlapping gaps sorted by start need not be sorted by middle.
  const byMiddle = [...gaps].sort((a, b) => middleOf(a) - middleOf(b));
  /** @type {{ times: number[], columns: (number | null)[][] }} */
  const out = { times: [], columns: columns.map(() => []) };
  const push = (/** @type {number} */ time, /** @type {number | null} */ i) => {
    out.times.push(time);
    out.columns.forEach((column, k) => column.push(i === null ? null : columns[k][i]));
  };
  const spans = (
    /** @type {{ tradeFrom: number, tradeTo: number }} */ gap,
    /** @type {number} */ t,
  ) => t >= gap.tradeFrom && t + width <= gap.tradeTo;
  let g = 0;
  let broken = false; // whether a point of gap g was nulled
  for (let i = 0; i < times.length; i++) {
    // The gaps whose middle is before this point: a null there for each still unbroken.
    while (g < byMiddle.length && middleOf(byMiddle[g]) < times[i]) {
      const before = out.times.at(-1);
      if (!broken && before !== undefined && before < middleOf(byMiddle[g])) {
        push(middleOf(byMiddle[g]), null);
      }
      g++;
      broken = false;
    }
    const atMiddle = g < byMiddle.length && middleOf(byMiddle[g]) === times[i];
    if (atMiddle || (g < byMiddle.length && spans(byMiddle[g], times[i]))) broken = true;
    const gone = atMiddle || byMiddle.some((gap) => spans(gap, times[i]));
    push(times[i], gone ? null : i);
  }
  return out;
}

/** @param {{ tradeFrom: number, tradeTo: number }} gap */
function middleOf(gap) {
  return Math.floor((gap.tradeFrom + gap.tradeTo) / 2);
}

/**
 * Columns each broken at its own gaps (`gapsOf[k]` for column k) on one time axis:
 * on the compare chart a gap of AAPL breaks AAPL's line only. Where another column
 * breaks, a column holds undefined, which uPlot draws across; null breaks the line.
 * @param {{ times: readonly number[], columns: readonly (readonly (number | null)[])[], width: number }} line
 * @param {readonly (readonly { tradeFrom: number, tradeTo: number }[])[]} gapsOf
 * @returns {{ times: number[], columns: (number | null | undefined)[][] }}
 */
export function breakEach({ times, columns, width }, gapsOf) {
  const broken = columns.map((column, k) =>
    breakAtGaps({ times, columns: [column], width }, gapsOf[k] ?? [])
  );
  const union = [...new Set(broken.flatMap((line) => line.times))].sort((a, b) => a - b);
  return {
    times: union,
    columns: broken.map((line) => {
      const at = new Map(line.times.map((time, i) => [time, line.columns[0][i]]));
      return union.map((time) => at.get(time));
    }),
  };
}
