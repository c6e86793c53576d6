/**
 * Shared by the fault suite (tests/faults_*_test.ts): the scripts run as separate
 * processes with their tasks' own permissions, a private broker that may be killed,
 * the topic read back with kcat, and the ledger that compares what the source sent
 * with what Kafka holds, trade by trade.
 *
 * A trade is identified by its content (symbol, price, volume, time): the fake
 * Finnhub server never sends the same trade twice, so a trade found twice in Kafka
 * was doubled by the pipeline, and one not found was lost.
 */

import assert from "node:assert/strict";
import type { Admin } from "kafkajs";
import { type NativeBroker, startNativeBroker } from "../../tools/broker/native.ts";
import { ROOT, scriptArgs } from "../../tools/scripts.ts";
import { freePortPair } from "./ports.ts";
import { loadConfig } from "../../config.ts";
import { sleep } from "../../lib/async.ts";
import { createKafka } from "../../lib/kafka.ts";
import { decodeFeed, feedKey, type FeedRecord, feedTopicOf } from "../../lib/feed.ts";
import { decodeTrade, type TradeRecord } from "../../lib/trade.ts";
import { alertKey, alertsTopicOf, type FiredAlert, firedFromJson } from "../../lib/alert_rules.ts";
import type { WireTrade } from "./fake_finnhub.ts";

