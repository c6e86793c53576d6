/**
 * The one shared configuration module: every setting the scripts take, read once
 * from the environment, validated, and frozen.
 *
 * A bad value never becomes a stack trace: `loadConfig` throws a `ConfigError`
 * whose message is one line naming the variable, what is wrong and a good example,
 * and `configOrExit` prints that line and exits with code 2.
 */

/** Every variable the scripts read. deno.json's `--allow-env` lists must cover these. */
export const ENV_VARS = [
  "KAFKA_BROKERS",
  "KAFKA_TOPIC",
  "KAFKA_PARTITIONS",
  "KAFKA_REPLICATION_FACTOR",
  "KAFKA_CLIENT_ID",
  "KAFKA_GROUP_ID",
  "KAFKA_SSL",
  "KAFKA_SASL_MECHANISM",
  "KAFKA_SASL_USERNAME",
  "KAFKA_SASL_PASSWORD",
  "SYMBOLS",
  "SOURCE",
  "FINNHUB_TOKEN",
  "FINNHUB_WS_URL",
  "DASHBOARD_HOST",
  "DASHBOARD_PORT",
] as const;

export type EnvVar = typeof ENV_VARS[number];
export type Env = Partial<Record<EnvVar, string>>;

export type Source = "finnhub" | "sim" | "replay";
export const SOURCES: readonly Source[] = ["finnhub", "sim", "replay"];

export type SaslMechanism = "plain" | "scram-sha-256" | "scram-sha-512";
const SASL_MECHANISMS: readonly SaslMechanism[] = [
  "plain",
  "scram-sha-256",
  "scram-sha-512",
];

export interface Sasl {
  readonly mechanism: SaslMechanism;
  readonly username: string;
  readonly password: string;
}

export interface BrokerAddress {
  readonly host: string;
  readonly port: number;
}

export interface Config {
  /** `host:port` strings, as kafkajs wants them. */
  readonly brokers: readonly string[];
  readonly topic: string;
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly clientId: string;
  readonly groupId: string;
  readonly ssl: boolean;
  readonly sasl?: Sasl;
  readonly symbols: readonly string[];
  /** The source the producer uses unless `--source` says otherwise. */
  readonly source: Source;
  readonly finnhubToken?: string;
  readonly finnhubWsUrl: string;
  readonly dashboardHost: string;
  readonly dashboardPort: number;
}

export const DEFAULTS = {
  KAFKA_BROKERS: "127.0.0.1:9092",
  KAFKA_TOPIC: "trades",
  KAFKA_PARTITIONS: "3",
  KAFKA_REPLICATION_FACTOR: "1",
  KAFKA_CLIENT_ID: "market-stream",
  KAFKA_GROUP_ID: "market-stream-charts",
  SYMBOLS: "AAPL,MSFT,NVDA,BINANCE:BTCUSDT,BINANCE:ETHUSDT",
  FINNHUB_WS_URL: "wss://ws.finnhub.io",
  DASHBOARD_HOST: "127.0.0.1",
  DASHBOARD_PORT: "8080",
} as const satisfies Env;

/** A configuration mistake, phrased for the person who made it. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

function fail(variable: string, problem: string, example: string): never {
  throw new ConfigError(`${variable}: ${problem} (example: ${variable}=${example})`);
}

/** Parses `host:port` (IPv6 as `[::1]:9092`); throws a ConfigError naming `variable`. */
export function parseHostPort(value: string, variable: string, example: string): BrokerAddress {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/
    .exec(value);
  if (!match) fail(variable, `"${value}" is not host:port`, example);
  const port = Number(match[2]);
  if (port < 1 || port > 65535) fail(variable, `port ${port} is not in 1-65535`, example);
  return { host: match[1], port };
}

