/**
 * Fault suite, the broker's faults, on a private broker this test may kill (the
 * shared one at 127.0.0.1:9092 is never touched):
 * 1. the broker SIGKILLed and restarted mid-stream at 1,000 trades/s: the producer
 *    recovers within seconds of its return; every trade is in Kafka exactly once,
 *    in order per symbol; the feed topic names the outage (kafka-unreachable);
 * 6. SIGTERM to the producer while the broker is down: a bounded wait, exit code 1,
 *    the count of trades not delivered, and with --record every one is on disk.
 */

import assert from "node:assert/strict";
import type { Gap } from "../../lib/feed.ts";
import { parseFrame } from "../../producer/frames.ts";
import { parseRecordedLine } from "../../producer/recording.ts";
import { FakeFinnhub, type WireTrade } from "../helpers/fake_finnhub.ts";
import {
  adminFor,
  parseSummary,
  printTally,
  PrivateBroker,
  readFeed,
  readTopic,
  recordCount,
  startProducer,
  tally,
  waitForCount,
  wireId,
} from "../helpers/processes.ts";
import { sleep } from "../../lib/async.ts";
import { freePortPair } from "../helpers/ports.ts";
import { uniqueName } from "../helpers/kafka.ts";

const SYMBOLS = ["AAPL", "MSFT", "BINANCE:BTCUSDT", "OANDA:EUR_USD"];

Deno.test("fault 6: SIGTERM while the broker is down at start: a prompt stop", async () => {
  // Nothing listens on the port: the producer is still waiting for Kafka's answer.
  await using producer = await startProducer(["--source=sim", "--topic=never-created"], {
    KAFKA_BROKERS: `127.0.0.1:${freePortPair()}`,
  });
  await producer.waitFor(/producer: sim/);
  await sleep(1_000);
  const stopAt = Date.now();
  producer.kill("SIGTERM");
  const { code, stderr } = await producer.done;
  const stopMs = Date.now() - stopAt;
  console.log(`fault 6 (SIGTERM before Kafka answered): exit ${code} after ${stopMs} ms`);
  assert.ok(stopMs < 2_000, `stopped ${stopMs} ms after SIGTERM`);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /stopped before Kafka answered: nothing was received/);
});

