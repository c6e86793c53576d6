/**
 * The one shared configuration: every setting the scripts take, read once from the
 * environment, validated, and frozen. Nothing else lives here.
 *
 * A bad value never becomes a stack trace: `loadConfig` throws a ConfigError whose
 * message is one line naming the variable, what is wrong and a good example; the
 * scripts print it and exit with code 2. `.env.example` documents every variable.
 */

import { UsageError } from "./lib/cli.ts";
import { readPem } from "./lib/pem.ts";
import { MIN_TOKEN_LENGTH } from "./lib/auth.ts";
import { type AlertRule, parseAlertSpecs, RuleError } from "./lib/alert_rules.ts";
import { isLoopback } from "./lib/net.ts";
import { redact } from "./lib/redact.ts";
import { type Source, SOURCES } from "./lib/trade.ts";

/**
 * Every variable the scripts read, with its default ("" for none). The permission
 * sets in deno.json let each script read the ones it uses.
 */
export const DEFAULTS = {
  KAFKA_BROKERS: "127.0.0.1:9092",
  KAFKA_TOPIC: "trades",
  KAFKA_PARTITIONS: "3",
  KAFKA_REPLICATION_FACTOR: "1",
  KAFKA_CLIENT_ID: "market-stream",
  KAFKA_GROUP_ID: "market-stream-charts",
  KAFKA_SSL: "",
  KAFKA_SSL_CA: "",
  KAFKA_SSL_CERT: "",
  KAFKA_SSL_KEY: "",
  KAFKA_SASL_MECHANISM: "",
  KAFKA_SASL_USERNAME: "",
  KAFKA_SASL_PASSWORD: "",
  SYMBOLS: "AAPL,MSFT,NVDA,BINANCE:BTCUSDT,BINANCE:ETHUSDT",
  SOURCE: "",
  FINNHUB_TOKEN: "",
  FINNHUB_WS_URL: "wss://ws.finnhub.io",
  DASHBOARD_HOST: "127.0.0.1",
  DASHBOARD_PORT: "8080",
  DASHBOARD_TOKEN: "",
  DASHBOARD_CERT: "",
  DASHBOARD_KEY: "",
  PRODUCER_METRICS_PORT: "",
  PRODUCER_METRICS_HOST: "127.0.0.1",
  PRODUCER_METRICS_TOKEN: "",
  ALERTS: "",
} as const;

export type Env = Partial<Record<keyof typeof DEFAULTS, string>>;

export type SaslMechanism = "plain" | "scram-sha-256" | "scram-sha-512";
const SASL_MECHANISMS: readonly SaslMechanism[] = ["plain", "scram-sha-256", "scram-sha-512"];

export interface Config {
  /** `host:port` strings, as kafkajs wants them. */
  readonly brokers: readonly string[];
  readonly topic: string;
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly clientId: string;
  readonly groupId: string;
  readonly ssl: boolean;
  /** PEM text of KAFKA_SSL_CA, KAFKA_SSL_CERT and KAFKA_SSL_KEY, read once; set means TLS. */
  readonly sslFiles?: SslFiles;
  readonly sasl?: Readonly<{ mechanism: SaslMechanism; username: string; password: string }>;
  readonly symbols: readonly string[];
  /** The source the producer uses unless `--source` says otherwise. */
  readonly source: Source;
  readonly finnhubToken?: string;
  readonly finnhubWsUrl: string;
  readonly dashboardHost: string;
  readonly dashboardPort: number;
  /** Required beyond loopback; when set, every request must carry it. A secret. */
  readonly dashboardToken?: string;
  /** PEM files: the dashboard speaks HTTPS. */
  readonly dashboardTls?: Readonly<{ certFile: string; keyFile: string }>;
  /** The producer's /metrics; undefined: not served. */
  readonly producerMetrics?: Readonly<{ host: string; port: number; token?: string }>;
  /** Alert rules for headless runs (ALERTS), evaluated by the consumer. */
  readonly alerts: readonly AlertRule[];
}

