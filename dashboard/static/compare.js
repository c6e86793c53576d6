// Compare: several symbols on one chart as % change over the last five minutes,
// drawn from the watchlist's sparkline data (the last price every 5 s), so it
// costs no push of its own. Up to MAX_SYMBOLS lines; simulated and replayed
// prices are marked on each symbol's chip; feed gaps are shaded as on the charts.
//
// Symbols reach the page as text only (textContent, new Option).

import uPlot from "./vendor/uPlot.esm.js";
import { baseOptions, drawGaps, fitToBox } from "./charts.js";
import { formatAge, formatPct, sourceMark } from "./format.js";

const STORAGE = "market-stream.compare";
const MAX_SYMBOLS = 6;
const REDRAW_MS = 1000;
const PALETTE = ["#3b82f6", "#f0b90b", "#a78bfa", "#16c784", "#f472b6", "#38bdf8"];

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE) ?? "null");
    if (saved && typeof saved.on === "boolean" && Array.isArray(saved.symbols)) {
      return {
        on: saved.on,
        symbols: saved.symbols.filter((s) => typeof s === "string").slice(0, MAX_SYMBOLS),
      };
    }
  } catch {
    // storage turned off or an old value: the default
  }
  return { on: false, symbols: [] };
}

/** Each line as % change from its first price in the window (null before it). */
function percentLines(sparks, symbols) {
  return symbols.map((symbol) => {
    const line = sparks.lines.get(symbol) ?? [];
    const base = line.find((v) => v !== null && v > 0);
    return line.map((v) => (v === null || base === undefined ? null : (v / base - 1) * 100));
  });
}

/**
 * Wires the compare card. `sparks` is the watchlist's SparkStore; `stats` and
 * `feed` give the latest stats by symbol and the producer's feed summary;
 * `current` the chosen symbol; `symbols` every symbol the page knows, sorted.
 */
