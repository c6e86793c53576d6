// The watchlist's extras: a sparkline of the last minutes per symbol, sorting by
// name, change, volume or trades/s (the choice is remembered in the browser), and
// keys: ↑/↓ move between symbols (when the watchlist or nothing else has focus),
// 1–4 choose the window.
//
// The sparklines cost no extra push: each snapshot carries the last five minutes
// of every symbol (dashboard/spark.ts), and the stats every push already has carry
// them on. Memory is bounded: a fixed number of points per symbol.

const SORT_STORAGE = "market-stream.watchlist.sort";
const WINDOW_KEYS = ["1m", "5m", "15m", "1h"];
const REDRAW_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const SPARK_WIDTH = 60;
const SPARK_HEIGHT = 18;

/** How each sort orders two stats lines; `descending` is the first click's direction. */
const SORTS = {
  name: { label: "Name", descending: false, value: (s) => s.symbol },
  change: { label: "Change", descending: true, value: (s) => s.changePct },
  volume: { label: "Volume", descending: true, value: (s) => s.volume },
  tps: { label: "Trades/s", descending: true, value: (s) => s.tradesPerSecond },
};

/**
 * Per symbol, the last price at each step (5 s) over a fixed number of steps:
 * seeded by a snapshot, carried on by stats. A symbol without a trade keeps its
 * last price: a flat line, as on the charts.
 */
export class SparkStore {
  stepMs = 5000;
  points = 60;
  /** The newest slot (its start is end * stepMs). */
  end = 0;
  /** @type {Map<string, (number | null)[]>} */
  lines = new Map();

  /** A snapshot's sparks (dashboard/spark.ts) replace what was kept. */
  seed(sparks) {
    if (sparks === undefined || sparks === null) return;
    this.stepMs = sparks.stepMs;
    this.end = sparks.end;
    this.lines = new Map();
    for (const [symbol, line] of Object.entries(sparks.lines)) {
      this.points = line.length;
      this.lines.set(symbol, line.slice());
    }
  }

  /**
   * Moves the newest slot to trade time `time`, carrying each line's last price into
   * the new slots. By trade time, as the server's (dashboard/spark.ts): a replay or a
   * delayed feed draws its own minutes, not the wall clock's.
   */
  advance(time) {
    const slot = Math.floor(time / this.stepMs);
    if (slot <= this.end) return;
    const shift = Math.min(slot - this.end, this.points);
    for (const line of this.lines.values()) {
      const last = line[line.length - 1];
      line.splice(0, shift);
      for (let i = 0; i < shift; i++) line.push(last);
    }
    this.end = slot;
  }

  /**
   * The stats of a push: the newest slot moves to the newest trade time among them,
   * and a symbol's price holds from the slot of its last trade up to the newest slot.
   */
  add(statsList) {
    this.advance(Math.max(...statsList.map((stats) => stats.lastTime)));
    for (const stats of statsList) {
      let line = this.lines.get(stats.symbol);
      if (line === undefined) {
        line = new Array(this.points).fill(null);
        this.lines.set(stats.symbol, line);
      }
      const slot = Math.min(this.end, Math.floor(stats.lastTime / this.stepMs));
      const from = Math.max(0, this.points - 1 - (this.end - slot));
      for (let i = from; i < line.length; i++) line[i] = stats.last;
    }
  }

  /** The times of the slots, oldest first. */
  times() {
    const first = this.end - this.points + 1;
    return Array.from({ length: this.points }, (_, i) => (first + i) * this.stepMs);
  }
}

/** SVG points of a line scaled into the sparkline's box; "" when it has no price. */
function sparkPoints(line) {
  const known = line.filter((v) => v !== null);
  if (known.length === 0) return "";
  const lo = Math.min(...known);
  const hi = Math.max(...known);
  const span = hi - lo || 1;
  const step = SPARK_WIDTH / (line.length - 1);
  const out = [];
  line.forEach((v, i) => {
    if (v === null) return;
    const y = hi === lo ? SPARK_HEIGHT / 2 : 1 + (SPARK_HEIGHT - 2) * (1 - (v - lo) / span);
    out.push(`${(i * step).toFixed(1)},${y.toFixed(1)}`);
  });
  return out.join(" ");
}

