// Indicators, the time zone of the axes, session marks and the CSV button: the
// page's wiring for lib/indicators.js (served as /indicators.js). Everything here
// is computed from the candles the page already holds: no request, no push.
//
// Choices are remembered in localStorage: indicators per symbol (a symbol never
// chosen for starts with the last choice made), the zone for every chart.

import uPlot from "./vendor/uPlot.esm.js";
import { baseOptions, fitToBox, setAxisZone } from "./charts.js";
import { candleCsvName, formatCandleCsv } from "./format.js";
import { compute, NO_INDICATORS, readChoice } from "./indicators.js";
import { exchangeZone, usSessionMarks } from "./calendar.js";

const STORE_KEY = "market-stream.indicators";
const ZONE_KEY = "market-stream.zone";
const DEFAULT_PERIODS = { sma: 20, ema: 50 };
const STUDY_COLORS = { sma: "#c084fc", ema: "#22d3ee", band: "rgba(148, 163, 184, 0.75)" };
const SESSION_COLOR = "rgba(240, 185, 11, 0.6)";

/** The series studies.js adds to the price chart, in the order of the overlay columns. */
const OVERLAY_SERIES = [
  { label: "SMA", stroke: STUDY_COLORS.sma, width: 1.4 },
  { label: "EMA", stroke: STUDY_COLORS.ema, width: 1.4 },
  { label: "BB upper", stroke: STUDY_COLORS.band, width: 1 },
  { label: "BB middle", stroke: STUDY_COLORS.band, width: 1, dash: [2, 3] },
  { label: "BB lower", stroke: STUDY_COLORS.band, width: 1 },
];

function load(key) {
  try {
    return JSON.parse(localStorage.getItem(key) ?? "null");
  } catch {
    return null; // storage blocked or edited by hand: start afresh
  }
}

function save(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // storage full or blocked: the choice lasts for this page only
  }
}

/** The choice stored for a symbol, else the last one made. */
function storedChoice(symbol) {
  const stored = load(STORE_KEY) ?? {};
  const bySymbol = stored.bySymbol ?? {};
  if (symbol !== null && Object.hasOwn(bySymbol, symbol)) return readChoice(bySymbol[symbol]);
  return readChoice(stored.last ?? NO_INDICATORS);
}

function storeChoice(symbol, choice) {
  const stored = load(STORE_KEY) ?? {};
  // No prototype: a symbol named "__proto__" is a key like any other.
  const bySymbol = Object.assign(Object.create(null), stored.bySymbol ?? {});
  if (symbol !== null) {
    delete bySymbol[symbol]; // re-inserted last: the most recent choice is kept longest
    bySymbol[symbol] = choice;
  }
  // Bounded: the 200 symbols chosen most recently.
  const names = Object.keys(bySymbol);
  for (const name of names.slice(0, Math.max(0, names.length - 200))) delete bySymbol[name];
  save(STORE_KEY, { bySymbol, last: choice });
}

/** A checkbox with a label, and a period field when the indicator takes one. */
function control(bar, { name, text, period }) {
  const label = document.createElement("label");
  label.className = "study";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.name = name;
  label.append(box, document.createTextNode(text));
  let field = null;
  if (period !== undefined) {
    field = document.createElement("input");
    field.type = "number";
    field.min = "2";
    field.max = "500";
    field.step = "1";
    field.value = String(period);
    field.name = `${name}-period`;
    field.setAttribute("aria-label", `${text} period`);
    label.append(field);
  }
  bar.append(label);
  return { box, field };
}

/** Vertical lines at the session's open and close, labelled, where they fall in the plot. */
function drawSessionMarks(u, marks) {
  const { ctx, bbox } = u;
  const dpr = devicePixelRatio;
  ctx.save();
  ctx.strokeStyle = SESSION_COLOR;
  ctx.fillStyle = SESSION_COLOR;
  ctx.lineWidth = dpr;
  ctx.setLineDash([4 * dpr, 4 * dpr]);
  ctx.font = `${10 * dpr}px sans-serif`;
  ctx.textBaseline = "top";
  for (const mark of marks) {
    const x = Math.round(u.valToPos(mark.at, "x", true)) + 0.5;
    if (x < bbox.left || x > bbox.left + bbox.width) continue;
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
    ctx.fillText(mark.kind === "open" ? "open 09:30 ET" : "close 16:00 ET", x + 4 * dpr, bbox.top);
  }
  ctx.restore();
}