export function initCompare({ sparks, stats, feed, current, symbols }) {
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
  const card = $("compare-card");
  const el = $("compare-chart");
  const chips = $("compare-chips");
  const adder = /** @type {HTMLSelectElement} */ ($("compare-add"));
  const toggle = $("compare-toggle");
  const watermark = $("compare-watermark");
  const saved = load();
  let chosen = saved.symbols;
  let on = saved.on;
  let lastDraw = 0;
  let gaps = [];
  const chart = { plot: null };
  fitToBox(chart, el);

  function save() {
    try {
      localStorage.setItem(STORAGE, JSON.stringify({ on, symbols: chosen }));
    } catch {
      // storage turned off: the choice lasts as long as the page
    }
  }

  /** A plot with one series per chosen symbol; made again when the set changes. */
  function build() {
    chart.plot?.destroy();
    const opts = baseOptions(el.clientWidth || 600, el.clientHeight || 240, { value: 2 }, () => {});
    opts.scales.price = { auto: true };
    opts.padding = [12, 4, 0, 30]; // room for the first time label's hours
    opts.axes[1].values = (_u, splits) => splits.map((v) => formatPct(v, 2));
    opts.series = [
      {},
      ...chosen.map((symbol, i) => ({
        label: symbol,
        scale: "price",
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        spanGaps: false,
      })),
    ];
    opts.hooks.drawClear = [(u) => (el.dataset.gaps = String(drawGaps(u, gaps)))];
    chart.plot = new uPlot(opts, [[], ...chosen.map(() => [])], el);
    el.dataset.series = String(chosen.length);
    lastDraw = 0;
  }

  let chipsKey = "";

  /** The chips: rebuilt when the set or a mark changes, else only their numbers. */
  function showChips() {
    const byName = stats();
    const lines = percentLines(sparks, chosen);
    const key = chosen.map((s) => `${s}\u0000${byName.get(s)?.source}`).join("\n");
    if (key === chipsKey) {
      chips.querySelectorAll(".compare-pct").forEach((value, i) => setPct(value, lines[i]));
      return;
    }
    chipsKey = key;
    chips.replaceChildren(...chosen.map((symbol, i) => {
      const chip = document.createElement("span");
      chip.className = "compare-chip";
      chip.dataset.symbol = symbol;
      chip.style.setProperty("--swatch", PALETTE[i % PALETTE.length]);
      const name = document.createElement("b");
      name.textContent = symbol;
      chip.append(name);
      const mark = sourceMark(byName.get(symbol)?.source);
      if (mark) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.dataset.source = byName.get(symbol).source;
        tag.textContent = mark === "SIMULATED" ? "SIM" : mark;
        chip.append(tag);
      }
      const value = document.createElement("span");
      setPct(value, lines[i]);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.title = `Remove ${symbol}`;
      remove.addEventListener("click", () => setChosen(chosen.filter((s) => s !== symbol)));
      chip.append(value, remove);
      return chip;
    }));
    const marks = new Set(chosen.map((s) => sourceMark(byName.get(s)?.source)).filter(Boolean));
    watermark.hidden = marks.size === 0;
    watermark.textContent = [...marks].join(" · ");
    // The picker offers the symbols not chosen yet, while there is room.
    const offered = symbols().filter((s) => !chosen.includes(s));
    const options = [new Option(chosen.length >= MAX_SYMBOLS ? "6 at most" : "+ symbol", "")];
    if (chosen.length < MAX_SYMBOLS) options.push(...offered.map((s) => new Option(s, s)));
    const now = [...adder.options].map((o) => o.value).join("\n");
    if (now !== options.map((o) => o.value).join("\n")) adder.replaceChildren(...options);
    adder.value = "";
  }

  function setPct(el, line) {
    const pct = line.findLast((v) => v !== null);
    el.className = `compare-pct ${pct > 0 ? "up" : pct < 0 ? "down" : ""}`;
    el.textContent = pct === undefined ? "—" : formatPct(pct);
  }

  /** The chosen symbol and the next few in the list, when none are chosen yet. */
  function ensureChosen() {
    if (chosen.length > 0) return false;
    const all = symbols();
    const first = current();
    chosen = [first, ...all.filter((s) => s !== first)].filter(Boolean).slice(0, 4);
    save();
    return chosen.length > 0;
  }

  function draw() {
    if (!on || chart.plot === null) return;
    const times = sparks.times();
    const lines = percentLines(sparks, chosen);
    gaps = (feed()?.gaps ?? []).filter((gap) =>
      gap.tradesMissing &&
      (gap.symbols.length === 0 || gap.symbols.some((s) => chosen.includes(s)))
    ).map((gap) => ({ ...gap, length: formatAge(gap.to - gap.from) }));
    chart.plot.setData([times, ...lines]);
    el.dataset.points = String(
      Math.max(0, ...lines.map((l) => l.filter((v) => v !== null).length)),
    );
    el.dataset.draws = String(Number(el.dataset.draws ?? 0) + 1);
    showChips();
  }

  function setChosen(next) {
    chosen = next.slice(0, MAX_SYMBOLS);
    save();
    build();
    draw();
    showChips();
  }

  function show(next) {
    on = next;
    save();
    card.hidden = !on;
    document.body.dataset.compare = on ? "on" : "off";
    toggle.setAttribute("aria-pressed", String(on));
    if (on) {
      ensureChosen();
      build();
      draw();
      showChips();
    }
  }

  toggle.addEventListener("click", () => show(!on));
  adder.addEventListener("change", () => {
    if (adder.value !== "") setChosen([...chosen, adder.value]);
  });
  show(on);

  return {
    /** After each push: redraw at most once a second (the data moves in 5 s steps). */
    update() {
      if (!on) return;
      if (ensureChosen()) build();
      const now = performance.now();
      if (chart.plot === null || now - lastDraw < REDRAW_MS) return;
      lastDraw = now;
      draw();
    },
  };
}
