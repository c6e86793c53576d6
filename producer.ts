/**
 * The producer: trades from Finnhub, the simulated market or a recording, into
 * Kafka (key = symbol, timestamp = trade time, value = lib/trade.ts's JSON record),
 * and what it saw of its source into the feed topic `<topic>.feed` (lib/feed.ts):
 * a heartbeat every --heartbeat seconds and an event for every gap.
 *
 *   deno task produce                          # sim without a token, finnhub with one
 *   deno task produce --source=sim --rate=max --limit=200000
 *   deno task produce --record=recordings/session.ndjson  # keep the raw frames
 *   deno task produce --replay=recordings/session.ndjson --speed=10
 *
 * Every trade received is acknowledged by Kafka, still queued, or counted as
 * dropped (queue full); every refused frame or trade is counted by kind. A status
 * line says so every few seconds, and a summary line on exit. SIGINT/SIGTERM stop
 * the source and flush the queue (or, still waiting for Kafka at start, stop at
 * once); a second Ctrl-C quits without the flush. Exit 0 when everything reached
 * Kafka; 1 when the broker stayed away past --flush-timeout or refused a send for
 * good (the line says how many trades); 2 for a bad flag, bad config, a host the
 * task's permissions leave out, or a refused token.
 *
 * The steps: flags and config (producer/flags.ts), the recording, Kafka, the feed
 * (producer/feed.ts), the queue (producer/publisher.ts) and its ledger
 * (producer/intake.ts), the source
 * (producer/finnhub.ts, market_sim.ts, recording.ts), then the flush and the summary.
 */

import type { Producer } from "kafkajs";
import { type Config, loadConfig, readEnv } from "./config.ts";
import { unlessAborted } from "./lib/async.ts";
import { exitCodeFor, stopOnSignals, UsageError } from "./lib/cli.ts";
import { formatCount } from "./lib/format.js";
import { feedTopicOf, MAX_PRODUCER_LENGTH } from "./lib/feed.ts";
import { hostAndPort, netAccessProblem } from "./lib/net.ts";
import { redact } from "./lib/redact.ts";
import type { Source } from "./lib/trade.ts";
import { FinnhubClient } from "./producer/finnhub.ts";
import {
  describeSource,
  type Flags,
  parseProducerFlags,
  requireFinnhubToken,
  resolveSource,
  USAGE,
} from "./producer/flags.ts";
import {
  type Beat,
  feedCounts,
  feedSink,
  FeedWriter,
  finnhubFeedState,
  plainFeedState,
} from "./producer/feed.ts";
import { createIntake, type Intake } from "./producer/intake.ts";
import { producerFamilies } from "./producer/metrics.ts";
import { createCounters } from "./producer/status.ts";
import { type MetricsServer, serveMetrics } from "./lib/metrics.ts";
import { runSim } from "./producer/market_sim.ts";
import { type Connected, connectProducer, kafkaSink } from "./producer/kafka_producer.ts";
import { Publisher } from "./producer/publisher.ts";
import {
  openRecording,
  type Recorder,
  recordingHint,
  runReplay,
  toFinnhubFrame,
} from "./producer/recording.ts";
import { type Console, createConsole, formatSummary, startStatusLine } from "./producer/status.ts";

/** Symbols a replay's status line follows: a recording may name any number of them. */
const MAX_REPLAY_SYMBOLS = 1_000;

/** Everything a run needs, checked before anything connects. */
interface Plan {
  readonly flags: Flags;
  readonly config: Config;
  readonly source: Source;
  /** Finnhub's token ("" for the other sources). */
  readonly token: string;
  /** The simulated market's seed. */
  readonly seed: number;
}

export async function main(args: readonly string[]): Promise<number> {
  try {
    const flags = parseProducerFlags(args);
    if (flags.help) {
      console.log(USAGE);
      return 0;
    }
    return await produce(await plan(flags));
  } catch (error) {
    return exitCodeFor(error);
  }
}

/** Flags, config and permissions, checked: every mistake is found before anything starts. */
async function plan(flags: Flags): Promise<Plan> {
  const env = { ...readEnv() };
  if (flags.symbols) env.SYMBOLS = flags.symbols;
  if (flags.topic) env.KAFKA_TOPIC = flags.topic;
  const config = loadConfig(env);
  const source = resolveSource(flags, config);
  const token = source === "finnhub" ? requireFinnhubToken(config) : "";
  if (flags.replay) {
    try {
      await Deno.stat(flags.replay);
    } catch (error) {
      throw new UsageError(
        `--replay: cannot read "${flags.replay}"${recordingHint(error, "read")}`,
      );
    }
  }
  // A host the task may not reach would fail as "getaddrinfo EPERM" after seconds of
  // retries: name the variable and the fix instead, before anything starts.
  const denied = netAccessProblem("KAFKA_BROKERS", config.brokers) ??
    (source === "finnhub"
      ? netAccessProblem("FINNHUB_WS_URL", [hostAndPort(config.finnhubWsUrl)])
      : undefined);
  if (denied) throw new UsageError(denied);
  const seed = flags.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
  return { flags, config, source, token, seed };
}

