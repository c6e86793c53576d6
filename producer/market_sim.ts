/**
 * A simulated market, for when no token is set, the market is closed, or a load
 * test needs 100,000 trades a second. Its records are marked `source: "sim"`, so
 * no chart can pass them off as market data.
 *
 * Each symbol has a start price, a tick size and a volatility (known symbols get
 * plausible ones; others are derived from the name). Prices follow a random walk
 * on the tick grid, scaled by the square root of the time since the symbol's last
 * trade. Each symbol switches between normal trading, bursts (more trades, bigger
 * moves, bigger sizes) and quiet spells. Trade arrivals are a Poisson process whose
 * average over time is the requested rate. The same seed and rate give the same
 * trades (symbol, price, volume and time relative to the start).
 */

import { sleep } from "../lib/async.ts";
import type { Trade } from "../lib/trade.ts";

export type AssetKind = "stock" | "crypto" | "fx";

export interface SymbolProfile {
  readonly kind: AssetKind;
  /** Start price. */
  readonly price: number;
  /** Smallest price step. */
  readonly tick: number;
  /** Relative volatility per square root of a second. */
  readonly vol: number;
  /** Share of the trades, before regimes. */
  readonly weight: number;
}

const KIND_DEFAULTS: Record<AssetKind, { vol: number; weight: number }> = {
  // About 30% a year over US market hours, a little livelier so charts move.
  stock: { vol: 1.5e-4, weight: 1 },
  crypto: { vol: 2e-4, weight: 1.5 },
  fx: { vol: 3e-5, weight: 0.5 },
};

const KNOWN: Record<string, readonly [AssetKind, number, number]> = {
  AAPL: ["stock", 190, 0.01],
  MSFT: ["stock", 415, 0.01],
  NVDA: ["stock", 120, 0.01],
  AMZN: ["stock", 185, 0.01],
  GOOGL: ["stock", 170, 0.01],
  META: ["stock", 500, 0.01],
  TSLA: ["stock", 250, 0.01],
  SPY: ["stock", 550, 0.01],
  QQQ: ["stock", 480, 0.01],
  "BINANCE:BTCUSDT": ["crypto", 65_000, 0.01],
  "BINANCE:ETHUSDT": ["crypto", 3_400, 0.01],
  "BINANCE:SOLUSDT": ["crypto", 150, 0.01],
  "BINANCE:DOGEUSDT": ["crypto", 0.15, 0.00001],
  "OANDA:EUR_USD": ["fx", 1.085, 0.00001],
  "OANDA:GBP_USD": ["fx", 1.27, 0.00001],
  "OANDA:USD_JPY": ["fx", 150, 0.001],
};

const CRYPTO_VENUES =
  /^(BINANCE|COINBASE|KRAKEN|BITFINEX|BITSTAMP|BYBIT|OKX|GEMINI|HUOBI|KUCOIN):/i;
const FX_VENUES = /^(OANDA|FXCM|FXPRO|FOREX\.COM|IC MARKETS|PEPPERSTONE|SAXO):/i;

/** FNV-1a: a stable number per symbol, so an unknown symbol always starts at the same price. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0) / 2 ** 32;
}

export function profileFor(symbol: string): SymbolProfile {
  const known = KNOWN[symbol.toUpperCase()];
  if (known) {
    const [kind, price, tick] = known;
    return { kind, price, tick, ...KIND_DEFAULTS[kind] };
  }
  const h = hash(symbol);
  if (CRYPTO_VENUES.test(symbol)) {
    const price = Math.round(10 ** (h * 4) * 100) / 100; // 1 to 10,000
    return { kind: "crypto", price, tick: price < 10 ? 0.0001 : 0.01, ...KIND_DEFAULTS.crypto };
  }
  if (FX_VENUES.test(symbol)) {
    return {
      kind: "fx",
      price: Math.round((0.5 + h * 1.5) * 1e5) / 1e5,
      tick: 0.00001,
      ...KIND_DEFAULTS.fx,
    };
  }
  return {
    kind: "stock",
    price: Math.round((10 + h * 490) * 100) / 100,
    tick: 0.01,
    ...KIND_DEFAULTS.stock,
  };
}

/** mulberry32: small, fast, and good enough for a simulation; 0 <= x < 1. */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Regime = 0 | 1 | 2; // normal, burst, quiet
const REGIME_RATE = [1, 6, 0.1];
const REGIME_VOL = [1, 2.5, 0.4];
const REGIME_MEAN_MS = [40_000, 6_000, 20_000];
const P_BURST = 0.4; // from normal: a burst, else a quiet spell
/** The long-run average of REGIME_RATE, so the average rate is the one asked for. */
const MEAN_RATE_FACTOR = (() => {
  const time = [REGIME_MEAN_MS[0], P_BURST * REGIME_MEAN_MS[1], (1 - P_BURST) * REGIME_MEAN_MS[2]];
  const total = time[0] + time[1] + time[2];
  return time.reduce((sum, t, i) => sum + t * REGIME_RATE[i], 0) / total;
})();

