// The dashboard page: one EventSource to /events, candles of the chosen symbol kept
// in columns, and at most one chart redraw per animation frame.
//
// Every value from the stream reaches the DOM through textContent or an <option>'s
// text, never as HTML: symbols are user-controlled strings.

import {
  createCandleChart,
  createPriceChart,
  decimalsFor,
  fitToBox,
  formatCompact,
  formatPrice,
  formatSigned,
} from "/charts.js";

/** The windows the page offers, and the candle width of the candlestick view in each. */
const WINDOWS = { "1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000 };
const CANDLES_PER_WINDOW = 60;
const RETRY_MAX_MS = 15_000;
const STALE_AFTER_MS = 3_500;

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * @typedef {[number, number, number, number, number, number, number, number | null]} Row
 * start, open, high, low, close, volume, trades, vwap — as the server sends them.
 */

/** Candles of the chosen symbol as columns, sorted by start, bounded by the window. */
function emptySeries() {
  return { t: [], o: [], h: [], l: [], c: [], v: [], n: [], w: [] };
}

const state = {
  /** @type {string | null} */
  symbol: null,
  window: "5m",
  interval: 1000,
  series: emptySeries(),
  /** @type {Map<string, any>} latest SymbolStats by symbol */
  stats: new Map(),
  /** @type {any} ConsumerStatus */
  status: null,
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
  cursor: { price: null, candle: null },
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
  const start = row[0];
  const last = series.t.length - 1;
  let i;
  if (last < 0 || start > series.t[last]) i = last + 1;
  else if (start === series.t[last]) i = last;
  else i = lowerBound(series.t, start);
  const keys = ["t", "o", "h", "l", "c", "v", "n", "w"];
  if (series.t[i] === start) {
    for (let k = 1; k < keys.length; k++) series[keys[k]][i] = row[k];
  } else {
    for (let k = 0; k < keys.length; k++) series[keys[k]].splice(i, 0, row[k]);
  }
}

/** Drops candles that left the window, so memory stays bounded however long the tab is open. */
function trim(series) {
  const count = series.t.length;
  if (count === 0) return;
  const cutoff = series.t[count - 1] - WINDOWS[state.window] + state.interval;
  const drop = lowerBound(series.t, cutoff);
  if (drop > 0) { for (const key of Object.keys(series)) series[key].splice(0, drop); }
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
  setConnection(state.connection === "live" ? "reconnecting" : "connecting");
  source.addEventListener("snapshot", (event) => {
    if (source === state.source) onSnapshot(JSON.parse(event.data), event.lastEventId);
  });
  source.addEventListener("delta", (event) => {
    if (source === state.source) onDelta(JSON.parse(event.data), event.lastEventId);
  });
  source.addEventListener("open", () => {
    if (source !== state.source) return;
    state.retryDelay = 1000;
    setConnection("live");
  });
  source.addEventListener("error", () => {
    if (source !== state.source) return;
    if (source.readyState === EventSource.CONNECTING) {
      // The browser retries by itself and sends Last-Event-ID: the server resumes.
      setConnection("reconnecting");
      return;
    }
    // Refused (503 at the stream cap, or the server is gone): retry with backoff.
    source.close();
    setConnection("offline");
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
  const series = emptySeries();
  for (const row of message.candles) upsert(series, row);
  state.series = series;
  trim(series);
  onCommon(message);
  syncPicker();
}

function onDelta(message, id) {
  state.lastEventId = id || null;
  if (message.symbol === state.symbol && message.interval === state.interval) {
    for (const row of message.candles) upsert(state.series, row);
    trim(state.series);
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
  state.streams = message.streams;
  if (state.connection !== "live") setConnection("live");
  updateWatchlist(message.stats);
  requestDraw();
}

// --- drawing -------------------------------------------------------------------

const priceEl = $("price-chart");
const candleEl = $("candle-chart");
const priceChart = createPriceChart(priceEl, (idx) => {
  state.cursor.price = idx;
  priceLegend();
});
const candleChart = createCandleChart(candleEl, (idx) => {
  state.cursor.candle = idx;
  candleLegend();
});
fitToBox(priceChart, priceEl);
fitToBox(candleChart, candleEl);

/** The chart data of the last draw, for the legends. */
let drawn = { price: null, candles: null, decimals: 2 };

/** setData at most once per animation frame, however many pushes arrived since the last. */
function requestDraw() {
  if (state.drawScheduled) return;
  state.drawScheduled = true;
  requestAnimationFrame(draw);
}

function draw() {
  state.drawScheduled = false;
  const s = state.series;
  const count = s.t.length;
  const windowMs = WINDOWS[state.window];
  const right = count > 0 ? s.t[count - 1] + state.interval : Date.now() + state.clockOffset;
  const xRange = { min: right - windowMs, max: right };
  const decimals = decimalsFor(count > 0 ? s.c[count - 1] : 100);

  // VWAP over the window: sum(price * volume) / sum(volume), from each candle's own VWAP.
  const vwap = new Array(count);
  const up = new Array(count);
  let priceVolume = 0;
  let volume = 0;
  for (let i = 0; i < count; i++) {
    if (s.w[i] !== null && s.v[i] > 0) {
      priceVolume += s.w[i] * s.v[i];
      volume += s.v[i];
    }
    vwap[i] = volume > 0 ? priceVolume / volume : null;
    up[i] = s.c[i] >= s.o[i];
  }
  priceChart.setData(s.t, s.c, vwap, s.v, up, state.interval, xRange, decimals);

  const candles = bucket(s, Math.max(state.interval, windowMs / CANDLES_PER_WINDOW));
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
  );

  drawn = { price: { t: s.t, c: s.c, vwap, v: s.v }, candles, decimals };
  priceEl.dataset.points = String(count);
  priceEl.dataset.last = String(count > 0 ? s.t[count - 1] : 0);
  candleEl.dataset.points = String(candles.t.length);
  priceEl.dataset.draws = String(Number(priceEl.dataset.draws ?? 0) + 1);
  $("candle-width").textContent = `${formatDuration(candles.width)} candles`;
  updateQuote();
  priceLegend();
  candleLegend();
  updateStats();
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

// --- text ----------------------------------------------------------------------

function formatDuration(ms) {
  if (ms < 60_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.round(ms / 3_600_000)}h`;
}

function formatAge(ms) {
  if (ms < 0) ms = 0;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s ago`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s ago`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min ago`;
  return `${Math.round(ms / 3_600_000)} h ago`;
}

/** Trades per second: one decimal while small, whole numbers beyond 10. */
function formatRate(rate) {
  return rate < 10 ? rate.toFixed(1) : formatCompact(Math.round(rate));
}

function formatMs(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

function formatTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString("en-GB", { hour12: false });
}

/** Sets text and a direction class: the only way stream values reach the page. */
function setText(el, text, direction) {
  if (el.textContent !== text) el.textContent = text;
  if (direction !== undefined) {
    el.classList.toggle("up", direction > 0);
    el.classList.toggle("down", direction < 0);
  }
}

function legendItems(el, items) {
  el.replaceChildren(...items.map(([label, value, cls]) => {
    const span = document.createElement("span");
    span.className = `legend-item ${cls ?? ""}`;
    const key = document.createElement("b");
    key.textContent = label;
    span.append(key, document.createTextNode(value));
    return span;
  }));
}

function priceLegend() {
  const p = drawn.price;
  if (p === null || p.t.length === 0) return legendItems($("price-legend"), []);
  const i = state.cursor.price ?? p.t.length - 1;
  if (i < 0 || i >= p.t.length) return;
  legendItems($("price-legend"), [
    ["", formatTime(p.t[i])],
    ["Last ", formatPrice(p.c[i], drawn.decimals), "key-price"],
    ["VWAP ", formatPrice(p.vwap[i], drawn.decimals), "key-vwap"],
    ["Vol ", formatCompact(p.v[i])],
  ]);
}

function candleLegend() {
  const c = drawn.candles;
  if (c === null || c.t.length === 0) return legendItems($("candle-legend"), []);
  const i = state.cursor.candle ?? c.t.length - 1;
  if (i < 0 || i >= c.t.length) return;
  const d = drawn.decimals;
  const cls = c.c[i] >= c.o[i] ? "up" : "down";
  legendItems($("candle-legend"), [
    ["", formatTime(c.t[i])],
    ["O ", formatPrice(c.o[i], d), cls],
    ["H ", formatPrice(c.h[i], d), cls],
    ["L ", formatPrice(c.l[i], d), cls],
    ["C ", formatPrice(c.c[i], d), cls],
    ["Vol ", formatCompact(c.v[i])],
  ]);
}

const SOURCE_LABEL = { sim: "SIMULATED", replay: "REPLAY", finnhub: "LIVE · FINNHUB" };
const SOURCE_NOTE = {
  sim: "Prices are simulated by the producer (no FINNHUB_TOKEN): they are not market data.",
  replay: "Prices are replayed from a recording: they are not live.",
};

function setBadge(el, source) {
  el.hidden = source === undefined;
  el.dataset.source = source ?? "none";
  setText(el, source === undefined ? "" : SOURCE_LABEL[source]);
}

function updateQuote() {
  const stats = state.symbol === null ? undefined : state.stats.get(state.symbol);
  setText($("quote-symbol"), state.symbol ?? "—");
  setBadge($("quote-badge"), stats?.source);
  const s = state.series;
  const decimals = drawn.decimals;
  if (stats === undefined) {
    for (
      const id of [
        "quote-last",
        "quote-change",
        "quote-vwap",
        "quote-volume",
        "quote-trades",
        "quote-tps",
      ]
    ) {
      setText($(id), "—");
    }
  } else {
    const direction = Math.sign(stats.change);
    setText($("quote-last"), formatPrice(stats.last, decimals), direction);
    setText(
      $("quote-change"),
      `${formatSigned(stats.change, decimals)} (${formatSigned(stats.changePct, 2)}%)`,
      direction,
    );
    setText($("quote-vwap"), formatPrice(stats.sessionVwap, decimals));
    setText($("quote-volume"), formatCompact(stats.volume));
    setText($("quote-trades"), formatCompact(stats.trades));
    setText($("quote-tps"), formatRate(stats.tradesPerSecond));
  }
  setText($("quote-high"), s.t.length ? formatPrice(Math.max(...s.h), decimals) : "—");
  setText($("quote-low"), s.t.length ? formatPrice(Math.min(...s.l), decimals) : "—");
  for (const id of ["price-watermark", "candle-watermark"]) {
    const mark = $(id);
    const label = stats?.source === "finnhub" ? undefined : SOURCE_LABEL[stats?.source];
    mark.hidden = label === undefined;
    setText(mark, label ?? "");
  }
}

// --- watchlist and picker --------------------------------------------------------

/** @type {Map<string, {row: HTMLTableRowElement, last: HTMLElement, change: HTMLElement, tps: HTMLElement, tag: HTMLElement, price: number, tick: number}>} */
const rows = new Map();

function updateWatchlist(changed) {
  for (const stats of changed) {
    const entry = rows.get(stats.symbol) ?? addRow(stats.symbol);
    // The last price takes the colour of its last tick, as on a trading screen.
    if (entry.price !== 0 && stats.last !== entry.price) {
      entry.tick = Math.sign(stats.last - entry.price);
    }
    entry.price = stats.last;
    setText(entry.last, formatPrice(stats.last, decimalsFor(stats.last)), entry.tick);
    setText(entry.change, `${formatSigned(stats.changePct, 2)}%`, Math.sign(stats.change));
    setText(entry.tps, formatRate(stats.tradesPerSecond));
    entry.tag.hidden = stats.source === "finnhub";
    entry.tag.dataset.source = stats.source;
    setText(entry.tag, stats.source === "replay" ? "REPLAY" : "SIM");
  }
  $("watchlist-empty").hidden = rows.size > 0;
  setText($("symbol-count"), rows.size > 0 ? String(rows.size) : "");
  updateSourceBadge();
}

/** "BINANCE:BTCUSDT" shows as BTCUSDT over BINANCE; a plain ticker has no venue line. */
function splitSymbol(symbol) {
  const colon = symbol.indexOf(":");
  return colon > 0 ? [symbol.slice(colon + 1), symbol.slice(0, colon)] : [symbol, ""];
}

function addRow(symbol) {
  const row = document.createElement("tr");
  row.tabIndex = 0;
  row.dataset.symbol = symbol;
  row.title = symbol;
  const [shortName, venue] = splitSymbol(symbol);
  const cell = document.createElement("td");
  const name = document.createElement("span");
  name.className = "sym-name";
  name.textContent = shortName;
  const sub = document.createElement("span");
  sub.className = "sym-sub";
  const venueText = document.createElement("span");
  venueText.textContent = venue;
  const tag = document.createElement("span");
  tag.className = "tag";
  sub.append(venueText, tag);
  cell.append(name, sub);
  const [last, change, tps] = ["num", "num", "num muted"].map((cls) => {
    const td = document.createElement("td");
    td.className = cls;
    return td;
  });
  row.append(cell, last, change, tps);
  row.addEventListener("click", () => selectSymbol(symbol));
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") selectSymbol(symbol);
  });
  const entry = { row, last, change, tps, tag, price: 0, tick: 0 };
  rows.set(symbol, entry);
  // Keep the table and the picker sorted, as the server sorts symbols.
  const sorted = [...rows.keys()].sort();
  const next = sorted[sorted.indexOf(symbol) + 1];
  $("watchlist").insertBefore(row, next === undefined ? null : rows.get(next).row);
  syncPicker();
  return entry;
}

function syncPicker() {
  const picker = /** @type {HTMLSelectElement} */ ($("symbol-picker"));
  const symbols = [...rows.keys()].sort();
  if (state.symbol !== null && !rows.has(state.symbol)) symbols.unshift(state.symbol);
  const current = [...picker.options].map((option) => option.value);
  if (current.join("\n") !== symbols.join("\n")) {
    // new Option(text, value) sets text, never markup.
    picker.replaceChildren(...symbols.map((symbol) => new Option(symbol, symbol)));
  }
  if (state.symbol !== null) picker.value = state.symbol;
  for (const [symbol, entry] of rows) {
    entry.row.classList.toggle("selected", symbol === state.symbol);
  }
}

function updateSourceBadge() {
  const sources = new Set([...state.stats.values()].map((stats) => stats.source));
  const source = sources.has("sim") ? "sim" : sources.has("replay") ? "replay" : [...sources][0];
  setBadge($("source-badge"), source);
  const note = $("source-note");
  note.hidden = SOURCE_NOTE[source] === undefined;
  setText(note, SOURCE_NOTE[source] ?? "");
}

function selectSymbol(symbol) {
  if (symbol === state.symbol) return;
  state.symbol = symbol;
  state.series = emptySeries();
  state.lastEventId = null;
  state.cursor = { price: null, candle: null };
  saveLocation();
  syncPicker();
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
  state.series = emptySeries();
  state.lastEventId = null;
  saveLocation();
  requestDraw();
  connect();
}

// --- stats panel -----------------------------------------------------------------

function setConnection(connection) {
  state.connection = connection;
  const el = $("connection");
  el.dataset.state = connection;
  setText($("connection-text"), connection);
}

function updateStats() {
  const status = state.status;
  const now = Date.now();
  state.pushTimes = state.pushTimes.filter((time) => time >= now - 5000);
  setText($("stat-pushes"), (state.pushTimes.length / 5).toFixed(1));
  const stalled = state.connection === "live" && now - state.lastFrameAt > STALE_AFTER_MS;
  setText($("stat-stream"), stalled ? "stalled" : state.connection);
  $("stat-stream").dataset.state = stalled ? "stalled" : state.connection;
  if (status === null) return;
  setText($("stat-tps"), formatCompact(status.tradesPerSecond));
  setText($("stat-p50"), formatMs(status.latencyP50Ms));
  setText($("stat-p99"), formatMs(status.latencyP99Ms));
  setText($("stat-lag"), status.lag === null ? "—" : formatCompact(status.lag));
  setText($("stat-kafka"), status.connected ? "connected" : "disconnected");
  $("stat-kafka").dataset.state = status.connected ? "live" : "offline";
  setText($("stat-applied"), formatCompact(status.applied));
  setText($("stat-rejected"), formatCompact(status.rejected));
  setText($("stat-late"), formatCompact(status.tooLate));
  setText(
    $("stat-age"),
    status.lastTradeAt === null
      ? "none yet"
      : formatAge(now + state.clockOffset - status.lastTradeAt),
  );
}

function tick() {
  setText($("clock"), formatTime(Date.now() + state.clockOffset));
  updateStats();
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
$("symbol-picker").addEventListener("change", (event) => {
  selectSymbol(/** @type {HTMLSelectElement} */ (event.target).value);
});
for (const button of document.querySelectorAll("#window-picker button")) {
  button.addEventListener("click", () => selectWindow(button.dataset.window));
  button.setAttribute("aria-pressed", String(button.dataset.window === state.window));
}
syncPicker();
setInterval(tick, 250);
tick();
connect();