function parseBrokers(value: string): string[] {
  const example = "127.0.0.1:9092,127.0.0.1:9094";
  const parts = value.split(",").map((part) => part.trim()).filter((part) => part !== "");
  if (parts.length === 0) fail("KAFKA_BROKERS", "is empty", example);
  for (const part of parts) parseHostPort(part, "KAFKA_BROKERS", example);
  return parts;
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

function parseInteger(
  value: string,
  variable: string,
  min: number,
  max: number,
  example: string,
): number {
  if (!/^\d+$/.test(value)) fail(variable, `"${value}" is not a whole number`, example);
  const number = Number(value);
  if (number < min || number > max) {
    fail(variable, `${number} is not in ${min}-${max}`, example);
  }
  return number;
}

function parseBoolean(value: string, variable: string): boolean {
  const lower = value.toLowerCase();
  if (["1", "true", "yes", "on"].includes(lower)) return true;
  if (["0", "false", "no", "off", ""].includes(lower)) return false;
  return fail(variable, `"${value}" is not true or false`, "true");
}

/**
 * A duration as people write it in a flag or a URL: `1500` (ms), `500ms`, `30s`,
 * `5m`, `1h`. Returns undefined for anything else. Shared by the consumer's flags
 * and the dashboard's query parameters.
 */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d{1,9})(ms|s|m|h)?$/.exec(text.trim());
  if (!match) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3600_000 }[match[2] ?? "ms"] ?? 1;
  return Number(match[1]) * unit;
}

/** A point in time: ms since the epoch, or an ISO time (`2026-01-05T14:30:00Z`). */
export function parseTime(text: string): number | undefined {
  if (/^\d{1,15}$/.test(text)) return Number(text);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * Finnhub symbols are free text with a few shapes: `AAPL`, `BINANCE:BTCUSDT`,
 * `OANDA:EUR_USD`, `IC MARKETS:1`. Commas separate them, so a symbol has none;
 * control characters and edge spaces are refused because they are always a typo.
 */
function parseSymbols(value: string): string[] {
  const example = "AAPL,MSFT,BINANCE:BTCUSDT";
  const symbols = value.split(",").map((symbol) => symbol.trim()).filter((symbol) => symbol !== "");
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
  const unique = new Set(symbols);
  if (unique.size !== symbols.length) fail("SYMBOLS", "names a symbol twice", example);
  return symbols;
}

function parseUrl(value: string, variable: string, schemes: string[], example: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(variable, `"${redact(value)}" is not a URL`, example);
  }
  if (!schemes.includes(url.protocol)) {
    fail(variable, `"${url.protocol}" is not one of ${schemes.join(" ")}`, example);
  }
  return value;
}

function parseSasl(env: Env): Sasl | undefined {
  const mechanism = env.KAFKA_SASL_MECHANISM?.trim().toLowerCase();
  if (!mechanism) {
    if (env.KAFKA_SASL_USERNAME || env.KAFKA_SASL_PASSWORD) {
      fail(
        "KAFKA_SASL_MECHANISM",
        "is needed when KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set",
        "scram-sha-512",
      );
    }
    return undefined;
  }
  if (!SASL_MECHANISMS.includes(mechanism as SaslMechanism)) {
    fail(
      "KAFKA_SASL_MECHANISM",
      `"${mechanism}" is not one of ${SASL_MECHANISMS.join(", ")}`,
      "plain",
    );
  }
  const username = env.KAFKA_SASL_USERNAME ?? "";
  const password = env.KAFKA_SASL_PASSWORD ?? "";
  if (username === "") fail("KAFKA_SASL_USERNAME", "is needed with KAFKA_SASL_MECHANISM", "app");
  if (password === "") fail("KAFKA_SASL_PASSWORD", "is needed with KAFKA_SASL_MECHANISM", "s3cret");
  return Object.freeze({ mechanism: mechanism as SaslMechanism, username, password });
}

