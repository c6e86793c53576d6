/**
 * The producer: trades from Finnhub, the simulated market or a recording, into
 * Kafka (key = symbol, timestamp = trade time, value = trade.ts's JSON record).
 *
 *   deno task produce                          # sim without a token, finnhub with one
 *   deno task produce --source=sim --rate=max --limit=200000
 *   deno task produce --record=session.ndjson  # keep the raw frames for later
 *   deno task produce --replay=session.ndjson --speed=10
 *
 * Every trade received is acknowledged by Kafka, still queued, or counted as
 * dropped (queue full); every refused frame or trade is counted by kind. A status
 * line says so every few seconds, and a summary line on exit. SIGINT/SIGTERM stop
 * the source and flush the queue (or, still waiting for Kafka at start, stop at
 * once); exit 0 when everything reached Kafka, 1 when the broker stayed away past
 * --flush-timeout or refused a send for good (the line says how many trades), 2 for
 * a bad flag, bad config, a host the task's --allow-net leaves out, or a refused token.
 */

import {
  type Config,
  ConfigError,
  type Env,
  exitWithError,
  loadConfig,
  netAccessProblem,
  readEnv,
  redact,
  requireFinnhubToken,
  type Source,
} from "./config.ts";
import type { Kafka, Producer } from "kafkajs";
import { createKafka, ensureTopic } from "./lib/kafka.ts";
import { createFinnhubClient, FinnhubAuthError, type FinnhubState } from "./producer/finnhub.ts";
import { runSim } from "./producer/market_sim.ts";
import { openRecorder, type Recorder, runReplay, toFinnhubFrame } from "./producer/recording.ts";
import {
  createIdempotentProducer,
  createPublisher,
  kafkaSink,
  type Publisher,
} from "./producer/publisher.ts";
import {
  createConsole,
  createCounters,
  createLimiter,
  formatStatus,
  formatSummary,
  sleep,
} from "./producer/status.ts";
import { formatAge, formatCount } from "./lib/format_old.ts";
import type { Trade } from "./lib/trade.ts";
import { describeSource, FlagError, parseFlags, resolveSource, USAGE } from "./producer/flags.ts";

/** Symbols a replay's status line follows: a recording may name any number of them. */
const MAX_REPLAY_SYMBOLS = 1_000;

function fileHint(error: unknown, access: "read" | "write"): string {
  if (error instanceof Deno.errors.NotCapable) {
    return ` (the produce task may ${access} recordings only in recordings/: put it there, ` +
      `or widen --allow-${access} in deno.json)`;
  }
  if (error instanceof Deno.errors.NotFound) return " (no such file or folder)";
  return error instanceof Error ? `: ${error.message}` : "";
}

