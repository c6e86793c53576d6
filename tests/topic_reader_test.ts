/**
 * consumer/apply.ts, the topic reader's pure pieces, without a broker: a batch kafkajs delivers again
 * (after a failed commit, a rebalance or a client restart) is skipped, so each trade
 * is applied once whatever order the redeliveries come in; and the lag counts from
 * where this run stands, not from an earlier run's commit.
 */

import assert from "node:assert/strict";
import { Aggregator } from "../consumer/candles.ts";
import { encodeTrade, type TradeRecord } from "../lib/trade.ts";
import {
  applyBatch,
  type BatchRecord,
  emptyCounts,
  lagOf,
  type ReaderState,
} from "../consumer/apply.ts";
import { assertCandlesEqual, generateTrades, reference } from "./helpers/candles_reference.ts";

const INTERVALS = [1_000, 60_000];
const encoder = new TextEncoder();

function newState(): ReaderState {
  return {
    aggregator: new Aggregator({ intervalsMs: INTERVALS, maxCandles: 3_600, maxSymbols: 100 }),
    counts: emptyCounts(),
    nextToApply: new Map(),
  };
}

/** The log of one partition: trade i at offset i. */
function partitionLog(trades: readonly TradeRecord[]): BatchRecord[] {
  return trades.map((trade, offset) => ({
    offset: String(offset),
    value: encoder.encode(encodeTrade(trade, trade.source)),
  }));
}

/** Delivers offsets [from, to] of `log` as one batch, as kafkajs would. */
function deliver(
  state: ReaderState,
  partition: number,
  log: BatchRecord[],
  from: number,
  to: number,
) {
  return applyBatch(state, {
    partition,
    messages: log.slice(from, to + 1),
    lastOffset: to,
    now: Date.now(),
  });
}

Deno.test("a redelivered batch is skipped: every trade is applied once", async (t) => {
  const trades = generateTrades(400, 3, Date.now() - 10 * 60_000);
  const log = partitionLog(trades);
  const ref = reference(trades, INTERVALS, 3_600, 100);

  await t.step("overlapping and repeated batches, in any order", () => {
    const state = newState();
    assert.equal(deliver(state, 0, log, 0, 99).applied, 100);
    // The commit of 0-99 failed: kafkajs resumes from an older commit, overlapping.
    const overlap = deliver(state, 0, log, 50, 199);
    assert.equal(overlap.applied, 100);
    assert.equal(state.counts.redelivered, 50);
    assert.equal(state.nextToApply.get(0), 200);
    // A batch entirely before what was applied (a restart resuming from offset 0)
    // must not move the partition's floor back...
    assert.equal(deliver(state, 0, log, 0, 49).applied, 0);
    assert.equal(state.nextToApply.get(0), 200, "the floor never moves back");
    // ...or the batch after it would be applied a second time.
    assert.equal(deliver(state, 0, log, 50, 149).applied, 0);
    assert.equal(deliver(state, 0, log, 150, 399).applied, 200);
    assert.equal(state.counts.redelivered, 50 + 50 + 100 + 50);
    assert.equal(state.counts.applied, trades.length);
    assert.equal(state.aggregator.revision(), ref.applied.length, "each trade applied once");
    for (const symbol of ref.symbols) {
      for (const interval of INTERVALS) {
        assertCandlesEqual(
          state.aggregator.candles(symbol, interval),
          ref.candles(symbol, interval),
          `${symbol}/${interval}`,
        );
      }
      assert.equal(state.aggregator.stats(symbol)!.trades, ref.session(symbol).trades);
    }
  });

  await t.step("partitions keep their own floors", () => {
    const state = newState();
    const half = partitionLog(trades.slice(0, 200));
    const other = partitionLog(trades.slice(200));
    deliver(state, 0, half, 0, 199);
    // Partition 1 starts at offset 0 although partition 0 is at 200.
    assert.equal(deliver(state, 1, other, 0, 99).applied, 100);
    assert.equal(deliver(state, 1, other, 0, 199).applied, 100);
    assert.equal(state.counts.redelivered, 100);
    assert.equal(state.aggregator.revision(), ref.applied.length);
  });

  await t.step("every other outcome is counted, and refused records are handed back", () => {
    const state = newState();
    const now = Date.now();
    const good: TradeRecord = { symbol: "AAPL", price: 1, volume: 1, time: now, source: "sim" };
    const batch: BatchRecord[] = [
      { offset: "0", value: encoder.encode(encodeTrade(good, "sim")) },
      { offset: "1", value: encoder.encode("not json") },
      { offset: "2", value: null },
      {
        offset: "3",
        value: encoder.encode(encodeTrade({ ...good, time: now + 86_400_000 }, "sim")),
      },
      { offset: "4", value: encoder.encode(encodeTrade({ ...good, time: 1_000 }, "sim")) },
    ];
    const applied: string[] = [];
    const result = applyBatch(state, {
      partition: 0,
      messages: batch,
      lastOffset: 4,
      now,
      onApplied: (message) => applied.push(message.offset),
    });
    assert.deepEqual(applied, ["0"], "onApplied sees each applied record");
    assert.deepEqual(result.refused.map(({ message, kind }) => `${message.offset} ${kind}`), [
      "1 not-json",
      "2 not-json",
    ]);
    assert.deepEqual([...result.touched], ["AAPL"]);
    const { counts } = state;
    assert.deepEqual(
      [counts.applied, counts.rejected, counts.tooEarly, counts.tooLate, counts.redelivered],
      [1, 2, 1, 1, 0],
    );
    assert.deepEqual(counts.rejectedByKind, { "not-json": 2 });
  });
});

Deno.test("lag counts from where this run stands, not from an earlier run's commit", () => {
  const ends = [
    { partition: 0, low: "0", high: "100" },
    { partition: 1, low: "0", high: "50" },
  ];
  // A restart from 15 minutes back: the seek points are 40 and 10, and the earlier
  // run committed both partitions to the end. Nothing is applied yet in this run.
  const seek = new Map([[0, 40], [1, 10]]);
  const committed = new Map([[0, 100], [1, 50]]);
  const mine = new Set([0, 1]);
  assert.equal(
    lagOf(ends, { nextToApply: new Map(), seekOffsets: seek, committed, assigned: mine }),
    60 + 40,
  );
  // Partition 0's first batch is applied up to 70.
  assert.equal(
    lagOf(ends, { nextToApply: new Map([[0, 70]]), seekOffsets: seek, committed, assigned: mine }),
    30 + 40,
  );
  // Partition 1 is another member's (a shared group): its lag is the group's commit.
  assert.equal(
    lagOf(ends, {
      nextToApply: new Map([[0, 70]]),
      seekOffsets: seek,
      committed: new Map([[1, 45]]),
      assigned: new Set([0]),
    }),
    30 + 5,
  );
  // Nothing committed and no seek point: from the log start.
  assert.equal(
    lagOf(ends, {
      nextToApply: new Map(),
      seekOffsets: new Map(),
      committed: new Map(),
      assigned: new Set(),
    }),
    150,
  );
});
