/**
 * The dashboard's event stream against the real Aggregator: what a browser receives
 * over SSE (snapshot with its warm-up, deltas, resume, coalescing, slow clients, the
 * stream cap, shutdown). The JSON API, CSV and safety rules: dashboard_api_test.ts.
 * Browser rendering: browser_test.ts.
 */

import assert from "node:assert/strict";
import { WARMUP_CANDLES } from "../dashboard/hub.ts";
import { serveDashboard } from "../dashboard/server.ts";
import { encodeEvent } from "../dashboard/sse.ts";
import { safeJson } from "../dashboard/wire.ts";
import {
  consumerStatus,
  events,
  expected,
  newAggregator,
  T0,
  trade,
  withDashboard,
  XSS,
} from "./helpers/dashboard.ts";
import { ClientView, EventReader, readUntil, revisionOf, stuckClient } from "./helpers/sse.ts";

Deno.test("sse wire format: one event per frame, JSON that cannot read as markup", () => {
  assert.equal(
    new TextDecoder().decode(
      encodeEvent({ id: "abcd1234-7", event: "delta", data: "{}", retry: 1000 }),
    ),
    "retry: 1000\nid: abcd1234-7\nevent: delta\ndata: {}\n\n",
  );
  assert.throws(() => encodeEvent({ data: "a\nb" }));
  const text = safeJson({ symbol: XSS, note: "a & b" });
  assert.ok(!/[<>&]/.test(text), text);
  assert.deepEqual(JSON.parse(text), { symbol: XSS, note: "a & b" });
});

Deno.test("a client gets a snapshot of its window and its warm-up, then deltas that rebuild the same candles", async () => {
  const aggregator = newAggregator();
  for (let i = 0; i < 1400; i++) aggregator.apply(trade("AAPL", 190 + (i % 7), 10, T0 + i * 500));
  aggregator.apply(trade("MSFT", 410, 5, T0));
  await withDashboard(aggregator, {}, async (dashboard) => {
    const response = await events(dashboard, "symbol=AAPL&window=1m");
    assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
    const reader = new EventReader(response);
    const view = new ClientView();
    const snapshot = await reader.next();
    assert.equal(snapshot.event, "snapshot");
    assert.equal(snapshot.data.symbol, "AAPL");
    assert.deepEqual(snapshot.data.stats.map((s: { symbol: string }) => s.symbol), [
      "AAPL",
      "MSFT",
    ]);
    view.apply(snapshot);
    // The window is the last minute of trade time, and before it the indicators'
    // warm-up (WARMUP_CANDLES, 500 one-second candles): not all 700 kept seconds.
    const last = T0 + 1399 * 500;
    const from = Math.floor(last / 1000) * 1000 - 59_000 - WARMUP_CANDLES * 1000;
    assert.equal(snapshot.data.warmup, WARMUP_CANDLES);
    assert.deepEqual(view.sorted(), expected(aggregator, "AAPL", from));
    assert.equal(view.rows.size, 60 + WARMUP_CANDLES);

    // New trades, one of them late (it lands in an older candle), then a notify.
    let id = revisionOf(snapshot.id);
    for (let round = 0; round < 5; round++) {
      aggregator.apply(trade("AAPL", 200 + round, 3, last + 1000 * (round + 1)));
      aggregator.apply(trade("AAPL", 150, 1, last - 10_000));
      dashboard.notify(["AAPL"]);
      const delta = await reader.next();
      assert.equal(delta.event, "delta");
      const revision = revisionOf(delta.id);
      assert.ok(revision > id, "event ids grow with the aggregator revision");
      id = revision;
      // Only what changed travels: the new candle and the late one.
      assert.equal(delta.data.candles.length, 2);
      view.apply(delta);
    }
    const rows = view.sorted();
    const want = expected(aggregator, "AAPL", from);
    assert.deepEqual(rows.slice(-want.length), want);
    await reader.cancel();
  });
});