/** Polls `condition` every 50 ms; throws after `ms` naming `what`. */
export async function waitUntil(
  what: string | (() => string),
  condition: () => boolean | Promise<boolean>,
  ms = 20_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${ms} ms waiting for ${typeof what === "string" ? what : what()}`,
      );
    }
    await sleep(50);
  }
}

/** A script running as its own process, its output kept as it comes. */
export class Proc {
  readonly child: Deno.ChildProcess;
  readonly startedAt = Date.now();
  stdout = "";
  stderr = "";
  /** Resolves when the process has ended and its output is read. */
  readonly done: Promise<
    { code: number; signal: Deno.Signal | null; stdout: string; stderr: string; ms: number }
  >;

  constructor(args: string[], env: Record<string, string>) {
    this.child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: ROOT,
      env: { NO_COLOR: "1", FINNHUB_TOKEN: "", SOURCE: "", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      try {
        for await (const text of stream.pipeThrough(new TextDecoderStream())) this[into] += text;
      } catch (error) {
        // A pipe that breaks as the process is killed: keep what was read, say so.
        this[into] += `\n(reading ${into} failed: ${error})`;
      }
    };
    this.done = Promise.all([
      this.child.status,
      collect(this.child.stdout, "stdout"),
      collect(this.child.stderr, "stderr"),
    ]).then(([status]) => ({
      code: status.code,
      signal: status.signal,
      stdout: this.stdout,
      stderr: this.stderr,
      ms: Date.now() - this.startedAt,
    }));
  }

  /** Waits until stdout or stderr matches `pattern`; returns the match. */
  async waitFor(pattern: RegExp, ms = 20_000): Promise<RegExpMatchArray> {
    let match: RegExpMatchArray | null = null;
    let ended = false;
    this.done.then(() => (ended = true), () => (ended = true));
    await waitUntil(
      () => `${pattern} in the output of ${this.describe()}`,
      () => (match = `${this.stdout}\n${this.stderr}`.match(pattern)) !== null || ended,
      ms,
    );
    if (match === null) {
      throw new Error(`${this.describe()} ended without printing ${pattern}`);
    }
    return match;
  }

  /** `promise`, with this process's output added to the error if it rejects. */
  async explain<T>(promise: Promise<T>): Promise<T> {
    try {
      return await promise;
    } catch (error) {
      const tail = (text: string) => text.slice(-4_000);
      throw new Error(
        `${error instanceof Error ? error.message : error}\n--- stdout of pid ${this.child.pid} ` +
          `(end):\n${tail(this.stdout)}\n--- stderr (end):\n${tail(this.stderr)}`,
      );
    }
  }

  describe(): string {
    return `the process (pid ${this.child.pid}); stdout:\n${this.stdout}\nstderr:\n${this.stderr}`;
  }

  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.child.kill(signal);
    } catch { /* already ended */ }
  }

  /** SIGKILL unless ended; always awaits the end (for the sanitizers). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGKILL");
    await this.done;
  }
}

/**
 * The producer as `deno task produce` runs it (its permission set, no .env), with
 * its recordings in `dir` instead of recordings/ when given.
 */
export function startProducer(args: string[], env: Record<string, string>, dir?: string): Proc {
  return new Proc([...scriptArgs("produce", { files: dir }), ...args], env);
}

/** `deno task dashboard`: the consumer with its web server, on a free port. */
export async function startDashboardConsumer(
  args: string[],
  env: Record<string, string>,
): Promise<Proc & { url: string }> {
  const proc = new Proc([...scriptArgs("dashboard"), ...args], {
    DASHBOARD_HOST: "127.0.0.1",
    DASHBOARD_PORT: "0",
    ...env,
  });
  const [, url] = await proc.waitFor(/dashboard: (http:\/\/\S+)/);
  return Object.assign(proc, { url });
}

/**
 * A broker of our own, on its own ports and data directory, that a test may kill:
 * the shared one at 127.0.0.1:9092 serves other people and is never touched.
 */
export class PrivateBroker {
  readonly port = freePortPair();
  readonly brokers = `127.0.0.1:${this.port}`;
  #dir = "";
  #classpath: string | undefined;
  #broker: NativeBroker | undefined;

  /** Starts (or restarts, keeping its topics) the broker; resolves once it answers. */
  async start(): Promise<void> {
    if (this.#dir === "") {
      this.#dir = await Deno.makeTempDir({ prefix: "market-stream-broker-" });
      // The jars the shared broker's launcher resolved; Maven only when there are none.
      this.#classpath = await Deno.readTextFile(`${ROOT}.kafka/classpath.txt`)
        .then((text) => text.trim(), () => undefined);
    }
    this.#broker = await startNativeBroker({
      port: this.port,
      dir: this.#dir,
      classpath: this.#classpath,
      // A restarted node waits out its previous incarnation's session before it
      // serves: 9 s by default, 2 s here.
      properties: { "broker.session.timeout.ms": 2_000, "broker.heartbeat.interval.ms": 500 },
    });
  }

  get running(): boolean {
    return this.#broker !== undefined;
  }

  /** SIGKILL: no controlled shutdown, no flush, as when the machine dies. */
  async kill(): Promise<void> {
    const broker = this.#broker;
    this.#broker = undefined;
    await broker?.stop("SIGKILL");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
    if (this.#dir !== "") await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/** A kafkajs admin for `brokers`, disconnected on dispose. */
export async function adminFor(brokers: string): Promise<Admin & AsyncDisposable> {
  const admin = createKafka(loadConfig({ KAFKA_BROKERS: brokers }), "faults").admin();
  await admin.connect();
  return Object.assign(admin, { [Symbol.asyncDispose]: () => admin.disconnect() });
}

/** Records in `topic`: the sum of its partitions' end offsets. */
export async function recordCount(admin: Admin, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((sum, partition) => sum + Number(partition.high), 0);
}

/** Waits until `topic` holds at least `count` records; returns how many it holds. */
export async function waitForCount(
  admin: Admin,
  topic: string,
  count: () => number,
  ms = 20_000,
): Promise<number> {
  let seen = 0;
  await waitUntil(
    () => `${count()} records in ${topic} (${seen} so far)`,
    async () => (seen = await recordCount(admin, topic).catch(() => seen)) >= count(),
    ms,
  );
  return seen;
}

export interface Kept {
  partition: number;
  offset: number;
  key: string | null;
  /** The record timestamp, ms. */
  ts: number;
  headers: Record<string, string>;
  /** The decoded record, or the Rejection the codec gave. */
  record: TradeRecord | string;
}

/** Every record of `topic` on `brokers` as kcat's JSON envelopes, read as any other tool would. */
async function kcatEnvelopes(brokers: string, topic: string) {
  const output = await new Deno.Command("kcat", {
    args: ["-C", "-b", brokers, "-t", topic, "-e", "-q", "-J"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  return new TextDecoder().decode(output.stdout).split("\n").filter((line) => line !== "")
    .map((line) => JSON.parse(line));
}

/** Every record of the feed topic of `topic`, decoded: a record that is not one fails. */
export async function readFeed(brokers: string, topic: string): Promise<FeedRecord[]> {
  return (await kcatEnvelopes(brokers, feedTopicOf(topic))).map((envelope) => {
    const record = decodeFeed(envelope.payload);
    assert.ok(record !== null, `not a feed record: ${envelope.payload}`);
    assert.equal(envelope.key, feedKey(record));
    return record;
  });
}

/** Every fired alert on the alerts topic of `topic`, read with kcat: each must be one. */
export async function readAlerts(brokers: string, topic: string): Promise<FiredAlert[]> {
  return (await kcatEnvelopes(brokers, alertsTopicOf(topic))).map((envelope) => {
    const alert = firedFromJson(envelope.payload);
    assert.ok(alert !== null, `not a fired alert: ${envelope.payload}`);
    assert.equal(envelope.key, alertKey(alert), "keyed by rule id and trade time");
    return alert;
  });
}

/** Every record of `topic` on `brokers`, read with kcat as any other tool would. */
export async function readTopic(brokers: string, topic: string): Promise<Kept[]> {
  return (await kcatEnvelopes(brokers, topic))
    .map((envelope) => {
      const headers: Record<string, string> = {};
      for (let i = 0; i < (envelope.headers?.length ?? 0); i += 2) {
        headers[envelope.headers[i]] = envelope.headers[i + 1];
      }
      return {
        partition: envelope.partition,
        offset: envelope.offset,
        key: envelope.key,
        ts: envelope.ts,
        headers,
        record: decodeTrade(envelope.payload),
      };
    });
}

/** The trades of `kept`, asserting that every record is one. */
export function tradesOf(
  kept: readonly Kept[],
): (Omit<Kept, "record"> & { record: TradeRecord })[] {
  for (const { record, offset } of kept) {
    assert.ok(typeof record !== "string", `offset ${offset} is not a trade record: ${record}`);
  }
  return kept as (Omit<Kept, "record"> & { record: TradeRecord })[];
}

/** What identifies a trade: its content, as the source sent it. */
export function tradeId(
  t: { symbol: string; price: number; volume: number; time: number },
): string {
  return `${t.symbol}|${t.price}|${t.volume}|${t.time}`;
}

export const wireId = (t: WireTrade): string =>
  tradeId({ symbol: t.s, price: t.p, volume: t.v, time: t.t });

export interface Tally {
  sent: number;
  inKafka: number;
  /** Sent, not in Kafka. */
  lost: number;
  /** Extra copies of a sent trade in Kafka. */
  doubled: number;
  /** Valid trades in Kafka that the source never sent. */
  foreign: number;
  /** Records no codec accepts. */
  undecodable: number;
  /** Symbols whose trades Kafka holds in another order than they were sent. */
  outOfOrder: string[];
}

/** Compares what the source sent with what Kafka holds, trade by trade and per symbol. */
export function tally(sent: readonly WireTrade[], kept: readonly Kept[]): Tally {
  const sentIds = new Map<string, number>();
  for (const trade of sent) sentIds.set(wireId(trade), 0);
  let inKafka = 0;
  let doubled = 0;
  let foreign = 0;
  let undecodable = 0;
  // Per symbol (one partition each), the order Kafka holds, by offset.
  const order = new Map<string, string[]>();
  for (
    const { record } of [...kept].sort((a, b) => a.partition - b.partition || a.offset - b.offset)
  ) {
    if (typeof record === "string") {
      undecodable++;
      continue;
    }
    inKafka++;
    const id = tradeId(record);
    const seen = sentIds.get(id);
    if (seen === undefined) {
      foreign++;
      continue;
    }
    if (seen > 0) doubled++;
    sentIds.set(id, seen + 1);
    if (seen === 0) order.set(record.symbol, [...order.get(record.symbol) ?? [], id]);
  }
  let lost = 0;
  for (const count of sentIds.values()) if (count === 0) lost++;
  const outOfOrder: string[] = [];
  const sentOrder = new Map<string, string[]>();
  for (const trade of sent) {
    sentOrder.set(trade.s, [...sentOrder.get(trade.s) ?? [], wireId(trade)]);
  }
  for (const [symbol, ids] of sentOrder) {
    const inKafkaOrder = order.get(symbol) ?? [];
    const present = new Set(inKafkaOrder);
    const expected = ids.filter((id) => present.has(id));
    if (expected.join("\n") !== inKafkaOrder.join("\n")) outOfOrder.push(symbol);
  }
  return { sent: sent.length, inKafka, lost, doubled, foreign, undecodable, outOfOrder };
}

/** The line every scenario prints, so a CI log shows the counts. */
export function printTally(scenario: string, t: Tally, extra = ""): void {
  console.log(
    `fault ${scenario}: sent ${t.sent}, in Kafka ${t.inKafka}, lost ${t.lost}, doubled ${t.doubled}` +
      (t.foreign ? `, foreign ${t.foreign}` : "") +
      (t.undecodable ? `, undecodable ${t.undecodable}` : "") +
      (t.outOfOrder.length ? `, out of order: ${t.outOfOrder.join(" ")}` : "") +
      (extra ? `; ${extra}` : ""),
  );
}

/** The producer's summary line, parsed. */
export function parseSummary(stdout: string) {
  const line = stdout.split("\n").find((text) => text.startsWith("summary:"));
  assert.ok(line, `no summary line in:\n${stdout}`);
  const number = (name: string) => {
    const match = new RegExp(`${name} ([\\d,]+)`).exec(line);
    assert.ok(match, `no "${name}" in ${line}`);
    return Number(match[1].replaceAll(",", ""));
  };
  const rejected = new Map<string, number>();
  const kinds = /rejected [\d,]+ \(([^)]*)\)/.exec(line)?.[1] ?? "";
  for (const part of kinds.split(", ").filter(Boolean)) {
    const [kind, count] = part.split(" ");
    rejected.set(kind, Number(count.replaceAll(",", "")));
  }
  return {
    line,
    received: number("received"),
    acked: number("acked"),
    queued: number("queued"),
    dropped: number("dropped"),
    rejected: number("rejected"),
    rejectedByKind: rejected,
    reconnects: number("reconnects"),
  };
}

/** The producer's newest status line (--status-interval), parsed; undefined before the first. */
export function lastStatus(stdout: string): { received: number; rejected: number } | undefined {
  const line = stdout.split("\n").findLast((text) => / recv [\d,]+\/s \(/.test(text));
  if (line === undefined) return undefined;
  const count = (pattern: RegExp) => Number(pattern.exec(line)![1].replaceAll(",", ""));
  return { received: count(/ recv [\d,]+\/s \(([\d,]+)\)/), rejected: count(/ rejected ([\d,]+)/) };
}

/**
 * Resident memory of a process, MiB, from `ps` (Deno reads /proc/<pid>/ only with
 * --allow-all, and the test task grants less).
 */
export async function rssMiB(pid: number): Promise<number> {
  const { code, stdout } = await new Deno.Command("ps", {
    args: ["-o", "rss=", "-p", String(pid)],
    stdout: "piped",
    stderr: "null",
  }).output();
  const kib = Number(new TextDecoder().decode(stdout).trim());
  assert.ok(code === 0 && kib > 0, `no process ${pid}`);
  return kib / 1024;
}
