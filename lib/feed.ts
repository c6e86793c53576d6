/**
 * The feed codec: what the producer saw of its source, written next to the trades
 * in the companion topic `<topic>.feed`, so every viewer (and kcat) can tell "no
 * trades" from "no data". Shared by the producer (writer) and the consumer (reader).
 *
 * A record on the feed topic (one partition: its records are in the order written):
 *   key        `heartbeat/<producer>` or `gap/<producer>/<n>`
 *   timestamp  wall time when written (ms)
 *   value      JSON, schema `schema/feed.v1.json`, one of two kinds:
 *   - heartbeat, every few seconds: the source, the connection state and since when,
 *     the last frame and ping, each symbol's last trade, the producer's counters;
 *   - gap, once per stretch in which trades may be missing or were held back:
 *     `disconnected` (connection lost → subscribed again), `queue-full` (trades
 *     dropped), `kafka-unreachable` (trades held in the queue, delayed, not lost).
 *     `from`/`to` are wall times; `tradeFrom`/`tradeTo` the same instants in trade
 *     time (moved by the feed's delay), where a chart places the gap.
 * The topic is compacted and deleted by age (FEED_TOPIC_CONFIG): each producer's
 * latest heartbeat stays (its key repeats) and every gap (its key is unique) stays
 * for the retention, so a viewer that starts late reads it all from the beginning.
 * The feed topic never carries trades.
 */

import { isRecord, type Source, SOURCES } from "./trade.ts";

const SCHEMA_VERSION = 1;

/** The companion topic of a trade topic. */
export function feedTopicOf(topic: string): string {
  return `${topic}.feed`;
}

/** How long gaps are kept, and when a segment closes so compaction can drop old heartbeats. */
export const FEED_RETENTION_MS = 7 * 24 * 3600_000;
export const FEED_TOPIC_CONFIG: readonly { name: string; value: string }[] = Object.freeze([
  { name: "cleanup.policy", value: "compact,delete" },
  { name: "retention.ms", value: String(FEED_RETENTION_MS) },
  { name: "segment.ms", value: String(3600_000) },
]);

/** The connection as the producer sees it. Sim and replay are "live" while they run. */
export type FeedState =
  | "connecting"
  | "live"
  | "pings-only"
  | "reconnecting"
  | "refused"
  | "stopped";
export const FEED_STATES: readonly FeedState[] = [
  "connecting",
  "live",
  "pings-only",
  "reconnecting",
  "refused",
  "stopped",
];

export type GapReason = "disconnected" | "queue-full" | "kafka-unreachable";
export const GAP_REASONS: readonly GapReason[] = [
  "disconnected",
  "queue-full",
  "kafka-unreachable",
];

export interface FeedCounts {
  readonly received: number;
  readonly acked: number;
  readonly queued: number;
  readonly dropped: number;
  /** Refused frames and trades, by kind. */
  readonly rejected: Readonly<Record<string, number>>;
  readonly reconnects: number;
}

export interface Heartbeat {
  readonly v: 1;
  readonly kind: "heartbeat";
  /** This producer run: `<client id>-<8 hex>`. */
  readonly producer: string;
  readonly source: Source;
  /** Wall time of this heartbeat (ms). */
  readonly at: number;
  /** Time between heartbeats: a viewer calls the producer silent after a few missed. */
  readonly everyMs: number;
  readonly state: FeedState;
  /** Since when (wall ms) the state holds. */
  readonly since: number;
  /** Why, in words, for the states that have a reason (a close, a refusal). */
  readonly detail?: string;
  /** The symbols subscribed (finnhub), simulated, or seen so far (replay). */
  readonly symbols: readonly string[];
  readonly lastFrameAt: number | null;
  readonly lastPingAt: number | null;
  /** When each symbol last traded (wall ms, the producer's receive time). */
  readonly lastTradeAt: Readonly<Record<string, number>>;
  readonly counts: FeedCounts;
}