/** One symbol of the simulated market: its price on the tick grid and its regime. */
interface SimulatedSymbol {
  readonly symbol: string;
  readonly kind: AssetKind;
  /** Price in units of 1/scale: integers keep it on the tick grid exactly. */
  units: number;
  readonly scale: number;
  readonly tickUnits: number;
  readonly vol: number;
  readonly weight: number;
  /** Decimals of a crypto volume (finer for expensive coins). */
  readonly volumeScale: number;
  regime: Regime;
  regimeEnds: number;
  lastAt: number;
}

function decimalsOf(tick: number): number {
  const text = String(tick);
  return text.includes("e-") ? Number(text.split("e-")[1]) : (text.split(".")[1] ?? "").length;
}

export interface MarketOptions {
  readonly symbols: readonly string[];
  readonly seed: number;
  /** Average trades per second over all symbols. */
  readonly rate: number;
  /** Trade times are `start` + the simulated clock (ms). */
  readonly start: number;
}

/** The draws the market makes, all from one seeded generator. */
function randomness(seed: number) {
  const random = createRandom(seed);
  let spare = NaN;
  return {
    random,
    /** A standard normal draw (Box-Muller, the second value kept for the next call). */
    normal(): number {
      if (!Number.isNaN(spare)) {
        const value = spare;
        spare = NaN;
        return value;
      }
      const radius = Math.sqrt(-2 * Math.log(1 - random()));
      const angle = 2 * Math.PI * random();
      spare = radius * Math.sin(angle);
      return radius * Math.cos(angle);
    },
    exponential: (mean: number) => -Math.log(1 - random()) * mean,
  };
}

type Draws = ReturnType<typeof randomness>;

function symbolState(symbol: string, draws: Draws): SimulatedSymbol {
  const profile = profileFor(symbol);
  const scale = 10 ** decimalsOf(profile.tick);
  const volumeDecimals = Math.min(8, Math.max(0, Math.ceil(Math.log10(profile.price)) + 1));
  return {
    symbol,
    kind: profile.kind,
    units: Math.round(profile.price * scale),
    scale,
    tickUnits: Math.round(profile.tick * scale),
    vol: profile.vol,
    weight: profile.weight,
    volumeScale: 10 ** volumeDecimals,
    regime: 0,
    regimeEnds: draws.exponential(REGIME_MEAN_MS[0]),
    lastAt: 0,
  };
}

/** A trade's size, as the symbol's kind of market trades. */
function volumeOf(s: SimulatedSymbol, price: number, draws: Draws): number {
  const { random, normal, exponential } = draws;
  const burst = s.regime === 1 ? 1 + Math.floor(random() * 4) : 1;
  switch (s.kind) {
    case "fx":
      return 0; // FX venues stream price updates, not trades: Finnhub sends v = 0.
    case "crypto": {
      // Notional around $300, log-normal: many small fills, a few large ones.
      const notional = 300 * Math.exp(1.3 * normal()) * burst;
      return Math.max(1, Math.round(notional / price * s.volumeScale)) / s.volumeScale;
    }
    case "stock": {
      const u = random();
      if (u < 0.45) return 1 + Math.floor(99 * random() ** 2); // odd lots
      if (u < 0.99) return 100 * burst * (1 + Math.floor(exponential(1.5)));
      return 100 * (10 + Math.floor(random() * 190)); // blocks
    }
  }
}

/** The next price of `s`: a random walk on the tick grid, scaled by sqrt of the time since its last trade. */
function step(s: SimulatedSymbol, clock: number, draws: Draws): number {
  const dtSeconds = Math.max(clock - s.lastAt, 1) / 1000;
  s.lastAt = clock;
  const sigmaTicks = s.units * s.vol * REGIME_VOL[s.regime] * Math.sqrt(dtSeconds) / s.tickUnits;
  const move = Math.round(draws.normal() * sigmaTicks) * s.tickUnits;
  let units = s.units + move;
  if (units < s.tickUnits) units = Math.max(s.tickUnits, s.units - move); // reflect off zero
  s.units = units;
  return units / s.scale; // an integer over a power of ten: the nearest double to the tick
}