/** The RSI pane: 0–100 with the 30 and 70 lines, its cursor synced with the others. */
function createRsiChart(el) {
  const opts = baseOptions(el.clientWidth || 600, el.clientHeight || 90, { value: 0 }, () => {});
  opts.padding = [6, 4, 6, 18];
  opts.axes[0].show = false; // the price chart above reads the times
  opts.scales.price = { auto: false, range: [0, 100] };
  opts.axes[1].values = (_u, splits) => splits.map((v) => String(v));
  opts.axes[1].splits = () => [30, 70];
  opts.series = [{}, { label: "RSI", scale: "price", stroke: STUDY_COLORS.ema, width: 1.2 }];
  opts.hooks.drawClear = [(u) => {
    const { ctx, bbox } = u;
    const top = u.valToPos(70, "price", true);
    const bottom = u.valToPos(30, "price", true);
    ctx.save();
    ctx.fillStyle = "rgba(34, 211, 238, 0.06)";
    ctx.fillRect(bbox.left, top, bbox.width, bottom - top);
    ctx.restore();
  }];
  const plot = new uPlot(opts, [[], []], el);
  const chart = { plot };
  fitToBox(chart, el);
  return chart;
}

/** A button of the indicator bar. */
function barButton({ id, text = "", title = "" }) {
  const button = document.createElement("button");
  button.type = "button";
  button.id = id;
  button.className = "bar-button";
  button.textContent = text;
  button.title = title;
  return button;
}

/** The indicator bar: a control per indicator, then the zone toggle and the CSV button. */
function buildBar(bar) {
  const controls = {
    sma: control(bar, { name: "sma", text: "SMA", period: DEFAULT_PERIODS.sma }),
    ema: control(bar, { name: "ema", text: "EMA", period: DEFAULT_PERIODS.ema }),
    bands: control(bar, { name: "bollinger", text: "BB 20, 2σ" }),
    strength: control(bar, { name: "rsi", text: "RSI 14" }),
  };
  const zoneButton = barButton({ id: "zone-toggle" });
  const csvButton = barButton({
    id: "csv-download",
    text: "CSV",
    title: "Download the candles in view as CSV",
  });
  const spacer = document.createElement("span");
  spacer.className = "spacer";
  bar.append(spacer, zoneButton, csvButton);
  return { controls, zoneButton, csvButton };
}

/**
 * The indicator choice: shown by the controls, stored per symbol when they change.
 * Returns current(): the chosen symbol's choice (loaded when the symbol changed).
 */
function wireChoice({ controls, bar, state, requestDraw }) {
  const { sma, ema, bands, strength } = controls;
  let symbol = state.symbol;
  let choice = storedChoice(symbol);

  function showChoice() {
    sma.box.checked = choice.sma !== null;
    ema.box.checked = choice.ema !== null;
    if (choice.sma !== null) sma.field.value = String(choice.sma);
    if (choice.ema !== null) ema.field.value = String(choice.ema);
    bands.box.checked = choice.bollinger;
    strength.box.checked = choice.rsi;
  }

  function readControls() {
    const period = (c) => (c.box.checked ? Number(c.field.value) : null);
    choice = readChoice({
      sma: period(sma),
      ema: period(ema),
      bollinger: bands.box.checked,
      rsi: strength.box.checked,
    });
    showChoice();
    storeChoice(state.symbol, choice);
    requestDraw();
  }
  for (const input of bar.querySelectorAll("input")) input.addEventListener("change", readControls);
  showChoice();

  return function current() {
    if (state.symbol !== symbol) {
      symbol = state.symbol;
      choice = storedChoice(symbol);
      showChoice();
    }
    return choice;
  };
}

/**
 * The zone toggle: axes in the browser's zone or the exchange's, remembered.
 * Returns apply(), which sets the axes' zone for the chosen symbol's market.
 */
function wireZone({ button, state, priceEl, requestDraw }) {
  let zone = load(ZONE_KEY) === "exchange" ? "exchange" : "local";

  function exchangeName() {
    const name = exchangeZone(state.market);
    return name === "America/New_York" ? "ET" : name;
  }

  function applyZone() {
    state.zone = zone === "exchange" ? exchangeZone(state.market) : undefined;
    setAxisZone(state.zone);
    button.textContent = zone === "exchange" ? `Time: ${exchangeName()}` : "Time: local";
    button.title = "Axes in the browser's time zone or the exchange's";
    button.setAttribute("aria-pressed", String(zone === "exchange"));
    priceEl.dataset.zone = zone === "exchange" ? exchangeZone(state.market) : "local";
  }
  button.addEventListener("click", () => {
    zone = zone === "exchange" ? "local" : "exchange";
    save(ZONE_KEY, zone);
    applyZone();
    requestDraw();
  });
  applyZone();
  return applyZone;
}

