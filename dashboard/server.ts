/**
 * The dashboard server: the page in `dashboard/static/`, live updates over
 * server-sent events, and a small JSON API (routes.ts lists them), all read from
 * the one Aggregator the consumer feeds. The dashboard never reads Kafka itself.
 *
 * `consumer.ts --dashboard` calls `serveDashboard`, then `notify` after every batch,
 * and aborts `signal` to stop: open streams are ended and the server closes.
 */

import type { ConsumerStatus } from "../consumer/candles.ts";
import type { FeedSummary } from "../consumer/feed.ts";
import type { Alerting } from "../consumer/alert_topics.ts";
import { Gate } from "../lib/auth.ts";
import { UsageError } from "../lib/cli.ts";
import type { Family } from "../lib/metrics.ts";
import { isLoopback, listenError } from "../lib/net.ts";
import { readPem } from "../lib/pem.ts";
import { text } from "./http.ts";
import { type AggregatorView, Hub, type HubMetrics } from "./hub.ts";
import { router } from "./routes.ts";

export interface DashboardOptions {
  hostname: string;
  port: number;
  signal: AbortSignal;
  aggregator: AggregatorView;
  status: () => ConsumerStatus;
  /** The producer's feed as the consumer read it (consumer/feed.ts); unknown without. */
  feed?: () => FeedSummary;
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
  /** Every request must carry it (Bearer, or the cookie a `?token=` link sets). */
  token?: string;
  /** Failed logins an address may make per minute before 429. Default 10. */
  maxLoginFailures?: number;
  /** PEM text: serve HTTPS (loadTls reads the files). */
  tls?: Tls;
  /** The consumer's metric families, for /metrics (the server adds its own). */
  metrics?: () => Family[];
  /** Alert rules and firings (consumer/alert_topics.ts): /api/alerts, and pushed to the page. */
  alerts?: Alerting;
}

export interface Tls {
  readonly cert: string;
  readonly key: string;
}

export interface Dashboard {
  /** e.g. http://127.0.0.1:8080/ */
  url: string;
  /** Called by the consumer after each applied batch with the symbols it touched. */
  notify(symbols: Iterable<string>): void;
  /** Resolves when the server has closed. */
  finished: Promise<void>;
  /** Streams and push counters, as /healthz shows them. */
  metrics(): HubMetrics;
}

/** The feed of a server given none to read. */
const NO_FEED: FeedSummary = Object.freeze({
  state: "unknown",
  words: "feed state unknown: this server reads no feed",
  source: null,
  heartbeatAt: null,
  reconnectsToday: 0,
  gaps: [],
  symbols: {},
});

/** The URL to print: a wildcard bind address is reached through loopback. */
function publicUrl(hostname: string, port: number, secure: boolean): string {
  const host = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "::1" : hostname;
  return `${secure ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}/`;
}

/**
 * The certificate and key files, read and checked before Kafka: one clear line for
 * each mistake. A listener on a throwaway loopback port parses them (and checks that
 * the key belongs to the certificate) or says why not.
 */
export function loadTls(files: { certFile: string; keyFile: string }): Tls {
  const outOfReach = "put it in certs/ (deno task dashboard:shared and dashboard:remote read it)";
  const tls = {
    cert: readPem({
      variable: "DASHBOARD_CERT",
      path: files.certFile,
      kind: "certificate",
      example: "certs/cert.pem",
      outOfReach,
    }),
    key: readPem({
      variable: "DASHBOARD_KEY",
      path: files.keyFile,
      kind: "private key",
      example: "certs/key.pem",
      outOfReach,
    }),
  };
  try {
    Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...tls }).close();
  } catch (error) {
    const message = (error as Error).message.replace(/^unexpected error: /, "");
    throw new UsageError(`DASHBOARD_CERT, DASHBOARD_KEY: not a usable pair: ${message}`);
  }
  return tls;
}

/** Deno.serve, with a listen failure turned into one clear error. */
function listen(
  options: DashboardOptions,
  handler: Deno.ServeHandler<Deno.NetAddr>,
): Deno.HttpServer<Deno.NetAddr> {
  try {
    return Deno.serve({
      hostname: options.hostname,
      port: options.port,
      ...(options.tls && { cert: options.tls.cert, key: options.tls.key }),
      onListen: () => {},
      onError: (error) => {
        console.error(`dashboard: ${(error as Error).message ?? error}`);
        return text("internal error", 500);
      },
    }, handler);
  } catch (error) {
    throw listenError(error, { ...options, variable: "DASHBOARD_PORT" });
  }
}

/**
 * Stops the server when `signal` aborts; resolves once it has closed. Open SSE
 * responses never end by themselves, so the hub ends them first. A client that
 * stopped reading still keeps its response unfinished, and Deno's graceful shutdown
 * would wait for it forever: after `graceMs` we stop waiting and let the process
 * exit without it.
 */
function closeOnAbort(
  server: Deno.HttpServer,
  hub: Hub,
  signal: AbortSignal,
  graceMs: number,
): Promise<void> {
  const gaveUp = Promise.withResolvers<void>();
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    hub.close();
    server.shutdown();
    graceTimer = setTimeout(() => {
      console.error("dashboard: a client did not take its last bytes; closing without it");
      server.unref();
      gaveUp.resolve();
    }, graceMs);
  };
  if (signal.aborted) stop();
  else signal.addEventListener("abort", stop, { once: true });
  return Promise.race([server.finished, gaveUp.promise]).finally(() => {
    clearTimeout(graceTimer);
    signal.removeEventListener("abort", stop);
    hub.close();
  });
}

/** Serves the dashboard until `options.signal` aborts. Throws when it cannot listen. */
export function serveDashboard(options: DashboardOptions): Dashboard {
  const maxStreams = options.maxStreams ?? 100;
  const feed = options.feed ?? (() => NO_FEED);
  const hub = new Hub({
    aggregator: options.aggregator,
    status: options.status,
    feed,
    pushIntervalMs: options.pushIntervalMs ?? 50,
    heartbeatMs: options.heartbeatMs ?? 1000,
    clientBufferBytes: options.clientBufferBytes ?? 1024 * 1024,
    maxStreams,
    alerts: options.alerts && ((seq) => options.alerts!.engine.since(seq)),
  });
  const gate = options.token === undefined ? undefined : new Gate({
    token: options.token,
    secure: options.tls !== undefined,
    page: true,
    maxFailures: options.maxLoginFailures,
    log: (line) => console.error(`dashboard: ${line}`),
  });
  const handler = router({
    aggregator: options.aggregator,
    status: options.status,
    feed,
    hub,
    maxStreams,
    loopbackOnly: isLoopback(options.hostname),
    gate,
    metrics: options.metrics ?? (() => []),
    alerts: options.alerts,
  });
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = listen(options, handler);
  } catch (error) {
    hub.close();
    throw error;
  }
  return {
    url: publicUrl(options.hostname, server.addr.port, options.tls !== undefined),
    notify: (symbols) => hub.notify(symbols),
    finished: closeOnAbort(server, hub, options.signal, options.shutdownGraceMs ?? 3000),
    metrics: () => hub.metrics(),
  };
}
