/**
 * The producer's command line: every flag parsed and checked before anything
 * connects, so a mistake is one line and exit code 2, never a half-started run.
 */

import { type Config, ConfigError } from "../config.ts";
import { parseFlags, positive, UsageError } from "../lib/cli.ts";
import { redact } from "../lib/redact.ts";
import { type Source, SOURCES } from "../lib/trade.ts";

export interface Flags {
  readonly source?: Source;
  readonly replay?: string;
  readonly symbols?: string;
  readonly topic?: string;
  readonly seed?: number;
  readonly rate?: number | "max";
  readonly limit?: number;
  readonly speed?: number | "max";
  readonly keepTimes: boolean;
  readonly record?: string;
  /** Seconds; 0: no status line. */
  readonly statusInterval: number;
  readonly queue: number;
  /** Seconds. */
  readonly flushTimeout: number;
  /** Seconds. */
  readonly deadAfter: number;
  /** Seconds. */
  readonly silentAfter: number;
  /** Seconds between heartbeats on the feed topic. */
  readonly heartbeat: number;
  readonly help: boolean;
}

export const USAGE = `usage: deno task produce [flags]

  --source=finnhub|sim|replay  where trades come from (default: finnhub with FINNHUB_TOKEN, else sim)
  --symbols=A,B,...            symbols to subscribe to or simulate (default: SYMBOLS)
  --topic=NAME                 Kafka topic (default: KAFKA_TOPIC)
  --rate=N|max                 sim: trades per second over all symbols (default 50)
  --seed=N                     sim: seed for a repeatable market (default: random, printed)
  --replay=FILE                play a recording (implies --source=replay)
  --speed=N|max                replay: multiple of the recorded pace (default 1)
  --keep-times                 replay: keep the recorded trade times (default: shift them to now)
  --record=FILE                finnhub, sim: append every raw frame to FILE (NDJSON)
  --limit=N                    stop after N trades, flush, exit
  --status-interval=S          seconds between status lines (default 5; 0: none)
  --queue=N                    trades held while Kafka is away (default 200000)
  --flush-timeout=S            on stop, wait this long for Kafka (default 10)
  --dead-after=S               finnhub: no frame for this long means a dead connection (default 150)
  --silent-after=S             finnhub: name symbols without trades this long (default 120)
  --heartbeat=S                seconds between heartbeats on the feed topic <topic>.feed (default 5)
  --help                       this text`;

const SPEC = {
  source: { type: "string" },
  replay: { type: "string" },
  symbols: { type: "string" },
  topic: { type: "string" },
  seed: { type: "string" },
  rate: { type: "string" },
  limit: { type: "string" },
  speed: { type: "string" },
  "keep-times": { type: "boolean" },
  record: { type: "string" },
  "status-interval": { type: "string" },
  queue: { type: "string" },
  "flush-timeout": { type: "string" },
  "dead-after": { type: "string" },
  "silent-after": { type: "string" },
  heartbeat: { type: "string" },
  help: { type: "boolean" },
} as const;

/** A text flag that must not be empty. */
function text(flag: string, value: string | undefined): string | undefined {
  if (value !== undefined && value.trim() === "") throw new UsageError(`--${flag} is empty`);
  return value;
}

function pace(flag: string, value: string | undefined): number | "max" | undefined {
  return value === undefined || value === "max" ? value : positive(flag, value);
}

function source(value: string | undefined): Source | undefined {
  if (value !== undefined && !SOURCES.includes(value as Source)) {
    throw new UsageError(`--source: "${value}" is not one of ${SOURCES.join(", ")}`);
  }
  return value as Source | undefined;
}

function seed(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) > 0xffffffff) {
    throw new UsageError(`--seed: "${value}" is not a whole number from 0 to 4294967295`);
  }
  return Number(value);
}

export function parseProducerFlags(args: readonly string[]): Flags {
  const v = parseFlags(args, SPEC);
  const seconds = (flag: keyof typeof SPEC, fallback: number, allowZero = false) => {
    const value = v[flag];
    return typeof value === "string" ? positive(flag, value, { allowZero }) : fallback;
  };
  return {
    source: source(v.source),
    replay: text("replay", v.replay),
    symbols: text("symbols", v.symbols),
    topic: text("topic", v.topic),
    seed: seed(v.seed),
    rate: pace("rate", v.rate),
    limit: v.limit === undefined ? undefined : positive("limit", v.limit, { integer: true }),
    speed: pace("speed", v.speed),
    keepTimes: v["keep-times"] ?? false,
    record: text("record", v.record),
    statusInterval: seconds("status-interval", 5, true),
    queue: v.queue === undefined ? 200_000 : positive("queue", v.queue, { integer: true }),
    flushTimeout: seconds("flush-timeout", 10, true),
    deadAfter: seconds("dead-after", 150),
    silentAfter: seconds("silent-after", 120),
    heartbeat: seconds("heartbeat", 5),
    help: v.help ?? false,
  };
}

/** The source to run, and the flags that make no sense with it refused. */
export function resolveSource(flags: Flags, config: Config): Source {
  const source = flags.source ?? (flags.replay ? "replay" : config.source);
  const only = (flag: string, set: unknown, allowed: Source[]) => {
    if (set !== undefined && set !== false && !allowed.includes(source)) {
      throw new UsageError(`--${flag} applies to --source=${allowed.join(" or ")}, not ${source}`);
    }
  };
  only("rate", flags.rate, ["sim"]);
  only("seed", flags.seed, ["sim"]);
  only("replay", flags.replay, ["replay"]);
  only("speed", flags.speed, ["replay"]);
  only("keep-times", flags.keepTimes, ["replay"]);
  only("record", flags.record, ["finnhub", "sim"]);
  if (source === "replay" && !flags.replay) {
    throw new UsageError("--source=replay needs --replay=FILE (a recording made with --record)");
  }
  return source;
}

/**
 * The token, for the one source that needs it: checked only when that source runs,
 * so the other sources never need (or see) it.
 */
export function requireFinnhubToken(config: Config): string {
  if (config.finnhubToken) return config.finnhubToken;
  throw new ConfigError(
    "FINNHUB_TOKEN: is needed for the finnhub source (free key at finnhub.io; or use " +
      "--source=sim) (example: FINNHUB_TOKEN=c1234567890abcdef)",
  );
}

/** The source as the first line names it: what runs, and whether its prices are real. */
export function describeSource(run: {
  readonly source: Source;
  readonly flags: Flags;
  readonly config: Config;
  /** The simulated market's seed. */
  readonly seed: number;
}): string {
  const { source, flags, config, seed } = run;
  switch (source) {
    case "finnhub":
      return `finnhub (${redact(config.finnhubWsUrl)})`;
    case "sim": {
      const rate = flags.rate === "max" ? "max rate" : `${flags.rate ?? 50} trades/s`;
      return `sim (seed ${seed}, ${rate}; prices are simulated)`;
    }
    case "replay": {
      const times = flags.keepTimes ? "as recorded" : "shifted to now";
      return `replay of ${flags.replay} at ${flags.speed ?? 1}x, trade times ${times}`;
    }
  }
}