/** A private CA to trust, and a client certificate with its key (mTLS); PEM text. */
export interface SslFiles {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/** A configuration mistake, phrased for the person who made it (exit code 2). */
export class ConfigError extends UsageError {
  override name = "ConfigError";
}

function fail(variable: string, problem: string, example: string): never {
  throw new ConfigError(`${variable}: ${problem} (example: ${variable}=${example})`);
}

/** Parses `host:port` (IPv6 as `[::1]:9092`); throws a ConfigError naming `variable`. */
export function parseHostPort(value: string, variable: string, example: string) {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/
    .exec(value);
  if (!match) fail(variable, `"${value}" is not host:port`, example);
  const port = Number(match[2]);
  if (port < 1 || port > 65535) fail(variable, `port ${port} is not in 1-65535`, example);
  return { host: match[1], port };
}

/** Kafka's own rule: 1-249 characters of [a-zA-Z0-9._-], and not "." or "..". */
export function validateTopic(value: string, variable = "KAFKA_TOPIC"): string {
  if (value === "" || value.length > 249) {
    fail(variable, `topic names have 1 to 249 characters, not ${value.length}`, "trades");
  }
  if (value === "." || value === "..") fail(variable, `"${value}" is not a valid topic`, "trades");
  if (!/^[a-zA-Z0-9._-]+$/.test(value)) {
    fail(variable, `"${value}" may use only letters, digits, ".", "_" and "-"`, "trades");
  }
  return value;
}

function parseInteger(value: string, variable: string, min: number, max: number): number {
  const example = variable === "DASHBOARD_PORT"
    ? "8080"
    : variable === "PRODUCER_METRICS_PORT"
    ? "9464"
    : "3";
  if (!/^\d+$/.test(value)) fail(variable, `"${value}" is not a whole number`, example);
  const number = Number(value);
  if (number < min || number > max) fail(variable, `${number} is not in ${min}-${max}`, example);
  return number;
}

function parseBoolean(value: string, variable: string): boolean {
  const lower = value.toLowerCase();
  if (["1", "true", "yes", "on"].includes(lower)) return true;
  if (["0", "false", "no", "off", ""].includes(lower)) return false;
  return fail(variable, `"${value}" is not true or false`, "true");
}

/** Comma-separated, each item trimmed; empty items are ignored. */
function list(value: string): string[] {
  return value.split(",").map((item) => item.trim()).filter((item) => item !== "");
}

/**
 * Finnhub symbols are free text with a few shapes: `AAPL`, `BINANCE:BTCUSDT`,
 * `OANDA:EUR_USD`, `IC MARKETS:1`. Commas separate them, so a symbol has none;
 * control characters are refused because they are always a typo.
 */
function parseSymbols(value: string): string[] {
  const example = "AAPL,MSFT,BINANCE:BTCUSDT";
  const symbols = list(value);
  if (symbols.length === 0) fail("SYMBOLS", "names no symbol", example);
  for (const symbol of symbols) {
    if (symbol.length > 64) {
      fail("SYMBOLS", `"${symbol.slice(0, 20)}…" is over 64 characters`, example);
    }
    // deno-lint-ignore no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(symbol)) {
      fail("SYMBOLS", `"${symbol}" has a control character`, example);
    }
  }
  if (new Set(symbols).size !== symbols.length) fail("SYMBOLS", "names a symbol twice", example);
  return symbols;
}

function parseWsUrl(value: string): string {
  const example = "wss://ws.finnhub.io";
  const protocol = URL.canParse(value) ? new URL(value).protocol : "";
  if (protocol === "") fail("FINNHUB_WS_URL", `"${redact(value)}" is not a URL`, example);
  if (protocol !== "ws:" && protocol !== "wss:") {
    fail("FINNHUB_WS_URL", `"${protocol}" is not one of ws: wss:`, example);
  }
  return value;
}

function parseSasl(env: Env): Config["sasl"] {
  const mechanism = env.KAFKA_SASL_MECHANISM?.trim().toLowerCase();
  if (!mechanism) {
    if (env.KAFKA_SASL_USERNAME || env.KAFKA_SASL_PASSWORD) {
      const problem = "is needed when KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set";
      fail("KAFKA_SASL_MECHANISM", problem, "scram-sha-512");
    }
    return undefined;
  }
  if (!SASL_MECHANISMS.includes(mechanism as SaslMechanism)) {
    const problem = `"${mechanism}" is not one of ${SASL_MECHANISMS.join(", ")}`;
    fail("KAFKA_SASL_MECHANISM", problem, "plain");
  }
  const username = env.KAFKA_SASL_USERNAME ?? "";
  const password = env.KAFKA_SASL_PASSWORD ?? "";
  if (username === "") fail("KAFKA_SASL_USERNAME", "is needed with KAFKA_SASL_MECHANISM", "app");
  if (password === "") fail("KAFKA_SASL_PASSWORD", "is needed with KAFKA_SASL_MECHANISM", "s3cret");
  return Object.freeze({ mechanism: mechanism as SaslMechanism, username, password });
}

