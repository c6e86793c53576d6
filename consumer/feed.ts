/**
 * The feed, read back: every viewer reads the feed topic (lib/feed.ts) from its
 * beginning, like the trades rebuilt from Kafka on every start, and says in words
 * what the producer saw: "Finnhub live · 3 reconnects today", "pings only since
 * 16:00 · US market closed (regular hours), opens Mon 09:30 ET", "producer silent
 * for 45 s". Gaps go to the charts, stale symbols to the watchlist.
 *
 * A producer with no heartbeat for SILENT_AFTER_BEATS of its own intervals is
 * silent: distinct from a quiet market, whose producer still beats. A topic with no
 * heartbeat at all (no producer yet, or one older than the feed) reads "feed state
 * unknown", and the trades are shown as always.
 */

import type { Config } from "../config.ts";
import {
  decodeFeed,
  FEED_TOPIC_CONFIG,
  type FeedState,
  feedTopicOf,
  type Gap,
  type Heartbeat,
} from "../lib/feed.ts";
import { formatAge, formatClock } from "../lib/format.js";
import { createKafka, ensureTopic, readFromStart } from "../lib/kafka.ts";
import { closedReason, marketOf, quietReason, sessionOf } from "../lib/market_hours.ts";
import type { Source } from "../lib/trade.ts";

/** Missed heartbeats before a producer counts as silent. */
export const SILENT_AFTER_BEATS = 3;
/** Gaps kept in memory (the newest); the topic keeps a week of them. */
const MAX_GAPS = 1_000;
/** Gaps a summary carries (the newest in its span): it goes to every browser each second. */
export const MAX_SHOWN_GAPS = 100;
/** Producer runs remembered (the newest heartbeat of each). */
const MAX_PRODUCERS = 100;
/** How long a stop waits for the feed reader to leave its group. */
const LEAVE_MS = 300;
/** A symbol of an open market with no trade for this long is marked stale. */
export const STALE_AFTER_MS = 60_000;

/** What the views show of the feed. */
export interface FeedSummary {
  /** The newest producer's state; "silent" without a recent heartbeat; "unknown" with none. */
  readonly state: FeedState | "silent" | "unknown";
  /** The state in words, for the header and the pipeline panel. */
  readonly words: string;
  readonly source: Source | null;
  /** Wall time of the newest heartbeat. */
  readonly heartbeatAt: number | null;
  readonly reconnectsToday: number;
  /** Gaps whose trade-time span ends at or after `from`, oldest first. */
  readonly gaps: readonly GapView[];
  /** Per symbol of the newest producer: its last trade, and why it may be quiet. */
  readonly symbols: Readonly<Record<string, SymbolFeed>>;
}

/** A gap as the views show it: the feed record, and its hover text. */
export interface GapView extends Gap {
  /** "disconnected 14s: closed by server, code 1001 …". */
  readonly words: string;
  /**
   * Trades may be missing in it (a lost connection, dropped trades): charts shade
   * it and symbols are marked. A Kafka outage only delayed them: listed, not shaded.
   */
  readonly tradesMissing: boolean;
}

export interface SymbolFeed {
  readonly lastTradeAt: number | null;
  /** No trade for STALE_AFTER_MS while its market is open (or its hours are unknown). */
  readonly stale: boolean;
  /** A gap within the summary's span names it. */
  readonly gapped: boolean;
  /** Why it is quiet, when the clock knows: "US market closed (regular hours), …". */
  readonly note?: string;
}

const REASON_WORDS: Record<Gap["reason"], string> = {
  "disconnected": "disconnected",
  "queue-full": "trades dropped (queue full)",
  "kafka-unreachable": "Kafka unreachable (trades delayed, not lost)",
};

/** The feed records read so far: each producer's newest heartbeat, and the gaps. */
export class FeedLog {
  readonly #heartbeats = new Map<string, Heartbeat>();
  #gaps: Gap[] = [];
  readonly #seen = new Set<string>();
  /** Records that are not feed records (counted, skipped). */
  rejected = 0;
  /** Why the feed cannot be read, if it cannot. */
  problem: string | undefined;

