/**
 * Fault suite, 5: the dashboard (`deno task dashboard`) under load. 50 SSE clients
 * follow a busy market, ten of which never read a byte (a background tab, a dead
 * proxy). The server's memory stays bounded, the 40 others keep receiving updates
 * and end with exactly the server's candles, clients beyond the cap (100) are
 * refused with 503 and a reason, a closed client frees its place, and SIGTERM stops
 * the server promptly although ten clients still owe it their reads.
 */

import assert from "node:assert/strict";
import { DEFAULT_MAX_SYMBOLS } from "../../consumer/candles.ts";
import { FakeFinnhub } from "../helpers/fake_finnhub.ts";
import {
  printTally,
  readTopic,
  rssMiB,
  startDashboardConsumer,
  startProducer,
  tally,
  waitForCount,
  waitUntil,
} from "../helpers/processes.ts";
import { sleep } from "../../lib/async.ts";
import { BROKERS, uniqueName, withTopic } from "../helpers/kafka.ts";
import { ClientView, type Event, eventParser } from "../helpers/sse.ts";

/** As many symbols as the consumer keeps (DEFAULT_MAX_SYMBOLS), with long names: big pushes. */
const SYMBOLS = Array.from(
  { length: DEFAULT_MAX_SYMBOLS },
  (_, i) => `BINANCE:FAULTLOADTEST${String(i).padStart(3, "0")}USDT`,
);
const READERS = 40;
const SILENT = 10;
/** Readers that also parse every event and rebuild the candles they follow. */
const CHECKED = 5;
const CAP = 100; // serveDashboard's default maxStreams
const CLIENT_BUFFER = 1024 * 1024; // serveDashboard's default per-client buffer

/** An SSE client that reads everything; the checked ones rebuild their candles. */
class Reader {
  bytes = 0;
  lastAt = Date.now();
  maxGapMs = 0;
  /** The candles a checked reader holds, kept as the page keeps them. */
  readonly view = new ClientView();
  /** Resolves when the stream ends, with the error that ended it, if any. */
  readonly done: Promise<unknown>;
  readonly #controller = new AbortController();

