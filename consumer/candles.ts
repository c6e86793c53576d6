/**
 * The aggregation that both views (terminal charts and dashboard) read: OHLC
 * candles, VWAP, volume and trade rates per symbol, built from decoded trade records.
 *
 * Rules, all by trade time (so a replay from Kafka builds exactly what live did):
 * - A trade lands in the candle of its own interval, even when it arrives late.
 * - open/close are the prices of the earliest/latest trade time in the candle; trades
 *   with equal times keep arrival order (the first is the open, the last the close).
 * - VWAP = sum(price * volume) / sum(volume), per candle and over the session.
 *   A `volume` 0 record is a price update: it moves open/high/low/close and the last
 *   price, counts as a trade, and adds nothing to volume or VWAP.
 * - Memory is bounded: a ring of the last `maxCandles` candles per (symbol,
 *   interval), and at most `maxSymbols` symbols (a record of one more is refused).
 * - The kept window of a symbol is what its shortest ring still holds: a trade whose
 *   candle has already left any ring is "too-late" and is applied nowhere, so every
 *   interval and the session totals always agree with one another. A trade before
 *   `fromMs` (the start of the session) is "too-late" as well.
 * - A trade dated more than MAX_AHEAD_MS after the wall clock is "too-early" and is
 *   applied nowhere: the newest candle slot only ever moves forward, so one record
 *   dated in 2100 would otherwise make every real trade of its symbol "too-late".
 *   This is the one rule that reads the clock; a replay of past trades is unaffected.
 *
 * `apply` runs once per record at 100k+ records/s: it allocates only when a new
 * candle or symbol starts.
 */

import { LIVE_WINDOW, type Source, type TradeRecord } from "../lib/trade.ts";

export interface Candle {
  /** ms, interval start (trade-time based) */
  readonly start: number;
  open: number;
  high: number;
  low: number;
  close: number;
  /** sum of volume (v = 0 price updates add nothing) */
  volume: number;
  /** count of records applied (incl. v = 0 updates) */
  trades: number;
  /** sum(p*v)/sum(v) within the candle; null if volume 0 */
  vwap: number | null;
  /** Aggregator revision when this candle last changed */
  revision: number;
}

export interface SymbolStats {
  symbol: string;
  /** "sim" | "replay" | "finnhub": views must mark sim and replay */
  source: Source;
  /** last price by trade time */
  last: number;
  /** its trade time (ms) */
  lastTime: number;
  /** vs the session's first price: the price of the earliest trade time applied */
  change: number;
  changePct: number;
  /** over everything applied this session */
  sessionVwap: number | null;
  volume: number;
  trades: number;
  /** trades per second by trade time, over the 10 whole seconds before `now` */
  tradesPerSecond: number;
}

export interface ConsumerStatus {
  /** joined the group and fetching */
  connected: boolean;
  /** records behind the log end, all partitions */
  lag: number | null;
  /** producer received-at -> applied, last minute */
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
  /** all symbols, last 10 s */
  tradesPerSecond: number;
  applied: number;
  rejected: number;
  tooLate: number;
  /** dated more than MAX_AHEAD_MS after the consumer's clock */
  tooEarly: number;
  /** wall time when the last trade was applied */
  lastTradeAt: number | null;
}

export type ApplyResult = "applied" | "too-late" | "too-early" | "symbol-cap";

/**
 * How far ahead of the consumer's clock a trade time may be: the bound a live
 * producer applies (trade.ts), so clocks a little apart never refuse a real trade.
 */
export const MAX_AHEAD_MS: number = LIVE_WINDOW.maxAheadMs;

export interface AggregatorOptions {
  readonly intervalsMs: readonly number[];
  readonly maxCandles: number;
  readonly maxSymbols: number;
  /** Trades before this time (ms) are outside the session: counted as too late. */
  readonly fromMs?: number;
}

export const DEFAULT_INTERVALS_MS: readonly number[] = Object.freeze([1_000, 60_000]);
export const DEFAULT_MAX_CANDLES = 3_600;
/**
 * The memory bound: a candle takes about 200 bytes (measured), so at this cap the
 * 1 s rings hold at most ~72 MB (after an hour of trades every second) and the 1 m
 * rings as much again (after 60 hours). Finnhub's free plan allows ~50 symbols.
 */
export const DEFAULT_MAX_SYMBOLS = 100;

/**
 * One candle. The tie-break times live in private fields so that a view that
 * serialises candles (JSON.stringify) sends only the public Candle fields.
 */
class CandleState implements Candle {
  readonly start: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  trades = 1;
  vwap: number | null;
  revision: number;
  #priceVolume: number;
  #openTime: number;
  #closeTime: number;