Deno.test("faults with a private broker", async (t) => {
  await using broker = new PrivateBroker();
  await broker.start();
  const env = (fake: FakeFinnhub) => ({
    KAFKA_BROKERS: broker.brokers,
    FINNHUB_TOKEN: fake.token,
    FINNHUB_WS_URL: fake.url,
  });

  await t.step("1. broker SIGKILLed and restarted mid-stream at 1,000 trades/s", async () => {
    const fake = new FakeFinnhub();
    const topic = uniqueName("faults-broker");
    try {
      await using producer = await startProducer(
        [
          `--topic=${topic}`,
          `--symbols=${SYMBOLS.join(",")}`,
          "--status-interval=1",
          "--heartbeat=1",
        ],
        env(fake),
      );
      await fake.waitForSubscribed(1, SYMBOLS, 30_000);
      const streaming = fake.stream({ symbols: SYMBOLS, rate: 1_000, count: 14_000 });
      await using admin = await adminFor(broker.brokers);
      await waitForCount(admin, topic, () => 2_000);

      await broker.kill();
      const killedAt = Date.now();
      const sentAtKill = fake.sent.length;
      // Away about 16 s (12 s, then a restart of about 4), longer than kafkajs's
      // connect retries (about 9 s): the client gives up on the connection, and the
      // producer must not.
      await sleep(12_000);
      await broker.start();
      const backAt = Date.now();
      const sentAtReturn = fake.sent.length;
      // Recovered: everything received while the broker was away is in Kafka.
      await producer.explain(waitForCount(admin, topic, () => sentAtReturn, 20_000));
      const recoveredMs = Date.now() - backAt;

      await streaming;
      await producer.explain(waitForCount(admin, topic, () => fake.sent.length, 20_000));
      producer.kill("SIGTERM");
      const { code, stdout, stderr } = await producer.done;
      assert.equal(code, 0, stderr);
      const summary = parseSummary(stdout);
      const counts = tally(fake.sent, await readTopic(broker.brokers, topic));
      printTally(
        "1 (broker killed)",
        counts,
        `${
          sentAtReturn - sentAtKill
        } sent while the broker was down; recovered ${recoveredMs} ms ` +
          `after it answered`,
      );
      assert.equal(counts.sent, 14_000);
      assert.equal(counts.lost, 0, "lost");
      assert.equal(counts.doubled, 0, "doubled");
      assert.equal(counts.foreign, 0);
      assert.deepEqual(counts.outOfOrder, [], "order per symbol");
      assert.equal(summary.received, 14_000, summary.line);
      assert.equal(summary.acked, 14_000, summary.line);
      assert.equal(summary.dropped, 0, summary.line);
      assert.ok(recoveredMs < 10_000, `recovered ${recoveredMs} ms after the broker's return`);

      // The feed names the outage as the producer saw it: sends failing from the kill
      // until the broker took them again; trades delayed, none missing.
      const gaps = (await readFeed(broker.brokers, topic))
        .filter((record): record is Gap => record.kind === "gap");
      assert.ok(gaps.length >= 1, "a gap event for the outage");
      assert.ok(gaps.every((gap) => gap.reason === "kafka-unreachable"), JSON.stringify(gaps));
      const from = Math.min(...gaps.map((gap) => gap.from));
      const to = Math.max(...gaps.map((gap) => gap.to));
      assert.ok(from >= killedAt - 5_000 && from <= killedAt + 2_000, `from ${from - killedAt} ms`);
      assert.ok(to >= backAt && to <= backAt + recoveredMs + 2_000, `to ${to - backAt} ms`);
    } finally {
      await fake.close();
    }
  });

  await t.step(
    "6. SIGTERM while the broker is down: bounded, exit 1, counted, on disk",
    async () => {
      if (!broker.running) await broker.start();
      const fake = new FakeFinnhub();
      const topic = uniqueName("faults-stop");
      const dir = await Deno.makeTempDir();
      const recording = `${dir}/session.ndjson`;
      try {
        await using producer = await startProducer(
          [
            `--topic=${topic}`,
            `--symbols=${SYMBOLS.join(",")}`,
            `--record=${recording}`,
            "--flush-timeout=3",
            "--status-interval=1",
          ],
          env(fake),
          dir,
        );
        await fake.waitForSubscribed(1, SYMBOLS, 30_000);
        const streaming = fake.stream({ symbols: SYMBOLS, rate: 1_000, count: 1_000_000 });
        {
          await using admin = await adminFor(broker.brokers);
          await waitForCount(admin, topic, () => 1_000);
        }
        await broker.kill();
        await sleep(1_500);
        // The source stops first, and what is on the wire arrives: every trade sent
        // was received, so each one is either in Kafka or counted as not delivered.
        fake.stopStreams();
        await streaming;
        await sleep(300);
        const stopAt = Date.now();
        producer.kill("SIGTERM");
        const { code, stdout, stderr } = await producer.done;
        const stopMs = Date.now() - stopAt;
        assert.equal(code, 1, stderr);
        assert.ok(stopMs < 3_000 + 4_000, `stopped ${stopMs} ms after SIGTERM (--flush-timeout=3)`);
        const summary = parseSummary(stdout);
        const undelivered = Number(
          /error: ([\d,]+) trades were not acknowledged by Kafka/.exec(stderr)?.[1].replaceAll(
            ",",
            "",
          ) ?? NaN,
        );
        assert.ok(undelivered > 0, stderr);
        assert.equal(summary.received, fake.sent.length, summary.line);
        assert.equal(summary.acked + summary.queued, summary.received, summary.line);
        assert.equal(summary.queued, undelivered, "the summary and the error line agree");
        assert.equal(summary.dropped, 0);

        // On disk: every trade sent is in the recording.
        const recorded = new Set<string>();
        for (const line of (await Deno.readTextFile(recording)).split("\n").filter(Boolean)) {
          const entry = parseRecordedLine(line);
          assert.notEqual(entry, "bad-recording-line", line);
          if (entry === "bad-recording-line") continue;
          const frame = parseFrame(entry.frame);
          if (frame.type !== "trade") continue;
          for (const trade of frame.data as WireTrade[]) recorded.add(wireId(trade));
        }
        const missing = fake.sent.filter((trade) => !recorded.has(wireId(trade)));
        assert.equal(missing.length, 0, "every trade received is in the recording");

        // Kafka, once back, holds what was acknowledged and no more than the rest.
        await broker.start();
        await using admin = await adminFor(broker.brokers);
        await recordCount(admin, topic);
        const counts = tally(fake.sent, await readTopic(broker.brokers, topic));
        printTally(
          "6 (SIGTERM, broker down)",
          counts,
          `exit ${code} after ${stopMs} ms, ${undelivered} reported not delivered, ` +
            `${recorded.size} on disk`,
        );
        assert.equal(counts.doubled, 0, "doubled");
        assert.ok(counts.inKafka >= summary.acked, "every acknowledged trade is in Kafka");
        assert.ok(counts.lost <= undelivered, "nothing lost beyond what was reported");
        assert.ok(counts.lost > 0, "the broker really was down with trades queued");
      } finally {
        await fake.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
});