  constructor(url: string, readonly symbol: string, readonly checked: boolean) {
    // Kept, not thrown: the test asserts on it once every stream has ended.
    this.done = this.#run(`${url}events?symbol=${encodeURIComponent(symbol)}`).then(
      () => undefined,
      (error) => error,
    );
  }

  async #run(url: string): Promise<void> {
    const response = await fetch(url, { signal: this.#controller.signal });
    assert.equal(response.status, 200, `stream of ${this.symbol}`);
    const feed = eventParser((event) => this.#apply(event));
    try {
      for await (const chunk of response.body!) {
        const now = Date.now();
        this.maxGapMs = Math.max(this.maxGapMs, now - this.lastAt);
        this.lastAt = now;
        this.bytes += chunk.byteLength;
        if (this.checked) feed(chunk);
      }
    } catch (error) {
      if (!this.#controller.signal.aborted) throw error;
    }
  }

  #apply(event: Event): void {
    assert.equal(event.data.symbol, this.symbol);
    this.view.apply(event);
  }

  close(): void {
    this.#controller.abort();
  }
}

/** An SSE client that sends its request and never reads a byte of the answer. */
async function silentClient(port: number, symbol: string): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(
    `GET /events?symbol=${symbol} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      "Accept: text/event-stream\r\n\r\n",
  ));
  return conn;
}

interface Health {
  consumer: { applied: number; lag: number | null };
  dashboard: {
    streams: number;
    queuedBytes: number;
    refused: number;
    overflows: number;
    resyncs: number;
  };
}

Deno.test("fault 5: 50 SSE clients, 10 never read: bounded, live, capped, stoppable", async () => {
  const fake = new FakeFinnhub({ maxSymbols: SYMBOLS.length });
  const silent: Deno.TcpConn[] = [];
  const readers: Reader[] = [];
  try {
    await withTopic(3, async (topic, _kafka, admin) => {
      await using producer = await startProducer(
        [`--topic=${topic}`, `--symbols=${SYMBOLS.join(",")}`, "--status-interval=0"],
        { KAFKA_BROKERS: BROKERS, FINNHUB_TOKEN: fake.token, FINNHUB_WS_URL: fake.url },
      );
      await using dashboard = await startDashboardConsumer(
        [`--from=${new Date(Date.now() - 1_000).toISOString()}`],
        { KAFKA_BROKERS: BROKERS, KAFKA_TOPIC: topic, KAFKA_GROUP_ID: uniqueName("faults-group") },
      );
      const { port } = new URL(dashboard.url);
      const health = async (): Promise<Health> =>
        await (await fetch(new URL("/healthz", dashboard.url))).json();
      await fake.waitForSubscribed(1, SYMBOLS, 30_000);

      // Every symbol exists before the clients come, so each follows a live one.
      fake.sendUnique(SYMBOLS, SYMBOLS.length);
      await waitUntil(
        "the first trades applied",
        async () => (await health()).consumer.applied >= SYMBOLS.length,
      );
      for (let i = 0; i < READERS; i++) {
        readers.push(new Reader(dashboard.url, SYMBOLS[i], i < CHECKED));
      }
      for (let i = 0; i < SILENT; i++) {
        silent.push(await silentClient(Number(port), SYMBOLS[(READERS + i) % SYMBOLS.length]));
      }
      await waitUntil("50 streams", async () => (await health()).dashboard.streams === 50);
      const rssStart = await rssMiB(dashboard.child.pid);

      // A busy market: every push carries the stats of most symbols.
      const streaming = fake.stream({ symbols: SYMBOLS, rate: 3_000, count: 45_000 });
      let rssMax = rssStart;
      let queuedMax = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          rssMax = Math.max(rssMax, await rssMiB(dashboard.child.pid));
          queuedMax = Math.max(queuedMax, (await health()).dashboard.queuedBytes);
          await sleep(250);
        }
      })().then(() => undefined, (error) => error);
      for (const reader of readers) reader.maxGapMs = 0;
      await streaming;
      await waitForCount(admin, topic, () => fake.sent.length);
      await waitUntil(
        "every trade applied",
        async () => (await health()).consumer.applied >= fake.sent.length,
      );
      await sleep(1_500); // a heartbeat and the last pushes
      sampling = false;
      assert.equal(await sampler, undefined, "the server answered /healthz throughout");

      const state = await health();
      const counts = tally(fake.sent, await readTopic(BROKERS, topic));
      const megabytes = readers.reduce((sum, reader) => sum + reader.bytes, 0) / 2 ** 20;
      const worstGap = Math.max(...readers.map((reader) => reader.maxGapMs));
      printTally(
        "5 (dashboard load)",
        counts,
        `${READERS} readers got ${megabytes.toFixed(0)} MiB, longest gap ${worstGap} ms; ` +
          `${SILENT} silent clients overflowed ${state.dashboard.overflows} times; ` +
          `server RSS ${rssStart.toFixed(0)} -> max ${rssMax.toFixed(0)} MiB, queued max ` +
          `${(queuedMax / 2 ** 20).toFixed(1)} MiB`,
      );
      assert.equal(counts.lost, 0, "lost");
      assert.equal(counts.doubled, 0, "doubled");
      assert.equal(state.consumer.applied, fake.sent.length);

      // Bounded: the silent clients filled their buffers and stopped there.
      assert.equal(state.dashboard.streams, READERS + SILENT);
      assert.ok(state.dashboard.overflows >= SILENT, "every silent client hit its bound");
      assert.ok(
        queuedMax <= SILENT * 2 * CLIENT_BUFFER,
        `${queuedMax} bytes queued for clients that do not read`,
      );
      assert.ok(rssMax - rssStart < 150, `server RSS grew ${rssMax - rssStart} MiB`);

      // Live: every reader got updates throughout, and holds the server's candles.
      assert.ok(worstGap < 2_500, `a reader waited ${worstGap} ms for an update`);
      for (const reader of readers.slice(0, CHECKED)) {
        const query = new URLSearchParams({ symbol: reader.symbol, interval: "1000" });
        const response = await fetch(new URL(`/api/candles?${query}`, dashboard.url));
        assert.deepEqual(
          reader.view.sorted(),
          (await response.json()).candles,
          `${reader.symbol}: what the page holds is what the server holds`,
        );
      }

      // The cap: 100 streams; the next one is refused, with a reason and a retry hint.
      const extra: Deno.TcpConn[] = [];
      try {
        for (let i = READERS + SILENT; i < CAP; i++) {
          extra.push(await silentClient(Number(port), SYMBOLS[i % SYMBOLS.length]));
        }
        await waitUntil("100 streams", async () => (await health()).dashboard.streams === CAP);
        const refused = await fetch(new URL("/events?symbol=AAPL", dashboard.url));
        assert.equal(refused.status, 503);
        assert.equal(refused.headers.get("retry-after"), "5");
        assert.match(await refused.text(), /too many live streams: .* at most 100 at once/);
      } finally {
        for (const conn of extra) conn.close();
      }
      // A client that goes away frees its place.
      await waitUntil(
        "the extra streams freed",
        async () => (await health()).dashboard.streams === READERS + SILENT,
      );
      const again = await fetch(new URL("/events?symbol=AAPL", dashboard.url));
      assert.equal(again.status, 200);
      await again.body!.cancel();
      assert.ok((await health()).dashboard.refused >= 1);

      // SIGTERM with ten clients that never read: a prompt, clean stop.
      const stopAt = Date.now();
      dashboard.kill("SIGTERM");
      const stopped = await dashboard.done;
      const stopMs = Date.now() - stopAt;
      assert.equal(stopped.code, 0, stopped.stderr);
      assert.ok(stopMs < 5_000, `stopped ${stopMs} ms after SIGTERM`);
      for (const reader of readers) {
        assert.equal(await reader.done, undefined, `${reader.symbol}: the stream ended cleanly`);
      }
      producer.kill("SIGTERM");
      assert.equal((await producer.done).code, 0);
    });
  } finally {
    for (const reader of readers) reader.close();
    await Promise.allSettled(readers.map((reader) => reader.done));
    for (const conn of silent) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await fake.close();
  }
});
