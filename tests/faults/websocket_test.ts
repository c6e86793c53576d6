/**
 * Fault suite, 2: the websocket dropped by the fake Finnhub server every few
 * seconds — the TCP connection cut, a clean close, once silently (no close, no
 * pings, no trades), and a close followed by handshakes refused with HTTP 503 for
 * three seconds. The producer reconnects, subscribes every symbol again, and every
 * trade sent after a resubscribe is in Kafka, once, in order per symbol. Each drop
 * leaves one gap event on the feed topic, read back with kcat, with its times.
 *
 * The fake streams only to a connection subscribed to every symbol, and holds its
 * stream for a moment before it cuts one, so what it counts as sent is what the
 * network delivered: a trade lost inside a dying connection is Finnhub's loss, not
 * something the producer could have kept.
 */

import assert from "node:assert/strict";
import { FakeFinnhub } from "../helpers/fake_finnhub.ts";
import type { Gap, Heartbeat } from "../../lib/feed.ts";
import {
  parseSummary,
  printTally,
  readFeed,
  readTopic,
  startProducer,
  tally,
  waitForCount,
} from "../helpers/processes.ts";
import { sleep } from "../../lib/async.ts";
import { BROKERS, withTopic } from "../helpers/kafka.ts";

const SYMBOLS = ["AAPL", "MSFT", "NVDA", "BINANCE:BTCUSDT", "OANDA:EUR_USD", "IC MARKETS:1"];

type Drop = "cut" | "close" | "silent" | "refused";

/** What the test saw of one drop: when it cut, and when the fake saw the resubscribe. */
interface Seen {
  readonly drop: Drop;
  readonly lostAt: number;
  readonly resubscribedAt: number;
}

const REFUSED_MS = 3_000;

Deno.test("fault 2: websocket dropped, silent, refused: nothing lost, every gap on the feed", async () => {
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
          "--heartbeat=1",
        ],
        { KAFKA_BROKERS: BROKERS, FINNHUB_TOKEN: fake.token, FINNHUB_WS_URL: fake.url },
      );
      await fake.waitForSubscribed(1, SYMBOLS, 30_000);
      const streaming = fake.stream({ symbols: SYMBOLS, rate: 800, count: 1_000_000 });
      const drops: Drop[] = ["cut", "close", "silent", "refused"];
      const gaps: number[] = [];
      const seen: Seen[] = [];
      for (const [i, drop] of drops.entries()) {
        await sleep(2_500);
        // Trades already on the wire arrive before the connection goes.
        fake.paused = true;
        await sleep(300);
        const lostAt = Date.now();
        if (drop === "cut") await fake.drop();
        else if (drop === "close") fake.closeClients(1001, "server restart");
        else if (drop === "refused") {
          fake.refuseFor(REFUSED_MS); // a server restarting: 503 to every handshake
          fake.closeClients(1001, "server restart");
        } else fake.silent = true; // the connection stays open; nothing comes through it
        // Connection i + 2 subscribes to every symbol again (the producer's dead
        // timer ends the silent one); the fake speaks again once it has.
        await fake.waitForSubscribed(i + 2, SYMBOLS, 15_000);
        const resubscribedAt = Date.now();
        fake.silent = false;
        fake.paused = false;
        gaps.push(resubscribedAt - lostAt);
        seen.push({ drop, lostAt, resubscribedAt });
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
      assert.ok(fake.refused >= 1, "the fake refused handshakes with 503");
      checkFeed(await readFeed(BROKERS, topic), { seen, sent: counts.sent });
    });
  } finally {
    await fake.close();
  }
});

/**
 * The feed topic holds one gap event per drop, at the right times, and heartbeats
 * that end with a clean stop: what a viewer shades on its charts.
 */
function checkFeed(
  records: readonly (Gap | Heartbeat)[],
  expected: { seen: readonly Seen[]; sent: number },
): void {
  const gaps = records.filter((record): record is Gap => record.kind === "gap");
  const beats = records.filter((record): record is Heartbeat => record.kind === "heartbeat");
  assert.equal(gaps.length, expected.seen.length, JSON.stringify(gaps));
  const detail: Record<Drop, RegExp> = {
    cut: /EOF|closed|reset|connection/i,
    close: /closed by server, code 1001/,
    silent: /no frame, not even a ping, for 2 s/,
    refused: /closed by server, code 1001.*; then refused \d+ times? \(.*503/,
  };
  for (const [i, { drop, lostAt, resubscribedAt }] of expected.seen.entries()) {
    const gap = gaps[i];
    const at = `gap ${i + 1} (${drop}): ${JSON.stringify(gap)}`;
    assert.equal(gap.reason, "disconnected", at);
    assert.equal(gap.n, i + 1, at);
    assert.deepEqual(gap.symbols, SYMBOLS, at);
    assert.match(gap.detail, detail[drop], at);
    // A silent connection's gap starts at its last frame (a ping every 500 ms went on
    // until the fake fell silent); a cut or a close starts it when the producer saw it.
    const earliest = drop === "silent" ? lostAt - 700 : lostAt - 50;
    assert.ok(gap.from >= earliest && gap.from <= lostAt + 1_000, `${at}: from vs ${lostAt}`);
    assert.ok(gap.to > gap.from && gap.to <= resubscribedAt + 50, `${at}: to vs ${resubscribedAt}`);
    if (drop === "refused") assert.ok(gap.to - gap.from >= REFUSED_MS, at);
    // The fake's trades are dated when sent: trade time is wall time less a few ms.
    assert.equal(gap.tradeTo - gap.tradeFrom, gap.to - gap.from, at);
    assert.ok(Math.abs(gap.tradeFrom - gap.from) < 1_000, at);
  }
  assert.ok(beats.length >= 10, `a heartbeat a second (${beats.length})`);
  const last = beats[beats.length - 1];
  assert.equal(last.state, "stopped");
  assert.equal(last.source, "finnhub");
  assert.equal(last.counts.acked, expected.sent);
  assert.equal(last.counts.reconnects, expected.seen.length);
  assert.ok(beats.some((beat) => beat.state === "refused" && /503/.test(beat.detail ?? "")));
  assert.ok(beats.some((beat) => beat.state === "live" && beat.lastPingAt !== null));
}
