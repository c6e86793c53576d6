/**
 * The results of `deno task bench` as rows, one per figure, with the ratio of ours to
 * each baseline and whether its target is met; and the table they are shown as.
 */

import { formatCount, formatInterval } from "../../lib/format.js";
import type { Throughput } from "./throughput.ts";
import type { Latency, Memory } from "./live.ts";
import type { DashboardRun } from "./dashboard.ts";

export interface Row {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  /** The headline figure: a rate, a p99 in ms, or a peak in MB. */
  readonly ours: number | null;
  /** The cell as shown (a rate, or p50 / p99 / p99.9). */
  readonly shown: string;
  readonly baselines: Readonly<Record<string, number | null>>;
  /** ours / baseline, for throughput rows. */
  readonly ratios: Readonly<Record<string, number | null>>;
  readonly target: string;
  readonly met: boolean | null;
  readonly errors: readonly string[];
}

const BASELINES = ["kcat", "kafka-python", "kafkajs naive", "kafkajs bare"] as const;

/** Each client's best rate over its rounds (null when every round failed). */
function bestRates(runs: readonly Throughput[]): Map<string, number | null> {
  const best = new Map<string, number | null>();
  for (const run of runs) {
    const before = best.get(run.client) ?? null;
    best.set(run.client, run.rate === null ? before : Math.max(before ?? 0, run.rate));
  }
  return best;
}

/** Which row, and the least ratio of ours to each baseline it must reach. */
interface ThroughputRowSpec {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  readonly targets: Readonly<Record<string, number>>;
}

/** The row of a throughput measurement: each client's best round, and ours against each. */
export function throughputRow(runs: readonly Throughput[], spec: ThroughputRowSpec): Row {
  const { id, label, unit, targets } = spec;
  const best = bestRates(runs);
  const ours = best.get("ours") ?? null;
  const baselines: Record<string, number | null> = {};
  const ratios: Record<string, number | null> = {};
  for (const [client, rate] of best) {
    if (client === "ours") continue;
    baselines[client] = rate;
    ratios[client] = ours !== null && rate ? ours / rate : null;
  }
  const checks = Object.entries(targets).map(([client, min]) => {
    const ratio = ratios[client];
    return ratio === null || ratio === undefined ? null : ratio >= min;
  });
  return {
    id,
    label,
    unit,
    ours,
    shown: ours === null ? "failed" : formatCount(ours),
    baselines,
    ratios,
    target: Object.entries(targets).map(([client, min]) => `>= ${min}x ${client}`).join(", "),
    met: checks.includes(null) ? null : checks.every(Boolean),
    errors: runs.filter((r) => r.error).map((r) => `${r.client}: ${r.error}`),
  };
}

/** The row of a latency measurement, judged on its p99 when `maxP99` is given. */
export function latencyRow(
  run: Latency,
  spec: { readonly id: string; readonly label: string; readonly maxP99?: number },
): Row {
  const { id, label, maxP99 } = spec;
  const shown = run.p99 === null ? "failed" : `${run.p50} / ${run.p99} / ${run.p999} ms`;
  return {
    id,
    label,
    unit: "ms p50 / p99 / p99.9",
    ours: run.p99,
    shown,
    baselines: {},
    ratios: {},
    target: maxP99 === undefined ? "" : `p99 <= ${maxP99} ms`,
    met: maxP99 === undefined || run.p99 === null ? null : run.p99 <= maxP99,
    errors: run.error ? [run.error] : [],
  };
}

/** Runs shorter than this say nothing about a slope: start-up growth is all they see. */
const MIN_FLAT_SECONDS = 60;