/** Runs the plan to its end; the exit code. */
async function produce(plan: Plan): Promise<number> {
  const { flags, config, source } = plan;
  const con = createConsole();
  let publisher: Publisher | undefined;
  using stop = stopOnSignals(() => {
    // The second Ctrl-C: out now, saying what the flush would have sent.
    con.close();
    const left = formatCount(publisher?.queued() ?? 0);
    console.error(`error: stopped before the flush: ${left} trades not delivered`);
    Deno.exit(130);
  });
  stop.signal.addEventListener("abort", () => {
    // Before the queue exists (Kafka has not answered yet) the connect step says it.
    if (!publisher) return;
    con.log(
      `stopping: flushing ${formatCount(publisher.queued())} queued trades (again to quit now)`,
    );
  }, { once: true });
  let recorder: Recorder | undefined;
  // Read by /metrics: zeros until the queue exists.
  let scraped: Pipeline | undefined;
  let metrics: MetricsServer | undefined;
  // Every way out, returns and throws alike, shows the cursor again and closes the file.
  try {
    metrics = startMetrics(plan, () => scraped, con);
    recorder = flags.record === undefined
      ? undefined
      : await openRecording(flags.record, source === "sim" ? "sim" : "finnhub", con.log);
    con.log(
      `producer: ${describeSource(plan)} -> topic ${config.topic} ` +
        `on ${config.brokers.join(",")}, ${config.symbols.length} symbols`,
    );
    const kafka = await connectProducer(config, stop.signal);
    if (kafka === "stopped") {
      // Nothing was received, so nothing is lost; kafkajs may still be retrying.
      con.log("stopped before Kafka answered: nothing was received, nothing is lost");
      return 0;
    }
    con.log(`kafka: topic ${config.topic} ${kafka.topic}, sending`);
    if (kafka.feedProblem !== undefined) {
      con.log(
        `feed: cannot create ${feedTopicOf(config.topic)} (${redact(kafka.feedProblem)}); ` +
          `trades go on, viewers will say the feed state is unknown`,
      );
    }

    // The source stops on the process's stop, at --limit, at the end of a replay, or
    // when nothing more can reach Kafka; what it received still goes to Kafka below.
    const sourceStop = new AbortController();
    stop.signal.addEventListener("abort", () => sourceStop.abort(), { once: true });
    const started = Date.now();
    const pipe = buildPipeline(plan, { kafka, recorder, con, sourceStop, started });
    publisher = pipe.publisher;
    scraped = pipe;
    const { feed, intake } = pipe;
    // The feed is a courtesy to viewers: the trades go on without it.
    await unlessAborted(feed.start(), stop.signal)
      .catch((error) => con.log(`feed: not written (${redact(String(error))})`));
    let sourceCode: number;
    let flushed: Awaited<ReturnType<typeof flush>>;
    {
      // The status line goes on through the flush: a stop with Kafka away shows what waits.
      using _status = statusLine(plan, pipe);
      sourceCode = await runSource(plan, pipe, sourceStop);
      flushed = await flush(plan, pipe, kafka.producer);
    }
    refreshCounters(pipe);
    con.close(formatSummary(source, Date.now() - started, intake.counters));
    flushed.report();
    return sourceCode || flushed.code;
  } finally {
    recorder?.close();
    con.close();
    await metrics?.[Symbol.asyncDispose]();
  }
}

/** /metrics on PRODUCER_METRICS_PORT, when set. */
function startMetrics(
  plan: Plan,
  pipe: () => Pipeline | undefined,
  con: Console,
): MetricsServer | undefined {
  const where = plan.config.producerMetrics;
  if (where === undefined) return undefined;
  const server = serveMetrics({
    hostname: where.host,
    port: where.port,
    token: where.token,
    log: (line) => con.log(`metrics: ${line}`),
    collect: () => {
      const current = pipe();
      if (current) refreshCounters(current);
      return producerFamilies(current?.intake.counters ?? createCounters(), plan.flags.queue);
    },
  }, "PRODUCER_METRICS_PORT");
  con.log(`metrics: ${server.url}`);
  return server;
}

