/**
 * The producer's command line: every flag parsed and checked before anything
 * connects, so a mistake is one line and exit code 2, never a half-started run.
 */

import { type Config, redact, type Source, SOURCES } from "../config.ts";

export interface Flags {
  source?: Source;
  replay?: string;
  symbols?: string;
  topic?: string;
  seed?: number;
  rate?: number | "max";
  limit?: number;
  speed?: number | "max";
  keepTimes: boolean;
  record?: string;
  statusInterval: number;
  queue: number;
  flushTimeout: number;
  deadAfter: number;
  silentAfter: number;
  help: boolean;
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
  --help                       this text`;

/** A flag mistake; the message is the one line shown before exit code 2. */
export class FlagError extends Error {
  override name = "FlagError";
}

const VALUE_FLAGS = new Set(
  ("source replay symbols topic seed rate limit speed record status-interval queue " +
    "flush-timeout dead-after silent-after").split(" "),
);
const BOOLEAN_FLAGS = new Set(["keep-times", "help"]);

function positive(name: string, value: string, integer: boolean, allowZero = false): number {
  const number = Number(value);
  const ok = value.trim() !== "" && Number.isFinite(number) &&
    (allowZero ? number >= 0 : number > 0) && (!integer || Number.isSafeInteger(number));
  if (!ok) {
    const kind = integer ? "whole number" : "number";
    throw new FlagError(`--${name}: "${value}" is not a ${allowZero ? "" : "positive "}${kind}`);
  }
  return number;
}

/** Parses `--name=value`, `--name value` and boolean `--name`; rejects anything else. */
export function parseFlags(args: readonly string[]): Flags {
  const flags: Flags = {
    keepTimes: false,
    statusInterval: 5,
    queue: 200_000,
    flushTimeout: 10,
    deadAfter: 150,
    silentAfter: 120,
    help: false,
  };
  const seen = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const match = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    if (!match) throw new FlagError(`unexpected argument "${arg}" (see --help)`);
    const name = match[1];
    let value = match[2];
    if (BOOLEAN_FLAGS.has(name)) {
      if (value !== undefined) throw new FlagError(`--${name} takes no value`);
    } else if (VALUE_FLAGS.has(name)) {
      if (value === undefined) {
        value = args[++i];
        if (value === undefined || value.startsWith("--")) {
          throw new FlagError(`--${name} needs a value (see --help)`);
        }
      }
    } else {
      throw new FlagError(`unknown flag --${name} (see --help)`);
    }
    if (seen.has(name)) throw new FlagError(`--${name} is given twice`);
    seen.add(name);
    switch (name) {
      case "source":
        if (!SOURCES.includes(value as Source)) {
          throw new FlagError(`--source: "${value}" is not one of ${SOURCES.join(", ")}`);
        }
        flags.source = value as Source;
        break;
      case "seed":
        if (!/^\d+$/.test(value) || Number(value) > 0xffffffff) {
          throw new FlagError(`--seed: "${value}" is not a whole number from 0 to 4294967295`);
        }
        flags.seed = Number(value);
        break;
      case "rate":
        flags.rate = value === "max" ? "max" : positive(name, value, false);
        break;
      case "speed":
        flags.speed = value === "max" ? "max" : positive(name, value, false);
        break;
      case "limit":
        flags.limit = positive(name, value, true);
        break;
      case "queue":
        flags.queue = positive(name, value, true);
        break;
      case "status-interval":
        flags.statusInterval = positive(name, value, false, true);
        break;
      case "flush-timeout":
        flags.flushTimeout = positive(name, value, false, true);
        break;
      case "dead-after":
        flags.deadAfter = positive(name, value, false);
        break;
      case "silent-after":
        flags.silentAfter = positive(name, value, false);
        break;
      case "replay":
      case "record":
      case "symbols":
      case "topic":
        if (value.trim() === "") throw new FlagError(`--${name} is empty`);
        flags[name] = value;
        break;
      case "keep-times":
        flags.keepTimes = true;
        break;
      case "help":
        flags.help = true;
        break;
    }
  }
  return flags;
}

/** The source to run, and the flags that make no sense with it refused. */
export function resolveSource(flags: Flags, config: Config): Source {
  const source = flags.source ?? (flags.replay ? "replay" : config.source);
  const only = (flag: string, set: unknown, allowed: Source[]) => {
    if (set !== undefined && set !== false && !allowed.includes(source)) {
      throw new FlagError(`--${flag} applies to --source=${allowed.join(" or ")}, not ${source}`);
    }
  };
  only("rate", flags.rate, ["sim"]);
  only("seed", flags.seed, ["sim"]);
  only("replay", flags.replay, ["replay"]);
  only("speed", flags.speed, ["replay"]);
  only("keep-times", flags.keepTimes, ["replay"]);
  only("record", flags.record, ["finnhub", "sim"]);
  if (source === "replay" && !flags.replay) {
    throw new FlagError("--source=replay needs --replay=FILE (a recording made with --record)");
  }
  return source;
}

export function describeSource(source: Source, flags: Flags, config: Config, seed: number): string {
  switch (source) {
    case "finnhub":
      return `finnhub (${redact(config.finnhubWsUrl)})`;
    case "sim":
      return `sim (seed ${seed}, ${
        flags.rate === "max" ? "max rate" : `${flags.rate ?? 50} trades/s`
      }; prices are simulated)`;
    case "replay":
      return `replay of ${flags.replay} at ${flags.speed ?? 1}x, trade times ${
        flags.keepTimes ? "as recorded" : "shifted to now"
      }`;
  }
}

/** Why a recording cannot be opened, in the user's terms. */