/**
 * A server's token: needed when `host` is not loopback (anyone who reaches the port
 * would read it), and never short. Undefined when unset on loopback.
 */
function parseToken(
  token: string,
  names: { variable: string; hostVariable: string; host: string },
): string | undefined {
  const example = "$(openssl rand -hex 24)";
  if (token === "") {
    if (isLoopback(names.host)) return undefined;
    fail(
      names.variable,
      `is needed when ${names.hostVariable}=${names.host} (beyond loopback anyone who reaches ` +
        `the port could read it); or set ${names.hostVariable}=127.0.0.1`,
      example,
    );
  }
  if (token.length < MIN_TOKEN_LENGTH) {
    fail(
      names.variable,
      `is ${token.length} characters, too easy to guess: use at least ${MIN_TOKEN_LENGTH}`,
      example,
    );
  }
  return token;
}

function parseTls(env: Env): Config["dashboardTls"] {
  const certFile = env.DASHBOARD_CERT?.trim() ?? "";
  const keyFile = env.DASHBOARD_KEY?.trim() ?? "";
  if (certFile === "" && keyFile === "") return undefined;
  if (keyFile === "") fail("DASHBOARD_KEY", "is needed with DASHBOARD_CERT", "certs/key.pem");
  if (certFile === "") fail("DASHBOARD_CERT", "is needed with DASHBOARD_KEY", "certs/cert.pem");
  return Object.freeze({ certFile, keyFile });
}

function parseProducerMetrics(env: Env): Config["producerMetrics"] {
  const raw = env.PRODUCER_METRICS_PORT?.trim() ?? "";
  if (raw === "") return undefined;
  const host = env.PRODUCER_METRICS_HOST?.trim() || DEFAULTS.PRODUCER_METRICS_HOST;
  parseHostPort(`${host}:1`, "PRODUCER_METRICS_HOST", "127.0.0.1");
  const token = parseToken(env.PRODUCER_METRICS_TOKEN?.trim() ?? "", {
    variable: "PRODUCER_METRICS_TOKEN",
    hostVariable: "PRODUCER_METRICS_HOST",
    host,
  });
  const port = parseInteger(raw, "PRODUCER_METRICS_PORT", 0, 65535);
  return Object.freeze({ host, port, token });
}

const KAFKA_FILES = {
  KAFKA_SSL_CA: { kind: "certificate", example: "certs/ca.pem" },
  KAFKA_SSL_CERT: { kind: "certificate", example: "certs/client.pem" },
  KAFKA_SSL_KEY: { kind: "private key", example: "certs/client.key" },
} as const;

/** A Kafka TLS file, read once (lib/pem.ts: one line for each mistake). */
function readKafkaFile(variable: keyof typeof KAFKA_FILES, path: string): string {
  try {
    return readPem({
      variable,
      path,
      ...KAFKA_FILES[variable],
      outOfReach: "put it in certs/ and run the task's :remote variant " +
        "(deno task produce:remote, consume:remote, dashboard:remote)",
    });
  } catch (error) {
    throw error instanceof UsageError ? new ConfigError(error.message) : error;
  }
}

/** KAFKA_SSL_CA, _CERT and _KEY: a certificate and its key go together; any of them means TLS. */
function parseSslFiles(env: Env): SslFiles | undefined {
  const path = (name: keyof typeof KAFKA_FILES) => env[name]?.trim() || undefined;
  const [ca, cert, key] = [path("KAFKA_SSL_CA"), path("KAFKA_SSL_CERT"), path("KAFKA_SSL_KEY")];
  if (key && !cert) fail("KAFKA_SSL_CERT", "is needed with KAFKA_SSL_KEY", "certs/client.pem");
  if (cert && !key) fail("KAFKA_SSL_KEY", "is needed with KAFKA_SSL_CERT", "certs/client.key");
  if (!ca && !cert) return undefined;
  return Object.freeze({
    ...ca ? { ca: readKafkaFile("KAFKA_SSL_CA", ca) } : {},
    ...cert && key
      ? { cert: readKafkaFile("KAFKA_SSL_CERT", cert), key: readKafkaFile("KAFKA_SSL_KEY", key) }
      : {},
  });
}

