/**
 * Metrics in the Prometheus text format (version 0.0.4), the one way both scripts
 * expose them: a scrape asks each script for its families, read from the counters
 * it keeps anyway, and this module writes them as text. Nothing here runs on the
 * trade path: a scrape reads, it never counts.
 *
 *   # HELP market_stream_producer_trades_received_total Valid trades taken from the source.
 *   # TYPE market_stream_producer_trades_received_total counter
 *   market_stream_producer_trades_received_total 1234
 *
 * Names follow Prometheus's conventions: a `market_stream_` prefix, base units
 * (`_seconds`, never ms), `_total` on counters.
 */

import { Gate } from "./auth.ts";
import { listenError } from "./net.ts";

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  readonly labels?: Labels;
  readonly value: number;
}

export interface HistogramSample {
  readonly labels?: Labels;
  /** [upper bound, observations <= it], bounds ascending; +Inf is added here. */
  readonly buckets: readonly (readonly [number, number])[];
  readonly count: number;
  readonly sum: number;
}

export type Family =
  | {
    readonly name: string;
    readonly help: string;
    readonly type: "counter" | "gauge";
    readonly samples: readonly Sample[];
  }
  | {
    readonly name: string;
    readonly help: string;
    readonly type: "histogram";
    readonly samples: readonly HistogramSample[];
  };

/** The content type Prometheus expects for this format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function number(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function labelText(labels: Labels | undefined, extra?: [string, string]): string {
  const pairs = Object.entries(labels ?? {});
  if (extra) pairs.push(extra);
  if (pairs.length === 0) return "";
  const escape = (value: string) =>
    value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
  return `{${
    pairs.map(([key, value]) => {
      if (!LABEL.test(key)) throw new TypeError(`metrics: "${key}" is not a label name`);
      return `${key}="${escape(value)}"`;
    }).join(",")
  }}`;
}

/** The families as one text exposition, HELP and TYPE before each. */
export function renderMetrics(families: readonly Family[]): string {
  const lines: string[] = [];
  for (const family of families) {
    const { name, type } = family;
    if (!NAME.test(name)) throw new TypeError(`metrics: "${name}" is not a metric name`);
    if (type === "counter" && !name.endsWith("_total")) {
      throw new TypeError(`metrics: the counter ${name} must end in _total`);
    }
    lines.push(`# HELP ${name} ${family.help.replaceAll("\\", "\\\\").replaceAll("\n", "\\n")}`);
    lines.push(`# TYPE ${name} ${type}`);
    if (family.type !== "histogram") {
      for (const { labels, value } of family.samples) {
        lines.push(`${name}${labelText(labels)} ${number(value)}`);
      }
      continue;
    }
    for (const { labels, buckets, count, sum } of family.samples) {
      for (const [bound, observed] of buckets) {
        lines.push(`${name}_bucket${labelText(labels, ["le", number(bound)])} ${observed}`);
      }
      lines.push(`${name}_bucket${labelText(labels, ["le", "+Inf"])} ${count}`);
      lines.push(`${name}_sum${labelText(labels)} ${number(sum)}`);
      lines.push(`${name}_count${labelText(labels)} ${count}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/** A counter or gauge with one unlabelled value. */
export function single(
  type: "counter" | "gauge",
  name: string,
  help: string,
  value: number,
): Family {
  return { name, help, type, samples: [{ value }] };
}

/** A counter or gauge with one sample per entry, labelled `label`. */
export function labelled(
  type: "counter" | "gauge",
  meta: { name: string; help: string; label: string },
  values: Iterable<readonly [string | number, number]>,
): Family {
  const samples = [...values].map(([key, value]) => ({
    labels: { [meta.label]: String(key) },
    value,
  }));
  return { name: meta.name, help: meta.help, type, samples };
}

export interface MetricsServerOptions {
  readonly hostname: string;
  readonly port: number;
  /** Required beyond loopback (config.ts): `Authorization: Bearer <token>`. */
  readonly token?: string;
  /** The families, read at each scrape. */
  readonly collect: () => readonly Family[];
  /** Failed logins, one line each (never the token). */
  readonly log: (line: string) => void;
}

export interface MetricsServer extends AsyncDisposable {
  /** e.g. http://127.0.0.1:9464/metrics */
  readonly url: string;
}

/**
 * A small server with one route, GET /metrics (the producer's: the dashboard serves
 * its metrics among its own routes). Throws a UsageError naming `variable` when the
 * port is taken or the task may not listen there.
 */
export function serveMetrics(options: MetricsServerOptions, variable: string): MetricsServer {
  const gate = options.token === undefined
    ? undefined
    : new Gate({ token: options.token, secure: false, page: false, log: options.log });
  const handler: Deno.ServeHandler<Deno.NetAddr> = (request, info) => {
    const url = new URL(request.url);
    const verdict = gate?.check(request, url, info.remoteAddr.hostname);
    if (verdict?.kind === "denied") {
      return new Response(`${verdict.message}\n`, {
        status: verdict.status,
        headers: verdict.headers,
      });
    }
    if (url.pathname !== "/metrics") {
      return new Response("not found: try /metrics\n", { status: 404 });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("only GET is served here\n", {
        status: 405,
        headers: { allow: "GET, HEAD" },
      });
    }
    return new Response(renderMetrics(options.collect()), {
      headers: { "content-type": METRICS_CONTENT_TYPE, "cache-control": "no-store" },
    });
  };
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname: options.hostname, port: options.port, onListen: () => {} },
      handler,
    );
  } catch (error) {
    throw listenError(error, { hostname: options.hostname, port: options.port, variable });
  }
  const host = options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname;
  return {
    url: `http://${host}:${server.addr.port}/metrics`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}
