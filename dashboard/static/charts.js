// The two uPlot charts of the dashboard: price with VWAP and volume, and candlesticks.
// Plain browser ES module (no build step); the server's CSP allows only same-origin
// scripts, so uPlot comes from /vendor, served out of the npm package.

import uPlot from "./vendor/uPlot.esm.js";
import { axisDecimals, formatClock, formatPrice } from "./format.js";

export const COLORS = {
  up: "#16c784",
  down: "#ea3943",
  price: "#3b82f6",
  vwap: "#f0b90b",
  grid: "rgba(148, 163, 184, 0.07)",
  axis: "#7d8796",
  cursor: "rgba(203, 213, 225, 0.35)",
  gap: "rgba(234, 57, 67, 0.13)",
  gapEdge: "rgba(234, 57, 67, 0.55)",
};

/** Canvas text cannot use CSS variables: the same stack as --mono in style.css. */
const AXIS_FONT =
  '11px "JetBrains Mono", "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", monospace';

/** The time axes' zone: undefined for the browser's, else an IANA name (studies.js). */
let axisZone;

/** Sets the zone the time axes read in; the next draw uses it. */
export function setAxisZone(zone) {
  axisZone = zone;
}

/** Clock times in the axis zone; seconds only when the ticks are less than a minute apart. */
function timeAxisValues(_u, splits, _axis, _space, increment) {
  const withSeconds = increment < 60_000;
  return splits.map((ms) => formatClock(ms, axisZone, withSeconds));
}

export function baseOptions(width, height, decimalsRef, onCursor) {
  return {
    width,
    height,
    ms: 1,
    pxAlign: 1,
    legend: { show: false },
    padding: [12, 4, 0, 18],
    cursor: {
      sync: { key: "market-stream" },
      points: { show: false },
      drag: { x: false, y: false },
      y: true,
    },
    scales: { x: { time: true } },
    axes: [
      {
        stroke: COLORS.axis,
        grid: { stroke: COLORS.grid, width: 1 },
        ticks: { stroke: COLORS.grid, width: 1, size: 4 },
        values: timeAxisValues,
        font: AXIS_FONT,
        space: 70,
      },
      {
        scale: "price",
        side: 1,
        stroke: COLORS.axis,
        grid: { stroke: COLORS.grid, width: 1 },
        ticks: { show: false },
        size: 78,
        gap: 6,
        font: AXIS_FONT,
        values: (_u, splits) => {
          const decimals = axisDecimals(splits[0] ?? 0, Math.abs(splits[1] - splits[0]));
          return splits.map((v) => formatPrice(v, Math.max(decimalsRef.value, decimals)));
        },
      },
    ],
    hooks: {
      // The index under the cursor, and its time (a feed gap has no index of its own).
      setCursor: [(u) => {
        const left = u.cursor.left ?? -1;
        onCursor(u.cursor.idx ?? null, left >= 0 ? u.posToVal(left, "x") : null);
      }],
    },
  };
}

/**
 * A volume scale that a few block trades cannot flatten: the 95th percentile of
 * the visible bars fills two thirds of the room; taller bars are clipped.
 */
function volumeScale(volume, i0, i1) {
  const visible = Float64Array.from(volume.slice(i0, i1 + 1)).sort();
  if (visible.length === 0) return 0;
  const p95 = visible[Math.floor((visible.length - 1) * 0.95)];
  return Math.max(p95 * 1.5, visible[visible.length - 1] * 0.05);
}

/** Bars of per-candle volume, in the bottom fifth of the plot, coloured by direction. */
function drawVolume(u, times, volume, up, widthMs) {
  const { ctx, bbox } = u;
  const [i0, i1] = visibleRange(u, times);
  const max = volumeScale(volume, i0, i1);
  if (!(max > 0)) return;
  const slot = Math.abs(u.valToPos(widthMs, "x", true) - u.valToPos(0, "x", true));
  const barWidth = Math.max(1, Math.floor(slot * 0.7));
  const bottom = bbox.top + bbox.height;
  const room = bbox.height * 0.2;
  ctx.save();
  for (const [color, want] of [[COLORS.up, true], [COLORS.down, false]]) {
    ctx.fillStyle = color;
    ctx.globalAlpha = 0.35;
    ctx.beginPath();
    for (let i = i0; i <= i1; i++) {
      if (up[i] !== want || !(volume[i] > 0)) continue;
      const x = u.valToPos(times[i] + widthMs / 2, "x", true);
      const h = Math.max(1, Math.min(1, volume[i] / max) * room);
      ctx.rect(Math.round(x - barWidth / 2), Math.round(bottom - h), barWidth, Math.round(h));
    }
    ctx.fill();
  }
  ctx.restore();
}

/**
 * The last price as a dashed line across the plot and a tag on the price axis,
 * green or red with the last candle, as trading screens show it.
 */
