/**
 * The producer's ledger, between a source and the queue to Kafka: every trade a
 * source hands over is counted as received and queued (or cut off by --limit);
 * every refused frame or trade is counted by kind and shown, one line per kind per
 * interval; and each symbol's last trade time is kept for the status line.
 */

import { formatCount } from "../lib/format.js";
import { redact } from "../lib/redact.ts";
import type { Source, Trade } from "../lib/trade.ts";
import type { Publisher } from "./publisher.ts";
import { type Counters, createCounters, createLimiter } from "./status.ts";

export interface IntakeOptions {
  readonly publisher: Publisher;
  readonly log: (line: string) => void;
  /** Stop after this many trades: the rest of the frame is cut, and `onLimit` called. */
  readonly limit?: number;
  readonly onLimit: () => void;
  /** Symbols whose last trade is followed; a recording may name any number of them. */
  readonly maxTracked: number;
  /** A kind of rejection is shown at most once per this many ms (each one is counted). */
  readonly rejectLogEveryMs: number;
}

export interface Intake {
  readonly counters: Counters;
  /** When each symbol last traded (receive time), for the status line. */
  readonly lastTradeAt: ReadonlyMap<string, number>;
  /** Receive time minus trade time of the latest trade: the feed's delay (ms). */
  delayMs(): number;
  /** One frame's valid trades. */
  accept(trades: Trade[], receivedAt: number, source: Source): void;
  /** One refused frame or trade; `sample` is the offending text. */
  reject(kind: string, sample: string): void;
}

const SAMPLE_CHARS = 120;

export function createIntake(options: IntakeOptions): Intake {
  const counters = createCounters();
  const lastTradeAt = new Map<string, number>();
  const shown = createLimiter(options.rejectLogEveryMs);
  let trackedFull = false;
  let delayMs = 0;

  const track = (trades: readonly Trade[], receivedAt: number) => {
    for (const { symbol } of trades) {
      if (lastTradeAt.size < options.maxTracked || lastTradeAt.has(symbol)) {
        lastTradeAt.set(symbol, receivedAt);
      } else if (!trackedFull) {
        trackedFull = true;
        const max = formatCount(options.maxTracked);
        options.log(
          `note: the replay names over ${max} symbols; the status line follows the first ` +
            `${max} symbols (every trade is still sent)`,
        );
      }
    }
  };

  return {
    counters,
    lastTradeAt,
    delayMs: () => delayMs,
    accept(trades, receivedAt, source) {
      if (options.limit !== undefined) {
        const left = options.limit - counters.received;
        if (left <= 0) return;
        if (trades.length >= left) {
          trades = trades.slice(0, left);
          options.onLimit();
        }
      }
      if (trades.length === 0) return;
      counters.received += trades.length;
      delayMs = receivedAt - trades[trades.length - 1].time;
      track(trades, receivedAt);
      options.publisher.enqueue(trades, source, receivedAt);
    },
    reject(kind, sample) {
      const count = (counters.rejected.get(kind) ?? 0) + 1;
      counters.rejected.set(kind, count);
      if (!shown(kind)) return;
      const text = redact(sample);
      const cut = text.length > SAMPLE_CHARS ? `${text.slice(0, SAMPLE_CHARS)}…` : text;
      options.log(`rejected ${kind}: ${cut} (${formatCount(count)} so far)`);
    },
  };
}
