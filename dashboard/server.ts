/**
 * The dashboard server: the page in `dashboard/`, uPlot from the npm package, live
 * updates over server-sent events, and a small JSON API — all read from the one
 * Aggregator the consumer feeds. The dashboard never reads Kafka itself.
 *
 *   GET /                 the page: dashboard/index.html and its scripts and stylesheet
 *   GET /vendor/uPlot.*   uPlot's ES module and stylesheet, served from node_modules
 *   GET /events           SSE: a snapshot of one symbol's window, then deltas
 *   GET /api/symbols      every symbol with its stats
 *   GET /api/candles      ?symbol=&interval=&from= candles, oldest first
 *   GET /healthz          200 when the consumer is connected, else 503
 *
 * `consumer.ts --dashboard` calls `serveDashboard` and then `notify` after every batch.
 */

import type { Candle, ConsumerStatus } from "../consumer/candles.ts";
import { parseDuration, parseTime } from "../config.ts";
import { type AggregatorView, Hub, type HubMetrics, safeJson, type Subscription } from "./sse.ts";
import { MAX_SYMBOL_LENGTH } from "../lib/trade.ts";

export interface DashboardOptions {
  hostname: string;
  port: number;
  signal: AbortSignal;
  aggregator: AggregatorView;
  status: () => ConsumerStatus;
  /** Concurrent SSE streams; more are answered 503. Default 100. */
  maxStreams?: number;
  /** Least time between two pushes to one client, ms. Default 50 (20 per second). */
  pushIntervalMs?: number;
  /** Unread bytes a client may hold before it is resynced. Default 1 MiB. */
  clientBufferBytes?: number;
  /** Stats and status are pushed at least this often, ms. Default 1000. */
  heartbeatMs?: number;
  /** How long shutdown waits for clients that do not read, ms. Default 3000. */
  shutdownGraceMs?: number;
}

export interface Dashboard {
  /** e.g. http://127.0.0.1:8080/ */
  url: string;
  /** Called by the consumer after each applied batch with the symbols it touched. */
  notify(symbols: Iterable<string>): void;
  /** Resolves when the server has closed. */
  finished: Promise<void>;
  /** Streams and push counters, for tests and /healthz. */
  metrics(): HubMetrics;
}

export const DEFAULT_WINDOW_MS = 5 * 60_000;
const MIN_WINDOW_MS = 10_000;
const MAX_WINDOW_MS = 24 * 3600_000;

/**
 * No inline script or style, nothing from another origin: even if some value did
 * reach the page as markup, the browser would refuse to run it.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

/** The files the page is made of: URL path -> file and content type. Nothing else is served. */
const STATIC_FILES: Record<string, { file: URL; type: string }> = {
  "/": { file: new URL("./static/index.html", import.meta.url), type: "text/html" },
  "/vendor/uPlot.esm.js": {
    file: new URL("../node_modules/uplot/dist/uPlot.esm.js", import.meta.url),
    type: "text/javascript",
  },
  "/vendor/uPlot.min.css": {
    file: new URL("../node_modules/uplot/dist/uPlot.min.css", import.meta.url),
    type: "text/css",
  },
};
STATIC_FILES["/index.html"] = STATIC_FILES["/"];
STATIC_FILES["/format.js"] = {
  file: new URL("../lib/format.js", import.meta.url),
  type: "text/javascript",
};
for (const name of ["app.js", "charts.js", "panels.js", "style.css"]) {
  STATIC_FILES[`/${name}`] = {
    file: new URL(`./static/${name}`, import.meta.url),
    type: name.endsWith(".js") ? "text/javascript" : "text/css",
  };
}

class BadRequest extends Error {}

function headers(type: string, extra: Record<string, string> = {}): Headers {
  return new Headers({ ...SECURITY_HEADERS, "content-type": type, ...extra });
}

function json(value: unknown, status = 200): Response {
  return new Response(safeJson(value), {
    status,
    headers: headers("application/json; charset=utf-8", { "cache-control": "no-store" }),
  });
}

function text(message: string, status: number, extra: Record<string, string> = {}): Response {
  return new Response(`${message}\n`, {
    status,
    headers: headers("text/plain; charset=utf-8", extra),
  });
}

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

function candleObject(candle: Candle) {
  const { start, open, high, low, close, volume, trades, vwap } = candle;
  return { start, open, high, low, close, volume, trades, vwap };
}

