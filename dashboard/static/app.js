// The dashboard page: one EventSource to /events, candles of the chosen symbol kept
// in columns, and at most one chart redraw per animation frame.
//
// Every value from the stream reaches the DOM through textContent or an <option>'s
// text, never as HTML: symbols are user-controlled strings.

import { createCandleChart, createPriceChart, fitToBox } from "./charts.js";
import { initAlerts, onAlerts } from "./alerts.js";
import { formatClock, formatInterval, priceDecimals } from "./format.js";
import { breakAtGaps, feedGaps } from "./gaps.js";
import { createStudies } from "./studies.js";
import {
  $,
  candleLegend,
  priceLegend,
  setConnection,
  setText,
  syncPicker,
  updateFeed,
  updateQuote,
  updateStats,
  updateWatchlist,
} from "./panels.js";
import { initWatchlist } from "./watchlist.js";
import { initCompare } from "./compare.js";

/** The windows the page offers, and the candle width of the candlestick view in each. */
const WINDOWS = { "1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000 };
const CANDLES_PER_WINDOW = 60;
const RETRY_MAX_MS = 15_000;

/**
 * @typedef {[number, number, number, number, number, number, number | null, number]} Row
 * A candle as the server sends it (dashboard/wire.ts):
 * time, open, high, low, close, volume, vwap, trades.
 */

/** The column each field of a Row goes to, in the Row's order. */
const COLUMNS = ["t", "o", "h", "l", "c", "v", "w", "n"];

/** Candles of the chosen symbol as columns, sorted by time. */
function emptySeries() {
  return { t: [], o: [], h: [], l: [], c: [], v: [], w: [], n: [] };
}

const state = {
  /** @type {string | null} */
  symbol: null,
  /** @type {string | null} the symbol's market (lib/market_hours.ts), from the snapshot */
  market: null,
  /** @type {string | undefined} the zone of the axes and legends: the browser's, or an IANA name (studies.js) */
  zone: undefined,
  window: "5m",
  interval: 1000,
  /** The candles held: the window and up to `warmup` before it, for the indicators. */
  held: emptySeries(),
  /** How many candles before the window the hub sends and the page keeps (hub.ts). */
  warmup: 0,
  /** The candles in view (the window): what is drawn, quoted and exported. */
  series: emptySeries(),
  /** @type {Map<string, any>} latest SymbolStats by symbol */
  stats: new Map(),
  /** @type {any} ConsumerStatus */
  status: null,
  /** @type {any} FeedSummary (consumer/feed.ts): sent with snapshots and heartbeats */
  feed: null,
  streams: 0,
  /** Server clock minus ours, from the last frame: ages are measured on the server's clock. */
  clockOffset: 0,
  lastFrameAt: 0,
  /** @type {EventSource | null} */
  source: null,
  /** @type {string | null} */
  lastEventId: null,
  retryDelay: 1000,
  /** @type {number | undefined} */
  retryTimer: undefined,
  connection: "connecting",
  /** Arrival times of the last pushes, for the updates/s figure. */
  pushTimes: /** @type {number[]} */ ([]),
  drawScheduled: false,
  /** The point under the cursor of each chart, and the time under it. */
  cursor: { price: null, candle: null, time: null },
};

// --- columns -------------------------------------------------------------------

function lowerBound(list, value) {
  let low = 0;
  let high = list.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (list[mid] < value) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** Inserts or replaces one candle. The server sends whole candles: a repeat is harmless. */
function upsert(series, /** @type {Row} */ row) {
  const time = row[0];
  const last = series.t.length - 1;
  let i;
  if (last < 0 || time > series.t[last]) i = last + 1;
  else if (time === series.t[last]) i = last;
  else i = lowerBound(series.t, time);
  if (series.t[i] === time) {
    for (let k = 1; k < COLUMNS.length; k++) series[COLUMNS[k]][i] = row[k];
  } else {
    for (let k = 0; k < COLUMNS.length; k++) series[COLUMNS[k]].splice(i, 0, row[k]);
  }
}

/** The index of the first candle in view: the window ends with the last candle. */
function windowStart(series) {
  const count = series.t.length;
  if (count === 0) return 0;
  return lowerBound(series.t, series.t[count - 1] - WINDOWS[state.window] + state.interval);
}

/**
 * Drops candles before the window and its warm-up, so memory stays bounded
 * however long the tab is open.
 */
function trim(series) {
  const drop = windowStart(series) - state.warmup;
  if (drop > 0) { for (const key of COLUMNS) series[key].splice(0, drop); }
}

/** The columns from index `from` on (the same object when that is all of them). */
function columnsFrom(series, from) {
  if (from === 0) return series;
  return Object.fromEntries(COLUMNS.map((key) => [key, series[key].slice(from)]));
}

// --- stream --------------------------------------------------------------------

function connect() {
  clearTimeout(state.retryTimer);
  state.source?.close();
  const params = new URLSearchParams({ window: state.window, interval: String(state.interval) });
  if (state.symbol !== null) params.set("symbol", state.symbol);
  if (state.lastEventId !== null) params.set("since", state.lastEventId);
  const source = new EventSource(`/events?${params}`);
  state.source = source;
  setConnection(state, state.connection === "live" ? "reconnecting" : "connecting");
  source.addEventListener("snapshot", (event) => {
    if (source === state.source) onSnapshot(JSON.parse(event.data), event.lastEventId);
  });
  source.addEventListener("delta", (event) => {
    if (source === state.source) onDelta(JSON.parse(event.data), event.lastEventId);
  });
  source.addEventListener("open", () => {
    if (source !== state.source) return;
    state.retryDelay = 1000;
    setConnection(state, "live");
  });
  source.addEventListener("error", () => {
    if (source !== state.source) return;
    if (source.readyState === EventSource.CONNECTING) {
      // The browser retries by itself and sends Last-Event-ID: the server resumes.
      setConnection(state, "reconnecting");
      return;
    }
    // Refused (503 at the stream cap, or the server is gone): retry with backoff.
    source.close();
    setConnection(state, "offline");
    const delay = state.retryDelay * (0.8 + Math.random() * 0.4);
    state.retryDelay = Math.min(RETRY_MAX_MS, state.retryDelay * 2);
    state.retryTimer = setTimeout(connect, delay);
  });
}

function onSnapshot(message, id) {
  state.lastEventId = id || null;
  if (message.symbol !== null && message.symbol !== state.symbol) {
    state.symbol = message.symbol;
    saveLocation();
  }
  state.interval = message.interval;
  state.market = message.market ?? null;
  state.warmup = message.warmup ?? 0;
  const series = emptySeries();
  for (const row of message.candles) upsert(series, row);
  state.held = series;
  trim(series);
  watchlist.seed(message);
  onCommon(message);
  syncPicker(state);
}

function onDelta(message, id) {
  state.lastEventId = id || null;
  if (message.symbol === state.symbol && message.interval === state.interval) {
    for (const row of message.candles) upsert(state.held, row);
    trim(state.held);
  }
  onCommon(message);
}

function onCommon(message) {
  const now = Date.now();
  state.clockOffset = message.now - now;
  state.lastFrameAt = now;
  state.pushTimes.push(now);
  while (state.pushTimes.length > 0 && state.pushTimes[0] < now - 5000) state.pushTimes.shift();
  for (const stats of message.stats) state.stats.set(stats.symbol, stats);
  state.status = message.status;
  if (message.feed !== undefined) {
    state.feed = message.feed;
    updateFeed(message.feed);
  }
  state.streams = message.streams;
  onAlerts(message.alerts);
  if (state.connection !== "live") setConnection(state, "live");
  updateWatchlist(state, message.stats);
  watchlist.update(message);
  compare.update();
  requestDraw();
}

// --- drawing -------------------------------------------------------------------

const priceEl = $("price-chart");
const candleEl = $("candle-chart");
const priceChart = createPriceChart(priceEl, (idx, time) => {
  state.cursor.price = idx;
  state.cursor.time = time;
  priceLegend(state, drawn);
});
const candleChart = createCandleChart(candleEl, (idx, time) => {
  state.cursor.candle = idx;
  state.cursor.time = time;
  candleLegend(state, drawn);
});
fitToBox(priceChart, priceEl);
fitToBox(candleChart, candleEl);
const studies = createStudies({
  priceChart,
  candleChart,
  priceEl,
  rsiEl: $("rsi-chart"),
  bar: $("studies"),
  state,
  requestDraw,
});

/** The chart data of the last draw, for the legends. */
let drawn = { price: null, candles: null, decimals: 2, gaps: [] };

/** setData at most once per animation frame, however many pushes arrived since the last. */
function requestDraw() {
  if (state.drawScheduled) return;
  state.drawScheduled = true;
  requestAnimationFrame(draw);
}

function draw() {
  state.drawScheduled = false;
  const from = windowStart(state.held);
  const s = (state.series = columnsFrom(state.held, from));
  const count = s.t.length;
  const windowMs = WINDOWS[state.window];
  const right = count > 0 ? s.t[count - 1] + state.interval : Date.now() + state.clockOffset;
  const xRange = { min: right - windowMs, max: right };
  const decimals = priceDecimals(count > 0 ? s.c[count - 1] : 100);

  // VWAP over the window: sum(price * volume) / sum(volume), from each candle's own VWAP.
  const vwap = new Array(count);
  let priceVolume = 0;
  let volume = 0;
  for (let i = 0; i < count; i++) {
    if (s.w[i] !== null && s.v[i] > 0) {
      priceVolume += s.w[i] * s.v[i];
      volume += s.v[i];
    }
    vwap[i] = volume > 0 ? priceVolume / volume : null;
  }
  const candles = bucket(s, Math.max(state.interval, windowMs / CANDLES_PER_WINDOW));
  const gaps = feedGaps(state.feed, [state.symbol]);
  // Price, VWAP and the indicators of the candles in view (studies.js), broken at gaps.
  const columns = [s.c, vwap, ...studies.columns(from)];
  const line = breakAtGaps({ times: s.t, columns, width: state.interval }, gaps);
  const [close, lineVwap, ...indicators] = line.columns;
  priceChart.setData({
    times: line.times,
    close,
    vwap: lineVwap,
    // The tag takes the colour of the last candle in the candlestick view below.
    up: candles.t.length === 0 || candles.c.at(-1) >= candles.o.at(-1),
    volumeBars: {
      t: candles.t,
      v: candles.v,
      up: candles.c.map((close, i) => close >= candles.o[i]),
      width: candles.width,
    },
    xRange,
    priceDecimals: decimals,
    feedGaps: gaps,
    overlays: studies.draw(line.times, indicators, xRange),
  });
  candleChart.setData(
    candles.t,
    candles.o,
    candles.h,
    candles.l,
    candles.c,
    candles.v,
    candles.width,
    xRange,
    decimals,
    gaps,
  );

  drawn = { price: { t: line.times, c: close, vwap: lineVwap }, candles, decimals, gaps };
  priceEl.dataset.points = String(count);
  priceEl.dataset.last = String(count > 0 ? s.t[count - 1] : 0);
  candleEl.dataset.points = String(candles.t.length);
  priceEl.dataset.draws = String(Number(priceEl.dataset.draws ?? 0) + 1);
  $("candle-width").textContent = `${formatInterval(candles.width)} candles`;
  updateQuote(state, drawn);
  priceLegend(state, drawn);
  candleLegend(state, drawn);
  updateStats(state);
}

/** Merges the fine candles into wider ones: open of the first, close of the last. */
function bucket(s, width) {
  const out = { t: [], o: [], h: [], l: [], c: [], v: [], width };
  for (let i = 0; i < s.t.length; i++) {
    const start = Math.floor(s.t[i] / width) * width;
    const last = out.t.length - 1;
    if (last >= 0 && out.t[last] === start) {
      if (s.h[i] > out.h[last]) out.h[last] = s.h[i];
      if (s.l[i] < out.l[last]) out.l[last] = s.l[i];
      out.c[last] = s.c[i];
      out.v[last] += s.v[i];
    } else {
      out.t.push(start);
      out.o.push(s.o[i]);
      out.h.push(s.h[i]);
      out.l.push(s.l[i]);
      out.c.push(s.c[i]);
      out.v.push(s.v[i]);
    }
  }
  return out;
}

function selectSymbol(symbol) {
  if (symbol === state.symbol) return;
  state.symbol = symbol;
  state.held = emptySeries();
  state.lastEventId = null;
  state.cursor = { price: null, candle: null, time: null };
  saveLocation();
  syncPicker(state);
  requestDraw();
  connect();
}

function selectWindow(name) {
  if (!(name in WINDOWS)) return;
  for (const button of document.querySelectorAll("#window-picker button")) {
    button.setAttribute("aria-pressed", String(button.dataset.window === name));
  }
  if (name === state.window) return;
  state.window = name;
  state.held = emptySeries();
  state.lastEventId = null;
  saveLocation();
  requestDraw();
  connect();
}

function tick() {
  setText($("clock"), formatClock(Date.now() + state.clockOffset));
  updateStats(state);
}

// --- location --------------------------------------------------------------------

function saveLocation() {
  const params = new URLSearchParams({ window: state.window });
  if (state.symbol !== null) params.set("symbol", state.symbol);
  history.replaceState(null, "", `#${params}`);
}

function loadLocation() {
  const params = new URLSearchParams(location.hash.slice(1));
  const symbol = params.get("symbol");
  if (symbol) state.symbol = symbol;
  const window = params.get("window");
  if (window && window in WINDOWS) state.window = window;
}

// --- start -----------------------------------------------------------------------

loadLocation();
// Sparklines, sorting and the ↑/↓ and 1–4 keys (watchlist.js).
const watchlist = initWatchlist({
  table: $("watchlist-table"),
  sortPicker: $("watchlist-sort"),
  stats: () => state.stats,
  current: () => state.symbol,
  select: selectSymbol,
  selectWindow,
});
// Several symbols as % change on one chart, from the sparklines' data (compare.js).
const compare = initCompare({
  sparks: watchlist.sparks,
  stats: () => state.stats,
  feed: () => state.feed,
  current: () => state.symbol,
  symbols: () => [...state.stats.keys()].sort(),
});
// One listener for every watchlist row, present and future.
$("watchlist").addEventListener("click", (event) => {
  const row = /** @type {HTMLElement} */ (event.target).closest("tr");
  if (row?.dataset.symbol !== undefined) selectSymbol(row.dataset.symbol);
});
$("watchlist").addEventListener("keydown", (event) => {
  const row = /** @type {HTMLElement} */ (event.target).closest("tr");
  if ((event.key === "Enter" || event.key === " ") && row?.dataset.symbol !== undefined) {
    event.preventDefault();
    selectSymbol(row.dataset.symbol);
  }
});
$("symbol-picker").addEventListener("change", (event) => {
  selectSymbol(/** @type {HTMLSelectElement} */ (event.target).value);
});
for (const button of document.querySelectorAll("#window-picker button")) {
  button.addEventListener("click", () => selectWindow(button.dataset.window));
  button.setAttribute("aria-pressed", String(button.dataset.window === state.window));
}
syncPicker(state);
initAlerts(() => state.symbol);
setInterval(tick, 250);
tick();
connect();