/** A row for each script's peak RSS, and its growth on runs long enough to show one. */
export function memoryRows(
  run: Memory,
  limits: { readonly maxMb: number; readonly flatMbPerMin: number },
): Row[] {
  const { maxMb, flatMbPerMin } = limits;
  const judgeSlope = run.seconds >= MIN_FLAT_SECONDS;
  return (["producer", "consumer"] as const).map((who) => {
    const { peakMb, slopeMbPerMin } = run[who];
    const slope = !judgeSlope || slopeMbPerMin === null
      ? ""
      : `, ${slopeMbPerMin >= 0 ? "+" : ""}${slopeMbPerMin.toFixed(1)} MB/min`;
    const flat = !judgeSlope ||
      (slopeMbPerMin !== null && Math.abs(slopeMbPerMin) <= flatMbPerMin);
    return {
      id: `rss-${who}`,
      label: `peak RSS, ${who} (sim ${formatCount(run.rate)}/s avg, ${run.seconds} s)`,
      unit: "MB",
      ours: peakMb,
      shown: peakMb === null ? "failed" : `${Math.round(peakMb)} MB${slope}`,
      baselines: {},
      ratios: {},
      target: judgeSlope
        ? `< ${maxMb} MB, flat (|slope| <= ${flatMbPerMin} MB/min)`
        : `< ${maxMb} MB`,
      met: peakMb === null ? null : peakMb < maxMb && flat,
      errors: run.error ? [run.error] : [],
    };
  });
}

/** What the dashboard phase is judged on. */
export interface DashboardLimits {
  /** Pushes a client may get in any 1 s. */
  readonly maxPerSecond: number;
  readonly maxP99: number;
  readonly maxMb: number;
  /** |RSS slope| of the dashboard, judged on runs of MIN_FLAT_SECONDS or more. */
  readonly flatMbPerMin: number;
}

/**
 * The dashboard phase's rows: the slowest client's push latency, each client's
 * pushes against the bound, the dashboard's peak RSS and its slope.
 */
export function dashboardRows(run: DashboardRun, limits: DashboardLimits): Row[] {
  const errors = run.error ? [run.error] : [];
  const base = { unit: "", baselines: {}, ratios: {}, errors };
  const what =
    `sim ${formatCount(run.rate)}/s, ${run.clients.length || "no"} clients, ${run.rules} ` +
    `alert rules`;
  const latency = latencyRow({ ...run.latency, error: run.error }, {
    id: "sse-push",
    label: `SSE push latency, ${what} (slowest client)`,
    maxP99: limits.maxP99,
  });
  const pushes = run.clients.map((client, i): Row => ({
    ...base,
    id: `sse-pushes-${i + 1}`,
    label: `SSE pushes in 1 s, client ${i + 1}: ${client.symbol} ` +
      `${formatInterval(client.intervalMs)}/${client.window}`,
    unit: "pushes in 1 s",
    ours: client.maxPerSecond,
    shown: `at most ${client.maxPerSecond}, mean ${client.meanPerSecond}`,
    target: `<= ${limits.maxPerSecond} in every 1 s`,
    met: client.maxPerSecond <= limits.maxPerSecond,
  }));
  const { peakMb, slopeMbPerMin } = run.dashboard;
  const judged = run.seconds >= MIN_FLAT_SECONDS && slopeMbPerMin !== null;
  const during = `${what}, ${run.seconds} s`;
  const memory: Row[] = [{
    ...base,
    id: "rss-dashboard",
    label: `peak RSS, dashboard (${during})`,
    unit: "MB",
    ours: peakMb,
    shown: peakMb === null ? "failed" : `${Math.round(peakMb)} MB`,
    target: `< ${limits.maxMb} MB`,
    met: peakMb === null ? null : peakMb < limits.maxMb,
  }, {
    ...base,
    id: "rss-dashboard-slope",
    label: `RSS slope, dashboard (${during})`,
    unit: "MB/min",
    ours: slopeMbPerMin,
    // A few seconds' slope is start-up, not growth: shown (and judged) from a minute on.
    shown: !judged ? "-" : `${slopeMbPerMin! >= 0 ? "+" : ""}${slopeMbPerMin!.toFixed(2)} MB/min`,
    target: `|slope| <= ${limits.flatMbPerMin} MB/min` +
      (judged ? "" : ` (judged from ${MIN_FLAT_SECONDS} s)`),
    met: judged ? Math.abs(slopeMbPerMin!) <= limits.flatMbPerMin : null,
  }];
  if (run.page !== null) {
    const { page } = run;
    pushes.push({
      ...base,
      id: "sse-pushes-page",
      label: `SSE pushes in 1 s, the page in Chromium (${run.clients[0]?.symbol} ` +
        `${run.clients[0]?.window}, ${page.studies})`,
      unit: "pushes in 1 s",
      ours: page.maxPerSecond,
      shown: `at most ${page.maxPerSecond}, mean ${page.meanPerSecond}`,
      target: `<= ${limits.maxPerSecond} in every 1 s`,
      met: page.maxPerSecond <= limits.maxPerSecond,
    });
  }
  // A run that failed before any client: the bound is unmeasured, and says so.
  const unmeasured: Row[] = pushes.length > 0 ? [] : [{
    ...base,
    id: "sse-pushes-1",
    label: "SSE pushes in 1 s",
    unit: "pushes in 1 s",
    ours: null,
    shown: "failed",
    target: `<= ${limits.maxPerSecond} in every 1 s`,
    met: null,
  }];
  return [latency, ...pushes, ...unmeasured, ...memory];
}