/** True when a request's Host names this machine (the server is bound to loopback). */
function isLocalHost(host: string | null): boolean {
  if (host === null) return false;
  const name = host.replace(/:\d+$/, "").replace(/^\[|\]$/g, "").toLowerCase();
  return name === "localhost" || name === "::1" || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/** The URL to print: a wildcard bind address is reached through loopback. */
function publicUrl(hostname: string, port: number): string {
  const host = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "::1" : hostname;
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}/`;
}

export function serveDashboard(options: DashboardOptions): Dashboard {
  const aggregator = options.aggregator;
  const hub = new Hub({
    aggregator,
    status: options.status,
    pushIntervalMs: options.pushIntervalMs ?? 50,
    heartbeatMs: options.heartbeatMs ?? 1000,
    clientBufferBytes: options.clientBufferBytes ?? 1024 * 1024,
    maxStreams: options.maxStreams ?? 100,
  });
  const loopbackOnly = isLocalHost(options.hostname);
  // Read on first request, then kept: the files are small and never change while serving.
  const files = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();

  async function serveFile(path: string): Promise<Response> {
    const entry = STATIC_FILES[path];
    let body = files.get(path);
    if (body === undefined) {
      body = Deno.readFile(entry.file);
      files.set(path, body);
    }
    try {
      return new Response(await body, {
        headers: headers(`${entry.type}; charset=utf-8`, { "cache-control": "no-cache" }),
      });
    } catch (error) {
      files.delete(path);
      const what = entry.file.pathname;
      console.error(`dashboard: cannot read ${what}: ${(error as Error).message}`);
      return text(`cannot read ${path.slice(1) || "index.html"} on the server`, 500);
    }
  }

  function events(request: Request, url: URL): Response {
    const symbol = pickSymbol(url.searchParams.get("symbol"));
    const sub: Subscription = {
      symbol,
      explicit: symbol !== null,
      intervalMs: pickInterval(aggregator, url.searchParams.get("interval")),
      windowMs: pickWindow(url.searchParams.get("window")),
    };
    // A browser's own reconnect sends Last-Event-ID; the page's manual retry uses ?since=.
    const lastId = request.headers.get("last-event-id") ?? url.searchParams.get("since");
    const client = hub.open(sub, lastId);
    if (client === "full") {
      const cap = options.maxStreams ?? 100;
      return text(
        `too many live streams: this dashboard serves at most ${cap} at once; close another tab`,
        503,
        { "retry-after": "5" },
      );
    }
    return new Response(client.stream, {
      headers: headers("text/event-stream; charset=utf-8", {
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      }),
    });
  }

  function candles(url: URL): Response {
    const symbol = pickSymbol(url.searchParams.get("symbol"));
    if (symbol === null) throw new BadRequest("symbol: missing (example: ?symbol=AAPL)");
    const interval = pickInterval(aggregator, url.searchParams.get("interval"));
    const fromRaw = url.searchParams.get("from");
    const from = fromRaw === null || fromRaw === "" ? undefined : parseTime(fromRaw);
    if (from === undefined && fromRaw !== null && fromRaw !== "") {
      throw new BadRequest(`from: "${fromRaw}" is not ms since the epoch or an ISO time`);
    }
    const stats = aggregator.stats(symbol);
    if (stats === undefined) return json({ error: `symbol: no trades seen for ${symbol}` }, 404);
    const list = aggregator.candles(symbol, interval, from);
    return json({ symbol, source: stats.source, interval, candles: list.map(candleObject) });
  }

  function health(): Response {
    const status = options.status();
    const body = { ok: status.connected, consumer: status, dashboard: hub.metrics() };
    return json(body, status.connected ? 200 : 503);
  }

  async function handle(request: Request): Promise<Response> {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return text("only GET is served here", 405, { allow: "GET, HEAD" });
    }
    // A page on another site must not read a loopback dashboard by DNS rebinding.
    if (loopbackOnly && !isLocalHost(request.headers.get("host"))) {
      return text("this dashboard answers only to localhost names", 421);
    }
    const url = new URL(request.url);
    try {
      if (url.pathname in STATIC_FILES) return await serveFile(url.pathname);
      switch (url.pathname) {
        case "/events":
          return events(request, url);
        case "/api/symbols": {
          const now = Date.now();
          const symbols = aggregator.symbols().map((symbol) => aggregator.stats(symbol, now))
            .filter((stats) => stats !== undefined);
          return json({ intervals: aggregator.intervals(), symbols });
        }
        case "/api/candles":
          return candles(url);
        case "/healthz":
          return health();
      }
      return text("not found", 404);
    } catch (error) {
      if (error instanceof BadRequest) return json({ error: error.message }, 400);
      throw error;
    }
  }

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: options.hostname,
      port: options.port,
      onListen: () => {},
      onError: (error) => {
        console.error(`dashboard: ${(error as Error).message ?? error}`);
        return text("internal error", 500);
      },
    }, handle);
  } catch (error) {
    hub.close();
    const where = `${options.hostname}:${options.port}`;
    if (error instanceof Deno.errors.AddrInUse) {
      throw new Error(`dashboard: ${where} is in use (set DASHBOARD_PORT to another port)`);
    }
    throw new Error(`dashboard: cannot listen on ${where}: ${(error as Error).message}`);
  }

  // A client that stopped reading keeps its response unfinished, and Deno's graceful
  // shutdown would wait for it forever: after a grace period we stop waiting and let
  // the process exit without it.
  const gaveUp = Promise.withResolvers<void>();
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    // Open SSE responses never end by themselves: close them, or shutdown waits forever.
    hub.close();
    server.shutdown();
    graceTimer = setTimeout(() => {
      console.error("dashboard: a client did not take its last bytes; closing without it");
      server.unref();
      gaveUp.resolve();
    }, options.shutdownGraceMs ?? 3000);
  };
  if (options.signal.aborted) stop();
  else options.signal.addEventListener("abort", stop, { once: true });

  return {
    url: publicUrl(options.hostname, server.addr.port),
    notify: (symbols) => hub.notify(symbols),
    finished: Promise.race([server.finished, gaveUp.promise]).finally(() => {
      clearTimeout(graceTimer);
      options.signal.removeEventListener("abort", stop);
      hub.close();
    }),
    metrics: () => hub.metrics(),
  };
}