export interface Gap {
  readonly v: 1;
  readonly kind: "gap";
  readonly producer: string;
  readonly source: Source;
  /** 1, 2, … per producer run: with `producer`, names the gap (and its key). */
  readonly n: number;
  readonly reason: GapReason;
  readonly detail: string;
  /** Wall times (ms). */
  readonly from: number;
  readonly to: number;
  /** The same instants in trade time (ms): where a chart draws the gap. */
  readonly tradeFrom: number;
  readonly tradeTo: number;
  /** The symbols affected. */
  readonly symbols: readonly string[];
  /** queue-full: how many trades were dropped. */
  readonly dropped?: number;
}

export type FeedRecord = Heartbeat | Gap;

/** The record key: heartbeats of one run replace each other; every gap stays. */
export function feedKey(record: FeedRecord): string {
  return record.kind === "heartbeat"
    ? `heartbeat/${record.producer}`
    : `gap/${record.producer}/${record.n}`;
}

/** Longest texts a record carries (the schema's limits): longer ones are cut. */
export const MAX_PRODUCER_LENGTH = 200;
const MAX_DETAIL_LENGTH = 500;
const MAX_SYMBOL_LENGTH = 64;

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * The record value. Texts from elsewhere (a close reason, a kafkajs error) are cut
 * to the schema's limits, so a long one never makes a record every reader refuses.
 */
export function encodeFeed(record: FeedRecord): string {
  const symbols = record.symbols.filter((symbol) => symbol.length <= MAX_SYMBOL_LENGTH);
  return JSON.stringify({
    ...record,
    producer: clip(record.producer, MAX_PRODUCER_LENGTH),
    symbols,
    ...(record.detail === undefined ? {} : { detail: clip(record.detail, MAX_DETAIL_LENGTH) }),
  });
}

const decoder = new TextDecoder("utf-8", { fatal: true });

const isTime = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
const isCount = isTime;
const isTimeOrNull = (value: unknown) => value === null || isTime(value);
const isText = (value: unknown, max: number): value is string =>
  typeof value === "string" && value.length <= max;

const isSymbols = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((symbol) => isText(symbol, MAX_SYMBOL_LENGTH));

function isCountMap(value: unknown): value is Record<string, number> {
  return isRecord(value) && Object.values(value).every(isCount);
}

function isCounts(value: unknown): value is FeedCounts {
  if (!isRecord(value)) return false;
  const { received, acked, queued, dropped, rejected, reconnects } = value;
  return [received, acked, queued, dropped, reconnects].every(isCount) && isCountMap(rejected);
}

/**
 * Decodes a feed record; null for anything else (a viewer counts it and moves on).
 * The value is `unknown` until every field the views read has been checked.
 */
export function decodeFeed(value: Uint8Array | string | null): FeedRecord | null {
  if (value === null) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof value === "string" ? value : decoder.decode(value));
  } catch {
    return null;
  }
  if (!isRecord(parsed) || parsed.v !== SCHEMA_VERSION) return null;
  const { kind, producer, source } = parsed;
  if (!isText(producer, MAX_PRODUCER_LENGTH) || !SOURCES.includes(source as Source)) return null;
  if (kind === "heartbeat") {
    const { at, everyMs, state, since, detail, lastFrameAt, lastPingAt, lastTradeAt, counts } =
      parsed;
    const valid = isTime(at) && isTime(everyMs) && everyMs > 0 && isSymbols(parsed.symbols) &&
      FEED_STATES.includes(state as FeedState) && isTime(since) &&
      (detail === undefined || isText(detail, MAX_DETAIL_LENGTH)) && isTimeOrNull(lastFrameAt) &&
      isTimeOrNull(lastPingAt) && isCountMap(lastTradeAt) && isCounts(counts);
    return valid ? parsed as unknown as Heartbeat : null;
  }
  if (kind === "gap") {
    const { n, reason, detail, from, to, tradeFrom, tradeTo, symbols, dropped } = parsed;
    const valid = isCount(n) && GAP_REASONS.includes(reason as GapReason) &&
      isText(detail, MAX_DETAIL_LENGTH) && [from, to, tradeFrom, tradeTo].every(isTime) &&
      (to as number) >= (from as number) && (tradeTo as number) >= (tradeFrom as number) &&
      isSymbols(symbols) &&
      (dropped === undefined || isCount(dropped));
    return valid ? parsed as unknown as Gap : null;
  }
  return null;
}
