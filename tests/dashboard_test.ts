/**
 * The dashboard server against the real Aggregator: what a browser receives over
 * SSE (snapshot, deltas, resume, coalescing, slow clients), the JSON API, and the
 * safety rules (escaping, CSP, stream cap), and the candle CSV export behind the
 * token. Browser rendering: browser_test.ts.
 */

import assert from "node:assert/strict";
import { Aggregator } from "../consumer/candles.ts";
import { WARMUP_CANDLES } from "../dashboard/hub.ts";
import { type Dashboard, serveDashboard } from "../dashboard/server.ts";
import { encodeEvent } from "../dashboard/sse.ts";
import { safeJson } from "../dashboard/wire.ts";
import { CANDLE_CSV_HEADER, formatCandleCsv } from "../lib/format.js";
import type { TradeRecord } from "../lib/trade.ts";
import { consumerStatus, withDashboard } from "./helpers/dashboard.ts";
import {
  ClientView,
  EventReader,
  readUntil,
  revisionOf,
  type Row,
  stuckClient,
} from "./helpers/sse.ts";

const XSS = "<img src=x onerror=alert(1)>";
const T0 = Date.UTC(2025, 0, 6, 14, 30);

function trade(symbol: string, price: number, volume: number, time: number): TradeRecord {
  return { symbol, price, volume, time, source: "sim" };
}

function newAggregator(): Aggregator {
  return new Aggregator({ intervalsMs: [1000, 60_000], maxCandles: 3600, maxSymbols: 100 });
}

/** The aggregator's candles as rows: [time, open, high, low, close, volume, vwap, trades]. */
function expected(aggregator: Aggregator, symbol: string, from = -Infinity): Row[] {
  return aggregator.candles(symbol, 1000, from).map((
    c,
  ) => [c.start, c.open, c.high, c.low, c.close, c.volume, c.vwap, c.trades]);
}

function events(dashboard: Dashboard, query: string, init: RequestInit = {}) {
  return fetch(new URL(`events?${query}`, dashboard.url), init);
}

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

Deno.test("the JSON API answers with the aggregator's data and clear errors", async (t) => {
  const aggregator = newAggregator();
  for (let i = 0; i < 90; i++) aggregator.apply(trade("AAPL", 100 + i, 2, T0 + i * 1000));
  aggregator.apply(trade("BINANCE:BTCUSDT", 67_000, 0.5, T0));
  let connected = true;
  await withDashboard(
    aggregator,
    { status: () => consumerStatus({ connected }) },
    async (dashboard) => {
      const get = (path: string, init?: RequestInit) => fetch(new URL(path, dashboard.url), init);

      await t.step("/api/symbols", async () => {
        const response = await get("/api/symbols");
        assert.match(response.headers.get("content-type")!, /^application\/json/);
        const body = await response.json();
        assert.deepEqual(body.intervals, [1000, 60_000]);
        assert.deepEqual(body.symbols.map((s: { symbol: string }) => s.symbol), [
          "AAPL",
          "BINANCE:BTCUSDT",
        ]);
        assert.equal(body.symbols[0].last, 189);
        assert.equal(body.symbols[0].source, "sim");
      });

      await t.step("/api/candles", async () => {
        const all = await (await get("/api/candles?symbol=AAPL&interval=1000")).json();
        assert.equal(all.candles.length, 90);
        // Rows, in the order /events sends them too.
        assert.equal(all.fields.join(), "time,open,high,low,close,volume,vwap,trades");
        assert.deepEqual(all.candles[0], [T0, 100, 100, 100, 100, 2, 100, 1]);
        assert.deepEqual(all.candles, expected(aggregator, "AAPL"));
        const from = await (await get(`/api/candles?symbol=AAPL&interval=1m&from=${T0 + 60_000}`))
          .json();
        assert.equal(from.interval, 60_000);
        assert.deepEqual(from.candles.map((row: Row) => row[0]), [T0 + 60_000]);
        const iso = await (await get(
          `/api/candles?symbol=AAPL&from=${new Date(T0 + 80_000).toISOString()}`,
        )).json();
        assert.equal(iso.candles.length, 10);
        const symbol = encodeURIComponent("BINANCE:BTCUSDT");
        const btc = await (await get(`/api/candles?symbol=${symbol}`)).json();
        assert.equal(btc.candles[0][4], 67_000, "close");
      });

      await t.step("errors name the parameter", async () => {
        for (
          const [path, status, pattern] of [
            [
              "/api/candles?symbol=AAPL&interval=7s",
              400,
              /interval: "7s" is not one of 1000, 60000/,
            ],
            ["/api/candles", 400, /symbol: missing/],
            ["/api/candles?symbol=AAPL&from=yesterday", 400, /from: "yesterday"/],
            ["/api/candles?symbol=TSLA", 404, /no trades seen for TSLA/],
            ["/events?window=3d", 400, /window: "3d"/],
          ] as const
        ) {
          const response = await get(path);
          assert.equal(response.status, status, path);
          assert.match((await response.json()).error, pattern);
        }
        const missing = await get("/nope");
        assert.equal(missing.status, 404);
        await missing.body?.cancel();
        const post = await get("/api/symbols", { method: "POST" });
        assert.equal(post.status, 405);
        await post.body?.cancel();
        // A page on another site, reaching 127.0.0.1 through a DNS name it controls.
        const { port } = new URL(dashboard.url);
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
        await conn.write(
          new TextEncoder().encode(
            "GET /api/symbols HTTP/1.1\r\nhost: evil.example:8080\r\nconnection: close\r\n\r\n",
          ),
        );
        const answer = new TextDecoder().decode(await new Response(conn.readable).bytes());
        assert.match(answer, /^HTTP\/1\.1 421 /, "a DNS-rebound name is refused");
        assert.ok(!answer.includes("AAPL"));
      });

      await t.step("/healthz follows the consumer's connection", async () => {
        const up = await get("/healthz");
        assert.equal(up.status, 200);
        const body = await up.json();
        assert.equal(body.ok, true);
        assert.equal(body.dashboard.streams, 0);
        connected = false;
        const down = await get("/healthz");
        assert.equal(down.status, 503);
        assert.equal((await down.json()).consumer.connected, false);
      });
    },
  );
});