Deno.test("a reconnect with Last-Event-ID resumes without gaps or doubled points", async () => {
  const aggregator = newAggregator();
  for (let i = 0; i < 120; i++) aggregator.apply(trade("AAPL", 100 + i / 10, 1, T0 + i * 1000));
  await withDashboard(aggregator, {}, async (dashboard) => {
    const first = new EventReader(await events(dashboard, "symbol=AAPL&window=5m"));
    const view = new ClientView();
    const snapshot = await first.next();
    view.apply(snapshot);
    await first.cancel();

    // While the client is away: new candles, an update of an old one, another symbol.
    for (let i = 120; i < 150; i++) aggregator.apply(trade("AAPL", 101, 2, T0 + i * 1000));
    aggregator.apply(trade("AAPL", 99, 7, T0 + 5_000));
    aggregator.apply(trade("MSFT", 410, 5, T0));
    dashboard.notify(["AAPL", "MSFT"]);

    const second = new EventReader(
      await events(dashboard, "symbol=AAPL&window=5m", {
        headers: { "last-event-id": snapshot.id },
      }),
    );
    const resume = await second.next();
    assert.equal(resume.event, "delta", "a known id resumes with a delta, not a snapshot");
    assert.equal(resume.data.candles.length, 31, "30 new candles and the updated old one");
    view.apply(resume);
    assert.equal(view.snapshots, 1);
    assert.deepEqual(view.sorted(), expected(aggregator, "AAPL"));
    assert.ok(resume.data.stats.some((s: { symbol: string }) => s.symbol === "MSFT"));
    await second.cancel();

    // An id from another server process (a restarted consumer) gets a snapshot,
    // and so does one that is no event id at all.
    for (const since of ["00000000-5", "42"]) {
      const third = new EventReader(
        await events(dashboard, `symbol=AAPL&window=5m&since=${since}`),
      );
      assert.equal((await third.next()).event, "snapshot", since);
      await third.cancel();
    }
  });
});