/** The sort remembered in the browser, or by name. */
function loadSort() {
  try {
    const saved = JSON.parse(localStorage.getItem(SORT_STORAGE) ?? "null");
    // Own keys only: "constructor" is `in` every object, and would throw on use.
    if (saved && Object.hasOwn(SORTS, saved.key) && typeof saved.descending === "boolean") {
      return saved;
    }
  } catch {
    // a value from an older page, or storage turned off: the default
  }
  return { key: "name", descending: false };
}

/** Remembers the sort in the browser. */
function saveSort(sort) {
  try {
    localStorage.setItem(SORT_STORAGE, JSON.stringify(sort));
  } catch {
    // storage turned off: the choice lasts as long as the page
  }
}

/** True when a key press belongs to a field (a form of the page), not to the watchlist. */
function typing(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName));
}

/** The nearest element around `node` that scrolls, short of the page itself. */
function scroller(node) {
  for (let el = node; el instanceof HTMLElement && el !== document.body; el = el.parentElement) {
    const { overflowY } = getComputedStyle(el);
    if ((overflowY === "auto" || overflowY === "scroll") && el.scrollHeight > el.clientHeight) {
      return el;
    }
  }
  return null;
}

/**
 * Whether ↑/↓ belong to the watchlist: focus in it, or on nothing (the page body)
 * while the last click was not in another panel that scrolls. Anywhere else (a
 * button, a field, a scrolled list) the keys keep their own meaning.
 */
function arrowsForWatchlist(panel, lastClicked) {
  const focus = document.activeElement;
  if (focus !== null && panel.contains(focus)) return true;
  if (focus !== null && focus !== document.body && focus !== document.documentElement) {
    return false;
  }
  const scrolled = lastClicked === null ? null : scroller(lastClicked);
  return scrolled === null || panel.contains(scrolled);
}

/** Adds the sparklines' column after the symbol's (the rows get theirs as they come). */
function addSparkHead(head) {
  const th = document.createElement("th");
  th.className = "spark-col";
  th.textContent = "5m";
  th.title = "The last five minutes";
  head.insertBefore(th, head.cells[1]);
}

/** Makes the headers of `heads` (sort key -> th) sort by a click or Enter/Space. */
function wireSortHeads(heads, choose) {
  for (const [key, th] of Object.entries(heads)) {
    th.dataset.sort = key;
    th.classList.add("sortable");
    th.tabIndex = 0;
    th.addEventListener("click", () => choose(key));
    th.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        choose(key);
      }
    });
  }
}

/**
 * The rows in `sort`'s order by the stats in `byName`: rows without stats last,
 * ties by name. Each row keeps the value it was sorted by (data-sort-value).
 */
function sortRows(rows, byName, sort) {
  const { value } = SORTS[sort.key];
  const keys = new Map();
  for (const row of rows) {
    const line = byName.get(row.dataset.symbol);
    const key = line === undefined ? null : value(line);
    keys.set(row, key);
    row.dataset.sortValue = String(key);
  }
  return rows.sort((a, b) => {
    const [x, y] = [keys.get(a), keys.get(b)];
    let c = x === y ? 0 : x === null ? 1 : y === null ? -1 : x < y ? -1 : 1;
    if (sort.descending && x !== null && y !== null) c = -c;
    if (c === 0) c = a.dataset.symbol < b.dataset.symbol ? -1 : 1;
    return c;
  });
}

/** The watchlist's rows that show a symbol, in the table's order. */
function symbolRows(body) {
  return [...body.rows].filter((row) => row.dataset.symbol !== undefined);
}

/** Gives a row its sparkline cell, once. */
function sparkCell(row) {
  let svg = row.querySelector("svg.spark");
  if (svg !== null) return svg;
  const td = document.createElement("td");
  td.className = "spark-col";
  svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  svg.append(document.createElementNS(SVG, "polyline"));
  td.append(svg);
  row.insertBefore(td, row.cells[1]);
  return svg;
}

/** Draws every row's sparkline from the store. */
function drawSparks(body, sparks) {
  for (const row of symbolRows(body)) {
    const svg = sparkCell(row);
    const line = sparks.lines.get(row.dataset.symbol) ?? [];
    const known = line.filter((v) => v !== null);
    svg.firstChild.setAttribute("points", sparkPoints(line));
    svg.dataset.points = String(known.length);
    svg.classList.toggle("down", known.length > 1 && known.at(-1) < known[0]);
  }
}