/** The RSI pane: hidden while RSI is off, made the first time it is on. */
function createRsiPane(rsiEl) {
  let rsiChart = null;
  return function show(times, rsi, xRange) {
    rsiEl.hidden = rsi === null;
    if (rsi === null) return;
    rsiChart ??= createRsiChart(rsiEl);
    rsiChart.plot.batch(() => {
      rsiChart.plot.setData([times, rsi], false);
      rsiChart.plot.setScale("x", xRange);
    });
    rsiEl.drawn = rsiChart.plot.data; // what the pane draws, for tests/browser_feed_test.ts
  };
}

/** The indicators of a choice as a short label ("SMA 20,EMA 9,BB,RSI"). */
function choiceLabel(choice) {
  return [
    choice.sma !== null ? `SMA ${choice.sma}` : "",
    choice.ema !== null ? `EMA ${choice.ema}` : "",
    choice.bollinger ? "BB" : "",
    choice.rsi ? "RSI" : "",
  ].filter(Boolean).join(",");
}

/**
 * Wires the indicator bar, the RSI pane, the zone toggle and the CSV button.
 * `state` is app.js's state (symbol, market, interval, held: the window and its
 * warm-up, series: the candles in view); `requestDraw` schedules a redraw.
 * Each draw calls columns(from) then draw(times, indicators, xRange); see below.
 */
export function createStudies(
  { priceChart, candleChart, priceEl, rsiEl, bar, state, requestDraw },
) {
  for (const series of OVERLAY_SERIES) {
    priceChart.plot.addSeries({ scale: "price", spanGaps: false, ...series });
  }
  priceChart.plot.setData(priceChart.plot.series.map(() => []), false);
  const { controls, zoneButton, csvButton } = buildBar(bar);
  const currentChoice = wireChoice({ controls, bar, state, requestDraw });
  const applyZone = wireZone({ button: zoneButton, state, priceEl, requestDraw });
  const showRsi = createRsiPane(rsiEl);
  let marks = [];
  let last = null; // what columns() computed, for draw()

  csvButton.addEventListener("click", () => {
    const s = state.series;
    const rows = s.t.map((t, i) => [t, s.o[i], s.h[i], s.l[i], s.c[i], s.v[i], s.w[i], s.n[i]]);
    const blob = new Blob([formatCandleCsv(rows)], { type: "text/csv;charset=utf-8" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    const symbol = state.symbol ?? "candles";
    link.download = candleCsvName({ symbol, intervalMs: state.interval, first: rows[0]?.[0] });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    csvButton.dataset.rows = String(rows.length);
  });

  for (const chart of [priceChart, candleChart]) {
    chart.plot.hooks.draw = [...(chart.plot.hooks.draw ?? []), (u) => drawSessionMarks(u, marks)];
  }

  return {
    /**
     * The indicator columns of the candles in view (from index `from` of state.held
     * on): SMA, EMA, the three bands and RSI, null where off. Each is computed over
     * every candle held, warm-up included, then cut to the view: a value does not
     * depend on the window it is seen in.
     */
    columns(from) {
      const choice = currentChoice();
      const held = state.held;
      const started = performance.now();
      const values = compute(held.c, choice);
      last = { choice, from, values, ms: performance.now() - started };
      const empty = new Array(held.t.length - from).fill(null);
      const view = (v) => (v === null ? empty : v.slice(from));
      const bands = values.bollinger;
      return [values.sma, values.ema, bands?.upper, bands?.middle, bands?.lower, values.rsi]
        .map((v) => view(v ?? null));
    },

    /**
     * The columns above broken at feed gaps (app.js), aligned with `times`: shows
     * RSI in its pane, the zone and the session marks; returns the price chart's
     * overlay columns.
     */
    draw(times, indicators, xRange) {
      const { choice, from, values, ms } = last;
      applyZone();
      // Session marks on intraday charts of US stocks (the only hours the page marks).
      marks = state.market === "us-stock" && state.interval < 86_400_000
        ? usSessionMarks(xRange.min, xRange.max)
        : [];
      priceEl.dataset.sessionMarks = String(marks.length);
      showRsi(times, values.rsi === null ? null : indicators[5], xRange);
      const overlays = indicators.slice(0, 5);
      // What the page holds, for the real-browser test (tests/browser_studies_test.ts):
      // the candles held (the view starts at `from`), the values over all of them,
      // and the overlay columns drawn (aligned with the price line).
      const held = state.held;
      priceEl.studies = { choice, times: held.t, close: held.c, from, values, overlays, ms };
      priceEl.dataset.studies = choiceLabel(choice);
      return overlays;
    },
  };
}
