/**
 * What the topic reader does with each batch, as pure functions: decode and apply
 * the records once (a batch delivered again is skipped where it was applied), count
 * every outcome, and tell how far behind the log end this run stands.
 */

import type { IHeaders } from "kafkajs";
import { Buffer, isAscii } from "node:buffer";
import { decodeTrade, type Rejection } from "../lib/trade.ts";
import type { Aggregator } from "./candles.ts";

export interface ConsumerCounts {
  applied: number;
  /** Records the codec refused (also forwarded to the DLQ with --dlq). */
  rejected: number;
  rejectedByKind: Partial<Record<Rejection, number>>;
  tooLate: number;
  /** Records dated more than MAX_AHEAD_MS after this consumer's clock. */
  tooEarly: number;
  /** Records of a new symbol past the Aggregator's symbol cap. */
  symbolCap: number;
  /** Records delivered again after they were applied, skipped. */
  redelivered: number;
  dlqForwarded: number;
  dlqFailed: number;
}

export function emptyCounts(): ConsumerCounts {
  return {
    applied: 0,
    rejected: 0,
    rejectedByKind: {},
    tooLate: 0,
    tooEarly: 0,
    symbolCap: 0,
    redelivered: 0,
    dlqForwarded: 0,
    dlqFailed: 0,
  };
}

/** Records a run has read: applied, refused, too late or early (skipped duplicates are not new). */
export function recordsRead(counts: Readonly<ConsumerCounts>): number {
  return counts.applied + counts.rejected + counts.tooLate + counts.tooEarly + counts.symbolCap;
}

/** What a batch needs of a record; kafkajs's KafkaMessage has it. */
export interface BatchRecord {
  readonly offset: string;
  readonly value: Uint8Array | null;
  readonly headers?: IHeaders;
}

/**
 * A record value as text when it is plain ASCII, as encodeTrade writes it for ASCII
 * symbols: decodeTrade's fatal UTF-8 decoder is a fifth of its time, and only other
 * bytes need it (they go to it as they are). kafkajs hands values over as Buffers.
 */
function asText(value: Uint8Array | null): Uint8Array | string | null {
  return value instanceof Buffer && isAscii(value) ? value.toString("latin1") : value;
}

/** The state one reader keeps across batches. */
export interface ReaderState {
  readonly aggregator: Aggregator;
  readonly counts: ConsumerCounts;
  /** Per partition, the first offset not yet applied in this process. */
  readonly nextToApply: Map<number, number>;
}

export interface BatchResult<M extends BatchRecord> {
  applied: number;
  /** Symbols the applied records belong to. */
  touched: Set<string>;
  /** Records the codec refused, with why: the DLQ's input. */
  refused: { message: M; kind: Rejection }[];
}

/** One partition's batch, as kafkajs hands it over. */
export interface Batch<M extends BatchRecord> {
  readonly partition: number;
  readonly messages: readonly M[];
  /** The batch's last offset (records may have been compacted away before it). */
  readonly lastOffset: number;
  /** Wall time, ms: bounds how far ahead a trade may be dated. */
  readonly now: number;
  /** Sees each applied record (latency). */
  readonly onApplied?: (message: M) => void;
}

/**
 * Applies one batch of one partition: skips (and counts as redelivered) what this
 * process has applied before, decodes and applies the rest, counts every outcome,
 * and moves the partition's next offset past the batch's last offset (never back:
 * a batch from before what was applied must not reopen it).
 */
export function applyBatch<M extends BatchRecord>(
  state: ReaderState,
  batch: Batch<M>,
): BatchResult<M> {
  const { partition, messages, lastOffset, now, onApplied } = batch;
  const { aggregator, counts } = state;
  const floor = state.nextToApply.get(partition) ?? -1;
  const result: BatchResult<M> = { applied: 0, touched: new Set(), refused: [] };
  for (const message of messages) {
    if (Number(message.offset) < floor) {
      counts.redelivered++;
      continue;
    }
    const record = decodeTrade(asText(message.value));
    if (typeof record === "string") {
      counts.rejected++;
      counts.rejectedByKind[record] = (counts.rejectedByKind[record] ?? 0) + 1;
      result.refused.push({ message, kind: record });
      continue;
    }
    const outcome = aggregator.apply(record, now);
    if (outcome === "applied") {
      result.applied++;
      result.touched.add(record.symbol);
      onApplied?.(message);
    } else if (outcome === "too-late") counts.tooLate++;
    else if (outcome === "too-early") counts.tooEarly++;
    else counts.symbolCap++;
  }
  counts.applied += result.applied;
  state.nextToApply.set(partition, Math.max(floor, lastOffset + 1));
  return result;
}

/** Offsets of one partition as the admin client reports them. */
export interface PartitionEnds {
  readonly partition: number;
  readonly high: string;
  readonly low: string;
}

/**
 * Records behind the log end over all partitions. A partition this member holds
 * counts from where this run stands: its next offset to apply, or before its first
 * batch the run's seek point (an earlier run's commit says nothing about this run).
 * Another member's partition counts from the group's commit.
 */
export function lagOf(ends: readonly PartitionEnds[], where: {
  /** Per partition, the first offset this run has not applied. */
  readonly nextToApply: ReadonlyMap<number, number>;
  /** Per partition, this run's seek point. */
  readonly seekOffsets: ReadonlyMap<number, number>;
  /** Per partition, the group's committed offset. */
  readonly committed: ReadonlyMap<number, number>;
  /** The partitions this member holds. */
  readonly assigned: ReadonlySet<number>;
}): number {
  let total = 0;
  for (const lag of lagByPartition(ends, where).values()) total += lag;
  return total;
}

/** The same, per partition (the metrics' gauge). */
export function lagByPartition(
  ends: readonly PartitionEnds[],
  where: Parameters<typeof lagOf>[1],
): Map<number, number> {
  const { nextToApply, seekOffsets, committed, assigned } = where;
  const lags = new Map<number, number>();
  for (const { partition, high, low } of ends) {
    const start = assigned.has(partition)
      ? nextToApply.get(partition) ?? seekOffsets.get(partition) ?? committed.get(partition)
      : committed.get(partition);
    lags.set(partition, Math.max(0, Number(high) - (start ?? Number(low))));
  }
  return lags;
}