Deno.test("pushes are coalesced to at most ~20/s per client under 10,000 trades/s", async () => {
  const aggregator = newAggregator();
  aggregator.apply(trade("AAPL", 100, 1, Date.now() - 1000));
  await withDashboard(aggregator, {}, async (dashboard) => {
    const reader = new EventReader(await events(dashboard, "symbol=AAPL&window=1m"));
    const view = new ClientView();
    view.apply(await reader.next());
    const durationMs = 2000;
    const start = performance.now();
    let applied = 0;
    // 10,000 trades/s, in batches of 20 every 2 ms, each batch notified.
    const producer = (async () => {
      while (performance.now() - start < durationMs) {
        const target = Math.floor(((performance.now() - start) / 1000) * 10_000);
        while (applied < target) {
          aggregator.apply(trade("AAPL", 100 + (applied % 50) / 10, 1, Date.now()));
          applied++;
          if (applied % 20 === 0) dashboard.notify(["AAPL"]);
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      dashboard.notify(["AAPL"]);
    })();
    let done = false;
    producer.then(() => done = true);
    let pushes = 0;
    while (true) {
      const event = await reader.next();
      view.apply(event);
      if (performance.now() - start <= durationMs) pushes++;
      if (done && revisionOf(event.id) === aggregator.revision()) break;
    }
    await producer;
    assert.ok(applied >= 15_000, `applied ${applied}`);
    const perSecond = pushes / (durationMs / 1000);
    assert.ok(perSecond <= 22, `${perSecond} pushes/s`);
    assert.ok(perSecond >= 10, `${perSecond} pushes/s: coalescing must not starve the client`);
    // Coalesced, yet nothing lost: the client holds exactly the aggregator's candles.
    const from = view.sorted()[0][0];
    assert.deepEqual(view.sorted(), expected(aggregator, "AAPL", from));
    await reader.cancel();
  });
});

Deno.test("a client that stops reading is bounded and resynced; the others keep up", async () => {
  const aggregator = newAggregator();
  const base = Math.floor(Date.now() / 1000) * 1000 - 3600_000;
  for (let i = 0; i < 3600; i++) aggregator.apply(trade("AAPL", 100, 1, base + i * 1000));
  const bufferBytes = 256 * 1024;
  await withDashboard(
    aggregator,
    { pushIntervalMs: 5, clientBufferBytes: bufferBytes },
    async (dashboard) => {
      const stuck = await stuckClient(dashboard.url, "/events?symbol=AAPL&window=1h");
      try {
        const fast = new EventReader(await events(dashboard, "symbol=AAPL&window=1h"));
        const view = new ClientView();
        view.apply(await fast.next());
        // Frames are Uint8Arrays: what a server keeps for a client shows as external memory.
        const externalBefore = Deno.memoryUsage().external;
        // Every round touches all 3600 candles: each push is ~200 KB for each client.
        let maxQueued = 0;
        for (let round = 0; round < 300; round++) {
          for (let i = 0; i < 3600; i++) {
            aggregator.apply(trade("AAPL", 100 + (round % 10), 1, base + i * 1000));
          }
          dashboard.notify(["AAPL"]);
          const event = await fast.next();
          view.apply(event);
          maxQueued = Math.max(maxQueued, dashboard.metrics().queuedBytes);
        }
        const externalGrowth = Deno.memoryUsage().external - externalBefore;
        const metrics = dashboard.metrics();
        assert.ok(fast.bytes > 50_000_000, `the fast client read ${fast.bytes} bytes`);
        assert.ok(metrics.overflows >= 1, "the stuck client overflowed");
        // One frame may sit in a queue beyond the limit (a frame always fits an empty queue).
        assert.ok(maxQueued <= bufferBytes + 300_000, `queued ${maxQueued} bytes`);
        // Unbounded, the stuck client's frames would hold ~50 MB here.
        assert.ok(externalGrowth < 16_000_000, `external memory grew ${externalGrowth} bytes`);
        assert.deepEqual(view.sorted(), expected(aggregator, "AAPL"));

        // It reads again: what was queued, then a fresh snapshot (not the frames it missed).
        const reading = readUntil(stuck, "event: snapshot", 2, 10_000);
        const tick = setInterval(() => dashboard.notify(["AAPL"]), 20);
        let backlog: number;
        try {
          backlog = await reading;
        } finally {
          clearInterval(tick);
        }
        assert.ok(dashboard.metrics().resyncs >= 1);
        // It got far less than the fast client: what it missed was replaced by one snapshot.
        assert.ok(backlog < fast.bytes / 2, `the stuck client read ${backlog} bytes`);
        await fast.cancel();
      } finally {
        stuck.close();
      }
    },
  );
});

Deno.test("at the stream cap a new stream gets a clear 503, and a closed one frees its slot", async () => {
  const aggregator = newAggregator();
  await withDashboard(aggregator, { maxStreams: 2 }, async (dashboard) => {
    const a = new EventReader(await events(dashboard, "window=1m"));
    const b = new EventReader(await events(dashboard, "window=1m"));
    await a.next();
    await b.next();
    const refused = await events(dashboard, "window=1m");
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("retry-after"), "5");
    assert.match(await refused.text(), /too many live streams.*at most 2/);
    await a.cancel();
    // cancel() reaches the server asynchronously: wait until the slot is free.
    for (let i = 0; i < 100 && dashboard.metrics().streams > 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(dashboard.metrics().streams, 1);
    const c = new EventReader(await events(dashboard, "window=1m"));
    await c.next();
    await b.cancel();
    await c.cancel();
  });
});

Deno.test("shutdown ends open streams and the server", async () => {
  const aggregator = newAggregator();
  const controller = new AbortController();
  const dashboard = serveDashboard({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    aggregator,
    status: () => consumerStatus(),
  });
  const reader = new EventReader(await events(dashboard, "window=1m"));
  await reader.next();
  controller.abort();
  await dashboard.finished;
  await assert.rejects(() => reader.next(), /stream ended/);
});