  constructor(start: number, price: number, volume: number, time: number, revision: number) {
    this.start = start;
    this.open =
      this.high =
      this.low =
      this.close =
        price;
    this.volume = volume;
    this.#priceVolume = price * volume;
    this.vwap = volume > 0 ? price : null;
    this.#openTime = this.#closeTime = time;
    this.revision = revision;
  }

  add(price: number, volume: number, time: number, revision: number): void {
    if (time < this.#openTime) {
      this.#openTime = time;
      this.open = price;
    }
    if (time >= this.#closeTime) {
      this.#closeTime = time;
      this.close = price;
    }
    if (price > this.high) this.high = price;
    if (price < this.low) this.low = price;
    this.trades++;
    if (volume > 0) {
      this.volume += volume;
      this.#priceVolume += price * volume;
      this.vwap = this.#priceVolume / this.volume;
    }
    this.revision = revision;
  }
}

/**
 * The last `size` candles of one interval, indexed by slot (= start / interval), so
 * placing a trade is one division and one array access. A slot's array cell may
 * still hold a candle from `size` slots earlier after a gap in trading; the start
 * check tells them apart, so nothing has to be cleared when time jumps ahead.
 */
class CandleRing {
  readonly intervalMs: number;
  readonly size: number;
  readonly #cells: (CandleState | undefined)[];
  #newest = -Infinity;

  constructor(intervalMs: number, size: number) {
    this.intervalMs = intervalMs;
    this.size = size;
    this.#cells = new Array(size).fill(undefined);
  }

  accepts(time: number): boolean {
    return Math.floor(time / this.intervalMs) > this.#newest - this.size;
  }

