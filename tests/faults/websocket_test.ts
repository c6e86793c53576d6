/**
 * Fault suite, 2: the websocket dropped by the fake Finnhub server every few
 * seconds — the TCP connection cut, a clean close, and once silently (no close, no
 * pings, no trades). The producer reconnects, subscribes every symbol again, and
 * every trade sent after a resubscribe is in Kafka, once, in order per symbol.
 *
 * The fake streams only to a connection subscribed to every symbol, and holds its
 * stream for a moment before it cuts one, so what it counts as sent is what the
 * network delivered: a trade lost inside a dying connection is Finnhub's loss, not
 * something the producer could have kept.
 */

import assert from "node:assert/strict";
import { FakeFinnhub } from "../helpers/fake_finnhub.ts";
import {
  parseSummary,
  printTally,
  readTopic,
  startProducer,
  tally,
  waitForCount,
} from "../helpers/processes.ts";
import { sleep } from "../../lib/async.ts";
import { BROKERS, withTopic } from "../helpers/kafka.ts";

const SYMBOLS = ["AAPL", "MSFT", "NVDA", "BINANCE:BTCUSDT", "OANDA:EUR_USD", "IC MARKETS:1"];

type Drop = "cut" | "close" | "silent";

Deno.test("fault 2: websocket dropped every few seconds, once silently: nothing lost", async () => {
  const fake = new FakeFinnhub();
  fake.pingEvery(500);
  try {
    await withTopic(3, async (topic, _kafka, admin) => {
      await using producer = await startProducer(
        [
          `--topic=${topic}`,
          `--symbols=${SYMBOLS.join(",")}`,
          "--dead-after=2",
          "--status-interval=1",
        ],
        { KAFKA_BROKERS: BROKERS, FINNHUB_TOKEN: fake.token, FINNHUB_WS_URL: fake.url },
      );
      await fake.waitForSubscribed(1, SYMBOLS, 30_000);
      const streaming = fake.stream({ symbols: SYMBOLS, rate: 800, count: 1_000_000 });
      const drops: Drop[] = ["cut", "close", "silent", "cut"];
      const gaps: number[] = [];
      for (const [i, drop] of drops.entries()) {
        await sleep(2_500);
        // Trades already on the wire arrive before the connection goes.
        fake.paused = true;
        await sleep(300);
        const lostAt = Date.now();
        if (drop === "cut") await fake.drop();
        else if (drop === "close") fake.closeClients(1001, "server restart");
        else fake.silent = true; // the connection stays open; nothing comes through it
        // Connection i + 2 subscribes to every symbol again (the producer's dead
        // timer ends the silent one); the fake speaks again once it has.
        await fake.waitForSubscribed(i + 2, SYMBOLS, 15_000);
        fake.silent = false;
        fake.paused = false;
        gaps.push(Date.now() - lostAt);
      }
      await sleep(2_000);
      fake.stopStreams();
      await streaming;
      await waitForCount(admin, topic, () => fake.sent.length);
      producer.kill("SIGTERM");
      const { code, stdout, stderr } = await producer.done;
      assert.equal(code, 0, stderr);

      const counts = tally(fake.sent, await readTopic(BROKERS, topic));
      printTally(
        "2 (websocket dropped)",
        counts,
        `${drops.length} drops (${drops.join(", ")}), resubscribed after ${gaps.join(", ")} ms`,
      );
      assert.equal(counts.lost, 0, "lost");
      assert.equal(counts.doubled, 0, "doubled");
      assert.equal(counts.foreign, 0);
      assert.deepEqual(counts.outOfOrder, [], "order per symbol");
      assert.ok(counts.sent >= 5_000, `a real stream (${counts.sent} trades)`);

      assert.equal(fake.connections, drops.length + 1);
      for (const [n, symbols] of fake.subscribes.entries()) {
        assert.deepEqual(symbols, SYMBOLS, `connection ${n + 1} subscribed to every symbol once`);
      }
      const summary = parseSummary(stdout);
      assert.equal(summary.received, counts.sent, summary.line);
      assert.equal(summary.acked, counts.sent, summary.line);
      assert.equal(summary.reconnects, drops.length, summary.line);
      assert.equal(summary.rejected, 0, summary.line);
      assert.match(stderr, /connection lost after .*no frame, not even a ping, for 2 s/);
      assert.ok(gaps[2] < 2_000 + 3_000, `the silent connection was given up in ${gaps[2]} ms`);
    });
  } finally {
    await fake.close();
  }
});