/** KAFKA_SSL, which the certificate files turn on (and may not contradict). */
function parseSsl(env: Env, files: SslFiles | undefined): boolean {
  const ssl = parseBoolean(env.KAFKA_SSL?.trim() ?? "", "KAFKA_SSL");
  if (files && !ssl && env.KAFKA_SSL?.trim()) {
    const problem = "is false, but KAFKA_SSL_CA or KAFKA_SSL_CERT needs TLS: set it to true";
    fail("KAFKA_SSL", problem, "true");
  }
  return ssl || files !== undefined;
}

function parseSource(env: Env, token: string | undefined): Source {
  const source = env.SOURCE?.trim().toLowerCase() || (token ? "finnhub" : "sim");
  if (!SOURCES.includes(source as Source)) {
    fail("SOURCE", `"${source}" is not one of ${SOURCES.join(", ")}`, "sim");
  }
  return source as Source;
}

function parseAlerts(env: Env): readonly AlertRule[] {
  try {
    return Object.freeze(parseAlertSpecs(env.ALERTS ?? ""));
  } catch (error) {
    if (!(error instanceof RuleError)) throw error;
    return fail("ALERTS", error.message, "AAPL>190,AAPL<185,BINANCE:BTCUSDT~2%/5m,MSFT!10m");
  }
}

/** Validates an environment (a plain object, so tests need no real env) into a frozen Config. */
export function loadConfig(env: Env): Config {
  const value = (name: keyof typeof DEFAULTS): string => env[name]?.trim() || DEFAULTS[name];
  const int = (name: keyof typeof DEFAULTS, min: number, max: number) =>
    parseInteger(value(name), name, min, max);
  const token = value("FINNHUB_TOKEN") || undefined;
  const brokers = list(value("KAFKA_BROKERS"));
  const example = "127.0.0.1:9092,127.0.0.1:9094";
  if (brokers.length === 0) fail("KAFKA_BROKERS", "is empty", example);
  for (const broker of brokers) parseHostPort(broker, "KAFKA_BROKERS", example);
  const dashboardHost = value("DASHBOARD_HOST");
  parseHostPort(`${dashboardHost}:1`, "DASHBOARD_HOST", "127.0.0.1");
  const sslFiles = parseSslFiles(env);
  return Object.freeze({
    brokers: Object.freeze(brokers),
    topic: validateTopic(value("KAFKA_TOPIC")),
    partitions: int("KAFKA_PARTITIONS", 1, 10_000),
    replicationFactor: int("KAFKA_REPLICATION_FACTOR", 1, 32),
    clientId: value("KAFKA_CLIENT_ID"),
    groupId: value("KAFKA_GROUP_ID"),
    ssl: parseSsl(env, sslFiles),
    sslFiles,
    sasl: parseSasl(env),
    symbols: Object.freeze(parseSymbols(value("SYMBOLS"))),
    source: parseSource(env, token),
    finnhubToken: token,
    finnhubWsUrl: parseWsUrl(value("FINNHUB_WS_URL")),
    dashboardHost,
    dashboardPort: int("DASHBOARD_PORT", 0, 65535),
    dashboardToken: parseToken(env.DASHBOARD_TOKEN?.trim() ?? "", {
      variable: "DASHBOARD_TOKEN",
      hostVariable: "DASHBOARD_HOST",
      host: dashboardHost,
    }),
    dashboardTls: parseTls(env),
    producerMetrics: parseProducerMetrics(env),
    alerts: parseAlerts(env),
  });
}

/**
 * Reads only the variables in DEFAULTS, one by one. A variable the task may not
 * read counts as unset rather than failing: each permission set lists only what its
 * script uses (the consumer never sees FINNHUB_TOKEN).
 */
export function readEnv(): Env {
  const env: Env = {};
  for (const name of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
    try {
      const value = Deno.env.get(name);
      if (value !== undefined) env[name] = value;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotCapable)) throw error;
    }
  }
  return env;
}
