// The panels around the charts: quote line, legends, watchlist and symbol picker,
// pipeline stats. Every value from the stream is set as text (setText, textContent,
// new Option): symbols are user-controlled strings and never become markup.

import {
  formatAge,
  formatClock,
  formatCompact,
  formatMs,
  formatPct,
  formatPrice,
  formatRate,
  formatSigned,
  MISSING,
  sourceMark,
} from "./format.js";

/** No frame for this long (the server sends one a second) means the stream stalled. */
const STALE_AFTER_MS = 3_500;

/** "BINANCE:BTCUSDT" shows as BTCUSDT over BINANCE; a plain ticker has no venue line. */
function splitSymbol(symbol) {
  const colon = symbol.indexOf(":");
  return colon > 0 ? [symbol.slice(colon + 1), symbol.slice(0, colon)] : [symbol, ""];
}

export const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** Sets text and a direction class: the only way stream values reach the page. */
export function setText(el, text, direction) {
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

/** The feed gap under the cursor, if any: its reason and length replace the values. */
function gapLegend(el, state, drawn) {
  const time = state.cursor.time;
  const gap = time === null
    ? undefined
    : drawn.gaps.find((gap) => time >= gap.tradeFrom && time <= gap.tradeTo);
  if (gap === undefined) return false;
  legendItems(el, [["", formatClock(gap.tradeFrom, state.zone)], ["", gap.words, "gap"]]);
  el.lastElementChild.title = gap.words; // the whole text, when the line cuts it short
  return true;
}

export function priceLegend(state, drawn) {
  if (gapLegend($("price-legend"), state, drawn)) return;
  const p = drawn.price;
  if (p === null || p.t.length === 0) return legendItems($("price-legend"), []);
  const i = state.cursor.price ?? p.t.length - 1;
  if (i < 0 || i >= p.t.length) return;
  legendItems($("price-legend"), [
    ["", formatClock(p.t[i], state.zone)],
    ["Last ", formatPrice(p.c[i], drawn.decimals), "key-price"],
    ["VWAP ", formatPrice(p.vwap[i], drawn.decimals), "key-vwap"],
  ]);
}

export function candleLegend(state, drawn) {
  if (gapLegend($("candle-legend"), state, drawn)) return;
  const c = drawn.candles;
  if (c === null || c.t.length === 0) return legendItems($("candle-legend"), []);
  const i = state.cursor.candle ?? c.t.length - 1;
  if (i < 0 || i >= c.t.length) return;
  const d = drawn.decimals;
  const cls = c.c[i] >= c.o[i] ? "up" : "down";
  legendItems($("candle-legend"), [
    ["", formatClock(c.t[i], state.zone)],
    ["O ", formatPrice(c.o[i], d), cls],
    ["H ", formatPrice(c.h[i], d), cls],
    ["L ", formatPrice(c.l[i], d), cls],
    ["C ", formatPrice(c.c[i], d), cls],
    ["Vol ", formatCompact(c.v[i])],
  ]);
}

/** The badge for a source: the terminal's mark for prices that are not live, else LIVE. */
const sourceLabel = (source) => sourceMark(source) || "LIVE · FINNHUB";
const SOURCE_NOTE = {
  sim: "Prices are simulated by the producer (no FINNHUB_TOKEN): they are not market data.",
  replay: "Prices are replayed from a recording: they are not live.",
};

function setBadge(el, source) {
  el.hidden = source === undefined;
  el.dataset.source = source ?? "none";
  setText(el, source === undefined ? "" : sourceLabel(source));
}

export function updateQuote(state, drawn) {
  const stats = state.symbol === null ? undefined : state.stats.get(state.symbol);
  setText($("quote-symbol"), state.symbol ?? MISSING);
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
      setText($(id), MISSING);
    }
  } else {
    const direction = Math.sign(stats.change);
    setText($("quote-last"), formatPrice(stats.last, decimals), direction);
    setText(
      $("quote-change"),
      `${formatSigned(stats.change, decimals)} (${formatPct(stats.changePct)})`,
      direction,
    );
    setText($("quote-vwap"), formatPrice(stats.sessionVwap, decimals));
    setText($("quote-volume"), formatCompact(stats.volume));
    setText($("quote-trades"), formatCompact(stats.trades));
    setText($("quote-tps"), formatRate(stats.tradesPerSecond));
  }
  setText($("quote-high"), s.t.length ? formatPrice(Math.max(...s.h), decimals) : MISSING);
  setText($("quote-low"), s.t.length ? formatPrice(Math.min(...s.l), decimals) : MISSING);
  for (const id of ["price-watermark", "candle-watermark"]) {
    const mark = $(id);
    const label = stats === undefined ? "" : sourceMark(stats.source);
    mark.hidden = label === "";
    setText(mark, label);
  }
  // Say why a chart is empty instead of showing a blank plot.
  const empty = $("chart-empty");
  empty.hidden = s.t.length > 0;
  setText(
    empty,
    state.symbol === null
      ? "Waiting for the first trade…"
      : `No trades for ${state.symbol} in this window yet`,
  );
  document.title = stats === undefined
    ? "market-stream"
    : `${state.symbol} ${formatPrice(stats.last, decimals)} · market-stream`;
}

