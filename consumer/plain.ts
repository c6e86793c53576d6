/**
 * The view when stdout is not a terminal (consumer/terminal.ts showLines): plain
 * key=value lines a log collector can read, from the same ChartData as the charts.
 */

import { priceDecimals, sourceMark } from "../lib/format.js";
import type { ChartData } from "./chart.ts";
import type { FeedSummary } from "./feed.ts";

/**
 * The view when stdout is not a terminal: one key=value line per symbol and one
 * for the consumer, for a log collector. Numbers are plain (no grouping), with the
 * decimals the charts use.
 */
export function plainLines(data: ChartData, now: number): string[] {
  const stamp = new Date(now).toISOString();
  const { status } = data;
  const lines = [
    `${stamp} consumer topic=${data.topic} connected=${status.connected} lag=${status.lag ?? "-"}` +
    ` p50_ms=${status.latencyP50Ms ?? "-"} p99_ms=${status.latencyP99Ms ?? "-"}` +
    ` tps=${status.tradesPerSecond.toFixed(1)} applied=${status.applied}` +
    ` rejected=${status.rejected} too_late=${status.tooLate} too_early=${status.tooEarly}` +
    feedFields(data.feed, now) +
    (data.notes ?? []).map((note) => ` note="${note}"`).join(""),
  ];
  const symbolFeed = data.feed?.symbols ?? {};
  for (const symbol of data.aggregation.symbols()) {
    const stats = data.aggregation.stats(symbol, now)!;
    const decimals = priceDecimals(stats.last);
    const mark = sourceMark(stats.source);
    lines.push(
      `${stamp} symbol=${JSON.stringify(symbol)} last=${stats.last.toFixed(decimals)}` +
        ` change_pct=${stats.changePct.toFixed(3)}` +
        ` vwap=${stats.sessionVwap === null ? "-" : stats.sessionVwap.toFixed(decimals)}` +
        ` volume=${Number(stats.volume.toFixed(8))} trades=${stats.trades}` +
        ` tps=${stats.tradesPerSecond.toFixed(1)}` +
        ` age_s=${((now - stats.lastTime) / 1000).toFixed(1)} source=${stats.source}` +
        (symbol in symbolFeed
          ? ` feed_stale=${symbolFeed[symbol].stale} feed_gapped=${symbolFeed[symbol].gapped}`
          : "") +
        (mark ? ` ${mark}` : ""),
    );
  }
  return lines;
}

/** The feed's fields on the consumer's plain line: state, heartbeat age, gaps, words. */
function feedFields(feed: FeedSummary | undefined, now: number): string {
  if (feed === undefined) return "";
  const age = feed.heartbeatAt === null ? "-" : ((now - feed.heartbeatAt) / 1000).toFixed(1);
  return ` feed=${feed.state} feed_heartbeat_age_s=${age} feed_gaps=${feed.gaps.length}` +
    ` feed_text=${JSON.stringify(feed.words)}`;
}
