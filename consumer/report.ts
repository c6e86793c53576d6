/** The lines the consumer ends with: what it applied, and --limit's summary for the bench. */

import { formatCount } from "../lib/format.js";
import { type ConsumerCounts, recordsRead } from "./apply.ts";
import type { LatencyHistogram } from "./latency.ts";

/** The stopped line, on stderr: every outcome counted. */
export function stoppedLine(counts: Readonly<ConsumerCounts>, dlqTopic?: string): string {
  const dlq = dlqTopic === undefined
    ? ""
    : `, to ${dlqTopic} ${counts.dlqForwarded} (failed ${counts.dlqFailed})`;
  return `stopped: applied ${counts.applied}, rejected ${counts.rejected}, too late ` +
    `${counts.tooLate}, too early ${counts.tooEarly}, symbol cap ${counts.symbolCap}, ` +
    `redelivered and skipped ${counts.redelivered}${dlq}; offsets committed`;
}

/** The last line of a --limit run, on stdout: what `deno task bench` reads. */
export function limitSummary(
  counts: Readonly<ConsumerCounts>,
  times: { first: number | null; lastDone: number | null },
  latency: LatencyHistogram,
): string {
  const read = recordsRead(counts);
  const seconds = times.first === null || times.lastDone === null
    ? 0
    : Math.max(1, times.lastDone - times.first) / 1000;
  const rate = seconds > 0 ? Math.round(read / seconds) : 0;
  const quantiles = latency.count === 0
    ? "no samples"
    : `p50 ${latency.quantile(0.5)} ms, p99 ${latency.quantile(0.99)} ms, p99.9 ${
      latency.quantile(0.999)
    } ms (${formatCount(latency.count)} samples)`;
  return `summary: read ${formatCount(read)} records in ${seconds.toFixed(3)} s ` +
    `(${formatCount(rate)} records/s from the first fetch), applied ${
      formatCount(counts.applied)
    }, ` +
    `rejected ${formatCount(counts.rejected)}, too late ${
      formatCount(counts.tooLate)
    }, too early ` +
    `${formatCount(counts.tooEarly)}; latency received-at -> applied: ${quantiles}`;
}
