// @ts-check
/**
 * Chart indicators from candle closes (the session marks and time zones are
 * lib/calendar.js's).
 * Pure functions of arrays: the page computes them from the candles it already
 * holds (no server push), and Deno tests check them against independent
 * references. A plain ES module, served to the page as `/indicators.js` the way
 * lib/format.js is served as `/format.js`.
 *
 * Each indicator returns an array as long as its input, `null` where it is not
 * defined yet (the first `period - 1` points, or `period` for RSI), so it lines up
 * with the candle columns. The definitions, as TA-Lib and most trading screens use:
 *
 * - SMA(n): the mean of the last n closes.
 * - EMA(n): α = 2 / (n + 1); the first value (at index n - 1) is the SMA of the
 *   first n closes, then EMA[i] = α·close[i] + (1 − α)·EMA[i − 1].
 * - Bollinger(n, k): middle = SMA(n); upper/lower = middle ± k·σ, σ the population
 *   standard deviation (divided by n, not n − 1) of the same n closes, as the `ta`
 *   package and TA-Lib compute it. Default 20, 2.
 * - RSI(n): changes d[i] = close[i] − close[i − 1]; gains and losses are smoothed by
 *   Wilder: the first averages (at index n) are the plain means of the first n gains
 *   and losses, then avg[i] = (avg[i − 1]·(n − 1) + value[i]) / n.
 *   RSI = 100 − 100 / (1 + avgGain / avgLoss); 100 when avgLoss is 0 (and 50 when
 *   both are 0: a flat market is neither overbought nor oversold).
 */

/** @typedef {(number | null)[]} Line */

/**
 * @param {number} period
 * @param {string} name
 */
function checkPeriod(period, name) {
  if (!Number.isInteger(period) || period < 1 || period > 1000) {
    throw new RangeError(`${name}: period ${period} is not a whole number from 1 to 1000`);
  }
}

/**
 * Simple moving average: a running sum (one add and one subtract a point), summed
 * afresh every RESUM points so its rounding cannot build up over a long series.
 * @param {readonly number[]} values
 * @param {number} period
 * @returns {Line}
 */
export function sma(values, period) {
  checkPeriod(period, "SMA");
  /** @type {Line} */
  const out = new Array(values.length).fill(null);
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    if (i >= period && i % RESUM === 0) {
      sum = 0;
      for (let k = i - period + 1; k <= i; k++) sum += values[k];
    } else {
      sum += values[i];
      if (i >= period) sum -= values[i - period];
    }
    if (i >= period - 1) out[i] = sum / period;
  }
  return out;
}

const RESUM = 256;

/**
 * Exponential moving average, seeded with the SMA of the first `period` values.
 * @param {readonly number[]} values
 * @param {number} period
 * @returns {Line}
 */
export function ema(values, period) {
  checkPeriod(period, "EMA");
  /** @type {Line} */
  const out = new Array(values.length).fill(null);
  if (values.length < period) return out;
  const alpha = 2 / (period + 1);
  let sum = 0;
  for (let i = 0; i < period; i++) sum += values[i];
  let last = sum / period;
  out[period - 1] = last;
  for (let i = period; i < values.length; i++) {
    last = alpha * values[i] + (1 - alpha) * last;
    out[i] = last;
  }
  return out;
}

/**
 * Bollinger Bands: SMA(period) ± deviations × population σ of the same closes.
 * @param {readonly number[]} values
 * @param {{ period?: number, deviations?: number }} [options] default 20 and 2
 * @returns {{ middle: Line, upper: Line, lower: Line }}
 */
export function bollinger(values, { period = 20, deviations = 2 } = {}) {
  checkPeriod(period, "Bollinger");
  const middle = sma(values, period);
  /** @type {Line} */
  const upper = new Array(values.length).fill(null);
  /** @type {Line} */
  const lower = new Array(values.length).fill(null);
  for (let i = period - 1; i < values.length; i++) {
    const mean = /** @type {number} */ (middle[i]);
    let squares = 0;
    for (let k = i - period + 1; k <= i; k++) squares += (values[k] - mean) ** 2;
    const sigma = Math.sqrt(squares / period);
    upper[i] = mean + deviations * sigma;
    lower[i] = mean - deviations * sigma;
  }
  return { middle, upper, lower };
}

/**
 * Relative strength index with Wilder's smoothing, 0–100.
 * @param {readonly number[]} values
 * @param {number} [period] default 14
 * @returns {Line}
 */
export function rsi(values, period = 14) {
  checkPeriod(period, "RSI");
  /** @type {Line} */
  const out = new Array(values.length).fill(null);
  if (values.length <= period) return out;
  let gain = 0;
  let loss = 0;
  for (let i = 1; i <= period; i++) {
    const change = values[i] - values[i - 1];
    if (change > 0) gain += change;
    else loss -= change;
  }
  gain /= period;
  loss /= period;
  out[period] = strength(gain, loss);
  for (let i = period + 1; i < values.length; i++) {
    const change = values[i] - values[i - 1];
    gain = (gain * (period - 1) + (change > 0 ? change : 0)) / period;
    loss = (loss * (period - 1) + (change < 0 ? -change : 0)) / period;
    out[i] = strength(gain, loss);
  }
  return out;
}

/**
 * @param {number} gain
 * @param {number} loss
 */
function strength(gain, loss) {
  if (loss === 0) return gain === 0 ? 50 : 100;
  return 100 - 100 / (1 + gain / loss);
}

/**
 * The indicator choices of one chart, as the page stores them. Anything missing
 * or out of range falls back to the default, so an old or edited stored value
 * never breaks the page.
 * @typedef {{ sma: number | null, ema: number | null, bollinger: boolean, rsi: boolean }} Choice
 */

/**
 * The longest period the page offers (readChoice accepts 2 to this). The hub sends
 * this many candles before a window (dashboard/hub.ts), so SMA and Bollinger are
 * whole from the window's left edge and EMA and RSI are seeded that far back.
 */
export const MAX_PERIOD = 500;

/** @type {Readonly<Choice>} */
export const NO_INDICATORS = Object.freeze({ sma: null, ema: null, bollinger: false, rsi: false });

/**
 * @param {unknown} raw parsed JSON from storage
 * @returns {Choice}
 */
export function readChoice(raw) {
  const value = /** @type {Record<string, unknown>} */ (typeof raw === "object" && raw ? raw : {});
  /** @param {unknown} p */
  const period = (p) =>
    Number.isInteger(p) && Number(p) >= 2 && Number(p) <= MAX_PERIOD ? Number(p) : null;
  return {
    sma: period(value.sma),
    ema: period(value.ema),
    bollinger: value.bollinger === true,
    rsi: value.rsi === true,
  };
}

/**
 * Every indicator of a choice over the closes.
 * @param {readonly number[]} close
 * @param {Choice} choice
 */
export function compute(close, choice) {
  return {
    sma: choice.sma === null ? null : sma(close, choice.sma),
    ema: choice.ema === null ? null : ema(close, choice.ema),
    bollinger: choice.bollinger ? bollinger(close) : null,
    rsi: choice.rsi ? rsi(close, 14) : null,
  };
}