/** The dashboard phase's log: a line a client (and the page), then the run's totals. */
export function dashboardLines(run: DashboardRun): string[] {
  const rates = (c: DashboardRun["clients"][number] | NonNullable<DashboardRun["page"]>) =>
    `${c.pushes} pushes, at most ${c.maxPerSecond} in 1 s (${c.maxPerSecondArrived} as read; ` +
    `${Math.min(...c.busiestGapsMs)} ms the shortest gap in it)`;
  const clients = run.clients.map((c) => {
    const latency = c.p99 === null ? "no latency" : `p50/p99 ${c.p50}/${c.p99} ms`;
    return `${c.symbol} ${formatInterval(c.intervalMs)}/${c.window}: ${rates(c)}, mean ` +
      `${c.meanPerSecond}/s; ${latency}; ${c.alerts} alerts; ` +
      `${formatCount(c.applied)} of ${formatCount(run.acked ?? 0)} acked trades applied`;
  });
  const page = run.page === null ? [] : [
    `the page in Chromium (${run.page.studies}): ${rates(run.page)}, mean ` +
    `${run.page.meanPerSecond}/s; other requests: ${
      Object.entries(run.page.requests).map(([path, n]) => `${path} ${n}x`).join(", ") || "none"
    }`,
  ];
  const mb = run.dashboard.peakMb;
  return [
    ...(run.error ? [`FAILED (${run.error})`] : []),
    ...clients,
    ...page,
    `${run.rules} rules, ${run.alertsOnTopic ?? "?"} alerts fired; producer reached ` +
    `${formatCount(run.achievedRate ?? 0)}/s; dashboard peak RSS ` +
    `${mb === null ? "?" : Math.round(mb)} MB`,
  ];
}

/** The rows as an aligned table: ours, each baseline with its ratio, the target, met. */
export function renderTable(rows: readonly Row[]): string {
  const header = ["measure", "ours", ...BASELINES, "target", "met"];
  const body = rows.map((row) => [
    row.label,
    row.shown,
    ...BASELINES.map((client) => {
      const value = row.baselines[client];
      if (value === undefined) return "";
      if (value === null) return "failed";
      return `${formatCount(value)} (${formatRatio(row.ours ?? 0, value)})`;
    }),
    row.target,
    row.met === null ? "-" : row.met ? "yes" : "NO",
  ]);
  return formatTable([header, ...body]);
}

/** ours / baseline as a short factor: `0.25x`, `10x`. Empty when either is missing. */
function formatRatio(ours: number, baseline: number): string {
  if (!(ours > 0) || !(baseline > 0)) return "";
  const ratio = ours / baseline;
  return ratio >= 10 ? `${Math.round(ratio)}x` : `${ratio.toFixed(2)}x`;
}

/** Pads a table of cells into aligned columns; the first column left, the rest right. */
function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  }
  const line = (row: readonly string[]) =>
    row.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  ")
      .trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join("\n");
}