interface Pipeline {
  readonly intake: Intake;
  readonly publisher: Publisher;
  readonly feed: FeedWriter;
  readonly recorder?: Recorder;
  readonly con: Console;
  readonly finnhub?: FinnhubClient;
}

/**
 * The queue to Kafka, its ledger, the feed writer and (finnhub) the client, wired:
 * every dropped trade, Kafka outage and lost connection reaches the feed topic.
 */
function buildPipeline(plan: Plan, parts: {
  readonly kafka: Connected;
  readonly recorder?: Recorder;
  readonly con: Console;
  readonly sourceStop: AbortController;
  readonly started: number;
}): Pipeline {
  const { flags, config, source } = plan;
  const { kafka, recorder, con, sourceStop } = parts;
  const feedTopic = feedTopicOf(config.topic);
  // The heartbeat reads the pipeline, built below, at each beat.
  const feed = new FeedWriter({
    sink: feedSink(kafka.kafka, feedTopic),
    topic: feedTopic,
    producer: `${config.clientId.slice(0, MAX_PRODUCER_LENGTH - 9)}-${
      crypto.randomUUID().slice(0, 8)
    }`,
    source,
    everyMs: flags.heartbeat * 1000,
    beat: () => feedBeat(plan, pipe, parts.started),
    delayMs: () => intake.delayMs(),
    log: con.log,
  });
  const publisher = new Publisher(kafkaSink(kafka.producer, config.topic), {
    capacity: flags.queue,
    log: con.log,
    onFailed: () => sourceStop.abort(),
    onDropped: (trades, receivedAt) => feed.dropped(trades, receivedAt),
    onOutage: (outage) => feed.gap({ reason: "kafka-unreachable", ...outage }),
  });
  const intake = createIntake({
    publisher,
    log: con.log,
    limit: flags.limit,
    onLimit: () => sourceStop.abort(),
    maxTracked: source === "replay" ? MAX_REPLAY_SYMBOLS : Infinity,
    rejectLogEveryMs: Math.max(flags.statusInterval, 5) * 1000,
  });
  const finnhub = source === "finnhub"
    ? finnhubClient(plan, { intake, recorder, con, feed }, sourceStop.signal)
    : undefined;
  const pipe: Pipeline = { intake, publisher, feed, recorder, con, finnhub };
  return pipe;
}

/**
 * The Finnhub client, its trades going to the ledger, its raw frames to --record, and
 * its lost connections to the feed topic.
 */
function finnhubClient(
  plan: Plan,
  pipe: Pick<Pipeline, "intake" | "recorder" | "con"> & { feed: FeedWriter },
  signal: AbortSignal,
): FinnhubClient {
  const { intake, recorder, con, feed } = pipe;
  return new FinnhubClient({
    url: plan.config.finnhubWsUrl,
    token: plan.token,
    symbols: plan.config.symbols,
    signal,
    onTrades: (trades, receivedAt) => intake.accept(trades, receivedAt, "finnhub"),
    onReject: intake.reject,
    onRawFrame: recorder ? (text, at) => recorder.write(text, at) : undefined,
    log: con.log,
    onGap: (gap) => feed.disconnected(gap, plan.config.symbols),
    deadAfterMs: plan.flags.deadAfter * 1000,
    silentAfterMs: plan.flags.silentAfter * 1000,
  });
}

/** The status line every --status-interval seconds, until disposed. */
function statusLine(plan: Plan, pipe: Pipeline): Disposable {
  const { intake, finnhub } = pipe;
  return startStatusLine({
    intervalS: plan.flags.statusInterval,
    console: pipe.con,
    source: plan.source,
    counters: intake.counters,
    lastTradeAt: intake.lastTradeAt,
    // A replay learns its symbols as it goes.
    symbols: () => plan.source === "replay" ? [...intake.lastTradeAt.keys()] : plan.config.symbols,
    refresh: () => refreshCounters(pipe),
    connection: finnhub && (() => finnhub.describeConnection(Date.now())),
  });
}

/**
 * Runs the source until it stops. Resolves to 0, or to the exit code of what
 * stopped it (a refused token: 2; anything else: 1).
 */
