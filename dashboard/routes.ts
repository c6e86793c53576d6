/**
 * The dashboard's routes: which request gets which answer. Query parameters are
 * checked here, one clear error per mistake, before anything reads the aggregation.
 *
 *   GET /                 the page: dashboard/static/index.html, its modules and stylesheet
 *   GET /format.js        lib/format.js, the formatting rules the terminal uses too
 *   GET /indicators.js    lib/indicators.js, the chart indicators (tests check them too)
 *   GET /calendar.js      lib/calendar.js, time zones and the US session (market_hours.ts's)
 *   GET /vendor/uPlot.*   uPlot's ES module and stylesheet, served from node_modules
 *   GET /events           SSE: a snapshot of one symbol's window, then deltas (hub.ts)
 *   GET /api/symbols      every symbol with its stats
 *   GET /api/candles      ?symbol=&interval=&from= candle rows, oldest first, with `fields`;
 *                         &format=csv: the same rows as a CSV download (lib/format.js)
 *   GET /api/feed         the producer's feed: state in words, gaps, stale symbols
 *   GET /healthz          200 when the consumer is connected, else 503
 *   GET /metrics          the Prometheus text format (consumer/metrics.ts, and the hub's)
 *   GET, POST, DELETE /api/alerts   alert rules (alert_routes.ts: same origin only)
 *
 * With a token (lib/auth.ts) every route but /healthz needs it; /healthz then says
 * only whether the consumer is connected.
 */

import type { ConsumerStatus } from "../consumer/candles.ts";
import type { FeedSummary } from "../consumer/feed.ts";
import type { Gate } from "../lib/auth.ts";
import { parseDuration, parseTime } from "../lib/cli.ts";
import { candleCsvName, formatCandleCsv } from "../lib/format.js";
import {
  type Family,
  labelled,
  METRICS_CONTENT_TYPE,
  renderMetrics,
  single,
} from "../lib/metrics.ts";
import { isLoopback } from "../lib/net.ts";
import { MAX_SYMBOL_LENGTH } from "../lib/trade.ts";
import type { Alerting } from "../consumer/alert_topics.ts";
import { alertsRoute } from "./alert_routes.ts";
import { headers, json, StaticFiles, text } from "./http.ts";
import type { AggregatorView, Hub, Subscription } from "./hub.ts";
import { CANDLE_FIELDS, type CandleRow, candleRow } from "./wire.ts";

const DEFAULT_WINDOW_MS = 5 * 60_000;
const MIN_WINDOW_MS = 10_000;
const MAX_WINDOW_MS = 24 * 3600_000;

export interface RouteContext {
  readonly aggregator: AggregatorView;
  readonly status: () => ConsumerStatus;
  readonly feed: () => FeedSummary;
  readonly hub: Hub;
  /** The stream cap, named in the 503 answer. */
  readonly maxStreams: number;
  /** Answer only to localhost names (the server is bound to loopback). */
  readonly loopbackOnly: boolean;
  /** Set when a token is required. */
  readonly gate?: Gate;
  /** The consumer's metric families. */
  readonly metrics: () => Family[];
  /** Alert rules and firings: /api/alerts. */
  readonly alerts?: Alerting;
}

/** A query parameter the client got wrong: 400 with the message. */
class BadRequest extends Error {}

/** The interval asked for, or the finest one the aggregator keeps. */
function pickInterval(aggregator: AggregatorView, raw: string | null): number {
  const intervals = aggregator.intervals();
  if (raw === null || raw === "") return Math.min(...intervals);
  const ms = parseDuration(raw);
  if (ms === undefined || !intervals.includes(ms)) {
    throw new BadRequest(`interval: "${raw}" is not one of ${intervals.join(", ")} (ms)`);
  }
  return ms;
}

function pickSymbol(raw: string | null): string | null {
  if (raw === null || raw === "") return null;
  if (raw.length > MAX_SYMBOL_LENGTH) {
    throw new BadRequest(`symbol: over ${MAX_SYMBOL_LENGTH} characters`);
  }
  return raw;
}

function pickWindow(raw: string | null): number {
  if (raw === null || raw === "") return DEFAULT_WINDOW_MS;
  const ms = parseDuration(raw);
  if (ms === undefined || ms < MIN_WINDOW_MS || ms > MAX_WINDOW_MS) {
    throw new BadRequest(`window: "${raw}" is not a duration from 10s to 24h (example: 5m)`);
  }
  return ms;
}

function pickFrom(raw: string | null): number | undefined {
  if (raw === null || raw === "") return undefined;
  const from = parseTime(raw);
  if (from === undefined) {
    throw new BadRequest(`from: "${raw}" is not ms since the epoch or an ISO time`);
  }
  return from;
}

function events(context: RouteContext, request: Request, url: URL): Response {
  const symbol = pickSymbol(url.searchParams.get("symbol"));
  const sub: Subscription = {
    symbol,
    explicit: symbol !== null,
    intervalMs: pickInterval(context.aggregator, url.searchParams.get("interval")),
    windowMs: pickWindow(url.searchParams.get("window")),
  };
  // A browser's own reconnect sends Last-Event-ID; the page's manual retry uses ?since=.
  const lastId = request.headers.get("last-event-id") ?? url.searchParams.get("since");
  const stream = context.hub.open(sub, lastId);
  if (stream === "full") {
    return text(
      `too many live streams: this dashboard serves at most ${context.maxStreams} at once; ` +
        "close another tab",
      503,
      { "retry-after": "5" },
    );
  }
  return new Response(stream, {
    headers: headers("text/event-stream; charset=utf-8", {
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    }),
  });
}

