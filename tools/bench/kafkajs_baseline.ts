/**
 * The kafkajs baselines for `deno task bench`: the client ours is built on, used
 * two ways, neither with any of our code in the loop.
 *
 *   naive TOPIC FILE COUNT    one awaited `send` per trade, default producer settings
 *                             (acks = all): how a first version usually looks
 *   bare TOPIC FILE COUNT     the records pre-built in memory, sent in batches of
 *                             2,500 by an idempotent producer (ours' settings): the
 *                             most kafkajs can produce here, with nothing else to do
 *   bare-consume TOPIC GROUP COUNT  a group consumer whose eachBatch only counts: the most
 *                             kafkajs can fetch and decode here (ours' fetch settings)
 *
 * FILE holds `key<TAB>value` lines (the bench's records). Prints one JSON line:
 * {"records": N, "seconds": S}, timed from the first send to the last ack, or from
 * the first fetch sent to the last batch.
 */

import { type Message, Partitioners } from "kafkajs";
import { loadConfig, readEnv } from "../../config.ts";
import { createKafka } from "../../lib/kafka.ts";
import { createIdempotentProducer } from "../../producer/kafka_producer.ts";
import { HEADER_RECEIVED_AT, HEADER_SOURCE } from "../../lib/trade.ts";
import { exitCodeFor, positive, UsageError } from "../../lib/cli.ts";

/** The first `count` records of a bench file, as [key, value] pairs. */
export function readRecords(text: string, count: number): [string, string][] {
  const records: [string, string][] = [];
  let start = 0;
  while (records.length < count && start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const tab = text.indexOf("\t", start);
    if (tab > start && tab < end) records.push([text.slice(start, tab), text.slice(tab + 1, end)]);
    start = end + 1;
  }
  return records;
}

const BARE_BATCH = 2_500;

async function produce(run: { mode: string; topic: string; path: string; count: number }) {
  const { mode, topic, path, count } = run;
  const records = readRecords(await Deno.readTextFile(path), count);
  const kafka = createKafka(loadConfig(readEnv()), `bench-${mode}`);
  const producer = mode === "naive"
    ? kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
    : createIdempotentProducer(kafka);
  await producer.connect();
  const headers = { [HEADER_RECEIVED_AT]: String(Date.now()), [HEADER_SOURCE]: "sim" };
  const messages: Message[] = records.map(([key, value]) => ({ key, value, headers }));
  const started = performance.now();
  if (mode === "naive") {
    for (const message of messages) await producer.send({ topic, messages: [message] });
  } else {
    for (let i = 0; i < messages.length; i += BARE_BATCH) {
      await producer.send({ topic, acks: -1, messages: messages.slice(i, i + BARE_BATCH) });
    }
  }
  const seconds = (performance.now() - started) / 1000;
  await producer.disconnect();
  return { records: messages.length, seconds };
}

async function consume(run: { topic: string; groupId: string; count: number }) {
  const { topic, groupId, count } = run;
  const kafka = createKafka(loadConfig(readEnv()), "bench-bare");
  // The fetch settings of ours (topic_reader.ts).
  const consumer = kafka.consumer({
    groupId,
    maxWaitTimeInMs: 500,
    maxBytesPerPartition: 2 * 1024 * 1024,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  let first = 0;
  let last = 0;
  // From the first fetch sent, as ours (topic_reader.ts).
  consumer.on(consumer.events.FETCH_START, () => {
    first ||= performance.now();
  });
  const done = Promise.withResolvers<void>();
  await consumer.run({
    autoCommit: false,
    eachBatch: ({ batch }) => {
      seen += batch.messages.length;
      last = performance.now();
      if (seen >= count) done.resolve();
      return Promise.resolve();
    },
  });
  await done.promise;
  await consumer.disconnect();
  return { records: seen, seconds: (last - first) / 1000 };
}

const USAGE =
  "usage: kafkajs_baseline.ts naive|bare TOPIC FILE COUNT | bare-consume TOPIC GROUP COUNT";

export async function main(args: string[]): Promise<number> {
  try {
    const [mode, topic, source, countText, ...extra] = args;
    const known = mode === "naive" || mode === "bare" || mode === "bare-consume";
    if (!known || !topic || !source || !countText || extra.length > 0) {
      throw new UsageError(USAGE);
    }
    const count = positive("COUNT", countText, { integer: true });
    const result = mode === "bare-consume"
      ? await consume({ topic, groupId: source, count })
      : await produce({ mode, topic, path: source, count });
    console.log(JSON.stringify(result));
    return 0;
  } catch (error) {
    return exitCodeFor(error);
  }
}

// kafkajs keeps timers of its own: the entry line exits once the result is printed.
if (import.meta.main) Deno.exit(await main(Deno.args));