Deno.test("symbols reach the page as text: escaped JSON, no markup in HTML, no innerHTML", async () => {
  const aggregator = newAggregator();
  aggregator.apply(trade(XSS, 1, 1, T0));
  await withDashboard(aggregator, {}, async (dashboard) => {
    const raw = await (await fetch(new URL("/api/symbols", dashboard.url))).text();
    assert.ok(!raw.includes("<"), raw);
    assert.equal(JSON.parse(raw).symbols[0].symbol, XSS);

    const reader = new EventReader(await events(dashboard, `symbol=${encodeURIComponent(XSS)}`));
    const snapshot = await reader.next();
    assert.ok(!snapshot.raw.includes("<"), snapshot.raw);
    assert.equal(snapshot.data.symbol, XSS);
    assert.equal(snapshot.data.candles.length, 1);
    await reader.cancel();

    const page = await (await fetch(dashboard.url)).text();
    assert.ok(!page.includes("onerror"));
    // The page's own code never turns text into markup.
    for (
      const file of [
        "app.js",
        "charts.js",
        "format.js",
        "gaps.js",
        "indicators.js",
        "calendar.js",
        "panels.js",
        "studies.js",
      ]
    ) {
      const code = await (await fetch(new URL(file, dashboard.url))).text();
      assert.ok(code.length > 1000, file);
      assert.ok(!/innerHTML|outerHTML|insertAdjacentHTML|document\.write/.test(code), file);
    }
  });
});