function drawLastPrice(u, price, up, decimals) {
  if (price === undefined || price === null) return;
  const { ctx, bbox } = u;
  const y = Math.round(u.valToPos(price, "price", true));
  if (y < bbox.top || y > bbox.top + bbox.height) return;
  const color = up ? COLORS.up : COLORS.down;
  const dpr = devicePixelRatio;
  ctx.save();
  ctx.strokeStyle = color;
  ctx.globalAlpha = 0.55;
  ctx.lineWidth = dpr;
  ctx.setLineDash([2 * dpr, 3 * dpr]);
  ctx.beginPath();
  ctx.moveTo(bbox.left, y + 0.5);
  ctx.lineTo(bbox.left + bbox.width, y + 0.5);
  ctx.stroke();
  ctx.globalAlpha = 1;
  ctx.setLineDash([]);
  const height = 18 * dpr;
  const left = bbox.left + bbox.width + 2 * dpr;
  ctx.fillStyle = color;
  ctx.fillRect(left, y - height / 2, u.width * dpr - left, height);
  ctx.fillStyle = "#0b0e13";
  ctx.font = `600 ${11 * dpr}px ${AXIS_FONT.replace(/^11px /, "")}`;
  ctx.textBaseline = "middle";
  ctx.fillText(formatPrice(price, decimals), left + 6 * dpr, y + dpr);
  ctx.restore();
}

/**
 * Feed gaps (trade-time spans the producer had no data for, consumer/feed.ts) as
 * shaded bands with dashed edges under the series, at least 2 px wide however short,
 * labelled with their length where there is room. Returns how many were drawn.
 */
export function drawGaps(u, gaps) {
  const { ctx, bbox } = u;
  const dpr = devicePixelRatio;
  const right = bbox.left + bbox.width;
  let drawn = 0;
  ctx.save();
  ctx.beginPath();
  ctx.rect(bbox.left, bbox.top, bbox.width, bbox.height);
  ctx.clip();
  ctx.font = `${10 * dpr}px ${AXIS_FONT.replace(/^11px /, "")}`;
  ctx.textBaseline = "top";
  for (const gap of gaps) {
    let x0 = u.valToPos(gap.tradeFrom, "x", true);
    let x1 = u.valToPos(gap.tradeTo, "x", true);
    if (x1 < bbox.left || x0 > right) continue;
    x0 = Math.max(x0, bbox.left);
    x1 = Math.min(Math.max(x1, x0 + 2 * dpr), right);
    ctx.fillStyle = COLORS.gap;
    ctx.fillRect(x0, bbox.top, x1 - x0, bbox.height);
    ctx.strokeStyle = COLORS.gapEdge;
    ctx.lineWidth = dpr;
    ctx.setLineDash([3 * dpr, 3 * dpr]);
    ctx.beginPath();
    for (const x of [x0, x1]) {
      ctx.moveTo(Math.round(x) + 0.5, bbox.top);
      ctx.lineTo(Math.round(x) + 0.5, bbox.top + bbox.height);
    }
    ctx.stroke();
    const label = `gap ${gap.length}`;
    if (x1 - x0 > ctx.measureText(label).width + 8 * dpr) {
      ctx.fillStyle = COLORS.gapEdge;
      ctx.fillText(label, x0 + 4 * dpr, bbox.top + 4 * dpr);
    }
    drawn++;
  }
  ctx.restore();
  return drawn;
}

/** Indexes of the first and last points inside the x scale (data is sorted by time). */
function visibleRange(u, times) {
  const { min, max } = u.scales.x;
  let i0 = 0;
  let i1 = times.length - 1;
  while (i0 <= i1 && times[i0] < min) i0++;
  while (i1 >= i0 && times[i1] > max) i1--;
  return [i0, i1];
}

/**
 * Price (the last trade of each candle), window VWAP, and volume bars at the width
 * of the candlestick view (one-second bars over an hour would be a grey smear).
 */
export function createPriceChart(el, onCursor) {
  const decimals = { value: 2 };
  let bars = { t: [], v: [], up: [], width: 1000 };
  let lastUp = true;
  let gaps = [];
  const opts = baseOptions(el.clientWidth || 600, el.clientHeight || 300, decimals, onCursor);
  opts.scales.price = { auto: true, range: paddedRange };
  opts.series = [
    {},
    {
      label: "Price",
      scale: "price",
      stroke: COLORS.price,
      width: 1.6,
      fill: (u) => gradient(u, "rgba(59, 130, 246, 0.22)", "rgba(59, 130, 246, 0)"),
      // A quiet spell (no candle) is spanned; a feed gap is a null point: the line breaks.
      spanGaps: false,
    },
    {
      label: "VWAP",
      scale: "price",
      stroke: COLORS.vwap,
      width: 1.2,
      dash: [6, 4],
      spanGaps: false,
    },
  ];
  opts.hooks.drawClear = [(u) => (el.dataset.gaps = String(drawGaps(u, gaps)))];
  opts.hooks.drawAxes = [(u) => drawVolume(u, bars.t, bars.v, bars.up, bars.width)];
  opts.hooks.draw = [(u) => drawLastPrice(u, u.data[1].at(-1), lastUp, decimals.value)];
  const plot = new uPlot(opts, [[], [], []], el);
  return {
    plot,
    /**
     * times, close and vwap are aligned columns (null at a feed gap); bars are the
     * candlestick view's buckets; gaps the feed gaps to shade; overlays the columns
     * of the series studies.js added after Price and VWAP (indicator lines).
     */
    setData(
      { times, close, vwap, up, volumeBars, xRange, priceDecimals, feedGaps, overlays = [] },
    ) {
      bars = volumeBars;
      gaps = feedGaps;
      lastUp = up;
      decimals.value = priceDecimals;
      plot.batch(() => {
        plot.setData([times, close, vwap, ...overlays], false);
        plot.setScale("x", xRange);
      });
    },
  };
}