/** Runs the producer; resolves to the exit code. */
export async function run(args: readonly string[], baseEnv: Env): Promise<number> {
  const flags = parseFlags(args);
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const env: Env = { ...baseEnv };
  if (flags.symbols) env.SYMBOLS = flags.symbols;
  if (flags.topic) env.KAFKA_TOPIC = flags.topic;
  const config = loadConfig(env);
  const source = resolveSource(flags, config);
  const token = source === "finnhub" ? requireFinnhubToken(config) : "";
  if (flags.replay) {
    try {
      await Deno.stat(flags.replay);
    } catch (error) {
      throw new FlagError(`--replay: cannot read "${flags.replay}"${fileHint(error, "read")}`);
    }
  }
  const seed = flags.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];

  // A host the task may not reach would fail as "getaddrinfo EPERM" after seconds of
  // retries: name the variable and the fix instead, before anything starts.
  const denied = netAccessProblem("KAFKA_BROKERS", config.brokers) ??
    (source === "finnhub"
      ? netAccessProblem("FINNHUB_WS_URL", [hostAndPort(config.finnhubWsUrl)])
      : undefined);
  if (denied) throw new ConfigError(denied);

  const con = createConsole();
  const controller = new AbortController(); // the process: SIGINT, SIGTERM
  const sourceStop = new AbortController(); // the source: the process, --limit, the end of a replay
  controller.signal.addEventListener("abort", () => sourceStop.abort(), { once: true });
  // The signal handler is armed before the queue exists; it reads the queue through this.
  const live: { publisher?: Publisher } = {};
  const queuedNow = () => formatCount(live.publisher?.queued() ?? 0);
  let firstSignalAt = 0;
  const onSignal = () => {
    if (firstSignalAt === 0) {
      firstSignalAt = Date.now();
      // Before the queue exists (Kafka has not answered yet) the connect step says it.
      if (live.publisher) {
        con.log(`stopping: flushing ${queuedNow()} queued trades (again to quit now)`);
      }
      controller.abort();
      return;
    }
    // A wrapper (deno task, timeout) may pass on the same Ctrl-C the process got
    // itself: only a second, later signal means "quit now".
    if (Date.now() - firstSignalAt < 1000) return;
    con.close();
    console.error(`error: stopped before the flush: ${queuedNow()} trades not delivered`);
    Deno.exit(130);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, onSignal);
    } catch { /* SIGTERM is not available on Windows */ }
  }

  let recorder: Recorder | undefined;
  let statusTimer: ReturnType<typeof setInterval> | undefined;
  // Every way out, returns and throws alike, shows the cursor again and closes the file.
  try {
    if (flags.record) {
      try {
        recorder = await openRecorder(flags.record, source === "sim" ? "sim" : "finnhub", con.log);
      } catch (error) {
        console.error(`error: --record: cannot write "${flags.record}"${fileHint(error, "write")}`);
        return 2;
      }
    }
    con.log(
      `producer: ${describeSource(source, flags, config, seed)} -> topic ${config.topic} on ` +
        `${config.brokers.join(",")}, ${config.symbols.length} symbols`,
    );
    // Kafka first: without the topic there is nowhere to put trades.
    const kafka = createKafka(config, "producer");
    const producer = createIdempotentProducer(kafka);
    let topicState: "created" | "exists" | "stopped";
    try {
      topicState = await unlessAborted(connectKafka(kafka, producer, config), controller.signal);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      console.error(
        `error: cannot reach Kafka at ${config.brokers.join(",")}: ${reason} ` +
          `(start the local broker with: deno task kafka)`,
      );
      return 1;
    }
    if (topicState === "stopped") {
      // kafkajs retries an absent broker for about ten seconds: a stop must not wait
      // for that (docker stop kills after ten). Nothing was received, so nothing is lost.
      con.log("stopped before Kafka answered: nothing was received, nothing is lost");
      return 0;
    }
    con.log(
      `kafka: topic ${config.topic} ${topicState === "created" ? "created" : "found"}, sending`,
    );

    const counters = createCounters();
    const pub = createPublisher(kafkaSink(producer, config.topic), {
      capacity: flags.queue,
      log: con.log,
      // Nothing more can reach Kafka: stop taking trades; the end reports what is left.
      onFailed: () => sourceStop.abort(),
    });
    live.publisher = pub;
    const lastTradeAt = new Map<string, number>();
    // Finnhub and sim trade only the configured symbols; a recording may name any number.
    const maxTracked = source === "replay" ? MAX_REPLAY_SYMBOLS : Infinity;
    let trackedFull = false;
    const rejectLimiter = createLimiter(Math.max(flags.statusInterval, 5) * 1000);
    const started = Date.now();

    const accept = (trades: Trade[], receivedAt: number, recordSource: Source) => {
      if (flags.limit !== undefined) {
        const left = flags.limit - counters.received;
        if (left <= 0) return;
        if (trades.length >= left) {
          trades = trades.slice(0, left);
          sourceStop.abort();
        }
      }
      counters.received += trades.length;
      for (const trade of trades) {
        if (lastTradeAt.size < maxTracked || lastTradeAt.has(trade.symbol)) {
          lastTradeAt.set(trade.symbol, receivedAt);
        } else if (!trackedFull) {
          trackedFull = true;
          con.log(
            `note: the replay names over ${formatCount(maxTracked)} symbols; the status line ` +
              `follows the first ${formatCount(maxTracked)} symbols (every trade is still sent)`,
          );
        }
      }
      pub.enqueue(trades, recordSource, receivedAt);
    };
    const reject = (kind: string, sample: string) => {
      const count = (counters.rejected.get(kind) ?? 0) + 1;
      counters.rejected.set(kind, count);
      if (rejectLimiter(kind)) {
        const shown = redact(sample).slice(0, 120);
        con.log(
          `rejected ${kind}: ${shown}${sample.length > 120 ? "…" : ""} (${
            formatCount(count)
          } so far)`,
        );
      }
    };

    let finnhub: FinnhubState | undefined;
    const refresh = () => {
      counters.acked = pub.stats.acked;
      counters.dropped = pub.stats.dropped;
      counters.possiblyDuplicated = pub.stats.possiblyDuplicated;
      counters.queued = pub.queued();
      counters.reconnects = finnhub?.reconnects ?? 0;
    };
    let previous = { received: 0, acked: 0, at: started };
    statusTimer = flags.statusInterval > 0
      ? setInterval(() => {
        refresh();
        const now = Date.now();
        const connection = finnhub === undefined
          ? undefined
          : finnhub.connected
          ? `connected ${formatAge(now - finnhub.since)}, ${finnhub.subscribed} subscribed`
          : `DISCONNECTED ${formatAge(now - finnhub.since)}, reconnecting`;
        con.status(formatStatus({
          source,
          now,
          counters,
          previous,
          symbols: source === "replay" ? [...lastTradeAt.keys()] : config.symbols,
          lastTradeAt,
          connection,
        }));
        previous = { received: counters.received, acked: counters.acked, at: now };
      }, flags.statusInterval * 1000)
      : undefined;

    let exitCode = 0;
    try {
      switch (source) {
        case "finnhub": {
          const client = createFinnhubClient({
            url: config.finnhubWsUrl,
            token,
            symbols: config.symbols,
            signal: sourceStop.signal,
            onTrades: (trades, receivedAt) => accept(trades, receivedAt, "finnhub"),
            onReject: reject,
            onRawFrame: recorder ? (text, at) => recorder!.write(text, at) : undefined,
            log: con.log,
            deadAfterMs: flags.deadAfter * 1000,
            silentAfterMs: flags.silentAfter * 1000,
          });
          finnhub = client.state;
          if (config.symbols.length > 50) {
            con.log(
              `note: ${config.symbols.length} symbols; users measured Finnhub's free plan ` +
                `cutting off at about 50 per connection ("Subscribing to too many symbols")`,
            );
          }
          await client.run();
          break;
        }
        case "sim":
          await runSim({
            symbols: config.symbols,
            seed,
            rate: flags.rate ?? 50,
            signal: sourceStop.signal,
            onTrades(trades, receivedAt) {
              recorder?.write(toFinnhubFrame(trades), receivedAt);
              accept(trades, receivedAt, "sim");
            },
            backpressure: () => pub.waitForRoom(),
            log: con.log,
          });
          break;
        case "replay": {
          const lines = await runReplay({
            path: flags.replay!,
            speed: flags.speed ?? 1,
            shiftTimes: !flags.keepTimes,
            signal: sourceStop.signal,
            onTrades: accept,
            onReject: reject,
            backpressure: () => pub.waitForRoom(),
          });
          if (!sourceStop.signal.aborted) {
            con.log(`replay: end of ${flags.replay} (${formatCount(lines)} lines)`);
          }
          break;
        }
      }
    } catch (error) {
      // Whatever stopped the source, what was received still goes to Kafka below.
      con.log(`error: ${error instanceof Error ? redact(error.message) : String(error)}`);
      exitCode = error instanceof FinnhubAuthError ? 2 : 1;
    }

    // Stop: the source is done; flush what is queued, then leave.
    const undelivered = await pub.close(flags.flushTimeout * 1000);
    recorder?.close(); // flushes: a write that fails now still counts below
    clearInterval(statusTimer);
    await Promise.race([producer.disconnect().catch(() => {}), sleep(2_000)]);
    refresh();
    con.close(formatSummary(source, Date.now() - started, counters));
    const recorded = !recorder
      ? ""
      : recorder.failed
      ? `; the recording stopped early (see the recording error above)`
      : `; every frame received is in ${flags.record}`;
    if (pub.failure !== undefined) {
      console.error(
        `error: Kafka refused the trades for good (${redact(pub.failure)}): ` +
          `${formatCount(undelivered)} trades not delivered${recorded}`,
      );
      return exitCode || 1;
    }
    if (undelivered > 0) {
      console.error(
        `error: ${formatCount(undelivered)} trades were not acknowledged by Kafka within ` +
          `--flush-timeout=${flags.flushTimeout} s (broker unreachable?)${recorded}`,
      );
      return exitCode || 1;
    }
    return exitCode;
  } finally {
    clearInterval(statusTimer);
    recorder?.close();
    con.close();
  }
}

