/**
 * The producer's metrics, served on PRODUCER_METRICS_PORT (lib/metrics.ts): read at
 * scrape time from the ledger's counters (status.ts), brought up to date with the
 * queue's and the connection's just before, as for the status line.
 */

import { type Family, labelled, single } from "../lib/metrics.ts";
import type { Counters } from "./status.ts";

const PREFIX = "market_stream_producer";

export function producerFamilies(counters: Counters, queueCapacity: number): Family[] {
  const c = counters;
  const name = (what: string) => `${PREFIX}_${what}`;
  return [
    single(
      "counter",
      name("trades_received_total"),
      "Valid trades taken from the source.",
      c.received,
    ),
    single(
      "counter",
      name("trades_acknowledged_total"),
      "Trades Kafka acknowledged.",
      c.acked,
    ),
    single(
      "counter",
      name("trades_dropped_total"),
      "Trades dropped because the queue was full.",
      c.dropped,
    ),
    single(
      "counter",
      name("trades_possibly_duplicated_total"),
      "Trades sent again after a failed send that may have written part of them.",
      c.possiblyDuplicated,
    ),
    labelled("counter", {
      name: name("rejected_total"),
      help: "Frames and trades refused, by kind (malformed frames, invalid trades, duplicates).",
      label: "kind",
    }, c.rejected),
    single(
      "counter",
      name("reconnects_total"),
      "Reconnects to the Finnhub websocket.",
      c.reconnects,
    ),
    single("gauge", name("queue_trades"), "Trades queued for Kafka or in flight.", c.queued),
    single(
      "gauge",
      name("queue_capacity_trades"),
      "Trades the queue holds at most (--queue).",
      queueCapacity,
    ),
  ];
}