async function runSource(plan: Plan, pipe: Pipeline, stop: AbortController): Promise<number> {
  const { flags, config, source } = plan;
  const { intake, publisher, recorder, con, finnhub } = pipe;
  try {
    if (finnhub) {
      if (config.symbols.length > 50) {
        con.log(
          `note: ${config.symbols.length} symbols; users measured Finnhub's free plan ` +
            `cutting off at about 50 per connection ("Subscribing to too many symbols")`,
        );
      }
      await finnhub.run();
    } else if (source === "sim") {
      await runSim({
        symbols: config.symbols,
        seed: plan.seed,
        rate: flags.rate ?? 50,
        signal: stop.signal,
        onTrades(trades, receivedAt) {
          recorder?.write(toFinnhubFrame(trades), receivedAt);
          intake.accept(trades, receivedAt, "sim");
        },
        backpressure: () => publisher.waitForRoom(),
        log: con.log,
      });
    } else {
      const lines = await runReplay({
        path: flags.replay!,
        speed: flags.speed ?? 1,
        shiftTimes: !flags.keepTimes,
        signal: stop.signal,
        onTrades: intake.accept,
        onReject: intake.reject,
        backpressure: () => publisher.waitForRoom(),
      });
      if (!stop.signal.aborted) {
        con.log(`replay: end of ${flags.replay} (${formatCount(lines)} lines)`);
      }
    }
    return 0;
  } catch (error) {
    // Whatever stopped the source, what was received still goes to Kafka.
    con.log(`error: ${error instanceof Error ? redact(error.message) : String(error)}`);
    return error instanceof UsageError ? 2 : 1;
  }
}

/** What each heartbeat on the feed topic says: the source's state, last trades, counters. */
function feedBeat(plan: Plan, pipe: Pipeline, startedAt: number): Beat {
  const { finnhub, intake } = pipe;
  refreshCounters(pipe);
  const now = Date.now();
  return {
    ...(finnhub
      ? finnhubFeedState(finnhub.state, { now, quietMs: plan.flags.silentAfter * 1000 })
      : plainFeedState(startedAt)),
    symbols: plan.source === "replay" ? [...intake.lastTradeAt.keys()] : plan.config.symbols,
    lastFrameAt: finnhub?.state.lastFrameAt ?? null,
    lastPingAt: finnhub?.state.lastPingAt ?? null,
    lastTradeAt: Object.fromEntries(intake.lastTradeAt),
    counts: feedCounts(intake.counters),
  };
}

/** The ledger's counters, brought up to date with the queue's and the connection's. */
function refreshCounters(pipe: Pipeline): void {
  const { finnhub } = pipe;
  const { counters } = pipe.intake;
  const { stats } = pipe.publisher;
  counters.acked = stats.acked;
  counters.dropped = stats.dropped;
  counters.possiblyDuplicated = stats.possiblyDuplicated;
  counters.queued = pipe.publisher.queued();
  if (finnhub) counters.reconnects = finnhub.state.reconnects;
}

/**
 * The stop: waits up to --flush-timeout for Kafka to take what is queued, closes the
 * recording and the producer. Its exit code, and the line saying what was not
 * delivered (printed after the summary).
 */
async function flush(
  plan: Plan,
  pipe: Pipeline,
  producer: Producer,
): Promise<{ code: number; report(): void }> {
  const { publisher, recorder, feed, finnhub } = pipe;
  const deadline = Date.now() + plan.flags.flushTimeout * 1000;
  const undelivered = await publisher.close(plan.flags.flushTimeout * 1000);
  recorder?.close(); // flushes: a write that fails now still counts below
  // A connection still lost at the stop is a gap too, up to now; then the last
  // heartbeat says "stopped": viewers tell a clean stop from a dead producer.
  const stillLost = finnhub?.openGap(Date.now());
  if (stillLost) feed.disconnected(stillLost, plan.config.symbols);
  await feed.close(Math.max(1_000, deadline - Date.now()));
  await unlessAborted(producer.disconnect().catch(() => {}), AbortSignal.timeout(2_000));
  const recorded = !recorder
    ? ""
    : recorder.failed
    ? `; the recording stopped early (see the recording error above)`
    : `; every frame received is in ${plan.flags.record}`;
  const lost = formatCount(undelivered);
  const problem = publisher.failure !== undefined
    ? `Kafka refused the trades for good (${redact(publisher.failure)}): ${lost} trades not ` +
      `delivered${recorded}`
    : undelivered > 0
    ? `${lost} trades were not acknowledged by Kafka within ` +
      `--flush-timeout=${plan.flags.flushTimeout} s (broker unreachable?)${recorded}`
    : undefined;
  return {
    code: problem === undefined ? 0 : 1,
    report: () => problem && console.error(`error: ${problem}`),
  };
}

// kafkajs keeps timers of its own: the run is over, so leave now.
if (import.meta.main) Deno.exit(await main(Deno.args));
