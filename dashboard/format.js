// Number, time and symbol formats shared by the charts and the panels.

const priceFormats = new Map();

/** Decimals that suit a price: 2 for stocks and BTC, more for FX and small coins. */
export function decimalsFor(price) {
  const abs = Math.abs(price);
  return abs >= 10 ? 2 : abs >= 1 ? 4 : 6;
}

/** A price with a fixed number of decimals, grouped (e.g. 67,412.50). */
export function formatPrice(price, decimals = decimalsFor(price)) {
  if (price === null || price === undefined || !Number.isFinite(price)) return "—";
  let format = priceFormats.get(decimals);
  if (format === undefined) {
    format = new Intl.NumberFormat("en-US", {
      minimumFractionDigits: decimals,
      maximumFractionDigits: decimals,
    });
    priceFormats.set(decimals, format);
  }
  return format.format(price);
}

const compactFormat = new Intl.NumberFormat("en-US", {
  notation: "compact",
  maximumFractionDigits: 2,
});

/** 1234567 -> 1.23M: volumes and counts in little room. */
export function formatCompact(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return Math.abs(value) < 1000
    ? String(Math.round(value * 100) / 100)
    : compactFormat.format(value);
}

export function formatSigned(value, decimals) {
  if (!Number.isFinite(value)) return "—";
  return `${value > 0 ? "+" : value < 0 ? "−" : ""}${formatPrice(Math.abs(value), decimals)}`;
}

export function formatDuration(ms) {
  if (ms < 60_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.round(ms / 3_600_000)}h`;
}

export function formatAge(ms) {
  if (ms < 0) ms = 0;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s ago`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s ago`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min ago`;
  return `${Math.round(ms / 3_600_000)} h ago`;
}

/** Trades per second: one decimal while small, whole numbers beyond 10. */
export function formatRate(rate) {
  return rate < 10 ? rate.toFixed(1) : formatCompact(Math.round(rate));
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

export function formatTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString("en-GB", { hour12: false });
}

/** "BINANCE:BTCUSDT" shows as BTCUSDT over BINANCE; a plain ticker has no venue line. */
export function splitSymbol(symbol) {
  const colon = symbol.indexOf(":");
  return colon > 0 ? [symbol.slice(colon + 1), symbol.slice(0, colon)] : [symbol, ""];
}