Deno.test("every response carries the CSP; the page has no inline script or style", async () => {
  const aggregator = newAggregator();
  aggregator.apply(trade("AAPL", 1, 1, T0));
  await withDashboard(aggregator, {}, async (dashboard) => {
    const page = await fetch(dashboard.url);
    await page.body?.cancel();
    const csp = page.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'/);
    assert.ok(!csp.includes("unsafe"), csp);
    const paths = [
      "/",
      "/app.js",
      "/charts.js",
      "/format.js",
      "/indicators.js",
      "/calendar.js",
      "/panels.js",
      "/studies.js",
      "/style.css",
      "/watchlist.css",
      "/charts.css",
      "/panels.css",
      "/phone.css",
      "/vendor/uPlot.esm.js",
      "/vendor/uPlot.min.css",
      "/api/symbols",
      "/api/candles?symbol=AAPL",
      "/healthz",
      "/nope",
    ];
    for (const path of paths) {
      const response = await fetch(new URL(path, dashboard.url));
      assert.equal(response.headers.get("content-security-policy"), csp, path);
      assert.equal(response.headers.get("x-content-type-options"), "nosniff", path);
      await response.body?.cancel();
    }
    const html = await (await fetch(dashboard.url)).text();
    assert.ok(!/<script(?![^>]*\bsrc=)/i.test(html), "no inline script");
    assert.ok(!/\son[a-z]+=/i.test(html), "no inline event handler");
    assert.ok(!/\sstyle=/i.test(html), "no inline style");
    // Every stylesheet the page links is served as CSS (a file left out would be a 404).
    const sheets = [...html.matchAll(/<link rel="stylesheet" href="([^"]+)">/g)].map((m) => m[1]);
    assert.ok(sheets.length >= 5, `${sheets}`);
    for (const href of sheets) {
      const sheet = await fetch(new URL(href, dashboard.url));
      assert.equal(sheet.status, 200, href);
      assert.match(sheet.headers.get("content-type")!, /^text\/css/, href);
      await sheet.body?.cancel();
    }
    // uPlot is the npm package's own file, served without a CDN.
    const uplot = await fetch(new URL("/vendor/uPlot.esm.js", dashboard.url));
    assert.match(uplot.headers.get("content-type")!, /^text\/javascript/);
    const served = await uplot.text();
    const file = await Deno.readTextFile(
      new URL("../node_modules/uplot/dist/uPlot.esm.js", import.meta.url),
    );
    assert.equal(served, file);
  });
});

Deno.test("a port in use is one clear error, and nothing is left running", () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    assert.throws(
      () =>
        serveDashboard({
          hostname: "127.0.0.1",
          port: listener.addr.port,
          signal: new AbortController().signal,
          aggregator: newAggregator(),
          status: () => consumerStatus(),
        }),
      new RegExp(
        `^UsageError: DASHBOARD_PORT: 127\\.0\\.0\\.1:${listener.addr.port} is in use: set ` +
          "DASHBOARD_PORT to another port$",
      ),
    );
  } finally {
    listener.close();
  }
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

Deno.test("candle CSV: the header, ISO times, numbers only, a download, behind the token", async () => {
  const token = "csv-test-token-0123456789";
  const aggregator = new Aggregator({
    intervalsMs: [1000, 60_000],
    maxCandles: 600,
    maxSymbols: 10,
  });
  const t0 = Date.UTC(2026, 0, 5, 14, 30);
  for (let i = 0; i < 5; i++) {
    aggregator.apply({
      symbol: "AAPL",
      price: 190 + i / 4,
      volume: 2,
      time: t0 + i * 1000,
      source: "sim",
    });
  }
  aggregator.apply({ symbol: "AAPL", price: 191.5, volume: 0, time: t0 + 5000, source: "sim" });
  await withDashboard(aggregator, { token }, async (dashboard) => {
    const get = (query: string, auth = true) =>
      fetch(new URL(`/api/candles?${query}`, dashboard.url), {
        headers: auth ? { authorization: `Bearer ${token}` } : {},
      });
    const refused = await get("symbol=AAPL&interval=1s&format=csv", false);
    assert.equal(refused.status, 401);
    await refused.body?.cancel();

    const response = await get("symbol=AAPL&interval=1s&format=csv");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/csv; charset=utf-8");
    assert.equal(
      response.headers.get("content-disposition"),
      'attachment; filename="AAPL_1s_2026-01-05T14-30-00-000Z.csv"',
    );
    const body = await response.text();
    const lines = body.split("\r\n");
    assert.equal(lines[0], "time,open,high,low,close,volume,vwap,trades");
    assert.equal(lines[0], CANDLE_CSV_HEADER);
    assert.equal(lines[1], "2026-01-05T14:30:00.000Z,190,190,190,190,2,190,1");
    assert.equal(lines[6], "2026-01-05T14:30:05.000Z,191.5,191.5,191.5,191.5,0,,1", "no VWAP");
    assert.equal(lines.length, 8, "six candles and the final line break");
    const json = await (await get("symbol=AAPL&interval=1s")).json();
    assert.equal(body, formatCandleCsv(json.candles), "the same rows as the JSON API");
    for (const line of lines.slice(1, -1)) assert.match(line, /^[0-9TZ:.\-]+(,[0-9.eE+\-]*){7}$/);

    const odd = await get("symbol=AAPL&format=xml");
    assert.equal(odd.status, 400);
    assert.match((await odd.json()).error, /^format: "xml" is not csv or json$/);
    const weird = await get(`symbol=${encodeURIComponent('=HYPERLINK("x")')}&format=csv`);
    assert.equal(weird.status, 404, "no trades for it: no file");
    await weird.body?.cancel();
  });
});