function symbols({ aggregator }: RouteContext): Response {
  const now = Date.now();
  const list = aggregator.symbols().map((symbol) => aggregator.stats(symbol, now))
    .filter((stats) => stats !== undefined);
  return json({ intervals: aggregator.intervals(), symbols: list });
}

function candles({ aggregator }: RouteContext, url: URL): Response {
  const symbol = pickSymbol(url.searchParams.get("symbol"));
  if (symbol === null) throw new BadRequest("symbol: missing (example: ?symbol=AAPL)");
  const interval = pickInterval(aggregator, url.searchParams.get("interval"));
  const from = pickFrom(url.searchParams.get("from"));
  const stats = aggregator.stats(symbol);
  if (stats === undefined) return json({ error: `symbol: no trades seen for ${symbol}` }, 404);
  const rows = aggregator.candles(symbol, interval, from).map(candleRow);
  const format = url.searchParams.get("format");
  if (format === "csv") return csv(symbol, interval, rows);
  if (format !== null && format !== "" && format !== "json") {
    throw new BadRequest(`format: "${format}" is not csv or json`);
  }
  return json({ symbol, source: stats.source, interval, fields: CANDLE_FIELDS, candles: rows });
}

/** Candle rows as a CSV download named after the symbol, interval and first candle. */
function csv(symbol: string, interval: number, rows: CandleRow[]): Response {
  const name = candleCsvName({ symbol, intervalMs: interval, first: rows[0]?.[0] });
  return new Response(formatCandleCsv(rows), {
    headers: headers("text/csv; charset=utf-8", {
      "cache-control": "no-store",
      "content-disposition": `attachment; filename="${name}"`,
    }),
  });
}

function health(context: RouteContext, full: boolean): Response {
  const status = context.status();
  const body = full
    ? { ok: status.connected, consumer: status, dashboard: context.hub.metrics() }
    : { ok: status.connected };
  return json(body, status.connected ? 200 : 503);
}

function metrics(context: RouteContext): Response {
  const hub = context.hub.metrics();
  const name = (what: string) => `market_stream_dashboard_${what}`;
  const families = [
    ...context.metrics(),
    single("gauge", name("sse_streams"), "Live event streams open now.", hub.streams),
    single("counter", name("sse_streams_opened_total"), "Event streams opened.", hub.opened),
    single(
      "counter",
      name("sse_streams_refused_total"),
      "Event streams refused at the cap (503).",
      hub.refused,
    ),
    single("counter", name("sse_pushes_total"), "Pushes to the open streams.", hub.pushes),
    single(
      "gauge",
      name("sse_queued_bytes"),
      "Bytes queued for clients that have not read them.",
      hub.queuedBytes,
    ),
    labelled("counter", {
      name: name("sse_client_events_total"),
      help: "Clients that stopped reading (overflow) and got a fresh snapshot later (resync).",
      label: "event",
    }, [["overflow", hub.overflows], ["resync", hub.resyncs]]),
    ...(context.gate
      ? [single("counter", name("logins_refused_total"), "Wrong tokens.", context.gate.refused)]
      : []),
  ];
  return new Response(renderMetrics(families), {
    headers: headers(METRICS_CONTENT_TYPE, { "cache-control": "no-store" }),
  });
}

/** The gate's verdict: undefined to go on, else the answer. */
function guard(context: RouteContext, request: Request, url: URL, address: string) {
  if (context.gate === undefined) return undefined;
  const verdict = context.gate.check(request, url, address);
  if (verdict.kind === "pass") return undefined;
  if (verdict.kind === "login") {
    return new Response(null, {
      status: 303,
      headers: headers("text/plain; charset=utf-8", {
        location: verdict.location,
        "set-cookie": verdict.cookie,
        "cache-control": "no-store",
      }),
    });
  }
  return text(verdict.message, verdict.status, verdict.headers);
}

/** The request handler for Deno.serve. */
export function router(context: RouteContext): Deno.ServeHandler<Deno.NetAddr> {
  const files = new StaticFiles();
  return async (request, info) => {
    const changes = request.method === "POST" || request.method === "DELETE";
    if (request.method !== "GET" && request.method !== "HEAD" && !changes) {
      return text("only GET is served here (and POST, DELETE on /api/alerts)", 405, {
        allow: "GET, HEAD",
      });
    }
    // A page on another site must not read a loopback dashboard by DNS rebinding.
    if (context.loopbackOnly && !isLoopback(request.headers.get("host") ?? "")) {
      return text("this dashboard answers only to localhost names", 421);
    }
    const url = new URL(request.url);
    if (context.gate !== undefined && url.pathname === "/healthz") return health(context, false);
    const denied = guard(context, request, url, info.remoteAddr.hostname);
    if (denied !== undefined) return denied;
    if (url.pathname === "/api/alerts") return await alertsRoute(request, context.alerts);
    if (changes) return text("only GET is served here", 405, { allow: "GET, HEAD" });
    try {
      if (files.has(url.pathname)) return await files.serve(url.pathname);
      switch (url.pathname) {
        case "/events":
          return events(context, request, url);
        case "/api/symbols":
          return symbols(context);
        case "/api/candles":
          return candles(context, url);
        case "/api/feed":
          return json(context.feed());
        case "/healthz":
          return health(context, true);
        case "/metrics":
          return metrics(context);
      }
      return text("not found", 404);
    } catch (error) {
      if (error instanceof BadRequest) return json({ error: error.message }, 400);
      throw error;
    }
  };
}