  /** Call only when accepts(time). */
  add(price: number, volume: number, time: number, revision: number): void {
    const slot = Math.floor(time / this.intervalMs);
    if (slot > this.#newest) this.#newest = slot;
    const index = slot % this.size;
    const start = slot * this.intervalMs;
    const cell = this.#cells[index];
    if (cell !== undefined && cell.start === start) cell.add(price, volume, time, revision);
    else this.#cells[index] = new CandleState(start, price, volume, time, revision);
  }

  list(fromMs: number): Candle[] {
    const out: Candle[] = [];
    if (this.#newest === -Infinity) return out;
    const first = Math.max(this.#newest - this.size + 1, Math.ceil(fromMs / this.intervalMs));
    for (let slot = first; slot <= this.#newest; slot++) {
      const cell = this.#cells[slot % this.size];
      if (cell !== undefined && cell.start === slot * this.intervalMs) out.push(cell);
    }
    return out;
  }
}

/**
 * Counts events per second over the last `seconds` whole seconds, in a fixed
 * ring of per-second buckets: constant memory and O(1) per event. A symbol's
 * trades/s, by trade time (so a replay shows the market's rate, not the replay's).
 */
export class RateWindow {
  readonly #seconds: number;
  readonly #stamps: Float64Array;
  readonly #counts: Float64Array;

  constructor(seconds = 10) {
    this.#seconds = seconds;
    // One extra bucket holds the second in progress, which the rate leaves out.
    this.#stamps = new Float64Array(seconds + 1).fill(-1);
    this.#counts = new Float64Array(seconds + 1);
  }

  add(timeMs: number, count = 1): void {
    const second = Math.floor(timeMs / 1000);
    const index = second % this.#stamps.length;
    const stamp = this.#stamps[index];
    if (stamp === second) this.#counts[index] += count;
    else if (stamp < second) {
      this.#stamps[index] = second;
      this.#counts[index] = count;
    } // else: older than the ring holds; it no longer affects any rate
  }

  /** Events per second over the `seconds` whole seconds before the one `nowMs` is in. */
  rate(nowMs: number): number {
    const current = Math.floor(nowMs / 1000);
    let sum = 0;
    for (let i = 0; i < this.#stamps.length; i++) {
      const stamp = this.#stamps[i];
      if (stamp >= current - this.#seconds && stamp < current) sum += this.#counts[i];
    }
    return sum / this.#seconds;
  }
}

const SOURCE_RANK: Readonly<Record<Source, number>> = { finnhub: 0, replay: 1, sim: 2 };

/** One symbol of the aggregation: its candle rings and session totals. */
class SymbolSeries {
  readonly symbol: string;
  /** The least real source seen: once any price of the session was simulated, it says so. */
  source: Source;
  readonly rings: CandleRing[];
  readonly rate = new RateWindow(10);
  firstPrice: number;
  firstTime: number;
  last: number;
  lastTime: number;
  volume = 0;
  priceVolume = 0;
  trades = 0;

  constructor(symbol: string, source: Source, rings: CandleRing[], price: number, time: number) {
    this.symbol = symbol;
    this.source = source;
    this.rings = rings;
    this.firstPrice = this.last = price;
    this.firstTime = this.lastTime = time;
  }
}

export class Aggregator {
  readonly #intervals: readonly number[];
  readonly #maxCandles: number;
  readonly #maxSymbols: number;
  readonly #fromMs: number;
  readonly #symbols = new Map<string, SymbolSeries>();
  #sorted: string[] | null = null;
  #revision = 0;

  constructor(options: AggregatorOptions) {
    const { intervalsMs, maxCandles, maxSymbols } = options;
    if (intervalsMs.length === 0) throw new RangeError("Aggregator needs at least one interval");
    for (const interval of intervalsMs) {
      if (!Number.isSafeInteger(interval) || interval <= 0) {
        throw new RangeError(`interval ${interval} ms is not a positive whole number`);
      }
    }
    if (!Number.isSafeInteger(maxCandles) || maxCandles < 1) {
      throw new RangeError(`maxCandles ${maxCandles} is not a positive whole number`);
    }
    if (!Number.isSafeInteger(maxSymbols) || maxSymbols < 1) {
      throw new RangeError(`maxSymbols ${maxSymbols} is not a positive whole number`);
    }
    this.#intervals = Object.freeze([...intervalsMs].sort((a, b) => a - b));
    this.#maxCandles = maxCandles;
    this.#maxSymbols = maxSymbols;
    this.#fromMs = options.fromMs ?? -Infinity;
  }

  /**
   * Applies one record. `now` (the wall clock, ms) only bounds how far ahead a trade
   * may be dated (see the rules above); everything else is by trade time.
   */
  apply(record: TradeRecord, now: number = Date.now()): ApplyResult {
    const { price, volume, time } = record;
    if (time < this.#fromMs) return "too-late";
    if (time > now + MAX_AHEAD_MS) return "too-early";
    let state = this.#symbols.get(record.symbol);
    if (state === undefined) {
      if (this.#symbols.size >= this.#maxSymbols) return "symbol-cap";
      const rings = this.#intervals.map((interval) => new CandleRing(interval, this.#maxCandles));
      state = new SymbolSeries(record.symbol, record.source, rings, price, time);
      this.#symbols.set(record.symbol, state);
      this.#sorted = null;
    } else {
      const rings = state.rings;
      for (let i = 0; i < rings.length; i++) if (!rings[i].accepts(time)) return "too-late";
      if (time < state.firstTime) {
        state.firstTime = time;
        state.firstPrice = price;
      }
      if (time >= state.lastTime) {
        state.lastTime = time;
        state.last = price;
      }
      if (SOURCE_RANK[record.source] > SOURCE_RANK[state.source]) state.source = record.source;
    }
    const revision = ++this.#revision;
    const rings = state.rings;
    for (let i = 0; i < rings.length; i++) rings[i].add(price, volume, time, revision);
    state.trades++;
    if (volume > 0) {
      state.volume += volume;
      state.priceVolume += price * volume;
    }
    state.rate.add(time);
    return "applied";
  }

  revision(): number {
    return this.#revision;
  }

  symbols(): string[] {
    this.#sorted ??= [...this.#symbols.keys()].sort();
    return [...this.#sorted];
  }

  intervals(): readonly number[] {
    return this.#intervals;
  }

  /**
   * The kept candles of one symbol and interval from `fromMs` on, oldest first.
   * The objects are live: the newest ones keep changing (see `revision`); copy
   * them to keep a snapshot. Intervals without trades have no candle.
   */
  candles(symbol: string, intervalMs: number, fromMs = -Infinity): readonly Candle[] {
    const state = this.#symbols.get(symbol);
    const index = this.#intervals.indexOf(intervalMs);
    if (state === undefined || index < 0) return [];
    return state.rings[index].list(fromMs);
  }

  stats(symbol: string, now: number = Date.now()): SymbolStats | undefined {
    const state = this.#symbols.get(symbol);
    if (state === undefined) return undefined;
    const change = state.last - state.firstPrice;
    return {
      symbol,
      source: state.source,
      last: state.last,
      lastTime: state.lastTime,
      change,
      changePct: (change / state.firstPrice) * 100,
      sessionVwap: state.volume > 0 ? state.priceVolume / state.volume : null,
      volume: state.volume,
      trades: state.trades,
      tradesPerSecond: state.rate.rate(now),
    };
  }
}
