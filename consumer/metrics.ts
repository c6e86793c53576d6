/**
 * The consumer's metrics, as the dashboard's /metrics serves them (lib/metrics.ts
 * writes the text): read at scrape time from the counts, the lag and the latency
 * histogram the topic reader keeps anyway.
 */

import { type Family, labelled, single } from "../lib/metrics.ts";
import type { LatencyHistogram } from "./latency.ts";
import type { RunningConsumer } from "./topic_reader.ts";

/** Latency buckets, seconds: each is a bucket edge of LatencyHistogram, so the counts are exact. */
export const LATENCY_BOUNDS_S = [
  0.001,
  0.002,
  0.005,
  0.01,
  0.02,
  0.05,
  0.1,
  0.2,
  0.5,
  1,
  2,
  5,
  10,
  20,
  50,
  100,
] as const;

const PREFIX = "market_stream_consumer";

export function consumerFamilies(
  reader: RunningConsumer,
  latency: LatencyHistogram,
): Family[] {
  const counts = reader.counts();
  const status = reader.status();
  const cumulative = latency.cumulative(LATENCY_BOUNDS_S.map((s) => s * 1000));
  return [
    single(
      "gauge",
      `${PREFIX}_connected`,
      "1 while the consumer is in its group and fetching.",
      status.connected ? 1 : 0,
    ),
    single(
      "counter",
      `${PREFIX}_records_applied_total`,
      "Trade records applied to the charts.",
      counts.applied,
    ),
    labelled("counter", {
      name: `${PREFIX}_records_rejected_total`,
      help: "Records the codec refused, by kind.",
      label: "kind",
    }, Object.entries(counts.rejectedByKind).map(([kind, n]) => [kind, n ?? 0])),
    labelled("counter", {
      name: `${PREFIX}_records_skipped_total`,
      help: "Decoded records not charted, by reason.",
      label: "reason",
    }, [
      ["too-late", counts.tooLate],
      ["too-early", counts.tooEarly],
      ["symbol-cap", counts.symbolCap],
      ["redelivered", counts.redelivered],
    ]),
    labelled("gauge", {
      name: `${PREFIX}_lag_records`,
      help: "Records behind the log end, per partition (polled every 3 s).",
      label: "partition",
    }, reader.partitionLag()),
    {
      name: `${PREFIX}_latency_seconds`,
      help: "End-to-end latency: the producer received the trade -> the consumer applied it.",
      type: "histogram",
      samples: [{
        buckets: LATENCY_BOUNDS_S.map((bound, i) => [bound, cumulative[i]] as const),
        count: latency.count,
        sum: latency.sumMs / 1000,
      }],
    },
  ];
}