/**
 * The page's keys: 1–4 choose the window (unless a field has the key); ↑/↓ the
 * previous or next symbol in the watchlist's order, when they are the watchlist's.
 */
function listenToKeys({ panel, body, current, select, selectWindow }) {
  /** The arrow-key choice waiting to be opened (see the debounce below), and its symbol. */
  let pendingSelect;
  let pendingSymbol = null;
  let lastClicked = null;
  document.addEventListener("pointerdown", (event) => {
    lastClicked = event.target;
    // A click chooses for itself: an arrow choice still waiting is dropped.
    clearTimeout(pendingSelect);
    pendingSymbol = null;
  }, { capture: true, passive: true });
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    if (typing(event.target)) return;
    const windowIndex = ["1", "2", "3", "4"].indexOf(event.key);
    if (windowIndex >= 0) {
      selectWindow(WINDOW_KEYS[windowIndex]);
      return;
    }
    if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
    if (!arrowsForWatchlist(panel, lastClicked)) return;
    const rows = symbolRows(body);
    if (rows.length === 0) return;
    event.preventDefault();
    // From the row the keys reached, not the symbol open: a held key moves on each repeat.
    const from = pendingSymbol ?? current();
    const at = rows.findIndex((row) => row.dataset.symbol === from);
    const step = event.key === "ArrowDown" ? 1 : -1;
    const next = rows[at < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, at + step))];
    if (panel.contains(document.activeElement)) next.focus();
    next.scrollIntoView({ block: "nearest" });
    // A held arrow key repeats ~30 times a second: open one stream, for where it stops.
    clearTimeout(pendingSelect);
    pendingSymbol = next.dataset.symbol;
    pendingSelect = setTimeout(() => {
      pendingSymbol = null;
      select(next.dataset.symbol);
    }, 150);
  });
}

/**
 * Wires the watchlist: `table` is the watchlist's <table>; `stats` gives the latest
 * stats by symbol; `select` and `selectWindow` are the page's own choices.
 */
export function initWatchlist({ table, sortPicker, stats, current, select, selectWindow }) {
  const sparks = new SparkStore();
  const body = table.tBodies[0];
  let sort = loadSort();
  let lastDraw = 0;
  let order = "";

  const head = table.tHead.rows[0];
  addSparkHead(head);
  const heads = { name: head.cells[0], change: head.cells[3], tps: head.cells[4] };
  wireSortHeads(heads, (key) => {
    setSort({ key, descending: sort.key === key ? !sort.descending : SORTS[key].descending });
  });
  sortPicker.replaceChildren(
    ...Object.entries(SORTS).map(([key, { label }]) => new Option(label, key)),
  );
  sortPicker.addEventListener("change", () => {
    const key = sortPicker.value;
    setSort({ key, descending: SORTS[key].descending });
  });

  function setSort(next) {
    sort = next;
    saveSort(sort);
    order = "";
    arrange();
  }

  /** Puts the rows in the chosen order; touches the DOM only when the order changed. */
  function arrange() {
    sortPicker.value = sort.key;
    table.dataset.sort = `${sort.key} ${sort.descending ? "desc" : "asc"}`;
    for (const [key, th] of Object.entries(heads)) {
      const way = sort.descending ? "descending" : "ascending";
      th.setAttribute("aria-sort", key === sort.key ? way : "none");
    }
    const rows = sortRows(symbolRows(body), stats(), sort);
    const next = rows.map((row) => row.dataset.symbol).join("\n");
    if (next !== order) {
      body.append(...rows);
      order = next;
    }
  }

  /** Every push: carry the sparklines on; redraw and re-sort at most once a second. */
  function update(message) {
    sparks.add(message.stats);
    const now = performance.now();
    const newRows = symbolRows(body).some((row) => row.querySelector("svg.spark") === null);
    if (!newRows && now - lastDraw < REDRAW_MS) return;
    lastDraw = now;
    drawSparks(body, sparks);
    arrange();
  }

  const panel = table.closest(".watchlist-panel") ?? table;
  listenToKeys({ panel, body, current, select, selectWindow });
  arrange();
  return { sparks, seed: (message) => sparks.seed(message.sparks), update };
}
