// Compare: several symbols on one chart as % change over the last five minutes,
// drawn from the watchlist's sparkline data (the last price every 5 s), so it
// costs no push of its own. Up to MAX_SYMBOLS lines; simulated and replayed
// prices are marked on each symbol's chip; feed gaps are shaded as on the charts.
//
// Symbols reach the page as text only (textContent, new Option).

import uPlot from "./vendor/uPlot.esm.js";
import { baseOptions, drawGaps, fitToBox } from "./charts.js";
import { formatPct, sourceMark } from "./format.js";
import { breakEach, feedGaps } from "./gaps.js";

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

function store(on, symbols) {
  try {
    localStorage.setItem(STORAGE, JSON.stringify({ on, symbols }));
  } catch {
    // storage turned off: the choice lasts as long as the page
  }
}

/** Each line as % change from its first price in the window (null before it). */
function percentLines(sparks, symbols) {
  return symbols.map((symbol) => {
    const line = sparks.lines.get(symbol) ?? [];
    const base = line.find((v) => v !== null && v > 0);
    return line.map((v) => (v === null || base === undefined ? null : (v / base - 1) * 100));
  });
}

/** A plot with one series per chosen symbol, shading `gaps()` (made again when the set changes). */
function buildPlot(el, { chosen, gaps }) {
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
  opts.hooks.drawClear = [(u) => (el.dataset.gaps = String(drawGaps(u, gaps())))];
  el.dataset.series = String(chosen.length);
  return new uPlot(opts, [[], ...chosen.map(() => [])], el);
}

/** The last % change of a line into a chip's value, coloured by its sign. */
function setPct(el, line) {
  const pct = line.findLast((v) => v !== null);
  el.className = `compare-pct ${pct > 0 ? "up" : pct < 0 ? "down" : ""}`;
  el.textContent = pct === undefined ? "—" : formatPct(pct);
}

/** One symbol's chip: its colour, name, source mark, % change and a remove button. */
function chip({ symbol, index, source, line, remove }) {
  const chip = document.createElement("span");
  chip.className = "compare-chip";
  chip.dataset.symbol = symbol;
  chip.style.setProperty("--swatch", PALETTE[index % PALETTE.length]);
  const name = document.createElement("b");
  name.textContent = symbol;
  chip.append(name);
  const mark = sourceMark(source);
  if (mark) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.dataset.source = source;
    tag.textContent = mark === "SIMULATED" ? "SIM" : mark;
    chip.append(tag);
  }
  const value = document.createElement("span");
  setPct(value, line);
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "×";
  button.title = `Remove ${symbol}`;
  button.addEventListener("click", remove);
  chip.append(value, button);
  return chip;
}

/** The picker offers the symbols not chosen yet, while there is room. */
function offer(adder, { chosen, all }) {
  const offered = all.filter((s) => !chosen.includes(s));
  const options = [new Option(chosen.length >= MAX_SYMBOLS ? "6 at most" : "+ symbol", "")];
  if (chosen.length < MAX_SYMBOLS) options.push(...offered.map((s) => new Option(s, s)));
  const now = [...adder.options].map((o) => o.value).join("\n");
  if (now !== options.map((o) => o.value).join("\n")) adder.replaceChildren(...options);
  adder.value = "";
}

/**
 * The lines on the sparks' slots, broken at the feed gaps (the same breaker as the
 * price chart's: gaps.js), into the plot.
 */
function drawLines(el, { plot, lines, sparks, gapsOf }) {
  const line = breakEach({ times: sparks.times(), columns: lines, width: sparks.stepMs }, gapsOf);
  plot.setData([line.times, ...line.columns]);
  el.drawn = plot.data; // what the chart draws, for tests/browser_feed_test.ts
  el.dataset.points = String(Math.max(0, ...lines.map((l) => l.filter((v) => v !== null).length)));
  el.dataset.draws = String(Number(el.dataset.draws ?? 0) + 1);
}

/**
 * The chips and the picker: show() rebuilds the chips when the set or a source
 * mark changed, else updates only their numbers.
 */
function createChipRow({ chips, adder, watermark, remove }) {
  let key = "";
  return function show({ chosen, byName, lines, all }) {
    const now = chosen.map((s) => `${s}\u0000${byName.get(s)?.source}`).join("\n");
    if (now === key) {
      chips.querySelectorAll(".compare-pct").forEach((value, i) => setPct(value, lines[i]));
      return;
    }
    key = now;
    chips.replaceChildren(...chosen.map((symbol, index) =>
      chip({
        symbol,
        index,
        source: byName.get(symbol)?.source,
        line: lines[index],
        remove: () => remove(symbol),
      })
    ));
    const marks = new Set(chosen.map((s) => sourceMark(byName.get(s)?.source)).filter(Boolean));
    watermark.hidden = marks.size === 0;
    watermark.textContent = [...marks].join(" · ");
    offer(adder, { chosen, all });
  };
}

/**
 * Wires the compare card. `sparks` is the watchlist's SparkStore; `stats` and
 * `feed` give the latest stats by symbol and the producer's feed summary;
 * `current` the chosen symbol; `symbols` every symbol the page knows, sorted.
 */
export function initCompare({ sparks, stats, feed, current, symbols }) {
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
  const el = $("compare-chart");
  const adder = /** @type {HTMLSelectElement} */ ($("compare-add"));
  const saved = load();
  let chosen = saved.symbols;
  let on = saved.on;
  let lastDraw = 0;
  let gaps = [];
  const chart = { plot: null };
  fitToBox(chart, el);

  const save = () => store(on, chosen);

  function build() {
    chart.plot?.destroy();
    chart.plot = buildPlot(el, { chosen, gaps: () => gaps });
    lastDraw = 0;
  }

  const showChips = createChipRow({
    chips: $("compare-chips"),
    adder,
    watermark: $("compare-watermark"),
    remove: (symbol) => setChosen(chosen.filter((s) => s !== symbol)),
  });
  const chipsNow = () =>
    showChips({ chosen, byName: stats(), lines: percentLines(sparks, chosen), all: symbols() });

  /** The chosen symbol and the next few in the list, when none are chosen yet. */
  function ensureChosen() {
    if (chosen.length > 0) return false;
    const first = current();
    chosen = [first, ...symbols().filter((s) => s !== first)].filter(Boolean).slice(0, 4);
    save();
    return chosen.length > 0;
  }

  function draw() {
    if (!on || chart.plot === null) return;
    gaps = feedGaps(feed(), chosen); // the bands: any chosen symbol's gaps
    const gapsOf = chosen.map((symbol) => feedGaps(feed(), [symbol])); // each line: its own
    drawLines(el, { plot: chart.plot, lines: percentLines(sparks, chosen), sparks, gapsOf });
    chipsNow();
  }

  function setChosen(next) {
    chosen = next.slice(0, MAX_SYMBOLS);
    save();
    build();
    draw(); // and the chips
  }

  function show(next) {
    on = next;
    save();
    $("compare-card").hidden = !on;
    document.body.dataset.compare = on ? "on" : "off";
    $("compare-toggle").setAttribute("aria-pressed", String(on));
    if (on) {
      ensureChosen();
      build();
      draw(); // and the chips
    }
  }

  $("compare-toggle").addEventListener("click", () => show(!on));
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