/**
 * Candlesticks drawn by a draw hook: uPlot has no candle series, so open, high, low
 * and close are series that draw nothing but still set the y range.
 * Data: [times, open, high, low, close].
 */
export function createCandleChart(el, onCursor) {
  const decimals = { value: 2 };
  const extra = { widthMs: 5000, volume: [], gaps: [] };
  const opts = baseOptions(el.clientWidth || 600, el.clientHeight || 240, decimals, onCursor);
  opts.scales.price = { auto: true, range: paddedRange };
  const hidden = { scale: "price", paths: () => null, points: { show: false } };
  opts.series = [
    {},
    { ...hidden, label: "Open" },
    { ...hidden, label: "High" },
    { ...hidden, label: "Low" },
    { ...hidden, label: "Close" },
  ];
  opts.hooks.drawClear = [(u) => (el.dataset.gaps = String(drawGaps(u, extra.gaps)))];
  opts.hooks.drawAxes = [(u) => {
    const [times, open, , , close] = u.data;
    const up = close.map((c, i) => c >= open[i]);
    drawVolume(u, times, extra.volume, up, extra.widthMs);
  }];
  opts.hooks.draw = [(u) => {
    drawCandles(u, extra.widthMs);
    const [, open, , , close] = u.data;
    const last = close.length - 1;
    drawLastPrice(u, close[last], close[last] >= open[last], decimals.value);
  }];
  const plot = new uPlot(opts, [[], [], [], [], []], el);
  return {
    plot,
    setData(times, open, high, low, close, volume, widthMs, xRange, priceDecimals, feedGaps) {
      extra.widthMs = widthMs;
      extra.gaps = feedGaps;
      extra.volume = volume;
      decimals.value = priceDecimals;
      plot.batch(() => {
        plot.setData([times, open, high, low, close], false);
        plot.setScale("x", xRange);
      });
    },
  };
}

function drawCandles(u, widthMs) {
  const [times, open, high, low, close] = u.data;
  if (times.length === 0) return;
  const { ctx } = u;
  const slot = Math.abs(u.valToPos(widthMs, "x", true) - u.valToPos(0, "x", true));
  const bodyWidth = Math.max(1, Math.floor(slot * 0.72));
  const wick = Math.max(1, Math.round(devicePixelRatio));
  ctx.save();
  const { left, top, width, height } = u.bbox;
  ctx.beginPath();
  ctx.rect(left, top, width, height);
  ctx.clip();
  for (let i = 0; i < times.length; i++) {
    const x = Math.round(u.valToPos(times[i] + widthMs / 2, "x", true));
    const yOpen = u.valToPos(open[i], "price", true);
    const yClose = u.valToPos(close[i], "price", true);
    const yHigh = u.valToPos(high[i], "price", true);
    const yLow = u.valToPos(low[i], "price", true);
    ctx.fillStyle = close[i] >= open[i] ? COLORS.up : COLORS.down;
    ctx.fillRect(
      x - Math.floor(wick / 2),
      Math.round(yHigh),
      wick,
      Math.max(1, Math.round(yLow - yHigh)),
    );
    const bodyTop = Math.round(Math.min(yOpen, yClose));
    const bodyHeight = Math.max(wick, Math.round(Math.abs(yClose - yOpen)));
    ctx.fillRect(x - Math.floor(bodyWidth / 2), bodyTop, bodyWidth, bodyHeight);
  }
  ctx.restore();
}

/** Some air above and below the prices, and a sane range when the price is flat. */
function paddedRange(_u, min, max) {
  if (min === null || max === null) return [0, 1];
  const span = max - min || Math.abs(max) * 0.001 || 1;
  // The bottom fifth is for volume bars: keep prices above it.
  return [min - span * 0.32, max + span * 0.08];
}

function gradient(u, from, to) {
  const { top, height } = u.bbox;
  const g = u.ctx.createLinearGradient(0, top, 0, top + height);
  g.addColorStop(0, from);
  g.addColorStop(1, to);
  return g;
}

/** Keeps a chart the size of its box: setSize on every resize, nothing else. */
export function fitToBox(chart, el) {
  const observer = new ResizeObserver(() => {
    const width = Math.floor(el.clientWidth);
    const height = Math.floor(el.clientHeight);
    if (width > 0 && height > 0) chart.plot.setSize({ width, height });
  });
  observer.observe(el);
  return observer;
}