/** Makes sure the topic exists, then connects the producer: both before any trade is taken. */
async function connectKafka(
  kafka: Kafka,
  producer: Producer,
  config: Config,
): Promise<"created" | "exists"> {
  const admin = kafka.admin();
  await admin.connect();
  const state = await ensureTopic(
    admin,
    config.topic,
    config.partitions,
    config.replicationFactor,
  );
  await admin.disconnect();
  await producer.connect();
  return state;
}

/** `promise`'s value, or "stopped" as soon as `signal` aborts (the promise is left to run out). */
async function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | "stopped"> {
  promise.catch(() => {}); // a failure after the stop is of no interest
  let onAbort = () => {};
  const stopped = new Promise<"stopped">((resolve) => {
    onAbort = () => resolve("stopped");
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, stopped]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** `host:port` of a ws:// or wss:// URL, the port filled in as the socket will use it. */
function hostAndPort(url: string): string {
  const { hostname, port, protocol } = new URL(url);
  return `${hostname}:${port || (protocol === "wss:" ? "443" : "80")}`;
}

export async function main(args: readonly string[]): Promise<void> {
  let code: number;
  try {
    code = await run(args, readEnv());
  } catch (error) {
    if (error instanceof FlagError || error instanceof ConfigError) exitWithError(error.message, 2);
    exitWithError(error instanceof Error ? redact(error.message) : String(error), 1);
  }
  // kafkajs keeps timers of its own; the run is over, so leave now.
  Deno.exit(code);
}

if (import.meta.main) await main(Deno.args);