  /** One record value from the feed topic. */
  apply(value: Uint8Array | string | null): void {
    const record = decodeFeed(value);
    if (record === null) {
      this.rejected++;
      return;
    }
    if (record.kind === "heartbeat") {
      const known = this.#heartbeats.get(record.producer);
      if (known !== undefined && known.at > record.at) return;
      this.#heartbeats.delete(record.producer); // re-inserted: the map stays oldest first
      this.#heartbeats.set(record.producer, record);
      if (this.#heartbeats.size > MAX_PRODUCERS) {
        this.#heartbeats.delete(this.#heartbeats.keys().next().value!);
      }
      return;
    }
    // A gap written twice (the feed producer retried a send) is one gap.
    const id = `${record.producer}/${record.n}`;
    if (this.#seen.has(id)) return;
    this.#seen.add(id);
    this.#gaps.push(record);
    if (this.#gaps.length > MAX_GAPS) {
      const dropped = this.#gaps.shift()!;
      this.#seen.delete(`${dropped.producer}/${dropped.n}`);
    }
  }

  /** The newest heartbeat of any producer. */
  latest(): Heartbeat | undefined {
    let latest: Heartbeat | undefined;
    for (const beat of this.#heartbeats.values()) if (!latest || beat.at > latest.at) latest = beat;
    return latest;
  }

  gaps(): readonly Gap[] {
    return this.#gaps;
  }
}

/** Whether a heartbeat is too old: its producer missed SILENT_AFTER_BEATS beats. */
export function isSilent(beat: Heartbeat, now: number): boolean {
  return beat.state !== "stopped" && now - beat.at > SILENT_AFTER_BEATS * beat.everyMs;
}

/** The feed as the views show it, at `now`, with the gaps that end at or after `from`. */
export function summarizeFeed(log: FeedLog, options: { now: number; from: number }): FeedSummary {
  const { now, from } = options;
  const beat = log.latest();
  const midnight = new Date(now).setHours(0, 0, 0, 0);
  let reconnectsToday = 0;
  const gaps: GapView[] = [];
  for (const gap of log.gaps()) {
    if (gap.reason === "disconnected" && gap.to >= midnight) reconnectsToday++;
    if (gap.tradeTo < from) continue;
    const reason = REASON_WORDS[gap.reason];
    gaps.push({
      ...gap,
      words: `${reason} ${formatAge(gap.to - gap.from)}: ${gap.detail}`,
      tradesMissing: gap.reason !== "kafka-unreachable",
    });
  }
  gaps.sort((a, b) => a.tradeFrom - b.tradeFrom);
  gaps.splice(0, Math.max(0, gaps.length - MAX_SHOWN_GAPS));
  const words = beat === undefined
    ? unknownWords(log)
    : describeState(beat, { now, reconnectsToday });
  return {
    state: beat === undefined ? "unknown" : isSilent(beat, now) ? "silent" : beat.state,
    words,
    source: beat?.source ?? null,
    heartbeatAt: beat?.at ?? null,
    reconnectsToday,
    gaps,
    symbols: beat === undefined ? {} : symbolNotes(beat, { now, gaps }),
  };
}

function unknownWords(log: FeedLog): string {
  return log.problem !== undefined
    ? `feed state unknown: ${log.problem}`
    : "feed state unknown: no heartbeat on the feed topic (producer not started, or older " +
      "than the feed)";
}

const SOURCE_NAMES: Record<Source, string> = {
  finnhub: "Finnhub",
  sim: "simulated market",
  replay: "replay",
};

/** The newest heartbeat in words. */
function describeState(beat: Heartbeat, context: { now: number; reconnectsToday: number }) {
  const { now, reconnectsToday } = context;
  const name = SOURCE_NAMES[beat.source];
  if (isSilent(beat, now)) {
    return `producer silent for ${formatAge(now - beat.at)} (last heartbeat ${
      formatClock(beat.at)
    }; not running?)`;
  }
  const why = beat.detail ? ` (${beat.detail})` : "";
  const since = formatClock(beat.since);
  switch (beat.state) {
    case "stopped":
      return `producer stopped at ${since}`;
    case "connecting":
      return `${name}: connecting since ${since}${why}`;
    case "reconnecting":
      return `${name} connection lost at ${since}, reconnecting${why}`;
    case "refused":
      return `${name} refusing connections since ${since}${why}`;
    case "pings-only":
      return `pings only since ${formatClock(beat.since, undefined, false)} · ${
        quietReason(beat.symbols, now)
      }`;
    case "live": {
      const reconnects = beat.source === "finnhub"
        ? ` · ${reconnectsToday} reconnect${reconnectsToday === 1 ? "" : "s"} today`
        : "";
      return `${name} live${reconnects}`;
    }
  }
}

function symbolNotes(
  beat: Heartbeat,
  context: { now: number; gaps: readonly GapView[] },
): Record<string, SymbolFeed> {
  const { now, gaps } = context;
  const notes: Record<string, SymbolFeed> = {};
  const silent = isSilent(beat, now);
  const missing = gaps.filter((gap) => gap.tradesMissing);
  const all = missing.some((gap) => gap.symbols.length === 0);
  const gapped = new Set(missing.flatMap((gap) => gap.symbols));
  for (const symbol of beat.symbols) {
    const lastTradeAt = beat.lastTradeAt[symbol] ?? null;
    const market = marketOf(symbol);
    const open = sessionOf(market, now)?.open ?? true;
    const age = lastTradeAt === null ? Infinity : beat.at - lastTradeAt;
    notes[symbol] = {
      lastTradeAt,
      stale: silent || (open && age >= STALE_AFTER_MS),
      gapped: all || gapped.has(symbol),
      note: silent ? "producer silent" : closedReason(market, now),
    };
  }
  return notes;
}

export interface FeedReader {
  readonly log: FeedLog;
  /** Resolves after the signal aborts, once the reader has left its group or given up waiting. */
  readonly stopped: Promise<void>;
}

/**
 * Reads the feed topic from its beginning into a FeedLog until the signal aborts.
 * Never throws: a feed that cannot be read leaves `log.problem` set, and the views
 * say the feed state is unknown. Its own consumer group per viewer (nothing is
 * committed): every viewer reads the whole partition, however many share a group id.
 */
export function startFeedReader(options: { config: Config; signal: AbortSignal }): FeedReader {
  const { config, signal } = options;
  const log = new FeedLog();
  const topic = feedTopicOf(config.topic);
  const { stopped } = readFromStart({
    kafka: createKafka(config, "feed"),
    topics: [topic],
    group: `${config.groupId}.feed`,
    signal,
    prepare: async (admin) => {
      await ensureTopic(admin, {
        topic,
        partitions: 1,
        replicationFactor: config.replicationFactor,
        configEntries: FEED_TOPIC_CONFIG,
      });
    },
    onMessage: (_topic, message) => log.apply(message.value),
    onProblem: (error) =>
      log.problem = `cannot read ${topic} (${error instanceof Error ? error.message : error})`,
    leaveMs: LEAVE_MS,
  });
  return { log, stopped };
}