/** Validates an environment (a plain object, so tests need no real env) into a frozen Config. */
export function loadConfig(env: Env): Config {
  const value = (name: keyof typeof DEFAULTS): string => {
    const raw = env[name]?.trim();
    return raw === undefined || raw === "" ? DEFAULTS[name] : raw;
  };
  const token = env.FINNHUB_TOKEN?.trim() || undefined;
  const sourceRaw = env.SOURCE?.trim().toLowerCase() || (token ? "finnhub" : "sim");
  if (!SOURCES.includes(sourceRaw as Source)) {
    fail("SOURCE", `"${sourceRaw}" is not one of ${SOURCES.join(", ")}`, "sim");
  }
  const source = sourceRaw as Source;
  const dashboardHost = value("DASHBOARD_HOST");
  parseHostPort(`${dashboardHost}:1`, "DASHBOARD_HOST", "127.0.0.1");
  return Object.freeze({
    brokers: Object.freeze(parseBrokers(value("KAFKA_BROKERS"))),
    topic: validateTopic(value("KAFKA_TOPIC")),
    partitions: parseInteger(value("KAFKA_PARTITIONS"), "KAFKA_PARTITIONS", 1, 10_000, "3"),
    replicationFactor: parseInteger(
      value("KAFKA_REPLICATION_FACTOR"),
      "KAFKA_REPLICATION_FACTOR",
      1,
      32,
      "3",
    ),
    clientId: value("KAFKA_CLIENT_ID"),
    groupId: value("KAFKA_GROUP_ID"),
    ssl: parseBoolean(env.KAFKA_SSL?.trim() ?? "", "KAFKA_SSL"),
    sasl: parseSasl(env),
    symbols: Object.freeze(parseSymbols(value("SYMBOLS"))),
    source,
    finnhubToken: token,
    finnhubWsUrl: parseUrl(
      value("FINNHUB_WS_URL"),
      "FINNHUB_WS_URL",
      ["ws:", "wss:"],
      "wss://ws.finnhub.io",
    ),
    dashboardHost,
    dashboardPort: parseInteger(value("DASHBOARD_PORT"), "DASHBOARD_PORT", 0, 65535, "8080"),
  });
}

/**
 * The token, for the one source that needs it. Checked here rather than in
 * loadConfig so that scripts that never talk to Finnhub never need (or see) it.
 */
export function requireFinnhubToken(config: Config): string {
  if (config.finnhubToken) return config.finnhubToken;
  return fail(
    "FINNHUB_TOKEN",
    "is needed for the finnhub source (free key at finnhub.io; or use --source=sim)",
    "c1234567890abcdef",
  );
}

/**
 * Reads only the variables in ENV_VARS, one by one, so each task needs nothing
 * wider than `--allow-env=<that list>`. A variable the task may not read counts as
 * unset rather than failing: a task lists only what it uses.
 */
export function readEnv(): Env {
  const env: Env = {};
  for (const name of ENV_VARS) {
    try {
      const value = Deno.env.get(name);
      if (value !== undefined) env[name] = value;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotCapable)) throw error;
    }
  }
  return env;
}

/** The process's config, or one line on stderr and exit code 2. */
export function configOrExit(env: Env = readEnv()): Config {
  try {
    return loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) exitWithError(error.message);
    throw error;
  }
}

/**
 * The one line for the first of `hosts` (`host:port`) this process may not connect
 * to, or undefined when it may reach them all. Each task's --allow-net in deno.json
 * names its hosts; one left out would otherwise fail as a network error
 * (`getaddrinfo EPERM`) only after seconds of retries.
 */
export function netAccessProblem(variable: string, hosts: readonly string[]): string | undefined {
  const host = hosts.find((host) =>
    Deno.permissions.querySync({ name: "net", host }).state !== "granted"
  );
  return host === undefined
    ? undefined
    : `${variable}: no permission to reach ${host}: add it to the task's --allow-net in deno.json`;
}

/** One line on stderr, then exit: the shape of every fatal error the scripts report. */
export function exitWithError(message: string, code = 2): never {
  console.error(`error: ${message}`);
  Deno.exit(code);
}

/** Hides Finnhub tokens (`token=…`) and URL passwords in any text that is shown. */
export function redact(text: string): string {
  return text
    .replace(/([?&]token=)[^&#\s"']+/gi, "$1***")
    .replace(/(\/\/[^:/@\s]+:)[^@/\s]+@/g, "$1***@");
}

/** The config as it may be shown: every secret replaced by `***`. */
export function describeConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    finnhubToken: config.finnhubToken ? "***" : undefined,
    finnhubWsUrl: redact(config.finnhubWsUrl),
    sasl: config.sasl ? { ...config.sasl, password: "***" } : undefined,
  };
}
