/**
 * Aggregation throughput: records/s through the consumer's hot path (decodeTrade
 * on the record bytes, then Aggregator.apply), in process, no Kafka.
 *
 *   deno run tools/bench/aggregate.ts [--records=1000000] [--symbols=50]
 *
 * The records are encoded up front with the shared codec (as the producer writes
 * them) and held as bytes (as kafkajs hands them over), 1 s apart per symbol on
 * average, with ~5 % of them late by up to 30 s.
 */

import { Aggregator, DEFAULT_INTERVALS_MS, DEFAULT_MAX_CANDLES } from "../../consumer/candles.ts";
import { exitCodeFor, parseFlags, positive } from "../../lib/cli.ts";
import { formatCount } from "../../lib/format.js";
import { decodeTrade, encodeTrade } from "../../lib/trade.ts";

const USAGE = "usage: deno run tools/bench/aggregate.ts [--records=1000000] [--symbols=50]";

function makeRecords(count: number, symbols: number): Uint8Array[] {
  const encoder = new TextEncoder();
  const names = Array.from({ length: symbols }, (_, i) => `SYM${i}`);
  const prices = names.map((_, i) => 10 + i * 7.5);
  const start = Date.now() - count * 20;
  const records: Uint8Array[] = new Array(count);
  let seed = 1;
  const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
  for (let i = 0; i < count; i++) {
    const s = i % symbols;
    prices[s] = Math.max(0.01, prices[s] * (1 + (random() - 0.5) * 0.001));
    const late = random() < 0.05 ? Math.floor(random() * 30_000) : 0;
    const trade = {
      symbol: names[s],
      price: Math.round(prices[s] * 100) / 100,
      volume: random() < 0.1 ? 0 : Math.ceil(random() * 500),
      time: start + Math.floor((i * 1000) / symbols) - late,
    };
    records[i] = encoder.encode(encodeTrade(trade, "sim"));
  }
  return records;
}

/** Decodes and applies every record once: the time it took, and how many were applied. */
function applyAll(records: readonly Uint8Array[]): { ms: number; applied: number } {
  const aggregator = new Aggregator({
    intervalsMs: DEFAULT_INTERVALS_MS,
    maxCandles: DEFAULT_MAX_CANDLES,
    maxSymbols: 500,
  });
  let applied = 0;
  const started = performance.now();
  for (let i = 0; i < records.length; i++) {
    const record = decodeTrade(records[i]);
    if (typeof record !== "string" && aggregator.apply(record) === "applied") applied++;
  }
  return { ms: performance.now() - started, applied };
}

export function main(args: string[]): Promise<number> {
  try {
    const flags = parseFlags(args, {
      records: { type: "string" },
      symbols: { type: "string" },
      help: { type: "boolean" },
    });
    if (flags.help) {
      console.log(USAGE);
      return Promise.resolve(0);
    }
    const count = positive("records", flags.records ?? "1000000", { integer: true });
    const symbols = positive("symbols", flags.symbols ?? "50", { integer: true });
    const records = makeRecords(count, symbols);
    applyAll(records.slice(0, 100_000)); // warm-up
    for (let round = 1; round <= 3; round++) {
      const { ms, applied } = applyAll(records);
      const rate = Math.round(count / (ms / 1000));
      console.log(
        `round ${round}: ${count} records (${applied} applied) in ${ms.toFixed(0)} ms = ${
          formatCount(rate)
        } records/s`,
      );
    }
    return Promise.resolve(0);
  } catch (error) {
    return Promise.resolve(exitCodeFor(error));
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