/**
 * The market as a generator of trades in simulated time. `next()` returns the next
 * trade; its time is `start` + the simulated clock, so pacing is the caller's job.
 */
export function createMarket(options: MarketOptions) {
  const draws = randomness(options.seed);
  const states = options.symbols.map((symbol) => symbolState(symbol, draws));
  const baseWeight = states.reduce((sum, s) => sum + s.weight, 0) * MEAN_RATE_FACTOR;
  let clock = 0;

  /** Moves the clock to the next trade and picks its symbol, weighted by regime. */
  function nextSymbol(): SimulatedSymbol {
    let total = 0;
    for (const s of states) {
      while (s.regimeEnds <= clock) {
        s.regime = s.regime !== 0 ? 0 : draws.random() < P_BURST ? 1 : 2;
        s.regimeEnds = clock + draws.exponential(REGIME_MEAN_MS[s.regime]);
      }
      total += s.weight * REGIME_RATE[s.regime];
    }
    clock += draws.exponential(1 / (options.rate * total / baseWeight / 1000));
    let pick = draws.random() * total;
    for (const s of states) {
      pick -= s.weight * REGIME_RATE[s.regime];
      if (pick < 0) return s;
    }
    return states[states.length - 1];
  }

  return {
    next(): Trade {
      const s = nextSymbol();
      const price = step(s, clock, draws);
      const volume = volumeOf(s, price, draws);
      return { symbol: s.symbol, price, volume, time: Math.floor(options.start + clock) };
    },
    /** The simulated clock, ms since `start`. */
    get clock() {
      return clock;
    },
  };
}

export interface SimOptions {
  readonly symbols: readonly string[];
  readonly seed: number;
  /** Trades per second, or "max": as fast as the pipeline takes them. */
  readonly rate: number | "max";
  readonly signal: AbortSignal;
  readonly onTrades: (trades: Trade[], receivedAt: number) => void;
  /** Awaited before each batch at rate "max", so the queue in front of Kafka never overflows. */
  readonly backpressure?: () => Promise<void>;
  readonly log: (line: string) => void;
}

/** The simulated clock's rate at "max": trades are then stamped with the wall clock. */
const MAX_CLOCK_RATE = 100_000;
const MAX_BATCH = 5_000;
/** Falling this far behind the asked rate skips ahead rather than back-dating trades. */
const MAX_LAG_MS = 1_000;

/** Runs the simulated market until `signal` aborts; returns the number of trades made. */
export async function runSim(options: SimOptions): Promise<number> {
  const start = Date.now();
  const max = options.rate === "max";
  const market = createMarket({
    symbols: options.symbols,
    seed: options.seed,
    rate: max ? MAX_CLOCK_RATE : options.rate as number,
    start,
  });
  let made = 0;
  let skew = 0; // ms skipped because the pipeline could not keep the pace
  let pending = market.next();
  let behindShown = false;
  while (!options.signal.aborted) {
    if (max) {
      await options.backpressure?.();
      if (options.signal.aborted) break;
      const now = Date.now();
      const batch: Trade[] = new Array(MAX_BATCH);
      for (let i = 0; i < MAX_BATCH; i++) batch[i] = { ...market.next(), time: now };
      made += MAX_BATCH;
      options.onTrades(batch, now);
      await sleep(0); // let the network and the timers run
      continue;
    }
    const now = Date.now();
    if (now - (pending.time + skew) > MAX_LAG_MS) {
      skew = now - pending.time;
      if (!behindShown) {
        behindShown = true;
        options.log(
          `sim: cannot keep --rate=${options.rate}: the pipeline is slower; skipping ahead ` +
            `(see the status line for the rate reached)`,
        );
      }
    }
    const batch: Trade[] = [];
    while (pending.time + skew <= now && batch.length < MAX_BATCH) {
      batch.push(skew === 0 ? pending : { ...pending, time: pending.time + skew });
      pending = market.next();
    }
    if (batch.length > 0) {
      made += batch.length;
      options.onTrades(batch, now);
    }
    await sleep(Math.min(100, Math.max(5, pending.time + skew - Date.now())), options.signal);
  }
  return made;
}