// --- watchlist and picker --------------------------------------------------------

/** @type {Map<string, {row: HTMLTableRowElement, last: HTMLElement, change: HTMLElement, tps: HTMLElement, tag: HTMLElement, feedTag: HTMLElement, price: number, tick: number}>} */
const rows = new Map();

export function updateWatchlist(state, changed) {
  for (const stats of changed) {
    const entry = rows.get(stats.symbol) ?? addRow(state, stats.symbol);
    // The last price takes the colour of its last tick, as on a trading screen.
    if (entry.price !== 0 && stats.last !== entry.price) {
      entry.tick = Math.sign(stats.last - entry.price);
    }
    entry.price = stats.last;
    setText(entry.last, formatPrice(stats.last), entry.tick);
    setText(entry.change, formatPct(stats.changePct), Math.sign(stats.change));
    setText(entry.tps, formatRate(stats.tradesPerSecond));
    entry.tag.hidden = stats.source === "finnhub";
    entry.tag.dataset.source = stats.source;
    setText(entry.tag, stats.source === "replay" ? "REPLAY" : "SIM");
  }
  $("watchlist-empty").hidden = rows.size > 0;
  setText($("symbol-count"), rows.size > 0 ? String(rows.size) : "");
  updateSourceBadge(state);
}

function addRow(state, symbol) {
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
  const feedTag = document.createElement("span");
  feedTag.className = "tag";
  feedTag.hidden = true;
  sub.append(feedTag);
  const [last, change, tps] = ["num", "num", "num muted"].map((cls) => {
    const td = document.createElement("td");
    td.className = cls;
    return td;
  });
  row.append(cell, last, change, tps);
  const entry = { row, last, change, tps, tag, feedTag, price: 0, tick: 0 };
  rows.set(symbol, entry);
  // Keep the table and the picker sorted, as the server sorts symbols.
  const sorted = [...rows.keys()].sort();
  const next = sorted[sorted.indexOf(symbol) + 1];
  $("watchlist").insertBefore(row, next === undefined ? null : rows.get(next).row);
  syncPicker(state);
  return entry;
}

export function syncPicker(state) {
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

function updateSourceBadge(state) {
  const sources = new Set([...state.stats.values()].map((stats) => stats.source));
  const source = sources.has("sim") ? "sim" : sources.has("replay") ? "replay" : [...sources][0];
  setBadge($("source-badge"), source);
  const note = $("source-note");
  note.hidden = SOURCE_NOTE[source] === undefined;
  setText(note, SOURCE_NOTE[source] ?? "");
}

/**
 * The producer's feed (consumer/feed.ts's FeedSummary): its state in words in the
 * pipeline panel, and STALE or GAP on the symbols it names, with the reason as a tooltip.
 */
export function updateFeed(feed) {
  const words = $("stat-feed");
  setText(words, feed.words);
  words.dataset.state = feed.state;
  words.title = feed.words;
  for (const [symbol, entry] of rows) {
    const mark = feed.symbols[symbol];
    const kind = mark === undefined ? "" : mark.stale ? "stale" : mark.gapped ? "gap" : "";
    entry.feedTag.hidden = kind === "";
    entry.feedTag.dataset.feed = kind;
    setText(entry.feedTag, kind.toUpperCase());
    entry.row.dataset.feed = kind;
    entry.feedTag.title = kind === "stale"
      ? mark.note ?? "no trade for a minute while its market is open"
      : kind === "gap"
      ? "the feed had a gap in this window: see the shaded span on the chart"
      : "";
  }
}

// --- stats panel ---------------------------------------------------------------

export function setConnection(state, connection) {
  state.connection = connection;
  const el = $("connection");
  el.dataset.state = connection;
  setText($("connection-text"), connection);
}

export function updateStats(state) {
  const status = state.status;
  const now = Date.now();
  state.pushTimes = state.pushTimes.filter((time) => time >= now - 5000);
  setText($("stat-pushes"), formatRate(state.pushTimes.length / 5));
  const stalled = state.connection === "live" && now - state.lastFrameAt > STALE_AFTER_MS;
  setText($("stat-stream"), stalled ? "stalled" : state.connection);
  $("stat-stream").dataset.state = stalled ? "stalled" : state.connection;
  if (status === null) return;
  setText($("stat-tps"), formatRate(status.tradesPerSecond));
  setText($("stat-p50"), formatMs(status.latencyP50Ms));
  setText($("stat-p99"), formatMs(status.latencyP99Ms));
  setText($("stat-lag"), formatCompact(status.lag));
  setText($("stat-kafka"), status.connected ? "connected" : "disconnected");
  $("stat-kafka").dataset.state = status.connected ? "live" : "offline";
  setText($("stat-applied"), formatCompact(status.applied));
  setText($("stat-rejected"), formatCompact(status.rejected));
  setText($("stat-late"), formatCompact(status.tooLate));
  setText(
    $("stat-age"),
    status.lastTradeAt === null
      ? "none yet"
      : `${formatAge(now + state.clockOffset - status.lastTradeAt)} ago`,
  );
}
